"""Maps without a browser: offline asset inlining, the remote-reference scan, base layers, fleet map HTML.

What the page looks like in a real browser is checked in test_maps_browser.py.
"""

from __future__ import annotations

import base64
import re
import tomllib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import folium
import numpy as np
import pytest
import xstatic.pkg.jquery
import xstatic.pkg.leaflet

from maps import base
from maps.assets import asset_data_uri, make_offline, remote_references
from maps.fleet import fleet_map, spread_offsets

REPO = Path(__file__).resolve().parent.parent


def _plain(page: str) -> str:
    """The page with the JSON escaping of HTML inside its scripts undone (what the browser will show)."""
    for escaped, plain in (("\\u003c", "<"), ("\\u003e", ">"), ("\\u0026", "&"), ('\\"', '"')):
        page = page.replace(escaped, plain)
    return page


def _decode(uri: str) -> bytes:
    head, payload = uri.split(",", 1)
    assert head.endswith(";base64")
    return base64.b64decode(payload)


# ------------------------------------------------------------------------------------------ assets
def test_leaflet_is_inlined_byte_for_byte_from_the_installed_package() -> None:
    original = (Path(xstatic.pkg.leaflet.BASE_DIR) / "leaflet.js").read_bytes()
    inlined = _decode(asset_data_uri("leaflet"))
    # Only the trailing source-map comment is removed.
    assert re.sub(rb"\n//# sourceMappingURL=\S+\s*$", b"", original).rstrip() == inlined.rstrip()
    assert b"1.9.3" in inlined[:200]
    jq = (Path(xstatic.pkg.jquery.BASE_DIR) / "jquery.min.js").read_bytes()
    assert b"jQuery v3.7.1" in jq[:100] and _decode(asset_data_uri("jquery"))[:60] == jq[:60]


def test_leaflet_css_images_become_data_uris() -> None:
    css = _decode(asset_data_uri("leaflet_css")).decode()
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    # leaflet.css refers to layers.png, layers-2x.png and marker-icon.png (plus a VML behaviour).
    assert len([u for u in urls if u.startswith("data:image/png")]) == 3
    assert not [u for u in urls if not u.startswith(("data:", "#"))]


def test_make_offline_leaves_folium_defaults_alone() -> None:
    before = list(folium.Map.default_js)
    m = folium.Map(tiles=None)
    make_offline(m)
    assert folium.Map.default_js == before
    online = folium.Map(tiles=None).get_root().render()
    assert "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js" in online
    offline = m.get_root().render()
    assert "cdn.jsdelivr" not in offline and "bootstrap" not in offline
    assert remote_references(offline) == []


def test_make_offline_refuses_a_plugin_without_local_copy() -> None:
    from folium.plugins import Fullscreen

    m = folium.Map(tiles=None)
    Fullscreen().add_to(m)
    with pytest.raises(ValueError, match="no local copy"):
        make_offline(m)


def test_heat_plugin_is_served_from_folium_itself() -> None:
    from folium.plugins import HeatMap

    m = folium.Map(tiles=None)
    HeatMap([[42.35, -71.06, 1.0]]).add_to(m)
    make_offline(m)
    page = m.get_root().render()
    assert remote_references(page) == []
    assert "L.heatLayer(" in page
    assert any(b"heatLayer" in _decode(u) for u in re.findall(r'src="(data:text/javascript;base64,[^"]+)"', page))


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('<script src="https://cdn.example.org/x.js"></script>', ["https://cdn.example.org/x.js"]),
        ('<link rel="stylesheet" href="//cdn.example.org/x.css"/>', ["//cdn.example.org/x.css"]),
        ('<img src="http://tiles.example.org/1/2/3.png">', ["http://tiles.example.org/1/2/3.png"]),
        ('<script>L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png")</script>',
         ["https://tile.openstreetmap.org/{z}/{x}/{y}.png"]),
        ('<a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>', []),
        # The attribution as folium writes it into a script: JSON-escaped markup.
        ('<script>x.addAttribution("\\u0026copy; \\u003ca href=\\"https://www.openstreetmap.org/copyright\\"'
         '\\u003eOSM\\u003c/a\\u003e")</script>', []),
        ('<script src="data:text/javascript;base64,QUJD"></script>', []),
    ],
)
def test_remote_reference_scan(snippet: str, expected: list[str]) -> None:
    assert remote_references(f"<html><head>{snippet}</head></html>") == expected


def test_remote_reference_scan_reads_inlined_stylesheets() -> None:
    css = "/* see https://bugs.example.org/1 */ .a { background: url(https://evil.example.org/b.png) }"
    uri = "data:text/css;base64," + base64.b64encode(css.encode()).decode()
    assert remote_references(f'<link rel="stylesheet" href="{uri}"/>') == ["https://evil.example.org/b.png"]


# ------------------------------------------------------------------------------------------ base pieces
def test_road_polylines_merges_chains_and_draws_two_way_streets_once() -> None:
    #  0 - 1 - 2 - 3        two-way street 0..3 through degree-2 nodes 1, 2: one polyline
    #          |            a one-way spur 2 -> 4: its own polyline (2 is a junction)
    #          4
    lon = np.array([0.0, 1.0, 2.0, 3.0, 2.0]) * 1e-3 - 71.0
    lat = np.array([0.0, 0.0, 0.0, 0.0, -1.0]) * 1e-3 + 42.3
    pairs = [(0, 1), (1, 2), (2, 3)]
    src = [a for a, b in pairs] + [b for a, b in pairs] + [2]
    dst = [b for a, b in pairs] + [a for a, b in pairs] + [4]
    net = SimpleNamespace(edges=(np.array(src), np.array(dst)), lon=lon, lat=lat)
    lines = base.road_polylines(net)
    assert set(lines) == {"minor", "road", "medium", "major"}
    got = sorted(tuple(round((x + 71.0) * 1e3) for x, _ in line) for line in lines["road"])
    # Node 2 has degree 3, so the street splits there: 0-1-2, 2-3 and the spur 2-4.
    assert got == [(0, 1, 2), (2, 2), (2, 3)]
    segments = sum(len(line) - 1 for line in lines["road"])
    assert segments == 4  # 3 two-way streets once each + 1 spur


def test_road_classes_when_the_network_has_them() -> None:
    lon = np.array([0.0, 1.0, 2.0]) * 1e-3 - 71.0
    lat = np.zeros(3) + 42.3
    net = SimpleNamespace(edges=(np.array([0, 1]), np.array([1, 2])), lon=lon, lat=lat,
                          edge_highway=np.array(["primary", "['residential', 'living_street']"], dtype=object))
    lines = base.road_polylines(net)
    assert len(lines["major"]) == 1 and len(lines["minor"]) == 1 and not lines["road"]


def test_spread_offsets_fans_out_only_shared_spots() -> None:
    pts = [(42.3, -71.0), (42.3, -71.0), (42.3, -71.0), (42.31, -71.0)]
    off = spread_offsets(pts, radius_px=15)
    assert off[3] == (0.0, 0.0)
    radii = [round((dx * dx + dy * dy) ** 0.5, 6) for dx, dy in off[:3]]
    assert len(set(radii)) == 1 and radii[0] == 18.0  # 15 + 3 per marker beyond two
    assert len({(round(dx, 6), round(dy, 6)) for dx, dy in off[:3]}) == 3


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.4, "59 s"), (245, "4 min 05 s"), (3600, "1 h 00 min"), (float("inf"), "unreachable")],
)
def test_fmt_duration(seconds: float, text: str) -> None:
    assert base.fmt_duration(seconds) == text


def test_escape_blocks_markup_and_template_literals() -> None:
    assert base.esc("<b>${x}`") == "&lt;b&gt;&#36;{x}&#96;"


def test_new_map_rejects_nan_bounds() -> None:
    with pytest.raises(ValueError):
        base.new_map((float("nan"), 42.2, -71.0, 42.4), offline=True, title="x")


# ------------------------------------------------------------------------------------------ fleet map
def _fleet_states(places, now):
    from routing.fleet import TeamState, TeamStatus, load_fleet

    teams = load_fleet(places=places)
    states = [TeamState.at_base(t, now - timedelta(minutes=7)) for t in teams]
    states[0].status = TeamStatus.on_scene
    states[1].status = TeamStatus.off_shift
    return states


def _toml_types() -> Counter[str]:
    # Independent count straight from the fleet file (``count = N`` makes N teams).
    doc = tomllib.loads((REPO / "data" / "fleet.toml").read_text())
    c: Counter[str] = Counter()
    for entry in doc["team"]:
        c[entry["type"]] += entry.get("count", 1)
    return c


def test_fleet_map_offline_html_is_self_contained(places, boston, tmp_path: Path) -> None:
    now = datetime(2024, 5, 7, 18, 0, tzinfo=UTC)
    states = _fleet_states(places, now)
    m = fleet_map(states, places=places, network=boston, now=now, offline=True)
    out = base.save_map(m, tmp_path / "fleet.html", offline=True)
    page = _plain(out.read_text())
    assert remote_references(page) == []
    assert "tile.openstreetmap.org" not in page
    assert "OpenStreetMap</a> contributors" in page
    types = _toml_types()
    assert f"Police patrol ({types['police']}," in page
    assert f"EMS ambulance ({types['ems']}," in page
    # 34 teams in the default fleet, one on scene and one off shift.
    assert f"{sum(types.values())} teams, <b>{sum(types.values()) - 2} dispatchable</b>" in page
    assert "Tue 2024-05-07 14:00 (Boston time)" in page  # 18:00 UTC is 14:00 EDT


def test_fleet_map_online_offers_tiles_but_never_needs_a_cdn(places, tmp_path: Path) -> None:
    now = datetime(2024, 5, 7, 18, 0, tzinfo=UTC)
    m = fleet_map(_fleet_states(places, now), places=places, now=now, offline=False)
    page = base.save_map(m, tmp_path / "fleet.html", offline=False).read_text()
    # The tiles are an optional layer (off on opening) over the offline base; Leaflet is inlined, so the page
    # draws the same without internet.
    assert "https://tile.openstreetmap.org/{z}/{x}/{y}.png" in page
    assert '"pane": "cd-tiles"' in page
    assert remote_references(page) == ["https://tile.openstreetmap.org/{z}/{x}/{y}.png"]
    assert "cdn.jsdelivr" not in page
    assert "openstreetmap.org/copyright" in page
    with pytest.raises(ValueError, match="remote"):
        base.save_map(m, tmp_path / "bad.html", offline=True)
    assert not (tmp_path / "bad.html").exists()


# ------------------------------------------------------------------------------------------ CLI
def test_cli_map_fleet_and_dispatch_write_self_contained_pages(data_dir, tmp_path: Path, capsys) -> None:
    import json

    from routing.cli import main

    fleet_out = tmp_path / "fleet.html"
    assert main(["map", "fleet", "--out", str(fleet_out), "--offline", "--at-base", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["map"] == "fleet" and report["offline"] is True and report["teams"] == sum(_toml_types().values())
    assert remote_references(fleet_out.read_text()) == []

    one = tmp_path / "one.html"
    code = main(["map", "dispatch", "--lat", "42.3265", "--lon", "-71.0765", "--mental-health", "--call-id", "T-1",
                 "--db", str(tmp_path / "fleet.db"), "--out", str(one), "--offline", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"][0]["call_id"] == "T-1" and report["calls"][0]["team_id"]
    page = _plain(one.read_text())
    assert remote_references(page) == [] and "Call T-1: suggested teams" in page


def test_cli_map_errors_are_one_line(data_dir, tmp_path: Path, capsys) -> None:
    from routing.cli import main

    code = main(["map", "dispatch", "--demo", "--lat", "42.3", "--lon", "-71.06", "--out", str(tmp_path / "x.html")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["map", "fleet", "--out", str(tmp_path / "missing" / "x.html")])
    assert exc.value.code == 2
    assert "directory of --out does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.html"))


def test_offline_setting_from_environment(data_dir, tmp_path: Path, monkeypatch, capsys) -> None:
    from routing.cli import main

    monkeypatch.setenv("CRISIS_DISPATCH_OFFLINE", "1")
    out = tmp_path / "fleet.html"
    assert main(["map", "fleet", "--out", str(out), "--at-base"]) == 0
    assert "offline, self-contained" in capsys.readouterr().out
    assert remote_references(out.read_text()) == [] and "tile.openstreetmap.org" not in out.read_text()


# ------------------------------------------------------------------------------------------ analysis layers
def test_step_colors_and_band_labels() -> None:
    from maps.layers import band_labels, step_colors

    assert step_colors([0.1, 0.2, 0.39, 0.4, 0.99], [0.2, 0.4], ["a", "b", "c"]) == ["a", "b", "b", "c", "c"]
    assert band_labels((4, 8)) == ["0-4 min", "4-8 min", "over 8 min"]
    with pytest.raises(ValueError):
        step_colors([1.0], [0.5], ["a"])


def test_eta_streets_take_the_band_of_their_slower_end() -> None:
    from maps.layers import add_eta_streets

    #  0 --- 1 --- 2      reached at 0 s, 200 s and 700 s; bands 4 and 8 minutes
    net = SimpleNamespace(edges=(np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1])),
                          lon=np.array([-71.0, -70.999, -70.998]), lat=np.array([42.3, 42.3, 42.3]))
    m = folium.Map(tiles=None)
    layer = add_eta_streets(m, net, np.array([0.0, 200.0, 700.0]), name="t", bands_min=(4, 8),
                            colors=("#0f0", "#ff0", "#f00"))
    by_class = {f["properties"]["cls"]: f["geometry"]["coordinates"] for f in layer.data["features"]}
    assert set(by_class) == {"0", "2"}  # 0-1 within 4 min; 1-2 beyond 8 min; nothing in 4-8
    assert by_class["0"] == [[[-71.0, 42.3], [-70.999, 42.3]]]
    assert layer.styles["2"]["color"] == "#f00"
    with pytest.raises(ValueError, match="one value per node"):
        add_eta_streets(m, net, np.zeros(2), name="t")


def test_coverage_bands_put_the_standard_on_an_edge() -> None:
    from maps.coverage import coverage_bands

    assert coverage_bands(8) == (4, 8, 12, 16)


def test_dispatch_map_places_teams_from_the_result_alone(places, boston) -> None:
    from maps.dispatch import dispatch_map
    from routing.dispatch import suggest
    from routing.fleet import TeamState, load_fleet
    from routing.triage import Call, load_rules

    now = datetime(2024, 5, 7, 18, 0, tzinfo=UTC)
    teams = [TeamState.at_base(t, now) for t in load_fleet(places=places)]
    call = Call("C-7", now, 42.3265, -71.0765, mental_health=True)
    result = suggest(call, teams, network=boston, rules=load_rules(), places=places, now=now)
    page = _plain(dispatch_map(result, network=boston, offline=True).get_root().render())
    # Without the team list, the teams not suggested are placed from result.to_geojson().
    assert page.count("(not suggested)</b>") == len(result.ineligible) > 0
    assert page.count("ETA</td><td><b>") == len(result.suggestions) > 0
    with pytest.raises(ValueError, match="routes"):
        dispatch_map(result, network=boston, routes=-1)


def test_cli_map_coverage_and_staging(data_dir, tmp_path: Path, capsys) -> None:
    import json

    from routing.cli import main

    cov = tmp_path / "coverage.html"
    assert main(["map", "coverage", "--team-type", "emt_clinician", "--minutes", "8", "--from-staging",
                 "--out", str(cov), "--offline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["map"] == "coverage"
    page = _plain(cov.read_text())
    assert remote_references(page) == [] and "Coverage within 8 min" in page

    stg = tmp_path / "staging.html"
    assert main(["map", "staging", "--minutes", "8", "--sites", "4", "--kinds", "police", "--out", str(stg)]) == 0
    assert "online" in capsys.readouterr().out
    page = _plain(stg.read_text())
    assert "Staging plan: 4 sites, 8-minute standard" in page and "tile.openstreetmap.org" in page
