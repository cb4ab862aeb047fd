"""The road network: loading, snapping and travel-time queries.

A :class:`RoadNetwork` is a directed drive network reduced to its largest strongly connected component,
held as compact NumPy/CSR arrays with contiguous node indices (OSM ids kept in ``osm_ids``). Queries run
on ``scipy.sparse.csgraph.dijkstra``: one call is a full single-source search over Boston's 11k nodes in
about a millisecond, which is why no per-pair search is ever needed.

Sources, all giving the same object:

- the osmnx CSV export (``DATA_DIR/boston/boston_{nodes,edges}.csv.gz``), the project's default;
- an OSM XML (``.osm``/``.xml``, optionally ``.bz2``) or PBF (``.pbf``, needs ``pyosmium``) extract, read
  and drive-filtered by :mod:`routing.osm`, then simplified by osmnx;
- an osmnx GraphML file (merged edges' lists resolved by :func:`routing.osm.resolve_edge_attributes`);
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from pyproj import Transformer
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from routing import validate
from routing.config import cache_dir, resolve_data_dir
from routing.errors import DataMissing, InvalidInput, OutsideServiceArea
from routing.osm import (
    ACCESS_KEYS,
    DriveFilter,
    graph_from_osm_file,
    load_drive_filter,
    most_important_class,
    one_line,
    resolve_edge_attributes,
)
from routing.osm import file_kind as osm_file_kind
from routing.speeds import SpeedModel, load_speeds, local_hour, parse_maxspeed
from routing.units import format_eta

if TYPE_CHECKING:
    import geopandas as gpd
    import networkx as nx
    import pandas as pd

    from routing.hierarchy import Order

METRIC_CRS = "EPSG:26986"  # NAD83 / Massachusetts Mainland, metres
ONLINE_PLACE = "Boston, Massachusetts, USA"
_CACHE_VERSION = 7
_MIN_EDGE_S = 0.01  # csgraph drops explicit zero weights; a zero-length edge still has to exist

_TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
_TO_WGS84 = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


@dataclass(frozen=True)
class Snap:
    """A point attached to the network ("phantom node", as OSRM and Valhalla do).

    The point attaches to its projection on the nearest allowed road segment (in EPSG:26986). Travel
    from or to it uses the part of that segment up to each end it may be driven to (see
    :meth:`RoadNetwork.snap_exits` / :meth:`RoadNetwork.snap_entries`).

    Attributes
    ----------
    node
        The segment end nearer the projection: what node-level models (coverage, staging, the
        simulation) use for the point.
    distance_m
        Straight-line metres from the point to its projection (the off-network leg).
    time_s
        Seconds for the off-network leg (``[off_network]`` of the speed model).
    segment
        Index of the attached road segment, or ``-1`` when the point was attached to ``node`` itself.
    fraction
        Position of the projection along the segment, 0 at its first end, 1 at its second.
    road_class
        OSM class of the attached segment.
    street_fallback
        The point asked for a street a person can stand beside but none lay within ``max_snap_m``, so it
        attached to an excluded class (expressway, ramp or tunnel).
    inside_boundary
        Whether the point lies inside the city boundary (``None`` when the network has none).
    road_lat, road_lon
        The projection (where the point meets the road), WGS84.
    """

    node: int
    distance_m: float
    time_s: float
    segment: int = -1
    fraction: float = 0.0
    road_class: str = ""
    street_fallback: bool = False
    inside_boundary: bool | None = None
    road_lat: float = math.nan
    road_lon: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "distance_m": self.distance_m, "time_s": self.time_s,
                "segment": self.segment, "fraction": round(self.fraction, 6), "road_class": self.road_class,
                "street_fallback": self.street_fallback, "inside_boundary": self.inside_boundary,
                "road_lat": self.road_lat, "road_lon": self.road_lon}


@dataclass(frozen=True)
class SnapArray:
    """Vectorised :class:`Snap`: node ``-1`` marks a point outside the service area (non-strict)."""

    nodes: np.ndarray
    distance_m: np.ndarray
    time_s: np.ndarray
    segment: np.ndarray | None = None
    fraction: np.ndarray | None = None
    street_fallback: np.ndarray | None = None

    def __getitem__(self, k: int) -> Snap:
        """The :class:`Snap` of point ``k`` (its node must not be -1)."""
        seg = -1 if self.segment is None else int(self.segment[k])
        frac = 0.0 if self.fraction is None else float(self.fraction[k])
        fb = False if self.street_fallback is None else bool(self.street_fallback[k])
        return Snap(int(self.nodes[k]), float(self.distance_m[k]), float(self.time_s[k]), seg, frac,
                    street_fallback=fb)


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

    def to_frame(self) -> pd.DataFrame:
        """One row per point of ``path``, origin first: ``seq``, ``lon``, ``lat`` (WGS84).

        Returns
        -------
        pandas.DataFrame
            Shape ``(len(path), 3)``.
        """
        from routing._frames import frame

        return frame(({"seq": k, "lon": p[0], "lat": p[1]} for k, p in enumerate(self.path)), ("seq", "lon", "lat"))

    def to_gdf(self) -> gpd.GeoDataFrame:
        """:meth:`to_geojson` as a one-row GeoDataFrame: the LineString in lon/lat, EPSG:4326."""
        from routing._frames import geo_frame

        return geo_frame(self.to_geojson())

    def __repr__(self) -> str:
        return (f"<Route {format_eta(self.travel_time_s)}, {self.distance_m / 1000:.2f} km, "
                f"{len(self.path)} points>")


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
    # Per edge, its OSM class as a small code into highway_names (a 1.1M-node network has 2.5M edges:
    # 5 MB of codes against 136 MB of class text, which also made loading slow).
    highway_code: np.ndarray
    highway_names: np.ndarray
    dropped_nodes: int
    source: str
    boundary: shapely.Geometry | None  # metric CRS
    speeds: SpeedModel
    area: shapely.Geometry | None = None  # boundary + tolerance, metric; derived when not given
    tunnel: np.ndarray | None = None  # per edge, True where the source tags a tunnel
    _kdtree: cKDTree | None = field(default=None, init=False, repr=False)
    # The contraction order of the hierarchy (routing.hierarchy): built once, shared by every profile.
    cch: Order | None = field(default=None, repr=False)
    _cch_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # Keyed by (mode factor, class hour factors): hours with equal factors share one matrix.
    profiles: dict[tuple[float, tuple[float, ...]], RoadNetwork] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _segments: _Segments | None = field(default=None, init=False, repr=False)
    _classes: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tunnel is None:
            self.tunnel = np.zeros(len(self.indices), dtype=bool)
        if self.area is None and self.boundary is not None:
            # Simplifying first (10 m, far below the tolerance) makes the buffer 100x faster.
            simple = self.boundary.simplify(10.0)
            self.area = simple.buffer(self.speeds.boundary_tolerance_m, quad_segs=4)
        if self.area is not None:
            shapely.prepare(self.area)
        if self.boundary is not None:
            shapely.prepare(self.boundary)

    def cch_order(self) -> Order:
        """The metric-independent part of the network's contraction hierarchy (:mod:`routing.hierarchy`),
        built on first use (about 6 s at a million nodes) and written with the network cache."""
        with self._cch_lock:
            if self.cch is None:
                from routing.hierarchy import build_order

                n = len(self.osm_ids)
                self.cch = build_order(n, np.repeat(np.arange(n), np.diff(self.indptr)), self.indices)
            return self.cch

    @property
    def kdtree(self) -> cKDTree:
        """KD-tree of the node coordinates (metric), built on first use (0.5 s at a million nodes)."""
        with self.lock:
            if self._kdtree is None:
                self._kdtree = cKDTree(np.column_stack([self.x, self.y]))
            return self._kdtree

    @property
    def highway(self) -> np.ndarray:
        """Per edge, its OSM class name (built from the codes on each call)."""
        return self.highway_names[self.highway_code]

    def edge_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """(unique known road classes, class index per edge), normalised by the speed model."""
        if self._classes is None:
            known = np.array([self.speeds.road_class(h) for h in self.highway_names], dtype=object)
            classes, remap = np.unique(known.astype(str), return_inverse=True)
            self._classes = (classes, remap[self.highway_code])
        return self._classes

    def segments(self) -> _Segments:
        """The undirected road segments with their spatial indexes (built on first use)."""
        with self.lock:
            if self._segments is None:
                self._segments = _Segments.build(self)
            return self._segments


@dataclass
class _Segments:
    """Undirected road segments (one per pair of nodes joined by an edge) for street-level snapping.

    Segment ``s`` joins nodes ``a[s] < b[s]``; ``fwd[s]`` is the CSR index of edge ``a -> b`` and
    ``bwd[s]`` of ``b -> a`` (``-1`` where that direction may not be driven). Geometry is the straight
    line between the nodes (the CSV export has no edge geometry).
    """

    a: np.ndarray
    b: np.ndarray
    fwd: np.ndarray
    bwd: np.ndarray
    street: np.ndarray  # a person can stand beside it (not an excluded class, not a tunnel)
    road_class: np.ndarray  # class name per segment
    lines: np.ndarray  # shapely LineStrings, metric CRS
    tree_all: shapely.STRtree
    tree_street: shapely.STRtree | None
    street_ids: np.ndarray  # segment index of each entry of tree_street
    keys: np.ndarray | None = None  # a * n + b per segment, for index_of (built on first use)
    n: int = 0

    @classmethod
    def build(cls, topo: _Topology) -> _Segments:
        n_edges = len(topo.indices)
        src = np.repeat(np.arange(len(topo.osm_ids)), np.diff(topo.indptr))
        dst = topo.indices.astype(np.int64)
        lo, hi = np.minimum(src, dst), np.maximum(src, dst)
        keys = lo * len(topo.osm_ids) + hi
        uniq, inverse = np.unique(keys, return_inverse=True)
        m = len(uniq)
        a, b = uniq // len(topo.osm_ids), uniq % len(topo.osm_ids)
        fwd = np.full(m, -1, dtype=np.int64)
        bwd = np.full(m, -1, dtype=np.int64)
        edge = np.arange(n_edges)
        is_fwd = src < dst
        fwd[inverse[is_fwd]] = edge[is_fwd]
        bwd[inverse[~is_fwd]] = edge[~is_fwd]
        rep = np.where(fwd >= 0, fwd, bwd)  # one edge standing for the segment's class and tags
        classes, class_idx = topo.edge_classes()
        road_class = classes[class_idx[rep]]
        excluded = np.isin(road_class, list(topo.speeds.call_excluded_classes))
        if topo.speeds.exclude_tunnels:
            tunnel = np.zeros(m, dtype=bool)
            assert topo.tunnel is not None  # filled in by _Topology.__post_init__
            np.logical_or.at(tunnel, inverse, topo.tunnel.astype(bool))  # either direction tagged: a tunnel
            excluded |= tunnel
        lines = shapely.linestrings(np.stack([np.column_stack([topo.x[a], topo.y[a]]),
                                              np.column_stack([topo.x[b], topo.y[b]])], axis=1))
        street_ids = np.flatnonzero(~excluded)
        return cls(a=a, b=b, fwd=fwd, bwd=bwd, street=~excluded, road_class=road_class, lines=lines,
                   tree_all=shapely.STRtree(lines),
                   tree_street=shapely.STRtree(lines[street_ids]) if len(street_ids) else None,
                   street_ids=street_ids)

    def index_of(self, a: int, b: int) -> int:
        """Index of the segment joining nodes ``a < b``, or -1."""
        if self.keys is None:
            self.n = int(max(self.a.max(initial=0), self.b.max(initial=0))) + 1
            self.keys = self.a.astype(np.int64) * self.n + self.b.astype(np.int64)  # sorted, as np.unique made them
        if a >= self.n or b >= self.n:
            return -1
        key = a * self.n + b
        k = int(np.searchsorted(self.keys, key))
        return k if k < len(self.keys) and int(self.keys[k]) == key else -1

    def nearest(self, x: np.ndarray, y: np.ndarray, max_m: float, street: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Nearest segment of each point within ``max_m``: (segment or -1, distance, fraction, fallback)."""
        k = len(x)
        seg = np.full(k, -1, dtype=np.int64)
        dist = np.full(k, np.inf)
        fallback = np.zeros(k, dtype=bool)
        points = shapely.points(x, y)
        if street and self.tree_street is not None:
            (pi, si), d = self.tree_street.query_nearest(points, max_distance=max_m, return_distance=True,
                                                        all_matches=False)
            seg[pi], dist[pi] = self.street_ids[si], d
        rest = np.flatnonzero(seg < 0)
        if len(rest):
            (pi, si), d = self.tree_all.query_nearest(points[rest], max_distance=max_m, return_distance=True,
                                                     all_matches=False)
            seg[rest[pi]], dist[rest[pi]] = si, d
            fallback[rest[pi]] = street & ~self.street[si]
        frac = np.zeros(k)
        ok = seg >= 0
        if ok.any():
            frac[ok] = shapely.line_locate_point(self.lines[seg[ok]], points[ok], normalized=True)
        return seg, dist, np.clip(np.nan_to_num(frac), 0.0, 1.0), fallback


class RoadNetwork:
    """A directed drive network with travel times for one speed profile.

    Build with :func:`load_network` or :func:`network_from_graph`. Node indices are contiguous
    ``0..n_nodes-1``. All travel times are seconds; distances metres.
    """

    def __init__(self, topology: _Topology, mode: str | None, hour: int | None) -> None:
        self._t = topology
        speeds = topology.speeds
        mode_factor = speeds.mode_speed_factor(mode)
        classes, class_idx = topology.edge_classes()
        factor = mode_factor * speeds.hour_factors(classes, hour)[class_idx]
        self.profile: dict[str, Any] = {"mode": mode or speeds.default_mode, "hour": hour,
                                        "hour_source": "none" if hour is None else "hour", "at": None,
                                        "speed_factor": mode_factor}
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

    @property
    def street_nodes(self) -> np.ndarray:
        """Bool per node: it ends a road segment a person can stand beside (see :meth:`snap`).

        Demand and other people-side quantities live on these nodes only; a node touched only by
        expressways, ramps or tunnels has no caller standing at it.
        """
        seg = self._t.segments()
        out = np.zeros(self.n_nodes, dtype=bool)
        out[seg.a[seg.street]] = True
        out[seg.b[seg.street]] = True
        return out

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
        """The same network with travel times for a response mode and a local hour of day (cached).

        ``hour=None`` is the off-peak baseline (every hour factor 1.0). Hour factors apply per group of
        road classes (``[hour_group]`` of the speed model), so fastest routes change with the hour.
        """
        speeds = self._t.speeds
        mode_factor = speeds.mode_speed_factor(mode)
        if hour is not None:
            speeds.hour_factors([], hour)  # validates the hour
            hour = int(hour)
        # Hours whose every class factor is the same (e.g. 0-4 h) share one matrix, and so one ETA cache.
        classes, _ = self._t.edge_classes()
        key = (mode_factor, tuple(speeds.hour_factors(classes, hour).tolist()))
        with self._t.lock:
            cached = self._t.profiles.get(key)
            if cached is None:
                cached = RoadNetwork(self._t, mode, hour)
                self._t.profiles[key] = cached
        label = {"mode": mode or speeds.default_mode, "hour": hour,
                 "hour_source": "none" if hour is None else "hour"}
        if any(cached.profile.get(k) != v for k, v in label.items()) or cached.profile.get("at") is not None:
            return cached._relabel(**label, at=None)
        return cached

    def for_time(self, when: datetime | None = None, *, mode: str | None = None, hour: int | None = None
                 ) -> RoadNetwork:
        """The network's speeds at a decision time: one clock for shifts and speeds.

        Parameters
        ----------
        when
            Decision time (tz-aware; ``None``: now). Its local (America/New_York) hour chooses the
            hour-of-day factors.
        mode
            Response mode (default: the speed model's ``default_mode``).
        hour
            Local hour 0-23 that overrides the one of ``when``.

        Returns
        -------
        RoadNetwork
            Its ``profile`` says ``mode``, ``hour``, ``hour_source`` (``"hour"`` when given, ``"time"``
            when taken from ``when``) and ``at`` (ISO time or None).

        Raises
        ------
        InvalidInput
            Unknown mode, an hour outside 0-23, a time without UTC offset.
        """
        if hour is not None:
            return self.with_profile(mode, hour)._relabel(hour_source="hour",
                                                          at=when.isoformat() if when else None)
        when = when or datetime.now(UTC)
        net = self.with_profile(mode, local_hour(when))
        return net._relabel(hour_source="time", at=when.isoformat())

    def _relabel(self, **profile: Any) -> RoadNetwork:
        # Same speeds under another label: share the arrays (and so the ETA caches).
        twin = object.__new__(RoadNetwork)
        twin.__dict__.update(self.__dict__)
        twin.profile = {**self.profile, **profile}
        return twin

    def profile_text(self) -> str:
        """One line for people: ``non_emergent speeds, 17:00 (from the decision time)``."""
        p = self.profile
        if p.get("hour") is None:
            return f"{p['mode']} speeds, off-peak baseline (no hour)"
        source = {"time": "from the decision time", "hour": "from --hour"}.get(p.get("hour_source") or "", "")
        return f"{p['mode']} speeds, {p['hour']:02d}:00" + (f" ({source})" if source else "")

    # ----------------------------------------------------------------- snapping
    def check_point(self, lat: float, lon: float, field: str = "location") -> None:
        """Raise unless (lat, lon) is a finite coordinate inside the service area."""
        self.snap(lat, lon, field=field)

    def inside_boundary(self, lat: float, lon: float) -> bool | None:
        """Whether a point lies inside the city boundary itself (``None`` when the source has none)."""
        if self._t.boundary is None:
            return None
        x, y = _TO_METRIC.transform(lon, lat)
        return bool(shapely.contains_xy(self._t.boundary, x, y))

    def inside_many(self, lats: np.ndarray, lons: np.ndarray) -> np.ndarray | None:
        """Vectorised :meth:`inside_boundary`: a bool array, or ``None`` when the source has no boundary."""
        if self._t.boundary is None:
            return None
        x, y = _TO_METRIC.transform(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        return np.asarray(shapely.contains_xy(self._t.boundary, x, y), dtype=bool)

    def in_service_area(self, lat: float, lon: float) -> bool:
        """Whether a point would snap (inside the boundary tolerance and near a road)."""
        try:
            self.snap(lat, lon)
        except InvalidInput:
            return False
        return True

    def snap(self, lat: float, lon: float, field: str = "location", *, on: str = "street") -> Snap:
        """Attach a point to the nearest point of an allowed road segment (a phantom node).

        Parameters
        ----------
        lat, lon
            WGS84 degrees.
        field
            Name of the point in error messages.
        on
            ``"street"`` (calls, staging sites, demand): roads a person can stand beside, i.e. not the
            ``[snapping] call_excluded_classes`` of the speed model nor tunnels, unless nothing else lies
            within ``max_snap_m``; ``"any"`` (team positions from AVL): every road, a van can be on I-93.

        Raises
        ------
        InvalidInput
            Non-numeric, non-finite or out-of-range coordinates; an unknown ``on``.
        OutsideServiceArea
            Beyond the boundary tolerance (with a hint when latitude and longitude look swapped), or
            farther than ``max_snap_m`` from any road.
        """
        lat, lon = _validate_latlon(lat, lon, field)
        x, y = _TO_METRIC.transform(lon, lat)
        speeds = self._t.speeds
        if self._t.area is not None and not shapely.contains_xy(self._t.area, x, y):
            raise OutsideServiceArea(self._outside_message(lat, lon, field), field=field)
        snapped = self._snap_xy(np.array([x]), np.array([y]), on)
        if snapped.nodes[0] < 0:
            raise OutsideServiceArea(
                f"{field} ({lat:.6f}, {lon:.6f}) is more than {speeds.max_snap_m:.0f} m from the nearest road",
                field=field,
            )
        return self._full_snaps(np.array([lat]), np.array([lon]), snapped, np.array([0]))[0]

    def _outside_message(self, lat: float, lon: float, field: str) -> str:
        message = (f"{field} ({lat:.6f}, {lon:.6f}) is outside the service area "
                   f"(more than {self._t.speeds.boundary_tolerance_m:.0f} m beyond the city boundary)")
        if abs(lon) <= 90:
            sx, sy = _TO_METRIC.transform(lat, lon)
            if self._t.area is not None and shapely.contains_xy(self._t.area, sx, sy):
                message += f": latitude and longitude swapped? ({lon:.6f}, {lat:.6f}) is inside"
        return message

    def _snap_xy(self, x: np.ndarray, y: np.ndarray, on: str) -> SnapArray:
        if on not in ("street", "any"):
            raise InvalidInput(f"on must be 'street' or 'any', got {on!r}", field="on")
        seg = self._t.segments()
        segment, dist, frac, fallback = seg.nearest(x, y, self._t.speeds.max_snap_m, on == "street")
        ok = segment >= 0
        nodes = np.full(len(x), -1, dtype=np.int64)
        nodes[ok] = np.where(frac[ok] <= 0.5, seg.a[segment[ok]], seg.b[segment[ok]])
        dist = np.where(ok, dist, np.nan)
        return SnapArray(nodes, dist, self._t.speeds.off_network_time_s(dist), segment, frac, fallback)

    def _projection_xy(self, snap: Snap) -> tuple[float, float]:
        if snap.segment < 0:
            return float(self.x[snap.node]), float(self.y[snap.node])
        seg = self._t.segments()
        a, b, f = seg.a[snap.segment], seg.b[snap.segment], snap.fraction
        return (float(self.x[a] + (self.x[b] - self.x[a]) * f), float(self.y[a] + (self.y[b] - self.y[a]) * f))

    def snap_many(self, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray, *,
                  strict: bool = True, on: str = "street") -> SnapArray:
        """Snap many points at once (see :meth:`snap`); with ``strict=False`` rejected points get node ``-1``."""
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
        segment = np.full(lats.shape, -1, dtype=np.int64)
        out = SnapArray(np.full(lats.shape, -1, dtype=np.int64), np.full(lats.shape, np.nan),
                        np.full(lats.shape, np.nan), segment, np.zeros(lats.shape), np.zeros(lats.shape, dtype=bool))
        if valid.any():
            got = self._snap_xy(x[valid], y[valid], on)
            for name in ("nodes", "distance_m", "time_s", "segment", "fraction", "street_fallback"):
                getattr(out, name)[valid] = getattr(got, name)
        ok = out.nodes >= 0
        if strict and not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            self.snap(float(lats[bad]), float(lons[bad]), field=f"point {bad}", on=on)  # raises the precise error
        segment[~ok] = -1
        return out

    def snaps(self, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray, *,
              on: str = "street") -> list[Snap | None]:
        """Full :class:`Snap` objects for many points at once, as :meth:`snap` gives them one by one.

        ``None`` where :meth:`snap` would raise (call :meth:`snap` on that point for the message). Built
        for callers that know many points in advance (a simulation's calls): the projections, the
        boundary test and the transforms run vectorised, a few microseconds per point.
        """
        lats = np.asarray(lats, dtype=float)
        lons = np.asarray(lons, dtype=float)
        got = self.snap_many(lats, lons, strict=False, on=on)
        ok = np.flatnonzero(got.nodes >= 0)
        out: list[Snap | None] = [None] * len(lats)
        for k, snap in zip(ok.tolist(), self._full_snaps(lats, lons, got, ok), strict=True):
            out[k] = snap
        return out

    def _full_snaps(self, lats: np.ndarray, lons: np.ndarray, got: SnapArray, ok: np.ndarray) -> list[Snap]:
        """The :class:`Snap` of points ``ok`` of ``got``: road class, the city-line test and the road point
        in WGS84 added to what :meth:`_snap_xy` found (the one place both :meth:`snap` and :meth:`snaps`
        build them)."""
        if not len(ok):
            return []
        seg = self._t.segments()
        segment = got.segment[ok]  # type: ignore[index]
        fraction = got.fraction[ok]  # type: ignore[index]
        on_seg = segment >= 0
        a, b = seg.a[np.where(on_seg, segment, 0)], seg.b[np.where(on_seg, segment, 0)]
        node = got.nodes[ok]
        px = np.where(on_seg, self.x[a] + (self.x[b] - self.x[a]) * fraction, self.x[node])
        py = np.where(on_seg, self.y[a] + (self.y[b] - self.y[a]) * fraction, self.y[node])
        road_lon, road_lat = _TO_WGS84.transform(px, py)
        within = self.inside_many(lats[ok], lons[ok])
        inside: list[bool | None] = [None] * len(ok) if within is None else within.tolist()
        return [Snap(int(node[m]), float(got.distance_m[k]), float(got.time_s[k]), int(segment[m]),
                     float(fraction[m]), str(seg.road_class[int(segment[m])]),
                     bool(got.street_fallback[k]), inside[m], float(road_lat[m]), float(road_lon[m]))  # type: ignore[index]
                for m, k in enumerate(ok.tolist())]

    def snap_on_edge(self, a: int, b: int, fraction: float) -> Snap:
        """The :class:`Snap` of a vehicle known to be on the road from node ``a`` to node ``b``.

        ``fraction`` (0 at ``a``, 1 at ``b``) is how far along it is. What snapping its position would
        give, without the search: a simulation moving a team along its route knows where it is.

        Raises
        ------
        InvalidInput
            When no road segment joins ``a`` and ``b``.
        """
        seg = self._t.segments()
        lo, hi = (a, b) if a < b else (b, a)
        s = seg.index_of(int(lo), int(hi))
        if s < 0:
            raise InvalidInput(f"no road segment joins nodes {a} and {b}", field="edge")
        f = min(max(float(fraction), 0.0), 1.0)
        f = f if a == lo else 1.0 - f  # along the segment's own direction, a[s] -> b[s]
        px = float(self.x[lo] + (self.x[hi] - self.x[lo]) * f)
        py = float(self.y[lo] + (self.y[hi] - self.y[lo]) * f)
        road_lon, road_lat = _TO_WGS84.transform(px, py)
        return Snap(int(lo if f <= 0.5 else hi), 0.0, 0.0, s, f, str(seg.road_class[s]), False, None,
                    float(road_lat), float(road_lon))

    # ----------------------------------------------------------------- phantom nodes
    def snap_exits(self, snap: Snap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where a vehicle at ``snap`` can join the network: (nodes, seconds, metres) along its segment.

        Up to two entries: the segment's far end in each direction it may be driven. A point attached to
        a node (``segment == -1``) leaves from that node at no cost.
        """
        return self._phantom_legs(snap, leaving=True)

    def snap_entries(self, snap: Snap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From which nodes ``snap`` is reached: (nodes, seconds, metres) from each node to the point."""
        return self._phantom_legs(snap, leaving=False)

    def _phantom_legs(self, snap: Snap, *, leaving: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if snap.segment < 0:
            return np.array([snap.node], dtype=np.int64), np.zeros(1), np.zeros(1)
        seg = self._t.segments()
        s, f = snap.segment, snap.fraction
        nodes, times, dists = [], [], []
        fe, be = int(seg.fwd[s]), int(seg.bwd[s])
        # Edge a->b covers fraction f..1 when leaving (towards b) and 0..f when arriving (from a).
        for edge, node_leave, node_arrive, part_leave, part_arrive in (
                (fe, seg.b[s], seg.a[s], 1.0 - f, f), (be, seg.a[s], seg.b[s], f, 1.0 - f)):
            if edge < 0:
                continue
            part = part_leave if leaving else part_arrive
            nodes.append(int(node_leave if leaving else node_arrive))
            times.append(part * float(self._edge_time_s[edge]))
            dists.append(part * float(self._t.length_m[edge]))
        return np.array(nodes, dtype=np.int64), np.array(times), np.array(dists)

    def same_segment(self, origin: Snap, destination: Snap) -> tuple[float, float]:
        """(seconds, metres) driving along one segment from ``origin`` to ``destination``; inf if not possible."""
        if origin.segment < 0 or origin.segment != destination.segment:
            return math.inf, math.nan
        seg = self._t.segments()
        s, g, f = origin.segment, origin.fraction, destination.fraction
        best = (math.inf, math.nan)
        if seg.fwd[s] >= 0 and g <= f:
            e = int(seg.fwd[s])
            best = min(best, ((f - g) * float(self._edge_time_s[e]), (f - g) * float(self._t.length_m[e])))
        if seg.bwd[s] >= 0 and g >= f:
            e = int(seg.bwd[s])
            best = min(best, ((g - f) * float(self._edge_time_s[e]), (g - f) * float(self._t.length_m[e])))
        return best

    def phantom_time(self, origin: Snap, destination: Snap, times_from: dict[int, np.ndarray] | None = None
                     ) -> tuple[float, int, int]:
        """Network seconds from one snapped point to another, and the (exit, entry) nodes used.

        ``(-1, -1)`` when the best way stays on the shared segment. Off-network legs not included.
        """
        x_nodes, x_t, _ = self.snap_exits(origin)
        y_nodes, y_t, _ = self.snap_entries(destination)
        best, bx, by = self.same_segment(origin, destination)[0], -1, -1
        for x, tx in zip(x_nodes.tolist(), x_t.tolist(), strict=True):
            row = times_from[x] if times_from and x in times_from else self.travel_times_from(x)
            for y, ty in zip(y_nodes.tolist(), y_t.tolist(), strict=True):
                total = tx + float(row[y]) + ty
                if total < best:
                    best, bx, by = total, x, y
        return best, bx, by

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

    def eta(self, origin: tuple[float, float], destination: tuple[float, float], *, origin_on: str = "street"
            ) -> float:
        """Seconds from one (lat, lon) to another, off-network legs and partial segments included."""
        a = self.snap(*origin, field="origin", on=origin_on)
        b = self.snap(*destination, field="destination")
        return a.time_s + self.phantom_time(a, b)[0] + b.time_s

    def route(self, origin: tuple[float, float], destination: tuple[float, float], *, origin_on: str = "street"
              ) -> Route:
        """Fastest route between two (lat, lon) points (street-level snapping), with geometry and length."""
        a = self.snap(*origin, field="origin", on=origin_on)
        b = self.snap(*destination, field="destination")
        network_time, x, y = self.phantom_time(a, b)
        if not math.isfinite(network_time):
            raise InvalidInput("no road path from origin to destination")
        path = [[float(origin[1]), float(origin[0])], [a.road_lon, a.road_lat]]
        if x < 0:  # along the shared segment only
            nodes: list[int] = []
            length = self.same_segment(a, b)[1]
        else:
            nodes, _ = self.route_nodes(x, y)
            exits, entries = self.snap_exits(a), self.snap_entries(b)
            length = (float(exits[2][list(exits[0]).index(x)]) + self._path_length(nodes)
                      + float(entries[2][list(entries[0]).index(y)]))
            path += [[float(self.lon[n]), float(self.lat[n])] for n in nodes]
        path += [[b.road_lon, b.road_lat], [float(destination[1]), float(destination[0])]]
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
        harbour or a park, and costs a fraction of a second even citywide. The search stops at the
        budget (``limit``): the cost follows the area reached, not the size of the network.
        """
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise InvalidInput(f"travel-time budget must be a positive number of seconds, got {seconds!r}",
                               field="seconds")
        start = self.snap(lat, lon)
        x_nodes, x_t, _ = self.snap_exits(start)
        # A node within the budget is within it on the network alone (the legs only add): settling up
        # to the budget is enough, and the nodes left at inf are outside the area as before.
        network_times = dijkstra(self._csr, directed=True, indices=self._check_nodes(x_nodes, many=True),
                                 limit=float(np.nextafter(float(seconds), math.inf)))
        times = (network_times + x_t[:, None]).min(axis=0) + start.time_s
        x, y = _TO_METRIC.transform(lon, lat)
        px, py = self._projection_xy(start)
        # The off-network leg belongs to the area too: sample it like a street.
        frac = np.linspace(0, 1, int(start.distance_m // (resolution_m / 2)) + 2)
        leg = np.column_stack([x + (px - x) * frac, y + (py - y) * frac])
        return self.isochrone_from_times(times, seconds, resolution_m=resolution_m, extra_xy=leg)

    def isochrone_from_times(self, times: np.ndarray, seconds: float, *, resolution_m: float = 50.0,
                             extra_xy: np.ndarray | None = None) -> shapely.Geometry:
        """Polygon (lon/lat) of the grid cells crossed by streets whose both ends have ``times <= seconds``."""
        # The reached streets, in CSR order, from the reached nodes' own edges: a small area of a large
        # network costs only its own edges.
        near = np.flatnonzero(times <= seconds)
        indptr = self._t.indptr
        deg = indptr[near + 1] - indptr[near]
        out_edges = np.repeat(indptr[near] - (np.cumsum(deg) - deg), deg) + np.arange(int(deg.sum()))
        both = times[self._t.indices[out_edges]] <= seconds
        reached = out_edges[both]
        src_r, dst_r = np.repeat(near, deg)[both], self._t.indices[reached]
        # Sample every reached street at half the cell size so that no cell along it is skipped.
        samples = np.maximum(1, np.ceil(self._t.length_m[reached] / (resolution_m / 2)).astype(np.int64))
        edge = np.repeat(np.arange(len(reached)), samples)
        frac = (np.arange(int(samples.sum())) - np.repeat(np.cumsum(samples) - samples, samples)) / np.repeat(
            samples, samples)
        s, d = src_r[edge], dst_r[edge]
        xs = np.concatenate([self.x[s] * (1 - frac) + self.x[d] * frac, self.x[near]])
        ys = np.concatenate([self.y[s] * (1 - frac) + self.y[d] * frac, self.y[near]])
        if extra_xy is not None:
            xs, ys = np.concatenate([xs, extra_xy[:, 0]]), np.concatenate([ys, extra_xy[:, 1]])
        if len(xs) == 0:
            return shapely.Polygon()
        cells = np.unique(np.floor(np.column_stack([xs, ys]) / resolution_m).astype(np.int64), axis=0)
        boxes = shapely.box(cells[:, 0] * resolution_m, cells[:, 1] * resolution_m,
                            (cells[:, 0] + 1) * resolution_m, (cells[:, 1] + 1) * resolution_m)
        geom = shapely.coverage_union_all(boxes).simplify(resolution_m / 5)
        return shapely.transform(geom, _metric_to_lonlat_coords)

    def to_networkx(self) -> nx.MultiDiGraph:
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
                    speeds: SpeedModel, source: str, boundary: shapely.Geometry | None,
                    tunnel: np.ndarray | None = None) -> _Topology:
    """Arrays -> largest strongly connected component in CSR form, parallel edges reduced to the fastest.

    ``tunnel`` (bool per edge, optional) marks edges a caller cannot stand beside (see ``[snapping]``).
    """
    n = len(osm_ids)
    length_m = np.asarray(length_m, dtype=float)
    if not np.isfinite(length_m).all() or (length_m < 0).any():
        raise InvalidInput(f"{source}: edge lengths must be finite and non-negative")
    keep = src != dst  # self-loops never lie on a shortest path
    tunnel = np.zeros(len(src), dtype=bool) if tunnel is None else np.asarray(tunnel, dtype=bool)
    src, dst, length_m, tunnel = src[keep], dst[keep], length_m[keep], tunnel[keep]
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
    length_m, base_time, highway, tunnel = length_m[edge_ok], base_time[edge_ok], highway[edge_ok], tunnel[edge_ok]

    # Parallel edges: keep the fastest of each (u, v); sort by (u, v, time) and take the first.
    order = np.lexsort((base_time, dst, src))
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[order][1:] != src[order][:-1]) | (dst[order][1:] != dst[order][:-1])
    pick = order[first]
    src, dst, length_m, base_time, highway, tunnel = (src[pick], dst[pick], length_m[pick], base_time[pick],
                                                      highway[pick], tunnel[pick])

    m = int(in_scc.sum())
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=m), out=indptr[1:])
    lat_k, lon_k = np.asarray(lat, float)[in_scc], np.asarray(lon, float)[in_scc]
    x, y = _TO_METRIC.transform(lon_k, lat_k)
    names, codes = highway_codes(highway)
    return _Topology(
        osm_ids=np.asarray(osm_ids, dtype=np.int64)[in_scc], lat=lat_k, lon=lon_k,
        x=np.asarray(x), y=np.asarray(y), indptr=indptr, indices=dst.astype(np.int32),
        length_m=length_m, base_time_s=base_time, highway_code=codes, highway_names=names,
        dropped_nodes=int(n - m), source=source, boundary=boundary, speeds=speeds, tunnel=tunnel,
    )


def highway_codes(highway: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``highway_names``, ``highway_code``: uint16 per edge) for :class:`_Topology`, from class names."""
    names, code = np.unique(np.asarray(highway).astype(str), return_inverse=True)
    return names, code.astype(np.uint16)


def network_from_graph(graph: nx.MultiDiGraph | nx.DiGraph, *, speeds: SpeedModel | None = None, source: str = "graph",
                       boundary_lonlat: shapely.Geometry | None = None,
                       drive_filter: DriveFilter | None = None) -> RoadNetwork:
    """Build a :class:`RoadNetwork` from an osmnx-style ``networkx`` (Multi)DiGraph.

    Parameters
    ----------
    graph
        Nodes need ``x`` (lon) and ``y`` (lat); edges need ``length`` (m) and may have ``highway``,
        ``maxspeed`` (OSM tag text such as ``"25 mph"``; a bare number is km/h), ``tunnel`` and ``name``.
        Any of these may be a list, as osmnx leaves them on merged edges (and ``ox.load_graphml`` reads
        them back): each is reduced by :func:`routing.osm.resolve_edge_attributes`, the one rule per
        attribute shared by every source.
    speeds
        The travel-time model (default ``data/speeds.toml``).
    source
        Label kept in ``network.source`` and error messages.
    boundary_lonlat
        City boundary or service-area polygon in lon/lat; None: no service-area check.
    drive_filter
        Edges of its ``excluded`` classes (any part of a merged edge) are dropped, e.g. the ``busway``
        edges an osmnx "drive" download keeps. Default: ``[osm_drive_filter]`` of ``data/speeds.toml``.

    Raises
    ------
    InvalidInput
        No nodes, no edges, a node without ``x``/``y``, an edge without a numeric ``length``.
    """
    speeds = speeds or load_speeds()
    drive = drive_filter or load_drive_filter()
    node_list = list(graph.nodes)
    if not node_list:
        raise InvalidInput(f"{source}: the graph has no nodes")
    position = {node: i for i, node in enumerate(node_list)}
    try:
        lon = np.array([float(graph.nodes[v]["x"]) for v in node_list])
        lat = np.array([float(graph.nodes[v]["y"]) for v in node_list])
    except KeyError:
        raise InvalidInput(f"{source}: every node needs 'x' (lon) and 'y' (lat)") from None
    except (TypeError, ValueError):
        raise InvalidInput(f"{source}: node 'x' / 'y' must be numbers (lon / lat)") from None
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise InvalidInput(f"{source}: node coordinates must be finite")
    osm_ids = np.array([int(graph.nodes[v].get("osmid", v)) if _is_int(graph.nodes[v].get("osmid", v)) else i
                        for i, v in enumerate(node_list)], dtype=np.int64)
    src, dst, length, highway, maxspeed, tunnel = [], [], [], [], [], []
    for u, v, data in graph.edges(data=True):
        if "length" not in data:
            raise InvalidInput(f"{source}: edge {u}->{v} has no 'length'")
        if drive.is_excluded(data.get("highway", "other")):
            continue
        attrs = resolve_edge_attributes(data, drive)
        try:
            length.append(float(data["length"]))
        except (TypeError, ValueError):
            raise InvalidInput(f"{source}: edge {u}->{v} has a non-numeric 'length'") from None
        src.append(position[u])
        dst.append(position[v])
        highway.append(attrs["highway"])
        maxspeed.append(parse_maxspeed(attrs["maxspeed"], bare_unit="kph"))
        tunnel.append(attrs["tunnel"])
    if not src:
        raise InvalidInput(f"{source}: the graph has no drivable edges")
    boundary = None
    if boundary_lonlat is not None:
        boundary = shapely.transform(boundary_lonlat, _lonlat_to_metric_coords)
    topo = _build_topology(osm_ids, lat, lon, np.array(src), np.array(dst), np.array(length),
                           np.array(highway, dtype=object), np.array(maxspeed, dtype=float), speeds=speeds,
                           source=source, boundary=boundary, tunnel=np.array(tunnel, dtype=bool))
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
    network = RoadNetwork(topo, None, None)
    classes, _ = topo.edge_classes()
    topo.profiles[(network.profile["speed_factor"], tuple(topo.speeds.hour_factors(classes, None).tolist()))] = network
    return network


# --------------------------------------------------------------------------- sources
# Bump when a source is read differently (the drive filter, the list rules): old cached arrays are then
# never reused, whatever the cache format version says.
_SOURCES_VERSION = 2


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


def read_boundary_file(path: str | os.PathLike[str]) -> shapely.Geometry:
    """A service-area boundary (lon/lat) from any file pyogrio reads, or a gzipped bare ``.shp``.

    GeoJSON, shapefile, GeoPackage, ...: the union of every polygon in it, reprojected to WGS84 (a file
    without a CRS is taken as WGS84, as the bare shapefiles of the shared data are).

    Raises
    ------
    DataMissing
        The file does not exist.
    InvalidInput
        It cannot be read, or holds no polygon.
    """
    import pyogrio

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataMissing(f"boundary file not found: {path}")
    try:
        if path.name.lower().endswith(".shp.gz"):
            geometry = _read_bare_shapefile(path)
        else:
            if path.suffix.lower() == ".shp":
                pyogrio.set_gdal_config_options({"SHAPE_RESTORE_SHX": "YES"})  # tolerate a missing .shx
            frame = pyogrio.read_dataframe(path)
            if frame.crs is not None:
                frame = frame.to_crs(4326)
            geometry = shapely.make_valid(shapely.union_all(frame.geometry.values))
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.GeometryError,
            pyogrio.errors.CRSError, pyogrio.errors.FieldError, pyogrio.errors.FeatureError, OSError,
            EOFError) as exc:
        raise InvalidInput(f"{path}: not a readable boundary file ({str(exc).splitlines()[0]})") from None
    polygons = shapely.get_parts(geometry)
    polygons = polygons[shapely.get_type_id(polygons) >= 3]  # Polygon / MultiPolygon; lines have no inside
    if len(polygons) == 0 or shapely.union_all(polygons).area <= 0:
        raise InvalidInput(f"{path}: the boundary file holds no polygon")
    return shapely.union_all(polygons)


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


def _extent(lon: np.ndarray, lat: np.ndarray) -> shapely.Geometry | None:
    """The network's own extent (convex hull of its nodes, lon/lat): the service area of a source with
    no city boundary, once ``_Topology`` buffers it by the boundary tolerance."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    return shapely.convex_hull(shapely.multipoints(np.column_stack([lon[ok], lat[ok]])))


def _graph_extent(graph: nx.MultiDiGraph) -> shapely.Geometry | None:
    try:
        coords = np.array([(float(d["x"]), float(d["y"])) for _, d in graph.nodes(data=True)], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None  # network_from_graph reports the bad node
    return _extent(coords[:, 0], coords[:, 1]) if len(coords) else None


def _load_csv(directory: Path, speeds: SpeedModel, drive: DriveFilter | None = None,
              boundary_lonlat: shapely.Geometry | None = None) -> _Topology:
    """The osmnx CSV export (see ``SOURCES.md``) as a topology.

    The export has no access tags, so the drive filter can only act on the road class: edges of an
    ``excluded`` class are dropped (in Boston: the 26 ``busway`` edges, bus lanes a van may not use in
    non-emergent mode, and one ``emergency_bay``). List-valued classes (``"['trunk', 'motorway']"``) take
    the most important class, as for every other source. The boundary is ``boundary_lonlat`` if given,
    else the city boundary next to a ``boston/`` export, else the network's own extent.
    """
    import ast

    import pandas as pd  # only the CSV source needs it; keeps a cached start light

    drive = drive or load_drive_filter()
    nodes_path = _first_existing(directory, "boston_nodes.csv.gz", "boston_nodes.csv")
    edges_path = _first_existing(directory, "boston_edges.csv.gz", "boston_edges.csv")
    try:
        nodes = pd.read_csv(nodes_path, usecols=["idx", "osm_idx", "lat", "lon"])
        edges = pd.read_csv(edges_path, usecols=["src", "dst", "length", "highway", "maxspeed"])
    except (ValueError, pd.errors.ParserError, EOFError, OSError) as exc:
        raise InvalidInput(f"{directory}: not an osmnx CSV export: {exc}") from None

    def classes(text: str) -> Any:
        if text.startswith("["):
            try:
                return ast.literal_eval(text)
            except (SyntaxError, ValueError):
                pass
        return text

    # Each distinct class text once (a handful of values over millions of edges at statewide size).
    texts, code = np.unique(edges["highway"].astype(str).to_numpy(), return_inverse=True)
    raw = [classes(h) for h in texts]
    keep = ~np.array([drive.is_excluded(h) for h in raw], dtype=bool)[code]
    edges = edges[keep]
    highway = np.array([most_important_class(h, drive) for h in raw], dtype=object)[code[keep]]
    index_of = pd.Series(np.arange(len(nodes)), index=nodes["idx"].to_numpy())
    try:
        src = index_of.loc[edges["src"].to_numpy()].to_numpy()
        dst = index_of.loc[edges["dst"].to_numpy()].to_numpy()
    except KeyError as exc:
        raise InvalidInput(f"{edges_path}: edge refers to unknown node idx {exc}") from None
    unit_mph = speeds.csv_maxspeed_unit == "mph"
    maxspeed = edges["maxspeed"].to_numpy(dtype=float) * (1.0 if unit_mph else 0.621371)
    if boundary_lonlat is None and directory.name == "boston":
        boundary_lonlat = read_boundary(directory.parent)
    if boundary_lonlat is None:
        boundary_lonlat = _extent(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    boundary = shapely.transform(boundary_lonlat, _lonlat_to_metric_coords) if boundary_lonlat else None
    return _build_topology(
        nodes["osm_idx"].to_numpy(), nodes["lat"].to_numpy(), nodes["lon"].to_numpy(), src, dst,
        edges["length"].to_numpy(dtype=float), highway, maxspeed,
        speeds=speeds, source=f"csv:{directory}", boundary=boundary,
    )


def _first_existing(directory: Path, *names: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DataMissing(f"{directory}: none of {', '.join(names)} found")


def _graph_from_file(path: Path, drive: DriveFilter | None = None) -> nx.MultiDiGraph:
    """An osmnx-style graph from an OSM XML / PBF extract (drive-filtered, simplified) or a GraphML file.

    Raises
    ------
    InvalidInput
        Unknown suffix, or a file that is empty, truncated or not what its suffix says.
    DataMissing
        A PBF file without pyosmium installed.
    """
    kind = osm_file_kind(path)
    if kind != "graphml":
        return graph_from_osm_file(path, drive)
    from xml.etree.ElementTree import ParseError

    import networkx as nx
    import osmnx as ox

    try:
        return ox.load_graphml(path)
    except (ParseError, nx.NetworkXException, SyntaxError, KeyError, TypeError, ValueError, IndexError) as exc:
        # networkx raises bare parser / key errors on a truncated or foreign file
        raise InvalidInput(f"{path}: not a readable GraphML network ({type(exc).__name__}: "
                           f"{one_line(exc)})") from None


def _download_online(drive: DriveFilter | None = None) -> tuple[Path, Path]:
    """Download Boston's drive network once with osmnx; keep it as GraphML (and the boundary) in the cache.

    The Overpass query carries the drive filter (classes, access values, no reversible ways), so the
    filtering happens before osmnx simplifies, as for a file. It cannot express OSM's access hierarchy
    (``access=no`` + ``motorcar=yes``), so such a way is left out: stricter than a file, never looser.
    The file name carries the filter's digest: a changed filter downloads again.
    """
    import osmnx as ox

    drive = drive or load_drive_filter()
    target = cache_dir() / f"boston-online-{drive.digest}.graphml"
    boundary_path = target.with_suffix(".boundary.wkt")
    if not (target.exists() and boundary_path.exists()):
        closed = "|".join(sorted(drive.closed_access))
        custom_filter = (f'["highway"~"^({"|".join(drive.drivable)})$"]["area"!~"yes"]["oneway"!~"^reversible$"]'
                         + "".join(f'["{key}"!~"^({closed})$"]' for key in ACCESS_KEYS))
        graph = ox.graph_from_place(ONLINE_PLACE, custom_filter=custom_filter, simplify=True)
        boundary = ox.geocode_to_gdf(ONLINE_PLACE).geometry.iloc[0]
        tmp = boundary_path.with_name(f".{boundary_path.name}.{os.getpid()}.tmp")
        tmp.write_text(boundary.wkt)
        tmp.replace(boundary_path)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.graphml")
        ox.save_graphml(graph, tmp)
        tmp.replace(target)  # written last: its presence means the download is complete
    return target, boundary_path


def _file_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- cache
_ARRAYS = ("osm_ids", "lat", "lon", "x", "y", "indptr", "indices", "length_m", "base_time_s", "highway_code",
           "highway_names", "tunnel")


def _save_cache(topo: _Topology, path: Path) -> None:
    meta = {"dropped_nodes": topo.dropped_nodes, "source": topo.source, "version": _CACHE_VERSION}
    boundary = shapely.to_wkb(topo.boundary) if topo.boundary is not None else b""
    area = shapely.to_wkb(topo.area) if topo.area is not None else b""
    meta["tolerance_m"] = topo.speeds.boundary_tolerance_m
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        arrays = {name: getattr(topo, name) for name in _ARRAYS}
        if topo.cch is not None:  # the hierarchy's order, when built: six seconds saved at a million nodes
            arrays.update(cch_node=topo.cch.node, cch_up_ptr=topo.cch.up_ptr, cch_up_idx=topo.cch.up_idx)
        np.savez(fh, meta=np.array(json.dumps(meta)), boundary=np.frombuffer(boundary, dtype=np.uint8),
                 area=np.frombuffer(area, dtype=np.uint8), **arrays)
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
            cch = None
            if "cch_node" in data.files:
                from routing.hierarchy import Order

                node = data["cch_node"]
                rank = np.empty_like(node)
                rank[node] = np.arange(len(node), dtype=node.dtype)
                cch = Order(rank=rank, node=node, up_ptr=data["cch_up_ptr"], up_idx=data["cch_up_idx"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # unreadable or old cache: rebuild
    return _Topology(**arrays, dropped_nodes=int(meta["dropped_nodes"]), source=meta["source"],
                     boundary=shapely.from_wkb(wkb) if wkb else None, speeds=speeds,
                     area=shapely.from_wkb(area) if area else None, cch=cch)


# --------------------------------------------------------------------------- public loader
_LOADED: dict[str, RoadNetwork] = {}
_LOADED_LOCK = threading.Lock()


def load_network(data_dir: str | os.PathLike[str] | None = None, *, source: str | os.PathLike[str] | None = None,
                 speeds: str | os.PathLike[str] | SpeedModel | None = None, use_cache: bool = True,
                 stats: dict[str, Any] | None = None,
                 boundary: str | os.PathLike[str] | None = None,
                 progress: Callable[[float, str], None] | None = None) -> RoadNetwork:
    """Load (or build and cache) the road network.

    Parameters
    ----------
    data_dir
        Real-data directory; its ``boston/`` CSV export is the default source. Falls back to
        ``$CRISIS_DISPATCH_DATA``.
    source
        Instead of the data directory: a CSV export directory, an OSM XML (``.osm``, ``.xml``,
        ``.osm.bz2``, ``.xml.bz2``) or PBF (``.osm.pbf``, ``.pbf``; needs pyosmium) extract, an osmnx
        ``.graphml`` file, or ``"online"`` (osmnx download of Boston, cached; needs internet once).
        Every source goes through the same drive filter and list rules (:mod:`routing.osm`).
    speeds
        A speeds TOML path or a :class:`SpeedModel` (default ``data/speeds.toml``). Its
        ``[osm_drive_filter]`` table, if any, replaces the default drive filter (a SpeedModel: default).
    use_cache
        Read and write the prepared-array cache.
    stats
        If given, filled with ``{"from_cache": bool, "load_s": float}``.
    boundary
        A polygon file (GeoJSON, shapefile, anything pyogrio reads, or a gzipped bare ``.shp``) giving the
        service area. Default: Boston's boundary for the Boston CSV export and ``online``; for any other
        source the network's own extent (the convex hull of its nodes), both widened by the speed
        model's boundary tolerance.
    progress
        Called as ``progress(fraction, label)`` at the steps of a build from source (read and prepare,
        cache written; the last call 1.0), for a progress bar. Not called when the cache answers.

    Returns
    -------
    RoadNetwork

    Raises
    ------
    DataMissing
        No source was given and ``$CRISIS_DISPATCH_DATA`` is unset, or a file is missing.
    InvalidInput
        A source or boundary file that cannot be read (empty, truncated, not what its suffix says).
    """
    started = time.perf_counter()
    model = speeds if isinstance(speeds, SpeedModel) else load_speeds(speeds)
    drive = load_drive_filter(None if isinstance(speeds, SpeedModel) else speeds)
    kind, path = _resolve_source(data_dir, source)
    boundary_path = Path(boundary).expanduser() if boundary is not None else None
    if boundary_path is not None and not boundary_path.is_file():
        raise DataMissing(f"boundary file not found: {boundary_path}")
    online_boundary = None
    if kind == "online":
        path, online_boundary = _download_online(drive)
        kind = "graphml"
    inputs = sorted(path.glob("boston_*.csv*")) if kind == "csv" else [path]
    extra = [path / "City_of_Boston_Boundary.shp.gz"] if kind == "csv" else []
    extra += [p for p in (boundary_path, online_boundary) if p is not None]
    key = hashlib.sha256("|".join([str(_CACHE_VERSION), str(_SOURCES_VERSION), model.digest, drive.digest, kind,
                                   "boundary" if boundary_path else "-"]
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
        label = f"network build ({kind})"
        if progress is not None:
            progress(0.0, label)
        boundary_lonlat = read_boundary_file(boundary_path) if boundary_path is not None else None
        if kind == "csv":
            topo = _load_csv(path, model, drive, boundary_lonlat)
        else:
            graph = _graph_from_file(path, drive)
            if boundary_lonlat is None and online_boundary is not None and online_boundary.exists():
                boundary_lonlat = shapely.from_wkt(online_boundary.read_text())
            if boundary_lonlat is None:
                boundary_lonlat = _graph_extent(graph)
            topo = network_from_graph(graph, speeds=model, source=f"{kind}:{path}", boundary_lonlat=boundary_lonlat,
                                      drive_filter=drive)._t
        if progress is not None:  # writing the cache is the short last step
            progress(0.9, label)
        if use_cache:
            topo.cch_order()  # the hierarchy's order goes into the cache with the network (Boston: 0.1 s)
            _save_cache(topo, cache_file)
        if progress is not None:
            progress(1.0, label)
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


def _resolve_source(data_dir: str | os.PathLike[str] | None, source: str | os.PathLike[str] | None
                    ) -> tuple[str, Path]:
    if source is not None and str(source) == "online":
        return "online", Path()
    if source is not None:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataMissing(f"network source not found: {path}")
        if path.is_dir():
            return "csv", (path / "boston") if (path / "boston").is_dir() else path
        return osm_file_kind(path), path  # "osm", "pbf" or "graphml"; InvalidInput for another suffix
    directory = resolve_data_dir(data_dir)
    if directory is None:
        raise DataMissing("no road data: pass --data DIR, set CRISIS_DISPATCH_DATA, or use --source online "
                          "to download Boston from OpenStreetMap")
    boston = directory / "boston"
    if not boston.is_dir():
        raise DataMissing(f"{directory}: no 'boston' folder with the osmnx CSV export")
    return "csv", boston
