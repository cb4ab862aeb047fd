"""Places: neighborhoods, police districts, the city boundary and candidate staging sites.

Everything is read from the real-data directory (``DATA_DIR/boston-context`` and ``DATA_DIR/boston``);
see its SOURCES.md. Some neighborhood polygons are invalid upstream and are repaired with ``make_valid``.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from routing.config import require_data_dir
from routing.errors import DataMissing, InvalidInput

SITE_KINDS = ("police", "fire", "hospital", "community")


@dataclass(frozen=True)
class Site:
    """A candidate staging site (a real station, hospital or community centre, or a planner's point)."""

    site_id: str
    name: str
    kind: str
    lat: float
    lon: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Places:
    """Boundaries and sites of Boston. Build with :func:`load_places`."""

    def __init__(self, neighborhoods: dict[str, shapely.Geometry], districts: dict[str, shapely.Geometry],
                 boundary: shapely.Geometry | None, sites: list[Site]) -> None:
        self.neighborhoods = neighborhoods
        self.districts = districts
        self.boundary = boundary
        self._sites = sites
        self._nbhd_names = np.array(list(neighborhoods), dtype=object)
        self._nbhd_geoms = np.array(list(neighborhoods.values()), dtype=object)
        self._dist_names = np.array(list(districts), dtype=object)
        self._dist_geoms = np.array(list(districts.values()), dtype=object)
        self._nbhd_tree = shapely.STRtree(self._nbhd_geoms)
        self._dist_tree = shapely.STRtree(self._dist_geoms)
        for geom in (*self._nbhd_geoms, *self._dist_geoms):
            shapely.prepare(geom)

    def locate(self, lat: float, lon: float) -> tuple[str | None, str | None]:
        """(neighborhood, police district) containing a point; ``None`` where none does."""
        names, districts = self.locate_many(np.array([lat], float), np.array([lon], float))
        return names[0], districts[0]

    def locate_many(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`locate`: two object arrays of names (``None`` outside every polygon)."""
        points = shapely.points(np.asarray(lons, float), np.asarray(lats, float))
        return (_join(points, self._nbhd_tree, self._nbhd_names),
                _join(points, self._dist_tree, self._dist_names))

    def sites(self, kinds: str | list[str] | tuple[str, ...] | None = None) -> list[Site]:
        """Candidate sites, optionally only some kinds (``police``, ``fire``, ``hospital``, ``community``)."""
        if kinds is None:
            return list(self._sites)
        wanted = {kinds} if isinstance(kinds, str) else set(kinds)
        unknown = wanted - set(SITE_KINDS)
        if unknown:
            raise InvalidInput(f"unknown site kind(s) {sorted(unknown)}; expected {list(SITE_KINDS)}")
        return [s for s in self._sites if s.kind in wanted]

    def site(self, site_id: str) -> Site:
        """One site by id (``police:B2``, ``fire:engine-33``, ...)."""
        for s in self._sites:
            if s.site_id == site_id:
                return s
        from routing.errors import NotFound

        raise NotFound(f"unknown site {site_id!r}")

    def area_geometry(self, names: list[str] | tuple[str, ...]) -> shapely.Geometry:
        """Union of the named districts and/or neighborhoods (a team's service area)."""
        parts = []
        for name in names:
            geom = self.districts.get(name) or self.neighborhoods.get(name)
            if geom is None:
                raise InvalidInput(f"unknown district or neighborhood {name!r}")
            parts.append(geom)
        return shapely.union_all(parts)


def _join(points: np.ndarray, tree: shapely.STRtree, names: np.ndarray) -> np.ndarray:
    out = np.full(len(points), None, dtype=object)
    # Bounding boxes from the tree, then one vectorised test per polygon against its (prepared) self:
    # the tree's own "within" predicate prepares each point instead, 10x slower for many points.
    point_idx, geom_idx = tree.query(points)
    if len(point_idx):
        x, y = shapely.get_x(points[point_idx]), shapely.get_y(points[point_idx])
        keep = np.zeros(len(point_idx), dtype=bool)
        for g in np.unique(geom_idx):
            at = np.flatnonzero(geom_idx == g)
            keep[at] = shapely.contains_xy(tree.geometries[g], x[at], y[at])
        point_idx, geom_idx = point_idx[keep], geom_idx[keep]
    # A point on a shared border falls in two polygons; the first listed wins, deterministically.
    order = np.lexsort((geom_idx, point_idx))
    point_idx, geom_idx = point_idx[order], geom_idx[order]
    first = np.ones(len(point_idx), dtype=bool)
    first[1:] = point_idx[1:] != point_idx[:-1]
    out[point_idx[first]] = names[geom_idx[first]]
    return out


_CACHE: dict[Path, Places] = {}
_LOCK = threading.Lock()


def load_places(data_dir: str | Path | None = None) -> Places:
    """Read neighborhoods, districts, boundary and sites from the data directory (cached per directory).

    Raises
    ------
    DataMissing
        If the directory or one of its files is missing.
    """
    directory = require_data_dir(data_dir)
    with _LOCK:
        if directory in _CACHE:
            return _CACHE[directory]
    context = directory / "boston-context"
    if not context.is_dir():
        raise DataMissing(f"{directory}: no 'boston-context' folder")
    neighborhoods = _polygons(context / "boston_neighborhoods.geojson", "Name")
    districts = _polygons(context / "bpd_police_districts.geojson", "DISTRICT")
    from routing.network import read_boundary

    boundary = read_boundary(directory)
    places = Places(neighborhoods, districts, boundary, _read_sites(context))
    with _LOCK:
        _CACHE[directory] = places
    return places


def _read_geojson(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataMissing(f"missing data file: {path}")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _polygons(path: Path, name_field: str) -> dict[str, shapely.Geometry]:
    out: dict[str, shapely.Geometry] = {}
    for feature in _read_geojson(path)["features"]:
        geom = shapely.make_valid(shapely.from_geojson(json.dumps(feature["geometry"])))
        # make_valid may return a collection with stray lines; keep the areas only.
        if geom.geom_type == "GeometryCollection":
            geom = shapely.union_all([g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
        name = str(feature["properties"][name_field]).strip()
        out[name] = shapely.union_all([out[name], geom]) if name in out else geom
    return dict(sorted(out.items()))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _read_sites(context: Path) -> list[Site]:
    sites: list[Site] = []
    for feature in _read_geojson(context / "bpd_police_stations.geojson")["features"]:
        name = feature["properties"]["NAME"]
        match = re.search(r"District ([A-E])-(\d+)", name)
        code = f"{match.group(1)}{match.group(2)}" if match else "HQ"
        lon, lat = feature["geometry"]["coordinates"][:2]
        sites.append(Site(f"police:{code}", name, "police", float(lat), float(lon)))
    fire_path = context / "bfd_fire_stations.csv"
    if not fire_path.is_file():
        raise DataMissing(f"missing data file: {fire_path}")
    with open(fire_path, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            raw = row["name"].strip()
            match = re.match(r"Engine CO\. (\d+)", raw)
            site_id = f"fire:engine-{match.group(1)}" if match else f"fire:{_slug(raw or row['street'])}"
            name = raw or f"BFD site, {row['street'].strip()}"
            sites.append(Site(site_id, name, "fire", float(row["lat"]), float(row["lon"])))
    for feature in _read_geojson(context / "hospitals.geojson")["features"]:
        props = feature["properties"]
        lon, lat = feature["geometry"]["coordinates"][:2]
        sites.append(Site(f"hospital:{_slug(props['Name'])}", props["Name"].strip(), "hospital",
                          float(lat), float(lon)))
    for feature in _read_geojson(context / "bcyf_community_centers.geojson")["features"]:
        props = feature["properties"]
        lon, lat = feature["geometry"]["coordinates"][:2]
        sites.append(Site(f"community:{_slug(props['SITE'])}", f"BCYF {props['SITE'].strip()}", "community",
                          float(lat), float(lon)))
    ids = [s.site_id for s in sites]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:  # make ids unique and stable by suffixing in file order
        seen: dict[str, int] = {}
        fixed = []
        for s in sites:
            if s.site_id in duplicates:
                seen[s.site_id] = seen.get(s.site_id, 0) + 1
                s = Site(f"{s.site_id}-{seen[s.site_id]}", s.name, s.kind, s.lat, s.lon)
            fixed.append(s)
        sites = fixed
    return sites
