"""Teams, their types and statuses, the status lifecycle, and the fleet file.

A :class:`Team` is the static description of a crew and vehicle (type, staging site, service area,
shift, the ``dedicated`` flag); a :class:`TeamState` is its live state (status, last known position and
when it was reported). The persistent store (:mod:`routing.store`) and the simulation both hold
``TeamState`` objects; dispatch (:mod:`routing.dispatch`) is pure over them.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from routing.config import project_data_path
from routing.errors import Conflict, InvalidInput, reason
from routing.validate import timestamp

if TYPE_CHECKING:
    from routing.places import Places

DEFAULT_TIMEZONE = "America/New_York"


class TeamType(StrEnum):
    """Kinds of responding team."""

    co_response = "co_response"
    emt_clinician = "emt_clinician"
    community = "community"
    police = "police"
    ems = "ems"


class TeamStatus(StrEnum):
    """Lifecycle states of a team (see :data:`TRANSITIONS`)."""

    available = "available"
    en_route = "en_route"
    on_scene = "on_scene"
    transporting = "transporting"
    returning = "returning"
    out_of_service = "out_of_service"
    off_shift = "off_shift"


S = TeamStatus

#: Statuses from which a team may be sent to a new call. A ``returning`` team is ranked from where it
#: is now, not from its base.
DISPATCHABLE: frozenset[TeamStatus] = frozenset({S.available, S.returning})

#: Allowed status changes. Every state can go ``out_of_service`` (breakdown, injury); a call can be
#: cancelled while en route or cleared on scene without transport; a ``returning`` team can be
#: re-dispatched; shifts end only from a quiet state (available, returning or out of service).
TRANSITIONS: dict[TeamStatus, frozenset[TeamStatus]] = {
    S.available: frozenset({S.en_route, S.out_of_service, S.off_shift}),
    S.en_route: frozenset({S.on_scene, S.available, S.returning, S.out_of_service}),
    S.on_scene: frozenset({S.transporting, S.returning, S.available, S.out_of_service}),
    S.transporting: frozenset({S.returning, S.available, S.out_of_service}),
    S.returning: frozenset({S.available, S.en_route, S.out_of_service, S.off_shift}),
    S.out_of_service: frozenset({S.available, S.off_shift}),
    S.off_shift: frozenset({S.available, S.out_of_service}),
}


def parse_status(value: str | TeamStatus, *, field_name: str = "status") -> TeamStatus:
    """Parse a status name, raising ``InvalidInput`` naming the allowed values."""
    if isinstance(value, TeamStatus):
        return value
    try:
        return TeamStatus(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in TeamStatus)
        raise InvalidInput(f"unknown status {value!r} (one of: {allowed})", field=field_name) from None


def parse_team_type(value: str | TeamType, *, field_name: str = "team_type") -> TeamType:
    """Parse a team type name, raising ``InvalidInput`` naming the allowed values."""
    if isinstance(value, TeamType):
        return value
    try:
        return TeamType(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(t.value for t in TeamType)
        raise InvalidInput(f"unknown team type {value!r} (one of: {allowed})", field=field_name) from None


def check_transition(old: TeamStatus | str, new: TeamStatus | str) -> None:
    """Raise ``Conflict`` unless a team may go from ``old`` to ``new``.

    Setting the status a team already has is accepted (an idempotent retry), so a repeated report
    from a mobile terminal is not an error.

    Parameters
    ----------
    old, new
        Current and requested status.

    Raises
    ------
    Conflict
        If the lifecycle does not allow the change.
    InvalidInput
        If either name is not a status.
    """
    old_s, new_s = parse_status(old), parse_status(new)
    if old_s == new_s or new_s in TRANSITIONS[old_s]:
        return
    allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old_s]))
    raise Conflict(f"cannot go from {old_s.value} to {new_s.value} (from {old_s.value}: {allowed})")


_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Shift:
    """Daily service hours in local time; ``end <= start`` wraps past midnight.

    ``end`` of ``24:00`` is written as ``00:00``. ``days`` (``mon`` .. ``sun``) restricts the days on
    which a shift *starts*; ``None`` means every day.
    """

    start: time
    end: time
    days: tuple[str, ...] | None = None
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def parse(cls, text: str, *, days: Sequence[str] | None = None,
              timezone: str = DEFAULT_TIMEZONE) -> Shift:
        """Parse ``"HH:MM-HH:MM"``; raises ``InvalidInput``."""
        m = _HHMM.match(str(text))
        if not m:
            raise InvalidInput(f"shift must look like 'HH:MM-HH:MM', got {text!r}", field="shift")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        for h, mm in ((h1, m1), (h2, m2)):
            if not (0 <= h <= 24 and 0 <= mm < 60) or (h == 24 and mm != 0):
                raise InvalidInput(f"shift time out of range in {text!r}", field="shift")
        if (h1 % 24, m1) == (h2 % 24, m2):
            raise InvalidInput(f"shift {text!r} is empty; omit the shift for 24-hour service", field="shift")
        day_tuple = None
        if days is not None:
            day_tuple = tuple(str(d).strip().lower()[:3] for d in days)
            bad = [d for d in day_tuple if d not in _DAYS]
            if bad or not day_tuple:
                raise InvalidInput(f"shift days must be among {', '.join(_DAYS)}, got {list(days)!r}",
                                   field="shift")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {timezone!r}", field="timezone") from None
        return cls(time(h1 % 24, m1), time(h2 % 24, m2), day_tuple, timezone)

    def covers(self, when: datetime) -> bool:
        """Whether the team is on shift at ``when`` (tz-aware)."""
        local = _aware(when).astimezone(ZoneInfo(self.timezone))
        t = local.time().replace(tzinfo=None)
        wraps = self.end <= self.start
        if not wraps:
            inside = self.start <= t < self.end
            start_day = local.weekday()
        elif t >= self.start:
            inside, start_day = True, local.weekday()
        elif t < self.end:
            inside, start_day = True, (local.weekday() - 1) % 7  # shift began yesterday
        else:
            inside, start_day = False, local.weekday()
        if not inside:
            return False
        return self.days is None or _DAYS[start_day] in self.days

    def label(self) -> str:
        """``"HH:MM-HH:MM"`` plus days if restricted."""
        end = "24:00" if self.end == time(0, 0) else self.end.strftime("%H:%M")
        text = f"{self.start.strftime('%H:%M')}-{end}"
        return text if self.days is None else f"{text} {','.join(self.days)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"hours": self.label().split(" ")[0], "days": list(self.days) if self.days else None,
                "timezone": self.timezone}


@dataclass(frozen=True)
class Team:
    """Static description of one team.

    Attributes
    ----------
    team_id
        Stable identifier (``[A-Za-z0-9_.-]``).
    team_type
        One of :class:`TeamType`.
    name
        Human-readable name.
    dedicated
        Serves only mental-health calls (the pilot's dedicated co-response cars).
    base_name, base_lat, base_lon
        Staging site, where the team starts and returns.
    service_area
        Police district codes (``A1``) and/or neighborhood names (``Roxbury``) the team serves; empty
        means citywide.
    shift
        Service hours, or ``None`` for 24-hour service.
    """

    team_id: str
    team_type: TeamType
    name: str
    dedicated: bool
    base_name: str
    base_lat: float
    base_lon: float
    service_area: tuple[str, ...] = ()
    shift: Shift | None = None

    def serves(self, neighborhood: str | None, district: str | None) -> bool:
        """Whether a location (its neighborhood and district) lies in the service area."""
        if not self.service_area:
            return True
        return any(x is not None and x in self.service_area for x in (neighborhood, district))

    def on_shift(self, when: datetime) -> bool:
        """Whether the team works at ``when``."""
        return self.shift is None or self.shift.covers(when)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "team_id": self.team_id,
            "team_type": self.team_type.value,
            "name": self.name,
            "dedicated": self.dedicated,
            "base_name": self.base_name,
            "base_lat": self.base_lat,
            "base_lon": self.base_lon,
            "service_area": list(self.service_area),
            "shift": self.shift.to_dict() if self.shift else None,
        }


@dataclass
class TeamState:
    """Live state of a team: status and last reported position (``position_time`` tz-aware UTC)."""

    team: Team
    status: TeamStatus
    lat: float
    lon: float
    position_time: datetime
    status_time: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def team_id(self) -> str:
        return self.team.team_id

    @classmethod
    def at_base(cls, team: Team, when: datetime | None = None,
                status: TeamStatus = TeamStatus.available) -> TeamState:
        """A team standing at its staging site, reported at ``when`` (default now)."""
        when = _aware(when) if when is not None else datetime.now(UTC)
        return cls(team, status, team.base_lat, team.base_lon, when, when)

    def position_age_s(self, now: datetime) -> float:
        """Seconds since the position was reported (never negative)."""
        return max(0.0, (_aware(now) - self.position_time).total_seconds())

    def moved(self, lat: float, lon: float, when: datetime) -> TeamState:
        """A copy at a new position."""
        return replace(self, lat=lat, lon=lon, position_time=_aware(when))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the team's fields plus ``status``, ``lat``, ``lon``, ``position_time``."""
        d = self.team.to_dict()
        d.update(status=self.status.value, lat=self.lat, lon=self.lon,
                 position_time=self.position_time.isoformat(),
                 status_time=self.status_time.isoformat() if self.status_time else None)
        return d


def _aware(when: datetime) -> datetime:
    """Reject naive datetimes (ambiguous) and normalise to UTC."""
    if not isinstance(when, datetime):
        raise InvalidInput(f"expected a datetime, got {when!r}", field="time")
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput(f"time {when.isoformat()} has no UTC offset", field="time")
    return when.astimezone(UTC)


def parse_time(value: str | datetime, *, field_name: str = "time") -> datetime:
    """Parse an ISO 8601 time with a UTC offset (``Z`` accepted) into an aware UTC datetime.

    The same checks as :func:`routing.validate.timestamp` (the one time validator), kept under this name
    for its callers.
    """
    return timestamp(value, field_name)


# ---------------------------------------------------------------------------------------------- loading

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TEAM_KEYS = {"id", "type", "name", "dedicated", "base", "lat", "lon", "service_area", "shift", "days",
              "count", "source"}


def table_lines(text: str, header: str) -> list[int]:
    """1-based line numbers of each ``[[header]]`` array-of-tables entry in TOML ``text``."""
    pat = re.compile(r"^\s*\[\[\s*" + re.escape(header) + r"\s*\]\]")
    return [i for i, line in enumerate(text.splitlines(), start=1) if pat.match(line)]


def _read_toml(path: Path, what: str) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{what} file not found: {path}", field=what) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {reason(exc)}", field=what) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: {exc}", field=what) from None


def load_fleet(path: str | os.PathLike[str] | None = None, *, places: Places | None = None) -> list[Team]:
    """Read and validate a fleet file (default ``data/fleet.toml``).

    Each ``[[team]]`` entry has ``id``, ``type``, ``name``, ``base`` (staging-site name), ``lat``,
    ``lon``, and optionally ``dedicated`` (default false), ``service_area`` (list of district codes or
    neighborhood names), ``shift`` (``"HH:MM-HH:MM"`` local time), ``days`` and ``count`` (``count = 3``
    makes ids ``ID-1`` .. ``ID-3`` at the same site). ``[fleet] timezone`` sets the shifts' zone.

    Parameters
    ----------
    path
        The TOML file.
    places
        Optional :class:`routing.places.Places`; when given, service-area names and staging sites are
        checked against it (known district/neighborhood, base inside the city).

    Returns
    -------
    list[Team]
        In file order.

    Raises
    ------
    InvalidInput
        With a message naming the file, line and team for any bad entry.
    """
    p = Path(path) if path is not None else project_data_path("fleet.toml")
    doc, text = _read_toml(p, "fleet")
    fleet_meta = doc.get("fleet", {})
    if not isinstance(fleet_meta, dict):
        raise InvalidInput(f"{p}: [fleet] must be a table", field="fleet")
    timezone = str(fleet_meta.get("timezone", DEFAULT_TIMEZONE))
    entries = doc.get("team")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput(f"{p}: no [[team]] entries", field="fleet")
    lines = table_lines(text, "team")
    known_areas: set[str] | None = None
    if places is not None:
        known_areas = set(places.districts) | set(places.neighborhoods)
    teams: list[Team] = []
    seen: dict[str, int] = {}
    for k, entry in enumerate(entries):
        line = lines[k] if k < len(lines) else None
        where = f"{p}" + (f" line {line}" if line else "") + f" (team #{k + 1}"
        tid = entry.get("id") if isinstance(entry, dict) else None
        where += f" {tid!r})" if tid else ")"
        for team in _parse_team(entry, where, timezone, known_areas):
            if team.team_id in seen:
                raise InvalidInput(f"{where}: duplicate team id {team.team_id!r}", field="fleet")
            seen[team.team_id] = k
            teams.append(team)
    return teams


def _parse_team(entry: Any, where: str, timezone: str, known_areas: set[str] | None) -> list[Team]:
    def bad(msg: str) -> InvalidInput:
        return InvalidInput(f"{where}: {msg}", field="fleet")

    if not isinstance(entry, dict):
        raise bad("must be a table")
    unknown = set(entry) - _TEAM_KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("id", "type", "name", "base", "lat", "lon"):
        if key not in entry:
            raise bad(f"missing field '{key}'")
    tid = entry["id"]
    if not isinstance(tid, str) or not _ID.match(tid):
        raise bad(f"id must be 1-64 characters of letters, digits, '_', '.', '-': {tid!r}")
    try:
        ttype = parse_team_type(entry["type"])
    except InvalidInput as exc:
        raise bad(exc.message) from None
    for key in ("name", "base"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise bad(f"'{key}' must be a non-empty string")
    lat, lon = entry["lat"], entry["lon"]
    for key, v, lim in (("lat", lat, 90), ("lon", lon, 180)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > lim:
            raise bad(f"'{key}' must be a number within ±{lim}, got {v!r}")
    dedicated = entry.get("dedicated", False)
    if not isinstance(dedicated, bool):
        raise bad(f"'dedicated' must be true or false, got {dedicated!r}")
    area = entry.get("service_area", [])
    if isinstance(area, str):
        area = [area]
    if not isinstance(area, list) or not all(isinstance(a, str) and a.strip() for a in area):
        raise bad("'service_area' must be a list of district codes or neighborhood names")
    area_t = tuple(a.strip() for a in area)
    if known_areas is not None:
        unknown_areas = [a for a in area_t if a not in known_areas]
        if unknown_areas:
            raise bad(f"unknown district/neighborhood {', '.join(map(repr, unknown_areas))}")
    shift = None
    if entry.get("shift") is not None:
        days = entry.get("days")
        if days is not None and not isinstance(days, list):
            raise bad("'days' must be a list like ['mon', 'tue']")
        try:
            shift = Shift.parse(entry["shift"], days=days, timezone=timezone)
        except InvalidInput as exc:
            raise bad(exc.message) from None
    elif "days" in entry:
        raise bad("'days' needs a 'shift'")
    count = entry.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise bad(f"'count' must be an integer 1..100, got {count!r}")
    base = Team(tid, ttype, entry["name"].strip(), dedicated, entry["base"].strip(), float(lat), float(lon),
                area_t, shift)
    if count == 1:
        return [base]
    return [replace(base, team_id=f"{tid}-{i}", name=f"{base.name} #{i}") for i in range(1, count + 1)]


_TeamOrState = TypeVar("_TeamOrState", Team, TeamState)


def teams_by_id(teams: Iterable[_TeamOrState]) -> dict[str, _TeamOrState]:
    """Index teams or team states by id."""
    return {t.team_id: t for t in teams}


def team_from_dict(d: Mapping[str, Any]) -> Team:
    """Rebuild a :class:`Team` from :meth:`Team.to_dict` output (used by the store)."""
    shift = None
    if d.get("shift"):
        s = d["shift"]
        hours = s["hours"].replace("24:00", "00:00")
        shift = Shift.parse(hours, days=s.get("days"), timezone=s.get("timezone", DEFAULT_TIMEZONE))
    return Team(d["team_id"], TeamType(d["team_type"]), d["name"], bool(d["dedicated"]), d["base_name"],
                float(d["base_lat"]), float(d["base_lon"]), tuple(d.get("service_area") or ()), shift)
