"""How numbers a person reads are written, the same in the CLI, the maps and the service.

Standard library only (the CLI's parser imports nothing scientific). One ETA format everywhere:
``format_eta(252)`` is ``"4 min 12 s"``, whether in ``crisis-dispatch suggest``, a map's popup, table or
layer list, or a suggestion's message.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

__all__ = ["format_eta", "iso_at", "truncate"]

#: What :func:`format_eta` writes for an unknown or unreachable time.
UNREACHABLE = "unreachable"


def format_eta(seconds: float | None, *, missing: str = UNREACHABLE) -> str:
    """A travel or response time for a person: ``"42 s"``, ``"4 min 05 s"``, ``"1 h 02 min"``.

    Seconds are rounded to the nearest whole second; ``None``, NaN and infinity give ``missing``
    (``"unreachable"`` unless told otherwise, e.g. ``"-"`` in a table).
    """
    if seconds is None or not math.isfinite(seconds):
        return missing
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def iso_at(start: datetime, seconds: float | None) -> str | None:
    """ISO 8601 time (with offset, to the second) of ``seconds`` after ``start``; ``None`` for ``None``/NaN.

    Used where records count seconds from a start (the simulation) so that they also carry a time a
    person and a spreadsheet can read. A naive ``start`` is taken as UTC.
    """
    if seconds is None or not math.isfinite(seconds):
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return (start + timedelta(seconds=round(seconds))).isoformat(timespec="seconds")


def truncate(text: object, width: int) -> str:
    """``text`` cut to ``width`` characters with a trailing ``…`` when longer (for fixed-width tables)."""
    s = str(text)
    return s if len(s) <= width else s[: max(width - 1, 0)] + "…"


def local_clock(value: str | datetime | None, *, missing: str = "-") -> str:
    """A stored UTC time as people in Boston read it: ``2026-06-01 17:02:00 EDT`` (``missing`` if None).

    Text tables use it; JSON keeps ISO 8601 with its offset.
    """
    if value is None or value == "":
        return missing
    from zoneinfo import ZoneInfo  # stdlib, but only when a time is shown

    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M:%S %Z")
