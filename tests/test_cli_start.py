"""The command line starts without the scientific stack: ``--help``, every ``COMMAND --help`` and argument
errors import none of it (modules, not time: bench/bench_cli_start.py measures the time), and the
progress bar is drawn only on a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Top-level packages that building the parser must not import.
HEAVY = ("numpy", "scipy", "pandas", "geopandas", "shapely", "pyproj", "pyogrio", "osmnx", "networkx", "ortools",
         "sklearn", "folium", "branca", "jinja2", "fastapi", "starlette", "uvicorn", "httpx", "tqdm", "maps")

# Runs in a fresh interpreter: every help page the parser has (found by walking it, so a new command is
# covered without editing this test) and some argument errors, one after the other; after each, the
# heavy modules loaded so far. A module loaded by one case shows in every later one, so the first
# case that lists it is the one that imported it.
_PROBE = r"""
import argparse, contextlib, io, json, sys
from routing.cli import build_parser, main

HEAVY = set(sys.argv[1].split(","))
ERRORS = json.loads(sys.argv[2])

def pages(parser, prefix):
    yield prefix + ["--help"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from pages(sub, prefix + [name])

report = []
for argv in list(pages(build_parser(), [])) + ERRORS:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    heavy = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
    report.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": heavy})
print(json.dumps(report))
"""

#: Argument errors: argparse refuses these before any command runs.
ARGUMENT_ERRORS = [
    [],
    ["no-such-command"],
    ["route", "--from", "nowhere", "--to", "42.3,-71.0"],
    ["route", "--from", "42.3,-71.0"],
    ["suggest", "--priority", "high"],
    ["stage", "--model", "nope"],
    ["simulate", "--days", "-1"],
    ["coverage", "--minutes", "0"],
    ["fleet", "status"],
    ["data", "fetch", "--only", "nope"],
    ["serve", "--port", "99999"],
    ["map", "staging", "--sites", "x"],
]


def _probe() -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, ",".join(HEAVY), json.dumps(ARGUMENT_ERRORS)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def probe() -> list[dict]:
    return _probe()


def test_help_pages_import_no_scientific_library(probe) -> None:
    pages = [r for r in probe if r["argv"][-1:] == ["--help"]]
    commands = {r["argv"][0] for r in pages if len(r["argv"]) > 1}
    assert {"route", "suggest", "stage", "simulate", "serve", "data", "map", "fleet", "network"} <= commands
    for r in pages:
        assert r["code"] == 0 and r["out"].startswith("usage: crisis-dispatch"), r["argv"]
        assert r["heavy"] == [], f"crisis-dispatch {' '.join(r['argv'])} imported {r['heavy']}"


def test_argument_errors_import_no_scientific_library(probe) -> None:
    errors = [r for r in probe if r["argv"][-1:] != ["--help"]]
    assert len(errors) == len(ARGUMENT_ERRORS)
    for r in errors:
        assert r["code"] == 2, r["argv"]
        assert r["err"].startswith("error: ") and r["err"].count("\n") == 1, r["err"]
        assert r["heavy"] == [], f"crisis-dispatch {' '.join(r['argv'])} imported {r['heavy']}"


def test_parser_defaults_spelled_out_match_the_engine() -> None:
    # The parser spells these out to avoid importing the engine's NumPy modules; they must not drift.
    from routing.arrivals import CallMix
    from routing.cli import planning as cli_planning
    from routing.cli import simulate as cli_simulate
    from routing.simulation import DEFAULT_MAX_WAIT_S
    from routing.staging import MODELS

    assert cli_planning.STAGING_MODELS == MODELS
    mix = CallMix()
    assert (mix.mh_per_year, mix.medical_per_year, mix.other_per_year) == (
        cli_simulate.MH_PER_YEAR, cli_simulate.MEDICAL_PER_YEAR, cli_simulate.OTHER_PER_YEAR)
    assert DEFAULT_MAX_WAIT_S == cli_simulate.MAX_WAIT_MIN * 60


# ------------------------------------------------------------------------------------------ progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_without_json(monkeypatch) -> None:
    from routing.cli import ProgressBar, progress_for

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_for(Namespace(json=False)) is None  # piped or logged: quiet
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_for(Namespace(json=True)) is None
    assert progress_for(Namespace(json=False, no_progress=True)) is None
    assert isinstance(progress_for(Namespace(json=False)), ProgressBar)


def test_progress_bar_draws_one_bar_per_label(monkeypatch) -> None:
    from routing.cli import ProgressBar

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = ProgressBar()
    for f in (0.0, 0.5, 1.0):
        bar(f, "network build (csv)")
    for f in (0.0, 0.25, 1.0):
        bar(f, "simulate default")
    text = term.getvalue()
    assert "network build (csv): 100%" in text and "simulate default: 100%" in text


def test_network_build_reports_progress_and_a_cached_load_none(tmp_path, monkeypatch) -> None:
    from routing.network import clear_memory_cache, load_network

    monkeypatch.setenv("CRISIS_DISPATCH_CACHE", str(tmp_path))
    source = REPO.parent / "shared" / "cases" / "road" / "c1_class_change.osm"
    steps: list[tuple[float, str]] = []
    load_network(source=source, progress=lambda f, label: steps.append((f, label)))
    assert steps == [(0.0, "network build (osm)"), (0.9, "network build (osm)"), (1.0, "network build (osm)")]
    steps.clear()
    clear_memory_cache()
    load_network(source=source, progress=lambda f, label: steps.append((f, label)))
    assert steps == []  # from the cache: nothing worth a bar


def test_cli_is_quiet_when_stderr_is_piped(data_dir, tmp_path) -> None:
    # A real run with text output (no --json): stderr is a pipe here, so no bar and no carriage returns.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "CRISIS_DISPATCH_CACHE": str(tmp_path / "cache")}  # a cold cache: the network is built from source
    proc = subprocess.run([sys.executable, "-m", "routing.cli", "simulate", "--days", "0.25", "--scale", "0.2",
                           "--data", str(data_dir)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "policy default" in proc.stdout
    assert proc.stderr == ""
