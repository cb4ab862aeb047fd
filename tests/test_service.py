"""The HTTP service through a real HTTP client (Starlette's TestClient) on the real Boston network.

Each endpoint, each role boundary and each kind of bad input. Truth comes from outside the service:
the fleet file (team count, bases), the road network's own ``eta`` for every suggested ETA, the engine's
``suggest`` / ``assign`` on the same snapshot, the lifecycle table, and a second, independent SQLite
connection for what was committed. After every test the catch-all handler must not have fired (and the
TestClient re-raises any server exception, so a 500 fails the test by itself).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette's notice that it prefers httpx2 (a UserWarning): not ours to fix
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*", category=UserWarning)
    from fastapi.testclient import TestClient

from routing.dispatch import assign, suggest
from routing.errors import Conflict, NotFound
from routing.fleet import TRANSITIONS, TeamState, TeamStatus, load_fleet, team_from_dict
from routing.service.app import GroupCommitStore, GroupWriter, create_app
from routing.service.auth import MIN_TOKEN_LENGTH, TOKENS_ENV, Role, TokenTable
from routing.store import Store
from routing.triage import Call, load_rules

TOKENS = {role: f"{role.value}-{secrets.token_urlsafe(24)}" for role in Role}
LIMITED_LOCATOR = f"limited-{secrets.token_urlsafe(24)}"
TOKEN_FILE_DOC: dict[str, Any] = {
    **{tok: role.value for role, tok in TOKENS.items()},
    LIMITED_LOCATOR: {"role": "locator", "name": "CR-A1 tablet", "teams": ["CR-A1"]},
}
FLEET = load_fleet()
CITY_HALL = (42.3603, -71.0580)
ROXBURY = (42.3296, -71.0840)  # Dudley / Nubian Square


def auth(role: Role | str) -> dict[str, str]:
    token = TOKENS[role] if isinstance(role, Role) else role
    return {"Authorization": f"Bearer {token}"}


def future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


class Svc:
    """A started app with its database path and a client."""

    def __init__(self, client: TestClient, app: Any, db: Path) -> None:
        self.client, self.app, self.db = client, app, db

    def req(self, method: str, path: str, role: Role | str | None = Role.admin, **kw: Any) -> Any:
        headers = {**(auth(role) if role is not None else {}), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def teams(self) -> list[dict[str, Any]]:
        r = self.req("GET", "/teams")
        assert r.status_code == 200
        return r.json()["teams"]

    def team_states(self) -> list[TeamState]:
        return [_state_of(t) for t in self.teams()]


def _state_of(d: dict[str, Any]) -> TeamState:
    spec = {k: d[k] for k in ("team_id", "team_type", "name", "dedicated", "base_name", "base_lat", "base_lon",
                              "service_area", "shift")}
    return TeamState(team_from_dict(spec), TeamStatus(d["status"]), d["lat"], d["lon"],
                     datetime.fromisoformat(d["position_time"]),
                     datetime.fromisoformat(d["status_time"]) if d["status_time"] else None)


@pytest.fixture
def svc(tmp_path: Path, boston: Any, places: Any) -> Any:
    db = tmp_path / "service.db"
    app = create_app(db=db, tokens=TOKEN_FILE_DOC, network=boston, places=places)
    with TestClient(app) as client:
        yield Svc(client, app, db)
        assert app.state.service.internal_errors == 0, "a request reached the catch-all 500 handler"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, boston: Any, places: Any) -> Any:
    """One service for the tests whose requests must all be refused (they check nothing was written)."""
    db = tmp_path_factory.mktemp("shared") / "service.db"
    app = create_app(db=db, tokens=TOKEN_FILE_DOC, network=boston, places=places)
    with TestClient(app) as client:
        yield Svc(client, app, db)
        assert app.state.service.internal_errors == 0, "a request reached the catch-all 500 handler"


def committed(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read what is on disk through a separate connection (not the service's)."""
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------------------------- basics


def test_health_needs_no_token_and_counts_the_fleet(svc: Svc, boston: Any) -> None:
    r = svc.req("GET", "/health", role=None)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["teams"] == len(FLEET) == 34
    assert body["road_nodes"] == boston.n_nodes


def test_openapi_docs_are_served(svc: Svc) -> None:
    spec = svc.req("GET", "/openapi.json", role=None).json()
    for path in ("/teams/{team_id}/position", "/calls", "/calls/{call_id}/assign", "/assignments", "/coverage",
                 "/maps/fleet", "/maps/calls/{call_id}"):
        assert path in spec["paths"], path
    assert svc.req("GET", "/docs", role=None).status_code == 200


def test_teams_match_the_fleet_file_and_show_position_and_status(svc: Svc) -> None:
    teams = svc.teams()
    assert [t["team_id"] for t in teams] == [t.team_id for t in FLEET]
    by_id = {t.team_id: t for t in FLEET}
    for t in teams:
        spec = by_id[t["team_id"]]
        assert t["status"] == "available" and t["dispatchable"] is True
        assert (t["position"]["lat"], t["position"]["lon"]) == (spec.base_lat, spec.base_lon)
        assert datetime.fromisoformat(t["position"]["timestamp"]).tzinfo is not None
    one = svc.req("GET", "/teams/EC-2", Role.analyst).json()
    assert one["team_type"] == "emt_clinician" and one["shift"]["hours"] == "11:00-23:00"


# --------------------------------------------------------------------------------------------- roles

READ = [("GET", "/teams", None), ("GET", "/teams/CR-A1", None), ("GET", "/teams/CR-A1/positions", None),
        ("GET", "/teams/CR-A1/statuses", None), ("GET", "/calls", None), ("GET", "/assignments", None)]
POSITION = [("PUT", "/teams/P-A1/position", {"lat": 42.3615, "lon": -71.0600})]
DISPATCH = [("PUT", "/teams/P-A1/status", {"status": "out_of_service"}),
            ("POST", "/calls", {"call_id": "role-call", "lat": CITY_HALL[0], "lon": CITY_HALL[1]}),
            ("POST", "/assignments", {"calls": [{"lat": CITY_HALL[0], "lon": CITY_HALL[1]}], "dry_run": True})]
ALLOWED = {
    Role.admin: {"read", "position", "dispatch"},
    Role.dispatcher: {"read", "dispatch"},
    Role.locator: {"position"},
    Role.analyst: {"read"},
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_its_endpoints(svc: Svc, role: Role) -> None:
    for kind, endpoints in (("read", READ), ("position", POSITION), ("dispatch", DISPATCH)):
        for method, path, body in endpoints:
            r = svc.req(method, path, role, json=body)
            if kind in ALLOWED[role]:
                assert r.status_code in (200, 201), (role, path, r.text)
            else:
                assert r.status_code == 403, (role, path, r.text)
                assert r.json()["error"] == "Forbidden" and role.value in r.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                                     {"Authorization": "Bearer not-a-known-token-at-all"},
                                     {"Authorization": f"Bearer {TOKENS[Role.admin]}x"},
                                     {"Authorization": f"Bearer {TOKENS[Role.admin][:-1]}"}])
def test_missing_or_wrong_token_is_401_on_every_protected_endpoint(svc: Svc, headers: dict[str, str]) -> None:
    for method, path, body in READ + POSITION + DISPATCH:
        r = svc.client.request(method, path, headers=headers, json=body)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert TOKENS[Role.admin] not in r.text
    assert svc.req("GET", "/teams/P-A1").json()["status"] == "available"  # the rejected writes did nothing


def test_a_locator_limited_to_teams_reports_only_for_them(svc: Svc) -> None:
    ok = svc.req("PUT", "/teams/CR-A1/position", LIMITED_LOCATOR, json={"lat": 42.3615, "lon": -71.0600})
    assert ok.status_code == 200
    other = svc.req("PUT", "/teams/P-A1/position", LIMITED_LOCATOR, json={"lat": 42.3615, "lon": -71.0600})
    assert other.status_code == 403
    assert svc.req("GET", "/teams", LIMITED_LOCATOR).status_code == 403


# --------------------------------------------------------------------------------------------- positions


def test_position_reports_are_committed_before_the_answer_and_kept_in_order(svc: Svc) -> None:
    sent = []
    for k in range(5):
        body = {"lat": 42.3610 + k * 1e-4, "lon": -71.0590 - k * 1e-4, "timestamp": future(1 + k)}
        r = svc.req("PUT", "/teams/CR-A1/position", Role.locator, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["position"]["lat"] == body["lat"]
        # Already on disk, seen by another connection the moment the answer arrives.
        rows = committed(svc.db, "SELECT lat, lon FROM teams WHERE team_id = 'CR-A1'")
        assert rows == [(body["lat"], body["lon"])]
        sent.append(body)
    team = svc.req("GET", "/teams/CR-A1", Role.analyst).json()
    assert datetime.fromisoformat(team["position"]["timestamp"]) == datetime.fromisoformat(sent[-1]["timestamp"])
    hist = svc.req("GET", "/teams/CR-A1/positions", Role.analyst).json()["positions"]
    assert len(hist) == 1 + len(sent)  # the base position at creation, then every report
    for got, want in zip(hist[1:], sent, strict=True):
        assert (got["lat"], got["lon"]) == (want["lat"], want["lon"])
        assert datetime.fromisoformat(got["timestamp"]) == datetime.fromisoformat(want["timestamp"])
    last2 = svc.req("GET", "/teams/CR-A1/positions?limit=2", Role.analyst).json()["positions"]
    assert last2 == hist[-2:]


def test_an_older_position_is_422_and_changes_nothing(svc: Svc) -> None:
    # Stamped by a correct clock (not ahead of the server): ordered by their stated times. (Two reports
    # both ahead of the server clock are ordered by arrival instead: see tests/test_clocks.py.)
    # Both stamps from one clock reading: on a loaded machine the first request alone can take longer
    # than the gap between them.
    t0 = datetime.now(UTC)
    new = {"lat": 42.3612, "lon": -71.0598, "timestamp": t0.isoformat()}
    assert svc.req("PUT", "/teams/CR-A1/position", Role.locator, json=new).status_code == 200
    old = {"lat": 42.3650, "lon": -71.0550, "timestamp": (t0 - timedelta(seconds=5)).isoformat()}
    r = svc.req("PUT", "/teams/CR-A1/position", Role.locator, json=old)
    assert r.status_code == 422
    assert r.json()["field"] == "timestamp" and r.json()["error"] == "Conflict"
    team = svc.req("GET", "/teams/CR-A1").json()
    assert (team["lat"], team["lon"]) == (new["lat"], new["lon"])
    assert len(svc.req("GET", "/teams/CR-A1/positions").json()["positions"]) == 2


BAD_POSITIONS = [
    ('{"lat": NaN, "lon": -71.06}', "lat"),
    ('{"lat": 42.36, "lon": Infinity}', "lon"),
    ('{"lat": -Infinity, "lon": -71.06}', "lat"),
    ('{"lat": 1e999, "lon": -71.06}', "lat"),
    ('{"lat": 91, "lon": -71.06}', "lat"),
    ('{"lat": 42.36, "lon": -181}', "lon"),
    ('{"lat": "42.36", "lon": -71.06}', "lat"),
    ('{"lat": true, "lon": -71.06}', "lat"),
    ('{"lat": null, "lon": -71.06}', "lat"),
    ('{"lat": 42.36}', "lon"),
    ('{"lat": 42.36, "lon": -71.06, "speed": 3}', "speed"),
    ('{"lat": 42.36, "lon": -71.06, "timestamp": "2024-05-01T10:00:00"}', "timestamp"),
    ('{"lat": 42.36, "lon": -71.06, "timestamp": "yesterday"}', "timestamp"),
    ('{"lat": 40.7128, "lon": -74.0060}', "position"),  # New York
    ('{"lat": 42.3400, "lon": -70.9700}', "position"),  # Boston Harbor, beyond the city limit
    ('{"lat": 42.36, "lon": -71.06', "body"),  # truncated JSON
    ("[42.36, -71.06]", "body"),
    ('"hello"', "body"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_POSITIONS)
def test_bad_position_reports_are_422_naming_the_field(shared: Svc, raw: str, field: str) -> None:
    r = shared.req("PUT", "/teams/CR-A1/position", Role.locator, content=raw,
                headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert len(shared.req("GET", "/teams/CR-A1/positions").json()["positions"]) == 1


def test_a_position_too_far_in_the_future_is_422(shared: Svc) -> None:
    r = shared.req("PUT", "/teams/CR-A1/position", Role.locator,
                json={"lat": 42.3612, "lon": -71.0598, "timestamp": future(3600)})
    assert r.status_code == 422 and r.json()["field"] == "timestamp"


def test_a_body_that_is_not_json_is_422(shared: Svc) -> None:
    r = shared.req("PUT", "/teams/CR-A1/position", Role.locator, content="lat=42.36&lon=-71.06",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_unknown_team_is_404_to_read_and_422_to_write(shared: Svc) -> None:
    for method, path, role, body in [
        ("GET", "/teams/NO-SUCH", Role.analyst, None),
        ("GET", "/teams/NO-SUCH/positions", Role.analyst, None),
        ("GET", "/teams/NO-SUCH/statuses", Role.analyst, None),
        ("PUT", "/teams/NO-SUCH/position", Role.locator, {"lat": 42.36, "lon": -71.06}),
        ("PUT", "/teams/NO-SUCH/status", Role.dispatcher, {"status": "available"}),
    ]:
        r = shared.req(method, path, role, json=body)
        assert r.status_code == (404 if method == "GET" else 422), (path, r.text)
        assert r.json() == {"detail": "unknown team 'NO-SUCH'", "field": "team_id", "error": "NotFound"}


def test_oversized_bodies_are_422_declared_or_streamed(svc: Svc) -> None:
    big = b'{"lat": 42.36, "lon": -71.06, "pad": "' + b"x" * 300_000 + b'"}'
    r = svc.req("PUT", "/teams/CR-A1/position", Role.locator, content=big,
                headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "PayloadTooLarge"

    def chunks():  # no Content-Length: the middleware must count what arrives
        for _ in range(40):
            yield b"x" * 10_000

    r = svc.req("POST", "/calls", Role.dispatcher, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert svc.req("GET", "/calls").json()["calls"] == []
    ok = svc.req("PUT", "/teams/CR-A1/position", Role.locator, json={"lat": 42.3612, "lon": -71.0598})
    assert ok.status_code == 200  # the service is unharmed


def test_unknown_paths_and_methods_are_json_errors(shared: Svc) -> None:
    r = shared.req("GET", "/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    r = shared.req("DELETE", "/teams/CR-A1")
    assert r.status_code == 405 and r.json()["error"] == "MethodNotAllowed"


# --------------------------------------------------------------------------------------------- statuses


def test_status_changes_follow_the_lifecycle(svc: Svc) -> None:
    path = "/teams/P-B2/status"
    for status in ("en_route", "on_scene", "transporting", "returning", "available"):
        r = svc.req("PUT", path, Role.dispatcher, json={"status": status})
        assert r.status_code == 200 and r.json()["status"] == status
    hist = svc.req("GET", "/teams/P-B2/statuses", Role.analyst).json()["statuses"]
    assert [h["new_status"] for h in hist] == ["available", "en_route", "on_scene", "transporting", "returning",
                                               "available"]
    # Every transition the lifecycle forbids is refused with 422 naming the status.
    forbidden = [s for s in TeamStatus if s not in TRANSITIONS[TeamStatus.available] and s != TeamStatus.available]
    assert forbidden
    for status in forbidden:
        r = svc.req("PUT", path, Role.dispatcher, json={"status": status.value})
        assert r.status_code == 422, status
        assert r.json()["field"] == "status"
    assert svc.req("GET", "/teams/P-B2").json()["status"] == "available"


@pytest.mark.parametrize(("body", "field"), [({"status": "asleep"}, "status"), ({}, "status"),
                                             ({"status": "available", "why": "x"}, "why"),
                                             ({"status": "available", "timestamp": "2024-01-01T00:00"},
                                              "timestamp")])
def test_bad_status_bodies_are_422(shared: Svc, body: dict[str, Any], field: str) -> None:
    r = shared.req("PUT", "/teams/P-B2/status", Role.dispatcher, json=body)
    assert r.status_code == 422 and r.json()["field"] == field


def test_a_status_change_older_than_the_last_is_422(svc: Svc) -> None:
    # Correct clocks (see test_an_older_position_is_422_and_changes_nothing).
    t0 = datetime.now(UTC)  # one clock reading for both stamps, as there
    first = {"status": "en_route", "timestamp": t0.isoformat()}
    assert svc.req("PUT", "/teams/P-B2/status", json=first).status_code == 200
    r = svc.req("PUT", "/teams/P-B2/status",
                json={"status": "on_scene", "timestamp": (t0 - timedelta(seconds=5)).isoformat()})
    assert r.status_code == 422 and r.json()["field"] == "timestamp"


# --------------------------------------------------------------------------------------------- calls


def test_a_call_gets_the_engines_ranking_with_road_etas(svc: Svc, boston: Any, places: Any) -> None:
    rules = load_rules()
    before = svc.team_states()
    body = {"call_id": "c-roxbury-1", "lat": ROXBURY[0], "lon": ROXBURY[1], "mental_health": True, "priority": 1}
    r = svc.req("POST", "/calls", Role.dispatcher, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["call_id"] == "c-roxbury-1" and r.headers["location"] == "/calls/c-roxbury-1"
    # The rules: mental health without risk → EMT + clinician first (one is on shift at any hour).
    assert out["rule"] == "mental_health"
    assert [t["name"] for t in out["tiers"]] == ["alternative", "community", "co_response_last"]
    assert out["tier"]["name"] == "alternative"
    assert out["call"]["neighborhood"] == "Roxbury" and out["call"]["district"] == "B2"
    sugg = out["suggestions"]
    assert sugg and all(s["team_type"] == "emt_clinician" for s in sugg)
    etas = [s["eta_s"] for s in sugg]
    assert etas == sorted(etas)
    # The speeds of the call's decision time (no `received`: the server clock), and the answer says so.
    profile = out["profile"]
    assert profile["hour_source"] == "time" and profile["mode"] == boston.profile["mode"]
    net = boston.with_profile(profile["mode"], profile["hour"])
    for s in sugg:  # the road network's own point-to-point ETA, independently
        assert s["eta_s"] == pytest.approx(net.eta((s["lat"], s["lon"]), ROXBURY), abs=0.06)
    # Exactly what the engine answers for the same fleet snapshot at the same instant.
    now = datetime.fromisoformat(out["now"])
    call = Call.from_dict(body)
    want = suggest(call, before, network=net, rules=rules, places=places, now=now).to_dict()
    assert out["suggestions"] == want["suggestions"]
    assert out["ineligible"] == want["ineligible"]
    # Recorded: the call and the decision with its inputs (audit trail), on disk.
    assert svc.req("GET", "/calls/c-roxbury-1", Role.analyst).json()["call"]["priority"] == 1
    rows = committed(svc.db, "SELECT kind, call_ids FROM decisions WHERE id = ?", (out["decision_id"],))
    assert rows == [("suggestion", '["c-roxbury-1"]')]


def test_top_limits_the_suggestions(svc: Svc) -> None:
    full = svc.req("POST", "/calls", json={"call_id": "c-top-a", "lat": CITY_HALL[0], "lon": CITY_HALL[1]}).json()
    top = svc.req("POST", "/calls?top=2", json={"call_id": "c-top-b", "lat": CITY_HALL[0],
                                                "lon": CITY_HALL[1]}).json()
    assert len(full["suggestions"]) > 2
    assert [s["team_id"] for s in top["suggestions"]] == [s["team_id"] for s in full["suggestions"][:2]]
    assert top["omitted"] == len(full["suggestions"]) - 2
    assert svc.req("POST", "/calls?top=0", json={"lat": CITY_HALL[0], "lon": CITY_HALL[1]}).status_code == 422


def test_a_call_without_id_gets_one_and_a_repeat_with_other_details_is_422(svc: Svc) -> None:
    r = svc.req("POST", "/calls", Role.dispatcher, json={"lat": CITY_HALL[0], "lon": CITY_HALL[1]})
    assert r.status_code == 201 and r.json()["call_id"].startswith("call-")
    first = {"call_id": "c-dup", "received": "2024-05-07T14:00:00-04:00", "lat": CITY_HALL[0], "lon": CITY_HALL[1]}
    assert svc.req("POST", "/calls", json=first).status_code == 201
    assert svc.req("POST", "/calls", json=first).status_code == 200  # the same call again: a retry, 200
    r = svc.req("POST", "/calls", json={**first, "weapon": True})
    assert r.status_code == 422 and r.json()["error"] == "Conflict"
    assert [c["call_id"] for c in svc.req("GET", "/calls").json()["calls"]].count("c-dup") == 1


BAD_CALLS = [
    ({"lon": -71.06}, "lat"),
    ({"lat": 42.36, "lon": -71.06, "mental_heath": True}, "mental_heath"),
    ({"lat": 42.36, "lon": -71.06, "priority": 0}, "priority"),
    ({"lat": 42.36, "lon": -71.06, "priority": 2.5}, "priority"),
    ({"lat": 42.36, "lon": -71.06, "weapon": "yes"}, "weapon"),
    ({"lat": 42.36, "lon": -71.06, "call_id": "has space"}, "call_id"),
    ({"lat": 42.36, "lon": -71.06, "received": "2024-05-01 10:00"}, "received"),
    ({"lat": 41.70, "lon": -70.30}, "location"),  # Cape Cod
]


@pytest.mark.parametrize(("body", "field"), BAD_CALLS)
def test_bad_calls_are_422_naming_the_field_and_record_nothing(shared: Svc, body: dict[str, Any], field: str) -> None:
    r = shared.req("POST", "/calls", Role.dispatcher, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert committed(shared.db, "SELECT COUNT(*) FROM calls") == [(0,)]


def test_non_finite_call_coordinates_are_422(shared: Svc) -> None:
    for raw, field in (('{"lat": NaN, "lon": -71.06}', "lat"), ('{"lat": 42.36, "lon": -Infinity}', "lon")):
        r = shared.req("POST", "/calls", Role.dispatcher, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == field


def test_unknown_call_is_404(shared: Svc) -> None:
    assert shared.req("GET", "/calls/nope").status_code == 404
    r = shared.req("POST", "/calls/nope/assign", Role.dispatcher, json={"team_id": "P-A1"})
    assert r.status_code == 422 and r.json()["field"] == "call_id"


# --------------------------------------------------------------------------------------------- assign


def _new_call(svc: Svc, call_id: str, lat: float, lon: float, **flags: Any) -> dict[str, Any]:
    r = svc.req("POST", "/calls", Role.dispatcher, json={"call_id": call_id, "lat": lat, "lon": lon, **flags})
    assert r.status_code == 201, r.text
    return r.json()


def test_assigning_a_team_records_it_and_sends_the_team_en_route(svc: Svc) -> None:
    out = _new_call(svc, "c-a1", *CITY_HALL)
    best = out["suggestions"][0]
    r = svc.req("POST", "/calls/c-a1/assign", Role.dispatcher, json={"team_id": best["team_id"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["assignment"]["team_id"] == best["team_id"]
    assert body["assignment"]["eta_s"] == pytest.approx(best["eta_s"], abs=0.06)
    assert body["team"]["status"] == "en_route" and body["team"]["dispatchable"] is False
    assert svc.req("GET", f"/teams/{best['team_id']}").json()["status"] == "en_route"
    on_disk = committed(svc.db, "SELECT call_id, team_id FROM assignments")
    assert on_disk == [("c-a1", best["team_id"])]
    assert committed(svc.db, "SELECT status FROM teams WHERE team_id = ?", (best["team_id"],)) == [("en_route",)]
    # A retry of the same decision is not an error and records nothing new.
    again = svc.req("POST", "/calls/c-a1/assign", Role.dispatcher, json={"team_id": best["team_id"]})
    assert again.status_code == 200 and again.json()["created"] is False
    assert len(svc.req("GET", "/assignments?call_id=c-a1", Role.analyst).json()["assignments"]) == 1
    # The team is busy now: another call cannot have it, and it is no longer suggested.
    out2 = _new_call(svc, "c-a2", CITY_HALL[0] + 0.0005, CITY_HALL[1])
    assert best["team_id"] not in [s["team_id"] for s in out2["suggestions"]]
    busy = [i for i in out2["ineligible"] if i["team_id"] == best["team_id"]]
    assert busy and busy[0]["code"] == "busy"
    r = svc.req("POST", "/calls/c-a2/assign", Role.dispatcher, json={"team_id": best["team_id"], "override": True})
    assert r.status_code == 422 and r.json()["field"] == "team_id"


def test_a_team_outside_the_suggestions_needs_override(svc: Svc) -> None:
    out = _new_call(svc, "c-mh", *ROXBURY, mental_health=True)
    suggested = {s["team_id"] for s in out["suggestions"]}
    assert "P-B2" not in suggested  # police is not in a no-risk mental-health call's tiers
    r = svc.req("POST", "/calls/c-mh/assign", Role.dispatcher, json={"team_id": "P-B2"})
    assert r.status_code == 422 and "override" in r.json()["detail"]
    assert svc.req("GET", "/teams/P-B2").json()["status"] == "available"
    r = svc.req("POST", "/calls/c-mh/assign", Role.dispatcher, json={"team_id": "P-B2", "override": True})
    assert r.status_code == 201
    assert r.json()["override"] and "not in this call's tiers" in r.json()["override"]
    assert r.json()["assignment"]["tier"] == "override"
    assert svc.req("GET", "/teams/P-B2").json()["status"] == "en_route"


def test_assign_with_an_unknown_team_is_422_naming_it_and_bad_body_422(svc: Svc) -> None:
    _new_call(svc, "c-x", *CITY_HALL)
    r = svc.req("POST", "/calls/c-x/assign", Role.dispatcher, json={"team_id": "NO-SUCH"})
    assert r.status_code == 422 and r.json()["field"] == "team_id"
    r = svc.req("POST", "/calls/c-x/assign", Role.dispatcher, json={"team": "P-A1"})
    assert r.status_code == 422


def test_two_dispatchers_racing_for_one_team_get_one_yes_and_one_no(svc: Svc) -> None:
    _new_call(svc, "c-r1", *CITY_HALL)
    _new_call(svc, "c-r2", CITY_HALL[0] + 0.0004, CITY_HALL[1] + 0.0004)
    team = "P-A1"
    results: list[int] = []
    barrier = threading.Barrier(2)
    store = svc.app.state.service.store
    record = store.assign

    def slow_record(*args: Any, **kwargs: Any) -> Any:  # a slow road search widens the window a race needs
        time.sleep(0.2)
        return record(*args, **kwargs)

    store.assign = slow_record

    def go(call_id: str) -> None:
        barrier.wait()
        r = svc.req("POST", f"/calls/{call_id}/assign", Role.dispatcher, json={"team_id": team, "override": True})
        results.append(r.status_code)

    threads = [threading.Thread(target=go, args=(c,)) for c in ("c-r1", "c-r2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 422]
    assert len(committed(svc.db, "SELECT * FROM assignments WHERE team_id = ?", (team,))) == 1


def test_a_team_assigned_by_another_process_on_the_same_database_is_422(svc: Svc) -> None:
    from routing.dispatch import Assignment, AssignmentResult

    _new_call(svc, "c-cli", *CITY_HALL)
    _new_call(svc, "c-svc", *CITY_HALL)
    other = Store(svc.db)  # what the CLI opens: its own connection, the service's lock does not apply
    try:
        ts = other.team("P-A1")
        a = Assignment("c-cli", "P-A1", ts.team.team_type, 60.0, 500.0, "manual", 0, False, ts.lat, ts.lon)
        other.assign(AssignmentResult([other.call("c-cli")], [a], [], 60.0, True, "MANUAL", 0.0, 1.0, 1.0,
                                      datetime.now(UTC)))
    finally:
        other.close()
    r = svc.req("POST", "/calls/c-svc/assign", Role.dispatcher, json={"team_id": "P-A1", "override": True})
    assert r.status_code == 422 and r.json()["field"] == "team_id"
    assert committed(svc.db, "SELECT call_id FROM assignments WHERE team_id = 'P-A1'") == [("c-cli",)]


def test_a_call_shows_its_suggestions_and_assignments(svc: Svc) -> None:
    received = datetime.now(UTC).isoformat()
    first = _new_call(svc, "c-show", *CITY_HALL, received=received)
    _new_call(svc, "c-other", *ROXBURY)
    again = svc.req("POST", "/calls", Role.dispatcher, json={"call_id": "c-show", "lat": CITY_HALL[0],
                                                              "lon": CITY_HALL[1], "received": received})
    assert again.status_code == 200  # the same call again (a retry): its record and a fresh suggestion
    team = first["suggestions"][0]["team_id"]
    assert svc.req("POST", "/calls/c-show/assign", Role.dispatcher, json={"team_id": team}).status_code == 201
    r = svc.req("GET", "/calls/c-show", Role.analyst)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["call"]["call_id"] == "c-show"
    assert [a["team_id"] for a in body["assignments"]] == [team]
    # Both suggestion decisions of this call, newest first, none of the other call's.
    assert [s["decision_id"] for s in body["suggestions"]] == [again.json()["decision_id"], first["decision_id"]]
    assert body["suggestions"][1]["suggestions"] == first["suggestions"]


# --------------------------------------------------------------------------------------------- joint


def test_joint_assignment_is_the_engines_and_applies_the_plan(svc: Svc, boston: Any, places: Any) -> None:
    rules = load_rules()
    _new_call(svc, "j-1", *ROXBURY, mental_health=True)
    before = svc.team_states()
    new_calls = [{"call_id": "j-2", "lat": CITY_HALL[0], "lon": CITY_HALL[1], "priority": 1},
                 {"call_id": "j-3", "lat": 42.3505, "lon": -71.0640, "needs_transport": True}]
    dry = svc.req("POST", "/assignments", Role.dispatcher, json={"call_ids": ["j-1"], "calls": new_calls,
                                                                  "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["decision_id"] is None
    assert all(t["status"] == "available" for t in svc.teams())  # a dry run changes nothing
    r = svc.req("POST", "/assignments", Role.dispatcher, json={"call_ids": ["j-1"], "calls": new_calls})
    assert r.status_code == 201, r.text
    out = r.json()
    calls = [svc_call for svc_call in (Call.from_dict(c) for c in out["calls"])]
    net = boston.with_profile(out["profile"]["mode"], out["profile"]["hour"])  # the speeds it says it used
    want = assign(calls, before, network=net, rules=rules, places=places,
                  now=datetime.fromisoformat(out["now"])).to_dict()
    assert out["assignments"] == want["assignments"] and out["unserved"] == want["unserved"]
    assert len(out["assignments"]) == 3
    assert len({a["team_id"] for a in out["assignments"]}) == 3  # one team per call
    for a in out["assignments"]:
        assert svc.req("GET", f"/teams/{a['team_id']}").json()["status"] == "en_route"
    assert sorted(c for c, in committed(svc.db, "SELECT call_id FROM assignments")) == ["j-1", "j-2", "j-3"]
    assert svc.req("GET", "/calls/j-3").status_code == 200  # new calls were recorded with the decision


@pytest.mark.parametrize(("body", "status", "field"), [
    ({}, 422, "call_ids"),
    ({"call_ids": ["never-recorded"]}, 422, "call_id"),
    ({"calls": [{"lat": 42.36, "lon": -71.06}, {"lat": 42.36}]}, 422, "calls[1].lon"),
    ({"calls": [{"call_id": "d", "lat": 42.36, "lon": -71.06}, {"call_id": "d", "lat": 42.35, "lon": -71.06}]},
     422, "call_id"),
    ({"calls": [{"lat": 42.36, "lon": -71.06}] * 201}, 422, "calls"),
])
def test_bad_joint_requests(shared: Svc, body: dict[str, Any], status: int, field: str) -> None:
    r = shared.req("POST", "/assignments", Role.dispatcher, json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert committed(shared.db, "SELECT COUNT(*) FROM decisions") == [(0,)]


# --------------------------------------------------------------------------------------------- maps, coverage


def test_fleet_map_is_html_showing_the_teams(svc: Svc) -> None:
    r = svc.req("GET", "/maps/fleet", Role.analyst)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower() and "leaflet" in r.text.lower()
    for team in ("CR-A1", "EC-3", "EMS-HQ-2"):
        assert team in r.text
    assert svc.req("GET", "/maps/fleet", Role.locator).status_code == 403


def test_call_map_shows_the_call_and_its_best_team(svc: Svc) -> None:
    out = _new_call(svc, "c-map", *ROXBURY, mental_health=True)
    r = svc.req("GET", "/maps/calls/c-map", Role.analyst)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "c-map" in r.text and out["suggestions"][0]["team_id"] in r.text
    assert svc.req("GET", "/maps/calls/nope", Role.analyst).status_code == 404
    assert svc.req("GET", "/maps/calls/c-map", Role.locator).status_code == 403


def test_coverage_follows_the_live_fleet(svc: Svc) -> None:
    everything = svc.req("GET", "/coverage?minutes=180", Role.analyst).json()
    assert everything["overall_covered_share"] == pytest.approx(1.0)  # three hours reach all of Boston
    short = svc.req("GET", "/coverage?minutes=4", Role.analyst).json()
    assert 0 < short["overall_covered_share"] < 1
    co = svc.req("GET", "/coverage?minutes=8&team_type=co_response", Role.analyst).json()
    # The service judges shifts on its own clock: three co-response cars work 08:00-24:00 only.
    now = datetime.now(UTC)
    on_shift = {t.team_id for t in FLEET if t.team_type == "co_response" and t.on_shift(now)}
    assert {r["label"] for r in co["responders"]} == on_shift
    # A team out of service stops counting, and the answer says why (CR-B2 works around the clock).
    assert svc.req("PUT", "/teams/CR-B2/status", Role.dispatcher, json={"status": "out_of_service"}).status_code == 200
    after = svc.req("GET", "/coverage?minutes=8&team_type=co_response", Role.analyst).json()
    assert "CR-B2" not in {r["label"] for r in after["responders"]}
    assert {"label": "CR-B2", "reason": "status out_of_service"} in after["excluded"]
    assert after["overall_covered_share"] <= co["overall_covered_share"]
    geo = svc.req("GET", "/coverage?geojson=true", Role.analyst).json()
    assert geo["type"] == "FeatureCollection" and geo["features"]


@pytest.mark.parametrize(("query", "field"), [("minutes=0", "minutes"), ("minutes=nan", "minutes"),
                                              ("minutes=181", "minutes"), ("team_type=tank", "team_type[0]"),
                                              ("from_staging=maybe", "from_staging")])
def test_bad_coverage_queries_are_422(shared: Svc, query: str, field: str) -> None:
    r = shared.req("GET", f"/coverage?{query}", Role.analyst)
    assert r.status_code == 422 and r.json()["field"] == field


# --------------------------------------------------------------------------------------------- tokens


def test_token_table_rejects_weak_or_malformed_entries_without_echoing_tokens(tmp_path: Path) -> None:
    secret = "s" * (MIN_TOKEN_LENGTH + 4)
    cases = [({"short": "admin"}, "at least"), ({secret: "root"}, "unknown role"),
             ({secret: {"role": "locator", "teams": "CR-A1"}}, "teams"), ({}, "no tokens"),
             ({secret: {"role": "admin", "extra": 1}}, "unknown key")]
    for doc, words in cases:
        with pytest.raises(Exception) as info:
            TokenTable(doc)
        assert words in str(info.value) and secret not in str(info.value)
    bad = tmp_path / "tokens.json"
    bad.write_text('{"' + secret + '": "admin",}')
    with pytest.raises(Exception) as info:
        TokenTable.from_file(bad)
    assert "not valid JSON" in str(info.value) and secret not in str(info.value)


def test_token_lookup_finds_exactly_the_right_principal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKEN_FILE_DOC))
    path.chmod(0o600)
    monkeypatch.setenv(TOKENS_ENV, str(path))
    table = TokenTable.from_env()
    assert len(table) == len(TOKEN_FILE_DOC)
    for role, token in TOKENS.items():
        assert table.lookup(token).role == role
        assert table.lookup(token + " ") is None and table.lookup(token[:-1]) is None
    limited = table.lookup(LIMITED_LOCATOR)
    assert limited.may_report_for("CR-A1") and not limited.may_report_for("CR-B2")
    assert table.lookup("") is None


def test_serve_refuses_unsafe_or_incomplete_setups(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from routing.cli import main

    monkeypatch.delenv(TOKENS_ENV, raising=False)
    assert main(["serve", "--no-auth", "--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main(["serve", "--port", "8999"]) == 2
    assert TOKENS_ENV in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--port", "70000"])


# --------------------------------------------------------------------------------------------- group commit


def test_group_commit_gives_each_write_its_own_outcome(tmp_path: Path) -> None:
    db = tmp_path / "group.db"
    store = GroupCommitStore(db)
    writer = GroupWriter(store)
    try:
        gate = threading.Event()
        first = writer.submit(gate.wait, 10)  # holds the writer so the next writes queue into one group
        time.sleep(0.05)
        t1 = datetime.now(UTC)  # not ahead of the clock: reports ahead of it are ordered by arrival
        newer = writer.submit(store.report_position, "CR-A1", 42.3620, -71.0590, t1)
        older = writer.submit(store.report_position, "CR-A1", 42.3650, -71.0550, t1 - timedelta(seconds=3))
        unknown = writer.submit(store.report_position, "NO-SUCH", 42.3620, -71.0590, t1)
        status = writer.submit(store.set_status, "P-A1", "en_route")
        withdrawn = writer.submit(store.set_status, "P-A7", "en_route")
        assert withdrawn.cancel()
        gate.set()
        assert first.result(timeout=10) is True
        assert newer.result(timeout=10).lat == 42.3620
        with pytest.raises(Conflict):
            older.result(timeout=10)
        with pytest.raises(NotFound):
            unknown.result(timeout=10)
        assert status.result(timeout=10).status == TeamStatus.en_route
        assert withdrawn.cancelled()
        assert (writer.commits, writer.writes) == (2, 5)  # the gate alone, then four writes in one commit
    finally:
        writer.close()
        store.close()
    assert committed(db, "SELECT lat, lon FROM positions WHERE team_id = 'CR-A1' ORDER BY id") == [
        (FLEET[0].base_lat, FLEET[0].base_lon), (42.3620, -71.0590)]
    assert committed(db, "SELECT team_id, status FROM teams WHERE team_id IN ('P-A1', 'P-A7') ORDER BY team_id") == [
        ("P-A1", "en_route"), ("P-A7", "available")]


def test_a_call_says_when_a_free_team_would_beat_the_one_still_driving(svc: Svc) -> None:
    # Send the farthest suggested team on purpose: the nearest, still free, would arrive minutes sooner.
    out = _new_call(svc, "c-rd", *CITY_HALL, safety_risk=True)
    first, last = out["suggestions"][0], out["suggestions"][-1]
    assert last["eta_s"] - first["eta_s"] > 120
    r = svc.req("POST", "/calls/c-rd/assign", Role.dispatcher,
                json={"team_id": last["team_id"]})
    assert r.status_code == 201, r.text
    advice = svc.req("GET", "/calls/c-rd").json()["redispatch"]
    assert advice["assigned_team"] == last["team_id"]
    assert advice["better"][0]["team_id"] == first["team_id"]
    assert advice["better"][0]["saves_s"] > 120 and first["team_id"] in advice["advice"]
    # Once the nearest team is busy elsewhere it is no longer offered.
    assert svc.req("PUT", f"/teams/{first['team_id']}/status", Role.dispatcher,
                   json={"status": "out_of_service"}).status_code == 200
    later = svc.req("GET", "/calls/c-rd").json()["redispatch"]
    assert first["team_id"] not in [b["team_id"] for b in later["better"]]
