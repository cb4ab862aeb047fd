"""Persistence of the fleet's live state and of every dispatch decision, in SQLite.

One database file holds the teams (created on first use from the fleet file), every position report
and status change (history, not only the latest), the calls, and an audit trail of every suggestion and
assignment with the inputs it was computed from.

Durability and concurrency:

- WAL journal with ``synchronous=FULL``: a write is on disk when the method returns, so an acknowledged
  position report survives ``kill -9`` or a power cut; readers never wait for writers (WAL), and writers
  queue on ``BEGIN IMMEDIATE`` with a busy timeout rather than failing.
- Every write method runs in one transaction that first re-reads the row it checks (status, last report
  time), so two concurrent requests cannot both pass a check against the same old state; a rejected
  write changes nothing.
- One connection per thread (``threading.local``), so a :class:`Store` can be shared by the threads of
  a web server; :meth:`Store.close` closes them all.
- :meth:`Store.group` wraps the writes a thread makes into one commit (one ``fsync`` for many writes),
  each write in its own SAVEPOINT so a refused write changes nothing and leaves the others in.
- :meth:`Store.assign` records an assignment and sends its teams en route in one transaction that
  re-checks each team inside it, so two processes sharing the file (the service and the CLI) can never
  send one team to two calls.

Device clocks: a report, status change or assignment stamped up to :data:`MAX_FUTURE_S` ahead of the
server clock is stored with its stated time, and beside it the server time it was received
(``teams.position_received_at`` / ``status_received_at``; ``recorded_at`` in the history tables). The
order of a team's reports is judged on their *order time*, ``min(stated, received)``: a device whose
clock runs fast is ordered by arrival, so one fast report cannot make the correct reports after it look
"older" until the real clock catches up. Further ahead than the allowance is refused (``field="at"``).

The default database path is ``$CRISIS_DISPATCH_DB``, else ``./crisis-dispatch.db``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routing.errors import Conflict, InvalidInput, NotFound
from routing.fleet import (
    DISPATCHABLE,
    Team,
    TeamState,
    TeamStatus,
    check_transition,
    load_fleet,
    parse_status,
    team_from_dict,
)
from routing.triage import Call
from routing.validate import latlon
from routing.validate import timestamp as validate_timestamp

if TYPE_CHECKING:
    from routing.dispatch import Assignment, AssignmentResult, SuggestionResult
    from routing.network import RoadNetwork

DB_ENV = "CRISIS_DISPATCH_DB"
DEFAULT_DB_NAME = "crisis-dispatch.db"
#: 2: ``teams.position_received_at`` and ``teams.status_received_at``; 3: the call lifecycle (``calls.status``,
#: ``call_events``, ``assignments.additional/released_at/actor``) and the paging indexes. Older files are
#: migrated on open.
SCHEMA_VERSION = 3
#: A report time further in the future than this is rejected (clock skew allowance, seconds).
MAX_FUTURE_S = 300.0
_SNAPSHOT_MIN_BYTES = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS teams (
    team_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    status_time TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    position_time TEXT NOT NULL,
    seq INTEGER NOT NULL,
    position_received_at TEXT,
    status_received_at TEXT,
    retired_at TEXT
);
CREATE TABLE IF NOT EXISTS positions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL REFERENCES teams(team_id),
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS positions_by_team ON positions(team_id, at);
CREATE TABLE IF NOT EXISTS status_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL REFERENCES teams(team_id),
    old_status TEXT,
    new_status TEXT NOT NULL,
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS status_by_team ON status_changes(team_id, at);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    received TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'received',
    status_time TEXT
);
CREATE TABLE IF NOT EXISTS call_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    old_status TEXT,
    new_status TEXT NOT NULL,
    team_id TEXT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS snapshots (digest TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    call_ids TEXT NOT NULL,
    inputs TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decision_calls (
    decision_id INTEGER NOT NULL REFERENCES decisions(id),
    call_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_calls_by_call ON decision_calls(call_id, decision_id);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id INTEGER NOT NULL REFERENCES decisions(id),
    call_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    team_type TEXT NOT NULL,
    eta_s REAL,
    tier TEXT,
    created_at TEXT NOT NULL,
    additional INTEGER NOT NULL DEFAULT 0,
    released_at TEXT,
    actor TEXT
);
CREATE INDEX IF NOT EXISTS assignments_by_call ON assignments(call_id);
"""

# Indexes on version-3 columns: created after the migration has added them. The history and listing
# queries page on these (ORDER BY ... LIMIT), so a page costs milliseconds however long the history.
_INDEXES_V3 = """
CREATE INDEX IF NOT EXISTS positions_by_team_order ON positions(team_id, min(at, recorded_at), id);
CREATE INDEX IF NOT EXISTS status_by_team_order ON status_changes(team_id, min(at, recorded_at), id);
CREATE INDEX IF NOT EXISTS calls_by_received ON calls(received, call_id);
CREATE INDEX IF NOT EXISTS calls_by_status ON calls(status, received, call_id);
CREATE INDEX IF NOT EXISTS call_events_by_call ON call_events(call_id, id);
CREATE INDEX IF NOT EXISTS call_events_by_time ON call_events(at, id);
CREATE INDEX IF NOT EXISTS assignments_by_team ON assignments(team_id, id);
"""

#: Lifecycle of a call. ``assigned``/``en_route`` go back to ``received`` when their last team is freed
#: before reaching the scene (the call needs a team again); ``cleared`` and ``cancelled`` are final.
CALL_STATUSES = ("received", "assigned", "en_route", "on_scene", "cleared", "cancelled")
OPEN_CALL_STATUSES = ("received", "assigned", "en_route", "on_scene")
CALL_TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"assigned", "cancelled"}),
    "assigned": frozenset({"en_route", "on_scene", "cleared", "cancelled", "received"}),
    "en_route": frozenset({"on_scene", "cleared", "cancelled", "received"}),
    "on_scene": frozenset({"cleared"}),
    "cleared": frozenset(),
    "cancelled": frozenset(),
}
#: Fields that define a call: a call id sent again with these equal is the same call (a retry).
_CALL_FIELDS = ("received", "lat", "lon", "mental_health", "safety_risk", "weapon", "needs_transport", "priority")


_INSERT_POSITION = "INSERT INTO positions (team_id, lat, lon, at, recorded_at) VALUES (?, ?, ?, ?, ?)"
_INSERT_STATUS = ("INSERT INTO status_changes (team_id, old_status, new_status, at, recorded_at) "
                  "VALUES (?, ?, ?, ?, ?)")
_INSERT_CALL_EVENT = ("INSERT INTO call_events (call_id, old_status, new_status, team_id, at, actor, note) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)")


def default_db_path() -> Path:
    """``$CRISIS_DISPATCH_DB`` or ``./crisis-dispatch.db``."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB_NAME)


def _ts(dt: datetime) -> str:
    # Fixed-width UTC ISO strings sort lexicographically in time order.
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _now() -> datetime:
    return datetime.now(UTC)


def order_time(stated: datetime, received: datetime | str | None) -> datetime:
    """The time a report is ordered by: its stated time, or when it arrived if the device was ahead.

    ``received`` ``None`` (a row from before receipt times were kept) orders by the stated time.
    """
    if received is None:
        return stated
    got = _dt(received) if isinstance(received, str) else received
    return min(stated, got)


def clock_ahead_s(stated: datetime, received: datetime) -> float:
    """Seconds the device's stated time was ahead of the server's receipt time (0 if not ahead)."""
    return max(0.0, (stated - received).total_seconds())


def _check_not_ahead(when: datetime, received: datetime, what: str) -> None:
    if (when - received).total_seconds() > MAX_FUTURE_S:
        raise InvalidInput(f"{what} time {when.isoformat()} is in the future: "
                           f"{(when - received).total_seconds():.0f} s ahead of the server clock, more than the "
                           f"{MAX_FUTURE_S:.0f} s allowed for clock skew", field="at")


def _received(received: datetime | None) -> datetime:
    return validate_timestamp(received, "received") if received is not None else _now()


class Store:
    """The fleet state and audit trail in one SQLite file.

    Parameters
    ----------
    path
        Database file (created if missing). ``None``: :func:`default_db_path`.
    fleet
        Fleet file, or a list of :class:`Team`, used only when the database has no teams yet
        (default ``data/fleet.toml``).
    network
        Optional :class:`routing.network.RoadNetwork`; position reports outside its service area are
        rejected (``OutsideServiceArea``).
    now
        Time stamped on the teams' initial positions (default: now).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 fleet: str | os.PathLike[str] | Sequence[Team] | None = None,
                 network: RoadNetwork | None = None, now: datetime | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.network = network
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._spec_cache: dict[str, Team] = {}
        if self.path.parent and not self.path.parent.exists():
            raise InvalidInput(f"database directory does not exist: {self.path.parent}", field="db")
        self._init(fleet, now)

    # ----------------------------------------------------------------- connections
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                con.row_factory = sqlite3.Row
                con.execute("PRAGMA busy_timeout = 30000")
                con.execute("PRAGMA synchronous = FULL")
                con.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise InvalidInput(f"cannot open database {self.path}: {exc}", field="db") from None
            self._local.con = con
            with self._conn_lock:
                self._connections.append(con)
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._con()
        if getattr(self._local, "grouped", False):
            # Inside group(): this write is a savepoint of the group's transaction.
            if not con.in_transaction:
                # SQLite rolled the whole group back (I/O error, disk full): fail the rest of the group
                # too, rather than let each write commit on its own.
                raise sqlite3.OperationalError("the grouped transaction was rolled back")
            con.execute("SAVEPOINT write")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK TO write")
                con.execute("RELEASE write")
                raise
            con.execute("RELEASE write")
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextmanager
    def group(self) -> Iterator[None]:
        """Make every write of this thread inside the block part of one transaction, committed at the end.

        Each write method still runs its own checks, in a SAVEPOINT: a write that raises is rolled back
        alone (its exception propagates to the caller as usual), the others stay. The block costs one
        ``fsync`` instead of one per write; nothing in it is durable before the block exits. Other
        threads and processes are unaffected (they wait on the write lock, as for any transaction).
        Groups do not nest.

        Raises
        ------
        sqlite3.OperationalError
            If the final COMMIT fails; then nothing of the block is stored.
        """
        if getattr(self._local, "grouped", False):
            raise RuntimeError("Store.group() does not nest")
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        self._local.grouped = True
        try:
            yield
        except BaseException:
            self._local.grouped = False
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        self._local.grouped = False
        try:
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # A deferred transaction gives a consistent snapshot across several SELECTs (WAL: no blocking).
        con = self._con()
        if con.in_transaction:  # already inside a caller's transaction (e.g. a grouped commit)
            yield con
            return
        con.execute("BEGIN")
        try:
            yield con
        finally:
            con.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._conn_lock:
            for con in self._connections:
                with suppress(sqlite3.Error):
                    con.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init(self, fleet: str | os.PathLike[str] | Sequence[Team] | None, now: datetime | None) -> None:
        con = self._con()
        try:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            had_index = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'decision_calls'").fetchone() is not None
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InvalidInput(f"{self.path} is not a crisis-dispatch database: {exc}", field="db") from None
        if str(mode).lower() != "wal":
            raise InvalidInput(f"{self.path}: cannot switch to WAL journal mode (got {mode})", field="db")
        with self._write() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None:
                version = int(row[0])
                if version not in (1, 2, SCHEMA_VERSION):
                    raise InvalidInput(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}",
                                       field="db")
                if version == 1:
                    _migrate_1_to_2(con)
                if version <= 2:
                    _migrate_2_to_3(con)
                if not had_index:  # a database from before the call index: build it once
                    con.execute("INSERT INTO decision_calls SELECT d.id, j.value FROM decisions d, "
                                "json_each(d.call_ids) j")
            else:
                self._create_teams(con, fleet, now)
                fleet = None  # just created from it: nothing to compare
        con.executescript(_INDEXES_V3)
        if fleet is not None:
            # An explicit fleet for an existing database must agree with it, never be silently ignored.
            diff = self.fleet_difference(fleet)
            if diff:
                self.close()
                raise InvalidInput(f"the fleet file differs from the database {self.path}: {_diff_text(diff)}; "
                                   "apply it with `crisis-dispatch fleet sync --fleet FILE`, or leave --fleet out",
                                   field="fleet")

    # ----------------------------------------------------------------- fleet file
    def fleet_difference(self, fleet: str | os.PathLike[str] | Sequence[Team] | None) -> dict[str, list[str]]:
        """How a fleet (file or teams) differs from the database's active teams.

        Returns
        -------
        dict
            ``added`` (in the fleet, not in the database or retired there), ``retired`` (active in the
            database, not in the fleet) and ``changed`` (the team's fields differ); empty when they agree.
        """
        teams = load_fleet(fleet) if fleet is None or isinstance(fleet, (str, os.PathLike)) else list(fleet)
        wanted = {t.team_id: json.dumps(t.to_dict(), sort_keys=True) for t in teams}
        stored = {r[0]: r[1] for r in self._con().execute("SELECT team_id, spec FROM teams WHERE retired_at IS NULL")}
        diff = {"added": [t for t in wanted if t not in stored], "retired": [t for t in stored if t not in wanted],
                "changed": [t for t in wanted if t in stored and json.loads(stored[t]) != json.loads(wanted[t])]}
        return {k: v for k, v in diff.items() if v}

    def sync_fleet(self, fleet: str | os.PathLike[str] | Sequence[Team] | None = None, *,
                   now: datetime | None = None) -> dict[str, list[str]]:
        """Make the database's teams those of ``fleet`` (default ``data/fleet.toml``), keeping history.

        New teams start ``available`` at their base; a team missing from the fleet is retired (kept
        with its history, no longer listed nor dispatched); a changed team takes its new fields. A team
        on a call cannot be retired (``Conflict``): clear or cancel the call first.

        Returns
        -------
        dict
            The difference that was applied (see :meth:`fleet_difference`).
        """
        teams = load_fleet(fleet) if fleet is None or isinstance(fleet, (str, os.PathLike)) else list(fleet)
        diff = self.fleet_difference(teams)
        when = _ts(validate_timestamp(now, "now") if now is not None else _now())
        with self._write() as con:
            seq = con.execute("SELECT coalesce(max(seq), -1) FROM teams").fetchone()[0]
            for team in teams:
                spec = json.dumps(team.to_dict(), sort_keys=True)
                if team.team_id in diff.get("added", []):
                    old = con.execute("SELECT 1 FROM teams WHERE team_id = ?", (team.team_id,)).fetchone()
                    if old is not None:  # a retired team back in the fleet: same history, new fields
                        con.execute("UPDATE teams SET retired_at = NULL, spec = ? WHERE team_id = ?",
                                    (spec, team.team_id))
                        continue
                    seq += 1
                    con.execute("INSERT INTO teams (team_id, spec, status, status_time, lat, lon, position_time, "
                                "seq, position_received_at, status_received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (team.team_id, spec, TeamStatus.available.value, when, team.base_lat, team.base_lon,
                                 when, seq, when, when))
                    con.execute(_INSERT_POSITION, (team.team_id, team.base_lat, team.base_lon, when, when))
                    con.execute(_INSERT_STATUS, (team.team_id, None, TeamStatus.available.value, when, when))
                elif team.team_id in diff.get("changed", []):
                    con.execute("UPDATE teams SET spec = ? WHERE team_id = ?", (spec, team.team_id))
            for team_id in diff.get("retired", []):
                busy = con.execute("SELECT call_id FROM assignments WHERE team_id = ? AND released_at IS NULL",
                                   (team_id,)).fetchone()
                if busy is not None:
                    raise Conflict(f"team {team_id} is on call {busy[0]}: clear or cancel it before retiring the "
                                   "team", field="fleet")
                con.execute("UPDATE teams SET retired_at = ? WHERE team_id = ?", (when, team_id))
            source = str(fleet) if isinstance(fleet, (str, os.PathLike)) else "data/fleet.toml" if fleet is None \
                else "<in memory>"
            con.execute("INSERT OR REPLACE INTO meta VALUES ('fleet_source', ?)", (source,))
        return diff

    def _create_teams(self, con: sqlite3.Connection, fleet: str | os.PathLike[str] | Sequence[Team] | None,
                      now: datetime | None) -> None:
        if fleet is None or isinstance(fleet, (str, os.PathLike)):
            teams = load_fleet(fleet)
            source = str(fleet) if fleet is not None else "data/fleet.toml"
        else:  # any sequence of teams, as the signature says (not only a list or tuple)
            teams, source = list(fleet), "<in memory>"
        when = _ts(validate_timestamp(now, "now") if now is not None else _now())
        recorded = _ts(_now())
        for seq, team in enumerate(teams):
            con.execute("INSERT INTO teams (team_id, spec, status, status_time, lat, lon, position_time, seq, "
                        "position_received_at, status_received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (team.team_id, json.dumps(team.to_dict(), sort_keys=True),
                         TeamStatus.available.value, when, team.base_lat, team.base_lon, when, seq,
                         recorded, recorded))
            con.execute(_INSERT_POSITION, (team.team_id, team.base_lat, team.base_lon, when, recorded))
            con.execute(_INSERT_STATUS, (team.team_id, None, TeamStatus.available.value, when, recorded))
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [("schema_version", str(SCHEMA_VERSION)), ("fleet_source", source),
                         ("created_at", recorded)])

    # ----------------------------------------------------------------- teams
    def _state(self, row: sqlite3.Row) -> TeamState:
        spec = row["spec"]
        team = self._spec_cache.get(spec)
        if team is None:
            team = team_from_dict(json.loads(spec))
            self._spec_cache[spec] = team
        return TeamState(team, TeamStatus(row["status"]), float(row["lat"]), float(row["lon"]),
                         _dt(row["position_time"]), _dt(row["status_time"]))

    def teams(self) -> list[TeamState]:
        """Live state of every team, in fleet-file order."""
        rows = self._con().execute("SELECT * FROM teams WHERE retired_at IS NULL ORDER BY seq").fetchall()
        return [self._state(r) for r in rows]

    def team(self, team_id: str) -> TeamState:
        """Live state of one team; raises ``NotFound``."""
        row = self._con().execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown team {team_id!r}", field="team_id")
        return self._state(row)

    def meta(self) -> dict[str, str]:
        """Database metadata (schema version, fleet source, creation time)."""
        return {r[0]: r[1] for r in self._con().execute("SELECT key, value FROM meta")}

    def report_position(self, team_id: str, lat: float, lon: float, at: datetime | str | None = None, *,
                        network: RoadNetwork | None = None, received: datetime | None = None) -> TeamState:
        """Record a position report and make it the team's current position.

        Parameters
        ----------
        team_id
            The team.
        lat, lon
            Position (WGS84).
        at
            When the position was measured (tz-aware, or ISO 8601 with offset); default ``received``.
            Up to :data:`MAX_FUTURE_S` ahead of ``received`` is a fast device clock: stored as stated,
            ordered by ``received`` (see :func:`order_time`).
        network
            Road network for the service-area check (default: the store's).
        received
            Server time the report arrived (default: now); the service passes its request's arrival.

        Returns
        -------
        TeamState
            The new state.

        Raises
        ------
        NotFound
            Unknown team.
        InvalidInput, OutsideServiceArea
            Bad coordinates, a point outside the service area, a time more than :data:`MAX_FUTURE_S`
            ahead of ``received`` (``field="at"``).
        Conflict
            A report whose order time is older than (or as old as, with another position) the stored one's.
        """
        lat, lon = latlon(lat, lon)
        now = _received(received)
        when = validate_timestamp(at, "at") if at is not None else now
        _check_not_ahead(when, now, "position")
        net = network if network is not None else self.network
        if net is not None:
            net.check_point(lat, lon, field="position")
        with self._write() as con:
            row = con.execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown team {team_id!r}", field="team_id")
            stored = _dt(row["position_time"])
            if when == stored and (lat, lon) == (row["lat"], row["lon"]):  # an identical retry: no change
                return self._state(row)
            order, stored_order = order_time(when, now), order_time(stored, row["position_received_at"])
            if order <= stored_order:
                raise Conflict(f"position report for {team_id} at {when.isoformat()} is older than the "
                               f"stored one ({stored.isoformat()}){_order_note(order, when, stored_order, stored)}",
                               field="timestamp")
            ts = _ts(when)
            con.execute("UPDATE teams SET lat = ?, lon = ?, position_time = ?, position_received_at = ? "
                        "WHERE team_id = ?", (lat, lon, ts, _ts(now), team_id))
            con.execute(_INSERT_POSITION, (team_id, lat, lon, ts, _ts(now)))
            row = con.execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
        return self._state(row)

    def set_status(self, team_id: str, status: TeamStatus | str,
                   at: datetime | str | None = None, *, received: datetime | None = None,
                   actor: str = "cli") -> TeamState:
        """Change a team's status, following the lifecycle (:data:`routing.fleet.TRANSITIONS`).

        ``at`` (default ``received``, default now) and ``received`` follow the clock rule of
        :meth:`report_position`: a change stamped ahead of the server clock is ordered by its arrival.
        The team's call follows (see :meth:`set_call_status`): on scene with it; a team freed before the
        scene puts its call back to waiting, freed after it clears the call. ``actor`` signs those events.

        Raises
        ------
        NotFound
            Unknown team.
        InvalidInput
            Unknown status, or a time more than :data:`MAX_FUTURE_S` ahead of ``received`` (``field="at"``).
        Conflict
            An impossible transition, or a change whose order time is older than the last one stored.
        """
        new = parse_status(status)
        now = _received(received)
        when = validate_timestamp(at, "at") if at is not None else now
        _check_not_ahead(when, now, "status")
        with self._write() as con:
            row = con.execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown team {team_id!r}", field="team_id")
            old = TeamStatus(row["status"])
            _check_transition(old, new)
            if old == new:
                return self._state(row)
            self._change_status(con, row, new, when, now)
            self._team_freed(con, team_id, old, new, now, actor)
            row = con.execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
        return self._state(row)

    def _change_status(self, con: sqlite3.Connection, row: sqlite3.Row, new: TeamStatus, when: datetime,
                       now: datetime) -> None:
        # Inside the caller's transaction, after it has checked the transition on ``row``.
        stored = _dt(row["status_time"])
        order, stored_order = order_time(when, now), order_time(stored, row["status_received_at"])
        if order < stored_order:
            raise Conflict(f"status change for {row['team_id']} at {when.isoformat()} is older than the "
                           f"last one ({stored.isoformat()}){_order_note(order, when, stored_order, stored)}",
                           field="timestamp")
        ts = _ts(when)
        con.execute("UPDATE teams SET status = ?, status_time = ?, status_received_at = ? WHERE team_id = ?",
                    (new.value, ts, _ts(now), row["team_id"]))
        con.execute(_INSERT_STATUS, (row["team_id"], row["status"], new.value, ts, _ts(now)))

    def position_history(self, team_id: str, *, limit: int | None = None, before: datetime | str | None = None,
                         after: datetime | str | None = None) -> list[dict[str, Any]]:
        """Position reports of a team, oldest first (``lat``, ``lon``, ``at``, ``recorded_at``), paged in SQL.

        Reports are ordered by their order time (``min(at, recorded_at)``, see :func:`order_time`), on
        an index, so a page costs the same however long the history.

        Parameters
        ----------
        limit
            At most this many: the newest (with ``after``: the oldest after it).
        before, after
            Only reports whose order time is strictly before / after this time (ISO 8601 or tz-aware);
            the ``at`` of a page's first / last report is the cursor of the previous / next page.
        """
        return self._history("positions", "lat, lon, at, recorded_at", team_id, limit, before, after)

    def status_history(self, team_id: str, *, limit: int | None = None, before: datetime | str | None = None,
                       after: datetime | str | None = None) -> list[dict[str, Any]]:
        """Status changes of a team, oldest first, paged as :meth:`position_history`."""
        return self._history("status_changes", "old_status, new_status, at, recorded_at", team_id, limit, before,
                             after)

    def _history(self, table: str, columns: str, team_id: str, limit: int | None, before: datetime | str | None,
                 after: datetime | str | None) -> list[dict[str, Any]]:
        where: list[str] = ["team_id = ?"]
        args: list[Any] = [team_id]
        # The expression matches the index (team_id, min(at, recorded_at), id) exactly.
        if before is not None:
            where.append("min(at, recorded_at) < ?")
            args.append(_ts(validate_timestamp(before, "before")))
        if after is not None:
            where.append("min(at, recorded_at) > ?")
            args.append(_ts(validate_timestamp(after, "after")))
        newest_first = limit is not None and after is None
        sql = (f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)} ORDER BY min(at, recorded_at)"
               + (" DESC, id DESC" if newest_first else ", id"))
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._read() as con:
            if con.execute("SELECT 1 FROM teams WHERE team_id = ?", (team_id,)).fetchone() is None:
                raise NotFound(f"unknown team {team_id!r}", field="team_id")
            rows = con.execute(sql, args).fetchall()
        out = [dict(r) for r in rows]
        if newest_first:
            out.reverse()
        return out

    # ----------------------------------------------------------------- calls and audit trail
    def record_call(self, call: Call, *, actor: str = "cli", received: datetime | None = None) -> None:
        """Store a call; the same id with the same details is a retry (nothing changes).

        Raises
        ------
        Conflict
            The same id recorded with different details (``field="call_id"``, naming the fields).
        InvalidInput
            ``received`` more than :data:`MAX_FUTURE_S` ahead of the server clock (``field="received"``).
        """
        with self._write() as con:
            self._insert_call(con, call, actor=actor, now=_received(received))

    def reconcile_call(self, call: Call, *, received_given: bool = True) -> Call:
        """The call as it will be recorded: a recorded id sent without ``received`` takes the recorded one.

        A client retrying ``POST /calls``, or ``assign --calls`` after ``suggest`` on the same file, sends
        the same call again; when it gave no ``received`` its default (now) must not make it "different".

        Raises
        ------
        Conflict
            The id is recorded with different details (the fields are named).
        InvalidInput
            ``received`` beyond the clock-skew allowance (see :meth:`record_call`).
        """
        row = self._con().execute("SELECT data FROM calls WHERE call_id = ?", (call.call_id,)).fetchone()
        if row is None:
            _check_received(call, _now())
            return call
        stored = Call.from_dict(json.loads(row[0]))
        if not received_given:
            call = replace(call, received=stored.received)
        _check_same_call(stored, call)
        return call

    def _insert_call(self, con: sqlite3.Connection, call: Call, *, actor: str = "cli",
                     now: datetime | None = None) -> None:
        row = con.execute("SELECT data FROM calls WHERE call_id = ?", (call.call_id,)).fetchone()
        if row is not None:
            _check_same_call(Call.from_dict(json.loads(row[0])), call)
            return
        now = now or _now()
        _check_received(call, now)
        data = json.dumps(call.to_dict(), sort_keys=True)
        con.execute("INSERT INTO calls (call_id, received, data, recorded_at, status, status_time) "
                    "VALUES (?, ?, ?, ?, 'received', ?)",
                    (call.call_id, _ts(call.received), data, _ts(now), _ts(now)))
        con.execute(_INSERT_CALL_EVENT, (call.call_id, None, "received", None, _ts(now), actor, None))

    def call(self, call_id: str) -> Call:
        """A recorded call; raises ``NotFound``."""
        row = self._con().execute("SELECT data FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown call {call_id!r}", field="call_id")
        return Call.from_dict(json.loads(row[0]))

    def calls(self, *, status: str | None = None, limit: int | None = None, before: datetime | str | None = None,
              after: datetime | str | None = None) -> list[Call]:
        """Recorded calls, by received time (oldest first); paged as :meth:`call_page`."""
        return [Call.from_dict(r["call"]) for r in self.call_page(status=status, limit=limit, before=before,
                                                                   after=after)]

    def call_page(self, *, status: str | None = None, limit: int | None = None,
                  before: datetime | str | None = None, after: datetime | str | None = None
                  ) -> list[dict[str, Any]]:
        """One page of recorded calls with their status, oldest first, read in SQL (indexed).

        Parameters
        ----------
        status
            A call status, or ``"open"`` (received, assigned, en route or on scene).
        limit
            At most this many: the newest (or, with ``after``, the oldest after it).
        before, after
            Only calls received strictly before / after this time (ISO 8601 or tz-aware): the cursors of
            the previous / next page are the ``received`` of the first / last call of a page.

        Returns
        -------
        list of dict
            ``call`` (the call's fields), ``status``, ``status_time``.
        """
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            statuses = list(OPEN_CALL_STATUSES) if status == "open" else [_call_status(status)]
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += statuses
        if before is not None:
            where.append("received < ?")
            args.append(_ts(validate_timestamp(before, "before")))
        if after is not None:
            where.append("received > ?")
            args.append(_ts(validate_timestamp(after, "after")))
        sql = "SELECT data, status, status_time FROM calls" + (" WHERE " + " AND ".join(where) if where else "")
        newest_first = limit is not None and after is None
        sql += " ORDER BY received DESC, call_id DESC" if newest_first else " ORDER BY received, call_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._con().execute(sql, args).fetchall()
        if newest_first:
            rows.reverse()
        return [{"call": json.loads(r["data"]), "status": r["status"], "status_time": r["status_time"]}
                for r in rows]

    def call_record(self, call_id: str) -> dict[str, Any]:
        """A call with its status, its teams (``assignments``, active ones first-class) and its events."""
        with self._read() as con:
            row = con.execute("SELECT data, status, status_time FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown call {call_id!r}", field="call_id")
            events = [dict(r) for r in con.execute(
                "SELECT id, old_status, new_status, team_id, at, actor, note FROM call_events WHERE call_id = ? "
                "ORDER BY id", (call_id,))]
        assignments = self.assignments(call_id)
        return {"call": json.loads(row["data"]), "status": row["status"], "status_time": row["status_time"],
                "teams": [a["team_id"] for a in assignments if a["released_at"] is None],
                "assignments": assignments, "events": events}

    def call_status(self, call_id: str) -> str:
        """The status of a recorded call; raises ``NotFound``."""
        row = self._con().execute("SELECT status FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown call {call_id!r}", field="call_id")
        return str(row[0])

    def events(self, *, call_id: str | None = None, since: datetime | str | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        """The call audit trail: every status change of calls, oldest first (the newest ``limit``).

        Each event: ``id``, ``call_id``, ``old_status``, ``new_status``, ``team_id``, ``at``, ``actor``
        (a token's name, ``cli`` or ``migration``) and ``note``.
        """
        where: list[str] = []
        args: list[Any] = []
        if call_id is not None:
            where.append("call_id = ?")
            args.append(call_id)
        if since is not None:
            where.append("at >= ?")
            args.append(_ts(validate_timestamp(since, "since")))
        sql = ("SELECT id, call_id, old_status, new_status, team_id, at, actor, note FROM call_events"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = [dict(r) for r in self._con().execute(sql, args)]
        rows.reverse()
        return rows

    def set_call_status(self, call_id: str, status: str, *, actor: str = "cli", note: str | None = None,
                        received: datetime | None = None) -> dict[str, Any]:
        """Move a call along its lifecycle (:data:`CALL_TRANSITIONS`); its teams follow, in one transaction.

        ``on_scene`` puts its en-route teams on scene; ``cleared`` sends its teams ``returning``;
        ``cancelled`` frees its en-route teams (``available``). Setting the status a call already has is
        an idempotent retry.

        Returns
        -------
        dict
            :meth:`call_record` after the change, plus ``changed`` (false for a retry).

        Raises
        ------
        NotFound
            Unknown call.
        Conflict
            A transition the lifecycle does not allow (``field="status"``).
        """
        new = _call_status(status)
        now = _received(received)
        with self._write() as con:
            row = con.execute("SELECT status FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown call {call_id!r}", field="call_id")
            old = row[0]
            changed = old != new
            if changed:
                if new not in CALL_TRANSITIONS[old]:
                    allowed = ", ".join(sorted(CALL_TRANSITIONS[old])) or "none: it is closed"
                    raise Conflict(f"call {call_id} cannot go from {old} to {new} (from {old}: {allowed})",
                                   field="status")
                self._call_teams_follow(con, call_id, new, now)
                self._move_call(con, call_id, old, new, now, actor, None, note)
        return {**self.call_record(call_id), "changed": changed}

    def _move_call(self, con: sqlite3.Connection, call_id: str, old: str | None, new: str, now: datetime,
                   actor: str, team_id: str | None, note: str | None) -> None:
        con.execute("UPDATE calls SET status = ?, status_time = ? WHERE call_id = ?", (new, _ts(now), call_id))
        con.execute(_INSERT_CALL_EVENT, (call_id, old, new, team_id, _ts(now), actor, note))

    def _call_teams_follow(self, con: sqlite3.Connection, call_id: str, new: str, now: datetime) -> None:
        # The teams of a call follow it: on scene with it, returning when it is cleared, free when cancelled.
        target = {"on_scene": TeamStatus.on_scene, "cleared": TeamStatus.returning,
                  "cancelled": TeamStatus.available}.get(new)
        if target is None:
            return
        active = con.execute("SELECT id, team_id FROM assignments WHERE call_id = ? AND released_at IS NULL",
                             (call_id,)).fetchall()
        for aid, team_id in active:
            row = con.execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
            status = TeamStatus(row["status"])
            if new == "on_scene":
                if status is TeamStatus.en_route:
                    self._change_status(con, row, TeamStatus.on_scene, now, now)
                continue
            if status in (TeamStatus.en_route, TeamStatus.on_scene, TeamStatus.transporting) and status != target:
                goal = TeamStatus.returning if status is not TeamStatus.en_route or new == "cleared" else target
                _check_transition(status, goal)
                self._change_status(con, row, goal, now, now)
            con.execute("UPDATE assignments SET released_at = ? WHERE id = ?", (_ts(now), aid))

    def _team_freed(self, con: sqlite3.Connection, team_id: str, old: TeamStatus, new: TeamStatus,
                    now: datetime, actor: str) -> None:
        # A team's own status change moves its call where natural: on scene with it; when the team is
        # freed, the call goes back to waiting (freed on the way) or is cleared (freed after the scene).
        active = con.execute("SELECT a.id, a.call_id, c.status FROM assignments a JOIN calls c USING (call_id) "
                             "WHERE a.team_id = ? AND a.released_at IS NULL", (team_id,)).fetchall()
        for aid, call_id, call_status in active:
            if new is TeamStatus.on_scene:
                if call_status in ("assigned", "en_route"):
                    self._move_call(con, call_id, call_status, "on_scene", now, actor, team_id,
                                    f"team {team_id} on scene")
                continue
            if new in (TeamStatus.en_route, TeamStatus.transporting):
                continue
            con.execute("UPDATE assignments SET released_at = ? WHERE id = ?", (_ts(now), aid))
            left = con.execute("SELECT count(*) FROM assignments WHERE call_id = ? AND released_at IS NULL",
                               (call_id,)).fetchone()[0]
            if left:
                continue
            if call_status in ("assigned", "en_route"):
                self._move_call(con, call_id, call_status, "received", now, actor, team_id,
                                f"team {team_id} went {new.value} before reaching the scene: the call waits again")
            elif call_status == "on_scene":
                self._move_call(con, call_id, call_status, "cleared", now, actor, team_id,
                                f"team {team_id} went {new.value} after the scene")

    def active_assignment(self, team_id: str) -> dict[str, Any] | None:
        """The call a team is on now (its unreleased assignment), or ``None``."""
        row = self._con().execute("SELECT call_id, created_at, additional FROM assignments WHERE team_id = ? "
                                  "AND released_at IS NULL ORDER BY id DESC LIMIT 1", (team_id,)).fetchone()
        return dict(row) if row is not None else None

    def _pack_inputs(self, con: sqlite3.Connection, inputs: dict[str, Any]) -> str:
        # Large inputs (the fleet snapshot, the rules) repeat across decisions: store each once by digest.
        packed: dict[str, Any] = {}
        for key, value in inputs.items():
            text = json.dumps(value, sort_keys=True, default=str)
            if len(text) >= _SNAPSHOT_MIN_BYTES:
                digest = hashlib.sha256(text.encode()).hexdigest()
                con.execute("INSERT OR IGNORE INTO snapshots VALUES (?, ?)", (digest, text))
                packed[key] = {"$snapshot": digest}
            else:
                packed[key] = value
        return json.dumps(packed, sort_keys=True, default=str)

    def _insert_decision(self, con: sqlite3.Connection, kind: str, calls: Sequence[Call],
                         result: dict[str, Any], inputs: dict[str, Any], actor: str = "cli") -> int:
        for c in calls:
            self._insert_call(con, c, actor=actor)
        cur = con.execute("INSERT INTO decisions (kind, created_at, call_ids, inputs, result) "
                          "VALUES (?, ?, ?, ?, ?)",
                          (kind, _ts(_now()), json.dumps([c.call_id for c in calls]),
                           self._pack_inputs(con, inputs), json.dumps(result, sort_keys=True, default=str)))
        assert cur.lastrowid is not None  # set by the INSERT
        did = int(cur.lastrowid)
        con.executemany("INSERT INTO decision_calls VALUES (?, ?)", [(did, c.call_id) for c in calls])
        return did

    def record_suggestion(self, result: SuggestionResult, inputs: dict[str, Any] | None = None, *,
                          actor: str = "cli") -> int:
        """Write a suggestion (a ``SuggestionResult``) and its inputs to the audit trail; returns its id."""
        return self.record_suggestions([result], inputs, actor=actor)[0]

    def record_suggestions(self, results: Sequence[SuggestionResult], inputs: dict[str, Any] | None = None,
                           *, actor: str = "cli") -> list[int]:
        """Write many suggestions computed from the same inputs, in one transaction."""
        with self._write() as con:
            return [self._insert_decision(con, "suggestion", [r.call], _jsonable(r), inputs or {}, actor)
                    for r in results]

    def record_assignment(self, result: AssignmentResult, calls: Sequence[Call],
                          inputs: dict[str, Any] | None = None) -> int:
        """Write a joint assignment (an ``AssignmentResult``), its calls and inputs; returns its id.

        Only the audit trail: the teams' statuses are not changed (see :meth:`assign` for that).
        """
        with self._write() as con:
            return self._insert_assignment(con, result, calls, inputs)

    def _insert_assignment(self, con: sqlite3.Connection, result: AssignmentResult, calls: Sequence[Call],
                           inputs: dict[str, Any] | None, *, actor: str = "cli", additional: bool = False,
                           lifecycle: bool = False) -> int:
        did = self._insert_decision(con, "assignment", list(calls), _jsonable(result), inputs or {}, actor)
        now = _now()
        created = _ts(now)
        for a in result.assignments:
            if lifecycle:
                self._check_call_takes(con, a.call_id, a.team_id, additional)
            con.execute("INSERT INTO assignments (decision_id, call_id, team_id, team_type, eta_s, tier, "
                        "created_at, additional, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (did, a.call_id, a.team_id, str(a.team_type), a.eta_s, a.tier, created,
                         int(additional), actor))
            if lifecycle:
                old = con.execute("SELECT status FROM calls WHERE call_id = ?", (a.call_id,)).fetchone()[0]
                if old == "received":
                    self._move_call(con, a.call_id, old, "assigned", now, actor, a.team_id, None)
                else:  # an additional team: the call keeps its stage, the event says who joined
                    self._move_call(con, a.call_id, old, old, now, actor, a.team_id, f"additional team {a.team_id}")
        return did

    def _check_call_takes(self, con: sqlite3.Connection, call_id: str, team_id: str, additional: bool) -> None:
        # Inside the transaction: a closed call takes no team, a call with a team takes another only
        # when asked (an EMS car backing a co-response car), and never the same one twice.
        status = con.execute("SELECT status FROM calls WHERE call_id = ?", (call_id,)).fetchone()[0]
        if status not in OPEN_CALL_STATUSES:
            raise Conflict(f"call {call_id} is {status}: it takes no team", field="call_id")
        active = [r[0] for r in con.execute("SELECT team_id FROM assignments WHERE call_id = ? AND "
                                            "released_at IS NULL ORDER BY id", (call_id,))]
        if team_id in active:
            raise Conflict(f"team {team_id} is already on call {call_id}", field="team_id")
        if active and not additional:
            raise Conflict(f"call {call_id} already has {', '.join(active)} ({status}); send another team "
                           "only as an additional one (\"additional\": true, CLI --additional)", field="call_id")

    def assign(self, result: AssignmentResult, calls: Sequence[Call] | None = None,
               inputs: dict[str, Any] | None = None, *, at: datetime | str | None = None,
               unchanged: Mapping[str, TeamState] | None = None, received: datetime | None = None,
               actor: str = "cli", additional: bool = False) -> int:
        """Record an assignment decision and send its teams ``en_route``, in one transaction.

        Inside the transaction (under SQLite's write lock, so also against other processes on the same
        file) every assigned team is re-read and must still be dispatchable; otherwise nothing is
        written. Two callers racing for one team, in one process or two, get one success and one
        ``Conflict``.

        Parameters
        ----------
        result
            An ``AssignmentResult`` (its ``assignments`` name the teams; one team at most once).
        calls
            The calls to record with it (default ``result.calls``).
        inputs
            Decision inputs for the audit trail (see ``routing.dispatch.decision_inputs``).
        at
            Time of the status changes (tz-aware or ISO 8601; default ``received``); ahead of ``received``
            by at most :data:`MAX_FUTURE_S`, ordered as in :meth:`report_position`.
        unchanged
            Team states the decision was computed from: a listed team whose status or position differs
            from it now is a ``Conflict`` (``field="teams"``), so a plan made from an outdated snapshot is
            not applied.
        received
            Server time the decision arrived (default: now).
        actor
            Who decided (a token's name, ``cli``), for the call's events.
        additional
            Send the teams even to calls that already have one (recorded as additional); otherwise such
            a call, or a closed one, is a ``Conflict`` (``field="call_id"``).

        Returns
        -------
        int
            The decision id.

        Raises
        ------
        NotFound
            An unknown team.
        Conflict
            A team not dispatchable any more (``field="team_id"``), changed since ``unchanged``
            (``field="teams"``), assigned twice in ``result``, a status time older than the team's last
            change (``field="timestamp"``), or a call id recorded with other details (``field="call_id"``).
        InvalidInput
            ``at`` malformed or more than :data:`MAX_FUTURE_S` ahead of ``received``.
        """
        now = _received(received)
        when = validate_timestamp(at, "at") if at is not None else now
        _check_not_ahead(when, now, "assignment")
        team_ids = [a.team_id for a in result.assignments]
        if len(set(team_ids)) != len(team_ids):
            dup = next(t for t in team_ids if team_ids.count(t) > 1)
            raise Conflict(f"team {dup} is assigned to more than one call", field="team_id")
        with self._write() as con:
            rows = []
            for team_id in team_ids:
                row = con.execute("SELECT * FROM teams WHERE team_id = ?", (team_id,)).fetchone()
                if row is None:
                    raise NotFound(f"unknown team {team_id!r}", field="team_id")
                status = TeamStatus(row["status"])
                before = unchanged.get(team_id) if unchanged is not None else None
                if before is not None and (status, float(row["lat"]), float(row["lon"])) != (
                        before.status, before.lat, before.lon):
                    raise Conflict(f"team {team_id} changed ({status.value}) since the plan was computed; "
                                   "compute it again", field="teams")
                if status not in DISPATCHABLE:
                    raise Conflict(f"team {team_id} is {status.value}, not dispatchable "
                                   "(available or returning)", field="team_id")
                rows.append(row)
            did = self._insert_assignment(con, result, list(calls) if calls is not None else result.calls,
                                          inputs, actor=actor, additional=additional, lifecycle=True)
            for row in rows:
                _check_transition(TeamStatus(row["status"]), TeamStatus.en_route)
                self._change_status(con, row, TeamStatus.en_route, when, now)
        return did

    def apply_plan(self, result: AssignmentResult, inputs: dict[str, Any] | None = None, *,
                   snapshot: Mapping[str, TeamState],
                   reprice: Callable[[Assignment, TeamState], Assignment | None],
                   at: datetime | str | None = None, received: datetime | None = None,
                   actor: str = "cli") -> dict[str, Any]:
        """Apply a joint plan to a moving fleet: what is still possible goes through, in one transaction.

        Inside the transaction every chosen team and call is re-read. A team that moved since
        ``snapshot`` (a locator report) keeps its assignment with the ETA recomputed by ``reprice``
        from where it is now; a team no longer dispatchable, a move ``reprice`` finds impossible
        (``None``), or a call that is no longer waiting (assigned meanwhile, cancelled) drops that one
        assignment, which is reported, not the whole plan. Running the same plan twice changes nothing
        the second time: its calls are no longer waiting.

        Parameters
        ----------
        result
            The plan (an ``AssignmentResult``); its ``calls`` are recorded with it.
        inputs
            Decision inputs for the audit trail.
        snapshot
            Team states the plan was computed from.
        reprice
            ``reprice(assignment, team_now)`` → the assignment with the ETA from the team's current
            position, or ``None`` if the call cannot be reached from there.
        at, received, actor
            As for :meth:`assign`.

        Returns
        -------
        dict
            ``decision_id`` (``None`` when nothing was applied), ``assignments`` (applied, as dicts),
            ``repriced`` ({call_id, team_id, moved, eta_before_s, eta_s}), ``refused`` ({call_id,
            team_id, reason}) and ``skipped`` ({call_id, status}: calls that were not waiting).
        """
        now = _received(received)
        when = validate_timestamp(at, "at") if at is not None else now
        _check_not_ahead(when, now, "assignment")
        applied: list[Any] = []
        repriced: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        with self._write() as con:
            waiting = []
            for c in result.calls:
                row = con.execute("SELECT status FROM calls WHERE call_id = ?", (c.call_id,)).fetchone()
                if row is not None and row[0] != "received":
                    skipped.append({"call_id": c.call_id, "status": row[0]})
                else:
                    waiting.append(c.call_id)
            rows = []
            for a in result.assignments:
                if a.call_id not in waiting:
                    continue
                row = con.execute("SELECT * FROM teams WHERE team_id = ?", (a.team_id,)).fetchone()
                if row is None or row["retired_at"] is not None:
                    refused.append({"call_id": a.call_id, "team_id": a.team_id,
                                    "reason": "team no longer in the fleet"})
                    continue
                status = TeamStatus(row["status"])
                if status not in DISPATCHABLE:
                    busy = con.execute("SELECT call_id FROM assignments WHERE team_id = ? AND released_at IS NULL",
                                       (a.team_id,)).fetchone()
                    refused.append({"call_id": a.call_id, "team_id": a.team_id,
                                    "reason": f"team {a.team_id} is {status.value}"
                                              + (f" (on call {busy[0]})" if busy else "") + ", not dispatchable"})
                    continue
                before = snapshot.get(a.team_id)
                now_state = self._state(row)
                if before is not None and (now_state.lat, now_state.lon) != (before.lat, before.lon):
                    new = reprice(a, now_state)
                    if new is None:
                        refused.append({"call_id": a.call_id, "team_id": a.team_id,
                                        "reason": f"team {a.team_id} moved and cannot reach the call from there"})
                        continue
                    repriced.append({"call_id": a.call_id, "team_id": a.team_id,
                                     "moved_from": [before.lat, before.lon], "moved_to": [now_state.lat, now_state.lon],
                                     "eta_before_s": round(a.eta_s, 1), "eta_s": round(new.eta_s, 1)})
                    a = new
                applied.append(a)
                rows.append(row)
            if not applied:
                return {"decision_id": None, "assignments": [], "repriced": repriced, "refused": refused,
                        "skipped": skipped}
            from routing.dispatch import Unserved

            final = replace(result, assignments=applied,
                            unserved=[*result.unserved,
                                      *(Unserved(r["call_id"], r["reason"]) for r in refused)])
            calls = [c for c in result.calls if c.call_id in waiting]
            did = self._insert_assignment(con, final, calls, inputs, actor=actor, lifecycle=True)
            for row in rows:
                _check_transition(TeamStatus(row["status"]), TeamStatus.en_route)
                self._change_status(con, row, TeamStatus.en_route, when, now)
        return {"decision_id": did, "assignments": [a.to_dict() for a in applied], "repriced": repriced,
                "refused": refused, "skipped": skipped}

    def decisions(self, kind: str | None = None, *, call_id: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
        """Audit-trail entries, newest first (``id``, ``kind``, ``created_at``, ``call_ids``, ``result``).

        Parameters
        ----------
        kind
            Only ``"suggestion"`` or ``"assignment"`` entries.
        call_id
            Only the entries about this call (a joint assignment is about each of its calls).
        limit
            At most this many (the newest).
        """
        sql = "SELECT id, kind, created_at, call_ids, result FROM decisions"
        where: list[str] = []
        args: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if call_id is not None:
            where.append("id IN (SELECT decision_id FROM decision_calls WHERE call_id = ?)")
            args.append(call_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._con().execute(sql, args).fetchall()
        return [{"id": r["id"], "kind": r["kind"], "created_at": r["created_at"],
                 "call_ids": json.loads(r["call_ids"]), "result": json.loads(r["result"])} for r in rows]

    def decision(self, decision_id: int) -> dict[str, Any]:
        """One audit-trail entry with its inputs expanded; raises ``NotFound``."""
        with self._read() as con:
            row = con.execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown decision {decision_id}", field="decision_id")
            inputs = json.loads(row["inputs"])
            for key, value in list(inputs.items()):
                if isinstance(value, dict) and set(value) == {"$snapshot"}:
                    snap = con.execute("SELECT data FROM snapshots WHERE digest = ?", (value["$snapshot"],))
                    inputs[key] = json.loads(snap.fetchone()[0])
        return {"id": row["id"], "kind": row["kind"], "created_at": row["created_at"],
                "call_ids": json.loads(row["call_ids"]), "inputs": inputs,
                "result": json.loads(row["result"])}

    def assignments(self, call_id: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded assignments, oldest first (``decision_id``, ``call_id``, ``team_id``, ``eta_s``, ...,
        ``additional``, ``released_at``: when the team left the call, ``actor``); ``limit``: the newest N."""
        sql = ("SELECT decision_id, call_id, team_id, team_type, eta_s, tier, created_at, additional, released_at, "
               "actor FROM assignments")
        args: list[Any] = []
        if call_id is not None:
            sql += " WHERE call_id = ?"
            args.append(call_id)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = [dict(r) for r in self._con().execute(sql, args).fetchall()]
        rows.reverse()
        for r in rows:
            r["additional"] = bool(r["additional"])
        return rows


def _order_note(order: datetime, when: datetime, stored_order: datetime, stored: datetime) -> str:
    # Only when a clock was ahead does the order time differ from the stated one: then say which was used.
    if (order, stored_order) == (when, stored):
        return ""
    return (f"; compared on arrival for a clock ahead of the server: {order.isoformat()} vs "
            f"{stored_order.isoformat()}")


def _migrate_1_to_2(con: sqlite3.Connection) -> None:
    """Add the receipt-time columns of version 2 to a version-1 file (inside the caller's transaction).

    Checked column by column, so a file half-migrated by an interrupted run (impossible inside one
    transaction, but cheap to allow) is finished rather than refused. The receipt time of each team's
    current report is taken from its history row (``recorded_at``); a team without one keeps NULL,
    ordered by its stated time as before.
    """
    columns = {r[1] for r in con.execute("PRAGMA table_info(teams)")}
    for name in ("position_received_at", "status_received_at"):
        if name not in columns:
            con.execute(f"ALTER TABLE teams ADD COLUMN {name} TEXT")
    con.execute("UPDATE teams SET position_received_at = (SELECT p.recorded_at FROM positions p WHERE "
                "p.team_id = teams.team_id AND p.at = teams.position_time ORDER BY p.id DESC LIMIT 1) "
                "WHERE position_received_at IS NULL")
    con.execute("UPDATE teams SET status_received_at = (SELECT s.recorded_at FROM status_changes s WHERE "
                "s.team_id = teams.team_id AND s.at = teams.status_time ORDER BY s.id DESC LIMIT 1) "
                "WHERE status_received_at IS NULL")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def _migrate_2_to_3(con: sqlite3.Connection) -> None:
    """Add the call lifecycle of version 3 to a version-2 file (inside the caller's transaction).

    A call's status is derived from its assignments: none, ``received``; its latest assigned team still
    busy and not sent elsewhere since, that team's stage (``en_route`` or ``on_scene``); otherwise the
    team has been freed since, so the call was dealt with: ``cleared``. Each derivation is recorded as
    an event by the actor ``migration``.
    """
    for table, name, decl in (("calls", "status", "TEXT NOT NULL DEFAULT 'received'"),
                              ("calls", "status_time", "TEXT"),
                              ("assignments", "additional", "INTEGER NOT NULL DEFAULT 0"),
                              ("assignments", "released_at", "TEXT"), ("assignments", "actor", "TEXT"),
                              ("teams", "retired_at", "TEXT")):
        if name not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    now = _ts(_now())
    latest = {}  # team -> id of its latest assignment: only that one can still be active
    for r in con.execute("SELECT team_id, max(id) FROM assignments GROUP BY team_id"):
        latest[r[0]] = r[1]
    teams = {r[0]: r[1] for r in con.execute("SELECT team_id, status FROM teams")}
    for call_id, in con.execute("SELECT call_id FROM calls").fetchall():
        rows = con.execute("SELECT id, team_id FROM assignments WHERE call_id = ? ORDER BY id",
                           (call_id,)).fetchall()
        status = "received"
        for aid, team_id in rows:
            team_status = teams.get(team_id)
            active = latest.get(team_id) == aid and team_status in ("en_route", "on_scene", "transporting")
            if not active:
                con.execute("UPDATE assignments SET released_at = ? WHERE id = ?", (now, aid))
        if rows:
            aid, team_id = rows[-1]
            team_status = teams.get(team_id)
            if latest.get(team_id) == aid and team_status == "en_route":
                status = "en_route"
            elif latest.get(team_id) == aid and team_status in ("on_scene", "transporting"):
                status = "on_scene"
            else:
                status = "cleared"
        con.execute("UPDATE calls SET status = ?, status_time = ? WHERE call_id = ?", (status, now, call_id))
        con.execute(_INSERT_CALL_EVENT, (call_id, None, status, rows[-1][1] if rows else None, now, "migration",
                                         "status derived from the assignments when migrating to schema 3"))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _check_transition(old: TeamStatus, new: TeamStatus) -> None:
    # The lifecycle check of routing.fleet, with the offending field named for the caller.
    try:
        check_transition(old, new)
    except Conflict as exc:
        if exc.field is None:
            exc.field = "status"
        raise


def _check_same_call(stored: Call, new: Call) -> None:
    # The fields that define a call; neighborhood and district are derived from the location.
    differ = [f for f in _CALL_FIELDS if getattr(stored, f) != getattr(new, f)]
    if differ:
        detail = ", ".join(f"{f} {getattr(stored, f)!s} vs {getattr(new, f)!s}" for f in differ)
        raise Conflict(f"call {new.call_id!r} was already recorded with different details ({detail}; recorded "
                       "vs sent): a new call needs a new id", field="call_id")


def _diff_text(diff: Mapping[str, Sequence[str]]) -> str:
    return "; ".join(f"{k} {', '.join(v)}" for k, v in diff.items())


def _check_received(call: Call, now: datetime) -> None:
    ahead = (call.received - now).total_seconds()
    if ahead > MAX_FUTURE_S:
        raise InvalidInput(f"received time {call.received.isoformat()} of call {call.call_id} is {ahead:.0f} s "
                           f"ahead of the server clock, more than the {MAX_FUTURE_S:.0f} s allowed for clock skew",
                           field="received")


def _call_status(status: str) -> str:
    if status not in CALL_STATUSES:
        raise InvalidInput(f"unknown call status {status!r} (one of: {', '.join(CALL_STATUSES)}, or open)",
                           field="status")
    return status


def _jsonable(result: SuggestionResult | AssignmentResult | Mapping[str, Any]) -> dict[str, Any]:
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)



