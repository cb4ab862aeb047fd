"""The README works as written: every ```sh / ```bash block runs, in order, on a fresh checkout.

The commands run in a temporary copy of the layout the README assumes: the current directory is a fresh
``main/`` holding only ``examples/`` (a symlink to the repository's), beside ``shared/data`` (a symlink to
the real data), so ``export CRISIS_DISPATCH_DATA=../shared/data`` works literally. The variable is *not*
inherited from the test run: the README has to set it itself. The database, the network cache and every
written file stay in the temporary directory.

A block is skipped only if it says so with a visible comment, ``# not run by the README test: REASON``,
and REASON must be one of :data:`SKIP_REASONS` (installing, the test suite itself, a server, a download).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MARKER = "# not run by the README test:"
#: What a README block may be skipped for, and nothing else.
SKIP_REASONS = ("installs the package", "it is the test suite", "starts a server", "downloads from the internet")

_FENCE = re.compile(r"^```(sh|bash)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def readme_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, body, skip_reason)`` of every ```sh / ```bash block, in order."""
    blocks = []
    for m in _FENCE.finditer(text):
        body = m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        reason = None
        if MARKER in body:
            reason = body.split(MARKER, 1)[1].splitlines()[0].strip()
        blocks.append((line, body, reason))
    return blocks


def commands(body: str) -> list[str]:
    """The shell commands of a block: one per line (``\\`` continues a line), comments dropped."""
    out: list[str] = []
    pending = ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def test_readme_blocks_are_found_and_skips_are_explained() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    for line, _body, reason in blocks:
        if reason is not None:
            assert reason in SKIP_REASONS, f"README line {line}: skip reason {reason!r} not in {SKIP_REASONS}"
    run = [c for _, body, reason in blocks if reason is None for c in commands(body)]
    assert run[0].startswith("export CRISIS_DISPATCH_DATA="), "the data variable is set once, before any command"
    assert sum("--calls examples/" in c for c in run) >= 2
    for c in run:
        for word in shlex.split(c, comments=True):
            if word.startswith("examples/"):
                assert (REPO / word).is_file(), f"README names {word}, which does not exist"


def test_readme_commands_run_in_order(data_dir: Path, tmp_path: Path) -> None:
    if shutil.which("crisis-dispatch") is None:
        pytest.fail("crisis-dispatch is not on PATH: install the package (./setup.sh)", pytrace=False)
    root = tmp_path / "checkout"
    cwd = root / "main"
    cwd.mkdir(parents=True)
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(data_dir, target_is_directory=True)
    (cwd / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CRISIS_DISPATCH_DATA", "CRISIS_DISPATCH_DB", "CRISIS_DISPATCH_OFFLINE")}
    env.update(CRISIS_DISPATCH_CACHE=os.environ.get("CRISIS_DISPATCH_CACHE", str(tmp_path / "cache")),
               HOME=str(tmp_path / "home"), MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    exports: list[str] = []
    ran: list[tuple[str, float]] = []
    started = time.perf_counter()
    for line, body, reason in readme_blocks(README.read_text(encoding="utf-8")):
        if reason is not None:
            continue
        for command in commands(body):
            if command.startswith("export "):
                exports.append(command)
                continue
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", "-c", "; ".join([*exports, command])], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=300)
            ran.append((command, time.perf_counter() - t0))
            assert proc.returncode == 0, (f"README block at line {line}: `{command}` exited {proc.returncode}\n"
                                          f"{proc.stderr[-3000:]}")
    total = time.perf_counter() - started
    assert len(ran) >= 20
    slow = ", ".join(f"{c.split(' --')[0]} {s:.0f} s" for c, s in sorted(ran, key=lambda x: -x[1])[:3])
    print(f"README: {len(ran)} commands in {total:.0f} s (slowest: {slow})")
