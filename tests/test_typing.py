"""The package's types: ``py.typed`` ships, and mypy finds nothing in ``routing/`` and ``maps/``.

mypy runs with the ``[tool.mypy]`` settings of pyproject.toml (targets, Python version, the untyped
third-party packages it may not follow), so ``python3 -m mypy`` in the checkout gives the same answer.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_marker_ships_with_the_package() -> None:
    assert resources.files("routing").joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["routing"]


def test_mypy_is_clean_on_the_engine_and_the_maps() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["mypy"]["files"] == ["routing", "maps"]
    # mypy's own cache (.mypy_cache, git-ignored): 10-30 s the first time, a few seconds after that.
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mypy found problems (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
    assert "Success: no issues found" in proc.stdout, proc.stdout + proc.stderr
