"""Suggestions and joint assignment, on the real Boston network and on brute-forced small instances;
and the dispatch CLI."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import routing.eta as eta
from routing.cli import main
from routing.cli.dispatch import SAMPLE_CALLS, sample_calls
from routing.dispatch import assign, solve_assignment, suggest
from routing.errors import InvalidInput, OutsideServiceArea
from routing.eta import clear_caches, eta_engine, warm_up
from routing.fleet import Team, TeamState, TeamStatus, TeamType, load_fleet
from routing.triage import Call, load_rules

# Tuesday 2025-05-06 14:00 in Boston (EDT): day shifts on, night shift off, community teams on.
NOW = datetime(2025, 5, 6, 18, 0, tzinfo=UTC)
NIGHT = datetime(2025, 5, 7, 7, 0, tzinfo=UTC)  # 03:00 EDT


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture
def fleet() -> list[TeamState]:
    return [TeamState.at_base(t, NOW) for t in load_fleet()]


def _call(lat: float, lon: float, call_id: str = "c", **flags) -> Call:
    return Call.from_dict({"call_id": call_id, "lat": lat, "lon": lon, "received": NOW.isoformat(), **flags})


def _with_status(teams: list[TeamState], status: TeamStatus, pred) -> list[TeamState]:
    return [replace(ts, status=status) if pred(ts) else ts for ts in teams]


ROXBURY = (42.326782, -71.076715)  # BCYF Vine Street (district B2)
WEST_END = (42.361914, -71.063491)  # Lindemann Mental Health Center (district A1)
DORCHESTER = (42.292451, -71.080451)  # BCYF Perkins (district B3)


# ------------------------------------------------------------------------------------------ suggest


def test_etas_and_distances_agree_with_the_network_engine(boston, places, rules, fleet) -> None:
    clear_caches()
    rng = np.random.default_rng(7)
    moved = [ts.moved(ts.lat + rng.uniform(-0.004, 0.004), ts.lon + rng.uniform(-0.004, 0.004), NOW)
             for ts in fleet]
    # Cold cache (reverse search from the call), then warm (cached forward rows): same answers.
    for teams in (moved, moved, moved, fleet, fleet, fleet):
        for (lat, lon), flags in [(ROXBURY, {"safety_risk": True}), (DORCHESTER, {"needs_transport": True}),
                                  (WEST_END, {})]:
            result = suggest(_call(lat, lon, **flags), teams, network=boston, rules=rules, places=places, now=NOW)
            assert result.suggestions
            for s in result.suggestions:
                # Teams attach to any road (origin_on="any"), calls to streets: as suggest does.
                route = boston.route((s.lat, s.lon), (lat, lon), origin_on="any")
                assert s.eta_s == pytest.approx(boston.eta((s.lat, s.lon), (lat, lon), origin_on="any"), abs=1e-6)
                assert s.eta_s == pytest.approx(route.travel_time_s, abs=1e-6)
                assert s.distance_m == pytest.approx(route.distance_m, abs=1e-3)


def test_warm_up_makes_calls_lookups_with_the_same_answers(boston, places, rules, fleet) -> None:
    clear_caches()
    call = _call(*ROXBURY, mental_health=True)
    cold = suggest(call, fleet, network=boston, rules=rules, places=places, now=NOW).to_dict()
    clear_caches()
    # One row per node where a team joins the network: both ends of a two-way street, one of a one-way.
    distinct = {int(x) for ts in fleet for x in boston.snap_exits(boston.snap(ts.lat, ts.lon, on="any"))[0]}
    assert warm_up(fleet, network=boston) == len(distinct)
    assert warm_up(fleet, network=boston) == 0
    engine = eta_engine(boston)
    before = dict(engine.stats)
    warm = suggest(call, fleet, network=boston, rules=rules, places=places, now=NOW).to_dict()
    assert engine.stats["reverse_searches"] == before["reverse_searches"]  # a pure lookup
    assert warm == cold


@pytest.mark.parametrize("use_hierarchy", [False, True])
def test_distances_are_the_same_whether_walked_along_one_path_or_computed_for_the_whole_tree(
        boston, places, rules, fleet, use_hierarchy, monkeypatch) -> None:
    # Searching from the call, the engine walks the path of the few teams a caller returns and computes
    # a whole tree's distances only when many are wanted: both must give the same numbers, and the
    # route's length. From the hierarchy (the default for teams without a cached row), the same.
    monkeypatch.setattr(eta, "USE_HIERARCHY", use_hierarchy)
    rng = np.random.default_rng(23)
    for _ in range(12):
        moved = [replace(ts, lat=ts.lat + rng.normal(0, 0.004), lon=ts.lon + rng.normal(0, 0.004)) for ts in fleet]
        call = _call(rng.uniform(42.31, 42.36), rng.uniform(-71.09, -71.04), safety_risk=True)
        clear_caches()
        one = suggest(call, moved, network=boston, rules=rules, places=places, now=NOW, top=2)
        walked = list(eta_engine(boston).reverse_rows.values())
        if not use_hierarchy:
            assert walked and all(row.dist is None for row in walked)  # only paths were walked
        else:
            assert not walked and eta_engine(boston).stats["hierarchy_queries"] > 0
        clear_caches()
        every = suggest(call, moved, network=boston, rules=rules, places=places, now=NOW)
        assert len(every.suggestions) > 8
        assert [(s.team_id, s.eta_s, s.distance_m) for s in one.suggestions] == [
            (s.team_id, s.eta_s, s.distance_m) for s in every.suggestions[:2]]
        for s in one.suggestions:
            assert s.distance_m == pytest.approx(
                boston.route((s.lat, s.lon), (call.lat, call.lon), origin_on="any").distance_m, abs=1e-3)


def test_ranking_is_by_eta_with_ties_by_team_id(boston, places, rules, fleet) -> None:
    result = suggest(_call(*DORCHESTER, safety_risk=True), fleet, network=boston, rules=rules, places=places,
                     now=NOW)
    etas = [s.eta_s for s in result.suggestions]
    assert etas == sorted(etas) and len(etas) == 11  # every police unit
    assert [s.rank for s in result.suggestions] == list(range(1, 12))
    # Two units at the same spot: same ETA, ordered by id whatever the input order.
    base = fleet[0].team
    twins = [TeamState.at_base(replace(base, team_id=i, team_type=TeamType.police, dedicated=False,
                                       service_area=()), NOW) for i in ("Z-9", "A-1", "M-5")]
    result = suggest(_call(*DORCHESTER, safety_risk=True), twins, network=boston, rules=rules, now=NOW)
    assert [s.team_id for s in result.suggestions] == ["A-1", "M-5", "Z-9"]
    assert len({s.eta_s for s in result.suggestions}) == 1


def test_dedicated_cars_only_for_mental_health_inside_their_area(boston, places, rules, fleet) -> None:
    rng = np.random.default_rng(11)
    dedicated = {ts.team_id: ts.team for ts in fleet if ts.team.dedicated}
    checked = 0
    while checked < 60:
        lat, lon = rng.uniform(42.24, 42.39), rng.uniform(-71.17, -71.00)
        if not boston.in_service_area(lat, lon):
            continue
        flags = {f: bool(rng.integers(2)) for f in ("mental_health", "safety_risk", "weapon")}
        result = suggest(_call(lat, lon, **flags), fleet, network=boston, rules=rules, places=places, now=NOW)
        hood, district = places.locate(lat, lon)  # independent truth for the area
        for s in result.suggestions:
            if s.team_id in dedicated:
                assert flags["mental_health"]
                assert district in dedicated[s.team_id].service_area or hood in dedicated[s.team_id].service_area
        reasons = {i.team_id: i.code for i in result.ineligible}
        for team_id in dedicated:
            if not flags["mental_health"] and team_id in reasons and reasons[team_id] != "wrong_type":
                assert reasons[team_id] == "dedicated_mh_only"
        checked += 1


def test_dedicated_car_outside_its_district_is_explained(boston, places, rules, fleet) -> None:
    result = suggest(_call(*WEST_END, mental_health=True, weapon=True), fleet, network=boston, rules=rules,
                     places=places, now=NOW)
    assert result.call.district == "A1"
    assert result.best.team_id == "CR-A1"  # 400 m from the A-1 station
    reasons = {i.team_id: i for i in result.ineligible}
    assert reasons["CR-B2"].code == "outside_area"
    assert "CR-B2" not in {s.team_id for s in result.suggestions}
    assert reasons["P-A1"].code == "lower_tier"
    assert reasons["EC-1"].code == "wrong_type"


def test_fallback_to_next_tier_and_none_at_all(boston, places, rules, fleet) -> None:
    call = _call(*ROXBURY, mental_health=True, safety_risk=True)
    busy = _with_status(fleet, TeamStatus.on_scene, lambda ts: ts.team.team_type is TeamType.co_response)
    result = suggest(call, busy, network=boston, rules=rules, places=places, now=NOW)
    assert result.fell_back and result.tier_index == 1 and result.tier.name == "police_backup"
    assert {s.team_type for s in result.suggestions} == {TeamType.police}
    assert result.message.startswith("fell back")
    assert {i.code for i in result.ineligible if i.team_id.startswith("CR-")} == {"busy"}
    nobody = _with_status(busy, TeamStatus.out_of_service, lambda ts: ts.team.team_type is TeamType.police)
    result = suggest(call, nobody, network=boston, rules=rules, places=places, now=NOW)
    assert result.tier is None and result.suggestions == [] and result.tier_index is None
    assert "no eligible team" in result.message
    assert len(result.ineligible) == len(fleet)
    json.dumps(result.to_dict(), allow_nan=False)


def test_service_hours_and_community_area(boston, places, rules, fleet) -> None:
    # A mental-health call in Roxbury with both day EMT+clinician teams busy.
    teams = _with_status(fleet, TeamStatus.en_route, lambda ts: ts.team_id in ("EC-1", "EC-2"))
    call = _call(*ROXBURY, mental_health=True)
    day = suggest(call, teams, network=boston, rules=rules, places=places, now=NOW)
    assert day.tier.name == "community" and day.fell_back
    assert {s.team_id for s in day.suggestions} == {"COM-ROX", "COM-SE"}  # both serve Roxbury
    assert {i.team_id: i.code for i in day.ineligible}["COM-DOR"] == "outside_area"
    # At 03:00 the night EMT+clinician team is on.
    night = suggest(call, [replace(ts, position_time=NIGHT) for ts in teams], network=boston, rules=rules,
                    places=places, now=NIGHT)
    assert night.tier.name == "alternative" and [s.team_id for s in night.suggestions] == ["EC-3"]
    # ...and with it busy too, community teams are off: fall back to co-response.
    teams3 = _with_status(teams, TeamStatus.on_scene, lambda ts: ts.team_id == "EC-3")
    night = suggest(call, [replace(ts, position_time=NIGHT) for ts in teams3], network=boston, rules=rules,
                    places=places, now=NIGHT)
    assert night.tier.name == "co_response_last" and night.tier_index == 2
    codes = {i.team_id: i.code for i in night.ineligible}
    assert codes["COM-ROX"] == codes["COM-SE"] == "outside_hours"
    assert codes["CR-C11"] == "outside_hours"  # BEST teams work 08:00-24:00
    assert {s.team_id for s in night.suggestions} == {"CR-B2"}  # the dedicated B2 car, 24 h, in its area


def test_returning_team_is_ranked_from_where_it_is(boston, places, rules, fleet) -> None:
    call = _call(*DORCHESTER, needs_transport=True)
    near = (42.2930, -71.0790)
    teams = [ts.moved(*near, NOW) if ts.team_id == "EMS-BR" else ts for ts in fleet]
    teams = _with_status(teams, TeamStatus.returning, lambda ts: ts.team_id == "EMS-BR")
    result = suggest(call, teams, network=boston, rules=rules, places=places, now=NOW)
    best = result.best
    assert best.team_id == "EMS-BR" and best.status is TeamStatus.returning  # Brighton's unit, passing by
    assert best.eta_s == pytest.approx(boston.eta(near, DORCHESTER), abs=1e-6)
    at_base = suggest(call, fleet, network=boston, rules=rules, places=places, now=NOW)
    assert next(s for s in at_base.suggestions if s.team_id == "EMS-BR").eta_s > 10 * best.eta_s


def test_stale_positions_are_flagged(boston, places, rules, fleet) -> None:
    old = [replace(ts, position_time=NOW - timedelta(hours=1)) if ts.team_id == "P-B3" else ts for ts in fleet]
    call = _call(*DORCHESTER, safety_risk=True)
    result = suggest(call, old, network=boston, rules=rules, places=places, now=NOW)
    flags = {s.team_id: (s.stale, s.position_age_s) for s in result.suggestions}
    assert flags["P-B3"] == (True, 3600.0)
    assert not any(stale for tid, (stale, _) in flags.items() if tid != "P-B3")
    relaxed = suggest(call, old, network=boston, rules=rules, places=places, now=NOW, stale_after_s=7200)
    assert not any(s.stale for s in relaxed.suggestions)


def test_top_limits_and_counts_the_rest(boston, places, rules, fleet) -> None:
    result = suggest(_call(*DORCHESTER, safety_risk=True), fleet, network=boston, rules=rules, places=places,
                     now=NOW, top=3)
    assert len(result.suggestions) == 3 and result.omitted == 8
    with pytest.raises(InvalidInput):
        suggest(_call(*DORCHESTER), fleet, network=boston, rules=rules, now=NOW, top=0)


def test_call_outside_the_city_is_rejected(boston, rules, fleet) -> None:
    with pytest.raises(OutsideServiceArea):
        suggest(_call(41.824, -71.4128), fleet, network=boston, rules=rules, now=NOW)  # Providence


def test_geojson_is_lon_lat(boston, places, rules, fleet) -> None:
    result = suggest(_call(*ROXBURY, mental_health=True), fleet, network=boston, rules=rules, places=places,
                     now=NOW)
    gj = result.to_geojson()
    call_feature = gj["features"][0]
    assert call_feature["geometry"]["coordinates"] == [ROXBURY[1], ROXBURY[0]]
    assert {f["properties"]["role"] for f in gj["features"]} == {"call", "suggested", "ineligible"}


# ------------------------------------------------------------------------------------------ assignment


def _brute_force(eta: np.ndarray, tier: np.ndarray, weights, pen: float, uns: float) -> float:
    """Minimum objective over every assignment that respects the fallback rule (independent of CP-SAT)."""
    n, m = eta.shape
    ok = (tier >= 0) & np.isfinite(eta)
    best = math.inf
    for combo in itertools.product(*[[None, *np.flatnonzero(ok[i]).tolist()] for i in range(n)]):
        used = [j for j in combo if j is not None]
        if len(used) != len(set(used)):
            continue
        holder = {j: i for i, j in enumerate(combo) if j is not None}
        valid = True
        for i, j in enumerate(combo):
            level = math.inf if j is None else tier[i, j]
            # A better-tier team for this call may not sit idle.
            if any(ok[i, jp] and tier[i, jp] < level and jp not in holder for jp in range(m)):
                valid = False
                break
        if not valid:
            continue
        cost = 0
        for i, j in enumerate(combo):
            cost += weights[i] * (round(uns * 1000) if j is None
                                  else round(eta[i, j] * 1000) + round(pen * 1000) * tier[i, j])
        best = min(best, cost / 1000)
    return best


@pytest.mark.parametrize("method", ["cp-sat", "enumerate", "auto"])
def test_assignment_is_optimal_against_brute_force(method) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(150):
        n, m = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        eta = rng.uniform(60, 1500, size=(n, m)).round(3)
        tier = rng.integers(-1, 3, size=(n, m))
        eta[rng.random((n, m)) < 0.1] = np.inf
        weights = rng.integers(1, 5, size=n).tolist()
        pen, uns = float(rng.choice([0, 120, 600])), float(rng.choice([900, 7200]))
        sol = solve_assignment(eta, tier, weights, tier_penalty_s=pen, unserved_penalty_s=uns, method=method)
        assert sol.optimal and sol.status == "OPTIMAL"
        if method != "auto" and sol.rounds + (sol.method == "enumerate") > 0:  # else nothing was eligible
            assert sol.method == method
        assert sol.objective == pytest.approx(_brute_force(eta, tier, weights, pen, uns), abs=1e-6)
        taken = [j for j in sol.team_of_call if j is not None]
        assert len(taken) == len(set(taken))
        assert all(j is None or (tier[i, j] >= 0 and np.isfinite(eta[i, j]))
                   for i, j in enumerate(sol.team_of_call))


def test_tier_penalty_decides_which_call_falls_back() -> None:
    # Two calls want team 0 in tier 0; team 1 is tier 1 for both. Call 0 gains 100 s from team 0,
    # call 1 gains 300 s, so call 1 gets team 0; but with call 0 weighted x4 its 400 s wins.
    eta = np.array([[100.0, 200.0], [100.0, 400.0]])
    tier = np.array([[0, 1], [0, 1]])
    sol = solve_assignment(eta, tier, [1, 1], tier_penalty_s=600, unserved_penalty_s=7200)
    assert sol.team_of_call == [1, 0] and sol.objective == pytest.approx(100 + 200 + 600)
    sol = solve_assignment(eta, tier, [4, 1], tier_penalty_s=600, unserved_penalty_s=7200)
    assert sol.team_of_call == [0, 1]
    # One team, two calls: the heavier call is served, the other unserved (costing its penalty).
    sol = solve_assignment(np.array([[300.0], [100.0]]), np.array([[0], [0]]), [3, 1],
                           tier_penalty_s=600, unserved_penalty_s=1000)
    assert sol.team_of_call == [0, None] and sol.objective == pytest.approx(3 * 300 + 1000)


def test_single_call_assignment_matches_suggest(boston, places, rules, fleet) -> None:
    for k, d in enumerate(SAMPLE_CALLS):
        call = Call.from_dict({key: v for key, v in d.items() if key != "where"})
        s = suggest(call, fleet, network=boston, rules=rules, places=places, now=NOW)
        a = assign([call], fleet, network=boston, rules=rules, places=places, now=NOW)
        assert a.optimal
        assert [x.team_id for x in a.assignments] == [s.best.team_id], call.call_id
        assert a.assignments[0].eta_s == pytest.approx(s.best.eta_s)
        assert a.assignments[0].tier == s.tier.name
        if k == 0:  # with other teams busy too
            busy = _with_status(fleet, TeamStatus.en_route, lambda ts, first=s.best.team_id: ts.team_id == first)
            s2 = suggest(call, busy, network=boston, rules=rules, places=places, now=NOW)
            a2 = assign([call], busy, network=boston, rules=rules, places=places, now=NOW)
            assert a2.assignments[0].team_id == s2.best.team_id != s.best.team_id


def test_boston_assignment_matches_brute_force_over_network_etas(boston, places, rules, fleet) -> None:
    # Few teams so brute force stays small: two co-response, one police, two EMT+clinician.
    keep = {"CR-B2", "CR-D4", "P-B2", "EC-1", "EC-2"}
    teams = [ts for ts in fleet if ts.team_id in keep]
    calls = [_call(*ROXBURY, "r", mental_health=True, safety_risk=True, priority=1),
             _call(42.3300, -71.0850, "r2", mental_health=True, weapon=True, priority=2),
             _call(*DORCHESTER, "d", mental_health=True, priority=3),
             _call(42.3400, -71.0700, "s", mental_health=True, priority=2)]
    result = assign(calls, teams, network=boston, rules=rules, places=places, now=NOW)
    assert result.optimal
    # Independent matrix: ETAs from network.eta, tiers from the rules, eligibility by hand
    # (all teams available, on shift at 14:00; CR-B2 serves B2 only).
    eta = np.full((len(calls), len(teams)), np.inf)
    tier = np.full((len(calls), len(teams)), -1)
    for i, c in enumerate(calls):
        _, district = places.locate(c.lat, c.lon)
        type_tier = rules.type_tiers(c)
        for j, ts in enumerate(teams):
            if ts.team.team_type not in type_tier:
                continue
            if ts.team_id == "CR-B2" and (district != "B2" or not c.mental_health):
                continue
            eta[i, j] = boston.eta((ts.lat, ts.lon), (c.lat, c.lon))
            tier[i, j] = type_tier[ts.team.team_type]
    weights = [rules.weight(c.priority) for c in calls]
    expected = _brute_force(eta, tier, weights, rules.tier_penalty_s, rules.unserved_penalty_s)
    assert result.objective == pytest.approx(expected, abs=1e-6)
    assert len(result.assignments) == 4 and not result.unserved


def test_unserved_calls_say_why(boston, places, rules, fleet) -> None:
    teams = [ts for ts in fleet if ts.team_id in ("CR-D4", "P-B2")]
    calls = [_call(*ROXBURY, "a", mental_health=True, safety_risk=True, priority=1),
             _call(*DORCHESTER, "b", mental_health=True, weapon=True, priority=3),
             _call(*DORCHESTER, "c", needs_transport=True, priority=2)]
    result = assign(calls, teams, network=boston, rules=rules, places=places, now=NOW)
    reasons = {u.call_id: u.reason for u in result.unserved}
    # a takes the co-response unit; b (falls back to police) and c (no EMS: police backup) compete for the
    # one police unit, and leaving b (priority 3, weight 1) unserved costs less than leaving c (weight 2).
    assert {(a.call_id, a.team_id) for a in result.assignments} == {("a", "CR-D4"), ("c", "P-B2")}
    assert reasons == {"b": "all 2 eligible teams are assigned to other calls"}
    only_ems = assign([calls[2]], [ts for ts in fleet if ts.team_id == "EC-1"], network=boston, rules=rules,
                      places=places, now=NOW)
    assert "no eligible team" in only_ems.unserved[0].reason
    json.dumps(result.to_dict(), allow_nan=False)
    with pytest.raises(InvalidInput):
        assign([calls[0], calls[0]], teams, network=boston, rules=rules, now=NOW)


# ------------------------------------------------------------------------------------------ CLI


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_fleet_commands(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "cli.db")
    code, out, _ = _run("fleet", "list", "--db", db, "--json")
    assert code == 0
    teams = json.loads(out)["teams"]
    assert len(teams) == 34
    assert {"team_id", "team_type", "dedicated", "status", "lat", "lon"} <= set(teams[0])
    code, out, _ = _run("fleet", "position", "EC-1", "42.3401,-71.0702", "--db", db, "--json")
    assert code == 0 and json.loads(out)["lat"] == 42.3401
    code, out, _ = _run("fleet", "status", "EC-1", "en_route", "--db", db, "--json")
    assert code == 0 and json.loads(out)["status"] == "en_route"
    # Rejected updates: one error line, exit 2, nothing changed.
    for argv, pattern in [
        (("fleet", "status", "EC-1", "off_shift"), "cannot go from en_route to off_shift"),
        (("fleet", "status", "NOPE", "available"), "unknown team"),
        (("fleet", "position", "EC-1", "41.824,-71.4128"), "outside the service area"),
        (("fleet", "position", "EC-1", "42.34,-71.07", "--at", "2020-01-01T00:00:00Z"), "older than"),
    ]:
        code, out, err = _run(*argv, "--db", db)
        assert code == 2 and err.startswith("error: ") and pattern in err and err.count("\n") == 1, err
    code, out, _ = _run("fleet", "list", "--db", db, "--json")
    ec1 = next(t for t in json.loads(out)["teams"] if t["team_id"] == "EC-1")
    assert (ec1["status"], ec1["lat"], ec1["lon"]) == ("en_route", 42.3401, -71.0702)
    code, out, _ = _run("fleet", "history", "EC-1", "--db", db, "--json")
    assert len(json.loads(out)["positions"]) == 2


def test_cli_suggest_single_and_batch(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "s.db")
    code, out, _ = _run("suggest", "--lat", "42.326782", "--lon", "-71.076715", "--mental-health",
                        "--safety-risk", "--top", "2", "--db", db, "--at", NOW.isoformat(), "--json")
    assert code == 0
    r = json.loads(out)
    assert r["tier"]["name"] == "co_response_first" and r["suggestions"][0]["team_id"] == "CR-B2"
    assert {"team_id", "team_type", "eta_s", "distance_m", "stale"} <= set(r["suggestions"][0])
    assert all({"team_id", "reason"} <= set(i) for i in r["ineligible"])
    calls = sample_calls(NOW)
    csv_path = tmp_path / "calls.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["call_id", "lat", "lon", "mental_health", "safety_risk", "weapon",
                                           "needs_transport", "priority"])
        w.writeheader()
        for c in calls:
            w.writerow({k: v for k, v in c.to_dict().items() if k in w.fieldnames})
    jsonl_path = tmp_path / "calls.jsonl"
    jsonl_path.write_text("\n".join(json.dumps({k: v for k, v in c.to_dict().items()
                                                if k not in ("neighborhood", "district")}) for c in calls))
    answers = []
    for path in (csv_path, jsonl_path):
        code, out, _ = _run("suggest", "--calls", str(path), "--db", db, "--at", NOW.isoformat(), "--json")
        assert code == 0
        batch = json.loads(out)
        assert batch["count"] == len(calls)
        answers.append([(x["call"]["call_id"], x["suggestions"][0]["team_id"]) for x in batch["results"]])
    assert answers[0] == answers[1]
    # Every suggestion is in the audit trail: 1 + 2 x 9.
    from routing.store import Store

    with Store(db) as s:
        assert len(s.decisions("suggestion")) == 1 + 2 * len(calls)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"lat": 42.33, "lon": -71.08}\n{"lat": 42.33}\n')
    code, _, err = _run("suggest", "--calls", str(bad), "--db", db)
    assert code == 2 and "line 2" in err and "lon" in err


def test_cli_assign_and_demo(tmp_path: Path, data_dir: Path) -> None:
    db = str(tmp_path / "a.db")
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(json.dumps({k: v for k, v in d.items() if k != "where"}) for d in SAMPLE_CALLS))
    code, out, _ = _run("assign", "--calls", str(path), "--db", db, "--at", NOW.isoformat(), "--json")
    assert code == 0
    r = json.loads(out)
    assert r["optimal"] is True and isinstance(r["objective"], float)
    assert {"call_id", "team_id", "team_type", "eta_s", "tier"} <= set(r["assignments"][0])
    served = [a["team_id"] for a in r["assignments"]]
    assert len(served) == len(set(served))
    from routing.store import Store

    with Store(db) as s:
        assert {a["call_id"] for a in s.assignments()} == {a["call_id"] for a in r["assignments"]}
        # Applied, in the same transaction: the assigned teams are en route, so no one can take them.
        assert {ts.team_id for ts in s.teams() if ts.status.value == "en_route"} == set(served)
    # A dry run prints a plan (with other teams: the first ones are busy) and changes nothing.
    code, out, _ = _run("assign", "--calls", str(path), "--db", db, "--at", NOW.isoformat(), "--json", "--dry-run")
    assert code == 0
    assert not {a["team_id"] for a in json.loads(out)["assignments"]} & set(served)
    with Store(db) as s:
        assert len(s.decisions("assignment")) == 1
        assert sum(ts.status.value == "en_route" for ts in s.teams()) == len(served)
    page = tmp_path / "demo.html"
    code, out, _ = _run("demo", "--at", NOW.isoformat(), "--json", "--offline", "--map", str(page))
    assert code == 0
    demo = json.loads(out)
    assert len(demo["results"]) == len(SAMPLE_CALLS)
    assert all(x["suggestions"] for x in demo["results"])
    assert demo["map"] == str(page.resolve()) and "demo-9" in page.read_text()
    code, text, _ = _run("demo", "--at", NOW.isoformat(), "--no-map")
    assert code == 0 and "ETA" in text and "demo-9" in text and "map:" not in text
    code, _, err = _run("demo", "--at", NOW.isoformat(), "--map", str(tmp_path / "no-such-dir" / "x.html"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_sample_calls_are_where_they_say(places) -> None:
    # The demo's addresses fall in the neighbourhoods named in their descriptions.
    expected = {"demo-2": "Roxbury", "demo-3": "Dorchester", "demo-4": "South End", "demo-5": "Charlestown",
                "demo-6": "East Boston", "demo-7": "North End", "demo-8": "Hyde Park", "demo-9": "West Roxbury"}
    for d in SAMPLE_CALLS:
        if d["call_id"] in expected:
            assert places.locate(d["lat"], d["lon"])[0] == expected[d["call_id"]], d["call_id"]
    assert places.locate(*WEST_END)[1] == "A1"


def test_team_objects_are_plain_data() -> None:
    team = Team("X", TeamType.ems, "x", False, "b", 42.3, -71.0)
    assert team.to_dict()["team_type"] == "ems"
