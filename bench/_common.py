"""Shared helpers for the benchmark scripts (not a test: these print numbers)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # measure this checkout, whatever copy pip installed
    sys.path.insert(0, str(REPO))

from routing.config import resolve_data_dir  # noqa: E402


def data_dir() -> Path:
    """The real data: $CRISIS_DISPATCH_DATA or ../shared/data beside the repository."""
    path = resolve_data_dir(None) or (REPO.parent / "shared" / "data")
    if not (path / "boston").is_dir():
        raise SystemExit(f"error: real data not found at {path}; set CRISIS_DISPATCH_DATA")
    return path


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summary(label: str, seconds: list[float], unit: str = "ms") -> float:
    """Print median / p90 / p99 / mean of a timing list; return the median in seconds."""
    scale = 1000 if unit == "ms" else 1_000_000
    ordered = sorted(seconds)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    median = statistics.median(ordered)
    print(f"  {label:<46} median {median * scale:9.3f} {unit}   p90 {p(0.9) * scale:9.3f}   "
          f"p99 {p(0.99) * scale:9.3f}   n={len(ordered)}")
    return median
