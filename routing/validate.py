"""Checks of user-supplied values shared by the engine, the CLI and the service."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

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


#: Earliest and latest time accepted anywhere a time enters (positions, statuses, calls, assignments,
#: ``--at``, ``--received``, call files, the service). The floor is the Unix epoch: no locator report,
#: CAD record or incident in the data predates it, and it keeps ``when - timedelta(days=...)`` and
#: ``when.timestamp()`` safe. The ceiling leaves ``when + timedelta(...)`` (shift ends, simulation
#: horizons, a week ahead) far from ``datetime.max``; reports are limited further, to the store's clock
#: skew allowance ahead of the server clock.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def timestamp(value: Any, field: str = "time", *, bare_time_zone: str | None = None) -> datetime:
    """The one parser and validator of every time that enters the system.

    Parameters
    ----------
    value
        An ISO 8601 string with a UTC offset (``Z`` accepted), e.g. ``2024-05-01T14:00:00-04:00``, or a
        tz-aware :class:`~datetime.datetime`.
    field
        Name of the input, reported in the error.
    bare_time_zone
        If given (the CLI passes ``America/New_York``), a bare clock time ``HH:MM[:SS]`` also means that
        time today in this zone. Naive date-times stay refused everywhere: their zone is a guess.

    Returns
    -------
    datetime
        Tz-aware, in UTC, within [:data:`EARLIEST`, :data:`LATEST`).

    Raises
    ------
    InvalidInput
        With ``field``: not a string (numbers are not read as epoch seconds: a unit and a zone would be
        guesses), not ISO 8601, no UTC offset, not representable in UTC (``9999-12-31T23:59:59-14:00``
        overflows), or outside the accepted range.
    """
    if isinstance(value, datetime):
        dt = value
        text = value.isoformat()
    elif isinstance(value, str):
        text = value.strip()
        clock = _CLOCK.match(text) if bare_time_zone else None
        if clock:
            dt = _today_at(clock, bare_time_zone, text, field)  # type: ignore[arg-type]
        else:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"{field}: not an ISO 8601 time: {text[:64]!r}", field=field) from None
    else:
        raise InvalidInput(f"{field} must be an ISO 8601 time string, got {type(value).__name__} {value!r:.64}",
                           field=field)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidInput(f"{field}: time {text!r} needs a UTC offset (e.g. 2024-05-01T14:00:00-04:00 or ...Z)",
                           field=field)
    try:
        utc = dt.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{field}: time {text!r} cannot be represented in UTC", field=field) from None
    if not EARLIEST <= utc < LATEST:
        raise InvalidInput(f"{field}: time {text!r} is outside {EARLIEST.year}-{LATEST.year - 1}", field=field)
    return utc


def _today_at(clock: re.Match[str], zone: str, text: str, field: str) -> datetime:
    hh, mm, ss = int(clock[1]), int(clock[2]), int(clock[3] or 0)
    if hh > 23 or mm > 59 or ss > 59:
        raise InvalidInput(f"{field}: not a clock time: {text!r}", field=field)
    tz = ZoneInfo(zone)
    # fold=0: in the repeated hour of the autumn change, the first (daylight) one.
    return datetime.now(tz).replace(hour=hh, minute=mm, second=ss, microsecond=0)
