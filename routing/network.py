"""The road network: loading, snapping and travel-time queries.

A :class:`RoadNetwork` is a directed drive network reduced to its largest strongly connected component,
held as compact NumPy/CSR arrays with contiguous node indices (OSM ids kept in ``osm_ids``). Queries run
on ``scipy.sparse.csgraph.dijkstra``: one call is a full single-source search over Boston's 11k nodes in
about a millisecond, which is why no per-pair search is ever needed.

Sources, all giving the same object:

- the osmnx CSV export (``DATA_DIR/boston/boston_{nodes,edges}.csv.gz``), the project's default;
- an OSM XML (``.osm``/``.xml``) or PBF (``.pbf``, needs ``pyosmium``) extract, via osmnx;
- an osmnx GraphML file;
- ``"online"``: osmnx downloads "Boston, Massachusetts, USA" once and caches it as GraphML (the only
  network access in the project, and only when asked for).

The prepared arrays are cached (``routing.config.cache_dir()``) under a key made of the source files'
identity and the speed model, so a later command loads in milliseconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from routing import validate
from routing.config import cache_dir, resolve_data_dir
from routing.errors import DataMissing, InvalidInput, OutsideServiceArea
from routing.speeds import SpeedModel, load_speeds, parse_maxspeed

METRIC_CRS = "EPSG:26986"  # NAD83 / Massachusetts Mainland, metres
ONLINE_PLACE = "Boston, Massachusetts, USA"
_CACHE_VERSION = 4
_MIN_EDGE_S = 0.01  # csgraph drops explicit zero weights; a zero-length edge still has to exist

_TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
_TO_WGS84 = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


@dataclass(frozen=True)
class Snap:
    """A point attached to the network: its nearest node and the off-network leg."""

    node: int
    distance_m: float
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "distance_m": self.distance_m, "time_s": self.time_s}


@dataclass(frozen=True)
class SnapArray:
    """Vectorised :class:`Snap`: node ``-1`` marks a point outside the service area (non-strict)."""

    nodes: np.ndarray
    distance_m: np.ndarray
    time_s: np.ndarray


@dataclass(frozen=True)
class Route:
    """A fastest route between two points, geometry in lon/lat."""

    travel_time_s: float
    distance_m: float
    path: list[list[float]]
    nodes: list[int] = field(repr=False)
    origin_snap: Snap | None = None
    destination_snap: Snap | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "travel_time_s": round(self.travel_time_s, 1),
            "travel_time_min": round(self.travel_time_s / 60, 2),
            "distance_m": round(self.distance_m, 1),
            "path": self.path,
            "n_nodes": len(self.nodes),
        }

    def to_geojson(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": self.path},
            "properties": {"travel_time_s": self.travel_time_s, "distance_m": self.distance_m},
        }


@dataclass
class _Topology:
    """What every speed profile of one network shares."""

    osm_ids: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    x: np.ndarray
    y: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    length_m: np.ndarray
    base_time_s: np.ndarray  # per edge, before mode and hour factors
    highway: np.ndarray  # per edge, class name
    dropped_nodes: int
    source: str
    boundary: shapely.Geometry | None  # metric CRS
    speeds: SpeedModel
    area: shapely.Geometry | None = None  # boundary + tolerance, metric; derived when not given
    kdtree: cKDTree = field(init=False)
    profiles: dict[float, RoadNetwork] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.kdtree = cKDTree(np.column_stack([self.x, self.y]))
        if self.area is None and self.boundary is not None:
            # Simplifying first (10 m, far below the tolerance) makes the buffer 100x faster.
            simple = self.boundary.simplify(10.0)
            self.area = simple.buffer(self.speeds.boundary_tolerance_m, quad_segs=4)
        if self.area is not None:
            shapely.prepare(self.area)


class RoadNetwork:
    """A directed drive network with travel times for one speed profile.

    Build with :func:`load_network` or :func:`network_from_graph`. Node indices are contiguous
    ``0..n_nodes-1``. All travel times are seconds; distances metres.
    """

    def __init__(self, topology: _Topology, factor: float, mode: str | None, hour: int | None) -> None:
        self._t = topology
        self.profile = {"mode": mode or topology.speeds.default_mode, "hour": hour, "speed_factor": factor}
        weights = np.maximum(topology.base_time_s / factor, _MIN_EDGE_S)
        n = len(topology.osm_ids)
        self._csr = csr_matrix((weights, topology.indices, topology.indptr), shape=(n, n))
        self._csr_reverse = self._csr.T.tocsr()
        self._edge_time_s = weights

    # ----------------------------------------------------------------- attributes
    @property
    def n_nodes(self) -> int:
        return len(self._t.osm_ids)

    @property
    def n_edges(self) -> int:
        return len(self._t.indices)

    @property
    def dropped_nodes(self) -> int:
        return self._t.dropped_nodes

    @property
    def source(self) -> str:
        return self._t.source

    @property
    def osm_ids(self) -> np.ndarray:
        return self._t.osm_ids

    @property
    def lat(self) -> np.ndarray:
        return self._t.lat

    @property
    def lon(self) -> np.ndarray:
        return self._t.lon

    @property
    def x(self) -> np.ndarray:
        return self._t.x

    @property
    def y(self) -> np.ndarray:
        return self._t.y

    @property
    def speeds(self) -> SpeedModel:
        return self._t.speeds

    @property
    def boundary(self) -> shapely.Geometry | None:
        """The city boundary in lon/lat, when the source has one."""
        if self._t.boundary is None:
            return None
        return shapely.transform(self._t.boundary, _metric_to_lonlat_coords)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(lon_min, lat_min, lon_max, lat_max) of the nodes."""
        return (float(self.lon.min()), float(self.lat.min()), float(self.lon.max()), float(self.lat.max()))

    @property
    def csr(self) -> csr_matrix:
        """Forward adjacency matrix, entry (u, v) = travel time of edge u -> v in seconds."""
        return self._csr

    @property
    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) node index of every edge, in CSR order."""
        src = np.repeat(np.arange(self.n_nodes), np.diff(self._t.indptr))
        return src, self._t.indices

    @property
    def edge_length_m(self) -> np.ndarray:
        return self._t.length_m

    @property
    def edge_highway(self) -> np.ndarray:
        """OSM road class of every edge (``residential``, ``primary``, ...), in CSR order."""
        return self._t.highway

    @property
    def edge_time_s(self) -> np.ndarray:
        return self._edge_time_s

    def info(self) -> dict[str, Any]:
        """Summary for ``network info``."""
        return {
            "source": self.source,
            "nodes": self.n_nodes,
            "edges": self.n_edges,
            "dropped_nodes": self.dropped_nodes,
            "bbox": list(self.bbox),
            "total_length_km": round(float(self._t.length_m.sum()) / 1000, 1),
            "profile": self.profile,
            "has_boundary": self._t.boundary is not None,
        }

    def with_profile(self, mode: str | None = None, hour: int | None = None) -> RoadNetwork:
        """The same network with travel times for a response mode and an hour of day (cached)."""
        factor = self._t.speeds.profile_factor(mode, hour)
        with self._t.lock:
            cached = self._t.profiles.get(factor)
            if cached is None:
                cached = RoadNetwork(self._t, factor, mode, hour)
                self._t.profiles[factor] = cached
        if cached.profile["mode"] != (mode or self._t.speeds.default_mode) or cached.profile["hour"] != hour:
            # Same speeds under another name: share the arrays, keep the caller's label.
            twin = object.__new__(RoadNetwork)
            twin.__dict__.update(cached.__dict__)
            twin.profile = {"mode": mode or self._t.speeds.default_mode, "hour": hour, "speed_factor": factor}
            return twin
        return cached

    # ----------------------------------------------------------------- snapping
    def check_point(self, lat: float, lon: float, field: str = "location") -> None:
        """Raise unless (lat, lon) is a finite coordinate inside the service area."""
        self.snap(lat, lon, field=field)

    def in_service_area(self, lat: float, lon: float) -> bool:
        """Whether a point would snap (inside the boundary tolerance and near a road)."""
        try:
            self.snap(lat, lon)
        except InvalidInput:
            return False
        return True

    def snap(self, lat: float, lon: float, field: str = "location") -> Snap:
        """Attach a point to its nearest node.

        Raises
        ------
        InvalidInput
            Non-numeric, non-finite or out-of-range coordinates.
        OutsideServiceArea
            Beyond the boundary tolerance, or farther than ``max_snap_m`` from any road node.
        """
        lat, lon = _validate_latlon(lat, lon, field)
        x, y = _TO_METRIC.transform(lon, lat)
        speeds = self._t.speeds
        if self._t.area is not None and not shapely.contains_xy(self._t.area, x, y):
            raise OutsideServiceArea(
                f"{field} ({lat:.6f}, {lon:.6f}) is outside the service area "
                f"(more than {speeds.boundary_tolerance_m:.0f} m beyond the city boundary)",
                field=field,
            )
        distance, node = self._t.kdtree.query((x, y))
        if distance > speeds.max_snap_m:
            raise OutsideServiceArea(
                f"{field} ({lat:.6f}, {lon:.6f}) is {distance:.0f} m from the nearest road "
                f"(limit {speeds.max_snap_m:.0f} m)",
                field=field,
            )
        return Snap(int(node), float(distance), float(speeds.off_network_time_s(distance)))

    def snap_many(self, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray, *,
                  strict: bool = True) -> SnapArray:
        """Snap many points at once; with ``strict=False`` rejected points get node ``-1``."""
        lats = np.asarray(lats, dtype=float)
        lons = np.asarray(lons, dtype=float)
        if lats.shape != lons.shape or lats.ndim != 1:
            raise InvalidInput("lats and lons must be 1-D arrays of the same length")
        valid = np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
        x = np.full(lats.shape, np.nan)
        y = np.full(lats.shape, np.nan)
        x[valid], y[valid] = _TO_METRIC.transform(lons[valid], lats[valid])
        if self._t.area is not None:
            valid &= shapely.contains_xy(self._t.area, np.nan_to_num(x), np.nan_to_num(y))
        distance = np.full(lats.shape, np.inf)
        nodes = np.full(lats.shape, -1, dtype=np.int64)
        if valid.any():
            d, n = self._t.kdtree.query(np.column_stack([x[valid], y[valid]]))
            distance[valid], nodes[valid] = d, n
        ok = valid & (distance <= self._t.speeds.max_snap_m)
        if strict and not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            self.snap(float(lats[bad]), float(lons[bad]), field=f"point {bad}")  # raises the precise error
        nodes[~ok] = -1
        distance[~ok] = np.nan
        return SnapArray(nodes, distance, self._t.speeds.off_network_time_s(distance))

    def nearest_node(self, lat: float, lon: float) -> int:
        """Nearest node index, with no service-area check (for display code)."""
        x, y = _TO_METRIC.transform(lon, lat)
        return int(self._t.kdtree.query((x, y))[1])

    # ----------------------------------------------------------------- queries
    def travel_times_from(self, nodes: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Seconds from the node(s) to every node: shape ``(n_nodes,)`` for one, ``(k, n_nodes)`` for k."""
        return self._search(self._csr, nodes)

    def travel_times_to(self, nodes: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Seconds from every node to the node(s), on the reverse graph."""
        return self._search(self._csr_reverse, nodes)

    def travel_time_matrix(self, sources: Sequence[int] | np.ndarray,
                           targets: Sequence[int] | np.ndarray) -> np.ndarray:
        """Seconds from each source to each target, shape ``(len(sources), len(targets))``."""
        sources = self._check_nodes(sources, many=True)
        targets = self._check_nodes(targets, many=True)
        if len(sources) <= len(targets):
            return self.travel_times_from(sources)[:, targets]
        return self.travel_times_to(targets)[:, sources].T

    def nearest_times_from(self, nodes: Sequence[int] | np.ndarray) -> np.ndarray:
        """Seconds to every node from the nearest of ``nodes`` (one multi-source search)."""
        nodes = self._check_nodes(nodes, many=True)
        if len(nodes) == 0:
            return np.full(self.n_nodes, np.inf)
        return dijkstra(self._csr, directed=True, indices=nodes, min_only=True)

    def eta(self, origin: tuple[float, float], destination: tuple[float, float]) -> float:
        """Seconds from one (lat, lon) to another, off-network legs included."""
        a = self.snap(*origin, field="origin")
        b = self.snap(*destination, field="destination")
        return a.time_s + float(self.travel_times_from(a.node)[b.node]) + b.time_s

    def route(self, origin: tuple[float, float], destination: tuple[float, float]) -> Route:
        """Fastest route between two (lat, lon) points, with its geometry and length."""
        a = self.snap(*origin, field="origin")
        b = self.snap(*destination, field="destination")
        nodes, network_time = self.route_nodes(a.node, b.node)
        length = self._path_length(nodes)
        path = [[float(origin[1]), float(origin[0])]]
        path += [[float(self.lon[n]), float(self.lat[n])] for n in nodes]
        path.append([float(destination[1]), float(destination[0])])
        return Route(
            travel_time_s=a.time_s + network_time + b.time_s,
            distance_m=a.distance_m + length + b.distance_m,
            path=path,
            nodes=nodes,
            origin_snap=a,
            destination_snap=b,
        )

    def route_nodes(self, source: int, target: int) -> tuple[list[int], float]:
        """Node sequence of the fastest path and its network travel time."""
        source = int(self._check_nodes(source))
        target = int(self._check_nodes(target))
        times, pred = dijkstra(self._csr, directed=True, indices=source, return_predecessors=True)
        if not np.isfinite(times[target]):
            raise InvalidInput(f"no path from node {source} to node {target}")
        nodes = [target]
        while nodes[-1] != source:
            nodes.append(int(pred[nodes[-1]]))
        nodes.reverse()
        return nodes, float(times[target])

    def isochrone(self, lat: float, lon: float, seconds: float, *, resolution_m: float = 50.0
                  ) -> shapely.Geometry:
        """Area reachable from (lat, lon) within ``seconds`` (lon/lat polygon).

        The streets reached within the budget are rasterised on a ``resolution_m`` grid and the cells
        merged, so the shape follows the street grid instead of a convex hull that would claim the
        harbour or a park, and costs a fraction of a second even citywide.
        """
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise InvalidInput(f"travel-time budget must be a positive number of seconds, got {seconds!r}",
                               field="seconds")
        start = self.snap(lat, lon)
        times = self.travel_times_from(start.node) + start.time_s
        x, y = _TO_METRIC.transform(lon, lat)
        # The off-network leg belongs to the area too: sample it like a street.
        frac = np.linspace(0, 1, int(start.distance_m // (resolution_m / 2)) + 2)
        leg = np.column_stack([x + (self.x[start.node] - x) * frac, y + (self.y[start.node] - y) * frac])
        return self.isochrone_from_times(times, seconds, resolution_m=resolution_m, extra_xy=leg)

    def isochrone_from_times(self, times: np.ndarray, seconds: float, *, resolution_m: float = 50.0,
                             extra_xy: np.ndarray | None = None) -> shapely.Geometry:
        """Polygon (lon/lat) of the grid cells crossed by streets whose both ends have ``times <= seconds``."""
        src, dst = self.edges
        reached = (times[src] <= seconds) & (times[dst] <= seconds)
        # Sample every reached street at half the cell size so that no cell along it is skipped.
        samples = np.maximum(1, np.ceil(self._t.length_m[reached] / (resolution_m / 2)).astype(np.int64))
        edge = np.repeat(np.arange(int(reached.sum())), samples)
        frac = (np.arange(int(samples.sum())) - np.repeat(np.cumsum(samples) - samples, samples)) / np.repeat(
            samples, samples)
        s, d = src[reached][edge], dst[reached][edge]
        xs = np.concatenate([self.x[s] * (1 - frac) + self.x[d] * frac, self.x[times <= seconds]])
        ys = np.concatenate([self.y[s] * (1 - frac) + self.y[d] * frac, self.y[times <= seconds]])
        if extra_xy is not None:
            xs, ys = np.concatenate([xs, extra_xy[:, 0]]), np.concatenate([ys, extra_xy[:, 1]])
        if len(xs) == 0:
            return shapely.Polygon()
        cells = np.unique(np.floor(np.column_stack([xs, ys]) / resolution_m).astype(np.int64), axis=0)
        boxes = shapely.box(cells[:, 0] * resolution_m, cells[:, 1] * resolution_m,
                            (cells[:, 0] + 1) * resolution_m, (cells[:, 1] + 1) * resolution_m)
        geom = shapely.coverage_union_all(boxes).simplify(resolution_m / 5)
        return shapely.transform(geom, _metric_to_lonlat_coords)

    def to_networkx(self) -> Any:
        """An osmnx-style ``networkx.MultiDiGraph`` of this network (for baselines and interop)."""
        import networkx as nx

        graph = nx.MultiDiGraph(crs="EPSG:4326")
        for i in range(self.n_nodes):
            graph.add_node(i, x=float(self.lon[i]), y=float(self.lat[i]), osmid=int(self.osm_ids[i]))
        src, dst = self.edges
        for u, v, length, t, hw in zip(src.tolist(), dst.tolist(), self._t.length_m.tolist(),
                                       self._edge_time_s.tolist(), self._t.highway.tolist(), strict=True):
            graph.add_edge(u, v, length=length, travel_time=t, highway=hw)
        return graph

    # ----------------------------------------------------------------- helpers
    def _search(self, matrix: csr_matrix, nodes: int | Sequence[int] | np.ndarray) -> np.ndarray:
        many = not np.isscalar(nodes) and np.ndim(nodes) > 0
        checked = self._check_nodes(nodes, many=many)
        return dijkstra(matrix, directed=True, indices=checked)

    def _check_nodes(self, nodes: Any, many: bool = False) -> np.ndarray:
        arr = np.asarray(nodes)
        if arr.ndim > 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise InvalidInput("node indices must be integers")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_nodes):
            raise InvalidInput(f"node index out of range 0..{self.n_nodes - 1}")
        return np.atleast_1d(arr).astype(np.int64) if many else arr.astype(np.int64)

    def _path_length(self, nodes: list[int]) -> float:
        total = 0.0
        indptr, indices = self._t.indptr, self._t.indices
        for u, v in zip(nodes[:-1], nodes[1:], strict=True):
            lo, hi = indptr[u], indptr[u + 1]
            candidates = np.flatnonzero(indices[lo:hi] == v) + lo
            total += float(self._t.length_m[candidates[np.argmin(self._edge_time_s[candidates])]])
        return total


# --------------------------------------------------------------------------- building
def _validate_latlon(lat: Any, lon: Any, field: str) -> tuple[float, float]:
    try:
        return validate.latlon(lat, lon)
    except InvalidInput as exc:  # name the point (origin, destination, ...) the caller asked about
        raise InvalidInput(f"{field}: {exc.message}", field=field) from None


def _metric_to_lonlat_coords(coords: np.ndarray) -> np.ndarray:
    lon, lat = _TO_WGS84.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


def _build_topology(osm_ids: np.ndarray, lat: np.ndarray, lon: np.ndarray, src: np.ndarray, dst: np.ndarray,
                    length_m: np.ndarray, highway: np.ndarray, maxspeed_mph: np.ndarray, *,
                    speeds: SpeedModel, source: str, boundary: shapely.Geometry | None) -> _Topology:
    """Arrays -> largest strongly connected component in CSR form, parallel edges reduced to the fastest."""
    n = len(osm_ids)
    length_m = np.asarray(length_m, dtype=float)
    if not np.isfinite(length_m).all() or (length_m < 0).any():
        raise InvalidInput(f"{source}: edge lengths must be finite and non-negative")
    keep = src != dst  # self-loops never lie on a shortest path
    src, dst, length_m = src[keep], dst[keep], length_m[keep]
    highway, maxspeed_mph = np.asarray(highway, dtype=object)[keep], np.asarray(maxspeed_mph, float)[keep]
    speed = speeds.base_speed_mps(highway, maxspeed_mph)
    base_time = length_m / speed

    graph = csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=True, connection="strong")
    largest = np.bincount(labels).argmax()
    in_scc = labels == largest
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[in_scc] = np.arange(in_scc.sum())
    edge_ok = in_scc[src] & in_scc[dst]
    src, dst = new_index[src[edge_ok]], new_index[dst[edge_ok]]
    length_m, base_time, highway = length_m[edge_ok], base_time[edge_ok], highway[edge_ok]

    # Parallel edges: keep the fastest of each (u, v); sort by (u, v, time) and take the first.
    order = np.lexsort((base_time, dst, src))
    src, dst, length_m, base_time, highway = src[order], dst[order], length_m[order], base_time[order], highway[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    src, dst, length_m, base_time, highway = src[first], dst[first], length_m[first], base_time[first], highway[first]

    m = int(in_scc.sum())
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=m), out=indptr[1:])
    lat_k, lon_k = np.asarray(lat, float)[in_scc], np.asarray(lon, float)[in_scc]
    x, y = _TO_METRIC.transform(lon_k, lat_k)
    return _Topology(
        osm_ids=np.asarray(osm_ids, dtype=np.int64)[in_scc], lat=lat_k, lon=lon_k,
        x=np.asarray(x), y=np.asarray(y), indptr=indptr, indices=dst.astype(np.int32),
        length_m=length_m, base_time_s=base_time, highway=highway.astype(str),
        dropped_nodes=int(n - m), source=source, boundary=boundary, speeds=speeds,
    )


def network_from_graph(graph: Any, *, speeds: SpeedModel | None = None, source: str = "graph",
                       boundary_lonlat: shapely.Geometry | None = None) -> RoadNetwork:
    """Build a :class:`RoadNetwork` from an osmnx-style ``networkx`` (Multi)DiGraph.

    Nodes need ``x`` (lon) and ``y`` (lat); edges need ``length`` (m) and may have ``highway`` and
    ``maxspeed`` (OSM tag text such as ``"25 mph"``; a bare number is km/h).
    """
    speeds = speeds or load_speeds()
    node_list = list(graph.nodes)
    if not node_list:
        raise InvalidInput(f"{source}: the graph has no nodes")
    position = {node: i for i, node in enumerate(node_list)}
    try:
        lon = np.array([float(graph.nodes[v]["x"]) for v in node_list])
        lat = np.array([float(graph.nodes[v]["y"]) for v in node_list])
    except KeyError:
        raise InvalidInput(f"{source}: every node needs 'x' (lon) and 'y' (lat)") from None
    osm_ids = np.array([int(graph.nodes[v].get("osmid", v)) if _is_int(graph.nodes[v].get("osmid", v)) else i
                        for i, v in enumerate(node_list)], dtype=np.int64)
    src, dst, length, highway, maxspeed = [], [], [], [], []
    for u, v, data in graph.edges(data=True):
        if "length" not in data:
            raise InvalidInput(f"{source}: edge {u}->{v} has no 'length'")
        src.append(position[u])
        dst.append(position[v])
        length.append(float(data["length"]))
        highway.append(data.get("highway", "other"))
        maxspeed.append(parse_maxspeed(data.get("maxspeed"), bare_unit="kph"))
    if not src:
        raise InvalidInput(f"{source}: the graph has no edges")
    boundary = None
    if boundary_lonlat is not None:
        boundary = shapely.transform(boundary_lonlat, _lonlat_to_metric_coords)
    topo = _build_topology(osm_ids, lat, lon, np.array(src), np.array(dst), np.array(length),
                           np.array(highway, dtype=object), np.array(maxspeed), speeds=speeds, source=source,
                           boundary=boundary)
    return topo_network(topo)


def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def _lonlat_to_metric_coords(coords: np.ndarray) -> np.ndarray:
    x, y = _TO_METRIC.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def topo_network(topo: _Topology) -> RoadNetwork:
    network = RoadNetwork(topo, topo.speeds.profile_factor(None, None), None, None)
    topo.profiles[network.profile["speed_factor"]] = network
    return network


# --------------------------------------------------------------------------- sources
def read_boundary(data_dir: Path) -> shapely.Geometry | None:
    """City boundary (lon/lat) from ``data_dir/boston/City_of_Boston_Boundary.shp.gz``, if present."""
    path = data_dir / "boston" / "City_of_Boston_Boundary.shp.gz"
    if not path.is_file():
        return None
    cached = cache_dir() / f"boundary-{_file_key(path)}.wkb"
    if cached.is_file():
        try:
            return shapely.from_wkb(cached.read_bytes())
        except shapely.errors.ShapelyError:
            pass  # a damaged cache file: read the source again
    boundary = _read_bare_shapefile(path)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_bytes(shapely.to_wkb(boundary))
    tmp.replace(cached)
    return boundary


def _read_bare_shapefile(path: Path) -> shapely.Geometry:
    """Union of the geometries of a gzipped bare ``.shp`` (no .shx/.dbf/.prj), assumed WGS84."""
    import pyogrio

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / (path.name.removesuffix(".gz"))
        with gzip.open(path) as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        pyogrio.set_gdal_config_options({"SHAPE_RESTORE_SHX": "YES"})
        frame = pyogrio.read_dataframe(target)
    return shapely.make_valid(shapely.union_all(frame.geometry.values))


def _load_csv(directory: Path, speeds: SpeedModel) -> _Topology:
    import pandas as pd  # only the CSV source needs it; keeps a cached start light

    nodes_path = _first_existing(directory, "boston_nodes.csv.gz", "boston_nodes.csv")
    edges_path = _first_existing(directory, "boston_edges.csv.gz", "boston_edges.csv")
    try:
        nodes = pd.read_csv(nodes_path, usecols=["idx", "osm_idx", "lat", "lon"])
        edges = pd.read_csv(edges_path, usecols=["src", "dst", "length", "highway", "maxspeed"])
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidInput(f"{directory}: not an osmnx CSV export: {exc}") from None
    index_of = pd.Series(np.arange(len(nodes)), index=nodes["idx"].to_numpy())
    try:
        src = index_of.loc[edges["src"].to_numpy()].to_numpy()
        dst = index_of.loc[edges["dst"].to_numpy()].to_numpy()
    except KeyError as exc:
        raise InvalidInput(f"{edges_path}: edge refers to unknown node idx {exc}") from None
    unit_mph = speeds.csv_maxspeed_unit == "mph"
    maxspeed = edges["maxspeed"].to_numpy(dtype=float) * (1.0 if unit_mph else 0.621371)
    boundary_lonlat = read_boundary(directory.parent) if directory.name == "boston" else None
    boundary = shapely.transform(boundary_lonlat, _lonlat_to_metric_coords) if boundary_lonlat else None
    return _build_topology(
        nodes["osm_idx"].to_numpy(), nodes["lat"].to_numpy(), nodes["lon"].to_numpy(), src, dst,
        edges["length"].to_numpy(dtype=float), edges["highway"].astype(str).to_numpy(dtype=object), maxspeed,
        speeds=speeds, source=f"csv:{directory}", boundary=boundary,
    )


def _first_existing(directory: Path, *names: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DataMissing(f"{directory}: none of {', '.join(names)} found")


def _graph_from_file(path: Path) -> Any:
    import osmnx as ox

    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".graphml"):
        return ox.load_graphml(path)
    if suffix.endswith(".pbf"):
        return _drive_only(ox.graph_from_xml(_pbf_to_xml(path), simplify=True, retain_all=True))
    if suffix.endswith((".osm", ".xml", ".osm.bz2", ".xml.bz2")):
        return _drive_only(ox.graph_from_xml(path, simplify=True, retain_all=True))
    raise InvalidInput(f"unknown network file type {path.name!r}: expected .graphml, .osm, .xml or .pbf")


def _drive_only(graph: Any) -> Any:
    """Drop edges that are not for cars (osmnx's XML reader keeps every way with a highway tag)."""
    excluded = {"footway", "path", "pedestrian", "steps", "cycleway", "bridleway", "track", "corridor",
                "elevator", "escalator", "proposed", "construction", "abandoned", "platform", "raceway",
                "service", "busway"}
    drop = [(u, v, k) for u, v, k, hw in graph.edges(keys=True, data="highway")
            if (hw if isinstance(hw, str) else (hw or ["other"])[0]) in excluded]
    graph.remove_edges_from(drop)
    graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])
    return graph


def _pbf_to_xml(path: Path) -> Path:
    try:
        import osmium
    except ImportError:
        raise DataMissing("reading .pbf needs pyosmium: pip install osmium (or convert to .osm XML)") from None
    target = cache_dir() / f"{path.stem}-{_file_key(path)}.osm"
    if not target.exists():
        tmp = target.with_suffix(".tmp.osm")
        tmp.unlink(missing_ok=True)
        with osmium.SimpleWriter(str(tmp)) as writer:
            for obj in osmium.FileProcessor(str(path)):
                writer.add(obj)
        tmp.replace(target)
    return target


def _download_online() -> Path:
    """Download Boston's drive network once with osmnx and keep it as GraphML in the cache."""
    import osmnx as ox

    target = cache_dir() / "boston-online.graphml"
    if not target.exists():
        graph = ox.graph_from_place(ONLINE_PLACE, network_type="drive", simplify=True)
        ox.save_graphml(graph, target)
        boundary = ox.geocode_to_gdf(ONLINE_PLACE).geometry.iloc[0]
        (cache_dir() / "boston-online-boundary.wkt").write_text(boundary.wkt)
    return target


def _file_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- cache
_ARRAYS = ("osm_ids", "lat", "lon", "x", "y", "indptr", "indices", "length_m", "base_time_s", "highway")


def _save_cache(topo: _Topology, path: Path) -> None:
    meta = {"dropped_nodes": topo.dropped_nodes, "source": topo.source, "version": _CACHE_VERSION}
    boundary = shapely.to_wkb(topo.boundary) if topo.boundary is not None else b""
    area = shapely.to_wkb(topo.area) if topo.area is not None else b""
    meta["tolerance_m"] = topo.speeds.boundary_tolerance_m
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), boundary=np.frombuffer(boundary, dtype=np.uint8),
                 area=np.frombuffer(area, dtype=np.uint8),
                 **{name: getattr(topo, name) for name in _ARRAYS})
    tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new, never half


def _load_cache(path: Path, speeds: SpeedModel) -> _Topology | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != _CACHE_VERSION:
                return None
            arrays = {name: data[name] for name in _ARRAYS}
            wkb = data["boundary"].tobytes()
            area = data["area"].tobytes()
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # unreadable or old cache: rebuild
    return _Topology(**arrays, dropped_nodes=int(meta["dropped_nodes"]), source=meta["source"],
                     boundary=shapely.from_wkb(wkb) if wkb else None, speeds=speeds,
                     area=shapely.from_wkb(area) if area else None)


# --------------------------------------------------------------------------- public loader
_LOADED: dict[str, RoadNetwork] = {}
_LOADED_LOCK = threading.Lock()


def load_network(data_dir: str | os.PathLike[str] | None = None, *, source: str | os.PathLike[str] | None = None,
                 speeds: str | os.PathLike[str] | SpeedModel | None = None, use_cache: bool = True,
                 stats: dict[str, Any] | None = None) -> RoadNetwork:
    """Load (or build and cache) the road network.

    Parameters
    ----------
    data_dir
        Real-data directory; its ``boston/`` CSV export is the default source. Falls back to
        ``$CRISIS_DISPATCH_DATA``.
    source
        Instead of the data directory: a CSV export directory, an ``.osm``/``.xml``/``.pbf`` extract,
        a ``.graphml`` file, or ``"online"`` (osmnx download of Boston, cached; needs internet once).
    speeds
        A speeds TOML path or a :class:`SpeedModel` (default ``data/speeds.toml``).
    use_cache
        Read and write the prepared-array cache.
    stats
        If given, filled with ``{"from_cache": bool, "load_s": float}``.

    Returns
    -------
    RoadNetwork

    Raises
    ------
    DataMissing
        No source was given and ``$CRISIS_DISPATCH_DATA`` is unset, or a file is missing.
    """
    started = time.perf_counter()
    model = speeds if isinstance(speeds, SpeedModel) else load_speeds(speeds)
    kind, path = _resolve_source(data_dir, source)
    if kind == "online":
        path = _download_online()
        kind = "graphml"
    inputs = sorted(path.glob("boston_*.csv*")) if kind == "csv" else [path]
    extra = [path.parent / "City_of_Boston_Boundary.shp.gz"] if kind == "csv" else []
    key = hashlib.sha256("|".join([str(_CACHE_VERSION), model.digest, kind]
                                  + [_file_key(p) for p in inputs + extra if p.exists()]).encode()).hexdigest()[:20]
    with _LOADED_LOCK:
        if key in _LOADED:
            if stats is not None:
                stats.update(from_cache=True, load_s=time.perf_counter() - started, memory=True)
            return _LOADED[key]
    cache_file = cache_dir() / f"network-{key}.npz"
    topo = _load_cache(cache_file, model) if use_cache and cache_file.exists() else None
    from_cache = topo is not None
    if topo is None:
        if kind == "csv":
            topo = _load_csv(path, model)
        else:
            graph = _graph_from_file(path)
            boundary = None
            wkt = cache_dir() / "boston-online-boundary.wkt"
            if path.name == "boston-online.graphml" and wkt.exists():
                boundary = shapely.from_wkt(wkt.read_text())
            topo = network_from_graph(graph, speeds=model, source=f"{kind}:{path}", boundary_lonlat=boundary)._t
        if use_cache:
            _save_cache(topo, cache_file)
    network = topo_network(topo)
    with _LOADED_LOCK:
        _LOADED[key] = network
    if stats is not None:
        stats.update(from_cache=from_cache, load_s=time.perf_counter() - started, memory=False)
    return network


def clear_memory_cache() -> None:
    """Forget networks loaded in this process (the on-disk cache stays)."""
    with _LOADED_LOCK:
        _LOADED.clear()


def _resolve_source(data_dir: Any, source: Any) -> tuple[str, Path]:
    if source is not None and str(source) == "online":
        return "online", Path()
    if source is not None:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataMissing(f"network source not found: {path}")
        if path.is_dir():
            return "csv", (path / "boston") if (path / "boston").is_dir() else path
        return "file", path
    directory = resolve_data_dir(data_dir)
    if directory is None:
        raise DataMissing("no road data: pass --data DIR, set CRISIS_DISPATCH_DATA, or use --source online "
                          "to download Boston from OpenStreetMap")
    boston = directory / "boston"
    if not boston.is_dir():
        raise DataMissing(f"{directory}: no 'boston' folder with the osmnx CSV export")
    return "csv", boston
