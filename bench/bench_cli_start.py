"""Start-up time of the command line: ``crisis-dispatch --help`` against a bare ``python3 -c pass``.

Run: ``python bench/bench_cli_start.py [--runs N]``. Prints the median wall-clock time of N runs (default
15) of each command, each in a new process with the same environment, and its ratio to the bare
interpreter. The command is the console script's entry point (``routing.cli:main``) run by this
interpreter with this checkout first on ``PYTHONPATH``, whatever copy pip installed (and without the
start-up of a pyenv shim). With ``PYTHONDONTWRITEBYTECODE`` set every run compiles the project's sources
again, so the runs are repeated with a bytecode cache (a temporary ``PYTHONPYCACHEPREFIX``), as after a
``pip install``, which writes ``.pyc`` files. Help and argument errors should stay within about 3x of the
bare interpreter: building the parser must not import the scientific stack (tests/test_cli_start.py checks
the modules, not the time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: What is timed besides the bare interpreter: help, one command's help, an argument error.
CASES = (
    ["--help"],
    ["simulate", "--help"],
    ["stage", "--help"],
    ["route", "--from", "nowhere", "--to", "42.3,-71.0"],
)


#: What the ``crisis-dispatch`` console script runs.
ENTRY = [sys.executable, "-c", "import sys; from routing.cli import main; sys.exit(main())"]


def median_run(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    print(f"crisis-dispatch start-up  ({REPO}, {sys.executable}, {args.runs} runs each, median)")
    if env.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: no bytecode cache")
        run_cases(env, args.runs)
        env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        with tempfile.TemporaryDirectory(prefix="bench-pycache-") as prefix:
            env["PYTHONPYCACHEPREFIX"] = prefix
            print("with a bytecode cache (as installed by pip)")
            run_cases(env, args.runs)
    else:
        run_cases(env, args.runs)


def run_cases(env: dict[str, str], runs: int) -> None:
    for case in CASES:  # warm the file system cache (and the bytecode cache, if any) before timing
        median_run(ENTRY + case, 1, env)
    median_run([sys.executable, "-c", "pass"], 3, env)
    bare = median_run([sys.executable, "-c", "pass"], runs, env)
    print(f"  {'python3 -c pass':<56} {bare * 1000:8.1f} ms")
    for case in CASES:
        t = median_run(ENTRY + case, runs, env)
        label = "crisis-dispatch " + " ".join(case)
        print(f"  {label:<56} {t * 1000:8.1f} ms   {t / bare:5.1f}x bare")


if __name__ == "__main__":
    main()
