"""crisis-dispatch: routing, dispatch and planning for Boston's crisis-response teams.

The public Python API, for notebooks and scripts::

    import routing as rd

    city = rd.City.load("../shared/data")          # network, places, fleet, rules (demand on first use)
    result = city.suggest(rd.Call("c1", now, 42.3318, -71.0843, mental_health=True), now=now)
    result.to_frame()

Every name below is imported on first use (PEP 562): ``import routing`` loads no scientific library,
so the ``crisis-dispatch`` command, which lives in this package, starts fast. See ``docs/API.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Used when the distribution's metadata is missing (running from a source tree that was not
#: installed); keep equal to ``version`` in pyproject.toml (a test checks it).
_FALLBACK_VERSION = "0.1.0"

# Public name -> module that defines it. One table drives __getattr__, __dir__ and __all__.
_EXPORTS: dict[str, str] = {
    # one object with a city's inputs
    "City": "routing.city",
    # road network
    "load_network": "routing.network",
    "RoadNetwork": "routing.network",
    "Route": "routing.network",
    "Snap": "routing.network",
    # places
    "load_places": "routing.places",
    "Places": "routing.places",
    "Site": "routing.places",
    # fleet
    "load_fleet": "routing.fleet",
    "Team": "routing.fleet",
    "TeamState": "routing.fleet",
    "TeamStatus": "routing.fleet",
    "TeamType": "routing.fleet",
    "Shift": "routing.fleet",
    # calls and triage rules
    "Call": "routing.triage",
    "load_rules": "routing.triage",
    "Rules": "routing.triage",
    # demand
    "load_demand": "routing.demand",
    "demand_from_csv": "routing.demand",
    "demand_from_points": "routing.demand",
    "DemandSurface": "routing.demand",
    # dispatch
    "suggest": "routing.dispatch",
    "assign": "routing.dispatch",
    "SuggestionResult": "routing.dispatch",
    "AssignmentResult": "routing.dispatch",
    # coverage (the module-level ``coverage()`` stays in routing.coverage: the name is the module's)
    "fleet_coverage": "routing.coverage",
    "site_coverage": "routing.coverage",
    "Responder": "routing.coverage",
    "CoverageResult": "routing.coverage",
    # location models, matrix level
    "mclp": "routing.locate",
    "p_median": "routing.locate",
    "lscp": "routing.locate",
    "backup_coverage": "routing.locate",
    "PlacementResult": "routing.locate",
    # staging for Boston
    "candidate_sites": "routing.staging",
    "today_sites": "routing.staging",
    "build_problem": "routing.staging",
    "plan_staging": "routing.staging",
    "StagingProblem": "routing.staging",
    "StagingPlan": "routing.staging",
    # simulation
    "load_policy": "routing.policy",
    "Policy": "routing.policy",
    "load_arrival_model": "routing.arrivals",
    "generate_calls": "routing.arrivals",
    "read_calls_file": "routing.arrivals",
    "CallMix": "routing.arrivals",
    "ArrivalModel": "routing.arrivals",
    "simulate": "routing.simulation",
    "compare": "routing.simulation",
    "SimulationResult": "routing.simulation",
    "ComparisonResult": "routing.simulation",
    # live state
    "Store": "routing.store",
    # errors
    "CrisisDispatchError": "routing.errors",
    "InvalidInput": "routing.errors",
    "OutsideServiceArea": "routing.errors",
    "NotFound": "routing.errors",
    "Conflict": "routing.errors",
    "DataMissing": "routing.errors",
}

# Literal, so that type checkers and linters see the re-exports; a test checks it against _EXPORTS.
__all__ = [
    "__version__", "City", "load_network", "RoadNetwork", "Route", "Snap", "load_places", "Places", "Site",
    "load_fleet", "Team", "TeamState", "TeamStatus", "TeamType", "Shift", "Call", "load_rules", "Rules",
    "load_demand", "demand_from_csv", "demand_from_points", "DemandSurface", "suggest", "assign",
    "SuggestionResult", "AssignmentResult", "fleet_coverage", "site_coverage", "Responder", "CoverageResult",
    "mclp", "p_median", "lscp", "backup_coverage", "PlacementResult", "candidate_sites", "today_sites",
    "build_problem", "plan_staging", "StagingProblem", "StagingPlan", "load_policy", "Policy", "load_arrival_model",
    "generate_calls", "read_calls_file", "CallMix", "ArrivalModel", "simulate", "compare", "SimulationResult",
    "ComparisonResult", "Store", "CrisisDispatchError", "InvalidInput", "OutsideServiceArea", "NotFound",
    "Conflict", "DataMissing",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'routing' has no attribute {name!r}")
    # Cache it: later lookups skip __getattr__.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crisis-dispatch")
    except PackageNotFoundError:
        return _FALLBACK_VERSION


if TYPE_CHECKING:
    from routing.arrivals import ArrivalModel, CallMix, generate_calls, load_arrival_model, read_calls_file
    from routing.city import City
    from routing.coverage import CoverageResult, Responder, fleet_coverage, site_coverage
    from routing.demand import DemandSurface, demand_from_csv, demand_from_points, load_demand
    from routing.dispatch import AssignmentResult, SuggestionResult, assign, suggest
    from routing.errors import Conflict, CrisisDispatchError, DataMissing, InvalidInput, NotFound, OutsideServiceArea
    from routing.fleet import Shift, Team, TeamState, TeamStatus, TeamType, load_fleet
    from routing.locate import PlacementResult, backup_coverage, lscp, mclp, p_median
    from routing.network import RoadNetwork, Route, Snap, load_network
    from routing.places import Places, Site, load_places
    from routing.policy import Policy, load_policy
    from routing.simulation import ComparisonResult, SimulationResult, compare, simulate
    from routing.staging import StagingPlan, StagingProblem, build_problem, candidate_sites, plan_staging, today_sites
    from routing.store import Store
    from routing.triage import Call, Rules, load_rules

    __version__: str
