"""A map made without ``--offline`` (the default ``demo`` map) still draws with no internet.

Leaflet is inlined and the base is the engine's own neighborhoods and streets; the OpenStreetMap tiles are an
optional layer, off on opening, so opening the page requests nothing from the network. Chromium is required.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from maps import base
from maps.browser import Chromium, screenshot_stats

NOW = datetime(2024, 5, 7, 18, 5, tzinfo=UTC)


def test_default_dispatch_map_draws_without_internet(tmp_path: Path, places, boston) -> None:
    from maps.dispatch import dispatch_map
    from routing.cli.dispatch import sample_calls
    from routing.dispatch import suggest
    from routing.fleet import TeamState, load_fleet
    from routing.triage import load_rules

    teams = [TeamState.at_base(t, NOW) for t in load_fleet(places=places)]
    rules = load_rules()
    results = [suggest(c, teams, network=boston, rules=rules, places=places, now=NOW, top=3)
               for c in sample_calls(NOW)[:3]]
    html = base.save_map(dispatch_map(results, network=boston, places=places, offline=False),
                         tmp_path / "demo.html", offline=False)
    with Chromium() as browser:
        report = browser.open(html)
    assert report.leaflet_version == "1.9.3"
    assert report.console_errors == []
    assert report.remote_requests == []
    page = report.map
    tiles = [la for la in page["layers"] if la["name"].startswith("OpenStreetMap tiles")]
    assert len(tiles) == 1 and not tiles[0]["shown"]
    assert any(la["name"] == "Road network" and la["shown"] for la in page["layers"])
    assert "OpenStreetMap contributors" in page["attribution"]
    assert not screenshot_stats(report.screenshot).blank
