"""Where data, defaults and caches live."""

from __future__ import annotations

import os
from pathlib import Path

from routing.errors import DataMissing

DATA_ENV = "CRISIS_DISPATCH_DATA"
CACHE_ENV = "CRISIS_DISPATCH_CACHE"

_PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the real-data directory: the argument, else ``$CRISIS_DISPATCH_DATA``, else None.

    Parameters
    ----------
    data_dir
        An explicit directory (the CLI's ``--data``).

    Returns
    -------
    Path or None
        ``None`` means no data directory was given: callers take the online OpenStreetMap path.

    Raises
    ------
    DataMissing
        If a directory was named but does not exist.
    """
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise DataMissing(f"data directory not found: {path} (set --data or {DATA_ENV})")
    return path


def require_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Like :func:`resolve_data_dir` but a missing setting is an error too."""
    path = resolve_data_dir(data_dir)
    if path is None:
        raise DataMissing(f"no data directory: pass --data DIR or set {DATA_ENV}")
    return path


def project_data_path(name: str) -> Path:
    """Path of one of the project's own default files in ``data/`` (fleet.toml, rules.toml, ...)."""
    return _PROJECT_DATA / name


def cache_dir() -> Path:
    """Directory for prepared networks and downloads: ``$CRISIS_DISPATCH_CACHE`` or ~/.cache."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "crisis-dispatch")
    path.mkdir(parents=True, exist_ok=True)
    return path
