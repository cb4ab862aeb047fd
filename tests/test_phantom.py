"""Street-level snapping (phantom nodes) and one clock for speeds, against hand-worked answers and the
field cases in ``../shared/cases/road``."""

from __future__ import annotations

import csv
import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from routing.dispatch import suggest
from routing.errors import OutsideServiceArea
from routing.fleet import Team, TeamState, TeamType, load_fleet
from routing.network import network_from_graph
from routing.speeds import load_speeds, local_hour
from routing.triage import Call, load_rules

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "road"
LAT0, LON0 = 42.35, -71.06
M_LAT = 1 / 111_195
M_LON = 1 / (111_195 * math.cos(math.radians(LAT0)))
LEG_S_PER_M = 1.3 / 4.4704  # off-network leg: detour 1.3 at 10 mph (data/speeds.toml)
SUMMER_3AM = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # 03:00 EDT
SUMMER_5PM = datetime(2026, 6, 1, 21, 0, tzinfo=UTC)  # 17:00 EDT


def _model():
    # Posted speeds as they are (every class factor 1), so hand arithmetic holds.
    return dataclasses.replace(load_speeds(), class_factor={"other": 1.0})


def _ll(x_m: float, y_m: float) -> tuple[float, float]:
    return LAT0 + y_m * M_LAT, LON0 + x_m * M_LON


def _graph(nodes: dict[str, tuple[float, float]], edges: list[tuple[str, str, float, str, str]]) -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph()
    for k, (name, (x, y)) in enumerate(nodes.items()):
        lat, lon = _ll(x, y)
        graph.add_node(k + 1, x=lon, y=lat, osmid=k + 1, name=name)
    ids = {name: k + 1 for k, name in enumerate(nodes)}
    for u, v, length, highway, maxspeed in edges:
        graph.add_edge(ids[u], ids[v], length=length, highway=highway, maxspeed=maxspeed)
    return graph


def _idx(net, graph: nx.MultiDiGraph, name: str) -> int:
    osm = next(n for n, d in graph.nodes(data=True) if d["name"] == name)
    return int(np.flatnonzero(net.osm_ids == osm)[0])


# --------------------------------------------------------------------------- a street under an expressway
#   M0 ---> M1 ---> M2        motorway 12 m north of the street, one-way east, 20 m/s
#   ^ link           | link
#   S0 ============= S1       residential street, two-way, 400 m at 10 m/s (40 s)
EXPRESSWAY_NODES = {"S0": (0, 0), "S1": (400, 0), "M0": (0, 12), "M1": (200, 12), "M2": (400, 12)}
EXPRESSWAY_EDGES = [
    ("S0", "S1", 400.0, "residential", "36"), ("S1", "S0", 400.0, "residential", "36"),
    ("M0", "M1", 200.0, "motorway", "72"), ("M1", "M2", 200.0, "motorway", "72"),
    ("S0", "M0", 12.0, "motorway_link", "36"), ("M2", "S1", 12.0, "motorway_link", "36"),
]


@pytest.fixture(scope="module")
def under():
    graph = _graph(EXPRESSWAY_NODES, EXPRESSWAY_EDGES)
    return graph, network_from_graph(graph, speeds=_model(), source="street-under-expressway")


def test_a_call_beside_an_expressway_attaches_to_the_street(under) -> None:
    graph, net = under
    call = _ll(200, 8)  # 8 m from the street, 4 m from the motorway node M1 above it
    snap = net.snap(*call)
    assert snap.road_class == "residential" and not snap.street_fallback
    assert snap.fraction == pytest.approx(0.5, abs=1e-6)
    assert snap.distance_m == pytest.approx(8.0, abs=0.05)
    # From either end of the street: half of it (20 s) plus the 8 m walk from the road.
    for end in ("S0", "S1"):
        eta = net.eta(_ll(*EXPRESSWAY_NODES[end]), call)
        assert eta == pytest.approx(20.0 + 8.0 * LEG_S_PER_M, abs=0.05)
    # Node snapping would have put the caller on M1 (4 m away): reachable only through the expressway.
    assert int(net.nearest_node(*call)) == _idx(net, graph, "M1")


def test_team_positions_may_attach_to_the_expressway(under) -> None:
    graph, net = under
    van = _ll(200, 12.5)  # a team on the motorway above the street
    snap = net.snap(*van, on="any")
    assert snap.road_class == "motorway"
    # It must drive on to M2 (10 s), down the link (12 m at 10 m/s) and back along half the street (20 s).
    eta = net.eta(van, _ll(200, 8), origin_on="any")
    assert eta == pytest.approx(snap.time_s + 10.0 + 1.2 + 20.0 + 8.0 * LEG_S_PER_M, abs=0.05)
    # Nothing but an expressway within reach: a call falls back to it and says so.
    lonely = _graph({"A": (0, 0), "B": (300, 0)},
                    [("A", "B", 300.0, "motorway", "72"), ("B", "A", 300.0, "motorway", "72")])
    only = network_from_graph(lonely, speeds=_model(), source="motorway-only")
    fallback = only.snap(*_ll(150, 5))
    assert fallback.street_fallback and fallback.road_class == "motorway"


# --------------------------------------------------------------------------- one-way partial edges
#   A === B ---> C            A-B two-way, B -> C one-way, C === D === A two-way; every edge 100 m, 10 s
#   |            |
#   +---- D -----+
ONEWAY_NODES = {"A": (0, 0), "B": (100, 0), "C": (200, 0), "D": (100, -100)}
ONEWAY_EDGES = [
    ("A", "B", 100.0, "residential", "36"), ("B", "A", 100.0, "residential", "36"),
    ("B", "C", 100.0, "residential", "36"),
    ("C", "D", 100.0, "residential", "36"), ("D", "C", 100.0, "residential", "36"),
    ("D", "A", 100.0, "residential", "36"), ("A", "D", 100.0, "residential", "36"),
]


@pytest.fixture(scope="module")
def oneway():
    graph = _graph(ONEWAY_NODES, ONEWAY_EDGES)
    return network_from_graph(graph, speeds=_model(), source="one-way")


@pytest.mark.parametrize(("origin", "destination", "expected_s"), [
    # Nodes to nodes: exactly the node-to-node times.
    ((0, 0), (200, 0), 20.0),  # A -> B -> C
    ((200, 0), (0, 0), 20.0),  # C -> D -> A
    # Into the one-way B -> C at its middle: only from B. From C: C-D-A-B (30 s) + 5 s.
    ((200, 0), (150, 0), 35.0),
    ((100, 0), (150, 0), 5.0),
    # Out of the one-way: only towards C. From its middle to B: 5 s to C, then C-D-A-B 30 s.
    ((150, 0), (100, 0), 35.0),
    # Along one two-way segment: straight there, either way.
    ((20, 0), (70, 0), 5.0),
    ((70, 0), (20, 0), 5.0),
    # Backwards along the one-way: out at C (3 s), round C-D-A-B (30 s), in from B (2 s).
    ((170, 0), (120, 0), 35.0),
    # Forwards along the one-way: straight.
    ((120, 0), (170, 0), 5.0),
])
def test_partial_edges_follow_the_permitted_directions(oneway, origin, destination, expected_s) -> None:
    eta = oneway.eta(_ll(*origin), _ll(*destination))
    route = oneway.route(_ll(*origin), _ll(*destination))
    assert eta == pytest.approx(expected_s, abs=0.01)
    assert route.travel_time_s == pytest.approx(eta, abs=1e-9)
    assert route.distance_m == pytest.approx(expected_s * 10, abs=0.1)  # 10 m/s everywhere


def test_suggest_ranks_by_street_level_etas(oneway) -> None:
    rules = load_rules()
    when = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
    teams = []
    for team_id, where in (("P-B", (100, 0)), ("P-C", (200, 0))):
        lat, lon = _ll(*where)
        teams.append(TeamState.at_base(Team(team_id, TeamType.police, team_id, False, "x", lat, lon), when))
    lat, lon = _ll(150, 0)
    call = Call.from_dict({"call_id": "c", "lat": lat, "lon": lon, "safety_risk": True, "received": when.isoformat()})
    result = suggest(call, teams, network=oneway, rules=rules, now=when)
    # C is 50 m from the call as the crow flies, like B, but the street is one-way from B.
    assert [(s.team_id, round(s.eta_s, 2)) for s in result.suggestions] == [("P-B", 5.0), ("P-C", 35.0)]
    assert [round(s.distance_m, 1) for s in result.suggestions] == [50.0, 350.0]


# --------------------------------------------------------------------------- hours change routes
#   P ===== R ===== Q          residential, 1,500 m at 10 m/s (150 s off-peak)
#    \               /
#     +---- X ------+          motorway, 3,000 m at 25 m/s (120 s off-peak), both ways
HOURS_NODES = {"P": (0, 0), "R": (750, 0), "Q": (1500, 0), "X": (750, 600)}
HOURS_EDGES = [
    *[(a, b, 750.0, "residential", "36") for a, b in (("P", "R"), ("R", "P"), ("R", "Q"), ("Q", "R"))],
    *[(a, b, 1500.0, "motorway", "90") for a, b in (("P", "X"), ("X", "P"), ("X", "Q"), ("Q", "X"))],
]


def test_the_hour_of_the_decision_time_changes_the_route() -> None:
    graph = _graph(HOURS_NODES, HOURS_EDGES)
    net = network_from_graph(graph, speeds=_model(), source="hours")
    p, q, r, x = (_idx(net, graph, n) for n in "PQRX")
    speeds = net.speeds
    night, peak = net.for_time(SUMMER_3AM), net.for_time(SUMMER_5PM)
    assert (night.profile["hour"], night.profile["hour_source"]) == (3, "time")
    assert (peak.profile["hour"], peak.profile["hour_source"]) == (17, "time")
    night_nodes, night_s = night.route_nodes(p, q)
    peak_nodes, peak_s = peak.route_nodes(p, q)
    assert night_nodes == [p, x, q]  # the expressway at night
    assert peak_nodes == [p, r, q]  # the residential detour in the evening peak
    expressway = speeds.hour_factor[speeds.hour_group["motorway"]]
    local = speeds.hour_factor[speeds.hour_group["residential"]]
    assert night_s == pytest.approx(120.0 / expressway[3])
    assert peak_s == pytest.approx(min(150.0 / local[17], 120.0 / expressway[17]))
    # --hour overrides the decision time, and the profile says so.
    forced = net.for_time(SUMMER_5PM, hour=3)
    assert forced.profile["hour"] == 3 and forced.profile["hour_source"] == "hour"
    assert forced.route_nodes(p, q) == (night_nodes, night_s)
    # With no hour at all the baseline (every factor 1.0) applies.
    assert net.route_nodes(p, q)[1] == pytest.approx(120.0)


def test_local_hour_follows_daylight_saving() -> None:
    assert local_hour(SUMMER_3AM) == 3
    assert local_hour(datetime(2026, 1, 15, 8, 0, tzinfo=UTC)) == 3  # EST: UTC-5


def test_arterials_and_expressways_slow_more_at_rush_hour_than_residential_streets() -> None:
    speeds = load_speeds()
    f = speeds.hour_factors(["motorway", "primary", "residential"], 17)
    assert f[0] < f[1] < f[2] < 1.0
    assert np.all(speeds.hour_factors(["motorway", "primary", "residential"], 3) >= 1.0)


# --------------------------------------------------------------------------- the real city
def _rows(name: str) -> list[dict[str, str]]:
    with open(CASES / name, newline="") as fh:
        return list(csv.DictReader(fh))


def test_east_boston_ramp_calls_get_the_same_east_boston_team(boston, places) -> None:
    rules = load_rules()
    answers = []
    for row in _rows("east_boston_ramp_calls.csv"):
        call = Call.from_dict(row)
        fleet = [TeamState.at_base(t, call.received) for t in load_fleet()]
        snap = boston.snap(call.lat, call.lon)
        assert snap.road_class not in boston.speeds.call_excluded_classes
        result = suggest(call, fleet, network=boston.for_time(call.received), rules=rules, places=places,
                         now=call.received)
        assert result.profile["hour"] == 14 and result.profile["mode"] == "non_emergent"
        best = result.best
        answers.append(best.team_id)
        assert "East Boston" in best.name or best.team_id == "P-A7"
        assert 3.0 * 60 <= best.eta_s <= 5.0 * 60  # "about 3.6 min"; the 14:00 factors slow it a little
    assert len(set(answers)) == 1


def test_calls_never_attach_to_expressways_when_a_street_is_within_reach(boston) -> None:
    # Points a few metres from every expressway and ramp node in the city.
    src, dst = boston.edges
    excluded = np.isin(boston.edge_highway, list(boston.speeds.call_excluded_classes))
    nodes = np.unique(np.r_[src[excluded], dst[excluded]])
    rng = np.random.default_rng(5)
    pick = rng.choice(nodes, 200, replace=False)
    lats = boston.lat[pick] + rng.normal(0, 3e-5, 200)
    lons = boston.lon[pick] + rng.normal(0, 3e-5, 200)
    snaps = boston.snap_many(lats, lons, strict=False)
    ok = snaps.nodes >= 0
    classes = [boston.snap(lat, lon).road_class for lat, lon in zip(lats[ok], lons[ok], strict=True)]
    fallback = snaps.street_fallback[ok]
    assert all(c not in boston.speeds.call_excluded_classes for c, fb in zip(classes, fallback, strict=True)
               if not fb)
    assert fallback.mean() < 0.05  # a street lies within 400 m of nearly every expressway point
    # ...while node snapping would have put most of them on the expressway node itself.
    assert np.mean([boston.nearest_node(a, b) == n for a, b, n in zip(lats, lons, pick, strict=True)]) > 0.9


def test_busways_are_not_driven(boston) -> None:
    assert "busway" not in set(boston.edge_highway.tolist())


def test_calls_just_outside_the_city_are_served_and_say_so(boston, places) -> None:
    rules = load_rules()
    for row in _rows("c6_outside_city_calls.csv"):
        call = Call.from_dict(row)
        fleet = [TeamState.at_base(t, call.received) for t in load_fleet()]
        result = suggest(call, fleet, network=boston.for_time(call.received), rules=rules, places=places,
                         now=call.received)
        assert result.suggestions, row["call_id"]
        assert result.location.outside_city
        assert result.location.attached is not None
        assert "outside the City of Boston" in result.location.notes[0]
        assert result.message.startswith("OUTSIDE BOSTON")
        assert result.to_dict()["location"]["outside_city"] is True


def test_a_callers_district_does_not_override_the_location(boston, places) -> None:
    rules = load_rules()
    when = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
    fleet = [TeamState.at_base(t, when) for t in load_fleet()]
    roxbury = (42.3245, -71.0846)
    base = {"call_id": "r", "lat": roxbury[0], "lon": roxbury[1], "mental_health": True, "safety_risk": True,
            "received": when.isoformat()}
    honest = suggest(Call.from_dict(base), fleet, network=boston, rules=rules, places=places, now=when)
    lying = suggest(Call.from_dict({**base, "district": "A1"}), fleet, network=boston, rules=rules,
                    places=places, now=when)
    assert [s.team_id for s in lying.suggestions] == [s.team_id for s in honest.suggestions]
    assert any(s.team_id == "CR-B2" for s in lying.suggestions)  # Roxbury's own dedicated car
    assert lying.call.district == "B2"
    assert any("disagrees with the location" in n for n in lying.location.notes)


def test_swapped_coordinates_are_named(boston) -> None:
    with pytest.raises(OutsideServiceArea, match="swapped"):
        boston.snap(-71.0589, 42.3601)
    with pytest.raises(OutsideServiceArea) as exc:
        boston.snap(40.7128, -74.0060)  # New York: outside, and not a swap
    assert "swapped" not in str(exc.value)


def test_placing_calls_in_advance_is_placing_them_one_by_one(boston, places) -> None:
    # The simulation places all its calls at once (place_calls, RoadNetwork.snaps); each answer must be
    # the one the per-call path (snap, then place_call) gives: the field cases just outside the city,
    # callers' districts that disagree, and random points, some off the network or outside the area.
    from routing.dispatch import place_call, place_calls

    rng = np.random.default_rng(12)
    calls = [Call.from_dict(row) for row in _rows("c6_outside_city_calls.csv")]
    when = datetime(2026, 6, 1, 18, 0, tzinfo=UTC).isoformat()
    for k, (lat, lon) in enumerate(zip(rng.uniform(42.20, 42.42, 400), rng.uniform(-71.20, -70.97, 400),
                                       strict=True)):
        district = ["A1", "B2", None][k % 3]
        calls.append(Call.from_dict({"call_id": f"p{k}", "lat": float(lat), "lon": float(lon),
                                     "received": when, **({"district": district} if district else {})}))
    placed = place_calls(calls, places, boston)
    bulk_snaps = boston.snaps([c.lat for c in calls], [c.lon for c in calls])
    refused = 0
    for call, got, snap_k in zip(calls, placed, bulk_snaps, strict=True):
        try:
            snap = boston.snap(call.lat, call.lon)
        except OutsideServiceArea:
            assert got is None and snap_k is None
            refused += 1
            continue
        assert snap_k == snap
        assert got is not None and got.snap == snap
        assert (got.call, got.location) == place_call(call, places, boston, snap)
    assert 50 < refused < len(calls) - 100  # both kinds were tried


def test_a_vehicle_known_on_an_edge_snaps_where_snapping_its_position_would(boston) -> None:
    # The simulation tells the engine where a returning team is (snap_on_edge) instead of snapping the
    # point it interpolated along its route: same segment, same fraction, same exits, for edges driven
    # either way along their segment.
    from routing.errors import InvalidInput

    rng = np.random.default_rng(5)
    src = np.repeat(np.arange(boston.n_nodes), np.diff(boston.csr.indptr))
    dst = boston.csr.indices
    checked = 0
    for e in rng.choice(len(dst), 200, replace=False):
        a, b = int(src[e]), int(dst[e])
        f = float(rng.uniform(0.1, 0.9))
        lat = float(boston.lat[a] + (boston.lat[b] - boston.lat[a]) * f)
        lon = float(boston.lon[a] + (boston.lon[b] - boston.lon[a]) * f)
        known = boston.snap_on_edge(a, b, f)
        found = boston.snap(lat, lon, on="any")
        if found.segment != known.segment:  # another road crosses this one right there
            continue
        checked += 1
        assert known.fraction == pytest.approx(found.fraction, abs=1e-4)  # lat/lon vs metric interpolation
        assert known.node == found.node and known.distance_m == 0.0
        for mine, theirs in zip(boston.snap_exits(known), boston.snap_exits(found), strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-3)
    assert checked > 180
    with pytest.raises(InvalidInput, match="no road segment"):
        boston.snap_on_edge(0, boston.n_nodes - 1, 0.5)
