"""Every OSM source gives the same network: OSM XML, bz2, PBF, GraphML, online, and the CSV export.

Truth comes from outside the loaders: the field cases' README (road metres by OSM semantics), the osmnx
CSV export (``SOURCES.md``), and files converted at test time with pyosmium, bz2 and osmnx itself.
"""

from __future__ import annotations

import bz2
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routing.errors import DataMissing, InvalidInput
from routing.network import load_network
from routing.osm import (
    any_tunnel,
    first_value,
    load_drive_filter,
    lowest_maxspeed,
    most_important_class,
    resolve_edge_attributes,
)
from routing.speeds import parse_maxspeed

REPO = Path(__file__).resolve().parent.parent
CASES = REPO.parent / "shared" / "cases" / "road"
C1 = CASES / "c1_class_change.osm"
C2 = CASES / "c2_tags_test.osm"
NORTH_LAT, SOUTH_LAT = 42.3440, 42.3400

# cases/road/README.md: road metres north -> south / south -> north for the columns k = 1..4.
C2_METRES = {1: (856, 445), 2: (1267, 856), 3: (1678, 1267), 4: (2089, 1678)}


def _oakland(data_dir: Path) -> Path:
    return data_dir / "osm-samples" / "West-Oakland.osm.bz2"


def _node(network, lat: float, lon: float) -> int:
    """Index of the node nearest to (lat, lon), from the node arrays (no snapping involved)."""
    return int(np.argmin((network.lat - lat) ** 2 + (network.lon - lon) ** 2))


def _road_metres(network, source: int, target: int) -> float:
    nodes, _ = network.route_nodes(source, target)
    src, dst = network.edges
    lookup = {(int(u), int(v)): float(length) for u, v, length in zip(src, dst, network.edge_length_m, strict=True)}
    return sum(lookup[(u, v)] for u, v in zip(nodes[:-1], nodes[1:], strict=True))


def _signature(network) -> list[tuple[int, int, float, str]]:
    """The network as sorted (osm_src, osm_dst, seconds, class) rows: independent of node numbering."""
    src, dst = network.edges
    return sorted(zip(network.osm_ids[src].tolist(), network.osm_ids[dst].tolist(),
                      np.round(network.edge_time_s, 6).tolist(), network.edge_highway.tolist(), strict=True))


def _to_pbf(xml: Path, pbf: Path) -> None:
    import osmium

    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(xml)):
            writer.add(obj)


# --------------------------------------------------------------------------- c1: one street, every format
def test_c1_loads_the_same_from_every_format(tmp_path):
    import osmnx as ox

    pbf = tmp_path / "c1.osm.pbf"
    _to_pbf(C1, pbf)
    compressed = tmp_path / "c1.osm.bz2"
    with open(C1, "rb") as fin, bz2.open(compressed, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    # osmnx's own graph of the file, simplified by osmnx: the merged Half Street edge has a list highway.
    graph = ox.graph_from_xml(C1, simplify=True)
    assert any(isinstance(h, list) for _, _, h in graph.edges(data="highway"))
    graphml = tmp_path / "c1.graphml"
    ox.save_graphml(graph, graphml)

    reference = load_network(source=C1, use_cache=False)
    assert reference.n_nodes == 8  # four corners, four stubs: 302, a class change mid-block, is merged away
    half = [(102, 202), (202, 102)]
    rows = {(s, d): hw for s, d, _, hw in _signature(reference)}
    assert all(rows[pair] == "unclassified" for pair in half)  # the more important of the two classes
    for path in (pbf, compressed, graphml):
        other = load_network(source=path, use_cache=False)
        assert sorted(other.osm_ids.tolist()) == sorted(reference.osm_ids.tolist()), path.name
        assert _signature(other) == _signature(reference), path.name


# --------------------------------------------------------------------------- c2: tags, by OSM semantics
def _c2_metres(network) -> dict[int, tuple[float, float]]:
    out = {}
    for k in C2_METRES:
        lon = -71.0800 + 0.0025 * k
        north, south = _node(network, NORTH_LAT, lon), _node(network, SOUTH_LAT, lon)
        # the nodes are the stated points themselves, not merely near them
        assert abs(network.lat[north] - NORTH_LAT) < 1e-7 and abs(network.lon[north] - lon) < 1e-7
        assert abs(network.lat[south] - SOUTH_LAT) < 1e-7 and abs(network.lon[south] - lon) < 1e-7
        out[k] = (_road_metres(network, north, south), _road_metres(network, south, north))
    return out


@pytest.mark.parametrize("fmt", ["osm", "pbf"])
def test_c2_road_metres_follow_the_tags(tmp_path, fmt):
    path = C2
    if fmt == "pbf":
        path = tmp_path / "c2.osm.pbf"
        _to_pbf(C2, path)
    network = load_network(source=path, use_cache=False)
    for k, (north_south, south_north) in _c2_metres(network).items():
        assert north_south == pytest.approx(C2_METRES[k][0], abs=1.0), k
        assert south_north == pytest.approx(C2_METRES[k][1], abs=1.0), k
    assert set(network.edge_highway.tolist()) == {"residential"}  # the footway never entered


_SEED_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_osm_sources import _c2_metres, _signature
from routing.network import load_network
out = {{}}
for path in sys.argv[1:]:
    network = load_network(source=path, use_cache=False)
    out[path] = {{"signature": _signature(network)}}
    if path.endswith("c2_tags_test.osm"):
        out[path]["metres"] = {{k: [round(m, 3) for m in v] for k, v in _c2_metres(network).items()}}
print(json.dumps(out))
"""


def test_osm_sources_do_not_depend_on_hash_seed(data_dir, tmp_path):
    script = _SEED_SCRIPT.format(tests=str(Path(__file__).parent))
    results = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "CRISIS_DISPATCH_CACHE": str(tmp_path / seed)}
        run = subprocess.run([sys.executable, "-c", script, str(C2), str(_oakland(data_dir)), str(C1)],
                             capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
        assert run.returncode == 0, run.stderr
        results.append(json.loads(run.stdout))
    assert results[0] == results[1] == results[2]
    metres = results[0][str(C2)]["metres"]
    for k, expected in C2_METRES.items():
        assert metres[str(k)] == pytest.approx(list(expected), abs=1.0), k


# --------------------------------------------------------------------------- Boston as an osmnx GraphML
def _boston_graphml(data_dir: Path, path: Path) -> None:
    """Boston's CSV export rebuilt in osmnx's own shape: OSM-text maxspeed, real list-valued highways."""
    import ast

    import networkx as nx
    import osmnx as ox
    import pandas as pd

    nodes = pd.read_csv(data_dir / "boston" / "boston_nodes.csv.gz")
    edges = pd.read_csv(data_dir / "boston" / "boston_edges.csv.gz")
    graph = nx.MultiDiGraph(crs="epsg:4326")
    osm_of = dict(zip(nodes["idx"], nodes["osm_idx"], strict=True))
    for osm, lat, lon in zip(nodes["osm_idx"], nodes["lat"], nodes["lon"], strict=True):
        graph.add_node(int(osm), x=float(lon), y=float(lat))
    n_lists = 0
    for s, d, length, highway, maxspeed, oneway in zip(edges["src"], edges["dst"], edges["length"],
                                                       edges["highway"], edges["maxspeed"], edges["oneway"],
                                                       strict=True):
        attrs = {"length": float(length), "oneway": bool(oneway), "reversed": False}
        if highway.startswith("["):
            highway = ast.literal_eval(highway)
            n_lists += 1
        attrs["highway"] = highway
        if not math.isnan(maxspeed):
            attrs["maxspeed"] = f"{maxspeed:g} mph"  # the export's number is mph (SOURCES.md)
        graph.add_edge(osm_of[s], osm_of[d], **attrs)
    assert n_lists == 13
    ox.save_graphml(graph, path)


def test_boston_graphml_agrees_with_the_csv_export(data_dir, boston, tmp_path):
    path = tmp_path / "boston.graphml"
    _boston_graphml(data_dir, path)
    from_graphml = load_network(source=path, use_cache=False)
    assert sorted(from_graphml.osm_ids.tolist()) == sorted(boston.osm_ids.tolist())
    assert from_graphml.n_edges == boston.n_edges
    rng = np.random.default_rng(10)
    sources = rng.choice(boston.n_nodes, 50, replace=False)
    targets = rng.choice(boston.n_nodes, 50, replace=False)
    index = {osm: i for i, osm in enumerate(from_graphml.osm_ids.tolist())}
    remap = np.array([index[osm] for osm in boston.osm_ids.tolist()])
    expected = boston.travel_times_from(sources)[np.arange(50), targets]
    got = from_graphml.travel_times_from(remap[sources])[np.arange(50), remap[targets]]
    assert np.allclose(got, expected, rtol=1e-9)


# --------------------------------------------------------------------------- busways
def test_csv_network_drives_no_busway(boston):
    assert "busway" not in set(boston.edge_highway.tolist())
    # Lists in the export ("['trunk', 'motorway']") are resolved to one class by the shared rule.
    assert not any(h.startswith("[") for h in boston.edge_highway.tolist())


# --------------------------------------------------------------------------- outside Boston
def test_west_oakland_loads_with_its_own_extent(data_dir):
    import shapely
    from scipy.sparse.csgraph import connected_components

    drive = load_drive_filter()
    network = load_network(source=_oakland(data_dir), use_cache=False)
    assert network.n_nodes > 0
    assert connected_components(network.csr, directed=True, connection="strong")[0] == 1
    classes = set(network.edge_highway.tolist())
    assert classes <= set(drive.drivable) and not classes & set(drive.excluded)
    # No city boundary: the service area is the network's own extent.
    hull = shapely.convex_hull(shapely.multipoints(np.column_stack([network.lon, network.lat])))
    # (the boundary goes to metres and back: allow a micro-degree)
    assert network.boundary is not None and network.boundary.buffer(1e-6).covers(hull)
    assert network.in_service_area(float(network.lat[0]), float(network.lon[0]))
    assert not network.in_service_area(42.3603, -71.0580)  # Boston City Hall


def test_west_oakland_with_a_boundary_file(data_dir, tmp_path):
    import shapely

    square = shapely.box(-122.3030, 37.8060, -122.2980, 37.8095)
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(square))}]}))
    network = load_network(source=_oakland(data_dir), boundary=path, use_cache=False)
    assert network.boundary.symmetric_difference(square).area < 1e-10  # through metres and back
    # A node of the network far outside the given square is outside the service area.
    far = int(np.argmax(np.hypot(network.lon + 122.3005, network.lat - 37.80775)))
    assert not network.in_service_area(float(network.lat[far]), float(network.lon[far]))
    with pytest.raises(DataMissing):
        load_network(source=_oakland(data_dir), boundary=tmp_path / "missing.geojson", use_cache=False)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput):
        load_network(source=_oakland(data_dir), boundary=bad, use_cache=False)


def test_cli_takes_a_boundary(data_dir, tmp_path):
    import shapely

    path = tmp_path / "area.geojson"
    path.write_text(shapely.to_geojson(shapely.box(-122.31, 37.80, -122.29, 37.82)))
    result = subprocess.run([sys.executable, "-m", "routing.cli", "network", "info", "--json", "--source",
                             str(_oakland(data_dir)), "--boundary", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["nodes"] > 0 and info["has_boundary"] and info["source"].startswith("osm:")


# --------------------------------------------------------------------------- online, without the network
def test_online_source_through_osmnx(monkeypatch, tmp_path):
    import geopandas as gpd
    import osmnx as ox
    import shapely

    monkeypatch.setenv("CRISIS_DISPATCH_CACHE", str(tmp_path))
    calls = []
    small = ox.graph_from_xml(C1, simplify=True)  # osmnx's own graph, lists on the merged edge

    def fake_graph_from_place(query, **kwargs):
        calls.append((query, kwargs))
        return small.copy()

    area = shapely.box(-71.09, 42.33, -71.06, 42.35)
    monkeypatch.setattr(ox, "graph_from_place", fake_graph_from_place)
    monkeypatch.setattr(ox, "geocode_to_gdf", lambda query, **kw: gpd.GeoDataFrame(geometry=[area], crs=4326))
    network = load_network(source="online", use_cache=False)
    assert len(calls) == 1 and calls[0][0] == "Boston, Massachusetts, USA"
    assert "reversible" in calls[0][1]["custom_filter"]  # the drive filter goes into the query
    assert _signature(network) == _signature(load_network(source=C1, use_cache=False))
    assert network.boundary.symmetric_difference(area).area < 1e-10  # through metres and back
    assert list(tmp_path.glob("boston-online-*.graphml"))
    # Downloaded once: a second load reads the cached GraphML.
    from routing.network import clear_memory_cache

    clear_memory_cache()
    load_network(source="online", use_cache=False)
    assert len(calls) == 1


# --------------------------------------------------------------------------- bad files
def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty.osm": b"",
        "truncated.osm": C2.read_bytes()[:1500],
        "not_osm.osm": b"<?xml version='1.0'?><gpx version='1.1'></gpx>",
        "not_pbf.osm.pbf": b"this is not a protocol buffer",
        "truncated.osm.bz2": bz2.compress(C2.read_bytes())[:300],
        "no_roads.osm": b"<osm version='0.6'><node id='1' lat='42.3' lon='-71.0'/></osm>",
        "roads.txt": C2.read_bytes(),
        "broken.graphml": b"<?xml version='1.0'?><graphml><graph>",
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / name
        out[name].write_bytes(content)
    import networkx as nx
    import osmnx as ox

    graph = nx.MultiDiGraph(crs="epsg:4326")
    graph.add_edge(1, 2, length=10.0, highway="residential")
    graph.add_edge(2, 1, length=10.0, highway="residential")
    out["no_xy.graphml"] = tmp_path / "no_xy.graphml"
    ox.save_graphml(graph, out["no_xy.graphml"])
    return out


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    from routing.cli import main

    for name, path in _bad_files(tmp_path).items():
        code = main(["network", "info", "--source", str(path)])
        err = capsys.readouterr().err
        assert code == 2, name
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (name, err)


def test_bad_file_from_the_command_line(tmp_path):
    path = tmp_path / "truncated.osm"
    path.write_bytes(C2.read_bytes()[:1500])
    result = subprocess.run([sys.executable, "-m", "routing.cli", "network", "info", "--source", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_pbf_without_pyosmium_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "c1.osm.pbf"
    _to_pbf(C1, path)
    monkeypatch.setitem(sys.modules, "osmium", None)  # import osmium now raises ImportError
    with pytest.raises(DataMissing, match="pyosmium"):
        load_network(source=path, use_cache=False)


# --------------------------------------------------------------------------- the rules themselves
def test_drive_filter_reads_the_tags():
    drive = load_drive_filter()
    way = {"highway": "residential"}
    assert drive.way_direction(way) == 1
    assert drive.way_direction({**way, "oneway": "yes"}) == 2
    assert drive.way_direction({**way, "oneway": "-1"}) == -2
    assert drive.way_direction({**way, "oneway": "reversible"}) == 0
    assert drive.way_direction({**way, "junction": "roundabout"}) == 2
    for key in ("access", "vehicle", "motor_vehicle", "motorcar"):
        assert drive.way_direction({**way, key: "no"}) == 0, key
        assert drive.way_direction({**way, key: "private"}) == 0, key
    assert drive.way_direction({**way, "access": "psv"}) == 0  # bus-only
    assert drive.way_direction({**way, "motor_vehicle": "no", "bus": "yes"}) == 0
    assert drive.way_direction({**way, "access": "no", "motorcar": "yes"}) == 1  # the specific key wins
    assert drive.way_direction({**way, "access": "destination"}) == 1
    for excluded in ("footway", "path", "cycleway", "steps", "pedestrian", "track", "service", "busway",
                     "construction", "proposed"):
        assert drive.way_direction({"highway": excluded}) == 0, excluded
    assert drive.way_direction({"highway": "pedestrian", "area": "yes"}) == 0


def test_list_rules():
    assert most_important_class(["residential", "trunk_link", "primary"]) == "trunk_link"
    assert most_important_class(["unclassified", "residential"]) == "unclassified"
    assert most_important_class(["trunk", "motorway"]) == "motorway"
    assert most_important_class("living_street") == "living_street"
    assert lowest_maxspeed(["30 mph", "40"]) == "40"  # 40 km/h = 24.9 mph
    assert lowest_maxspeed(["signals", "25 mph"]) == "25 mph"
    assert lowest_maxspeed(None) is None
    assert any_tunnel(["no", "building_passage"]) and any_tunnel("culvert") and any_tunnel(True)
    assert not any_tunnel(["no", None]) and not any_tunnel(None)
    assert first_value(["Main St", "Broadway"]) == "Main St"
    attrs = resolve_edge_attributes({"highway": ["residential", "secondary"], "maxspeed": ["25 mph", "35 mph"],
                                     "tunnel": ["yes", "no"], "name": ["A", "B"]})
    assert attrs == {"highway": "secondary", "maxspeed": "25 mph", "tunnel": True, "name": "A"}


@pytest.mark.parametrize(("text", "mph"), [
    ("25 mph", 25.0), ("25mph", 25.0), ("40", 40 * 0.621371), ("50 km/h", 50 * 0.621371),
    ("10 knots", 10 * 1.150779), ("25 mph;30 mph", 25.0), ("none", math.nan), ("walk", math.nan),
    ("US:urban", math.nan),
])
def test_parse_maxspeed_units(text, mph):
    result = parse_maxspeed(text)
    assert (math.isnan(result) and math.isnan(mph)) or result == pytest.approx(mph)
