"""``crisis-dispatch data fetch`` against a local stand-in of the public services (loopback only).

A stdlib HTTP server on 127.0.0.1 serves, from pytest's tmp_path, copies of the shared files in the shape the
public services give them: the BostonMaps layers as GeoJSON (the boundary converted from the shared shapefile,
the fire stations from the shared CSV), the hospitals through a CKAN ``package_show`` answer, the incident
export as a CKAN datastore dump, and an Overpass JSON answer built from the shared road network. The fetch
then runs the real osmnx pipeline on it, so the result is checked against the shared folder.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from routing import datafetch
from routing.cli import main

LAYER_IDS = {
    "142500a77e2a4dbeb94a86f7e0b568bc_0": "boundary.geojson",
    "3525b0ee6e6b427f9aab5d0a1d0a1a28_0": "boston_neighborhoods.geojson",
    "9a3a8c427add450eaf45a470245680fc_5": "bpd_police_districts.geojson",
    "e5a0066d38ac4e2abbc7918197a4f6af_6": "bpd_police_stations.geojson",
    "092857c15cbb49e8b214ca5e228317a1_2": "fire.geojson",
    "acedd06b39854088b0f2fefccffebf84_0": "bcyf_community_centers.geojson",
}
INCIDENT_RESOURCE = "b973d8cb-eeb2-4e7e-99da-c92938efc9c0"


class _Server:
    """Serves files of one folder under fixed paths; ``override`` swaps a path's body for a test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.override: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

            def do_GET(self) -> None:
                server._answer(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server._answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _file_for(self, path: str, query: dict[str, list[str]]) -> str | None:
        if path.startswith("/arcgis/datasets/") and path.endswith(".geojson"):
            return LAYER_IDS.get(path.removeprefix("/arcgis/datasets/").removesuffix(".geojson"))
        if path == "/portal/api/3/action/package_show" and query.get("id") == ["hospitals"]:
            return "package_hospitals.json"
        if path == f"/portal/datastore/dump/{INCIDENT_RESOURCE}":
            return "incidents_dump.csv"
        if path.startswith("/files/"):
            return path.removeprefix("/files/")
        if path == "/overpass/interpreter":
            return "overpass.json"
        return None

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        self.requests.append(parts.path)
        name = self._file_for(parts.path, parse_qs(parts.query))
        if parts.path in self.override:
            body = self.override[parts.path]
        elif name is not None and (self.folder / name).is_file():
            body = (self.folder / name).read_bytes()
        else:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def args(self) -> list[str]:
        return ["--portal-url", f"{self.base}/portal", "--arcgis-url", f"{self.base}/arcgis",
                "--overpass-url", f"{self.base}/overpass"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _overpass_from_export(data_dir: Path) -> dict:
    """An Overpass JSON answer holding the shared export's streets: one OSM way per street edge."""
    import pandas as pd

    nodes = pd.read_csv(data_dir / "boston/boston_nodes.csv.gz")
    edges = pd.read_csv(data_dir / "boston/boston_edges.csv.gz")
    osm = dict(zip(nodes["idx"], nodes["osm_idx"], strict=True))
    elements = [{"type": "node", "id": int(r.osm_idx), "lat": float(r.lat), "lon": float(r.lon)}
                for r in nodes.itertuples()]
    seen: set[tuple[int, int]] = set()
    for way_id, r in enumerate(edges.itertuples(), start=1):
        u, v = int(osm[r.src]), int(osm[r.dst])
        if u == v or (v, u) in seen and not r.oneway:
            continue  # a two-way street is one OSM way; osmnx adds the reverse edge itself
        seen.add((u, v))
        highway = str(r.highway)
        if highway.startswith("["):
            highway = highway.split("'")[1]
        tags = {"highway": highway, "oneway": "yes" if r.oneway else "no"}
        if r.maxspeed == r.maxspeed:  # not NaN
            tags["maxspeed"] = f"{int(r.maxspeed)} mph"
        elements.append({"type": "way", "id": way_id, "nodes": [u, v], "tags": tags})
    return {"version": 0.6, "elements": elements}


def _build_served(data_dir: Path, folder: Path, base: str) -> None:
    import pyogrio

    ctx = data_dir / "boston-context"
    for name in ("boston_neighborhoods.geojson", "bpd_police_districts.geojson", "bpd_police_stations.geojson",
                 "hospitals.geojson", "bcyf_community_centers.geojson"):
        shutil.copyfile(ctx / name, folder / name)
    # The portal serves the boundary as GeoJSON; the shared copy is a bare gzipped .shp.
    shp = folder / "City_of_Boston_Boundary.shp"
    with gzip.open(data_dir / "boston/City_of_Boston_Boundary.shp.gz") as fin, open(shp, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    pyogrio.set_gdal_config_options({"SHAPE_RESTORE_SHX": "YES"})
    frame = pyogrio.read_dataframe(shp).set_crs(4326)
    (folder / "boundary.geojson").write_text(frame.to_json(), encoding="utf-8")
    with open(ctx / "bfd_fire_stations.csv", encoding="utf-8") as fh:
        fire = [{"type": "Feature", "properties": {"OBJECTID": i, "NAME": r["name"], "ADDRESS": r["street"]},
                 "geometry": {"type": "Point", "coordinates": [float(r["lon"]), float(r["lat"])]}}
                for i, r in enumerate(csv.DictReader(fh))]
    (folder / "fire.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": fire}))
    package = {"success": True, "result": {"name": "hospitals", "resources": [
        {"format": "CSV", "url": f"{base}/files/missing.csv"},
        {"format": "GeoJSON", "url": f"{base}/files/hospitals.geojson"}]}}
    (folder / "package_hospitals.json").write_text(json.dumps(package))
    # The datastore dump: an ``_id`` column first, every year since 2023 (here: Q1 2023 plus a 2024 row
    # that the fetch must leave out).
    with gzip.open(ctx / "incidents_citywide_2023Q1.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    late = list(body[0])
    late[header.index("OCCURRED_ON_DATE")] = "2024-02-01 10:00:00+00"
    with open(folder / "incidents_dump.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["_id", *header])
        for i, row in enumerate([*body, late], start=1):
            writer.writerow([i, *row])
    (folder / "overpass.json").write_text(json.dumps(_overpass_from_export(data_dir)))


@pytest.fixture(scope="module")
def served(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    folder = tmp_path_factory.mktemp("served")
    server = _Server(folder)
    _build_served(data_dir, folder, server.base)
    yield server
    server.close()


@pytest.fixture(scope="module")
def fetched(served: _Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fetch") / "out"
    assert main(["data", "fetch", "--dir", str(out), *served.args()]) == 0
    return out


def test_layout_and_manifest(fetched: Path, served: _Server) -> None:
    for source in datafetch.SOURCES:
        assert (fetched / source.path).is_file(), source.path
    assert not (fetched / ".partial").exists()
    assert not list(fetched.rglob(".tmp-*"))
    manifest = json.loads((fetched / "manifest.json").read_text())["files"]
    assert set(manifest) == {s.path for s in datafetch.SOURCES}
    for path, entry in manifest.items():
        assert entry["sha256"] == datafetch._sha256(fetched / path)
        assert len(entry["retrieved"]) == 10 and entry["url"]
    assert manifest["boston-context/hospitals.geojson"]["url"] == f"{served.base}/files/hospitals.geojson"
    assert manifest["boston/boston_nodes.csv.gz"]["url"] == f"{served.base}/overpass/interpreter"
    text = (fetched / "SOURCES.md").read_text()
    assert "boston-context/bpd_police_districts.geojson" in text and "https://data.boston.gov/dataset/" in text


def test_layers_equal_the_shared_ones(fetched: Path, data_dir: Path) -> None:
    same = "boston-context/boston_neighborhoods.geojson"
    assert (fetched / same).read_bytes() == (data_dir / same).read_bytes()
    with open(fetched / "boston-context/bfd_fire_stations.csv", encoding="utf-8") as fh:
        fire = list(csv.DictReader(fh))
    assert len(fire) == 35 and fire[1]["name"] == "Engine CO. 3"


def test_incidents_and_proxy_reproduce_the_shared_files(fetched: Path, data_dir: Path) -> None:
    import pandas as pd

    incidents = pd.read_csv(fetched / "boston-context/incidents_citywide_2023Q1.csv.gz")
    assert len(incidents) == 14_527  # the 2024 row is left out
    assert list(incidents.columns) == list(datafetch.INCIDENT_COLUMNS)
    proxy = pd.read_csv(fetched / "boston-context/incidents_mh_proxy_points.csv.gz")
    shared = pd.read_csv(data_dir / "boston-context/incidents_mh_proxy_points.csv.gz", low_memory=False)
    shared = shared[shared["source_file"] == "citywide_2023Q1"]
    assert len(proxy) == len(shared) == 3_004
    assert proxy["mh_class"].value_counts().to_dict() == shared["mh_class"].value_counts().to_dict()
    assert (proxy["neighborhood"].value_counts().head(3).to_dict()
            == shared["neighborhood"].value_counts().head(3).to_dict())


def test_network_and_places_load_from_the_result(fetched: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from routing.network import load_network
    from routing.places import load_places

    network = load_network(fetched)
    assert 10_500 < network.n_nodes < 11_600  # the shared export's largest SCC has 11,249 nodes
    # Charlestown is joined to the rest by bridges over water outside the City's land boundary: a query
    # polygon without the water would lose it (demo's BCYF Charlestown call, EMS-CH's base).
    assert network.snap(42.380995, -71.060951).distance_m < 100
    places = load_places(fetched)
    assert len(places.neighborhoods) == 26 and len(places.districts) == 12
    assert places.boundary is not None and 0.9 < places.boundary.area / load_places().boundary.area < 1.1
    assert main(["network", "info", "--data", str(fetched), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info


def test_rerun_keeps_valid_files(fetched: Path, served: _Server) -> None:
    served.requests.clear()
    assert main(["data", "fetch", "--dir", str(fetched), *served.args(), "--json"]) == 0
    assert served.requests == []  # nothing downloaded again


@pytest.mark.parametrize(("target", "path", "body", "check"), [
    ("boston-context/bpd_police_districts.geojson", "/arcgis/datasets/9a3a8c427add450eaf45a470245680fc_5.geojson",
     b"<html>maintenance</html>", "geojson"),
    ("boston-context/hospitals.geojson", "/files/hospitals.geojson",
     json.dumps({"type": "FeatureCollection", "features": [
         {"type": "Feature", "properties": {"NAME": "x"}, "geometry": {"type": "Point", "coordinates": [-71.06, 42.35]}}
     ] * 30}).encode(), "schema"),
    ("boston-context/bcyf_community_centers.geojson", "/arcgis/datasets/acedd06b39854088b0f2fefccffebf84_0.geojson",
     json.dumps({"type": "FeatureCollection", "features": [
         {"type": "Feature", "properties": {"SITE": "x"}, "geometry": {"type": "Point", "coordinates": [-122.3, 37.8]}}
     ] * 30}).encode(), "bbox"),
    ("boston-context/incidents_citywide_2023Q1.csv.gz", f"/portal/datastore/dump/{INCIDENT_RESOURCE}",
     b"INCIDENT_NUMBER,OFFENSE_CODE\n1,2\n", "schema"),
])
def test_a_bad_file_is_one_line_exit_2(fetched: Path, served: _Server, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], target: str, path: str, body: bytes,
                                       check: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(fetched, out)
    before = json.loads((out / "manifest.json").read_text())["files"][target]
    (out / target).unlink()
    served.override[path] = body
    try:
        code = main(["data", "fetch", "--dir", str(out), *served.args()])
    finally:
        served.override.clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"error: {target}: check '{check}' failed"), err[-1]
    assert not (out / target).exists()  # nothing half-checked is left in place
    assert not list(out.rglob(".tmp-*"))
    # the manifest still describes the files that are there; the rest is fetched by the next run
    assert json.loads((out / "manifest.json").read_text())["files"][target] == before
    capsys.readouterr()
    assert main(["data", "fetch", "--dir", str(out), *served.args()]) == 0
    assert (out / target).is_file()


def test_a_corrupted_local_file_is_fetched_again(fetched: Path, served: _Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(fetched, out)
    target = out / "boston-context/bfd_fire_stations.csv"
    target.write_text("garbage\n")
    served.requests.clear()
    assert main(["data", "fetch", "--dir", str(out), *served.args()]) == 0
    assert served.requests == ["/arcgis/datasets/092857c15cbb49e8b214ca5e228317a1_2.geojson"]
    assert target.read_bytes() == (fetched / "boston-context/bfd_fire_stations.csv").read_bytes()


def test_unreachable_service_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _closed_port() as port:
        code = main(["data", "fetch", "--dir", str(tmp_path / "out"), "--only",
                     "boston-context/bpd_police_stations.geojson", "--arcgis-url", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: boston-context/bpd_police_stations.geojson: download from http://127.0.0.1:")


class _closed_port:
    """A loopback port with nothing listening (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        pass


def test_the_shared_folder_passes_every_check(data_dir: Path) -> None:
    # The checks describe the files the engine reads: the curated shared copies must pass them too.
    for source in datafetch.SOURCES:
        datafetch.check_file(source, data_dir / source.path)
