"""SQLite store: creation from the fleet, position history, lifecycle, rejected writes, concurrency,
durability across kill -9, and the audit trail."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from routing.errors import Conflict, InvalidInput, NotFound, OutsideServiceArea
from routing.fleet import TeamStatus, load_fleet
from routing.store import Store
from routing.triage import Call

T0 = datetime(2025, 5, 6, 18, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "fleet.db", now=T0)
    yield s
    s.close()


def _snapshot(s: Store, team_id: str) -> tuple:
    ts = s.team(team_id)
    return (ts.status, ts.lat, ts.lon, ts.position_time, ts.status_time, len(s.position_history(team_id)),
            len(s.status_history(team_id)))


def test_created_from_the_fleet_file(store: Store) -> None:
    fleet = load_fleet()
    teams = store.teams()
    assert [t.team_id for t in teams] == [t.team_id for t in fleet]
    for ts, team in zip(teams, fleet, strict=True):
        assert ts.team == team
        assert ts.status is TeamStatus.available
        assert (ts.lat, ts.lon, ts.position_time) == (team.base_lat, team.base_lon, T0)
    assert store.meta()["schema_version"] == "1"


def test_database_settings_are_wal_and_full_sync(store: Store) -> None:
    con = store._con()
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_positions_keep_history_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    with Store(path, now=T0) as s:
        s.report_position("EC-1", 42.34, -71.07, at=T0 + timedelta(minutes=1))
        s.report_position("EC-1", 42.35, -71.06, at=T0 + timedelta(minutes=2))
    with Store(path) as s:  # a new process would see the same
        ts = s.team("EC-1")
        assert (ts.lat, ts.lon, ts.position_time) == (42.35, -71.06, T0 + timedelta(minutes=2))
        hist = s.position_history("EC-1")
        assert [(h["lat"], h["lon"]) for h in hist] == [(42.333838, -71.072217), (42.34, -71.07), (42.35, -71.06)]


def test_rejected_position_reports_change_nothing(store: Store, boston) -> None:
    store.report_position("P-A1", 42.36, -71.06, at=T0 + timedelta(minutes=5))
    before = _snapshot(store, "P-A1")
    with pytest.raises(Conflict, match="older than the stored"):
        store.report_position("P-A1", 42.35, -71.05, at=T0 + timedelta(minutes=4))
    with pytest.raises(Conflict):  # same time, different place
        store.report_position("P-A1", 42.35, -71.05, at=T0 + timedelta(minutes=5))
    with pytest.raises(OutsideServiceArea):  # Providence, RI
        store.report_position("P-A1", 41.824, -71.4128, at=T0 + timedelta(minutes=6), network=boston)
    with pytest.raises(InvalidInput) as err:
        store.report_position("P-A1", float("nan"), -71.05, at=T0 + timedelta(minutes=6))
    assert err.value.field == "lat"
    with pytest.raises(InvalidInput, match="future"):
        store.report_position("P-A1", 42.35, -71.05, at=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(InvalidInput):
        store.report_position("P-A1", 42.35, -71.05, at="2025-05-06 14:00")  # no offset
    assert _snapshot(store, "P-A1") == before
    with pytest.raises(NotFound):
        store.report_position("NOPE", 42.35, -71.05)
    # An identical retry is accepted and changes nothing either.
    store.report_position("P-A1", 42.36, -71.06, at=T0 + timedelta(minutes=5))
    assert _snapshot(store, "P-A1") == before


def test_status_lifecycle_and_rejections(store: Store) -> None:
    t = T0 + timedelta(minutes=1)
    for i, status in enumerate(["en_route", "on_scene", "transporting", "returning", "available"]):
        assert store.set_status("EMS-CT", status, at=t + timedelta(minutes=i)).status.value == status
    assert [h["new_status"] for h in store.status_history("EMS-CT")] == [
        "available", "en_route", "on_scene", "transporting", "returning", "available"]
    before = _snapshot(store, "EMS-CT")
    with pytest.raises(Conflict, match="cannot go from available to on_scene"):
        store.set_status("EMS-CT", "on_scene", at=t + timedelta(minutes=10))
    with pytest.raises(Conflict, match="older"):
        store.set_status("EMS-CT", "en_route", at=t)
    with pytest.raises(InvalidInput):
        store.set_status("EMS-CT", "sleeping")
    with pytest.raises(NotFound):
        store.set_status("NOPE", "en_route")
    assert _snapshot(store, "EMS-CT") == before


def test_concurrent_writers_and_readers(store: Store) -> None:
    teams = [t.team_id for t in store.teams()][:8]
    errors: list[BaseException] = []
    reads = [0]
    stop = threading.Event()

    def writer(team_id: str) -> None:
        try:
            for k in range(1, 31):
                store.report_position(team_id, 42.30 + k * 1e-4, -71.06, at=T0 + timedelta(seconds=k))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                assert len(store.teams()) == 34
                reads[0] += 1
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(t,)) for t in teams]
    for th in readers + writers:
        th.start()
    for th in writers:
        th.join()
    stop.set()
    for th in readers:
        th.join()
    assert not errors, errors
    assert reads[0] > 0
    for team_id in teams:
        assert len(store.position_history(team_id)) == 31  # base + 30 reports
        assert store.team(team_id).position_time == T0 + timedelta(seconds=30)


def test_racing_reports_for_one_team_keep_the_newest(store: Store) -> None:
    accepted, rejected = [], []
    lock = threading.Lock()

    def send(times: list[int]) -> None:
        for k in times:
            try:
                store.report_position("P-B2", 42.32, -71.08 + k * 1e-5, at=T0 + timedelta(seconds=k))
                with lock:
                    accepted.append(k)
            except Conflict:
                with lock:
                    rejected.append(k)

    a = threading.Thread(target=send, args=(list(range(1, 60, 2)),))
    b = threading.Thread(target=send, args=(list(range(2, 61, 2)),))
    a.start(), b.start()
    a.join(), b.join()
    assert len(accepted) + len(rejected) == 60
    assert store.team("P-B2").position_time == T0 + timedelta(seconds=60)
    hist = [h["at"] for h in store.position_history("P-B2")]
    assert len(hist) == 1 + len(accepted)
    assert hist == sorted(hist)  # accepted reports only ever move forward
    assert set(accepted) & set(rejected) == set()


def test_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    Store(path, now=T0).close()
    code = (
        "import sys, time\n"
        "from datetime import datetime, timezone\n"
        "from routing.store import Store\n"
        f"s = Store({str(path)!r})\n"
        "s.report_position('CR-B2', 42.3301, -71.0811, at=datetime(2025, 5, 6, 18, 5, tzinfo=timezone.utc))\n"
        "s.set_status('CR-B2', 'en_route', at=datetime(2025, 5, 6, 18, 5, tzinfo=timezone.utc))\n"
        "print('ack', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ack"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with Store(path) as s:
        ts = s.team("CR-B2")
        assert (ts.lat, ts.lon, ts.status) == (42.3301, -71.0811, TeamStatus.en_route)


class _Result:
    """Minimal stand-in for a SuggestionResult (the store only needs ``call`` and ``to_dict``)."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def to_dict(self) -> dict:
        return {"call_id": self.call.call_id, "suggestions": []}


def test_audit_trail_keeps_each_decision_with_its_inputs(store: Store) -> None:
    c1 = Call.from_dict({"call_id": "a", "lat": 42.33, "lon": -71.08, "received": T0.isoformat()})
    c2 = Call.from_dict({"call_id": "b", "lat": 42.34, "lon": -71.07, "received": T0.isoformat()})
    inputs = {"now": T0.isoformat(), "teams": [ts.to_dict() for ts in store.teams()]}
    ids = store.record_suggestions([_Result(c1), _Result(c2)], inputs)
    assert len(ids) == 2
    full = store.decision(ids[1])
    assert full["kind"] == "suggestion" and full["call_ids"] == ["b"]
    assert full["inputs"]["teams"] == inputs["teams"]
    # The fleet snapshot is stored once, not per decision.
    assert store._con().execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 1
    assert [c.call_id for c in store.calls()] == ["a", "b"]
    store.record_call(c1)  # same call again: fine
    changed = Call.from_dict({"call_id": "a", "lat": 42.30, "lon": -71.08, "received": T0.isoformat()})
    with pytest.raises(Conflict):
        store.record_call(changed)
    assert [d["id"] for d in store.decisions()] == ids[::-1]


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidInput):
        Store(bad)
    with pytest.raises(InvalidInput):
        Store(tmp_path / "missing-dir" / "x.db")


def test_plain_sqlite_can_read_it(store: Store) -> None:
    # The data is in ordinary tables another tool can audit.
    con = sqlite3.connect(store.path)
    assert con.execute("SELECT COUNT(*) FROM teams").fetchone()[0] == 34
    con.close()
