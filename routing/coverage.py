"""Coverage analysis: ETA from the nearest eligible team to every node, per-neighborhood coverage, gaps.

For a set of responders (the teams of a type, the eligible fleet of a call class, or a set of staging
sites) and a time standard, :func:`coverage` computes the ETA from the nearest responder to every
road-network node and summarises it against a demand surface (:mod:`routing.demand`):

- per neighborhood: demand (calls a year), the share of it within the standard, and the
  demand-weighted median and 90th-percentile ETA;
- the gaps: neighborhoods ranked by demand *not* covered within the standard;
- overall covered share and ETA quantiles.

ETA = off-network leg from the responder's position to its snapped node + network travel time to the
demand node (demand sits on nodes). All responders sharing a service area are handled by one Dijkstra
search from a virtual source joined to each responder's node by an edge equal to its off-network leg,
so a whole team type costs one search (a few milliseconds for Boston), not one per team. A team with a
service area (the dedicated co-response cars) covers only nodes inside that area.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from routing.demand import DemandSurface, load_demand, node_areas
from routing.errors import InvalidInput

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import shapely

    from routing.fleet import Team, TeamState
    from routing.network import RoadNetwork
    from routing.places import Places, Site
    from routing.triage import Rules

_VIRTUAL_EDGE_SHIFT_S = 1.0  # csgraph ignores zero-weight edges; shifted and subtracted afterwards
MAX_MINUTES = 180.0


@dataclass(frozen=True)
class Responder:
    """A position that responds: a team where it is (or at its base), or a staging site.

    ``service_area`` lists the district codes / neighborhood names it serves (empty: citywide).
    """

    label: str
    lat: float
    lon: float
    service_area: tuple[str, ...] = ()
    team_type: str | None = None


@dataclass
class NeighborhoodCoverage:
    """Coverage of one neighborhood."""

    name: str
    demand: float
    covered_demand: float
    covered_share: float | None
    median_eta_s: float | None
    p90_eta_s: float | None
    nodes: int

    @property
    def uncovered_demand(self) -> float:
        return self.demand - self.covered_demand

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "demand": self.demand, "covered_demand": self.covered_demand,
                "uncovered_demand": self.uncovered_demand, "covered_share": self.covered_share,
                "median_eta_s": self.median_eta_s, "p90_eta_s": self.p90_eta_s, "nodes": self.nodes}


@dataclass
class CoverageResult:
    """Coverage of a demand surface by a set of responders within a time standard.

    Attributes
    ----------
    minutes
        The standard.
    label
        What was covered from (``"team types: co_response (staging)"`` ...).
    responders
        Labels of the responders used.
    excluded
        Responders left out, each ``{"label", "reason"}`` (busy, off the network, ...).
    overall_covered_share, total_demand, covered_demand
        City totals (calls a year).
    median_eta_s, p90_eta_s
        Demand-weighted ETA quantiles over the city.
    neighborhoods
        Every neighborhood with road nodes, by name.
    gaps
        Neighborhoods with uncovered demand, most uncovered first.
    eta_s
        Per node: ETA from the nearest responder (``inf`` where none can reach or serve it).
    nearest
        Per node: index into ``responders`` of the nearest one (-1 where none).
    """

    minutes: float
    label: str
    responders: list[str]
    excluded: list[dict[str, str]]
    overall_covered_share: float
    total_demand: float
    covered_demand: float
    median_eta_s: float | None
    p90_eta_s: float | None
    neighborhoods: list[NeighborhoodCoverage]
    gaps: list[dict[str, Any]]
    demand_description: str
    eta_s: np.ndarray = field(repr=False)
    nearest: np.ndarray = field(repr=False)
    node_weights: np.ndarray = field(repr=False)
    node_neighborhood: np.ndarray = field(repr=False)
    node_lat: np.ndarray = field(repr=False)
    node_lon: np.ndarray = field(repr=False)
    responder_points: list[Responder] = field(default_factory=list, repr=False)
    neighborhood_geometry: dict[str, shapely.Geometry] = field(default_factory=dict, repr=False)

    @property
    def standard_s(self) -> float:
        return self.minutes * 60.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-node arrays)."""
        return {
            "minutes": self.minutes,
            "label": self.label,
            "overall_covered_share": self.overall_covered_share,
            "total_demand": self.total_demand,
            "covered_demand": self.covered_demand,
            "median_eta_s": self.median_eta_s,
            "p90_eta_s": self.p90_eta_s,
            "responders": [{"label": r.label, "lat": r.lat, "lon": r.lon, "team_type": r.team_type,
                            "service_area": list(r.service_area)} for r in self.responder_points],
            "excluded": list(self.excluded),
            "neighborhoods": [n.to_dict() for n in self.neighborhoods],
            "gaps": list(self.gaps),
            "demand": self.demand_description,
        }

    def to_geojson(self, level: str = "neighborhood") -> dict[str, Any]:
        """GeoJSON FeatureCollection (lon/lat) for GIS tools.

        Parameters
        ----------
        level
            ``"neighborhood"``: one polygon per neighborhood with its coverage figures;
            ``"node"``: one point per network node with ``eta_s``, ``demand``, ``covered``.
        """
        features: list[dict[str, Any]]
        if level == "node":
            eta = self.eta_s
            covered = eta <= self.standard_s
            features = [
                {"type": "Feature",
                 "geometry": {"type": "Point", "coordinates": [float(self.node_lon[i]), float(self.node_lat[i])]},
                 "properties": {"node": i, "eta_s": float(eta[i]) if math.isfinite(eta[i]) else None,
                                "demand": float(self.node_weights[i]), "covered": bool(covered[i]),
                                "neighborhood": self.node_neighborhood[i]}}
                for i in range(eta.size)
            ]
        elif level == "neighborhood":
            import shapely

            features = []
            for n in self.neighborhoods:
                geom = self.neighborhood_geometry.get(n.name)
                features.append({"type": "Feature",
                                 "geometry": None if geom is None else shapely.geometry.mapping(geom),
                                 "properties": {**n.to_dict(), "minutes": self.minutes}})
        else:
            raise InvalidInput(f"level must be 'neighborhood' or 'node', got {level!r}", field="level")
        return {"type": "FeatureCollection", "features": features}

    def to_frame(self, level: str = "neighborhood") -> pd.DataFrame:
        """Coverage as a table.

        Parameters
        ----------
        level
            ``"neighborhood"``: one row per neighborhood, the columns of ``to_dict()["neighborhoods"]``
            (demand in calls a year, ETAs in seconds); ``"node"``: one row per network node with
            ``node``, ``lat``, ``lon``, ``eta_s`` (``inf`` where unreachable), ``demand``, ``covered``,
            ``neighborhood``, ``nearest`` (label of the nearest responder).

        Raises
        ------
        InvalidInput
            Another ``level``.
        """
        from routing._frames import frame

        if level == "neighborhood":
            return frame((n.to_dict() for n in self.neighborhoods), _NEIGHBORHOOD_COLUMNS)
        if level != "node":
            raise InvalidInput(f"level must be 'neighborhood' or 'node', got {level!r}", field="level")
        import pandas as pd

        labels = np.array([r.label for r in self.responder_points] + [None], dtype=object)
        return pd.DataFrame({"node": np.arange(self.eta_s.size), "lat": self.node_lat, "lon": self.node_lon,
                             "eta_s": self.eta_s, "demand": self.node_weights, "covered": self.eta_s <= self.standard_s,
                             "neighborhood": self.node_neighborhood, "nearest": labels[self.nearest]})

    def to_gdf(self, level: str = "neighborhood") -> gpd.GeoDataFrame:
        """:meth:`to_geojson` as a GeoDataFrame, EPSG:4326: neighborhood polygons or node points."""
        from routing._frames import geo_frame

        return geo_frame(self.to_geojson(level))

    def __repr__(self) -> str:
        from routing._frames import minutes, share

        return (f"<CoverageResult {self.label}: {share(self.overall_covered_share)} of {self.total_demand:,.0f} "
                f"calls a year within {self.minutes:g} min, median ETA {minutes(self.median_eta_s)}, "
                f"{len(self.responders)} responders, {len(self.gaps)} gaps>")


_NEIGHBORHOOD_COLUMNS = ("name", "demand", "covered_demand", "uncovered_demand", "covered_share", "median_eta_s",
                         "p90_eta_s", "nodes")


# ============================================================================================ ETA surface


def eta_surface(network: RoadNetwork, responders: Sequence[Responder], places: Places | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """ETA (s) from the nearest responder to every node, honouring service areas.

    Parameters
    ----------
    network
        The road network.
    responders
        Positions; those that cannot be snapped are skipped and reported.
    places
        Needed when a responder has a service area.

    Returns
    -------
    (eta_s, nearest, skipped)
        ``eta_s`` shape ``(n_nodes,)`` (``inf`` where no responder serves the node), ``nearest`` the
        index of the nearest responder per node (-1 if none), ``skipped`` the responders left out.
    """
    n = network.n_nodes
    eta = np.full(n, np.inf)
    nearest = np.full(n, -1, dtype=np.int64)
    skipped: list[dict[str, str]] = []
    if not responders:
        return eta, nearest, skipped
    snaps = network.snap_many([r.lat for r in responders], [r.lon for r in responders], strict=False)
    groups: dict[tuple[str, ...], list[int]] = {}
    for k, r in enumerate(responders):
        if snaps.nodes[k] < 0:
            skipped.append({"label": r.label, "reason": "position outside the service area or far from roads"})
            continue
        groups.setdefault(tuple(sorted(r.service_area)), []).append(k)
    for area, members in groups.items():
        # Each responder joins the network at the end(s) of its road segment it may drive to (phantom node).
        nodes, offsets, who = [], [], []
        for k in members:
            x_nodes, x_time, _ = network.snap_exits(snaps[k])
            nodes.extend(x_nodes.tolist())
            offsets.extend((snaps.time_s[k] + x_time).tolist())
            who.extend([k] * len(x_nodes))
        times, owner = _multi_source(network, np.asarray(nodes, dtype=np.int64), np.asarray(offsets))
        owner = np.where(owner >= 0, np.asarray(who)[np.maximum(owner, 0)], -1)
        if area:
            if places is None:
                raise InvalidInput("responders with a service area need places", field="places")
            times = np.where(_area_mask(network, places, area), times, np.inf)
        better = times < eta
        eta = np.where(better, times, eta)
        nearest = np.where(better, owner, nearest)
    return eta, nearest, skipped


_MASK_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def _area_mask(network: RoadNetwork, places: Places, area: tuple[str, ...]) -> np.ndarray:
    """Nodes whose neighborhood or district is in ``area`` (cached: service areas are few)."""
    key = (network.source, network.n_nodes, float(np.sum(network.lat)), id(places), area)
    mask = _MASK_CACHE.get(key)
    if mask is None:
        nbhd, dist = node_areas(network, places)
        mask = np.isin(nbhd, list(area)) | np.isin(dist, list(area))
        _MASK_CACHE[key] = mask
    return mask


def _multi_source(network: RoadNetwork, nodes: np.ndarray, offsets_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Dijkstra from a virtual source linked to ``nodes`` with edge weights ``offsets_s``.

    Returns the time to every node and the index (into ``nodes``) of the source it is reached from.
    """
    csr = network.csr
    n = csr.shape[0]
    # One virtual edge per distinct node (the smallest offset): a CSR row may not repeat a column.
    order = np.lexsort((offsets_s, nodes))
    first = np.r_[True, nodes[order][1:] != nodes[order][:-1]]
    pick = order[first]
    targets = nodes[pick]
    weights = offsets_s[pick] + _VIRTUAL_EDGE_SHIFT_S
    indptr = np.r_[csr.indptr, csr.indptr[-1] + targets.size]
    graph = csr_matrix((np.r_[csr.data, weights], np.r_[csr.indices, targets], indptr), shape=(n + 1, n + 1))
    dist, pred = dijkstra(graph, directed=True, indices=n, return_predecessors=True)
    times = dist[:n] - _VIRTUAL_EDGE_SHIFT_S
    # Root of each node's shortest-path tree branch, by pointer jumping (depth ~ hundreds, log steps).
    parent = pred[:n].astype(np.int64)
    parent = np.where((parent == n) | (parent < 0), np.arange(n), parent)
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    source_of_node = np.full(n, -1, dtype=np.int64)
    source_of_node[targets] = pick
    owner = np.where(np.isfinite(times), source_of_node[parent], -1)
    return times, owner


# ============================================================================================ summary

_CODE_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
_CODE_LOCK = threading.Lock()


def _neighborhood_codes(network: RoadNetwork, places: Places) -> tuple[np.ndarray, np.ndarray]:
    """(names, code per node) with code -1 for nodes in no neighborhood; cached."""
    key = (network.source, network.n_nodes, float(np.sum(network.lat)), id(places))
    with _CODE_LOCK:
        hit = _CODE_CACHE.get(key)
    if hit is not None:
        return hit
    nbhd = node_areas(network, places)[0]
    valid = np.array([x is not None for x in nbhd], dtype=bool)
    names, inv = np.unique(nbhd[valid].astype(str), return_inverse=True)
    codes = np.full(nbhd.size, -1, dtype=np.int64)
    codes[valid] = inv
    out = (names, codes)
    with _CODE_LOCK:
        _CODE_CACHE[key] = out
    return out


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float | None]:
    """Lower weighted quantiles: the smallest value with at least q of the weight at or below it."""
    total = float(weights.sum())
    if total <= 0 or values.size == 0:
        return [None for _ in qs]
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    out: list[float | None] = []
    for q in qs:
        k = int(np.searchsorted(cum, q * total - 1e-9 * total, side="left"))
        v = float(values[order[min(k, values.size - 1)]])
        out.append(v if math.isfinite(v) else None)
    return out


def _check_minutes(minutes: object) -> float:
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"minutes must be a number, got {minutes!r}", field="minutes")
    m = float(minutes)
    if not math.isfinite(m) or m <= 0 or m > MAX_MINUTES:
        raise InvalidInput(f"minutes must be between 0 and {MAX_MINUTES:g}, got {minutes!r}", field="minutes")
    return m


def coverage(network: RoadNetwork, places: Places, responders: Sequence[Responder], minutes: float, *,
             demand: DemandSurface | None = None, label: str = "responders",
             excluded: Iterable[dict[str, str]] = ()) -> CoverageResult:
    """Coverage of the demand by ``responders`` within ``minutes``.

    Parameters
    ----------
    network
        The road network (its profile sets the travel times).
    places
        Boston's places (neighborhoods).
    responders
        Team positions or sites.
    minutes
        Time standard.
    demand
        Demand surface on the same network (default: :func:`default_demand`).
    label
        Text describing the responders.
    excluded
        Responders already left out by the caller (kept in the result).

    Returns
    -------
    CoverageResult
    """
    standard = _check_minutes(minutes) * 60.0
    if demand is None:
        demand = default_demand(network, places)
    weights = np.asarray(demand.weights, dtype=float)
    if weights.shape != (network.n_nodes,):
        raise InvalidInput(f"the demand surface has {weights.size} nodes but the network {network.n_nodes}",
                           field="demand")
    eta, nearest, skipped = eta_surface(network, responders, places)
    names, codes = _neighborhood_codes(network, places)
    covered = eta <= standard
    total = float(weights.sum())
    covered_total = float(weights[covered].sum())
    k = len(names)
    in_area = codes >= 0
    node_count = np.bincount(codes[in_area], minlength=k)
    demand_by = np.bincount(codes[in_area], weights=weights[in_area], minlength=k)
    covered_by = np.bincount(codes[in_area & covered], weights=weights[in_area & covered], minlength=k)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(k + 1))
    rows: list[NeighborhoodCoverage] = []
    for c in range(k):
        if node_count[c] == 0:
            continue
        idx = order[bounds[c]:bounds[c + 1]]
        d = float(demand_by[c])
        med, p90 = _weighted_quantiles(eta[idx], weights[idx], (0.5, 0.9))
        rows.append(NeighborhoodCoverage(str(names[c]), d, float(covered_by[c]),
                                         float(covered_by[c]) / d if d > 0 else None, med, p90,
                                         int(node_count[c])))
    rows.sort(key=lambda r: r.name)
    gaps = [{"name": r.name, "uncovered_demand": r.uncovered_demand, "demand": r.demand,
             "covered_share": r.covered_share}
            for r in sorted(rows, key=lambda r: (-r.uncovered_demand, r.name)) if r.uncovered_demand > 1e-9]
    med, p90 = _weighted_quantiles(eta, weights, (0.5, 0.9))
    return CoverageResult(
        minutes=standard / 60.0, label=label, responders=[r.label for r in responders],
        excluded=[*excluded, *skipped], overall_covered_share=covered_total / total if total > 0 else 0.0,
        total_demand=total, covered_demand=covered_total, median_eta_s=med, p90_eta_s=p90,
        neighborhoods=rows, gaps=gaps, demand_description=demand.description, eta_s=eta, nearest=nearest,
        node_weights=weights, node_neighborhood=node_areas(network, places)[0],
        node_lat=np.asarray(network.lat), node_lon=np.asarray(network.lon), responder_points=list(responders),
        neighborhood_geometry=dict(places.neighborhoods))


# ============================================================================================ fleets

_DEMAND_CACHE: dict[tuple[Any, ...], DemandSurface] = {}
_DEMAND_LOCK = threading.Lock()


def default_demand(network: RoadNetwork, places: Places | None, data_dir: str | os.PathLike[str] | None = None
                   ) -> DemandSurface:
    """The default demand surface (:func:`routing.demand.load_demand`), cached per network and places."""
    key = (network.source, network.n_nodes, float(np.sum(network.lat)), id(places), str(data_dir))
    with _DEMAND_LOCK:
        hit = _DEMAND_CACHE.get(key)
    if hit is None:
        hit = load_demand(network, places, data_dir=data_dir)
        with _DEMAND_LOCK:
            _DEMAND_CACHE[key] = hit
    return hit


def eligible_team_types(rules: Rules, *, mental_health: bool = True, safety_risk: bool = False,
                        weapon: bool = False, needs_transport: bool = False) -> list[str]:
    """Team types in any tier the rules give a call of this class, first tier first.

    Parameters
    ----------
    rules
        :class:`routing.triage.Rules`.
    mental_health, safety_risk, weapon, needs_transport
        The call class.
    """
    from datetime import UTC

    from routing.triage import Call

    call = Call("coverage-class", datetime.now(UTC), 42.36, -71.06, mental_health=mental_health,
                safety_risk=safety_risk, weapon=weapon, needs_transport=needs_transport)
    return [t.value for t in rules.type_tiers(call)]


def fleet_coverage(teams: Sequence[Team | TeamState], *, network: RoadNetwork, places: Places, minutes: float,
                   team_types: Iterable[str] | str | None = None, demand: DemandSurface | None = None,
                   from_staging: bool = False, at: datetime | None = None, mental_health: bool = True
                   ) -> CoverageResult:
    """Coverage by a fleet's teams, from where they are now or from their staging sites.

    Parameters
    ----------
    teams
        :class:`routing.fleet.TeamState` (live) or :class:`routing.fleet.Team` (always at base).
    network, places
        Road network and places.
    minutes
        Time standard.
    team_types
        Only these types (names or :class:`routing.fleet.TeamType`); ``None``: every team.
    demand
        Demand surface (default: :func:`default_demand`).
    from_staging
        Use each team's staging site instead of its current position; every team counts, whatever
        its status. Otherwise only dispatchable teams (``available``, ``returning``) count, from their
        last reported positions.
    at
        If given, teams off shift at this time are left out.
    mental_health
        The demand is mental-health calls (default): dedicated teams count. ``False`` leaves teams
        flagged ``dedicated`` out (they take mental-health calls only).

    Returns
    -------
    CoverageResult
        ``excluded`` lists the teams left out and why.
    """
    from routing.fleet import DISPATCHABLE, Team, TeamState, parse_team_type

    wanted: set[str] | None = None
    if team_types is not None:
        items = [team_types] if isinstance(team_types, str) else list(team_types)
        wanted = {parse_team_type(t).value for t in items}
        if not wanted:
            raise InvalidInput("team_types is empty", field="team_type")
    responders: list[Responder] = []
    excluded: list[dict[str, str]] = []
    for item in teams:
        state = item if isinstance(item, TeamState) else None
        team = state.team if state is not None else item
        if not isinstance(team, Team):
            raise InvalidInput(f"expected Team or TeamState, got {type(item).__name__}", field="teams")
        if wanted is not None and team.team_type.value not in wanted:
            continue
        if team.dedicated and not mental_health:
            excluded.append({"label": team.team_id, "reason": "dedicated to mental-health calls"})
            continue
        if at is not None and not team.on_shift(at):
            excluded.append({"label": team.team_id, "reason": "off shift"})
            continue
        if from_staging or state is None:
            lat, lon = team.base_lat, team.base_lon
        else:
            if state.status not in DISPATCHABLE:
                excluded.append({"label": team.team_id, "reason": f"status {state.status.value}"})
                continue
            lat, lon = state.lat, state.lon
        responders.append(Responder(team.team_id, float(lat), float(lon), tuple(team.service_area),
                                    team.team_type.value))
    what = "every team type" if wanted is None else "team types: " + ", ".join(sorted(wanted))
    where = "staging sites" if from_staging else "current positions"
    return coverage(network, places, responders, minutes, demand=demand, label=f"{what} ({where})",
                    excluded=excluded)


def site_coverage(sites: Sequence[Site], *, network: RoadNetwork, places: Places, minutes: float,
                  demand: DemandSurface | None = None, label: str = "sites") -> CoverageResult:
    """Coverage from staging sites (objects with ``site_id``/``name``, ``lat``, ``lon``), citywide."""
    responders = [Responder(str(getattr(s, "site_id", None) or getattr(s, "name", f"site {k}")),
                            float(s.lat), float(s.lon)) for k, s in enumerate(sites)]
    return coverage(network, places, responders, minutes, demand=demand, label=label)
