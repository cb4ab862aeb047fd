"""The public Python API: lazy ``import routing``, ``routing.City``, and the results as tables and geo-tables."""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import routing as rd
from routing.units import format_eta

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 3, 5, 19, 30, tzinfo=UTC)  # a Tuesday, 14:30 in Boston


def _run(code: str) -> subprocess.CompletedProcess[str]:
    # The working tree's package, whatever copy is installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows as dicts, NaN back to None (what to_dict() holds)."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return out


# ------------------------------------------------------------------------------------------ import routing
def test_import_routing_loads_no_scientific_library() -> None:
    proc = _run("import routing, sys; print(routing.__version__); "
                "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules, 'eager import'")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", proc.stdout.strip())


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    proc = _run("import sys, routing as rd\n"
                "missing = [n for n in rd.__all__ if getattr(rd, n, None) is None]\n"
                "assert not missing, missing\n"
                "assert rd.simulate is sys.modules['routing.simulation'].simulate\n"
                "assert rd.coverage is sys.modules['routing.coverage']  # the module keeps its name\n"
                "print(len(rd.__all__))")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(rd.__all__)


def test_all_matches_the_lazy_table_and_dir() -> None:
    assert set(rd.__all__) == {"__version__", *rd._EXPORTS}
    assert len(rd.__all__) == len(set(rd.__all__))
    assert set(rd.__all__) <= set(dir(rd))
    for name, module in rd._EXPORTS.items():
        value = getattr(importlib.import_module(module), name)
        assert getattr(rd, name) is value, name
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        rd.no_such_name  # noqa: B018


def test_simulate_is_the_function_whatever_was_imported_first() -> None:
    # The module is routing.simulation, so importing it never puts a module where the function belongs.
    proc = _run("import routing.simulation, routing as rd, inspect\n"
                "assert inspect.isfunction(rd.simulate), type(rd.simulate)\n"
                "assert rd.simulate is routing.simulation.simulate")
    assert proc.returncode == 0, proc.stderr


def test_fallback_version_is_the_pyproject_version() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == rd._FALLBACK_VERSION
    assert rd.__version__ == pyproject["project"]["version"]


# ------------------------------------------------------------------------------------------ City
@pytest.fixture(scope="module")
def city(data_dir: Path) -> rd.City:
    return rd.City.load(data_dir)


def test_city_load_is_the_separate_loaders(city: rd.City, data_dir: Path) -> None:
    assert city.network is rd.load_network(data_dir)
    assert city.places is rd.load_places(data_dir)
    assert city.fleet == rd.load_fleet(places=city.places)
    assert city.rules.to_dict() == rd.load_rules().to_dict()
    assert city.data_dir == data_dir
    assert re.fullmatch(r"<City [\d,]+ road nodes, 26 neighborhoods, \d+ teams, rules rules.toml>", repr(city))


def test_city_demand_is_built_on_first_use(data_dir: Path) -> None:
    from routing.coverage import default_demand

    fresh = rd.City.load(data_dir)
    assert "demand" not in vars(fresh)
    surface = fresh.demand
    assert "demand" in vars(fresh) and fresh.demand is surface
    assert surface is default_demand(fresh.network, fresh.places, data_dir)


def test_city_load_takes_loaded_fleet_and_rules(city: rd.City, data_dir: Path) -> None:
    few = city.fleet[:3]
    other = rd.City.load(data_dir, fleet=few, rules=city.rules)
    assert other.fleet == few and other.rules is city.rules


def test_city_suggest_is_the_engine_with_the_city_inputs(city: rd.City) -> None:
    teams = city.teams_at_base(NOW)
    assert [t.team for t in teams] == city.fleet and {t.status.value for t in teams} == {"available"}
    call = rd.Call("c1", NOW, 42.3318, -71.0843, mental_health=True)
    mine = city.suggest(call, now=NOW)
    engine = rd.suggest(call, teams, network=city.network.for_time(NOW), rules=city.rules, places=city.places,
                        now=NOW)
    assert mine.to_dict() == engine.to_dict()
    assert mine.profile["hour"] == 14  # the decision time's local hour sets the speeds


# ------------------------------------------------------------------------------------------ results
@pytest.fixture(scope="module")
def suggestion(city: rd.City) -> rd.SuggestionResult:
    return city.suggest(rd.Call("c1", NOW, 42.3318, -71.0843, mental_health=True), now=NOW)


def test_suggestion_frame_gdf_repr(suggestion: rd.SuggestionResult) -> None:
    d = suggestion.to_dict()
    table = suggestion.to_frame()
    assert table.shape == (len(d["suggestions"]), 14)
    assert list(table.columns[1:]) == list(d["suggestions"][0])
    assert set(table.call_id) == {"c1"}
    assert _records(table.drop(columns="call_id")) == d["suggestions"]

    everyone = suggestion.to_frame(ineligible=True)
    assert len(everyone) == len(d["suggestions"]) + len(d["ineligible"])
    assert (everyone.code == "suggested").sum() == len(d["suggestions"])
    assert _records(everyone[everyone.code != "suggested"][["team_id", "code", "reason"]]) == [
        {k: i[k] for k in ("team_id", "code", "reason")} for i in d["ineligible"]]

    gdf = suggestion.to_gdf()
    assert gdf.crs.to_epsg() == 4326
    assert len(gdf) == len(suggestion.to_geojson()["features"])
    first = gdf[gdf.role == "call"].geometry.iloc[0]
    assert (first.x, first.y) == (suggestion.call.lon, suggestion.call.lat)  # lon/lat, not lat/lon
    best = suggestion.best
    assert repr(suggestion) == (f"<SuggestionResult call c1: tier 1 ({suggestion.tier.name}), "
                                f"{len(suggestion.suggestions)} eligible, best {best.team_id} "
                                f"ETA {format_eta(best.eta_s)}>")


def test_no_eligible_team_repr_and_empty_frame(city: rd.City) -> None:
    teams = [t for t in city.teams_at_base(NOW) if t.team.team_type.value == "police"]
    result = city.suggest(rd.Call("c2", NOW, 42.3318, -71.0843, mental_health=True, needs_transport=True),
                          teams=teams[:0], now=NOW)
    assert repr(result) == "<SuggestionResult call c2: no eligible team>"
    table = result.to_frame()
    assert table.shape == (0, 14) and table.columns[0] == "call_id"


def test_assignment_frame_gdf_repr(city: rd.City) -> None:
    calls = [rd.Call("a1", NOW, 42.3318, -71.0843, mental_health=True),
             rd.Call("a2", NOW, 42.3497, -71.0637, mental_health=True, safety_risk=True)]
    result = city.assign(calls, now=NOW)
    d = result.to_dict()
    table = result.to_frame()
    assert table.shape == (len(d["assignments"]), 10)
    assert _records(table) == d["assignments"]
    gdf = result.to_gdf()
    assert gdf.crs.to_epsg() == 4326
    line = gdf[gdf.role == "assignment"].iloc[0]
    a = result.assignments[0]
    assert list(line.geometry.coords)[0] == (a.lon, a.lat)
    assert re.fullmatch(r"<AssignmentResult 2 calls: 2 assigned, 0 unserved, mean ETA (\d+ min )?\d+ s, OPTIMAL>",
                        repr(result))


@pytest.fixture(scope="module")
def coverage(city: rd.City) -> rd.CoverageResult:
    return city.coverage(8, team_types="co_response")


def test_coverage_frames_gdf_repr(coverage: rd.CoverageResult, city: rd.City) -> None:
    d = coverage.to_dict()
    table = coverage.to_frame()
    assert table.shape == (len(d["neighborhoods"]), 8)
    assert _records(table) == d["neighborhoods"]
    nodes = coverage.to_frame("node")
    assert nodes.shape == (city.network.n_nodes, 8)
    assert nodes.demand.sum() == pytest.approx(coverage.total_demand)
    assert nodes[nodes.covered].demand.sum() == pytest.approx(coverage.covered_demand)
    assert set(nodes.nearest.dropna()) <= set(coverage.responders)
    gdf = coverage.to_gdf()
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == len(coverage.neighborhoods)
    assert set(gdf.geom_type) <= {"Polygon", "MultiPolygon"}
    minx, miny, maxx, maxy = gdf.total_bounds
    assert -71.3 < minx < maxx < -70.9 and 42.2 < miny < maxy < 42.5  # lon/lat
    with pytest.raises(rd.InvalidInput):
        coverage.to_frame("district")
    assert repr(coverage).startswith(f"<CoverageResult {coverage.label}: {coverage.overall_covered_share:.1%} of ")


def test_city_coverage_is_fleet_coverage(city: rd.City, coverage: rd.CoverageResult) -> None:
    engine = rd.fleet_coverage(city.fleet, network=city.network, places=city.places, minutes=8,
                               team_types="co_response", demand=city.demand, from_staging=True)
    assert engine.to_dict() == coverage.to_dict()
    assert coverage.label == "team types: co_response (staging sites)"


@pytest.fixture(scope="module")
def plan(city: rd.City) -> rd.StagingPlan:
    return city.plan_staging("mclp", minutes=8, p=4)


def test_staging_frame_gdf_repr(plan: rd.StagingPlan) -> None:
    d = plan.to_dict()
    table = plan.to_frame()
    assert table.shape == (4, 9)
    assert _records(table) == d["sites"]
    gdf = plan.to_gdf()
    assert gdf.crs.to_epsg() == 4326
    proposed = gdf[gdf.role == "proposed"]
    assert list(zip(proposed.geometry.x, proposed.geometry.y, strict=True)) == [(s.lon, s.lat) for s in plan.sites]
    assert (gdf.role == "today").sum() == len(plan.comparison.today_sites)
    assert re.fullmatch(r"<StagingPlan mclp: 4 sites, \d+\.\d% of 10,000 calls a year within 8 min "
                        r"\(today \d+\.\d% with \d+ sites\), mean ETA (\d+ min )?\d+ s, optimal>", repr(plan))


def test_placement_frame_repr(city: rd.City) -> None:
    problem = city.staging_problem(kinds=["police"])
    result = rd.mclp(problem.times <= 480, problem.weights, 3)
    table = result.to_frame()
    assert list(table.columns) == ["candidate", "teams"] and table.candidate.tolist() == result.chosen
    assert re.fullmatch(r"<PlacementResult mclp: 3 sites, \d+\.\d% covered, objective [\d,.]+, optimal, "
                        r"gap \d+\.\d\d%, \d+\.\d\d s>", repr(result))


def test_simulation_frames_gdf_repr(city: rd.City) -> None:
    runs = city.compare(["default", "more_co_response"], days=0.5, seed=3)
    first = runs.results[0]
    calls = first.to_frame()
    assert calls.shape == (len(first.outcomes), len(first.outcomes[0].to_dict()))
    assert list(calls.columns) == list(first.outcomes[0].to_dict())
    assert _records(calls) == [o.to_dict() for o in first.outcomes]
    teams = first.to_frame("teams")
    assert len(teams) == len(first.usage) and teams.columns[0] == "team_id"
    assert _records(teams.drop(columns="team_id")) == [u.to_dict() for u in first.usage]
    both = runs.to_frame()
    assert both.columns[0] == "policy" and len(both) == sum(len(r.outcomes) for r in runs.results)
    assert set(both.policy) == {"default", "more_co_response"}
    gdf = first.to_gdf()
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 26
    assert re.fullmatch(r"<SimulationResult policy default: 0\.5 days, \d+ calls, \d+\.\d% served, "
                        r"median response (\d+ min )?\d+ s>", repr(first))
    assert repr(runs).startswith("<ComparisonResult 2 policies: default: 0.5 days")
    with pytest.raises(rd.InvalidInput):
        first.to_frame("days")


def test_route_and_demand_frames(city: rd.City) -> None:
    route = city.network.route((42.3603, -71.0580), (42.2557, -71.1246))
    table = route.to_frame()
    assert table.shape == (len(route.path), 3)
    assert table[["lon", "lat"]].values.tolist() == route.path
    gdf = route.to_gdf()
    assert gdf.crs.to_epsg() == 4326 and list(gdf.geometry.iloc[0].coords) == [tuple(p) for p in route.path]
    assert re.fullmatch(r"<Route (\d+ h )?(\d+ min )?\d+ (s|min), \d+\.\d\d km, \d+ points>", repr(route))

    demand = city.demand
    nodes = demand.to_frame()
    assert list(nodes.columns) == ["node", "lat", "lon", "demand", "neighborhood"]
    assert nodes.demand.sum() == pytest.approx(demand.annual_total)
    assert len(nodes) == len(demand.to_geojson()["features"])
    points = demand.to_gdf(min_weight=1.0)
    assert points.crs.to_epsg() == 4326 and (points.geometry.x == points.lon).all()
    assert repr(demand).startswith("<DemandSurface 10,000 calls a year on ")


# ------------------------------------------------------------------------------------------ maps
def test_every_map_function_takes_network() -> None:
    from maps.coverage import coverage_map
    from maps.dispatch import dispatch_map
    from maps.fleet import fleet_map
    from maps.staging import staging_map

    for fn in (coverage_map, dispatch_map, fleet_map, staging_map):
        params = inspect.signature(fn).parameters
        assert "network" in params and "net" not in params, fn.__name__
        assert params["network"].kind is inspect.Parameter.KEYWORD_ONLY


def test_maps_use_only_the_engine() -> None:
    for path in sorted((REPO / "maps").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"routing\.(cli|service)\b", text), path.name
    proc = _run("import pkgutil, importlib, sys, maps\n"
                "for m in pkgutil.iter_modules(maps.__path__): importlib.import_module('maps.' + m.name)\n"
                "bad = [m for m in sys.modules if m.startswith(('routing.cli', 'routing.service'))]\n"
                "assert not bad, bad")
    assert proc.returncode == 0, proc.stderr
