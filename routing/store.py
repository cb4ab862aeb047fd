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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
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
    from routing.dispatch import AssignmentResult, SuggestionResult
    from routing.network import RoadNetwork

DB_ENV = "CRISIS_DISPATCH_DB"
DEFAULT_DB_NAME = "crisis-dispatch.db"
#: 2: ``teams.position_received_at`` and ``teams.status_received_at`` (a version-1 file is migrated on open).
SCHEMA_VERSION = 2
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
    status_received_at TEXT
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
    recorded_at TEXT NOT NULL
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
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assignments_by_call ON assignments(call_id);
"""


_INSERT_POSITION = "INSERT INTO positions (team_id, lat, lon, at, recorded_at) VALUES (?, ?, ?, ?, ?)"
_INSERT_STATUS = ("INSERT INTO status_changes (team_id, old_status, new_status, at, recorded_at) "
                  "VALUES (?, ?, ?, ?, ?)")


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
                if version == 1:
                    _migrate_1_to_2(con)
                elif version != SCHEMA_VERSION:
                    raise InvalidInput(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}",
                                       field="db")
                if not had_index:  # a database from before the call index: build it once
                    con.execute("INSERT INTO decision_calls SELECT d.id, j.value FROM decisions d, "
                                "json_each(d.call_ids) j")
                return
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
        rows = self._con().execute("SELECT * FROM teams ORDER BY seq").fetchall()
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
                   at: datetime | str | None = None, *, received: datetime | None = None) -> TeamState:
        """Change a team's status, following the lifecycle (:data:`routing.fleet.TRANSITIONS`).

        ``at`` (default ``received``, default now) and ``received`` follow the clock rule of
        :meth:`report_position`: a change stamped ahead of the server clock is ordered by its arrival.

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

    def position_history(self, team_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Every position report of a team, oldest first (``lat``, ``lon``, ``at``, ``recorded_at``)."""
        with self._read() as con:
            if con.execute("SELECT 1 FROM teams WHERE team_id = ?", (team_id,)).fetchone() is None:
                raise NotFound(f"unknown team {team_id!r}", field="team_id")
            # Order time, as for the live row: a report from a fast clock sorts where it arrived.
            rows = con.execute("SELECT lat, lon, at, recorded_at FROM positions WHERE team_id = ? "
                               "ORDER BY min(at, recorded_at), id", (team_id,)).fetchall()
        out = [dict(r) for r in rows]
        return out[-limit:] if limit else out

    def status_history(self, team_id: str) -> list[dict[str, Any]]:
        """Every status change of a team, oldest first."""
        with self._read() as con:
            if con.execute("SELECT 1 FROM teams WHERE team_id = ?", (team_id,)).fetchone() is None:
                raise NotFound(f"unknown team {team_id!r}", field="team_id")
            rows = con.execute("SELECT old_status, new_status, at, recorded_at FROM status_changes "
                               "WHERE team_id = ? ORDER BY min(at, recorded_at), id", (team_id,)).fetchall()
        return [dict(r) for r in rows]

    # ----------------------------------------------------------------- calls and audit trail
    def record_call(self, call: Call) -> None:
        """Store a call; the same id with different content is a ``Conflict``."""
        with self._write() as con:
            self._insert_call(con, call)

    def _insert_call(self, con: sqlite3.Connection, call: Call) -> None:
        data = json.dumps(call.to_dict(), sort_keys=True)
        row = con.execute("SELECT data FROM calls WHERE call_id = ?", (call.call_id,)).fetchone()
        if row is not None:
            if _same_call(row[0], data):
                return
            raise Conflict(f"call {call.call_id!r} was already recorded with different details", field="call_id")
        con.execute("INSERT INTO calls VALUES (?, ?, ?, ?)",
                    (call.call_id, _ts(call.received), data, _ts(_now())))

    def call(self, call_id: str) -> Call:
        """A recorded call; raises ``NotFound``."""
        row = self._con().execute("SELECT data FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown call {call_id!r}", field="call_id")
        return Call.from_dict(json.loads(row[0]))

    def calls(self) -> list[Call]:
        """Every recorded call, by received time."""
        rows = self._con().execute("SELECT data FROM calls ORDER BY received, call_id").fetchall()
        return [Call.from_dict(json.loads(r[0])) for r in rows]

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
                         result: dict[str, Any], inputs: dict[str, Any]) -> int:
        for c in calls:
            self._insert_call(con, c)
        cur = con.execute("INSERT INTO decisions (kind, created_at, call_ids, inputs, result) "
                          "VALUES (?, ?, ?, ?, ?)",
                          (kind, _ts(_now()), json.dumps([c.call_id for c in calls]),
                           self._pack_inputs(con, inputs), json.dumps(result, sort_keys=True, default=str)))
        assert cur.lastrowid is not None  # set by the INSERT
        did = int(cur.lastrowid)
        con.executemany("INSERT INTO decision_calls VALUES (?, ?)", [(did, c.call_id) for c in calls])
        return did

    def record_suggestion(self, result: SuggestionResult, inputs: dict[str, Any] | None = None) -> int:
        """Write a suggestion (a ``SuggestionResult``) and its inputs to the audit trail; returns its id."""
        return self.record_suggestions([result], inputs)[0]

    def record_suggestions(self, results: Sequence[SuggestionResult], inputs: dict[str, Any] | None = None
                           ) -> list[int]:
        """Write many suggestions computed from the same inputs, in one transaction."""
        with self._write() as con:
            return [self._insert_decision(con, "suggestion", [r.call], _jsonable(r), inputs or {})
                    for r in results]

    def record_assignment(self, result: AssignmentResult, calls: Sequence[Call],
                          inputs: dict[str, Any] | None = None) -> int:
        """Write a joint assignment (an ``AssignmentResult``), its calls and inputs; returns its id.

        Only the audit trail: the teams' statuses are not changed (see :meth:`assign` for that).
        """
        with self._write() as con:
            return self._insert_assignment(con, result, calls, inputs)

    def _insert_assignment(self, con: sqlite3.Connection, result: AssignmentResult, calls: Sequence[Call],
                           inputs: dict[str, Any] | None) -> int:
        did = self._insert_decision(con, "assignment", list(calls), _jsonable(result), inputs or {})
        created = _ts(_now())
        for a in result.assignments:
            con.execute("INSERT INTO assignments (decision_id, call_id, team_id, team_type, eta_s, tier, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (did, a.call_id, a.team_id, str(a.team_type), a.eta_s, a.tier, created))
        return did

    def assign(self, result: AssignmentResult, calls: Sequence[Call] | None = None,
               inputs: dict[str, Any] | None = None, *, at: datetime | str | None = None,
               unchanged: Mapping[str, TeamState] | None = None, received: datetime | None = None) -> int:
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
                                          inputs)
            for row in rows:
                _check_transition(TeamStatus(row["status"]), TeamStatus.en_route)
                self._change_status(con, row, TeamStatus.en_route, when, now)
        return did

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

    def assignments(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded assignments, oldest first (``decision_id``, ``call_id``, ``team_id``, ``eta_s``...)."""
        sql = "SELECT decision_id, call_id, team_id, team_type, eta_s, tier, created_at FROM assignments"
        args: tuple[Any, ...] = ()
        if call_id is not None:
            sql += " WHERE call_id = ?"
            args = (call_id,)
        return [dict(r) for r in self._con().execute(sql + " ORDER BY id", args).fetchall()]


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
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _check_transition(old: TeamStatus, new: TeamStatus) -> None:
    # The lifecycle check of routing.fleet, with the offending field named for the caller.
    try:
        check_transition(old, new)
    except Conflict as exc:
        if exc.field is None:
            exc.field = "status"
        raise


def _same_call(stored: str, new: str) -> bool:
    return json.loads(stored) == json.loads(new)


def _jsonable(result: SuggestionResult | AssignmentResult | Mapping[str, Any]) -> dict[str, Any]:
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)



