"""Coverage analysis on Boston: ETA surfaces against brute force, neighborhood summaries, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from routing import coverage as cv
from routing.errors import InvalidInput
from routing.fleet import TeamState, TeamStatus, load_fleet

NOW = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demand(boston, places):
    return cv.default_demand(boston, places)


@pytest.fixture(scope="module")
def fleet(places):
    return load_fleet(places=places)


def _brute_eta(net, points):
    # Per point, one search from each node where it joins the network (phantom node: the end(s) of its
    # road segment it may drive to), plus the partial segment and the off-network leg.
    rows = []
    for lat, lon in points:
        snap = net.snap(lat, lon)
        nodes, part_s, _ = net.snap_exits(snap)
        rows.append(np.min([net.travel_times_from(int(x)) + t for x, t in zip(nodes, part_s, strict=True)],
                           axis=0) + snap.time_s)
    return np.array(rows)


def test_eta_surface_is_the_nearest_responder(boston):
    # Three real sites (BPD A-1, BPD B-2, BCYF Hyde Park) and a point 100 m off a road.
    points = [(42.361825, -71.060308), (42.328262, -71.084109), (42.256425, -71.120992), (42.3005, -71.1001)]
    responders = [cv.Responder(f"r{k}", lat, lon) for k, (lat, lon) in enumerate(points)]
    eta, nearest, skipped = cv.eta_surface(boston, responders)
    table = _brute_eta(boston, points)
    assert not skipped
    assert np.allclose(eta, table.min(axis=0), rtol=0, atol=1e-6)
    assert np.allclose(table[nearest, np.arange(boston.n_nodes)], eta, rtol=0, atol=1e-6)
    # A responder far outside the city is reported, not silently snapped.
    eta2, _, skipped = cv.eta_surface(boston, [*responders, cv.Responder("nyc", 40.7128, -74.0060)])
    assert [s["label"] for s in skipped] == ["nyc"] and np.allclose(eta2, eta)


def test_service_area_limits_what_a_team_covers(boston, places):
    r = cv.Responder("b2", 42.328262, -71.084109, ("B2",))
    eta, _, _ = cv.eta_surface(boston, [r], places)
    _, district = places.locate_many(boston.lat, boston.lon)
    inside = district == "B2"
    assert np.isinf(eta[~inside & np.array([d is not None for d in district])]).all()
    assert np.isfinite(eta[inside]).all()


def test_every_neighborhood_with_roads_appears_and_sums_hold(boston, places, demand, fleet):
    res = cv.fleet_coverage(fleet, network=boston, places=places, minutes=8, team_types="co_response",
                            demand=demand, from_staging=True)
    names = [n.name for n in res.neighborhoods]
    assert len(names) == 25 and "Harbor Islands" not in names  # SOURCES.md: nodes in 25 neighborhoods
    assert set(names) == set(places.neighborhoods) - {"Harbor Islands"}
    assert sum(n.nodes for n in res.neighborhoods) == boston.n_nodes
    assert sum(n.demand for n in res.neighborhoods) == pytest.approx(res.total_demand)
    # Independent recount: every co-response base, restricted by Team.serves where it has an area.
    teams = [t for t in fleet if t.team_type.value == "co_response"]
    table = _brute_eta(boston, [(t.base_lat, t.base_lon) for t in teams])
    nbhd, district = places.locate_many(boston.lat, boston.lon)
    located = np.array([n is not None and d is not None for n, d in zip(nbhd, district, strict=True)])
    for k, t in enumerate(teams):
        if t.service_area:
            serves = np.array([t.serves(n, d) for n, d in zip(nbhd, district, strict=True)])
            table[k, ~serves] = np.inf
    assert any(t.service_area for t in teams) and any(not t.service_area for t in teams)
    assert np.allclose(res.eta_s[located], table.min(axis=0)[located], rtol=0, atol=1e-6)
    w = demand.weights
    assert res.overall_covered_share == pytest.approx(w[res.eta_s <= 480].sum() / w.sum())
    # Gaps: ranked by uncovered demand, each equal to demand minus covered demand.
    unc = [g["uncovered_demand"] for g in res.gaps]
    assert unc == sorted(unc, reverse=True) and all(u > 0 for u in unc)
    by_name = {n.name: n for n in res.neighborhoods}
    for g in res.gaps:
        n = by_name[g["name"]]
        assert g["uncovered_demand"] == pytest.approx(n.demand - n.covered_demand)


def test_weighted_eta_quantiles(boston, places, demand, fleet):
    res = cv.fleet_coverage(fleet, network=boston, places=places, minutes=10, team_types="emt_clinician",
                            demand=demand, from_staging=True)
    nbhd = res.node_neighborhood
    for n in res.neighborhoods[:6]:
        idx = np.flatnonzero(nbhd == n.name)
        eta, w = res.eta_s[idx], demand.weights[idx]
        # Smallest ETA with at least half (90%) of the neighborhood's demand at or below it.
        for q, got in ((0.5, n.median_eta_s), (0.9, n.p90_eta_s)):
            below = np.array([w[eta <= e].sum() for e in eta])
            expected = eta[below >= q * w.sum() - 1e-9].min()
            assert got == pytest.approx(expected)


def test_covered_share_grows_with_the_standard_and_the_fleet(boston, places, demand, fleet):
    shares = [cv.fleet_coverage(fleet, network=boston, places=places, minutes=m, team_types="ems",
                                demand=demand, from_staging=True).overall_covered_share for m in (3, 5, 8, 12)]
    assert shares == sorted(shares) and shares[0] < shares[-1]
    one = cv.fleet_coverage(fleet, network=boston, places=places, minutes=6, team_types="community",
                            demand=demand, from_staging=True).overall_covered_share
    more = cv.fleet_coverage(fleet, network=boston, places=places, minutes=6,
                             team_types=["community", "emt_clinician"], demand=demand,
                             from_staging=True).overall_covered_share
    assert more > one


def test_live_positions_and_status(boston, places, demand, fleet):
    states = [TeamState.at_base(t, NOW) for t in fleet]
    emt = [s for s in states if s.team.team_type.value == "emt_clinician"]
    busy = replace(emt[0], status=TeamStatus.on_scene)
    moved = emt[1].moved(42.3467, -71.0972, NOW)  # Fenway, near Kenmore Square
    states = [busy if s is emt[0] else moved if s is emt[1] else s for s in states]
    res = cv.fleet_coverage(states, network=boston, places=places, minutes=8, team_types="emt_clinician",
                            demand=demand)
    assert emt[0].team_id not in res.responders
    assert {"label": emt[0].team_id, "reason": "status on_scene"} in res.excluded
    points = [(s.lat, s.lon) for s in (moved, emt[2])]
    assert np.allclose(res.eta_s, _brute_eta(boston, points).min(axis=0), atol=1e-6)
    # From staging, every team counts at its base whatever its status.
    staged = cv.fleet_coverage(states, network=boston, places=places, minutes=8, team_types="emt_clinician",
                               demand=demand, from_staging=True)
    assert len(staged.responders) == len(emt)


def test_no_teams_means_nothing_covered(boston, places, demand, fleet):
    states = [replace(TeamState.at_base(t, NOW), status=TeamStatus.off_shift) for t in fleet]
    res = cv.fleet_coverage(states, network=boston, places=places, minutes=8, demand=demand)
    assert res.overall_covered_share == 0.0 and res.median_eta_s is None
    assert len(res.gaps) == 25
    json.dumps(res.to_dict(), allow_nan=False)


def test_bad_input(boston, places, demand, fleet):
    with pytest.raises(InvalidInput, match="minutes"):
        cv.fleet_coverage(fleet, network=boston, places=places, minutes=0, demand=demand)
    with pytest.raises(InvalidInput, match="minutes"):
        cv.fleet_coverage(fleet, network=boston, places=places, minutes=float("nan"), demand=demand)
    with pytest.raises(InvalidInput, match="unknown team type"):
        cv.fleet_coverage(fleet, network=boston, places=places, minutes=8, team_types="firefly", demand=demand)


def test_eligible_fleet_of_a_call_class():
    from routing.triage import load_rules

    rules = load_rules()
    # data/rules.toml: MH + risk -> co_response then police; MH -> emt_clinician, community, co_response.
    assert cv.eligible_team_types(rules, safety_risk=True) == ["co_response", "police"]
    assert cv.eligible_team_types(rules) == ["emt_clinician", "community", "co_response"]


def test_geojson(boston, places, demand, fleet):
    res = cv.fleet_coverage(fleet, network=boston, places=places, minutes=8, team_types="police",
                            demand=demand, from_staging=True)
    nodes = res.to_geojson("node")
    assert len(nodes["features"]) == boston.n_nodes
    lon, lat = nodes["features"][0]["geometry"]["coordinates"]
    assert -71.2 < lon < -70.9 and 42.2 < lat < 42.4  # RFC 7946 order: lon, lat
    polys = res.to_geojson()
    assert len(polys["features"]) == 25
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in polys["features"])
    json.dumps(polys, allow_nan=False)


def test_cli_coverage_and_stage(tmp_path, data_dir, capsys):
    from routing.cli import main

    out = tmp_path / "cov.geojson"
    code = main(["coverage", "--team-type", "co_response", "--minutes", "8", "--from-staging", "--json",
                 "--geojson", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert 0 < doc["overall_covered_share"] < 1
    assert set(doc["neighborhoods"][0]) >= {"name", "demand", "covered_share", "median_eta_s", "p90_eta_s"}
    assert doc["gaps"] and json.loads(out.read_text())["type"] == "FeatureCollection"

    code = main(["coverage", "--team-type", "co_response", "--minutes", "8", "--db", str(tmp_path / "f.db"),
                 "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["label"].endswith("(current positions)")

    code = main(["stage", "--model", "mclp", "--sites", "4", "--minutes", "8", "--team-type", "co_response",
                 "--fixed", "police:B2", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "optimal" and doc["gap"] == 0 and len(doc["sites"]) == 4
    assert "police:B2" in [s["id"] for s in doc["sites"]]
    assert doc["comparison"]["today_n_sites"] == 5  # data/fleet.toml: co-response at 5 BPD stations

    assert main(["stage", "--model", "lscp", "--minutes", "2"]) == 2
    assert "--allow-uncoverable" in capsys.readouterr().err
    assert main(["stage", "--model", "mclp", "--sites", "3", "--minutes", "8", "--fixed", "nowhere:1"]) == 2
    assert "unknown candidate site" in capsys.readouterr().err
    assert main(["coverage", "--team-type", "nope", "--minutes", "8", "--from-staging"]) == 2
