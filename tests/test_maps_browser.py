"""Every offline map opened in headless Chromium, as a person would see it.

Each test asserts that Leaflet loaded, the console stayed free of errors, nothing was requested from
the network, the expected markers and layers are in the live page, and the screenshot is a drawn map.
Chromium comes from the system (``apt-get install chromium``; ``$CRISIS_DISPATCH_CHROMIUM`` overrides):
without it these tests FAIL, they never skip. Screenshots are kept in the pytest temporary directory.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maps import base
from maps.browser import BrowserMissing, Chromium, PageReport, color_share, screenshot_stats
from maps.style import CALL_COLOR, RANK_COLORS, STATUS_COLORS

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 5, 7, 18, 5, tzinfo=UTC)  # a Tuesday, 14:05 in Boston


@pytest.fixture(scope="module")
def browser():
    try:
        chromium = Chromium()
    except BrowserMissing as exc:
        pytest.fail(f"{exc}; the browser checks of the maps need it", pytrace=False)
    with chromium:
        yield chromium


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("maps")


def _open(browser: Chromium, html: Path) -> PageReport:
    report = browser.open(html)
    html.with_suffix(".png").write_bytes(report.screenshot or b"")
    return report


def _assert_clean(report: PageReport) -> dict:
    assert report.leaflet_version == "1.9.3"
    assert report.console_errors == []
    assert report.remote_requests == []
    page = report.map
    assert "OpenStreetMap contributors" in page["attribution"]
    assert page["size"] == [1280, 800]
    stats = screenshot_stats(report.screenshot)
    assert (stats.width, stats.height) == (1280, 800)
    assert not stats.blank, stats
    return page


def _layer(page: dict, prefix: str) -> dict:
    found = [la for la in page["layers"] if la["name"].startswith(prefix)]
    assert len(found) == 1, (prefix, [la["name"] for la in page["layers"]])
    return found[0]


# ------------------------------------------------------------------------------------------ the harness
def test_harness_reports_script_errors_remote_loads_and_blank_pages(browser: Chromium, out_dir: Path) -> None:
    bad = out_dir / "bad.html"
    bad.write_text("<html><body><script src='https://cdn.example.invalid/x.js'></script>"
                   "<script>throw new Error('boom');</script></body></html>")
    report = browser.open(bad)
    assert report.leaflet_version is None and report.maps == []
    assert any("boom" in e for e in report.console_errors)
    assert report.remote_requests == ["https://cdn.example.invalid/x.js"]
    assert screenshot_stats(report.screenshot).blank


# ------------------------------------------------------------------------------------------ fleet
def _fleet_file() -> tuple[Counter[str], int, int]:
    """Teams per type, teams in total and distinct staging sites, read straight from data/fleet.toml."""
    doc = tomllib.loads((REPO / "data" / "fleet.toml").read_text())
    types: Counter[str] = Counter()
    sites = set()
    for e in doc["team"]:
        types[e["type"]] += e.get("count", 1)
        sites.add((e["base"], round(e["lat"], 6), round(e["lon"], 6)))
    return types, sum(types.values()), len(sites)


def test_fleet_map_in_browser(browser: Chromium, out_dir: Path, places, boston) -> None:
    from maps.fleet import fleet_map
    from routing.fleet import TeamState, TeamStatus, load_fleet

    states = [TeamState.at_base(t, NOW - timedelta(minutes=5)) for t in load_fleet(places=places)]
    states[0].status = TeamStatus.on_scene
    html = base.save_map(fleet_map(states, places=places, network=boston, now=NOW, offline=True),
                         out_dir / "fleet.html", offline=True)
    page = _assert_clean(_open(browser, html))
    types, n_teams, n_sites = _fleet_file()
    labels = {"co_response": "Co-response", "emt_clinician": "EMT + clinician", "community": "Community",
              "police": "Police patrol", "ems": "EMS ambulance"}
    for ttype, label in labels.items():
        layer = _layer(page, label)
        assert layer["shown"] and layer["counts"]["markers"] == types[ttype]
    sites = _layer(page, "Staging sites in use")
    assert sites["counts"]["markers"] == n_sites
    assert _layer(page, "Neighborhoods")["counts"]["polygons"] == 26
    assert _layer(page, "Road network")["shown"] and page["canvases"] == 1
    assert not _layer(page, "Candidate sites")["shown"]
    # Two dedicated pilot areas (A1+A15, B2), drawn as polygons.
    assert _layer(page, "Service areas, dedicated teams (2)")["counts"]["polygons"] == 2
    # Every team and site is inside the opening view.
    assert page["in_view"] >= n_teams + n_sites
    popup = next(i["popup"] for i in _layer(page, "Co-response")["items"] if "CR-A1" in (i["popup"] or ""))
    assert "Status On scene" in popup and "mental-health calls only, A1, A15" in popup
    assert "Position 5 min ago" in popup
    assert f"{n_teams} teams, {n_teams - 1} dispatchable" in page["title"][0]
    shot = (out_dir / "fleet.png").read_bytes()
    assert color_share(shot, STATUS_COLORS["available"]) > 0.0005  # green badges are drawn
    assert color_share(shot, STATUS_COLORS["on_scene"]) > 0.0001


# ------------------------------------------------------------------------------------------ dispatch
@pytest.fixture(scope="module")
def suggestion(places, boston):
    from routing.dispatch import suggest
    from routing.fleet import TeamState, load_fleet
    from routing.triage import Call, load_rules

    teams = [TeamState.at_base(t, NOW - timedelta(minutes=2)) for t in load_fleet(places=places)]
    # One co-response team last reported 25 minutes ago: its badge must say so.
    k = next(i for i, t in enumerate(teams) if t.team_id == "CR-D4")
    teams[k] = replace(teams[k], position_time=NOW - timedelta(minutes=25))
    call = Call("C-1001", NOW - timedelta(minutes=1), 42.3265, -71.0765, mental_health=True, safety_risk=True)
    return suggest(call, teams, network=boston, rules=load_rules(), places=places, now=NOW), teams


def test_dispatch_map_in_browser(browser: Chromium, out_dir: Path, places, boston, suggestion) -> None:
    from maps.dispatch import dispatch_map

    result, teams = suggestion
    assert len(result.suggestions) >= 3
    html = base.save_map(dispatch_map(result, network=boston, teams=teams, places=places, offline=True),
                         out_dir / "dispatch.html", offline=True)
    page = _assert_clean(_open(browser, html))
    sugg = _layer(page, "Suggested teams")
    assert sugg["counts"]["markers"] == len(result.suggestions)
    assert _layer(page, "Not suggested")["counts"]["markers"] == len(result.ineligible) == len(teams) - len(
        result.suggestions)
    assert _layer(page, "The call")["counts"]["markers"] == 1
    # Three routes, each a white casing plus the coloured line, and the off-street legs as dashes.
    routes = _layer(page, "Routes of the 3 fastest")
    assert 6 <= routes["counts"]["polylines"] <= 12
    # The popup of each suggestion states its rank, team and ETA as the engine computed them.
    popups = [i["popup"] for i in sugg["items"]]
    for s in result.suggestions:
        text = next(p for p in popups if p.startswith(f"#{s.rank} "))
        assert s.team_id in text and f"ETA {base.fmt_duration(s.eta_s)}" in text
        assert ("STALE" in text) == s.stale
    assert any("STALE: reported 25 min ago" in p for p in popups)
    # The ranked table in the side panel lists every suggestion in order.
    panel = page["panels"][0]
    positions = [panel.index(s.team_id) for s in result.suggestions]
    assert positions == sorted(positions)
    shot = (out_dir / "dispatch.png").read_bytes()
    centre = (460, 30, 890, 770)  # the part of the screen between the panels
    assert color_share(shot, RANK_COLORS[0], box=centre) > 0.001  # the fastest route and badge
    assert color_share(shot, CALL_COLOR, box=centre) > 0.0003  # the call's pin


def test_dispatch_routes_match_the_suggested_etas(boston, suggestion) -> None:
    # What the map draws for each route is the engine's own fastest route: same travel time as the ETA.
    result, _ = suggestion
    for s in result.suggestions[:3]:
        route = boston.route((s.lat, s.lon), (result.call.lat, result.call.lon))
        assert route.travel_time_s == pytest.approx(s.eta_s, abs=1.0)


def test_several_calls_map_in_browser(browser: Chromium, out_dir: Path, places, boston) -> None:
    from maps.dispatch import dispatch_map
    from routing.cli.dispatch import sample_calls
    from routing.dispatch import suggest
    from routing.fleet import TeamState, load_fleet
    from routing.triage import load_rules

    teams = [TeamState.at_base(t, NOW) for t in load_fleet(places=places)]
    rules = load_rules()
    results = [suggest(c, teams, network=boston, rules=rules, places=places, now=NOW, top=3)
               for c in sample_calls(NOW)[:4]]
    html = base.save_map(dispatch_map(results, network=boston, places=places, offline=True),
                         out_dir / "calls.html", offline=True)
    page = _assert_clean(_open(browser, html))
    for k, r in enumerate(results, start=1):
        layer = _layer(page, f"Call {k} {r.call.call_id}:")
        assert layer["counts"]["markers"] == 1 + len(r.suggestions)
        assert r.best.team_id in layer["name"]
    assert page["in_view"] >= len(results)


# ------------------------------------------------------------------------------------------ coverage
def test_coverage_map_in_browser(browser: Chromium, out_dir: Path, places, boston) -> None:
    from maps.coverage import coverage_map
    from maps.style import SHARE_COLORS
    from routing.coverage import fleet_coverage
    from routing.fleet import load_fleet

    result = fleet_coverage(load_fleet(places=places), network=boston, places=places, minutes=8,
                            team_types="emt_clinician", from_staging=True)
    html = base.save_map(coverage_map(result, network=boston, places=places, offline=True),
                         out_dir / "coverage.html", offline=True)
    page = _assert_clean(_open(browser, html))
    types, _, _ = _fleet_file()
    assert _layer(page, "Responders")["counts"]["markers"] == types["emt_clinician"]
    shaded = _layer(page, "Neighborhoods: share reached within 8 min")
    assert shaded["shown"] and shaded["counts"]["polygons"] == len(places.neighborhoods)
    # Each neighborhood is shaded in the bin of its own covered share (edges 20/40/60/80/95 %).
    fills = {i["name"]: i["fill"] for i in shaded["items"]}
    for n in result.neighborhoods:
        if n.covered_share is not None:
            k = sum(n.covered_share >= e for e in (0.2, 0.4, 0.6, 0.8, 0.95))
            assert fills[n.name] == SHARE_COLORS[k], n.name
    # Hyde Park lies beyond 8 minutes of all three EMT + clinician bases (Albany St, Tufts MC, Dorchester).
    assert fills["Hyde Park"] == SHARE_COLORS[0]
    for name in ("Neighborhoods: calls a year not reached", "Streets: travel time", "Demand"):
        assert not _layer(page, name)["shown"]
    assert _layer(page, "Demand")["counts"]["heat"] == 1
    # The side panel ranks the gaps as the engine did, the largest first.
    panel = page["panels"][0]
    gaps = [g["name"] for g in result.gaps[:10]]
    assert [panel.index(f"\t{g}\t") for g in gaps] == sorted(panel.index(f"\t{g}\t") for g in gaps)
    shot = (out_dir / "coverage.png").read_bytes()
    assert color_share(shot, "#c9505d", tolerance=40) > 0.01  # red (poorly covered) neighborhoods are drawn


# ------------------------------------------------------------------------------------------ staging
def test_staging_map_in_browser(browser: Chromium, out_dir: Path, places, boston) -> None:
    from maps.staging import CATCHMENT_COLORS, staging_map
    from routing.fleet import load_fleet
    from routing.staging import build_problem, plan_staging, today_sites

    crisis = ("co_response", "emt_clinician", "community")
    today = today_sites(load_fleet(places=places), list(crisis))
    problem = build_problem(boston, places)
    plan = plan_staging(problem, "mclp", minutes=8, p=len(today), today=today, time_limit_s=60)
    html = base.save_map(staging_map(plan, network=boston, places=places, problem=problem, offline=True),
                         out_dir / "staging.html", offline=True)
    page = _assert_clean(_open(browser, html))
    # Today's sites: the distinct bases of the crisis teams in the fleet file.
    doc = tomllib.loads((REPO / "data" / "fleet.toml").read_text())
    bases = {(e["base"], round(e["lat"], 6), round(e["lon"], 6)) for e in doc["team"] if e["type"] in crisis}
    assert _layer(page, "Today's staging sites")["counts"]["markers"] == len(bases) == len(today)
    proposed = _layer(page, "Proposed sites")
    assert proposed["counts"]["markers"] == len(plan.sites) == len(today)
    for k, s in enumerate(plan.sites, start=1):
        text = next(i["popup"] for i in proposed["items"] if i["popup"].startswith(f"{k}. "))
        assert s.name in text and f"Calls served a year (nearest site) {s.demand_served:,.0f}" in text
    assert _layer(page, "Streets: first proposed site")["shown"]
    assert not _layer(page, "Streets: change against today")["shown"]
    panel = page["panels"][0]
    assert [panel.index(s.name[:32]) for s in plan.sites] == sorted(panel.index(s.name[:32]) for s in plan.sites)
    shot = (out_dir / "staging.png").read_bytes()
    assert color_share(shot, CATCHMENT_COLORS[0]) > 0.001  # the first site's catchment streets
