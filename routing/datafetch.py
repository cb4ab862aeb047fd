"""Assemble a data directory from public sources, in the layout of the project's shared data folder.

``crisis-dispatch data fetch --dir DIR`` is the way in for a user who has internet but not the data
folder. Every file the engine reads is rebuilt from its public origin:

- the road network from OpenStreetMap through osmnx (Boston's ``drive`` network inside the city
  boundary), written as the osmnx CSV export that :func:`routing.network.load_network` reads;
- the city boundary, neighborhoods, police districts, police stations, fire stations, hospitals and
  community centres from the City of Boston's open data (Analyze Boston / BostonMaps);
- the BPD crime incident reports of 2023 Q1 from Analyze Boston, and from them the
  mental-health-proxy point file that :mod:`routing.demand` reads.

Every download URL is in :data:`SOURCES`, the one table to fix when the portal moves a dataset. Base
URLs are placeholders (``{portal}``, ``{arcgis}``) filled from :class:`Endpoints`, so tests can point the
whole fetch at a local HTTP server.

Each output file is checked (schema, counts within the expected range, coordinates inside Greater
Boston) before it is moved into place, and recorded with its source URL, retrieval date and SHA-256 in
``DIR/manifest.json`` and ``DIR/SOURCES.md``. Downloads and outputs are written to a temporary file and
renamed, so an interrupted run leaves no half file; a rerun keeps every file that is present and passes
its check, and fetches only the rest.

The OSM choice: osmnx itself queries Overpass (``osmnx.settings.overpass_url`` points at the configured
endpoint), so the network is filtered and simplified exactly as the shared export was (osmnx ``drive``,
``simplify=True``). The query polygon is the fetched city boundary rather than a Nominatim geocode, which
keeps the whole fetch on two configurable endpoints and testable offline with a local Overpass stand-in.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routing.errors import CrisisDispatchError

if TYPE_CHECKING:  # imported where used, like pandas and osmnx: `data fetch --help` loads no NumPy
    import httpx
    import networkx as nx
    import numpy as np
    import pandas as pd
    import shapely

DEFAULT_PORTAL_URL = "https://data.boston.gov"
DEFAULT_ARCGIS_URL = "https://bostonopendata-boston.opendata.arcgis.com"
DEFAULT_OVERPASS_URL = "https://overpass-api.de/api"
PORTAL_ENV = "CRISIS_DISPATCH_PORTAL_URL"
ARCGIS_ENV = "CRISIS_DISPATCH_ARCGIS_URL"
OVERPASS_ENV = "CRISIS_DISPATCH_OVERPASS_URL"

#: Greater Boston, generously (lon_min, lat_min, lon_max, lat_max): every coordinate must lie inside.
GREATER_BOSTON = (-71.35, 42.10, -70.75, 42.55)

MANIFEST = "manifest.json"
SOURCES_MD = "SOURCES.md"
_PARTIAL = ".partial"  # downloads in progress, inside DIR so the final rename stays on one filesystem

INCIDENT_COLUMNS = ("INCIDENT_NUMBER", "OFFENSE_CODE", "OFFENSE_CODE_GROUP", "OFFENSE_DESCRIPTION", "DISTRICT",
                    "REPORTING_AREA", "SHOOTING", "OCCURRED_ON_DATE", "YEAR", "MONTH", "DAY_OF_WEEK", "HOUR",
                    "UCR_PART", "STREET", "Lat", "Long")
PROXY_COLUMNS = ("source_file", "mh_class", "INCIDENT_NUMBER", "OFFENSE_CODE", "OFFENSE_DESCRIPTION", "DISTRICT",
                 "district_polygon", "neighborhood", "OCCURRED_ON_DATE", "HOUR", "DAY_OF_WEEK", "STREET", "Lat",
                 "Long", "in_check_box")
NODE_COLUMNS = ("idx", "osm_idx", "lat", "lon")
EDGE_COLUMNS = ("src", "dst", "osm_src", "osm_dst", "length", "highway", "maxspeed", "lanes", "oneway")
#: The period of the shared ``incidents_citywide_2023Q1`` file, whose ``source_file`` name the demand
#: model uses by default.
INCIDENT_PERIOD = ("2023-01-01", "2023-04-01")


@dataclass(frozen=True)
class Source:
    """One output file: where it comes from and what it must look like.

    ``url`` is a template over :class:`Endpoints` (``{portal}``, ``{arcgis}``, ``{overpass}``) or
    ``ckan:<dataset>:<format>``, resolved through the portal's CKAN ``package_show`` to the dataset's
    resource of that format (used where no stable direct link is known).
    """

    path: str
    title: str
    page: str
    url: str
    kind: str
    count: tuple[int, int]
    needs: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    licence: str = "ODC PDDL (Analyze Boston); verify on the dataset page"


# The one table of public sources. Item ids of the BostonMaps (ArcGIS Hub) layers are the ones that public
# code has used for years; the Hub redirects these legacy GeoJSON paths to its current download API.
SOURCES: tuple[Source, ...] = (
    Source("boston/City_of_Boston_Boundary.shp.gz", "City of Boston Boundary",
           "https://data.boston.gov/dataset/city-of-boston-boundary",
           "{arcgis}/datasets/142500a77e2a4dbeb94a86f7e0b568bc_0.geojson", "boundary", (1, 200)),
    Source("boston-context/boston_neighborhoods.geojson", "Boston Neighborhoods",
           "https://data.boston.gov/dataset/boston-neighborhoods",
           "{arcgis}/datasets/3525b0ee6e6b427f9aab5d0a1d0a1a28_0.geojson", "layer", (20, 40), fields=("Name",)),
    Source("boston-context/bpd_police_districts.geojson", "Police Districts",
           "https://data.boston.gov/dataset/police-districts",
           "{arcgis}/datasets/9a3a8c427add450eaf45a470245680fc_5.geojson", "layer", (10, 16), fields=("DISTRICT",)),
    Source("boston-context/bpd_police_stations.geojson", "Boston Police Stations",
           "https://data.boston.gov/dataset/boston-police-stations",
           "{arcgis}/datasets/e5a0066d38ac4e2abbc7918197a4f6af_6.geojson", "layer", (8, 20), fields=("NAME",)),
    Source("boston-context/bfd_fire_stations.csv", "Fire Departments",
           "https://data.boston.gov/dataset/fire-departments",
           "{arcgis}/datasets/092857c15cbb49e8b214ca5e228317a1_2.geojson", "fire", (20, 60)),
    Source("boston-context/hospitals.geojson", "Hospitals", "https://data.boston.gov/dataset/hospitals",
           "ckan:hospitals:GeoJSON", "layer", (15, 60), fields=("Name",)),
    Source("boston-context/bcyf_community_centers.geojson", "Community Centers (BCYF)",
           "https://data.boston.gov/dataset/community-centers",
           "{arcgis}/datasets/acedd06b39854088b0f2fefccffebf84_0.geojson", "layer", (25, 60), fields=("SITE",)),
    Source("boston-context/incidents_citywide_2023Q1.csv.gz",
           "Crime Incident Reports (August 2015 - To Date), resource 2023 to present",
           "https://data.boston.gov/dataset/crime-incident-reports-august-2015-to-date-source-new-system",
           "{portal}/datastore/dump/b973d8cb-eeb2-4e7e-99da-c92938efc9c0", "incidents", (5_000, 40_000)),
    Source("boston-context/incidents_mh_proxy_points.csv.gz",
           "derived: mental-health-proxy rows of the 2023 Q1 incidents, located in the polygons above",
           "https://data.boston.gov/dataset/crime-incident-reports-august-2015-to-date-source-new-system",
           "derived", "proxy", (1_000, 30_000),
           needs=("boston-context/incidents_citywide_2023Q1.csv.gz", "boston-context/boston_neighborhoods.geojson",
                  "boston-context/bpd_police_districts.geojson")),
    Source("boston/boston_nodes.csv.gz", "OpenStreetMap drive network of the City of Boston (osmnx): nodes",
           "https://www.openstreetmap.org/copyright", "{overpass}/interpreter", "network", (5_000, 25_000),
           needs=("boston/City_of_Boston_Boundary.shp.gz",),
           licence="ODbL 1.0, \u00a9 OpenStreetMap contributors"),
    Source("boston/boston_edges.csv.gz", "OpenStreetMap drive network of the City of Boston (osmnx): edges",
           "https://www.openstreetmap.org/copyright", "{overpass}/interpreter", "network", (12_000, 60_000),
           needs=("boston/City_of_Boston_Boundary.shp.gz",),
           licence="ODbL 1.0, \u00a9 OpenStreetMap contributors"),
)

#: Mental-health / medical proxy classes of BPD offense descriptions (boston-context/SOURCES.md).
MH_CLASS_RULES: tuple[tuple[str, str], ...] = (
    (r"^INVESTIGATE PERSON$", "investigate_person"),
    (r"^SICK ASSIST - DRUG RELATED ILLNESS$|^DRUGS - SICK ASSIST\b", "sick_assist_drug"),
    (r"^SICK ASSIST$", "sick_assist"),
    (r"^SICK/INJURED/MEDICAL - PERSON$", "medical_person"),
    (r"^(PRISONER - )?SUICIDE / SUICIDE ATTEMPT$", "suicide_attempt"),
)


class DataCheckFailed(CrisisDispatchError):
    """A fetched file failed its check; the message names the file and the check."""


class DownloadFailed(CrisisDispatchError):
    """A source could not be downloaded; the message names the file and the URL."""


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the public services (no trailing slash)."""

    portal: str = DEFAULT_PORTAL_URL
    arcgis: str = DEFAULT_ARCGIS_URL
    overpass: str = DEFAULT_OVERPASS_URL

    @classmethod
    def from_env(cls, portal: str | None = None, arcgis: str | None = None,
                 overpass: str | None = None) -> Endpoints:
        """Explicit values, else ``$CRISIS_DISPATCH_{PORTAL,ARCGIS,OVERPASS}_URL``, else the public services."""
        return cls((portal or os.environ.get(PORTAL_ENV) or DEFAULT_PORTAL_URL).rstrip("/"),
                   (arcgis or os.environ.get(ARCGIS_ENV) or DEFAULT_ARCGIS_URL).rstrip("/"),
                   (overpass or os.environ.get(OVERPASS_ENV) or DEFAULT_OVERPASS_URL).rstrip("/"))


@dataclass
class FetchReport:
    """What :func:`fetch_data` did: per output path, ``"fetched"`` or ``"kept"``, and the manifest."""

    directory: Path
    actions: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "actions": self.actions, "manifest": self.manifest}


# ============================================================================================ driver

def fetch_data(directory: str | os.PathLike[str], endpoints: Endpoints | None = None, *,
               only: list[str] | None = None, force: bool = False,
               progress: Callable[[str], None] | None = None, timeout_s: float = 300.0) -> FetchReport:
    """Fetch, convert, check and record every source into ``directory``.

    Parameters
    ----------
    directory
        Target data directory (created if needed), laid out like the shared data folder.
    endpoints
        Base URLs (default :meth:`Endpoints.from_env`).
    only
        Output paths (as in :data:`SOURCES`) to fetch; files they need are fetched too.
    force
        Fetch again even files that are present and valid.
    progress
        Called with one line per step (the CLI prints them on stderr).
    timeout_s
        Read timeout of one HTTP request.

    Returns
    -------
    FetchReport

    Raises
    ------
    DataCheckFailed
        A file failed its check (nothing is written for it).
    DownloadFailed
        A source could not be downloaded.
    """
    endpoints = endpoints or Endpoints.from_env()
    say = progress or (lambda _line: None)
    root = Path(directory).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(root)
    report = FetchReport(root)
    wanted = _with_needs(only) if only else [s.path for s in SOURCES]
    import httpx

    # Generous connect/read limits: the incident export is tens of MB and the portal streams it slowly.
    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, read=timeout_s),
                      headers={"User-Agent": "crisis-dispatch data fetch"}) as client:
        for source in SOURCES:
            if source.path not in wanted or source.path in report.actions:
                continue
            if source.kind == "network":
                _fetch_network(root, endpoints, manifest, report, force, say)
                continue
            target = root / source.path
            if not force and target.is_file() and _passes(source, target):
                report.actions[source.path] = "kept"
                say(f"kept     {source.path} (present and valid)")
                continue
            say(f"fetching {source.path}")
            entry = _build(source, root, endpoints, client)
            manifest[source.path] = entry
            report.actions[source.path] = "fetched"
            _write_records(root, manifest)
    shutil.rmtree(root / _PARTIAL, ignore_errors=True)
    _write_records(root, manifest)
    report.manifest = {k: v for k, v in manifest.items() if k in report.actions}
    return report


def _with_needs(only: list[str]) -> list[str]:
    by_path = {s.path: s for s in SOURCES}
    unknown = [p for p in only if p not in by_path]
    if unknown:
        raise DataCheckFailed(f"unknown file(s) {unknown}; expected some of {sorted(by_path)}")
    out: list[str] = []

    def add(path: str) -> None:
        for need in by_path[path].needs:
            add(need)
        if path not in out:
            out.append(path)

    for path in only:
        add(path)
    if any(by_path[p].kind == "network" for p in out):  # nodes and edges come from one download
        for s in SOURCES:
            if s.kind == "network" and s.path not in out:
                out.append(s.path)
    return out


def _passes(source: Source, path: Path) -> bool:
    try:
        check_file(source, path)
    except (DataCheckFailed, OSError, ValueError):
        return False
    return True


def _build(source: Source, root: Path, endpoints: Endpoints, client: httpx.Client) -> dict[str, Any]:
    target = root / source.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "proxy":
        url, raw_sha = "derived", None
        tmp = _tmp_beside(target)
        try:
            _derive_proxy(root, tmp)
            check_file(source, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    else:
        url = resolve_url(source, endpoints, client)
        raw = _download(client, url, root, source.path)
        raw_sha = _sha256(raw)
        tmp = _tmp_beside(target)
        try:
            _convert(source, raw, tmp)
            check_file(source, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            raw.unlink(missing_ok=True)
    tmp.replace(target)
    return _entry(source, url, target, raw_sha)


def _entry(source: Source, url: str, target: Path, raw_sha: str | None) -> dict[str, Any]:
    return {"title": source.title, "page": source.page, "url": url,
            "retrieved": datetime.now(UTC).strftime("%Y-%m-%d"), "sha256": _sha256(target),
            "bytes": target.stat().st_size, "download_sha256": raw_sha, "licence": source.licence,
            "records": _count_records(source, target)}


# ============================================================================================ HTTP

def resolve_url(source: Source, endpoints: Endpoints, client: httpx.Client) -> str:
    """The download URL of ``source``: its template filled in, or a CKAN lookup for ``ckan:`` entries."""
    if not source.url.startswith("ckan:"):
        return source.url.format(portal=endpoints.portal, arcgis=endpoints.arcgis, overpass=endpoints.overpass)
    _, dataset, fmt = source.url.split(":", 2)
    api = f"{endpoints.portal}/api/3/action/package_show"
    try:
        response = client.get(api, params={"id": dataset})
        response.raise_for_status()
        resources = response.json()["result"]["resources"]
    except Exception as exc:  # any transport, HTTP or shape problem is the same user-facing failure
        raise DownloadFailed(f"{source.path}: cannot look up dataset {dataset!r} at {api}: "
                             f"{_one_line(exc)}") from None
    for resource in resources:
        if str(resource.get("format", "")).lower() == fmt.lower() and resource.get("url"):
            return str(resource["url"])
    raise DownloadFailed(f"{source.path}: dataset {dataset!r} at {api} has no {fmt} resource")


def _download(client: httpx.Client, url: str, root: Path, name: str) -> Path:
    partial = root / _PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    final = partial / (name.replace("/", "__") + ".download")
    tmp = _tmp_beside(final)
    try:
        with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise DownloadFailed(f"{name}: HTTP {response.status_code} from {url}")
            with open(tmp, "wb") as fh:
                for chunk in response.iter_bytes(1 << 16):
                    fh.write(chunk)
    except DownloadFailed:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # httpx transport errors: one line naming the file and the URL
        tmp.unlink(missing_ok=True)
        raise DownloadFailed(f"{name}: download from {url} failed: {_one_line(exc)}") from None
    tmp.replace(final)
    return final


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The real name stays at the end: readers that go by the suffix (.shp.gz, .csv.gz) accept the temp file.
    handle, name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(handle)
    return Path(name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ============================================================================================ convert

def _convert(source: Source, raw: Path, out: Path) -> None:
    if source.kind == "layer":
        _load_feature_collection(source.path, raw)  # fail early, with the file's name, on non-GeoJSON
        shutil.copyfile(raw, out)  # kept byte for byte: the checksum then matches the portal's file
    elif source.kind == "fire":
        _fire_csv(source.path, raw, out)
    elif source.kind == "boundary":
        _boundary_shp_gz(source.path, raw, out)
    elif source.kind == "incidents":
        _incidents_2023q1(source.path, raw, out)
    else:  # pragma: no cover - the table has no other kinds
        raise ValueError(source.kind)


def _load_feature_collection(name: str, path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataCheckFailed(f"{name}: check 'geojson' failed: not a GeoJSON file ({_one_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(
            doc.get("features"), list):
        raise DataCheckFailed(f"{name}: check 'geojson' failed: not a GeoJSON FeatureCollection")
    return doc


_NAME_FIELDS = ("LOCNAME", "NAME", "Name", "FACILITY", "COMPANY", "STATION")
_STREET_FIELDS = ("LOCADDR", "ADDRESS", "Address", "STREET", "ST_NAME")


def _fire_csv(name: str, raw: Path, out: Path) -> None:
    """The BFD layer as the ``name,street,lat,lon`` CSV that :mod:`routing.places` reads."""
    features = _load_feature_collection(name, raw)["features"]
    props = [f.get("properties") or {} for f in features]
    keys = set().union(*props) if props else set()
    name_key = next((k for k in _NAME_FIELDS if k in keys), None)
    street_key = next((k for k in _STREET_FIELDS if k in keys), None)
    if name_key is None:
        raise DataCheckFailed(f"{name}: check 'schema' failed: no station name field (one of {list(_NAME_FIELDS)})")
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "street", "lat", "lon"])
        for feature, p in zip(features, props, strict=True):
            lon, lat = _point(name, feature)
            street = str(p.get(street_key) or "").strip() if street_key else ""
            # A leading house number is dropped: the shared file and the site ids use the street name only.
            street = re.sub(r"^\d+[A-Za-z]?(-\d+)?\s+", "", street)
            writer.writerow([str(p.get(name_key) or "").strip(), street, f"{lat:.8f}", f"{lon:.8f}"])


def _point(name: str, feature: dict[str, Any]) -> tuple[float, float]:
    geom = feature.get("geometry") or {}
    coords = geom.get("coordinates") if geom.get("type") == "Point" else None
    if not coords or len(coords) < 2:
        raise DataCheckFailed(f"{name}: check 'geometry' failed: a feature is not a Point")
    return float(coords[0]), float(coords[1])


def _boundary_shp_gz(name: str, raw: Path, out: Path) -> None:
    """GeoJSON boundary -> gzipped bare ``.shp`` (the format :func:`routing.network.read_boundary` reads)."""
    import geopandas as gpd
    import pyogrio
    import shapely

    _load_feature_collection(name, raw)
    try:
        frame = gpd.read_file(raw)
    except Exception as exc:  # a GDAL failure on a bad file: name the file, one line
        raise DataCheckFailed(f"{name}: check 'geojson' failed: {_one_line(exc)}") from None
    geom = shapely.make_valid(shapely.union_all(frame.geometry.values))
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polys:
        raise DataCheckFailed(f"{name}: check 'geometry' failed: no polygon in the boundary layer")
    single = gpd.GeoDataFrame(geometry=[shapely.union_all(polys)], crs=frame.crs or "EPSG:4326").to_crs(4326)
    with tempfile.TemporaryDirectory() as tmp:
        shp = Path(tmp) / "City_of_Boston_Boundary.shp"
        pyogrio.write_dataframe(single, shp, driver="ESRI Shapefile")
        with open(shp, "rb") as fin, gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as fout:
            shutil.copyfileobj(fin, fout)


def _clean_text(value: Any) -> str:
    return " ".join(str(value).replace("\u00c2", "").split()) if value is not None else ""


def _incidents_2023q1(name: str, raw: Path, out: Path) -> None:
    """Keep the rows of 2023-01-01 .. 2023-03-31 in the shared file's columns, cleaned as it was."""
    import pandas as pd

    try:
        head = pd.read_csv(raw, nrows=0)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataCheckFailed(f"{name}: check 'csv' failed: {_one_line(exc)}") from None
    missing = [c for c in INCIDENT_COLUMNS if c not in head.columns and c not in ("OFFENSE_CODE_GROUP", "UCR_PART")]
    if missing:
        raise DataCheckFailed(f"{name}: check 'schema' failed: missing column(s) {missing}")
    parts = []
    for chunk in pd.read_csv(raw, dtype=str, keep_default_na=False, chunksize=100_000):
        when = chunk["OCCURRED_ON_DATE"].str.slice(0, 10)
        parts.append(chunk[(when >= INCIDENT_PERIOD[0]) & (when < INCIDENT_PERIOD[1])])
    frame = pd.concat(parts, ignore_index=True) if parts else head
    for column in INCIDENT_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame[list(INCIDENT_COLUMNS)].copy()
    frame["OFFENSE_DESCRIPTION"] = frame["OFFENSE_DESCRIPTION"].map(_clean_text)
    lat = pd.to_numeric(frame["Lat"], errors="coerce")
    lon = pd.to_numeric(frame["Long"], errors="coerce")
    # 0 and -1 are the export's "no location"; anything outside Greater Boston is a geocoding slip.
    bad = ~_in_box(lon.to_numpy(float), lat.to_numpy(float))
    frame["Lat"] = lat.where(~bad).map(lambda v: "" if pd.isna(v) else repr(float(v)))
    frame["Long"] = lon.where(~bad).map(lambda v: "" if pd.isna(v) else repr(float(v)))
    frame = frame.sort_values("OCCURRED_ON_DATE", kind="stable")
    with gzip.open(out, "wt", encoding="utf-8", newline="", compresslevel=9) as fh:
        frame.to_csv(fh, index=False)


def _in_box(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    import numpy as np

    x0, y0, x1, y1 = GREATER_BOSTON
    with np.errstate(invalid="ignore"):
        return (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)


def mh_class(description: str) -> str | None:
    """The mental-health-proxy class of a BPD offense description, or None."""
    text = _clean_text(description).upper()
    for pattern, name in MH_CLASS_RULES:
        if re.search(pattern, text):
            return name
    return None


def _derive_proxy(root: Path, out: Path) -> None:
    """The proxy point file: geocoded proxy rows, located in the neighborhood and district polygons."""
    import numpy as np
    import pandas as pd
    import shapely

    from routing.places import _polygons  # the same make_valid repair the engine applies when it reads them

    frame = pd.read_csv(root / "boston-context/incidents_citywide_2023Q1.csv.gz", dtype=str, keep_default_na=False)
    frame["mh_class"] = frame["OFFENSE_DESCRIPTION"].map(mh_class)
    lat = pd.to_numeric(frame["Lat"], errors="coerce")
    lon = pd.to_numeric(frame["Long"], errors="coerce")
    frame = frame[frame["mh_class"].notna() & lat.notna() & lon.notna()].copy()
    frame = frame.drop_duplicates(["INCIDENT_NUMBER", "OFFENSE_DESCRIPTION", "OCCURRED_ON_DATE"])
    points = shapely.points(frame["Long"].astype(float).to_numpy(), frame["Lat"].astype(float).to_numpy())
    for column, path, _key in (("neighborhood", "boston_neighborhoods.geojson", "Name"),
                               ("district_polygon", "bpd_police_districts.geojson", "DISTRICT")):
        polygons = _polygons(root / "boston-context" / path, _key)
        names = np.array(list(polygons), dtype=object)
        tree = shapely.STRtree(list(polygons.values()))
        pi, gi = tree.query(points, predicate="within")
        located = np.full(len(points), "", dtype=object)
        order = np.lexsort((gi, pi))  # a point on a shared border: the first polygon, as routing.places does
        pi, gi = pi[order], gi[order]
        first = np.ones(len(pi), dtype=bool)
        first[1:] = pi[1:] != pi[:-1]
        located[pi[first]] = names[gi[first]]
        frame[column] = located
    frame["source_file"] = "citywide_2023Q1"
    frame["in_check_box"] = _in_box(frame["Long"].astype(float).to_numpy(), frame["Lat"].astype(float).to_numpy())
    with gzip.open(out, "wt", encoding="utf-8", newline="", compresslevel=9) as fh:
        frame[list(PROXY_COLUMNS)].to_csv(fh, index=False)


# ============================================================================================ network

def _fetch_network(root: Path, endpoints: Endpoints, manifest: dict[str, Any], report: FetchReport, force: bool,
                   say: Callable[[str], None]) -> None:
    sources = [s for s in SOURCES if s.kind == "network"]
    targets = [root / s.path for s in sources]
    if not force and all(t.is_file() for t in targets) and _network_passes(root):
        for s in sources:
            report.actions[s.path] = "kept"
            say(f"kept     {s.path} (present and valid)")
        return
    boundary_path = root / "boston/City_of_Boston_Boundary.shp.gz"
    if not boundary_path.is_file():
        raise DataCheckFailed(f"{sources[0].path}: check 'needs' failed: fetch the city boundary first")
    say("fetching boston/boston_{nodes,edges}.csv.gz from OpenStreetMap (osmnx; a few minutes for Boston)")
    from routing.network import _read_bare_shapefile

    boundary = _read_bare_shapefile(boundary_path)
    url = f"{endpoints.overpass}/interpreter"
    graph = download_drive_graph(boundary, endpoints.overpass, name=sources[0].path)
    tmps = [_tmp_beside(t) for t in targets]
    try:
        write_osmnx_csv(graph, tmps[0], tmps[1])
        check_network(tmps[0], tmps[1], names=(sources[0].path, sources[1].path))
    except BaseException:
        for t in tmps:
            t.unlink(missing_ok=True)
        raise
    for tmp, target, source in zip(tmps, targets, sources, strict=True):
        tmp.replace(target)
        manifest[source.path] = _entry(source, url, target, None)
        report.actions[source.path] = "fetched"


def _network_passes(root: Path) -> bool:
    try:
        check_network(root / "boston/boston_nodes.csv.gz", root / "boston/boston_edges.csv.gz")
    except (DataCheckFailed, OSError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _osmnx_settings(overpass_url: str) -> Iterator[Any]:
    import osmnx as ox

    names = ("overpass_url", "overpass_rate_limit", "use_cache", "log_console", "requests_timeout")
    saved = {n: getattr(ox.settings, n) for n in names}
    ox.settings.overpass_url = overpass_url
    # The public Overpass asks clients to wait for a slot; a private or local instance has no /status.
    ox.settings.overpass_rate_limit = overpass_url.rstrip("/") == DEFAULT_OVERPASS_URL
    ox.settings.use_cache = False  # osmnx's cache is a ./cache folder in the working directory
    ox.settings.requests_timeout = 600
    try:
        yield ox
    finally:
        for n, v in saved.items():
            setattr(ox.settings, n, v)


def download_drive_graph(boundary: shapely.Geometry, overpass_url: str, *, name: str = "network"
                         ) -> nx.MultiDiGraph:
    """Boston's osmnx ``drive`` graph (simplified, largest weak component) inside ``boundary`` (lon/lat).

    The query polygon is the boundary closed over water narrower than ~500 m and simplified to 10 m. The
    City's boundary is a land outline: the bridges to Charlestown and East Boston have nodes over water
    outside it, and osmnx's truncation would drop them and cut those neighborhoods off (the shared export,
    made from Nominatim's polygon which includes the water, keeps them). The full-resolution outline would
    also make an Overpass query of megabytes for the same roads.
    """
    import numpy as np
    import shapely
    from pyproj import Transformer

    to_metric = Transformer.from_crs("EPSG:4326", "EPSG:26986", always_xy=True)
    to_lonlat = Transformer.from_crs("EPSG:26986", "EPSG:4326", always_xy=True)
    metric = shapely.transform(boundary, lambda c: np.column_stack(to_metric.transform(c[:, 0], c[:, 1])))
    closed = shapely.simplify(shapely.buffer(shapely.buffer(metric, 250.0), -250.0), 10.0)
    query = shapely.make_valid(shapely.transform(
        closed, lambda c: np.column_stack(to_lonlat.transform(c[:, 0], c[:, 1]))))
    with _osmnx_settings(overpass_url) as ox:
        try:
            return ox.graph_from_polygon(query, network_type="drive", simplify=True, retain_all=False)
        except Exception as exc:  # osmnx/requests failures (HTTP, empty answer): one line naming the file
            raise DownloadFailed(f"{name}: OpenStreetMap download from {overpass_url} failed: "
                                 f"{_one_line(exc)}") from None


def _first_int(value: Any, default: int) -> int:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        match = re.search(r"\d+", str(v)) if v is not None else None
        if match:
            return int(match.group(0))
    return default


def write_osmnx_csv(graph: nx.MultiDiGraph, nodes_path: Path, edges_path: Path) -> None:
    """Write an osmnx graph as the project's CSV export (``maxspeed`` in mph, one edge per (u, v)).

    Parallel edges keep the shortest one (the shared export kept whichever came first).
    """
    from routing.speeds import parse_maxspeed

    osm_ids = list(graph.nodes)
    idx = {osm: i + 1 for i, osm in enumerate(osm_ids)}
    with gzip.open(nodes_path, "wt", encoding="utf-8", newline="", compresslevel=9) as fh:
        writer = csv.writer(fh)
        writer.writerow(NODE_COLUMNS)
        for osm in osm_ids:
            data = graph.nodes[osm]
            writer.writerow([idx[osm], osm, repr(float(data["y"])), repr(float(data["x"]))])
    best: dict[tuple[Any, Any], dict[str, Any]] = {}
    for u, v, data in graph.edges(data=True):
        if (u, v) not in best or float(data.get("length", math.inf)) < float(best[(u, v)].get("length", math.inf)):
            best[(u, v)] = data
    with gzip.open(edges_path, "wt", encoding="utf-8", newline="", compresslevel=9) as fh:
        writer = csv.writer(fh)
        writer.writerow(EDGE_COLUMNS)
        for (u, v), data in best.items():
            highway = data.get("highway", "road")
            # OSM's bare numbers are km/h; parse_maxspeed returns mph, the export's unit.
            mph = parse_maxspeed(data.get("maxspeed"), "kph")
            writer.writerow([idx[u], idx[v], u, v, round(float(data["length"]), 3),
                             highway if isinstance(highway, str) else str(list(highway)),
                             "" if not math.isfinite(mph) else round(mph, 1), _first_int(data.get("lanes"), 1),
                             bool(data.get("oneway", False))])


# ============================================================================================ checks

def check_file(source: Source, path: Path) -> None:
    """Check one output file against its :class:`Source`; raises :class:`DataCheckFailed` naming it."""
    import numpy as np
    import shapely

    name = source.path
    if source.kind == "layer":
        features = _load_feature_collection(name, path)["features"]
        _check_count(name, len(features), source.count)
        for f in features:
            missing = [k for k in source.fields if k not in (f.get("properties") or {})]
            if missing:
                raise DataCheckFailed(f"{name}: check 'schema' failed: feature without {missing}")
            if not (f.get("geometry") or {}).get("coordinates"):
                raise DataCheckFailed(f"{name}: check 'geometry' failed: a feature has no geometry")
        coords = np.array([c for f in features for c in _coords(f["geometry"]["coordinates"])], dtype=float)
        _check_box(name, coords[:, 0], coords[:, 1])
    elif source.kind == "fire":
        rows = _read_csv_rows(name, path, ("name", "street", "lat", "lon"), gz=False)
        _check_count(name, len(rows), source.count)
        _check_box(name, np.array([float(r["lon"]) for r in rows]), np.array([float(r["lat"]) for r in rows]))
    elif source.kind == "boundary":
        from routing.network import _read_bare_shapefile

        try:
            geom = _read_bare_shapefile(path)
        except Exception as exc:  # GDAL on a damaged file
            raise DataCheckFailed(f"{name}: check 'shapefile' failed: {_one_line(exc)}") from None
        parts = len(getattr(geom, "geoms", [geom]))
        _check_count(name, parts, source.count)
        x0, y0, x1, y1 = shapely.bounds(geom)
        _check_box(name, np.array([x0, x1]), np.array([y0, y1]))
        from pyproj import Geod

        area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0]) / 1e6
        if not 80 <= area_km2 <= 250:
            raise DataCheckFailed(f"{name}: check 'area' failed: {area_km2:.0f} km², expected 80-250 (Boston ~125)")
    elif source.kind == "incidents":
        import pandas as pd

        frame = _read_frame(name, path, INCIDENT_COLUMNS)
        _check_count(name, len(frame), source.count)
        when = frame["OCCURRED_ON_DATE"].astype(str).str.slice(0, 10)
        if ((when < INCIDENT_PERIOD[0]) | (when >= INCIDENT_PERIOD[1])).any():
            raise DataCheckFailed(f"{name}: check 'period' failed: rows outside {INCIDENT_PERIOD[0]} .. 2023-03-31")
        lat = pd.to_numeric(frame["Lat"], errors="coerce").to_numpy(float)
        lon = pd.to_numeric(frame["Long"], errors="coerce").to_numpy(float)
        located = np.isfinite(lat) & np.isfinite(lon)
        if located.mean() < 0.5:
            raise DataCheckFailed(f"{name}: check 'geocoded' failed: only {located.mean():.0%} of rows have a location")
        _check_box(name, lon[located], lat[located])
    elif source.kind == "proxy":
        import pandas as pd

        frame = _read_frame(name, path, PROXY_COLUMNS)
        _check_count(name, len(frame), source.count)
        from routing.demand import MH_CLASSES

        bad = sorted(set(frame["mh_class"].astype(str)) - set(MH_CLASSES))
        if bad:
            raise DataCheckFailed(f"{name}: check 'classes' failed: unknown mh_class {bad}")
        _check_box(name, pd.to_numeric(frame["Long"]).to_numpy(float), pd.to_numeric(frame["Lat"]).to_numpy(float))
        if (frame["neighborhood"].fillna("") == "").mean() > 0.05:
            raise DataCheckFailed(f"{name}: check 'neighborhood' failed: over 5% of points in no neighborhood")
    elif source.kind == "network":
        root = path.parent
        check_network(root / "boston_nodes.csv.gz", root / "boston_edges.csv.gz")


def check_network(nodes_path: Path, edges_path: Path, *, names: tuple[str, str] | None = None) -> None:
    """Check the node and edge CSV export (columns, counts, references, Greater Boston, mph speeds)."""
    import pandas as pd

    by_kind = {s.path: s for s in SOURCES if s.kind == "network"}
    n_name, e_name = names or ("boston/boston_nodes.csv.gz", "boston/boston_edges.csv.gz")
    nodes = _read_frame(n_name, nodes_path, NODE_COLUMNS)
    edges = _read_frame(e_name, edges_path, EDGE_COLUMNS)
    _check_count(n_name, len(nodes), by_kind["boston/boston_nodes.csv.gz"].count)
    _check_count(e_name, len(edges), by_kind["boston/boston_edges.csv.gz"].count)
    _check_box(n_name, nodes["lon"].to_numpy(float), nodes["lat"].to_numpy(float))
    if not edges["src"].isin(nodes["idx"]).all() or not edges["dst"].isin(nodes["idx"]).all():
        raise DataCheckFailed(f"{e_name}: check 'references' failed: an edge names a node idx not in the nodes file")
    speed = pd.to_numeric(edges["maxspeed"], errors="coerce").dropna()
    if len(speed) and not speed.between(5, 75).all():
        raise DataCheckFailed(f"{e_name}: check 'maxspeed' failed: values outside 5-75 mph")
    if (pd.to_numeric(edges["length"], errors="coerce").fillna(-1) < 0).any():
        raise DataCheckFailed(f"{e_name}: check 'length' failed: missing or negative edge lengths")


def _read_frame(name: str, path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(path, low_memory=False)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataCheckFailed(f"{name}: check 'csv' failed: {_one_line(exc)}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataCheckFailed(f"{name}: check 'schema' failed: missing column(s) {missing}")
    return frame


def _read_csv_rows(name: str, path: Path, columns: tuple[str, ...], *, gz: bool) -> list[dict[str, str]]:
    try:
        opener = gzip.open if gz else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataCheckFailed(f"{name}: check 'csv' failed: {_one_line(exc)}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataCheckFailed(f"{name}: check 'schema' failed: missing column(s) {missing}")
    try:
        for r in rows:
            float(r["lat"]), float(r["lon"])
    except (TypeError, ValueError):
        raise DataCheckFailed(f"{name}: check 'schema' failed: a lat/lon is not a number") from None
    return rows


def _coords(value: Any) -> Iterator[tuple[float, float]]:
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (int, float)):
        yield float(value[0]), float(value[1])
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _coords(v)


def _check_count(name: str, n: int, expected: tuple[int, int]) -> None:
    low, high = expected
    if not low <= n <= high:
        raise DataCheckFailed(f"{name}: check 'count' failed: {n:,} records, expected {low:,}-{high:,}")


def _check_box(name: str, lon: np.ndarray, lat: np.ndarray) -> None:
    import numpy as np

    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    if lon.size == 0:
        raise DataCheckFailed(f"{name}: check 'bbox' failed: no coordinates")
    inside = _in_box(lon, lat)
    if not inside.all():
        bad = int(np.flatnonzero(~inside)[0])
        raise DataCheckFailed(f"{name}: check 'bbox' failed: point ({lon[bad]:.5f}, {lat[bad]:.5f}) lies outside "
                              f"Greater Boston {GREATER_BOSTON}")


def _count_records(source: Source, path: Path) -> int | None:
    try:
        if source.kind == "layer":
            return len(_load_feature_collection(source.path, path)["features"])
        if source.kind == "boundary":
            return 1
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            return sum(1 for _ in csv.reader(fh)) - 1
    except (OSError, DataCheckFailed, csv.Error):
        return None


# ============================================================================================ records

def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        return dict(doc.get("files", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _write_records(root: Path, manifest: dict[str, Any]) -> None:
    ordered = {s.path: manifest[s.path] for s in SOURCES if s.path in manifest}
    doc = {"generator": "crisis-dispatch data fetch", "layout": "same as the project's shared data folder",
           "files": ordered}
    _atomic_text(root / MANIFEST, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    _atomic_text(root / SOURCES_MD, sources_markdown(ordered))


def _atomic_text(path: Path, text: str) -> None:
    tmp = _tmp_beside(path)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def sources_markdown(files: dict[str, Any]) -> str:
    """The ``SOURCES.md`` of a fetched directory: one row per file, from the manifest."""
    out = io.StringIO()
    out.write("# Sources of this data directory\n\n"
              "Written by `crisis-dispatch data fetch`; `manifest.json` holds the same records. Every file was\n"
              "checked (schema, record count, coordinates inside Greater Boston) before it was kept.\n\n"
              "| file | dataset | page | downloaded from | retrieved | records | sha256 | licence |\n"
              "|---|---|---|---|---|---|---|---|\n")
    for path, e in files.items():
        out.write(f"| `{path}` | {e.get('title', '')} | {e.get('page', '')} | {e.get('url', '')} | "
                  f"{e.get('retrieved', '')} | {e.get('records', '')} | `{str(e.get('sha256', ''))[:16]}…` | "
                  f"{e.get('licence', '')} |\n")
    out.write("\nCaveats: incident reports are police reports, not 911 calls; the proxy file keeps only geocoded\n"
              "rows of five offense classes (see the project's docs/DATA.md). The road network is OpenStreetMap\n"
              "data at the retrieval date: counts differ slightly from the shared export of March 2025.\n")
    return out.getvalue()
