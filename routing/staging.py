"""Staging for Boston: candidate sites, the travel-time problem and the plan compared with today.

:func:`candidate_sites` (real police and fire stations, hospitals, community centres, plus a planner's
CSV), :func:`build_problem` (travel times from every candidate to every network node, demand weights)
and :func:`plan_staging` (one model on that problem, with the proposed sites compared with today's
staging from the fleet file).

The models themselves are matrix-level functions in :mod:`routing.locate`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from routing.errors import InvalidInput, NotFound, reason
from routing.locate import (
    MODELS,
    backup_coverage,
    lscp,
    mclp,
    p_median,
)
from routing.locate._base import (
    _DEFAULT_TIME_LIMIT_S,
    _covered_counts,
)

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from routing.demand import DemandSurface
    from routing.fleet import Team, TeamState
    from routing.network import RoadNetwork
    from routing.places import Places, Site

# ============================================================================================ Boston level

_OBJECTIVE_LABELS = {
    "mclp": "demand covered within the standard (calls a year)",
    "pmedian": "demand-weighted travel time (seconds x calls a year)",
    "lscp": "number of sites",
    "backup": "expected demand covered within the standard with busy teams (calls a year)",
}


def load_candidates_csv(path: str | os.PathLike[str]) -> list[Site]:
    """A planner's candidate sites: CSV with columns ``id``, ``name``, ``lat``, ``lon``.

    Returns
    -------
    list[routing.places.Site]
        With ``kind="planner"``.

    Raises
    ------
    InvalidInput
        Missing file or column, a non-numeric or out-of-range coordinate, an empty or duplicate id
        (with the line number).
    """
    from routing.places import Site

    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"candidates file not found: {p}", field="candidates")
    try:
        with open(p, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = {(h or "").strip().lower(): h for h in (reader.fieldnames or [])}
            missing = [c for c in ("id", "name", "lat", "lon") if c not in header]
            if missing:
                raise InvalidInput(f"{p}: missing column(s) {missing}; expected id, name, lat, lon",
                                   field="candidates")
            sites = []
            seen: set[str] = set()
            for line, row in enumerate(reader, start=2):
                site_id = (row[header["id"]] or "").strip()
                if not site_id:
                    raise InvalidInput(f"{p} line {line}: empty id", field="candidates")
                if site_id in seen:
                    raise InvalidInput(f"{p} line {line}: duplicate id {site_id!r}", field="candidates")
                try:
                    lat, lon = float(row[header["lat"]]), float(row[header["lon"]])
                except (TypeError, ValueError):
                    raise InvalidInput(f"{p} line {line}: lat and lon must be numbers",
                                       field="candidates") from None
                if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
                    raise InvalidInput(f"{p} line {line}: coordinates out of range", field="candidates")
                seen.add(site_id)
                sites.append(Site(site_id, (row[header["name"]] or site_id).strip(), "planner", lat, lon))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read candidates file {p}: {reason(exc)}", field="candidates") from None
    if not sites:
        raise InvalidInput(f"{p}: no candidate rows", field="candidates")
    return sites


def candidate_sites(places: Places, *, kinds: Sequence[str] | None = None, extra: Sequence[Site] | None = None,
                    candidates_csv: str | os.PathLike[str] | None = None) -> list[Site]:
    """Real candidate sites (police, fire, hospital, community) plus a planner's.

    Raises
    ------
    InvalidInput
        A planner id that repeats a real site's id.
    """
    sites = list(places.sites(list(kinds) if kinds else None))
    added = list(extra or []) + (load_candidates_csv(candidates_csv) if candidates_csv else [])
    known = {s.site_id for s in sites}
    for s in added:
        if s.site_id in known:
            raise InvalidInput(f"candidate id {s.site_id!r} is already a site id; choose another",
                               field="candidates")
        known.add(s.site_id)
        sites.append(s)
    return sites


def today_sites(teams: Sequence[Team | TeamState], team_types: Iterable[str] | str | None = None) -> list[Site]:
    """Today's staging: the distinct base sites of the fleet's teams (of the given types).

    Returns
    -------
    list[routing.places.Site]
        ``kind="today"``, ``site_id`` = ``today:<base name>``, ``name`` with the team count.
    """
    from routing.fleet import Team, TeamState, parse_team_type
    from routing.places import Site

    wanted = None
    if team_types is not None:
        items = [team_types] if isinstance(team_types, str) else list(team_types)
        wanted = {parse_team_type(t).value for t in items}
    counts: dict[tuple[str, float, float], int] = {}
    for item in teams:
        team = item.team if isinstance(item, TeamState) else item
        if not isinstance(team, Team):
            raise InvalidInput(f"expected Team or TeamState, got {type(item).__name__}", field="teams")
        if wanted is not None and team.team_type.value not in wanted:
            continue
        key = (team.base_name, round(team.base_lat, 6), round(team.base_lon, 6))
        counts[key] = counts.get(key, 0) + 1
    return [Site(f"today:{name}", f"{name} ({n} team{'s' if n > 1 else ''})", "today", lat, lon)
            for (name, lat, lon), n in counts.items()]


@dataclass
class StagingProblem:
    """Candidate sites, demand and the site x node travel times: built once, solved many times.

    ``times[i, j]`` = seconds from candidate ``j`` (off-network leg included) to network node ``i``.
    """

    sites: list[Site]
    times: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    demand_description: str
    skipped: list[dict[str, str]]
    network: RoadNetwork = field(repr=False)
    places: Places = field(repr=False)

    def index(self, site_id: str) -> int:
        for j, s in enumerate(self.sites):
            if s.site_id == site_id:
                return j
        for skipped in self.skipped:
            if skipped["site_id"] == site_id:
                raise InvalidInput(f"site {site_id!r} cannot be used: {skipped['reason']}", field="site")
        raise NotFound(f"unknown candidate site {site_id!r}", field="site")


#: Candidate sites per block of shortest-path searches when build_problem reports progress.
_PROGRESS_BLOCK = 32


def build_problem(network: RoadNetwork, places: Places, *, demand: DemandSurface | None = None,
                  sites: Sequence[Site] | None = None, candidates_csv: str | os.PathLike[str] | None = None,
                  kinds: Sequence[str] | None = None, progress: Callable[[float, str], None] | None = None
                  ) -> StagingProblem:
    """Travel times from every candidate site to every node, with the demand weights.

    Parameters
    ----------
    network, places
        Road network and places.
    demand
        :class:`routing.demand.DemandSurface` (default: the default surface).
    sites
        Candidate sites (default: :func:`candidate_sites` with ``kinds`` and ``candidates_csv``).
    candidates_csv, kinds
        See :func:`candidate_sites` (ignored when ``sites`` is given).
    progress
        Called as ``progress(fraction, label)`` while the travel times are computed (the last call 1.0),
        for a progress bar.

    Returns
    -------
    StagingProblem
        Sites that are off the network are left out and listed in ``skipped``.
    """
    label = "staging: travel times"
    if progress is not None:
        progress(0.0, label)
    if demand is None:
        from routing.coverage import default_demand

        demand = default_demand(network, places)
    weights = np.asarray(demand.weights, dtype=float)
    if weights.shape != (network.n_nodes,):
        raise InvalidInput("the demand surface was built on another network", field="demand")
    if sites is None:
        sites = candidate_sites(places, kinds=kinds, candidates_csv=candidates_csv)
    sites = list(sites)
    if not sites:
        raise InvalidInput("no candidate sites", field="candidates")
    snaps = network.snap_many([s.lat for s in sites], [s.lon for s in sites], strict=False)
    ok = snaps.nodes >= 0
    skipped = [{"site_id": s.site_id, "name": s.name, "reason": "outside the service area or far from roads"}
               for s, good in zip(sites, ok, strict=True) if not good]
    if not ok.any():
        raise InvalidInput("no candidate site lies on the road network", field="candidates")
    kept = [s for s, good in zip(sites, ok, strict=True) if good]
    sources = snaps.nodes[ok]
    if progress is None:
        from_sites = network.travel_times_from(sources)
    else:  # in blocks, to report between them; one search per site either way
        blocks = []
        for i in range(0, len(sources), _PROGRESS_BLOCK):
            blocks.append(network.travel_times_from(sources[i:i + _PROGRESS_BLOCK]))
            progress(0.1 + 0.9 * min(len(sources), i + _PROGRESS_BLOCK) / len(sources), label)
        from_sites = np.vstack(blocks)
    times = (from_sites + snaps.time_s[ok][:, None]).T
    return StagingProblem(kept, np.ascontiguousarray(times), weights, demand.description, skipped, network, places)


@dataclass
class StagedSite:
    """A chosen site with the demand it serves."""

    site_id: str
    name: str
    kind: str
    lat: float
    lon: float
    demand_served: float
    demand_covered: float
    fixed: bool
    teams: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.site_id, "name": self.name, "kind": self.kind, "lat": self.lat, "lon": self.lon,
                "demand_served": self.demand_served, "demand_covered": self.demand_covered,
                "fixed": self.fixed, "teams": self.teams}


@dataclass
class StagingComparison:
    """The proposed sites against today's staging (same demand, standard and travel times).

    Both sides are sites serving the whole city: a team's service area (the dedicated cars) is not
    applied here; :func:`routing.coverage.fleet_coverage` applies it. ``same_count`` is the MCLP
    optimum with as many sites as today has: what the same resources could cover.
    """

    today_sites: list[dict[str, Any]]
    today_covered_share: float
    today_covered_demand: float
    today_mean_eta_s: float
    proposed_covered_share: float
    proposed_covered_demand: float
    proposed_mean_eta_s: float
    same_count: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "today_sites": list(self.today_sites),
            "today_n_sites": len(self.today_sites),
            "today_covered_share": self.today_covered_share,
            "today_covered_demand": self.today_covered_demand,
            "today_mean_eta_s": self.today_mean_eta_s,
            "proposed_covered_share": self.proposed_covered_share,
            "proposed_covered_demand": self.proposed_covered_demand,
            "proposed_mean_eta_s": self.proposed_mean_eta_s,
            "extra_covered_demand": self.proposed_covered_demand - self.today_covered_demand,
            "extra_covered_share": self.proposed_covered_share - self.today_covered_share,
            "same_count": self.same_count,
        }


@dataclass
class StagingPlan:
    """A staging plan for Boston: chosen sites, objective, coverage, solver status, comparison."""

    model: str
    p: int
    minutes: float
    team_type: str | None
    sites: list[StagedSite]
    objective: float
    objective_label: str
    covered_share: float
    covered_demand: float
    total_demand: float
    covered_twice_share: float
    mean_eta_s: float
    status: str
    gap: float | None
    bound: float | None
    solve_s: float
    candidates: int
    fixed: list[str]
    excluded: list[str]
    skipped_candidates: list[dict[str, str]]
    demand_description: str
    busy_fraction: float | None = None
    comparison: StagingComparison | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    eta_s: np.ndarray | None = field(default=None, repr=False)

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no per-node arrays)."""
        return {
            "model": self.model, "p": self.p, "minutes": self.minutes, "team_type": self.team_type,
            "sites": [s.to_dict() for s in self.sites],
            "objective": self.objective, "objective_label": self.objective_label,
            "covered_share": self.covered_share, "covered_demand": self.covered_demand,
            "total_demand": self.total_demand, "covered_twice_share": self.covered_twice_share,
            "mean_eta_s": self.mean_eta_s,
            "status": self.status, "optimal": self.optimal, "gap": self.gap, "bound": self.bound,
            "solve_s": self.solve_s, "candidates": self.candidates, "fixed": list(self.fixed),
            "excluded": list(self.excluded), "skipped_candidates": list(self.skipped_candidates),
            "busy_fraction": self.busy_fraction, "demand": self.demand_description,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "stats": dict(self.stats),
        }

    def to_geojson(self) -> dict[str, Any]:
        """Chosen sites (``role="proposed"``) and today's sites (``role="today"``) as GeoJSON points."""
        features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                     "properties": {**s.to_dict(), "role": "proposed"}} for s in self.sites]
        if self.comparison is not None:
            for t in self.comparison.today_sites:
                features.append({"type": "Feature",
                                 "geometry": {"type": "Point", "coordinates": [t["lon"], t["lat"]]},
                                 "properties": {**t, "role": "today"}})
        return {"type": "FeatureCollection", "features": features}

    def to_frame(self) -> pd.DataFrame:
        """One row per proposed site: the columns of ``to_dict()["sites"]`` (demand in calls a year).

        Returns
        -------
        pandas.DataFrame
            Shape ``(len(sites), 9)``: ``id``, ``name``, ``kind``, ``lat``, ``lon``, ``demand_served``,
            ``demand_covered``, ``fixed``, ``teams``.
        """
        from routing._frames import frame

        return frame((s.to_dict() for s in self.sites), _SITE_COLUMNS)

    def to_gdf(self) -> gpd.GeoDataFrame:
        """:meth:`to_geojson` as points, EPSG:4326: proposed sites and today's (``role`` says which)."""
        from routing._frames import geo_frame

        return geo_frame(self.to_geojson())

    def __repr__(self) -> str:
        from routing._frames import minutes, share

        today = ""
        if self.comparison is not None:
            today = (f" (today {share(self.comparison.today_covered_share)} with "
                     f"{len(self.comparison.today_sites)} sites)")
        return (f"<StagingPlan {self.model}: {len(self.sites)} sites, {share(self.covered_share)} of "
                f"{self.total_demand:,.0f} calls a year within {self.minutes:g} min{today}, mean ETA "
                f"{minutes(self.mean_eta_s)}, {self.status}>")


_SITE_COLUMNS = ("id", "name", "kind", "lat", "lon", "demand_served", "demand_covered", "fixed", "teams")


class _SolveOptions(TypedDict):
    fixed_in: list[int]
    fixed_out: list[int]
    time_limit_s: float


def _check_minutes(minutes: object) -> float:
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"minutes must be a number, got {minutes!r}", field="minutes")
    m = float(minutes)
    if not math.isfinite(m) or m <= 0 or m > 180:
        raise InvalidInput(f"minutes must be between 0 and 180, got {minutes!r}", field="minutes")
    return m


def plan_staging(problem: StagingProblem, model: str, *, minutes: float, p: int | None = None,
                 fixed: Sequence[str] = (), exclude: Sequence[str] = (), today: Sequence[Site] | None = None,
                 team_type: str | None = None, busy_fraction: float = 0.3, allow_uncoverable: bool = False,
                 compare_same_count: bool = True, time_limit_s: float = _DEFAULT_TIME_LIMIT_S,
                 progress: Callable[[float, str], None] | None = None) -> StagingPlan:
    """Solve one placement model for Boston and compare it with today's staging.

    Parameters
    ----------
    problem
        From :func:`build_problem`.
    model
        ``"mclp"``, ``"pmedian"``, ``"lscp"`` or ``"backup"``.
    minutes
        Time standard (coverage models; for p-median it only sets the reported covered share).
    p
        Number of sites (not used by LSCP). Default: the number of today's sites, if given.
    fixed, exclude
        Site ids forced in / left out.
    today
        Today's staging sites (:func:`today_sites`) for the comparison; ``None``: no comparison.
    team_type
        Label of the team type planned for (recorded in the result).
    busy_fraction
        Backup model: probability a team is busy.
    allow_uncoverable
        LSCP: ignore demand no candidate can reach in time instead of failing.
    compare_same_count
        Also solve MCLP with as many sites as today has, to show what the same resources could cover.
    time_limit_s
        Solver time limit.
    progress
        Called as ``progress(fraction, label)`` before and after each solve (the model, then the
        comparison with today's staging; the last call 1.0), for a progress bar.

    Raises
    ------
    InvalidInput
        Unknown model, bad ``p`` or ``minutes``, infeasible LSCP.
    NotFound
        An unknown site id in ``fixed`` or ``exclude``.
    """
    if model not in MODELS:
        raise InvalidInput(f"unknown model {model!r}; expected one of {', '.join(MODELS)}", field="model")
    limit = _check_minutes(minutes) * 60.0
    today = list(today) if today is not None else None
    if p is None and model != "lscp":
        if not today:
            raise InvalidInput(f"the number of sites p is required for {model} (no staging given to count)", field="p")
        p = len(today)
    fixed_idx = [problem.index(s) for s in fixed]
    excluded_idx = [problem.index(s) for s in exclude]
    times, w = problem.times, problem.weights
    cover = times <= limit
    common: _SolveOptions = {"fixed_in": fixed_idx, "fixed_out": excluded_idx, "time_limit_s": time_limit_s}
    label = f"staging: {model}"
    if progress is not None:
        progress(0.0, label)
    if model == "lscp":
        result = lscp(cover, w, uncoverable="ignore" if allow_uncoverable else "error", **common)
    else:
        assert p is not None  # every model but LSCP has p: given, or today's count (checked above)
        if model == "mclp":
            result = mclp(cover, w, p, **common)
        elif model == "pmedian":
            result = p_median(times, w, p, **common)
        else:
            result = backup_coverage(cover, w, p, busy_fraction=busy_fraction, **common)
    chosen = result.chosen
    sub = times[:, chosen]
    best = sub.min(axis=1)
    nearest = np.argmin(sub, axis=1)
    served = np.bincount(nearest, weights=w, minlength=len(chosen))
    total = float(w.sum())
    counts = _covered_counts(cover, chosen, result.teams_per_site or None)
    covered = float(w[counts > 0].sum())
    mean_eta = float((w * best).sum() / total)
    fixed_set = set(fixed_idx)
    sites = [StagedSite(problem.sites[j].site_id, problem.sites[j].name, problem.sites[j].kind,
                        float(problem.sites[j].lat), float(problem.sites[j].lon), float(served[k]),
                        float(w[cover[:, j]].sum()), j in fixed_set,
                        result.teams_per_site[k] if result.teams_per_site else 1)
             for k, j in enumerate(chosen)]
    comparison = None
    if today:
        if progress is not None:  # the comparison solves once more (MCLP with today's count)
            progress(0.5, label)
        comparison = _compare(problem, today, limit, covered, mean_eta, fixed_idx, excluded_idx,
                              compare_same_count, time_limit_s)
    if progress is not None:
        progress(1.0, label)
    stats = dict(result.stats)
    return StagingPlan(
        model=model, p=result.p, minutes=limit / 60.0, team_type=team_type, sites=sites,
        objective=result.objective, objective_label=_OBJECTIVE_LABELS[model], covered_share=covered / total,
        covered_demand=covered, total_demand=total, covered_twice_share=float(w[counts >= 2].sum()) / total,
        mean_eta_s=mean_eta, status=result.status, gap=result.gap, bound=result.bound, solve_s=result.solve_s,
        candidates=len(problem.sites), fixed=list(fixed), excluded=list(exclude),
        skipped_candidates=list(problem.skipped), demand_description=problem.demand_description,
        busy_fraction=busy_fraction if model == "backup" else None, comparison=comparison, stats=stats,
        eta_s=best)


def _compare(problem: StagingProblem, today: list[Site], limit: float, covered: float, mean_eta: float,
             fixed_idx: list[int], excluded_idx: list[int], same_count: bool, time_limit_s: float
             ) -> StagingComparison:
    from routing.coverage import Responder, eta_surface

    w = problem.weights
    total = float(w.sum())
    eta, _, skipped = eta_surface(problem.network, [Responder(s.site_id, s.lat, s.lon) for s in today])
    if skipped:
        raise InvalidInput(f"today's staging site {skipped[0]['label']!r} is off the road network",
                           field="fleet")
    today_cov = float(w[eta <= limit].sum())
    extra: dict[str, Any] | None = None
    k = len(today)
    if same_count and len(fixed_idx) <= k <= len(problem.sites) - len(excluded_idx):
        r = mclp(problem.times <= limit, w, k, fixed_in=fixed_idx, fixed_out=excluded_idx,
                 time_limit_s=time_limit_s)
        assert r.covered_weight is not None  # MCLP always reports it
        extra = {"model": "mclp", "p": k, "covered_share": r.covered_weight / total, "covered_demand": r.covered_weight,
                 "extra_covered_demand": r.covered_weight - today_cov,
                 "sites": [problem.sites[j].site_id for j in r.chosen], "status": r.status, "gap": r.gap}
    return StagingComparison(
        today_sites=[{"id": s.site_id, "name": s.name, "lat": float(s.lat), "lon": float(s.lon)} for s in today],
        today_covered_share=today_cov / total, today_covered_demand=today_cov,
        today_mean_eta_s=float((w * eta).sum() / total), proposed_covered_share=covered / total,
        proposed_covered_demand=covered, proposed_mean_eta_s=mean_eta, same_count=extra)
