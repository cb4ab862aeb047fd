"""Expected coverage of demand by the teams that are free now (MEXCLP), and coverage-aware dispatch.

Expected coverage (Daskin's MEXCLP, 1983): a node covered by ``k`` available teams within the time
standard is served in time unless all ``k`` are busy; with each team busy independently with
probability ``q`` (the *busy fraction*), the expected covered demand is

    E = sum_n d_n * (1 - q ** k_n)

with ``d_n`` the node's demand (expected calls a year, :mod:`routing.demand`). The dynamic use of the
same measure for real-time decisions (which free team to send, where to move the others) is Jagtenberg,
van der Mei & Bhulai's DMEXCLP (2015); their 2017 bound on what any policy gains over "closest idle" is
about 18 % fewer late arrivals, at some cost in mean response.

Coverage of a team is judged from where it is (off-network leg + partial segment, as dispatch does) to
every road node, within ``minutes``; a team with a service area covers only nodes inside it (the
dedicated co-response cars), and only teams that are dispatchable and on shift count.

:func:`coverage_order` is what :func:`routing.dispatch.suggest` and :func:`routing.dispatch.assign`
use when a triage rule asks for ``choice = "coverage"``: among the eligible teams whose ETA is within a
slack of the closest one (``[choice]`` of the rules file), prefer the one whose departure keeps the most
expected coverage of the teams of the call's tier. Priority 1 is always closest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse.csgraph import dijkstra

from routing.errors import InvalidInput
from routing.fleet import DISPATCHABLE, TeamState, TeamType

if TYPE_CHECKING:
    from routing.demand import DemandSurface
    from routing.network import RoadNetwork
    from routing.places import Places
    from routing.triage import ChoiceSettings

#: Busy fraction used when nothing better is known: the utilisation of the crisis teams in a year of
#: simulated pilot operation is 0.2-0.4 (``crisis-dispatch simulate``), Daskin's examples use 0.3.
DEFAULT_BUSY_FRACTION = 0.3
_CACHE_MAX = 20_000


def type_label(types: Sequence[TeamType]) -> str:
    """People's name of a group of team types (``EMT+clinician team``)."""
    names = {TeamType.emt_clinician: "EMT+clinician team", TeamType.co_response: "co-response team",
             TeamType.community: "community team", TeamType.police: "police unit", TeamType.ems: "ambulance"}
    return " or ".join(names.get(t, t.value) for t in types)


@dataclass
class CoverageModel:
    """Demand per road node and the coverage of team positions, for real-time decisions.

    Attributes
    ----------
    weights
        Shape ``(n_nodes,)``: expected (mental-health) calls a year per node (:mod:`routing.demand`).
    minutes
        Time standard (minutes).
    busy_fraction
        ``q`` of MEXCLP: probability that a given team is busy when a call comes.
    node_neighborhood, node_district
        Per node names (``None`` outside every polygon); needed for service areas and per-neighborhood
        figures.
    """

    weights: np.ndarray
    minutes: float = 8.0
    busy_fraction: float = DEFAULT_BUSY_FRACTION
    node_neighborhood: np.ndarray | None = None
    node_district: np.ndarray | None = None
    _columns: dict[tuple[int, float, float, float], np.ndarray] = field(default_factory=dict, repr=False)
    _masks: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=float)
        if not math.isfinite(self.minutes) or self.minutes <= 0:
            raise InvalidInput(f"minutes must be positive, got {self.minutes!r}", field="minutes")
        if not 0 <= self.busy_fraction < 1:
            raise InvalidInput(f"busy_fraction must be in [0, 1), got {self.busy_fraction!r}", field="busy_fraction")

    @classmethod
    def build(cls, network: RoadNetwork, places: Places | None, *, demand: DemandSurface | None = None,
              minutes: float = 8.0, busy_fraction: float = DEFAULT_BUSY_FRACTION) -> CoverageModel:
        """From a demand surface (default :func:`routing.coverage.default_demand`, needs ``places``)."""
        if demand is None:
            if places is None:
                raise InvalidInput("coverage-aware decisions need places or a demand surface", field="places")
            from routing.coverage import default_demand

            demand = default_demand(network, places)
        nb = dist = None
        if places is not None:
            from routing.demand import node_areas

            nb, dist = node_areas(network, places)
        elif demand.node_neighborhood is not None:
            nb = demand.node_neighborhood
        return cls(np.asarray(demand.weights, dtype=float), float(minutes), float(busy_fraction), nb, dist)

    def with_settings(self, minutes: float, busy_fraction: float) -> CoverageModel:
        """The same demand with another standard or busy fraction (columns cached anew)."""
        if minutes == self.minutes and busy_fraction == self.busy_fraction:
            return self
        return CoverageModel(self.weights, float(minutes), float(busy_fraction), self.node_neighborhood,
                             self.node_district)

    # -------------------------------------------------------------- coverage of one position
    def column(self, network: RoadNetwork, lat: float, lon: float) -> np.ndarray:
        """Nodes reached from ``(lat, lon)`` within the standard: bool ``(n_nodes,)``.

        The position attaches to any road (a team may be on an expressway), as dispatch snaps teams.
        Cached per network profile and position (a team at its post is looked up, not searched).
        """
        limit = self.minutes * 60.0
        key = (id(network.csr), round(float(lat), 6), round(float(lon), 6), limit)
        with self._lock:
            hit = self._columns.get(key)
        if hit is not None:
            return hit
        try:
            snap = network.snap(lat, lon, field="team position", on="any")
        except InvalidInput:
            col = np.zeros(network.n_nodes, dtype=bool)
        else:
            nodes, legs, _ = network.snap_exits(snap)
            times = np.full(network.n_nodes, np.inf)
            if len(nodes):
                rows = np.atleast_2d(dijkstra(network.csr, directed=True, indices=np.asarray(nodes, dtype=np.int64),
                                              limit=limit))
                times = np.min(rows + np.asarray(legs, dtype=float)[:, None], axis=0) + snap.time_s
            col = times <= limit
        with self._lock:
            if len(self._columns) >= _CACHE_MAX:
                self._columns.clear()
            self._columns[key] = col
        return col

    def area_mask(self, area: Sequence[str]) -> np.ndarray | None:
        """Nodes inside a service area (district codes or neighborhood names); None: citywide."""
        if not area:
            return None
        key = tuple(sorted(area))
        hit = self._masks.get(key)
        if hit is None:
            if self.node_neighborhood is None and self.node_district is None:
                raise InvalidInput("service areas need places (node neighborhoods and districts)", field="places")
            hit = np.zeros(self.weights.size, dtype=bool)
            for names in (self.node_neighborhood, self.node_district):
                if names is not None:
                    hit |= np.isin(names, list(key))
            self._masks[key] = hit
        return hit

    def team_column(self, network: RoadNetwork, team_state: TeamState, lat: float | None = None,
                    lon: float | None = None) -> np.ndarray:
        """Coverage of a team from its position (or ``lat``/``lon``), inside its service area."""
        col = self.column(network, team_state.lat if lat is None else lat, team_state.lon if lon is None else lon)
        mask = self.area_mask(team_state.team.service_area)
        return col if mask is None else col & mask

    # -------------------------------------------------------------- expected coverage
    def expected(self, counts: np.ndarray) -> float:
        """``sum d_n (1 - q^k_n)`` in expected calls a year (``counts`` = ``k`` per node)."""
        return float(np.sum(self.weights * (1.0 - self.busy_fraction ** np.asarray(counts, dtype=float))))

    def uncovered_by_neighborhood(self, counts: np.ndarray) -> dict[str, float]:
        """Demand (calls a year) with no team within the standard, per neighborhood, largest first."""
        zero = np.asarray(counts) == 0
        if self.node_neighborhood is None:
            return {"(all)": float(self.weights[zero].sum())}
        missing = np.array([n is None for n in self.node_neighborhood], dtype=bool)
        names = np.where(missing, "(unknown)", self.node_neighborhood).astype(str)
        labels, inv = np.unique(names[zero], return_inverse=True)
        sums = np.bincount(inv, weights=self.weights[zero], minlength=len(labels))
        return dict(sorted(zip(labels.tolist(), sums.tolist(), strict=True), key=lambda t: -t[1]))


def free_teams(teams: Sequence[TeamState], types: Sequence[TeamType], now: datetime) -> list[TeamState]:
    """The teams that count for coverage: of these types, dispatchable and on shift."""
    wanted = set(types)
    return [ts for ts in teams if ts.team.team_type in wanted and ts.status in DISPATCHABLE
            and ts.team.on_shift(now)]


@dataclass
class Departure:
    """What sending one team leaves behind (expected calls a year of the model's demand)."""

    team_id: str
    eta_s: float
    expected_after: float
    expected_before: float
    uncovered_after: float
    newly_uncovered: dict[str, float]
    within_slack: bool

    @property
    def loss(self) -> float:
        return self.expected_before - self.expected_after

    def sentence(self, types: Sequence[TeamType], minutes: float) -> str:
        if not self.newly_uncovered:
            return (f"sending {self.team_id} leaves every neighbourhood it covered with another "
                    f"{type_label(types)} within {minutes:g} min")
        nb, lost = next(iter(self.newly_uncovered.items()))
        return (f"sending {self.team_id} leaves {lost:.0f} expected calls a year of {nb} without an "
                f"{type_label(types)} within {minutes:g} min")

    def to_dict(self) -> dict[str, Any]:
        return {"expected_coverage_after": round(self.expected_after, 1),
                "expected_coverage_before": round(self.expected_before, 1),
                "expected_coverage_lost": round(self.loss, 1),
                "uncovered_after": round(self.uncovered_after, 1),
                "newly_uncovered_by_neighborhood": {k: round(v, 1) for k, v in self.newly_uncovered.items()},
                "within_slack": self.within_slack}


def departures(candidates: Sequence[tuple[TeamState, float]], teams: Sequence[TeamState], *,
               types: Sequence[TeamType], model: CoverageModel, network: RoadNetwork, now: datetime,
               settings: ChoiceSettings) -> list[Departure]:
    """Coverage left behind by sending each candidate, in candidate order.

    Parameters
    ----------
    candidates
        ``(team state, ETA s)`` of the eligible teams of the call's tier, closest first.
    teams
        Every team state known (the ones that count are picked by :func:`free_teams`).
    types
        Team types of the call's tier: the coverage that matters is of the calls those teams take.
    """
    free = free_teams(teams, types, now)
    cols = {ts.team_id: model.team_column(network, ts) for ts in free}
    counts = np.zeros(model.weights.size, dtype=np.int64)
    for c in cols.values():
        counts += c
    before = model.expected(counts)
    unc_before = model.uncovered_by_neighborhood(counts)
    best = candidates[0][1] if candidates else 0.0
    out = []
    for ts, eta in candidates:
        col = cols.get(ts.team_id)
        if col is None:
            col = model.team_column(network, ts)
            after_counts = counts  # not counted as free (e.g. off shift): its departure changes nothing
        else:
            after_counts = counts - col
        unc_after = model.uncovered_by_neighborhood(after_counts)
        newly = {k: v - unc_before.get(k, 0.0) for k, v in unc_after.items() if v - unc_before.get(k, 0.0) > 0.5}
        newly = dict(sorted(newly.items(), key=lambda t: -t[1]))
        within = eta - best <= settings.slack_s + 1e-9 and eta <= best * (1 + settings.slack_fraction) + 1e-9
        out.append(Departure(ts.team_id, float(eta), model.expected(after_counts), before,
                             float(sum(unc_after.values())), newly, bool(within)))
    return out


def coverage_order(deps: Sequence[Departure]) -> list[int]:
    """Indices of ``deps`` in the order to offer them: the best in-slack departure first, then by ETA.

    Ties in kept coverage (to 0.1 call a year) go to the closer team, so a choice changes only when it
    keeps measurably more coverage.
    """
    if not deps:
        return []
    slack = [k for k, d in enumerate(deps) if d.within_slack]
    first = min(slack, key=lambda k: (-round(deps[k].expected_after, 1), deps[k].eta_s, k))
    return [first] + [k for k in range(len(deps)) if k != first]
