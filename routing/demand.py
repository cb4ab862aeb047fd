"""Demand for crisis response: expected mental-health calls per road-network node and per neighborhood.

Method (default surface)
------------------------
1. **Where.** The spatial distribution comes from one source only: the mental-health-proxy incidents of
   the *citywide* BPD incident file of 2023-01-01 .. 2023-03-17 (``source_file == "citywide_2023Q1"`` in
   ``boston-context/incidents_mh_proxy_points.csv.gz``, 3,004 geocoded rows). It is the only file that
   covers all 12 districts over one period completely; the others cover some districts only or are
   samples of unknown design, and SOURCES.md warns against computing rates across them, so they are
   not pooled (pooling would over-weight Mattapan, Roxbury, Brighton and Hyde Park, which have
   extra years of district-only data).
2. **Snapping.** Each incident is attached to its nearest network node
   (``RoadNetwork.snap_many(..., strict=False)``); points outside the service area or too far from a
   road are dropped and counted (``points_dropped``).
3. **Smoothing.** 3,004 points over ~11,000 nodes is sparse, and next year's calls will not fall on
   this winter's exact addresses, so each incident is spread over the nodes within ``3 * bandwidth_m``
   with a Gaussian kernel (default bandwidth 250 m, about two city blocks; an assumption, set 0 to keep
   the raw snapped counts). Each incident still contributes exactly one unit.
4. **Scale.** The unit counts are scaled to a stated annual total: by default 10,000 mental-health 911
   calls a year (">10,000" in 2020, City of Boston press release 2021-08-05, ``published_figures.csv``).
   Node weights are then expected calls per year.
5. **Neighborhoods.** Every node belongs to the neighborhood polygon that contains it (nodes just
   outside every polygon, within 50 m of the boundary, to the nearest one); neighborhood demand is the
   sum of its nodes' weights.

Limits
------
- These are **police incident reports, not 911 calls**: the proxy classes (INVESTIGATE PERSON, SICK
  ASSIST, SICK/INJURED/MEDICAL, drug-related sick assist, suicide attempts) mix medical and
  behavioural-health events and include welfare checks; there is no psychiatric code. Only the spatial
  *shares* are used, not the counts.
- Ten winter weeks of one year: no seasonality, and small neighborhoods rest on few points (Leather
  District 3, Bay Village 6).
- The scaling total is a published lower bound (">10,000") for 2020; later years are not published.
- Police reports follow police presence; areas that call 911 less or are patrolled less are
  under-represented.

A planner can bring their own demand instead: a CSV with ``lat``, ``lon`` and optional ``weight``
columns (:func:`demand_from_csv`), or arrays (:func:`demand_from_points`).

Time of day
-----------
:func:`hourly_profile` gives the share of calls per local hour (citywide and per neighborhood, shrunk
towards the citywide profile where a neighborhood has few points) and :func:`arrival_rates` turns a
surface and a profile into expected calls per hour x neighborhood. The export's clock times are local
Boston time (its ``+00`` suffix is not a real offset). Records stamped exactly 00:00:00 (153 of 3,004,
five times any other minute) are date-only entries and are left out of the hourly profile, not of
the spatial surface.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routing.config import require_data_dir
from routing.errors import DataMissing, InvalidInput, reason

if TYPE_CHECKING:
    import geopandas as gpd
    import numpy.typing as npt
    import pandas as pd
    import shapely

    from routing.network import RoadNetwork
    from routing.places import Places

PROXY_FILE = "boston-context/incidents_mh_proxy_points.csv.gz"
DEFAULT_SOURCE = "citywide_2023Q1"
#: ">10,000 mental-health calls placed to 911 in Boston" in 2020 (published_figures.csv).
DEFAULT_ANNUAL_TOTAL = 10_000.0
DEFAULT_BANDWIDTH_M = 250.0
MH_CLASSES = ("investigate_person", "sick_assist", "sick_assist_drug", "medical_person", "suicide_attempt")
#: Sources covering the whole city (the other files in the proxy table cover some districts only).
CITYWIDE_SOURCES = ("citywide_2023Q1", "sample_2020H1", "sample_2021H1", "sample_2022Q1")
_NEAREST_AREA_MAX_M = 50.0  # SOURCES.md: every node lies within 50 m of the city boundary


# ============================================================================================ areas

_AREA_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
_AREA_LOCK = threading.Lock()


def node_areas(network: RoadNetwork, places: Places) -> tuple[np.ndarray, np.ndarray]:
    """Neighborhood and police district of every network node (cached per network and places).

    Nodes outside every polygon (a few, just beyond the boundary) take the nearest polygon within
    50 m; beyond that they stay ``None``.

    Returns
    -------
    (ndarray[object], ndarray[object])
        Neighborhood names and district codes, shape ``(n_nodes,)``.
    """
    key = (network.source, network.n_nodes, float(np.sum(network.lat)), id(places))
    with _AREA_LOCK:
        hit = _AREA_CACHE.get(key)
    if hit is not None:
        return hit
    lat, lon = np.asarray(network.lat), np.asarray(network.lon)
    nbhd, dist = places.locate_many(lat, lon)
    nbhd = _fill_nearest(nbhd, lat, lon, places.neighborhoods)
    dist = _fill_nearest(dist, lat, lon, places.districts)
    with _AREA_LOCK:
        _AREA_CACHE[key] = (nbhd, dist)
    return nbhd, dist


def _fill_nearest(names: np.ndarray, lat: np.ndarray, lon: np.ndarray, polygons: dict[str, shapely.Geometry]
                  ) -> np.ndarray:
    missing = np.flatnonzero(np.array([n is None for n in names], dtype=bool))
    if missing.size == 0 or not polygons:
        return names
    import shapely
    from pyproj import Transformer

    to_metric = Transformer.from_crs("EPSG:4326", "EPSG:26986", always_xy=True)
    keys = list(polygons)
    geoms = [shapely.transform(polygons[k], lambda c: np.column_stack(to_metric.transform(c[:, 0], c[:, 1])))
             for k in keys]
    x, y = to_metric.transform(lon[missing], lat[missing])
    points = shapely.points(x, y)
    tree = shapely.STRtree(geoms)
    (pi, gi), dist = tree.query_nearest(points, max_distance=_NEAREST_AREA_MAX_M, return_distance=True,
                                        all_matches=False)
    out = names.copy()
    out[missing[pi]] = np.array(keys, dtype=object)[gi]
    del dist
    return out


# ============================================================================================ surface


@dataclass
class DemandSurface:
    """Expected calls per year at each road-network node.

    Attributes
    ----------
    weights
        Shape ``(n_nodes,)``: expected calls a year attached to each node (sums to ``annual_total``).
    annual_total
        The total the surface is scaled to.
    description
        Where the points came from and how they were turned into weights.
    points_read, points_used, points_dropped
        Input points, those attached to the network, those outside it.
    bandwidth_m
        Kernel bandwidth used (0: none).
    node_neighborhood
        Neighborhood of every node (when built with ``places``), else ``None``.
    """

    weights: np.ndarray = field(repr=False)
    annual_total: float
    description: str
    points_read: int
    points_used: int
    points_dropped: int
    bandwidth_m: float
    node_neighborhood: np.ndarray | None = field(default=None, repr=False)
    node_lat: np.ndarray | None = field(default=None, repr=False)
    node_lon: np.ndarray | None = field(default=None, repr=False)

    def by_neighborhood(self) -> dict[str, float]:
        """Expected calls a year per neighborhood, largest first (needs ``places`` at build time)."""
        if self.node_neighborhood is None:
            raise InvalidInput("this demand surface was built without places; no neighborhoods",
                               field="places")
        totals: dict[str, float] = {}
        names = self.node_neighborhood
        valid = np.array([n is not None for n in names], dtype=bool)
        labels, inverse = np.unique(names[valid].astype(str), return_inverse=True)
        sums = np.bincount(inverse, weights=self.weights[valid], minlength=len(labels))
        for name, total in sorted(zip(labels.tolist(), sums.tolist(), strict=True), key=lambda t: -t[1]):
            totals[name] = float(total)
        return totals

    def to_dict(self) -> dict[str, Any]:
        """Summary: totals, method, per-neighborhood demand (no per-node arrays)."""
        out: dict[str, Any] = {
            "annual_total": self.annual_total,
            "description": self.description,
            "points_read": self.points_read,
            "points_used": self.points_used,
            "points_dropped": self.points_dropped,
            "bandwidth_m": self.bandwidth_m,
            "nodes": int(self.weights.size),
            "nodes_with_demand": int((self.weights > 0).sum()),
        }
        if self.node_neighborhood is not None:
            out["neighborhoods"] = [{"name": k, "demand": v, "share": v / self.annual_total}
                                    for k, v in self.by_neighborhood().items()]
        return out

    def to_geojson(self, min_weight: float = 0.0) -> dict[str, Any]:
        """Nodes with weight above ``min_weight`` as GeoJSON points (``demand`` = calls a year)."""
        if self.node_lat is None or self.node_lon is None:
            raise InvalidInput("this demand surface has no node coordinates", field="demand")
        idx = np.flatnonzero(self.weights > min_weight)
        features = []
        for i in idx.tolist():
            props: dict[str, Any] = {"node": i, "demand": float(self.weights[i])}
            if self.node_neighborhood is not None:
                props["neighborhood"] = self.node_neighborhood[i]
            features.append({"type": "Feature",
                             "geometry": {"type": "Point",
                                          "coordinates": [float(self.node_lon[i]), float(self.node_lat[i])]},
                             "properties": props})
        return {"type": "FeatureCollection", "features": features}

    def to_frame(self, min_weight: float = 0.0) -> pd.DataFrame:
        """One row per node with weight above ``min_weight`` (the points of :meth:`to_geojson`).

        Returns
        -------
        pandas.DataFrame
            Columns ``node``, ``lat``, ``lon``, ``demand`` (calls a year), and ``neighborhood`` when the
            surface was built with places. :meth:`by_neighborhood` gives the totals per neighborhood.

        Raises
        ------
        InvalidInput
            If the surface has no node coordinates.
        """
        import pandas as pd

        if self.node_lat is None or self.node_lon is None:
            raise InvalidInput("this demand surface has no node coordinates", field="demand")
        idx = np.flatnonzero(self.weights > min_weight)
        columns = {"node": idx, "lat": np.asarray(self.node_lat)[idx], "lon": np.asarray(self.node_lon)[idx],
                   "demand": np.asarray(self.weights, dtype=float)[idx]}
        if self.node_neighborhood is not None:
            columns["neighborhood"] = self.node_neighborhood[idx]
        return pd.DataFrame(columns)

    def to_gdf(self, min_weight: float = 0.0) -> gpd.GeoDataFrame:
        """:meth:`to_frame` as node points in lon/lat, EPSG:4326."""
        import geopandas as gpd

        from routing._frames import CRS

        table = self.to_frame(min_weight)
        return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs=CRS)

    def __repr__(self) -> str:
        return (f"<DemandSurface {self.annual_total:,.0f} calls a year on {int((self.weights > 0).sum()):,} of "
                f"{self.weights.size:,} nodes ({self.points_used:,} points)>")


def demand_from_points(network: RoadNetwork, lats: npt.ArrayLike, lons: npt.ArrayLike,
                       weights: npt.ArrayLike | None = None, *, places: Places | None = None,
                       annual_total: float | None = DEFAULT_ANNUAL_TOTAL,
                       bandwidth_m: float = DEFAULT_BANDWIDTH_M, description: str = "points"
                       ) -> DemandSurface:
    """Build a demand surface from weighted points.

    Parameters
    ----------
    network
        The :class:`routing.network.RoadNetwork`.
    lats, lons
        Point coordinates (WGS84).
    weights
        Non-negative weight per point (``None``: 1 each).
    places
        Optional :class:`routing.places.Places`, for per-neighborhood totals.
    annual_total
        Scale the weights to this total (calls a year); ``None`` keeps the given weights.
    bandwidth_m
        Gaussian kernel bandwidth in metres for spreading each point over nearby nodes (0: none).
    description
        Provenance text kept in the result.

    Returns
    -------
    DemandSurface

    Raises
    ------
    InvalidInput
        Mismatched lengths, NaN or negative weights, a bad total or bandwidth, or no point on the network.
    """
    lats = np.asarray(lats, dtype=float)
    lons = np.asarray(lons, dtype=float)
    if lats.ndim != 1 or lats.shape != lons.shape:
        raise InvalidInput("lats and lons must be 1-D and of the same length", field="demand")
    if lats.size == 0:
        raise InvalidInput("no demand points (empty demand)", field="demand")
    w = np.ones(lats.size) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != lats.shape:
        raise InvalidInput("one weight per point is needed", field="weight")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InvalidInput("demand weights must be finite and non-negative", field="weight")
    if annual_total is not None and (not math.isfinite(annual_total) or annual_total <= 0):
        raise InvalidInput(f"annual_total must be a positive number, got {annual_total!r}", field="annual_total")
    if not math.isfinite(bandwidth_m) or bandwidth_m < 0:
        raise InvalidInput(f"bandwidth_m must be >= 0, got {bandwidth_m!r}", field="bandwidth_m")
    snapped = network.snap_many(lats, lons, strict=False)
    ok = snapped.nodes >= 0
    if not ok.any() or w[ok].sum() <= 0:
        raise InvalidInput(f"none of the {lats.size} demand points (with positive weight) lies on the road "
                           "network's service area", field="demand")
    node_w = _spread(network, snapped.nodes[ok], w[ok], bandwidth_m)
    if annual_total is not None:
        node_w *= annual_total / node_w.sum()
    total = float(node_w.sum())
    nbhd = node_areas(network, places)[0] if places is not None else None
    return DemandSurface(node_w, total, description, int(lats.size), int(ok.sum()), int((~ok).sum()),
                         float(bandwidth_m), nbhd, np.asarray(network.lat), np.asarray(network.lon))


def _spread(network: RoadNetwork, nodes: np.ndarray, w: np.ndarray, bandwidth_m: float) -> np.ndarray:
    """Node weights: each point's weight on its node, or spread by a Gaussian kernel over nearby nodes."""
    n = network.n_nodes
    if bandwidth_m <= 0:
        return np.bincount(nodes, weights=w, minlength=n).astype(float)
    from scipy.spatial import cKDTree

    xy = np.column_stack([network.x, network.y])
    # Spread only over nodes of streets a person can stand beside: callers are not on expressways. The
    # snapped node itself is such a node, so it is always within reach and every point keeps its weight.
    street = np.flatnonzero(network.street_nodes) if hasattr(network, "street_nodes") else np.arange(n)
    street = np.union1d(street, nodes)
    tree = cKDTree(xy[street])
    neighbours = tree.query_ball_point(xy[nodes], r=3 * bandwidth_m)
    sizes = np.fromiter((len(x) for x in neighbours), dtype=np.int64, count=nodes.size)
    rows = np.repeat(np.arange(nodes.size), sizes)
    cols = street[np.fromiter((j for x in neighbours for j in x), dtype=np.int64, count=int(sizes.sum()))]
    d2 = ((xy[cols] - xy[nodes[rows]]) ** 2).sum(axis=1)
    vals = np.exp(-0.5 * d2 / bandwidth_m**2)
    per_point = np.bincount(rows, weights=vals, minlength=nodes.size)
    return np.bincount(cols, weights=vals * (w / per_point)[rows], minlength=n).astype(float)


# ============================================================================================ sources

_PROXY_CACHE: dict[Path, pd.DataFrame] = {}


def _read_proxy(data_dir: str | os.PathLike[str] | None) -> pd.DataFrame:
    import pandas as pd

    path = require_data_dir(data_dir) / PROXY_FILE
    if not path.is_file():
        raise DataMissing(f"missing data file: {path}")
    if path not in _PROXY_CACHE:
        frame = pd.read_csv(path, usecols=["source_file", "mh_class", "OCCURRED_ON_DATE", "HOUR",
                                           "neighborhood", "Lat", "Long"])
        _PROXY_CACHE[path] = frame
    return _PROXY_CACHE[path]


def _select(frame: pd.DataFrame, source: str | list[str] | tuple[str, ...],
            classes: Sequence[str] | None) -> tuple[pd.DataFrame, str]:
    sources = [source] if isinstance(source, str) else list(source)
    known = sorted(frame["source_file"].dropna().unique().tolist())
    unknown = [s for s in sources if s not in known]
    if unknown or not sources:
        raise InvalidInput(f"unknown incident source(s) {unknown}; expected some of {known}", field="source")
    chosen_classes = list(MH_CLASSES) if classes is None else list(classes)
    bad = [c for c in chosen_classes if c not in MH_CLASSES]
    if bad or not chosen_classes:
        raise InvalidInput(f"unknown class(es) {bad}; expected some of {list(MH_CLASSES)}", field="classes")
    mask = frame["source_file"].isin(sources) & frame["mh_class"].isin(chosen_classes)
    mask &= frame["Lat"].notna() & frame["Long"].notna()
    text = (f"BPD mental-health-proxy incidents ({', '.join(sources)}; classes: {', '.join(chosen_classes)}), "
            "police reports used for spatial shares only")
    return frame[mask], text


def load_demand(network: RoadNetwork, places: Places | None = None, *, data_dir: str | os.PathLike[str] | None = None,
                annual_total: float = DEFAULT_ANNUAL_TOTAL, source: str | list[str] = DEFAULT_SOURCE,
                classes: list[str] | tuple[str, ...] | None = None,
                bandwidth_m: float = DEFAULT_BANDWIDTH_M) -> DemandSurface:
    """The default demand surface from the shared incident data (method in the module docstring).

    Parameters
    ----------
    network
        The road network.
    places
        Optional places, for per-neighborhood totals.
    data_dir
        The real-data directory (default ``$CRISIS_DISPATCH_DATA``).
    annual_total
        Calls a year the surface sums to (default 10,000, the published 2020 figure).
    source
        ``source_file`` value(s) of the proxy file. Only the citywide ones give a citywide surface;
        pooling sources mixes periods and sampling designs (see SOURCES.md).
    classes
        Proxy classes to use (default all of :data:`MH_CLASSES`).
    bandwidth_m
        Kernel bandwidth (default 250 m; 0 keeps the raw snapped counts).

    Raises
    ------
    DataMissing
        The data directory or the proxy file is missing.
    InvalidInput
        Unknown source or class, bad total or bandwidth.
    """
    frame, text = _select(_read_proxy(data_dir), source, classes)
    if len(frame) == 0:
        raise InvalidInput("no incidents match the chosen source and classes", field="source")
    text += f"; scaled to {annual_total:,.0f} calls a year"
    if bandwidth_m > 0:
        text += f"; Gaussian kernel {bandwidth_m:g} m"
    return demand_from_points(network, frame["Lat"].to_numpy(float), frame["Long"].to_numpy(float), None,
                              places=places, annual_total=annual_total, bandwidth_m=bandwidth_m,
                              description=text)


def demand_from_csv(path: str | os.PathLike[str], network: RoadNetwork, places: Places | None = None, *,
                    annual_total: float | None = None, bandwidth_m: float = 0.0) -> DemandSurface:
    """A planner's demand file: CSV (optionally gzipped) with ``lat``, ``lon`` and optional ``weight``.

    Parameters
    ----------
    path
        The file. Column names are case-insensitive; ``latitude``/``longitude`` are accepted too.
    network, places
        As :func:`demand_from_points`.
    annual_total
        Scale to this total; ``None`` (default) keeps the file's weights as calls a year.
    bandwidth_m
        Kernel bandwidth (default 0: each point on its nearest node).

    Raises
    ------
    InvalidInput
        Missing file or columns, a non-numeric or negative value (with its line number), no usable row.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"demand file not found: {p}", field="demand")
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    try:
        with opener(p, "rt", encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InvalidInput(f"cannot read demand file {p}: {reason(exc)}", field="demand") from None
    reader = csv.DictReader(io.StringIO(text))
    header = {(h or "").strip().lower(): h for h in (reader.fieldnames or [])}
    lat_key = header.get("lat") or header.get("latitude")
    lon_key = header.get("lon") or header.get("longitude") or header.get("lng")
    weight_key = header.get("weight")
    if lat_key is None or lon_key is None:
        raise InvalidInput(f"{p}: needs 'lat' and 'lon' columns (found {list(header)})", field="demand")
    lats, lons, weights = [], [], []
    for line, row in enumerate(reader, start=2):
        try:
            lat = float(row[lat_key])
            lon = float(row[lon_key])
            weight = float(row[weight_key]) if weight_key and row.get(weight_key) not in (None, "") else 1.0
        except (TypeError, ValueError):
            raise InvalidInput(f"{p} line {line}: lat, lon and weight must be numbers", field="demand") from None
        if not (math.isfinite(lat) and math.isfinite(lon) and math.isfinite(weight)) or weight < 0:
            raise InvalidInput(f"{p} line {line}: coordinates must be finite and weight >= 0", field="demand")
        lats.append(lat)
        lons.append(lon)
        weights.append(weight)
    if not lats:
        raise InvalidInput(f"{p}: no demand rows", field="demand")
    desc = f"planner demand file {p.name}"
    if annual_total is not None:
        desc += f"; scaled to {annual_total:,.0f} a year"
    return demand_from_points(network, lats, lons, weights, places=places, annual_total=annual_total,
                              bandwidth_m=bandwidth_m, description=desc)


def uniform_demand(network: RoadNetwork, places: Places | None = None, *, annual_total: float = DEFAULT_ANNUAL_TOTAL
                   ) -> DemandSurface:
    """Equal weight on every node (a neutral baseline, e.g. for benchmarks)."""
    n = network.n_nodes
    nbhd = node_areas(network, places)[0] if places is not None else None
    return DemandSurface(np.full(n, annual_total / n), float(annual_total), "uniform over network nodes", n, n, 0,
                         0.0, nbhd, np.asarray(network.lat), np.asarray(network.lon))


# ============================================================================================ time of day


@dataclass
class HourlyProfile:
    """Share of calls in each local hour of the day.

    Attributes
    ----------
    citywide
        Shape ``(24,)``, sums to 1 (index = local hour).
    by_neighborhood
        Neighborhood -> ``(24,)`` shares, each shrunk towards ``citywide`` with ``prior_strength``
        pseudo-counts (so Bay Village's 6 points do not make a spiky profile).
    counts
        Incidents per neighborhood used.
    excluded_midnight
        Records stamped exactly 00:00:00 left out (date-only entries).
    """

    citywide: np.ndarray
    by_neighborhood: dict[str, np.ndarray]
    counts: dict[str, int]
    excluded_midnight: int
    prior_strength: float
    source: str

    def for_neighborhood(self, name: str | None) -> np.ndarray:
        """The neighborhood's profile, or the citywide one for an unknown / missing name."""
        if name is None:
            return self.citywide
        return self.by_neighborhood.get(name, self.citywide)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "citywide": [float(v) for v in self.citywide],
            "by_neighborhood": {k: [float(v) for v in arr] for k, arr in self.by_neighborhood.items()},
            "counts": dict(self.counts),
            "excluded_midnight": self.excluded_midnight,
            "prior_strength": self.prior_strength,
        }


def hourly_profile(data_dir: str | os.PathLike[str] | None = None, *, source: str | list[str] = DEFAULT_SOURCE,
                   classes: list[str] | tuple[str, ...] | None = None, prior_strength: float = 48.0
                   ) -> HourlyProfile:
    """Hour-of-day profile of mental-health-proxy incidents, citywide and per neighborhood.

    Parameters
    ----------
    data_dir
        The real-data directory.
    source, classes
        As :func:`load_demand`.
    prior_strength
        Pseudo-counts of the citywide profile added to each neighborhood's counts (48 = two per hour).

    Returns
    -------
    HourlyProfile
    """
    if not math.isfinite(prior_strength) or prior_strength < 0:
        raise InvalidInput(f"prior_strength must be >= 0, got {prior_strength!r}", field="prior_strength")
    frame, text = _select(_read_proxy(data_dir), source, classes)
    clock = frame["OCCURRED_ON_DATE"].astype(str).str[11:19]
    midnight = (clock == "00:00:00").to_numpy()
    timed = frame[~midnight]
    hours = timed["HOUR"].to_numpy(int)
    city_counts = np.bincount(hours, minlength=24).astype(float)
    citywide = city_counts / city_counts.sum()
    by_nbhd: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for name, group in timed.groupby("neighborhood"):
        c = np.bincount(group["HOUR"].to_numpy(int), minlength=24).astype(float)
        by_nbhd[str(name)] = (c + prior_strength * citywide) / (c.sum() + prior_strength)
        counts[str(name)] = int(c.sum())
    return HourlyProfile(citywide, by_nbhd, counts, int(midnight.sum()), float(prior_strength), text)


@dataclass
class ArrivalRates:
    """Expected calls per hour of an average day, by local hour x neighborhood.

    ``per_hour[h, k]`` = calls expected during local hour ``h`` in ``neighborhoods[k]`` (a Poisson
    rate per hour); ``per_hour.sum()`` = annual total / 365.
    """

    neighborhoods: list[str]
    per_hour: np.ndarray
    annual_total: float

    def rate(self, hour: int, neighborhood: str) -> float:
        """Calls per hour in ``neighborhood`` during local ``hour``."""
        if not 0 <= hour <= 23:
            raise InvalidInput(f"hour must be 0-23, got {hour!r}", field="hour")
        try:
            k = self.neighborhoods.index(neighborhood)
        except ValueError:
            raise InvalidInput(f"unknown neighborhood {neighborhood!r}", field="neighborhood") from None
        return float(self.per_hour[hour, k])

    def to_dict(self) -> dict[str, Any]:
        return {"annual_total": self.annual_total, "neighborhoods": list(self.neighborhoods),
                "per_hour": [[float(v) for v in row] for row in self.per_hour]}


def arrival_rates(demand: DemandSurface, profile: HourlyProfile) -> ArrivalRates:
    """Calls per hour x neighborhood: the surface's neighborhood totals spread over the profile's hours."""
    totals = demand.by_neighborhood()
    names = list(totals)
    per_hour = np.column_stack([totals[k] / 365.0 * profile.for_neighborhood(k) for k in names])
    return ArrivalRates(names, per_hour, demand.annual_total)
