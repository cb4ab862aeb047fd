"""The engine on the real Boston network (facts from ../shared/data/boston/SOURCES.md)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime

import networkx as nx
import numpy as np
import pytest
import shapely
import shapely.geometry
from scipy.sparse.csgraph import connected_components

from routing.errors import InvalidInput, OutsideServiceArea
from routing.network import clear_memory_cache, load_network

CITY_HALL = (42.3603, -71.0580)
# Destinations: Maverick Square (East Boston), City Square (Charlestown), Cleary Square (Hyde Park).
DESTINATIONS = {
    "East Boston": ((42.3691, -71.0395), 3.5),  # SOURCES.md: shortest by length from City Hall 3.5 km
    "Charlestown": ((42.3735, -71.0622), 2.5),
    "Hyde Park": ((42.2557, -71.1246), 13.8),
}


def _haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def test_size_matches_the_source(boston):
    # 11,330 nodes in the export; the largest strongly connected component has 11,249 (SOURCES.md), but
    # the 26 busway edges (and one emergency bay) are not driven: 4 nodes reached only through a busway
    # drop out (3 on the Columbus Ave busway between Jackson Sq and Egleston, 1 in East Boston): 11,245.
    assert boston.n_nodes == 11_245
    assert boston.dropped_nodes == 11_330 - 11_245
    # 25,818 edge rows, minus self-loops and edges touching dropped nodes.
    assert 25_500 < boston.n_edges < 25_818
    n_comp, _ = connected_components(boston.csr, directed=True, connection="strong")
    assert n_comp == 1
    lon_min, lat_min, lon_max, lat_max = boston.bbox
    assert (lon_min, lat_min) == pytest.approx((-71.181895, 42.2312024), abs=1e-4)
    assert (lon_max, lat_max) == pytest.approx((-70.9963753, 42.3946807), abs=1e-3)


@pytest.mark.parametrize("name", list(DESTINATIONS))
def test_routes_from_city_hall_are_plausible(boston, name):
    destination, shortest_km = DESTINATIONS[name]
    route = boston.route(CITY_HALL, destination)
    crow = _haversine_m(CITY_HALL, destination)
    # The fastest route is at least as long as the straight line, and not absurdly longer than
    # the shortest-by-length route in SOURCES.md (it may prefer faster, longer roads).
    assert route.distance_m >= crow
    assert route.distance_m <= 1.6 * shortest_km * 1000 + 1000
    # Average speed between 10 and 60 km/h: a city drive, not a teleport or a walk.
    speed_kmh = route.distance_m / route.travel_time_s * 3.6
    assert 10 <= speed_kmh <= 60
    assert route.path[0] == [CITY_HALL[1], CITY_HALL[0]]
    lon, lat = route.path[-2]
    assert _haversine_m((lat, lon), destination) < 400


def test_east_boston_needs_a_tunnel_or_bridge(boston):
    # Maverick Square is 1.9 km from City Hall across the harbour; no road goes straight across.
    route = boston.route(CITY_HALL, DESTINATIONS["East Boston"][0])
    assert route.distance_m > 1.4 * _haversine_m(CITY_HALL, DESTINATIONS["East Boston"][0])


@pytest.mark.parametrize(("label", "point"), [
    ("harbour between Castle Island and Logan", (42.3450, -71.0100)),
    ("Central Square, Cambridge", (42.3655, -71.1037)),
    ("Harvard Square, Cambridge", (42.3736, -71.1190)),
    ("Times Square, New York", (40.7580, -73.9855)),
    ("Brookline Village", (42.3327, -71.1165)),
])
def test_points_outside_boston_are_rejected(boston, label, point):
    with pytest.raises(OutsideServiceArea, match="outside|from the nearest road"):
        boston.snap(*point)


@pytest.mark.parametrize("point", [(math.nan, -71.06), (42.36, math.inf), (95.0, -71.06), (42.36, -200.0)])
def test_invalid_coordinates_are_rejected(boston, point):
    with pytest.raises(InvalidInput):
        boston.snap(*point)


def test_snapping_within_tolerance(boston):
    snap = boston.snap(*CITY_HALL)
    assert snap.distance_m < 200
    assert snap.time_s == pytest.approx(snap.distance_m * 1.3 / 4.4704)
    # Every street node snaps to itself (a point on an expressway node is attached to the street beside
    # it, so sample nodes whose every edge is residential).
    src, dst = boston.edges
    not_street = boston.edge_highway != "residential"
    off = np.zeros(boston.n_nodes, dtype=bool)
    off[src[not_street]] = off[dst[not_street]] = True
    idx = np.random.default_rng(0).choice(np.flatnonzero(~off), 50, replace=False)
    snapped = boston.snap_many(boston.lat[idx], boston.lon[idx])
    assert np.array_equal(snapped.nodes, idx)
    assert np.allclose(snapped.distance_m, 0, atol=1e-6)


def test_reverse_queries_agree_with_forward(boston):
    rng = np.random.default_rng(1)
    sources = rng.choice(boston.n_nodes, 5, replace=False)
    targets = rng.choice(boston.n_nodes, 5, replace=False)
    forward = boston.travel_times_from(sources)[:, targets]
    reverse = boston.travel_times_to(targets)[:, sources].T
    assert np.allclose(forward, reverse)
    assert np.allclose(boston.travel_time_matrix(sources, targets), forward)


def test_times_match_networkx(boston):
    graph = boston.to_networkx()
    rng = np.random.default_rng(2)
    for _ in range(15):
        u, v = (int(x) for x in rng.choice(boston.n_nodes, 2, replace=False))
        expected = nx.shortest_path_length(graph, u, v, weight="travel_time")
        assert boston.travel_times_from(u)[v] == pytest.approx(expected, rel=1e-9)


def test_profiles_on_boston(boston):
    peak = boston.with_profile("non_emergent", 17)
    night = boston.with_profile("emergent", 3)
    a, b = boston.snap(*CITY_HALL).node, boston.snap(*DESTINATIONS["Hyde Park"][0]).node
    base = boston.travel_times_from(a)[b]
    assert peak.travel_times_from(a)[b] > base > night.travel_times_from(a)[b]


def test_isochrone_on_boston(boston):
    import shapely

    five = boston.isochrone(*CITY_HALL, 300)
    fifteen = boston.isochrone(*CITY_HALL, 900)
    assert fifteen.area > five.area
    assert five.contains(shapely.Point(CITY_HALL[1], CITY_HALL[0]))
    assert not fifteen.contains(shapely.Point(DESTINATIONS["Hyde Park"][0][::-1]))


def test_cache_round_trip(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CRISIS_DISPATCH_CACHE", str(tmp_path))
    clear_memory_cache()
    first_stats: dict = {}
    first = load_network(data_dir, stats=first_stats)
    clear_memory_cache()
    second_stats: dict = {}
    second = load_network(data_dir, stats=second_stats)
    clear_memory_cache()
    assert first_stats["from_cache"] is False and second_stats["from_cache"] is True
    assert list(tmp_path.glob("network-*.npz"))
    assert first.n_nodes == second.n_nodes and first.n_edges == second.n_edges
    assert np.array_equal(first.csr.indices, second.csr.indices)
    assert np.allclose(first.csr.data, second.csr.data)
    assert second.snap(*CITY_HALL) == first.snap(*CITY_HALL)
    with pytest.raises(OutsideServiceArea):
        second.snap(42.3655, -71.1037)  # the boundary survives the cache


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routing.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_network_info_and_route(data_dir):
    info = json.loads(_cli("network", "info", "--json").stdout)
    assert info["nodes"] == 11_245 and info["dropped_nodes"] == 85  # busways not driven: see test_size...
    assert {"edges", "source", "bbox"} <= set(info)
    result = _cli("route", "--from", "42.3603,-71.0580", "--to", "42.2557,-71.1246", "--json")
    assert result.returncode == 0, result.stderr
    route = json.loads(result.stdout)
    assert route["travel_time_s"] > 0 and route["distance_m"] > 13_000
    assert route["path"][0] == [-71.058, 42.3603]


def test_cli_isochrone_summarises_for_people_and_writes_the_area(data_dir, boston, tmp_path):
    out = tmp_path / "iso.geojson"
    at = "2026-06-01T14:00:00-04:00"
    result = _cli("isochrone", "--from", "42.3603,-71.0580", "--minutes", "8", "--at", at, "--geojson", str(out))
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("reachable within 8 min of 42.36030,-71.05800:") and "km2" in first
    assert len(result.stdout.splitlines()) == 3  # a summary, not thousands of vertices
    feature = json.loads(out.read_text())
    assert feature["type"] == "Feature" and feature["properties"]["profile"]["hour"] == 14
    assert feature["parameters"]["minutes"] == 8
    # The file is the engine's polygon at those speeds.
    expected = boston.for_time(datetime.fromisoformat(at)).isochrone(42.3603, -71.0580, 480)
    assert shapely.geometry.shape(feature["geometry"]).equals_exact(expected, 1e-9)
    as_json = json.loads(_cli("isochrone", "--from", "42.3603,-71.0580", "--minutes", "8", "--at", at,
                              "--json").stdout)
    assert as_json["geometry"] == feature["geometry"]


@pytest.mark.parametrize("args", [
    ("route", "--from", "42.3603,-71.0580", "--to", "40.758,-73.9855", "--json"),
    ("route", "--from", "nan,-71.0", "--to", "42.36,-71.05"),
    ("route", "--from", "42.36", "--to", "42.36,-71.05"),
    ("route", "--from", "42.36,-71.05", "--to", "42.36,-71.05", "--data", "/no/such/dir"),
    ("network", "info", "--source", "/no/such/file.osm"),
])
def test_cli_errors_are_one_line(data_dir, args):
    result = _cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
