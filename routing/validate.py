"""Checks of user-supplied values shared by the engine, the CLI and the service."""

from __future__ import annotations

import math
from typing import Any

from routing.errors import InvalidInput


def coordinate(value: Any, name: str, limit: float) -> float:
    """A finite number within ``±limit`` (90 for latitude, 180 for longitude).

    Raises
    ------
    InvalidInput
        Missing, boolean, non-numeric, non-finite or out-of-range, with ``field=name``.
    """
    if value is None or value == "":
        raise InvalidInput(f"missing {name}", field=name)
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number, got {value!r}", field=name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number, got {value!r}", field=name) from None
    if not math.isfinite(number) or abs(number) > limit:
        raise InvalidInput(f"{name} must be a finite number within ±{limit:g}, got {value!r}", field=name)
    return number


def latlon(lat: Any, lon: Any) -> tuple[float, float]:
    """Validated (lat, lon) floats; errors name ``lat`` or ``lon``."""
    return coordinate(lat, "lat", 90), coordinate(lon, "lon", 180)
