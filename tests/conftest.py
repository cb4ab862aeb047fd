"""Shared fixtures. Tests that need the real Boston data FAIL (never skip) when it cannot be found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_DEFAULT_DATA = REPO.parent / "shared" / "data"


def _find_data_dir() -> Path:
    configured = os.environ.get("CRISIS_DISPATCH_DATA")
    path = Path(configured) if configured else _DEFAULT_DATA
    if not (path / "boston" / "boston_nodes.csv.gz").is_file():
        pytest.fail(
            f"real Boston data not found at {path} (set CRISIS_DISPATCH_DATA to the shared data folder); "
            "tests that need it fail rather than skip",
            pytrace=False,
        )
    return path.resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data directory (``../shared/data``)."""
    path = _find_data_dir()
    os.environ["CRISIS_DISPATCH_DATA"] = str(path)  # subprocess CLI tests inherit it
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the prepared-network cache of the test run apart from the user's."""
    os.environ["CRISIS_DISPATCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def boston(data_dir: Path):
    """The real Boston road network (default profile)."""
    from routing.network import load_network

    return load_network(data_dir)


@pytest.fixture(scope="session")
def places(data_dir: Path):
    """Boston's neighborhoods, districts and candidate sites."""
    from routing.places import load_places

    return load_places(data_dir)
