"""The network engine on small hand-built networks whose shortest times are known by hand."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx
import numpy as np
import pytest

from routing.errors import InvalidInput, OutsideServiceArea
from routing.network import load_network, network_from_graph
from routing.speeds import load_speeds, parse_maxspeed

LAT0, LON0 = 42.35, -71.06
DLAT = 100 / 111_195  # 100 m north
DLON = 100 / (111_195 * math.cos(math.radians(LAT0)))  # 100 m east

#   A --- B --> C        every edge 100 m at 36 km/h (10 m/s) = 10 s
#   |     |     |        B -> C and F -> E are one-way; A -> B also has a slower parallel edge;
#   D --- E <-- F        G hangs off A by a one-way edge, so it is not strongly connected.
POS = {"A": (0, 0), "B": (1, 0), "C": (2, 0), "D": (0, -1), "E": (1, -1), "F": (2, -1), "G": (-1, 0)}
TWO_WAY = [("A", "B"), ("C", "F"), ("E", "D"), ("D", "A"), ("B", "E")]
ONE_WAY = [("B", "C"), ("F", "E"), ("A", "G")]
IDS = {name: 100 + i for i, name in enumerate(POS)}

# Fastest times in seconds, worked out by hand from the drawing.
EXPECTED = {
    ("A", "C"): 20,  # A-B-C
    ("C", "A"): 40,  # C-F-E-B-A (B->C is one-way)
    ("C", "B"): 30,  # C-F-E-B
    ("E", "F"): 30,  # E-B-C-F (F->E is one-way)
    ("F", "E"): 10,
    ("D", "C"): 30,
    ("A", "F"): 30,  # A-B-C-F
    ("F", "A"): 30,  # F-E-D-A or F-E-B-A
}


def _model():
    # Posted speeds taken as they are (class factor 1), so hand arithmetic holds.
    return dataclasses.replace(load_speeds(), class_factor={"other": 1.0})


def _latlon(name: str) -> tuple[float, float]:
    col, row = POS[name]
    return LAT0 + row * DLAT, LON0 + col * DLON


def _graph() -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph()
    for name in POS:
        lat, lon = _latlon(name)
        graph.add_node(IDS[name], x=lon, y=lat, osmid=IDS[name])
    for u, v in TWO_WAY:
        for a, b in ((u, v), (v, u)):
            graph.add_edge(IDS[a], IDS[b], length=100.0, highway="residential", maxspeed="36")
    for u, v in ONE_WAY:
        graph.add_edge(IDS[u], IDS[v], length=100.0, highway="residential", maxspeed="36")
    graph.add_edge(IDS["A"], IDS["B"], length=300.0, highway="residential", maxspeed="36")  # slower twin
    graph.add_edge(IDS["E"], IDS["E"], length=50.0, highway="residential", maxspeed="36")  # self-loop
    return graph


@pytest.fixture(scope="module")
def small():
    return network_from_graph(_graph(), speeds=_model(), source="hand-built")


def _node(net, name: str) -> int:
    return int(np.flatnonzero(net.osm_ids == IDS[name])[0])


def test_size_scc_and_parallel_edges(small):
    assert small.n_nodes == 6
    assert small.dropped_nodes == 1  # G
    assert IDS["G"] not in set(small.osm_ids.tolist())
    # 5 two-way pairs + 2 one-way edges; the slower A->B twin and the self-loop are gone.
    assert small.n_edges == 12


@pytest.mark.parametrize(("origin", "target"), list(EXPECTED))
def test_hand_computed_times(small, origin, target):
    a, b = _node(small, origin), _node(small, target)
    assert small.travel_times_from(a)[b] == pytest.approx(EXPECTED[origin, target])
    assert small.travel_times_to(b)[a] == pytest.approx(EXPECTED[origin, target])
    assert small.travel_time_matrix([a], [b])[0, 0] == pytest.approx(EXPECTED[origin, target])


def test_one_way_streets_are_asymmetric(small):
    b, c = _node(small, "B"), _node(small, "C")
    assert small.travel_times_from(b)[c] == pytest.approx(10)
    assert small.travel_times_from(c)[b] == pytest.approx(30)


def test_route_geometry_and_length(small):
    route = small.route(_latlon("A"), _latlon("F"))
    assert [int(small.osm_ids[n]) for n in route.nodes] == [IDS[x] for x in "ABCF"]
    assert route.distance_m == pytest.approx(300, abs=0.5)
    assert route.travel_time_s == pytest.approx(30, abs=0.1)
    lon, lat = route.path[1]
    assert (lat, lon) == pytest.approx(_latlon("A"))  # lon/lat order
    assert route.to_geojson()["geometry"]["type"] == "LineString"


def test_snap_adds_off_network_leg(small):
    lat, lon = _latlon("B")
    snap = small.snap(lat + 0.5 * DLAT, lon)  # 50 m north of B
    assert snap.node == _node(small, "B")
    assert snap.distance_m == pytest.approx(50, rel=0.01)
    # 50 m x detour 1.3 at 10 mph (4.4704 m/s)
    assert snap.time_s == pytest.approx(50 * 1.3 / 4.4704, rel=0.01)
    eta = small.eta((lat + 0.5 * DLAT, lon), _latlon("C"))
    assert eta == pytest.approx(snap.time_s + 10, rel=0.01)


def test_points_far_from_roads_are_rejected(small):
    lat, lon = _latlon("B")
    with pytest.raises(OutsideServiceArea):
        small.snap(lat + 10 * DLAT, lon)  # 1 km away
    for bad in [(math.nan, lon), (lat, math.inf), (91, lon), (lat, -181), ("x", lon)]:
        with pytest.raises(InvalidInput):
            small.snap(*bad)
    snapped = small.snap_many([lat, lat + 10 * DLAT, math.nan], [lon, lon, lon], strict=False)
    assert snapped.nodes.tolist() == [_node(small, "B"), -1, -1]
    with pytest.raises(OutsideServiceArea):
        small.snap_many([lat, lat + 10 * DLAT], [lon, lon])


def test_nearest_times_is_the_minimum_over_sources(small):
    sources = [_node(small, "A"), _node(small, "F")]
    expected = small.travel_times_from(sources).min(axis=0)
    assert np.allclose(small.nearest_times_from(sources), expected)


def test_profiles_scale_times(small):
    speeds = small.speeds
    fast = small.with_profile("emergent", 8)
    # Every edge is residential: the "local" group's hour factor applies.
    factor = speeds.mode_factor["emergent"] * speeds.hour_factor[speeds.hour_group["residential"]][8]
    a, c = _node(small, "A"), _node(small, "C")
    assert fast.travel_times_from(a)[c] == pytest.approx(20 / factor)
    assert small.with_profile("emergent", 8) is fast or fast.profile["hour"] == 8
    with pytest.raises(InvalidInput):
        small.with_profile("warp")
    with pytest.raises(InvalidInput):
        small.with_profile(None, 24)


def test_isochrone_covers_what_is_reachable(small):
    import shapely

    polygon = small.isochrone(*_latlon("A"), 15)  # A, B and D within 10 s; C, E, F at 20 s or more
    for name in "ABD":
        assert polygon.contains(shapely.Point(_latlon(name)[::-1]))
    for name in "CF":
        assert not polygon.contains(shapely.Point(_latlon(name)[::-1]))
    with pytest.raises(InvalidInput):
        small.isochrone(*_latlon("A"), -5)


def test_graphml_round_trip(small, tmp_path):
    import osmnx as ox

    graph = _graph()
    for _, _, data in graph.edges(data=True):
        data["maxspeed"] = str(data["maxspeed"])
    path = tmp_path / "small.graphml"
    ox.save_graphml(graph, path)
    loaded = load_network(source=path, speeds=_model(), use_cache=False)
    assert loaded.n_nodes == 6 and loaded.n_edges == 12
    a, c = _node(loaded, "A"), _node(loaded, "C")
    assert loaded.travel_times_from(c)[a] == pytest.approx(40)


_OSM_XML = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
{nodes}
  <way id="1"><nd ref="{A}"/><nd ref="{B}"/><tag k="highway" v="residential"/><tag k="maxspeed" v="36"/></way>
  <way id="2"><nd ref="{B}"/><nd ref="{C}"/><tag k="highway" v="residential"/><tag k="maxspeed" v="36"/>
    <tag k="oneway" v="yes"/></way>
  <way id="3"><nd ref="{C}"/><nd ref="{F}"/><tag k="highway" v="residential"/><tag k="maxspeed" v="36"/></way>
  <way id="4"><nd ref="{F}"/><nd ref="{E}"/><tag k="highway" v="residential"/><tag k="maxspeed" v="36"/>
    <tag k="oneway" v="yes"/></way>
  <way id="5"><nd ref="{E}"/><nd ref="{D}"/><nd ref="{A}"/><tag k="highway" v="residential"/>
    <tag k="maxspeed" v="36"/></way>
  <way id="6"><nd ref="{B}"/><nd ref="{E}"/><tag k="highway" v="residential"/><tag k="maxspeed" v="36"/></way>
  <way id="7"><nd ref="{A}"/><nd ref="{G}"/><tag k="highway" v="footway"/></way>
</osm>
"""


def test_osm_xml_source(tmp_path):
    nodes = "\n".join(
        f'  <node id="{IDS[n]}" lat="{_latlon(n)[0]:.7f}" lon="{_latlon(n)[1]:.7f}" version="1"/>' for n in POS
    )
    path = tmp_path / "small.osm"
    path.write_text(_OSM_XML.format(nodes=nodes, **IDS))
    loaded = load_network(source=path, speeds=_model(), use_cache=False)
    kept = set(loaded.osm_ids.tolist())
    assert IDS["G"] not in kept  # footway is not for cars
    b, c, e, f = (int(np.flatnonzero(loaded.osm_ids == IDS[n])[0]) for n in "BCEF")
    times = loaded.travel_time_matrix([b, c, e, f], [b, c, e, f])
    # Lengths come from coordinates (about 100 m per block), so allow 2 %.
    assert times[0, 1] == pytest.approx(10, rel=0.02)  # B -> C
    assert times[1, 0] == pytest.approx(30, rel=0.02)  # C -> B the long way round
    assert times[3, 2] == pytest.approx(10, rel=0.02)  # F -> E
    assert times[2, 3] == pytest.approx(30, rel=0.02)  # E -> F


@pytest.mark.parametrize(("text", "unit", "mph"), [
    ("25 mph", "kph", 25.0), ("40", "kph", 40 * 0.621371), ("40", "mph", 40.0), (None, "kph", math.nan),
    (["30 mph", "25 mph"], "kph", 25.0), ("['30 mph', '20 mph']", "kph", 20.0), ("signals", "kph", math.nan),
    (float("nan"), "mph", math.nan),
])
def test_parse_maxspeed(text, unit, mph):
    result = parse_maxspeed(text, bare_unit=unit)
    assert (math.isnan(result) and math.isnan(mph)) or result == pytest.approx(mph)


def test_bad_speeds_file_is_rejected(tmp_path):
    path = tmp_path / "speeds.toml"
    path.write_text("default_mode = 'non_emergent'\n[class_default_mph]\nother = -3\n")
    with pytest.raises(InvalidInput, match="class_default_mph"):
        load_speeds(path)
    path.write_text("not toml [")
    with pytest.raises(InvalidInput, match="TOML"):
        load_speeds(path)


def test_osm_pbf_source(tmp_path):
    import osmium

    nodes = "\n".join(
        f'  <node id="{IDS[n]}" lat="{_latlon(n)[0]:.7f}" lon="{_latlon(n)[1]:.7f}" version="1"/>' for n in POS
    )
    xml = tmp_path / "small.osm"
    xml.write_text(_OSM_XML.format(nodes=nodes, **IDS))
    pbf = tmp_path / "small.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(xml)):
            writer.add(obj)
    from_xml = load_network(source=xml, speeds=_model(), use_cache=False)
    from_pbf = load_network(source=pbf, speeds=_model(), use_cache=False)
    assert sorted(from_pbf.osm_ids.tolist()) == sorted(from_xml.osm_ids.tolist())
    b, c = (int(np.flatnonzero(from_pbf.osm_ids == IDS[n])[0]) for n in "BC")
    assert from_pbf.travel_times_from(c)[b] == pytest.approx(30, rel=0.02)
