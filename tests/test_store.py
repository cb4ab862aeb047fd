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
    assert store.meta()["schema_version"] == "3"  # 3: the call lifecycle (2: receipt times of reports)


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


# --------------------------------------------------------------------------------------------- atomic assign


def _plan(call: Call, team_id: str, s: Store):
    from routing.dispatch import Assignment, AssignmentResult

    ts = s.team(team_id)
    a = Assignment(call.call_id, team_id, ts.team.team_type, 300.0, 2000.0, "any", 0, False, ts.lat, ts.lon)
    return AssignmentResult([call], [a], [], 300.0, True, "MANUAL", 0.0, 600.0, 3600.0, T0)


def _call(call_id: str) -> Call:
    return Call.from_dict({"call_id": call_id, "lat": 42.35, "lon": -71.06, "received": T0.isoformat()})


def test_assign_records_the_decision_and_sends_the_team_en_route_together(store: Store) -> None:
    at = T0 + timedelta(minutes=1)
    did = store.assign(_plan(_call("c1"), "P-A1", store), inputs={"who": "test"}, at=at)
    assert store.team("P-A1").status is TeamStatus.en_route
    assert store.team("P-A1").status_time == at
    assert [(a["decision_id"], a["call_id"], a["team_id"]) for a in store.assignments()] == [(did, "c1", "P-A1")]
    assert store.decision(did)["inputs"] == {"who": "test"}
    assert store.status_history("P-A1")[-1]["old_status"] == "available"
    # The team is busy now: assigning it again (another call) is refused and writes nothing.
    before = _snapshot(store, "P-A1")
    with pytest.raises(Conflict) as err:
        store.assign(_plan(_call("c2"), "P-A1", store), at=at)
    assert err.value.field == "team_id"
    assert _snapshot(store, "P-A1") == before
    assert len(store.assignments()) == 1 and len(store.decisions("assignment")) == 1
    assert [c.call_id for c in store.calls()] == ["c1"]  # c2 was not recorded either


def test_assign_refuses_a_plan_made_from_an_outdated_snapshot(store: Store) -> None:
    snapshot = {ts.team_id: ts for ts in store.teams()}
    plan = _plan(_call("c1"), "P-A1", store)
    store.report_position("P-A1", 42.36, -71.05, at=T0 + timedelta(minutes=1))  # moved after the snapshot
    with pytest.raises(Conflict) as err:
        store.assign(plan, at=T0 + timedelta(minutes=2), unchanged=snapshot)
    assert err.value.field == "teams"
    assert store.team("P-A1").status is TeamStatus.available and store.assignments() == []
    # Without the snapshot check the same plan goes through (the team is still dispatchable).
    store.assign(plan, at=T0 + timedelta(minutes=2))
    assert store.team("P-A1").status is TeamStatus.en_route


def test_assign_rejects_unknown_teams_and_older_times_atomically(store: Store) -> None:
    from dataclasses import replace

    plan = _plan(_call("c1"), "P-A1", store)
    two = replace(plan, assignments=[plan.assignments[0], replace(plan.assignments[0], team_id="NO-SUCH")])
    with pytest.raises(NotFound):
        store.assign(two, at=T0 + timedelta(minutes=1))
    assert store.team("P-A1").status is TeamStatus.available and store.assignments() == []
    store.set_status("P-A1", "out_of_service", at=T0 + timedelta(minutes=5))
    store.set_status("P-A1", "available", at=T0 + timedelta(minutes=6))
    with pytest.raises(Conflict) as err:  # a status change older than the last one stored
        store.assign(plan, at=T0 + timedelta(minutes=3))
    assert err.value.field == "timestamp"
    assert store.assignments() == [] and store.calls() == []


def _race(path: Path, n: int, at: datetime) -> list[object]:
    """``n`` threads, each with its own Store (own connection, as another process would have), all of
    which saw the team dispatchable, assign the same team to different calls at the same moment."""
    stores = [Store(path) for _ in range(n)]
    # Fresh call ids each round: a call whose team has been and gone is cleared and takes no team.
    plans = [_plan(_call(f"race-{at:%H%M}-{k}"), "P-A1", stores[k]) for k in range(n)]
    for s in stores:
        assert s.team("P-A1").status is TeamStatus.available
    barrier = threading.Barrier(n)
    outcomes: list[object] = [None] * n

    def go(k: int) -> None:
        barrier.wait()
        try:
            outcomes[k] = stores[k].assign(plans[k], at=at)
        except Conflict as exc:
            outcomes[k] = exc

    threads = [threading.Thread(target=go, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    return outcomes


def test_two_stores_racing_to_assign_one_team_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    Store(path, now=T0).close()
    for round_ in range(3):
        if round_:
            with Store(path) as s:  # back in service for the next round
                s.set_status("P-A1", "on_scene", at=T0 + timedelta(minutes=10 * round_ - 5))
                s.set_status("P-A1", "available", at=T0 + timedelta(minutes=10 * round_ - 4))
        outcomes = _race(path, 4, T0 + timedelta(minutes=10 * round_ + 1))
        wins = [o for o in outcomes if isinstance(o, int)]
        assert len(wins) == 1, outcomes
        assert all(isinstance(o, Conflict) and o.field == "team_id" for o in outcomes if o not in wins)
    con = sqlite3.connect(path)
    rows = con.execute("SELECT team_id, COUNT(*) FROM assignments GROUP BY team_id").fetchall()
    en_route = con.execute("SELECT COUNT(*) FROM status_changes WHERE team_id = 'P-A1' "
                           "AND new_status = 'en_route'").fetchone()[0]
    con.close()
    assert rows == [("P-A1", 3)] and en_route == 3


# --------------------------------------------------------------------------------------------- grouped commits


def test_group_commits_once_and_a_refused_write_leaves_the_others(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with Store(path, now=T0) as s:
        with s.group():
            s.report_position("EC-1", 42.34, -71.07, at=T0 + timedelta(minutes=1))
            with pytest.raises(Conflict) as err:
                s.report_position("EC-1", 42.30, -71.07, at=T0 - timedelta(minutes=1))
            assert err.value.field == "timestamp"
            s.set_status("EC-1", "en_route", at=T0 + timedelta(minutes=1))
            # Nothing is visible to another connection before the group commits.
            other = sqlite3.connect(path)
            assert other.execute("SELECT status FROM teams WHERE team_id = 'EC-1'").fetchone()[0] == "available"
            other.close()
        with pytest.raises(RuntimeError), s.group(), s.group():
            pass
        # An exception out of the block rolls the whole group back.
        with pytest.raises(ValueError), s.group():
            s.report_position("EC-2", 42.34, -71.07, at=T0 + timedelta(minutes=1))
            raise ValueError("abandon")
    con = sqlite3.connect(path)
    assert con.execute("SELECT lat, status FROM teams WHERE team_id = 'EC-1'").fetchone() == (42.34, "en_route")
    assert con.execute("SELECT COUNT(*) FROM positions WHERE team_id = 'EC-1'").fetchone()[0] == 2
    assert con.execute("SELECT lat FROM teams WHERE team_id = 'EC-2'").fetchone()[0] != 42.34
    con.close()


def test_conflicts_name_their_field(store: Store) -> None:
    store.set_status("EC-1", "en_route", at=T0 + timedelta(minutes=2))
    with pytest.raises(Conflict) as err:
        store.set_status("EC-1", "transporting", at=T0 + timedelta(minutes=3))  # not from en route
    assert err.value.field == "status"
    with pytest.raises(Conflict) as err:
        store.set_status("EC-1", "on_scene", at=T0 + timedelta(minutes=1))  # older than the last change
    assert err.value.field == "timestamp"
    store.record_call(_call("c1"))
    with pytest.raises(Conflict) as err:
        store.record_call(Call.from_dict({"call_id": "c1", "lat": 42.30, "lon": -71.06,
                                          "received": T0.isoformat()}))
    assert err.value.field == "call_id"


def test_decisions_filter_by_call(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with Store(path, now=T0) as s:
        a, b = _call("a"), _call("b")
        sa, sb = s.record_suggestions([_Result(a), _Result(b)])
        s2 = s.record_suggestion(_Result(a))
        joint = s.record_assignment(_plan(a, "P-A1", s), [a, b])
        assert [d["id"] for d in s.decisions(call_id="a")] == [joint, s2, sa]
        assert [d["id"] for d in s.decisions("suggestion", call_id="b")] == [sb]
        assert [d["id"] for d in s.decisions(call_id="b", limit=1)] == [joint]
        assert s.decisions(call_id="zzz") == []
    # A database written before the call index existed gets it built when opened.
    con = sqlite3.connect(path)
    con.execute("DROP TABLE decision_calls")
    con.commit()
    con.close()
    with Store(path) as s:
        assert [d["id"] for d in s.decisions(call_id="a")] == [joint, s2, sa]
