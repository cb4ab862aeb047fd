"""A dispatcher's whole shift: the call lifecycle, safe retries, no double dispatch, plans that survive a
moving fleet, fleet file vs database, paged histories and the CLI commands (issue 11, items 1-5).

The HTTP cases run against a real ``crisis-dispatch serve`` process."""

from __future__ import annotations

import io
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.cli import main
from routing.errors import Conflict, InvalidInput
from routing.fleet import TeamStatus, load_fleet
from routing.store import SCHEMA_VERSION, Store
from routing.triage import Call
from tests.test_service_crash import Server

T0 = datetime(2025, 5, 6, 18, 0, tzinfo=UTC)
ROXBURY = (42.3296, -71.0840)
CITY_HALL = (42.3603, -71.0580)
ADMIN = f"admin-{secrets.token_urlsafe(24)}"
DISPATCHER = f"disp-{secrets.token_urlsafe(24)}"


def _call(call_id: str, lat: float = 42.35, lon: float = -71.06, **kw: Any) -> Call:
    return Call.from_dict({"call_id": call_id, "lat": lat, "lon": lon, "received": T0.isoformat(), **kw})


def _plan(store: Store, calls: list[Call], teams: list[str]) -> Any:
    from routing.dispatch import Assignment, AssignmentResult

    out = []
    for c, t in zip(calls, teams, strict=True):
        ts = store.team(t)
        out.append(Assignment(c.call_id, t, ts.team.team_type, 300.0, 2000.0, "any", 0, False, ts.lat, ts.lon))
    return AssignmentResult(calls, out, [], 300.0, True, "MANUAL", 0.0, 600.0, 3600.0, T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "life.db", now=T0)
    yield s
    s.close()


# --------------------------------------------------------------------------------------------- lifecycle


def test_a_call_goes_received_assigned_on_scene_cleared_and_its_team_follows(store: Store) -> None:
    store.record_call(_call("c1"), actor="alice")
    assert store.call_status("c1") == "received"
    store.assign(_plan(store, [_call("c1")], ["EC-1"]), actor="alice")
    assert store.call_status("c1") == "assigned" and store.team("EC-1").status is TeamStatus.en_route
    store.set_call_status("c1", "en_route", actor="bob")
    store.set_status("EC-1", "on_scene", actor="tablet")  # the team arrives: the call follows
    assert store.call_status("c1") == "on_scene"
    out = store.set_call_status("c1", "cleared", actor="bob")
    assert out["changed"] and out["status"] == "cleared" and out["teams"] == []
    assert store.team("EC-1").status is TeamStatus.returning
    again = store.set_call_status("c1", "cleared", actor="bob")  # a retry: nothing changes
    assert not again["changed"]
    with pytest.raises(Conflict) as err:
        store.set_call_status("c1", "cancelled")
    assert err.value.field == "status"
    events = [(e["old_status"], e["new_status"], e["actor"]) for e in store.events(call_id="c1")]
    assert events == [(None, "received", "alice"), ("received", "assigned", "alice"), ("assigned", "en_route", "bob"),
                      ("en_route", "on_scene", "tablet"), ("on_scene", "cleared", "bob")]
    assert all(e["at"] for e in store.events(call_id="c1"))


def test_cancelling_frees_the_en_route_team_and_a_freed_team_puts_its_call_back(store: Store) -> None:
    store.assign(_plan(store, [_call("c1"), _call("c2")], ["EC-1", "EC-2"]))
    store.set_call_status("c1", "cancelled")
    assert store.team("EC-1").status is TeamStatus.available and store.call_record("c1")["teams"] == []
    store.set_status("EC-2", "out_of_service")  # broke down on the way: the call waits for a team again
    assert store.call_status("c2") == "received"
    assert [c["call"]["call_id"] for c in store.call_page(status="open")] == ["c2"]
    with pytest.raises(Conflict):
        store.assign(_plan(store, [_call("c1")], ["EC-3"]))  # a cancelled call takes no team


def test_a_second_team_only_when_asked(store: Store) -> None:
    store.assign(_plan(store, [_call("c1")], ["CR-A1"]))
    with pytest.raises(Conflict) as err:
        store.assign(_plan(store, [_call("c1")], ["EC-1"]))
    assert err.value.field == "call_id" and "additional" in err.value.message
    store.assign(_plan(store, [_call("c1")], ["EC-1"]), additional=True)
    rows = store.assignments("c1")
    assert [(a["team_id"], a["additional"]) for a in rows] == [("CR-A1", False), ("EC-1", True)]
    assert store.call_record("c1")["teams"] == ["CR-A1", "EC-1"]


def test_a_version_2_database_opens_with_statuses_from_its_assignments(tmp_path: Path) -> None:
    db = tmp_path / "v2.db"
    with Store(db, now=T0) as s:
        s.record_call(_call("waiting"))
        s.assign(_plan(s, [_call("going")], ["EC-1"]))
        s.assign(_plan(s, [_call("done")], ["EC-2"]))
        s.set_status("EC-2", "on_scene")
        s.set_status("EC-2", "available")
    con = sqlite3.connect(db)  # back to version 2: no lifecycle columns, no events
    for index in ("calls_by_status", "calls_by_received"):
        con.execute(f"DROP INDEX {index}")
    for table, column in (("calls", "status"), ("calls", "status_time"), ("assignments", "additional"),
                          ("assignments", "released_at"), ("assignments", "actor"), ("teams", "retired_at")):
        con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    con.execute("DROP TABLE call_events")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with Store(db) as s:
        assert s.meta()["schema_version"] == str(SCHEMA_VERSION) == "3"
        assert {c: s.call_status(c) for c in ("waiting", "going", "done")} == {
            "waiting": "received", "going": "en_route", "done": "cleared"}
        assert s.call_record("going")["teams"] == ["EC-1"] and s.call_record("done")["teams"] == []
        assert {e["actor"] for e in s.events()} == {"migration"}
        s.set_call_status("going", "cleared")
        assert s.team("EC-1").status is TeamStatus.returning


# --------------------------------------------------------------------------------------------- retries


def test_a_call_sent_again_is_the_same_call_unless_its_details_differ(store: Store) -> None:
    store.record_call(_call("c1"))
    later = Call.from_dict({"call_id": "c1", "lat": 42.35, "lon": -71.06})  # no `received`: now
    assert store.reconcile_call(later, received_given=False).received == T0
    with pytest.raises(Conflict) as err:
        store.reconcile_call(later, received_given=True)
    assert "received" in err.value.message
    with pytest.raises(Conflict) as err:
        store.record_call(_call("c1", lat=42.30, priority=1))
    assert err.value.field == "call_id" and "lat" in err.value.message and "priority" in err.value.message
    future = Call.from_dict({"call_id": "f", "lat": 42.35, "lon": -71.06,
                             "received": (datetime.now(UTC) + timedelta(minutes=10)).isoformat()})
    with pytest.raises(InvalidInput) as bad:
        store.record_call(future)
    assert bad.value.field == "received" and "300 s" in bad.value.message
    store.record_call(replace(future, received=datetime.now(UTC) + timedelta(seconds=60)))  # within the skew


# --------------------------------------------------------------------------------------------- moving fleet


def test_a_plan_survives_a_moving_fleet_and_refuses_only_what_became_impossible(store: Store) -> None:
    calls = [_call("m1"), _call("m2"), _call("m3")]
    snapshot = {ts.team_id: ts for ts in store.teams()}
    plan = _plan(store, calls, ["EC-1", "EC-2", "EC-3"])
    store.report_position("EC-1", 42.3401, -71.0702, at=datetime.now(UTC))  # the locator moved it a little
    store.set_status("EC-3", "out_of_service")  # no longer dispatchable

    def reprice(a: Any, ts: Any) -> Any:
        return replace(a, eta_s=123.0, lat=ts.lat, lon=ts.lon)

    out = store.apply_plan(plan, {}, snapshot=snapshot, reprice=reprice)
    assert [a["team_id"] for a in out["assignments"]] == ["EC-1", "EC-2"]
    assert out["repriced"][0]["team_id"] == "EC-1" and out["repriced"][0]["eta_s"] == 123.0
    assert [(r["call_id"], r["team_id"]) for r in out["refused"]] == [("m3", "EC-3")]
    assert "out_of_service" in out["refused"][0]["reason"]
    assert store.assignments("m1")[0]["eta_s"] == 123.0
    assert store.call_status("m3") == "received"  # still waiting
    # The same plan again changes nothing: its calls are no longer waiting.
    again = store.apply_plan(plan, {}, snapshot=snapshot, reprice=reprice)
    assert again["decision_id"] is None and again["assignments"] == []
    assert {s["call_id"] for s in again["skipped"]} == {"m1", "m2"}
    assert len(store.assignments()) == 2


# --------------------------------------------------------------------------------------------- fleet file


def test_a_fleet_file_that_differs_is_an_error_and_sync_applies_it(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    Store(db, now=T0).close()
    src = Path(__file__).resolve().parent.parent / "data" / "fleet.toml"
    text = src.read_text()
    first = load_fleet()[0].team_id
    edited = tmp_path / "fleet.toml"
    # Drop the first team: cut its [[team]] block.
    blocks = text.split("[[team]]")
    kept = [b for b in blocks[1:] if f'"{first}"' not in b.split("\n", 3)[1] + b.split("\n", 3)[2]]
    assert len(kept) == len(blocks) - 2
    edited.write_text(blocks[0] + "".join("[[team]]" + b for b in kept))
    with pytest.raises(InvalidInput) as err:
        Store(db, fleet=edited)
    assert err.value.field == "fleet" and first in err.value.message and "fleet sync" in err.value.message
    code, out, errtext = _run("fleet", "sync", "--fleet", str(edited), "--db", str(db), "--json")
    assert code == 0, errtext
    assert json.loads(out)["retired"] == [first]
    with Store(db, fleet=edited) as s:  # agrees now
        assert first not in [t.team_id for t in s.teams()]
        assert len(s.position_history(first)) == 1  # history kept
    code, out, _ = _run("fleet", "sync", "--db", str(db), "--json")  # back to the default fleet
    assert code == 0 and json.loads(out)["added"] == [first]


# --------------------------------------------------------------------------------------------- paging


def _bulk_positions(db: Path, team: str, n: int) -> None:
    con = sqlite3.connect(db)
    base = T0 + timedelta(minutes=1)
    rows = ((team, 42.3 + (i % 1000) * 1e-5, -71.06, (base + timedelta(seconds=i)).isoformat(timespec="microseconds"),
             (base + timedelta(seconds=i)).isoformat(timespec="microseconds")) for i in range(n))
    con.executemany("INSERT INTO positions (team_id, lat, lon, at, recorded_at) VALUES (?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()


def test_history_pages_in_sql_with_200k_reports(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    Store(db, now=T0).close()
    _bulk_positions(db, "EC-1", 200_000)
    with Store(db) as s:
        started = time.perf_counter()
        last = s.position_history("EC-1", limit=10)
        took = time.perf_counter() - started
        assert len(last) == 10 and took < 0.1, took
        assert last[-1]["at"] > last[0]["at"]
        older = s.position_history("EC-1", limit=10, before=last[0]["at"])
        assert len(older) == 10 and older[-1]["at"] < last[0]["at"]
        first = s.position_history("EC-1", limit=3, after=T0.isoformat())
        assert [p["at"] for p in first] == sorted(p["at"] for p in first) and first[0]["at"] > T0.isoformat()
        plan = s._con().execute("EXPLAIN QUERY PLAN SELECT lat FROM positions WHERE team_id = 'EC-1' "
                                "ORDER BY min(at, recorded_at) DESC, id DESC LIMIT 10").fetchall()
        assert "positions_by_team_order" in str([tuple(r) for r in plan])


# --------------------------------------------------------------------------------------------- CLI


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def test_cli_a_dispatchers_shift(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "shift.db")
    # suggest, then assign the same call (no --received either time): the same call, not a conflict
    code, _, err = _run("suggest", "--lat", str(ROXBURY[0]), "--lon", str(ROXBURY[1]), "--mental-health",
                        "--call-id", "s1", "--db", db, "--json")
    assert code == 0, err
    calls = tmp_path / "waiting.jsonl"
    calls.write_text(json.dumps({"call_id": "s1", "lat": ROXBURY[0], "lon": ROXBURY[1], "mental_health": True})
                     + "\n" + json.dumps({"call_id": "s2", "lat": CITY_HALL[0], "lon": CITY_HALL[1]}) + "\n")
    code, out, err = _run("assign", "--calls", str(calls), "--db", db, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert len(first["assignments"]) == 2 and first["changed"]
    code, out, _ = _run("assign", "--calls", str(calls), "--db", db, "--json")  # re-run: nothing changes
    again = json.loads(out)
    assert code == 0 and again["assignments"] == [] and not again["changed"] and "nothing" in again["message"]
    with Store(db) as s:
        assert len(s.assignments()) == 2
    team = first["assignments"][0]["team_id"]
    code, out, _ = _run("call", "assign", "s1", team, "--db", db, "--json")  # a retry
    assert code == 0 and json.loads(out)["created"] is False
    code, _, err = _run("call", "assign", "s1", "EC-1", "--db", db)
    _one_line_error(code, err, "already has", "--additional")
    code, out, err = _run("call", "list", "--status", "open", "--db", db, "--json")
    assert code == 0 and [c["status"] for c in json.loads(out)["calls"]] == ["assigned", "assigned"]
    code, out, _ = _run("call", "cancel", "s2", "--db", db, "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    code, out, _ = _run("call", "clear", "s1", "--db", db)
    assert code == 0 and "cleared" in out
    code, _, err = _run("call", "cancel", "s1", "--db", db)
    _one_line_error(code, err, "cleared", "cancelled")
    code, out, _ = _run("call", "show", "s1", "--db", db, "--json")
    assert code == 0 and json.loads(out)["status"] == "cleared"
    code, out, _ = _run("audit", "--call", "s1", "--db", db, "--json")
    trail = json.loads(out)["events"]
    assert [e["new_status"] for e in trail] == ["received", "assigned", "cleared"]
    assert {e["actor"] for e in trail} == {"cli"}
    code, out, _ = _run("audit", "--since", (datetime.now(UTC) + timedelta(hours=1)).isoformat(), "--db", db,
                        "--json")
    assert code == 0 and json.loads(out)["events"] == []
    # The stale retry: the team has left s1 and may be elsewhere now.
    code, _, err = _run("call", "assign", "s1", team, "--db", db)
    _one_line_error(code, err, "cleared")
    # A ranking for a closed call says so before anything else.
    code, out, _ = _run("suggest", "--lat", str(ROXBURY[0]), "--lon", str(ROXBURY[1]), "--mental-health",
                        "--call-id", "s1", "--db", db, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["call_status"] == "cleared" and "closed call" in answer["warning"]
    code, out, _ = _run("suggest", "--lat", str(ROXBURY[0]), "--lon", str(ROXBURY[1]), "--mental-health",
                        "--call-id", "s1", "--db", db)
    assert out.startswith("WARNING: call s1 is cleared")
    for argv, words in ((("call", "show", "nope"), ("unknown call",)),
                        (("call", "list", "--status", "lost"), ("unknown call status",)),
                        (("audit", "--call", "nope"), ("unknown call",)),
                        (("call", "status", "s2", "flying"), ("unknown call status",))):
        code, _, err = _run(*argv, "--db", db)
        _one_line_error(code, err, *words)
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    code, _, err = _run("suggest", "--lat", "42.33", "--lon", "-71.08", "--received", future, "--db", db)
    _one_line_error(code, err, "300 s")


def test_cli_stale_retry_after_the_team_was_freed_and_sent_elsewhere(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "stale.db")
    with Store(db) as s:
        s.record_call(Call.from_dict({"call_id": "a", "lat": ROXBURY[0], "lon": ROXBURY[1]}))
        s.record_call(Call.from_dict({"call_id": "b", "lat": ROXBURY[0], "lon": ROXBURY[1] + 0.001}))
    code, _, err = _run("call", "assign", "a", "P-B2", "--override", "closest car", "--db", db)
    assert code == 0, err
    with Store(db) as s:
        s.set_status("P-B2", "available")  # freed before reaching a: a waits again
        assert s.call_status("a") == "received"
    code, _, err = _run("call", "assign", "b", "P-B2", "--override", "closest car", "--db", db)
    assert code == 0, err
    code, _, err = _run("call", "assign", "a", "P-B2", "--db", db)  # the old request, retried
    _one_line_error(code, err, "stale retry", "on call b")


def test_cli_suggest_batch_streams_json_lines(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "batch.db")
    path = tmp_path / "calls.csv"
    rows = ["call_id,lat,lon,mental_health"] + [f"b{i},{ROXBURY[0] + i * 1e-4},{ROXBURY[1]},1" for i in range(30)]
    path.write_text("\n".join(rows) + "\n")
    code, out, err = _run("suggest", "--calls", str(path), "--db", db, "--jsonl")
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 31 and lines[-1]["summary"]["count"] == 30
    assert [x["call"]["call_id"] for x in lines[:-1]] == [f"b{i}" for i in range(30)]
    code, out, _ = _run("suggest", "--calls", str(path), "--db", db, "--json")  # again: the same calls
    assert code == 0 and json.loads(out)["count"] == 30


# --------------------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, boston: Any) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps({ADMIN: "admin", DISPATCHER: {"role": "dispatcher", "name": "desk-3"}}))
    tokens.chmod(0o600)
    srv = Server(tmp / "dispatch.db", tokens, data_dir, tmp / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def _req(server: Server, method: str, path: str, token: str = DISPATCHER, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=60, **kw)


def test_http_retries_are_safe(server: Server) -> None:
    body = {"call_id": "h-1", "lat": ROXBURY[0], "lon": ROXBURY[1], "mental_health": True}
    first = _req(server, "POST", "/calls", json=body)
    assert first.status_code == 201, first.text
    again = _req(server, "POST", "/calls", json=body)  # a client retry, still no `received`
    assert again.status_code == 200 and again.json()["suggestions"] and again.json()["created"] is False
    other = _req(server, "POST", "/calls", json={**body, "lat": 42.30, "priority": 1})
    assert other.status_code == 422 and other.json()["field"] == "call_id"
    assert "lat" in other.json()["detail"] and "priority" in other.json()["detail"]
    future = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    r = _req(server, "POST", "/calls", json={"call_id": "h-future", "lat": ROXBURY[0], "lon": ROXBURY[1],
                                             "received": future})
    assert r.status_code == 422 and r.json()["field"] == "received", r.text
    team = first.json()["suggestions"][0]["team_id"]
    a = _req(server, "POST", "/calls/h-1/assign", json={"team_id": team})
    assert a.status_code == 201 and a.json()["status"] == "assigned", a.text
    assert _req(server, "POST", "/calls/h-1/assign", json={"team_id": team}).json()["created"] is False
    second = _req(server, "POST", "/calls/h-1/assign", json={"team_id": "CR-B2"})
    assert second.status_code == 422 and "additional" in second.json()["detail"]
    backed = _req(server, "POST", "/calls/h-1/assign", json={"team_id": "CR-B2", "additional": True,
                                                             "override": True})
    assert backed.status_code == 201 and backed.json()["additional"] is True, backed.text
    shown = _req(server, "GET", "/calls/h-1", ADMIN).json()
    assert shown["teams"] == [team, "CR-B2"] and shown["status"] == "assigned"
    assert {e["actor"] for e in shown["events"]} == {"desk-3"}
    cleared = _req(server, "POST", "/calls/h-1/clear")
    assert cleared.status_code == 200 and cleared.json()["status"] == "cleared"
    assert _req(server, "GET", f"/teams/{team}", ADMIN).json()["status"] == "returning"
    # The stale retry of the first assignment: the team has left the call.
    stale = _req(server, "POST", "/calls/h-1/assign", json={"team_id": team})
    assert stale.status_code == 422 and stale.json()["field"] == "call_id" and "cleared" in stale.json()["detail"]
    assert _req(server, "POST", "/calls/h-1/cancel").status_code == 422
    open_calls = _req(server, "GET", "/calls?status=open", ADMIN).json()["calls"]
    assert "h-1" not in [c["call_id"] for c in open_calls]
    events = _req(server, "GET", "/events?call_id=h-1", ADMIN).json()["events"]
    assert events[-1]["new_status"] == "cleared"


def test_http_joint_assignment_twice_changes_nothing_the_second_time(server: Server) -> None:
    calls = [{"call_id": f"j-{i}", "lat": CITY_HALL[0] + 0.002 * i, "lon": CITY_HALL[1]} for i in range(3)]
    first = _req(server, "POST", "/assignments", json={"calls": calls})
    assert first.status_code == 201, first.text
    assert len(first.json()["assignments"]) == 3 and first.json()["changed"]
    for _ in range(2):
        again = _req(server, "POST", "/assignments", json={"calls": calls})
        assert again.status_code == 201 and again.json()["assignments"] == [] and not again.json()["changed"]
        assert {s["call_id"] for s in again.json()["skipped"]} == {"j-0", "j-1", "j-2"}
    per_call = [len(_req(server, "GET", f"/assignments?call_id=j-{i}", ADMIN).json()["assignments"])
                for i in range(3)]
    assert per_call == [1, 1, 1]


def test_http_plans_survive_a_locator_moving_every_team(server: Server) -> None:
    teams = [t for t in _req(server, "GET", "/teams", ADMIN).json()["teams"] if t["dispatchable"]]
    stop = threading.Event()

    def jiggle() -> None:  # a high locator rate: every dispatchable team moves a few metres, over and over
        k = 0
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                t = teams[k % len(teams)]
                client.put(f"{server.url}/teams/{t['team_id']}/position", headers={"Authorization": f"Bearer {ADMIN}"},
                           json={"lat": t["lat"] + 1e-5 * (k % 7), "lon": t["lon"]})
                k += 1

    thread = threading.Thread(target=jiggle)
    thread.start()
    try:
        results = []
        for i in range(4):
            body = {"calls": [{"call_id": f"mv-{i}-{k}", "lat": ROXBURY[0] + 0.003 * k, "lon": ROXBURY[1]}
                              for k in range(2)]}
            r = _req(server, "POST", "/assignments", json=body)
            assert r.status_code == 201, r.text
            results.append(r.json())
            for k in range(2):  # free the teams for the next round
                _req(server, "POST", f"/calls/mv-{i}-{k}/cancel")
    finally:
        stop.set()
        thread.join()
    assert all(len(r["assignments"]) == 2 and not r["refused"] for r in results), results
