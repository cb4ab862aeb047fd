"""Device clocks, the range of accepted times, and one clock for shifts and speeds (issue 10).

- A report stamped ahead of the server clock (within the store's skew allowance) is stored with its
  stated time but ordered by when it arrived, so it cannot block the correct reports after it; further
  ahead it is refused naming the field. Store level (exact times), then over HTTP against a real
  ``crisis-dispatch serve`` process.
- Times at the edge of the calendar, which overflow in UTC, are 422 naming the field over HTTP (the
  server stays up) and a one-line exit 2 in the CLI, wherever a time enters.
- ``--at`` chooses the hour-of-day speeds as well as shifts, and every result says which it used.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from routing.cli import main
from routing.errors import Conflict, InvalidInput
from routing.fleet import TeamStatus
from routing.speeds import load_speeds
from routing.store import MAX_FUTURE_S, SCHEMA_VERSION, Store
from routing.triage import Call
from routing.validate import EARLIEST, LATEST, timestamp
from tests.test_service_crash import Server

T0 = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
EDGES = ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00")
ROXBURY = (42.3296, -71.0840)
BOSTON = ZoneInfo("America/New_York")


# --------------------------------------------------------------------------------------------- validator


@pytest.mark.parametrize("value", [*EDGES, "2024-05-01T10:00:00", "yesterday", "", 1714557600, 1.5, True, None,
                                   ["2024-05-01T10:00:00Z"], "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z",
                                   datetime(2024, 5, 1, 10, 0)])
def test_the_one_validator_refuses_what_cannot_be_compared_in_utc(value: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        timestamp(value, "received")
    assert err.value.field == "received"
    assert "\n" not in err.value.message


def test_the_accepted_range_leaves_room_for_arithmetic() -> None:
    assert timestamp("2024-05-01T10:00:00-04:00", "at") == datetime(2024, 5, 1, 14, 0, tzinfo=UTC)
    assert timestamp("2024-05-01T14:00:00z", "at").tzinfo is UTC
    lo, hi = timestamp(EARLIEST.isoformat(), "at"), timestamp((LATEST - timedelta(seconds=1)).isoformat(), "at")
    # A year either side of the extremes still computes, and converts to Boston's zone.
    for when in (lo - timedelta(days=365), hi + timedelta(days=365)):
        assert when.astimezone(BOSTON).year in (lo.year - 2, lo.year - 1, hi.year, hi.year + 1)


def test_a_bare_clock_time_is_today_in_boston_only_where_asked() -> None:
    with pytest.raises(InvalidInput):
        timestamp("17:30", "at")  # the service and the store take no bare times
    t = timestamp("17:30", "at", bare_time_zone="America/New_York")
    local = t.astimezone(BOSTON)
    assert (local.hour, local.minute) == (17, 30)
    with pytest.raises(InvalidInput):
        timestamp("24:30", "at", bare_time_zone="America/New_York")


def test_call_records_use_the_validator() -> None:
    for edge in EDGES:
        with pytest.raises(InvalidInput) as err:
            Call.from_dict({"lat": 42.36, "lon": -71.06, "received": edge})
        assert err.value.field == "received"
    with pytest.raises(InvalidInput) as err:
        Call.from_dict({"lat": 42.36, "lon": -71.06, "received": 1714557600})
    assert err.value.field == "received"


# --------------------------------------------------------------------------------------------- store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "clocks.db", now=T0)
    yield s
    s.close()


def test_a_fast_report_does_not_block_the_correct_one_after_it(store: Store) -> None:
    t = T0 + timedelta(minutes=1)
    fast = store.report_position("EC-1", 42.3401, -71.0702, at=t + timedelta(minutes=4), received=t)
    assert fast.position_time == t + timedelta(minutes=4)  # stored with its stated time
    # 10 s later a correct clock reports: stated 3 min 50 s before the fast one, yet newer.
    later = store.report_position("EC-1", 42.3411, -71.0712, at=t + timedelta(seconds=10),
                                  received=t + timedelta(seconds=10))
    assert (later.lat, later.lon, later.position_time) == (42.3411, -71.0712, t + timedelta(seconds=10))
    assert (store.team("EC-1").lat, store.team("EC-1").lon) == (42.3411, -71.0712)
    hist = store.position_history("EC-1")
    assert [(h["lat"], h["lon"]) for h in hist[1:]] == [(42.3401, -71.0702), (42.3411, -71.0712)]  # arrival order
    # A report truly older than the stored one is still refused, and an identical retry changes nothing.
    with pytest.raises(Conflict) as err:
        store.report_position("EC-1", 42.35, -71.07, at=t + timedelta(seconds=5), received=t + timedelta(seconds=11))
    assert err.value.field == "timestamp"
    store.report_position("EC-1", 42.3411, -71.0712, at=t + timedelta(seconds=10), received=t + timedelta(seconds=12))
    assert len(store.position_history("EC-1")) == 3


def test_beyond_the_skew_allowance_is_refused_naming_at(store: Store) -> None:
    t = T0 + timedelta(minutes=1)
    for call in (lambda: store.report_position("EC-1", 42.34, -71.07, at=t + timedelta(minutes=6), received=t),
                 lambda: store.set_status("EC-1", "en_route", at=t + timedelta(minutes=6), received=t)):
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.field == "at" and "300 s" in err.value.message
    assert store.team("EC-1").status is TeamStatus.available
    assert len(store.position_history("EC-1")) == 1
    # Exactly at the allowance is still a fast clock, accepted.
    store.report_position("EC-1", 42.34, -71.07, at=t + timedelta(seconds=MAX_FUTURE_S), received=t)


def test_status_changes_and_assignments_follow_the_same_rule(store: Store) -> None:
    t = T0 + timedelta(minutes=1)
    store.set_status("P-A1", "en_route", at=t + timedelta(minutes=4), received=t)
    ts = store.set_status("P-A1", "on_scene", at=t + timedelta(seconds=10), received=t + timedelta(seconds=10))
    assert ts.status is TeamStatus.on_scene and ts.status_time == t + timedelta(seconds=10)
    assert [s["new_status"] for s in store.status_history("P-A1")] == ["available", "en_route", "on_scene"]
    with pytest.raises(Conflict):  # truly older
        store.set_status("P-A1", "returning", at=t + timedelta(seconds=5), received=t + timedelta(seconds=20))

    from routing.dispatch import Assignment, AssignmentResult
    from routing.fleet import TeamType

    call = Call.from_dict({"call_id": "c1", "lat": 42.35, "lon": -71.06, "received": t.isoformat()})
    plan = AssignmentResult([call], [Assignment("c1", "P-A7", TeamType.police, 100.0, 500.0, "police", 0, False,
                                                42.35, -71.06)], [], 100.0, True, "MANUAL", 0.0, 0.0, 0.0, t)
    store.assign(plan, at=t + timedelta(minutes=4), received=t)  # a dispatcher's console 4 min fast
    back = store.set_status("P-A7", "on_scene", at=t + timedelta(seconds=30), received=t + timedelta(seconds=30))
    assert back.status is TeamStatus.on_scene
    with pytest.raises(InvalidInput) as err:
        store.assign(AssignmentResult([call], [], [], 0.0, True, "MANUAL", 0.0, 0.0, 0.0, t),
                     at=t + timedelta(minutes=6), received=t)
    assert err.value.field == "at"


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    Store(db, now=T0).close()
    con = sqlite3.connect(db)  # make it a version-1 file: no receipt columns
    con.execute("ALTER TABLE teams DROP COLUMN position_received_at")
    con.execute("ALTER TABLE teams DROP COLUMN status_received_at")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with Store(db) as s:
        assert s.meta()["schema_version"] == str(SCHEMA_VERSION) == "3"
        t = T0 + timedelta(minutes=1)
        s.report_position("EC-1", 42.3401, -71.0702, at=t + timedelta(minutes=4), received=t)
        s.report_position("EC-1", 42.3411, -71.0712, at=t + timedelta(seconds=10), received=t + timedelta(seconds=10))
        assert s.team("EC-1").lat == 42.3411
    con = sqlite3.connect(db)
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(teams)")}
        assert {"position_received_at", "status_received_at"} <= cols
        assert con.execute("SELECT count(*) FROM teams WHERE position_received_at IS NULL").fetchone()[0] == 0
    finally:
        con.close()


# --------------------------------------------------------------------------------------------- HTTP


ADMIN = f"admin-{secrets.token_urlsafe(24)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, boston: Any) -> Iterator[Server]:
    # ``boston`` first: the prepared-network cache the child process reads is then warm.
    tmp = tmp_path_factory.mktemp("clocks")
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps({ADMIN: "admin"}))
    tokens.chmod(0o600)
    srv = Server(tmp / "dispatch.db", tokens, data_dir, tmp / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def _req(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=60, **kw)


def test_http_a_report_4_min_fast_then_a_correct_one(server: Server) -> None:
    now = datetime.now(UTC)
    fast = _req(server, "PUT", "/teams/CR-A1/position",
                json={"lat": 42.3612, "lon": -71.0598, "timestamp": (now + timedelta(minutes=4)).isoformat()})
    assert fast.status_code == 200, fast.text
    assert 230 < fast.json()["clock_ahead_s"] <= 240 and "ahead" in fast.json()["note"]
    correct = _req(server, "PUT", "/teams/CR-A1/position",
                   json={"lat": 42.3620, "lon": -71.0590, "timestamp": datetime.now(UTC).isoformat()})
    assert correct.status_code == 200, correct.text
    assert correct.json()["clock_ahead_s"] == 0 and correct.json()["note"] is None
    team = _req(server, "GET", "/teams/CR-A1").json()
    assert (team["lat"], team["lon"]) == (42.3620, -71.0590)
    positions = _req(server, "GET", "/teams/CR-A1/positions").json()["positions"]
    assert [(p["lat"], p["lon"]) for p in positions[-2:]] == [(42.3612, -71.0598), (42.3620, -71.0590)]
    # The same for a status change after a fast one.
    fast = _req(server, "PUT", "/teams/CR-A1/status",
                json={"status": "en_route", "timestamp": (datetime.now(UTC) + timedelta(minutes=4)).isoformat()})
    assert fast.status_code == 200 and fast.json()["clock_ahead_s"] > 200
    ok = _req(server, "PUT", "/teams/CR-A1/status",
              json={"status": "on_scene", "timestamp": datetime.now(UTC).isoformat()})
    assert ok.status_code == 200 and ok.json()["status"] == "on_scene", ok.text


def test_http_6_min_fast_is_422_naming_the_field(server: Server) -> None:
    before = _req(server, "GET", "/teams/P-B2").json()
    ahead = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    for path, body in (("/teams/P-B2/position", {"lat": 42.3612, "lon": -71.0598, "timestamp": ahead}),
                       ("/teams/P-B2/status", {"status": "en_route", "timestamp": ahead})):
        r = _req(server, "PUT", path, json=body)
        # The store's ``at`` is the body's ``timestamp`` over HTTP.
        assert r.status_code == 422 and r.json()["field"] == "timestamp", r.text
        assert "300 s" in r.json()["detail"]
    after = _req(server, "GET", "/teams/P-B2").json()
    assert (after["status"], after["lat"], after["lon"]) == (before["status"], before["lat"], before["lon"])


@pytest.mark.parametrize("edge", [*EDGES, 1714557600])
def test_http_calendar_edges_are_422_and_the_server_stays_up(server: Server, edge: Any) -> None:
    cases = [
        ("PUT", "/teams/P-C6/position", {"lat": 42.36, "lon": -71.06, "timestamp": edge}, "timestamp"),
        ("PUT", "/teams/P-C6/status", {"status": "en_route", "timestamp": edge}, "timestamp"),
        ("POST", "/calls", {"lat": ROXBURY[0], "lon": ROXBURY[1], "received": edge}, "received"),
        ("POST", "/assignments", {"calls": [{"lat": ROXBURY[0], "lon": ROXBURY[1], "received": edge}],
                                  "dry_run": True}, "calls[0].received"),
        ("POST", "/assignments", {"calls": [{"lat": ROXBURY[0], "lon": ROXBURY[1], "received": edge}]},
         "calls[0].received"),
    ]
    for method, path, body, field in cases:
        r = _req(server, method, path, json=body)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["field"] == field and r.json()["error"] == "InvalidInput", r.json()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert _req(server, "GET", "/teams/P-C6").json()["status"] == "available"


def test_http_suggestions_say_which_speeds_they_used(server: Server) -> None:
    speeds = load_speeds()
    # A call received at 03:30 Boston time is answered with the speeds of 03:00, one at 17:30 with 17:00.
    answers = {}
    for hour, received in ((3, "2025-03-04T03:30:00-05:00"), (17, "2025-03-04T17:30:00-05:00")):
        r = _req(server, "POST", "/calls", json={"call_id": f"clock-{hour}", "lat": ROXBURY[0], "lon": ROXBURY[1],
                                                 "received": received})
        assert r.status_code == 201, r.text
        profile = r.json()["profile"]
        assert profile["hour"] == hour and profile["hour_source"] == "time"
        assert profile["mode"] == speeds.default_mode
        answers[hour] = {x["team_id"]: x["eta_s"] for x in r.json()["suggestions"]}
    common = set(answers[3]) & set(answers[17])  # police (no flags): on duty at both hours
    assert common and all(answers[3][t] != answers[17][t] for t in common)
    r = _req(server, "POST", "/assignments", json={"call_ids": ["clock-3"], "dry_run": True})
    assert r.status_code == 200 and r.json()["profile"]["hour_source"] == "time", r.text


# --------------------------------------------------------------------------------------------- CLI


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def _one_line_error(code: int, err: str) -> None:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("edge", EDGES)
def test_cli_calendar_edges_are_one_line_errors(tmp_path: Path, data_dir: Path, edge: str) -> None:
    db = str(tmp_path / "cli.db")
    for argv in (("fleet", "position", "EC-1", "42.34,-71.07", "--at", edge),
                 ("fleet", "status", "EC-1", "en_route", "--at", edge),
                 ("suggest", "--lat", "42.33", "--lon", "-71.08", "--at", edge),
                 ("suggest", "--lat", "42.33", "--lon", "-71.08", "--received", edge),
                 ("route", "--from", "42.36,-71.06", "--to", "42.33,-71.08", "--at", edge),
                 ("coverage", "--minutes", "8", "--at", edge)):
        code, _, err = _run(*argv, "--db", db) if argv[0] != "route" else _run(*argv)
        _one_line_error(code, err)
        assert "--at" in err or "--received" in err
    csv_path = tmp_path / "calls.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["call_id", "lat", "lon", "received"])
        w.writerow(["a", "42.33", "-71.08", "2025-03-04T17:30:00-05:00"])
        w.writerow(["b", "42.34", "-71.07", edge])
    jsonl_path = tmp_path / "calls.jsonl"
    jsonl_path.write_text(json.dumps({"call_id": "a", "lat": 42.33, "lon": -71.08, "received": edge}) + "\n")
    for path, where in ((csv_path, "line 3"), (jsonl_path, "line 1")):
        for command in ("suggest", "assign"):
            code, _, err = _run(command, "--calls", str(path), "--db", db)
            _one_line_error(code, err)
            assert where in err and "received" in err, err
    code, out, _ = _run("fleet", "history", "EC-1", "--db", db, "--json")
    assert len(json.loads(out)["positions"]) == 1 and len(json.loads(out)["statuses"]) == 1  # nothing written


def test_cli_extreme_but_valid_times_do_not_overflow(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "cli.db")
    for when in (EARLIEST.isoformat(), (LATEST - timedelta(seconds=1)).isoformat()):
        code, out, err = _run("suggest", "--lat", "42.33", "--lon", "-71.08", "--at", when, "--received", when,
                              "--db", db, "--json")
        if when.startswith("2199"):  # a call received beyond the clock skew is refused (issue 11), in one line
            _one_line_error(code, err)
            assert "received" in err and "300 s" in err
            code, out, err = _run("suggest", "--lat", "42.33", "--lon", "-71.08", "--at", when, "--db", db, "--json")
        assert code == 0, err
        assert json.loads(out)["profile"]["hour_source"] == "time"
    code, _, err = _run("fleet", "position", "EC-1", "42.34,-71.07", "--at", EARLIEST.isoformat(), "--db", db)
    _one_line_error(code, err)
    assert "older than" in err


def test_cli_fast_report_is_accepted_with_a_note(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "cli.db")
    assert _run("fleet", "list", "--db", db, "--json")[0] == 0
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    code, out, _ = _run("fleet", "position", "EC-1", "42.3401,-71.0702", "--at", ahead, "--db", db, "--json")
    assert code == 0 and json.loads(out)["clock_ahead_s"] > 200 and json.loads(out)["note"]
    code, out, _ = _run("fleet", "position", "EC-1", "42.3411,-71.0712", "--db", db)
    assert code == 0 and "42.341100" in out and "note" not in out
    code, _, err = _run("fleet", "position", "EC-1", "42.3421,-71.0722", "--db", db,
                        "--at", (datetime.now(UTC) + timedelta(minutes=6)).isoformat())
    _one_line_error(code, err)
    assert "300 s" in err


def _factor_differs(hour_a: int, hour_b: int) -> bool:
    factors = load_speeds().hour_factor
    if all(isinstance(v, (int, float)) for v in factors.values()):
        return factors[hour_a] != factors[hour_b]
    return any(g[hour_a] != g[hour_b] for g in factors.values())


def test_cli_at_chooses_the_speeds_and_says_so(tmp_path: Path, data_dir: Path) -> None:
    assert _factor_differs(3, 17), "the speed model has the same factors at 03:00 and 17:00"
    db = str(tmp_path / "cli.db")
    # A weapon call: police first, and police teams work around the clock, so the same teams answer both.
    args = ("suggest", "--lat", str(ROXBURY[0]), "--lon", str(ROXBURY[1]), "--weapon", "--db", db)
    etas, profiles = {}, {}
    for at in ("03:30", "17:30"):
        code, out, err = _run(*args, "--at", at, "--json")
        assert code == 0, err
        r = json.loads(out)
        profiles[at] = r["profile"]
        etas[at] = {s["team_id"]: s["eta_s"] for s in r["suggestions"]}
    assert (profiles["03:30"]["hour"], profiles["17:30"]["hour"]) == (3, 17)
    assert profiles["03:30"]["hour_source"] == profiles["17:30"]["hour_source"] == "time"
    common = set(etas["03:30"]) & set(etas["17:30"])
    assert common
    assert all(etas["03:30"][t] != etas["17:30"][t] for t in common)
    # --hour overrides the hour of --at for speeds, and the text output says where the hour came from.
    code, out, _ = _run(*args, "--at", "17:30")
    assert code == 0 and out.rstrip().splitlines()[-1] == f"speeds: {load_speeds().default_mode}, 17:00 (from --at)"
    code, out, _ = _run(*args, "--at", "17:30", "--hour", "3", "--mode", "emergent")
    assert code == 0 and out.rstrip().splitlines()[-1] == "speeds: emergent, 03:00 (from --hour)"
    code, out, _ = _run(*args, "--at", "17:30", "--hour", "3", "--json")
    assert json.loads(out)["profile"]["hour_source"] == "hour"
    # Same for a plain route.
    route = {}
    for at in ("03:30", "17:30"):
        code, out, _ = _run("route", "--from", "42.3603,-71.0580", "--to", "42.3296,-71.0840", "--at", at, "--json")
        assert code == 0
        route[at] = json.loads(out)
        assert route[at]["profile"]["hour"] == int(at[:2])
    assert route["03:30"]["travel_time_s"] != route["17:30"]["travel_time_s"]


def test_a_call_file_is_judged_at_each_calls_received_time(tmp_path: Path, data_dir: Path, capsys) -> None:
    # Without --at, each row's `received` decides speeds and shifts; --at sets one time for all.
    from routing.cli import main

    path = tmp_path / "calls.csv"
    path.write_text("call_id,lat,lon,mental_health,safety_risk,received\n"
                    "night,42.3400,-71.0760,true,true,2026-06-01T03:30:00-04:00\n"
                    "evening,42.3400,-71.0760,true,true,2026-06-01T17:30:00-04:00\n")
    argv = ["suggest", "--calls", str(path), "--db", str(tmp_path / "d.db"), "--data", str(data_dir), "--json"]
    assert main(argv) == 0
    results = {r["call"]["call_id"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert results["night"]["profile"]["hour"] == 3 and results["evening"]["profile"]["hour"] == 17
    # The BEST co-response cars work 08:00-24:00: off shift for the night call only.
    night_off = {i["team_id"] for i in results["night"]["ineligible"] if i["code"] == "outside_hours"}
    evening_off = {i["team_id"] for i in results["evening"]["ineligible"] if i["code"] == "outside_hours"}
    assert {"CR-C11", "CR-D4", "CR-E13"} <= night_off and not evening_off & {"CR-C11", "CR-D4", "CR-E13"}
    assert main([*argv[:-1], "--at", "2026-06-01T17:30:00-04:00", "--json"]) == 0
    fixed = json.loads(capsys.readouterr().out)["results"]
    assert {r["profile"]["hour"] for r in fixed} == {17}
