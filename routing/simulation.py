"""Discrete-event simulation of calls and teams, to compare response policies over days to a year.

Calls arrive (from the demand model, or replayed from a file), are triaged and dispatched by the live
system's own code (:func:`routing.dispatch.suggest` for each new call, :func:`routing.dispatch.assign`
when several waiting calls compete for a team that has just become free), and teams drive over the
road network, work on scene, may transport the patient to the nearest acute-care hospital, and drive
back to their staging site. A team driving back is ``returning``: dispatch may send it from its current
position, interpolated along its route.

Events, kept in one heap ordered by (time, sequence number):

``arrival``       a call comes in: suggest; the best team goes ``en_route``, or the call waits
``on_scene``      the team arrives (response time = arrival on scene - call received)
``clear``         scene work done: ``transporting`` if the call needs transport and the team can carry
                  a patient, else ``returning``
``handoff``       the patient is handed over at the hospital: ``returning``
``at_base``       back at the staging site: ``available``
``shift_start``   a team comes on shift (waiting calls are offered to it)
``abandon``       a call has waited ``max_wait_s`` with no eligible team free: reported unserved

Dispatch is shown the teams that could take the call at all (dispatchable, of a type in one of the
call's tiers): it would report the others as ``busy`` or ``wrong_type`` and never choose them, so the
decision is the same and the run is faster. Whenever a team becomes dispatchable (``returning``) or
comes on shift, the waiting calls it could serve are dispatched again (one call: ``suggest``; several:
``assign``, jointly). A call is unserved only by abandonment, by a location off the road network, or
by still waiting when the run ends.

Drives use the speed model's response mode (``emergent`` for priority-1 calls, ``non_emergent`` for
the others, for transports and for the way back) and its hour-of-day factor at the time of departure.

Randomness (``numpy.random.Generator`` seeded from ``seed``) is drawn per call, in call order, before the
run: arrivals, locations and flags from one stream, service-time scores from another. A policy change
therefore meets exactly the same calls with the same "difficulty" (common random numbers): a call's
on-scene time is the same quantile of whichever team type serves it. Nothing depends on the wall clock
or on dict/set iteration order; wall-clock figures live only under the result's ``run`` key.

The calls come from :mod:`routing.arrivals` (generated or replayed).
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
from scipy.sparse.csgraph import dijkstra

from routing.arrivals import (
    _aware,
    _check_days,
    _locate,
)
from routing.dispatch import assign, place_calls, suggest
from routing.errors import InvalidInput
from routing.eta import eta_engine
from routing.fleet import DEFAULT_TIMEZONE, DISPATCHABLE, TRANSITIONS, Team, TeamState, TeamStatus, TeamType
from routing.policy import Policy
from routing.triage import Call

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from routing.network import RoadNetwork
    from routing.places import Places

S = TeamStatus
TZ = ZoneInfo(DEFAULT_TIMEZONE)
DAY_S = 86_400.0
#: Calls of these priorities are answered with lights and sirens (``emergent`` speed profile).
EMERGENT_PRIORITIES: tuple[int, ...] = (1,)
DEFAULT_MAX_WAIT_S = 2 * 3600.0
#: At most this many waiting calls go into one joint assignment (the most urgent, oldest first).
_BATCH = 16

_ARRIVAL, _ON_SCENE, _CLEAR, _HANDOFF, _AT_BASE, _SHIFT_START, _ABANDON = range(7)
_BUSY = (S.en_route, S.on_scene, S.transporting)
_DISPATCHABLE = DISPATCHABLE
_STATUS_INDEX = {s: i for i, s in enumerate(TeamStatus)}
_MEDICAL_CLASSES = ("sick_assist", "sick_assist_drug", "medical_person")


# ------------------------------------------------------------------------------------------ results


@dataclass
class CallOutcome:
    """What happened to one call (times in seconds from the start of the run)."""

    call_id: str
    klass: str
    mental_health: bool
    neighborhood: str | None
    received_s: float
    served: bool
    team_id: str | None = None
    team_type: str | None = None
    tier_index: int | None = None
    preferred: bool | None = None
    dispatched_s: float | None = None
    on_scene_s: float | None = None
    clear_s: float | None = None
    free_s: float | None = None
    queued: bool = False
    transported_to: str | None = None
    transport_missed: bool = False
    unserved_reason: str | None = None

    @property
    def response_s(self) -> float | None:
        """Call received → team on scene."""
        return None if self.on_scene_s is None else self.on_scene_s - self.received_s

    @property
    def wait_s(self) -> float | None:
        """Call received → team dispatched (0 when a team was free)."""
        return None if self.dispatched_s is None else self.dispatched_s - self.received_s

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["response_s"] = self.response_s
        d["wait_s"] = self.wait_s
        return d


@dataclass
class TeamUsage:
    """Time a team spent in each status inside the simulated period, and the calls it took."""

    team_id: str
    team_type: str
    on_shift_s: float
    status_s: dict[str, float]
    calls: int

    @property
    def busy_s(self) -> float:
        """En route, on scene or transporting."""
        return sum(self.status_s.get(s.value, 0.0) for s in _BUSY)

    @property
    def utilisation(self) -> float:
        """Busy time / on-shift time (a call that runs past the end of a shift can push it above 1)."""
        return self.busy_s / self.on_shift_s if self.on_shift_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"team_type": self.team_type, "calls": self.calls, "on_shift_h": _r(self.on_shift_s / 3600, 2),
                "busy_h": _r(self.busy_s / 3600, 2),
                "returning_h": _r(self.status_s.get(S.returning.value, 0.0) / 3600, 2),
                "utilisation": _r(self.utilisation, 4)}


@dataclass
class SimulationResult:
    """Outcome of one simulated run: per-call outcomes, per-team usage and summaries.

    ``to_dict()`` holds the summaries; everything in it but ``run`` is a pure function of the inputs and
    the seed.
    """

    policy: Policy
    start: datetime
    days: float
    seed: int
    outcomes: list[CallOutcome]
    usage: list[TeamUsage]
    events: int
    max_queue: int
    scenario: dict[str, Any]
    wall_s: float
    trace: list[tuple[float, str, str, str, str | None]] | None = None
    places: Places | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """Every figure except wall-clock ones."""
        return _summarise(self)

    def to_geojson(self) -> dict[str, Any]:
        """Neighborhood polygons (lon/lat) with their response-time figures, for a map.

        Raises
        ------
        InvalidInput
            If the run had no ``places`` (no neighborhood polygons to draw).
        """
        if self.places is None:
            raise InvalidInput("this run has no places: pass places= to simulate() for a map", field="places")
        import shapely

        all_calls = _grouped([o for o in self.outcomes if o.served], lambda o: o.neighborhood)
        mh = _grouped([o for o in self.outcomes if o.served and o.mental_health], lambda o: o.neighborhood)
        totals: dict[str, int] = {}
        for o in self.outcomes:
            totals[o.neighborhood or "(unknown)"] = totals.get(o.neighborhood or "(unknown)", 0) + 1
        features = []
        for name in sorted(self.places.neighborhoods):
            geom = self.places.neighborhoods[name]
            stats = all_calls.get(name, _stats([]))
            mh_stats = mh.get(name, _stats([]))
            features.append({"type": "Feature", "geometry": json.loads(shapely.to_geojson(geom)), "properties": {
                "neighborhood": name, "policy": self.policy.name, "calls": totals.get(name, 0),
                "response_median_s": stats["median_s"], "response_p90_s": stats["p90_s"],
                "mh_calls_served": mh_stats["n"], "mh_response_median_s": mh_stats["median_s"],
                "mh_response_p90_s": mh_stats["p90_s"]}})
        return {"type": "FeatureCollection", "features": features}

    def to_dict(self) -> dict[str, Any]:
        d = self.summary()
        d["run"] = {"wall_s": round(self.wall_s, 3),
                    "events_per_s": round(self.events / self.wall_s, 1) if self.wall_s > 0 else None}
        return d

    def to_frame(self, level: str = "calls") -> pd.DataFrame:
        """The run as a table.

        Parameters
        ----------
        level
            ``"calls"``: one row per call, in call order, the columns of :meth:`CallOutcome.to_dict` (times in
            seconds from the start of the run; ``response_s`` received to on scene); ``"teams"``: one row
            per team, ``team_id`` then the columns of :meth:`TeamUsage.to_dict` (hours).

        Raises
        ------
        InvalidInput
            Another ``level``.
        """
        from routing._frames import frame

        if level == "calls":
            return frame((o.to_dict() for o in self.outcomes), _OUTCOME_COLUMNS)
        if level == "teams":
            return frame(({"team_id": u.team_id, **u.to_dict()} for u in self.usage), _USAGE_COLUMNS)
        raise InvalidInput(f"level must be 'calls' or 'teams', got {level!r}", field="level")

    def to_gdf(self) -> gpd.GeoDataFrame:
        """:meth:`to_geojson` as a GeoDataFrame, EPSG:4326: neighborhood polygons with response times.

        Raises
        ------
        InvalidInput
            If the run had no ``places``.
        """
        from routing._frames import geo_frame

        return geo_frame(self.to_geojson())

    def __repr__(self) -> str:
        from routing._frames import minutes

        served = [o.response_s for o in self.outcomes if o.served and o.response_s is not None]
        median = float(np.median(served)) if served else None
        n = len(self.outcomes)
        pct = f"{len(served) / n:.1%}" if n else "-"
        return (f"<SimulationResult policy {self.policy.name}: {self.days:g} days, {n} calls, {pct} served, "
                f"median response {minutes(median)}>")


@dataclass
class ComparisonResult:
    """Several policies run on the same calls with the same seed."""

    results: list[SimulationResult]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "policies": [r.summary() for r in self.results],
            "run": {"wall_s": round(self.wall_s, 3),
                    "per_policy_wall_s": {r.policy.name: round(r.wall_s, 3) for r in self.results}},
        }

    def to_frame(self, level: str = "calls") -> pd.DataFrame:
        """Every policy's :meth:`SimulationResult.to_frame` stacked, with a first column ``policy``.

        The same calls appear once per policy, so ``groupby("policy")`` compares them directly.
        """
        import pandas as pd

        frames = [r.to_frame(level) for r in self.results]
        for r, f in zip(self.results, frames, strict=True):
            f.insert(0, "policy", r.policy.name)
        return pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        return f"<ComparisonResult {len(self.results)} policies: " + "; ".join(
            repr(r)[len("<SimulationResult policy "):-1] for r in self.results) + ">"


_OUTCOME_COLUMNS = (*CallOutcome.__dataclass_fields__, "response_s", "wait_s")
_USAGE_COLUMNS = ("team_id", "team_type", "calls", "on_shift_h", "busy_h", "returning_h", "utilisation")


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    if not len(values):
        return {"n": 0, "median_s": None, "p90_s": None, "mean_s": None, "max_s": None}
    a = np.asarray(values, dtype=float)
    return {"n": int(len(a)), "median_s": _r(np.percentile(a, 50)), "p90_s": _r(np.percentile(a, 90)),
            "mean_s": _r(a.mean()), "max_s": _r(a.max())}


def _grouped(outcomes: Sequence[CallOutcome], key: Callable[[CallOutcome], str | None]) -> dict[str, Any]:
    groups: dict[str, list[float]] = {}
    for o in outcomes:
        if o.response_s is not None:
            groups.setdefault(key(o) or "(unknown)", []).append(o.response_s)
    return {k: _stats(groups[k]) for k in sorted(groups)}


def _summarise(res: SimulationResult) -> dict[str, Any]:
    outs = res.outcomes
    served = [o for o in outs if o.served]
    by_class: dict[str, dict[str, int]] = {}
    for o in outs:
        c = by_class.setdefault(o.klass, {"calls": 0, "served": 0, "unserved": 0})
        c["calls"] += 1
        c["served" if o.served else "unserved"] += 1
    reasons: dict[str, int] = {}
    for o in outs:
        if not o.served:
            reasons[o.unserved_reason or "?"] = reasons.get(o.unserved_reason or "?", 0) + 1
    mh = [o for o in outs if o.mental_health]
    mh_served = [o for o in mh if o.served]
    mh_types: dict[str, int] = {}
    for o in mh_served:
        mh_types[o.team_type or "?"] = mh_types.get(o.team_type or "?", 0) + 1
    queued = [o for o in outs if o.queued]
    waits = [o.wait_s for o in queued if o.wait_s is not None]
    usage = {u.team_id: u.to_dict() for u in res.usage}
    by_type: dict[str, dict[str, float]] = {}
    for u in res.usage:
        t = by_type.setdefault(u.team_type, {"teams": 0, "calls": 0, "busy_s": 0.0, "on_shift_s": 0.0})
        t["teams"] += 1
        t["calls"] += u.calls
        t["busy_s"] += u.busy_s
        t["on_shift_s"] += u.on_shift_s
    usage_by_type = {k: {"teams": v["teams"], "calls": v["calls"], "busy_h": _r(v["busy_s"] / 3600, 2),
                         "on_shift_h": _r(v["on_shift_s"] / 3600, 2),
                         "utilisation": _r(v["busy_s"] / v["on_shift_s"], 4) if v["on_shift_s"] else None}
                     for k, v in sorted(by_type.items())}
    n_mh = len(mh)
    transported = [o for o in served if o.transported_to]
    return {
        "policy": res.policy.to_dict(),
        "scenario": {"start": res.start.astimezone(TZ).isoformat(), "days": res.days, "seed": res.seed, **res.scenario},
        "calls": {
            "total": len(outs), "served": len(served), "unserved": len(outs) - len(served),
            "by_class": dict(sorted(by_class.items())),
            "unserved_reasons": dict(sorted(reasons.items())),
            "transported": len(transported),
            "transport_missed": sum(1 for o in served if o.transport_missed),
        },
        "response_time": {
            "overall": _stats([o.response_s for o in served if o.response_s is not None]),
            "by_team_type": _grouped(served, lambda o: o.team_type),
            "by_neighborhood": _grouped(served, lambda o: o.neighborhood),
            "by_class": _grouped(served, lambda o: o.klass),
        },
        "mental_health": {
            "calls": n_mh,
            "served": len(mh_served),
            "response_time": _stats([o.response_s for o in mh_served if o.response_s is not None]),
            "preferred_share": _r(sum(1 for o in mh_served if o.preferred) / n_mh, 4) if n_mh else None,
            "police_share": _r(mh_types.get(TeamType.police.value, 0) / n_mh, 4) if n_mh else None,
            "fell_back_share": _r(sum(1 for o in mh_served if not o.preferred) / n_mh, 4) if n_mh else None,
            "by_team_type": dict(sorted(mh_types.items())),
        },
        "queue": {
            "queued_calls": len(queued),
            "queued_share": _r(len(queued) / len(outs), 4) if outs else None,
            "wait": _stats(waits),
            "max_length": res.max_queue,
        },
        "utilisation": {"by_team": usage, "by_team_type": usage_by_type},
        "events": res.events,
    }


# ------------------------------------------------------------------------------------------ the engine


@dataclass
class _Trip:
    """A drive back to base: off-network leg, path nodes with arrival offsets, final leg."""

    t0: float
    origin: tuple[float, float]
    first_leg_s: float
    node: int  # first network node
    to_base: np.ndarray  # seconds from every node to the base node
    pred: np.ndarray  # next node toward the base
    base_node: int
    end_s: float
    path: list[int] | None = None
    offsets: list[float] | None = None
    #: After :meth:`position`: ``(a, b, fraction)`` when the team is on the road from node a to node b.
    edge: tuple[int, int, float] | None = None

    def position(self, t: float, lat: np.ndarray, lon: np.ndarray, base: tuple[float, float]
                 ) -> tuple[float, float]:
        """(lat, lon) at time ``t``: on the first leg, along the path, or on the last leg."""
        e = t - self.t0
        self.edge = None
        if e >= self.end_s - self.t0:
            return base
        node_lat, node_lon = float(lat[self.node]), float(lon[self.node])
        if e < self.first_leg_s:
            f = e / self.first_leg_s
            return (self.origin[0] + (node_lat - self.origin[0]) * f, self.origin[1] + (node_lon - self.origin[1]) * f)
        if self.path is None:
            path = [self.node]
            while path[-1] != self.base_node:
                path.append(int(self.pred[path[-1]]))
            start = float(self.to_base[self.node])
            self.path = path
            self.offsets = [self.first_leg_s + start - float(self.to_base[v]) for v in path]
        offsets = self.offsets
        k = bisect.bisect_right(offsets, e) - 1  # type: ignore[arg-type]
        path = self.path
        if k >= len(path) - 1:  # past the last node: on the leg to the base point
            last = path[-1]
            span = (self.end_s - self.t0) - offsets[-1]  # type: ignore[index]
            f = (e - offsets[-1]) / span if span > 0 else 1.0  # type: ignore[index]
            return (float(lat[last]) + (base[0] - float(lat[last])) * f,
                    float(lon[last]) + (base[1] - float(lon[last])) * f)
        a, b = path[k], path[k + 1]
        span = offsets[k + 1] - offsets[k]  # type: ignore[index]
        f = (e - offsets[k]) / span if span > 0 else 0.0  # type: ignore[index]
        self.edge = (a, b, f)
        return (float(lat[a]) + (float(lat[b]) - float(lat[a])) * f,
                float(lon[a]) + (float(lon[b]) - float(lon[a])) * f)


class _TreeCache:
    """Full shortest-path trees toward a node (a base, a hospital), shared by every run in the process.

    A tree is a pure function of the profile's travel times and its root, so sharing it cannot change a
    figure; a sweep worker's later replications skip the searches. Bounded in bytes (``max_mb``), least
    recently used first out; a profile's trees go when its travel-time matrix is garbage-collected.
    """

    def __init__(self, max_mb: float = 128.0) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.used = 0
        self.trees: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.profiles: set[int] = set()  # travel-time matrices whose end is watched
        self.lock = threading.Lock()

    def toward(self, net: RoadNetwork, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(seconds from every node to ``node``, next node toward it) on ``net``'s travel times."""
        key = (id(net.csr), int(node))
        with self.lock:
            hit = self.trees.get(key)
            if hit is not None:
                self.trees.move_to_end(key)
                return hit
            if key[0] not in self.profiles:  # an id can be reused once its matrix is gone: forget then
                self.profiles.add(key[0])
                weakref.finalize(net.csr, self._forget, key[0])
        times, pred = dijkstra(eta_engine(net).reverse, directed=True, indices=int(node), return_predecessors=True)
        with self.lock:
            self.trees[key] = (times, pred)
            self.used += times.nbytes + pred.nbytes
            while self.used > self.max_bytes and len(self.trees) > 1:
                _, (t_old, p_old) = self.trees.popitem(last=False)
                self.used -= t_old.nbytes + p_old.nbytes
        return times, pred

    def _forget(self, csr_id: int) -> None:
        with self.lock:
            self.profiles.discard(csr_id)
            for key in [k for k in self.trees if k[0] == csr_id]:
                t_old, p_old = self.trees.pop(key)
                self.used -= t_old.nbytes + p_old.nbytes


_TREES = _TreeCache()


class _Simulator:
    def __init__(self, policy: Policy, calls: Sequence[Call], *, network: RoadNetwork, places: Places | None,
                 start: datetime, end: datetime, seed: int, max_wait_s: float | None,
                 hospitals: Sequence[tuple[str, float, float]], emergent_priorities: Sequence[int], time_of_day: bool,
                 progress: Callable[[float, str], None] | None, trace: bool) -> None:
        self.policy = policy
        self.rules = policy.rules
        self.network = network
        self.places = places
        self.start = start
        self.horizon = (end - start).total_seconds()
        self.max_wait_s = max_wait_s
        self.emergent = frozenset(int(p) for p in emergent_priorities)
        self.time_of_day = time_of_day
        self.progress = progress
        self._label = f"simulate {policy.name}"
        self.trace: list[tuple[float, str, str, str, str | None]] | None = [] if trace else None
        self.calls = list(calls)
        self.teams = list(policy.teams)
        n = len(self.calls)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
        self.z_scene = rng.standard_normal(n)
        self.z_handoff = rng.standard_normal(n)
        self.states = [TeamState(t, S.available, t.base_lat, t.base_lon, start, start) for t in self.teams]
        self.team_index = {t.team_id: j for j, t in enumerate(self.teams)}
        self.base_snap = []
        for t in self.teams:
            try:
                self.base_snap.append(network.snap(t.base_lat, t.base_lon, field=f"base of team {t.team_id}"))
            except InvalidInput as exc:
                raise InvalidInput(f"team {t.team_id}: staging site is off the road network: {exc.message}",
                                   field="policy") from None
        self.hospitals = list(hospitals)
        self.hosp_snap = [network.snap(lat, lon, field=f"hospital {name}") for name, lat, lon in self.hospitals]
        self.hosp_nodes = np.array([s.node for s in self.hosp_snap], dtype=np.int64)
        self.hosp_leg = np.array([s.time_s for s in self.hosp_snap])
        # Every call is known in advance: snap and locate them all at once, not one per suggestion.
        self.placed = place_calls(self.calls, places, network)
        self.call_node = [-1 if pc is None else pc.snap.node for pc in self.placed]
        self.call_leg = [0.0 if pc is None else pc.snap.time_s for pc in self.placed]
        self.heap: list[tuple[float, int, int, int, int, int]] = []
        self.seq = 0
        self.queue: list[int] = []
        self.queued_set: set[int] = set()
        self.max_queue = 0
        self.team_call: list[int | None] = [None] * len(self.teams)
        self.trip: list[_Trip | None] = [None] * len(self.teams)
        self.epoch = [0] * len(self.teams)
        self.since = [0.0] * len(self.teams)
        self.status_acc = np.zeros((len(self.teams), len(TeamStatus)))
        self.calls_taken = [0] * len(self.teams)
        self.outcomes = [CallOutcome(c.call_id, c.klass, c.mental_health, c.neighborhood,
                                     (c.received - start).total_seconds(), served=False) for c in self.calls]
        self._nets: dict[tuple[str, int | None], RoadNetwork] = {}
        self._to_base: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._to_hosp: dict[int, np.ndarray] = {}
        self._types_of_call: dict[int, frozenset[TeamType]] = {}
        self.events = 0
        # Where each team returns after a call: its base, unless a move-up or a coverage return moved it.
        self.home = [(t.base_lat, t.base_lon) for t in self.teams]
        self.home_snap = list(self.base_snap)
        self.opts = getattr(policy, "dispatch", None) or {}
        self.moves = 0
        self._last_moveup = -math.inf
        self.coverage = None
        self._warm_caches(end)
        wants = (self.opts.get("moveup") or self.opts.get("return_to") == "coverage"
                 or any(r.choice == "coverage" for r in self.rules.rules))
        if wants:
            self.coverage = _coverage_model(network, places, self.rules)
            self.cov_net = network.with_profile("non_emergent")
            from routing.moveup import default_posts

            self.posts = default_posts(self.states, places)

    def _warm_caches(self, end: datetime) -> None:
        """Start from ETA caches holding exactly the rows of the teams' bases in every profile the run
        drives in (:func:`routing.eta.reset_caches`): the figures then depend on the inputs alone, not
        on what ran before in the process, and a sweep worker's later replications reuse the rows."""
        from routing import eta

        hours: list[int | None] = [None]
        if self.time_of_day:
            span_h = min(25, math.ceil((end - self.start).total_seconds() / 3600) + 1)
            hours = sorted({(self.start + timedelta(hours=k)).astimezone(TZ).hour for k in range(span_h)})  # type: ignore[assignment]
        engine = eta.eta_engine(self.network)
        snaps = engine.snap_teams(self.network, [(t.base_lat, t.base_lon) for t in self.teams])
        nodes = sorted({int(x) for snap in snaps if not isinstance(snap, InvalidInput)
                        for x in self.network.snap_exits(snap)[0]})
        eta.reset_caches([(self.network.with_profile(mode, hour), nodes)
                          for mode in ("emergent", "non_emergent") for hour in hours])

    # --- clock and networks
    def now_dt(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def net(self, mode: str, when: datetime) -> RoadNetwork:
        hour = when.astimezone(TZ).hour if self.time_of_day else None
        key = (mode, hour)
        net = self._nets.get(key)
        if net is None:
            net = self._nets[key] = self.network.with_profile(mode, hour)
        return net

    def mode_of(self, call: Call) -> str:
        return "emergent" if call.priority in self.emergent else "non_emergent"

    def push(self, t: float, kind: int, a: int, b: int = 0, c: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b, c))

    # --- team status bookkeeping
    def set_status(self, j: int, status: TeamStatus, t: float, call: int | None) -> None:
        ts = self.states[j]
        old = ts.status
        self._account(j, t)
        if self.trace is not None:
            if status != old and status not in TRANSITIONS[old]:
                raise AssertionError(f"impossible transition {old} -> {status} for {ts.team_id}")
            self.trace.append((t, ts.team_id, old.value, status.value,
                               self.calls[call].call_id if call is not None else None))
        ts.status = status
        ts.status_time = self.now_dt(t)

    def _account(self, j: int, t: float) -> None:
        """Add the time since the last status change, inside the simulated period, to its status."""
        lo, hi = max(self.since[j], 0.0), min(t, self.horizon)
        if hi > lo:
            self.status_acc[j, _STATUS_INDEX[self.states[j].status]] += hi - lo
        self.since[j] = t

    def refresh_positions(self, states: Sequence[TeamState], t: float, when: datetime, net: RoadNetwork) -> None:
        """Place returning teams along their route; every team shown to dispatch reports 'now'.

        A team between two nodes of its route is on that road: its snap is told to the ETA engine of
        ``net`` (the profile of the coming decision) rather than searched for.
        """
        lat, lon = self.network.lat, self.network.lon
        points, snaps = [], []
        for ts in states:
            if ts.status is S.returning:
                trip = self.trip[self.team_index[ts.team_id]]
                ts.lat, ts.lon = trip.position(t, lat, lon, (ts.team.base_lat, ts.team.base_lon))  # type: ignore[union-attr]
                on = trip.edge  # type: ignore[union-attr]
                if on is not None:
                    points.append((ts.lat, ts.lon))
                    snaps.append(self.network.snap_on_edge(*on))
            ts.position_time = when
        if points:
            eta_engine(net).place_teams(points, snaps)

    # --- routing helpers
    def to_base(self, net: RoadNetwork, base_node: int) -> tuple[np.ndarray, np.ndarray]:
        key = (id(net.csr), base_node)
        hit = self._to_base.get(key)
        if hit is None:
            hit = self._to_base[key] = _TREES.toward(net, base_node)
        return hit

    def start_return(self, j: int, t: float, origin: tuple[float, float], node: int, leg_s: float) -> None:
        net = self.net("non_emergent", self.now_dt(t))
        if self.opts.get("return_to") == "coverage" and self.coverage is not None:
            self.choose_home(j, t, origin)
        base = self.home_snap[j]
        times, pred = self.to_base(net, base.node)
        end = t + leg_s + float(times[node]) + base.time_s
        self.trip[j] = _Trip(t, origin, leg_s, node, times, pred, base.node, end)
        self.set_status(j, S.returning, t, self.team_call[j])
        self.team_call[j] = None
        self.epoch[j] += 1
        self.push(end, _AT_BASE, j, self.epoch[j])

    # --- dispatch
    def dispatch_to(self, i: int, j: int, eta_s: float, tier_index: int, t: float) -> None:
        o = self.outcomes[i]
        ts = self.states[j]
        self.trip[j] = None
        self.epoch[j] += 1  # cancels a pending at_base
        self.team_call[j] = i
        self.set_status(j, S.en_route, t, i)
        self.calls_taken[j] += 1
        o.served = True
        o.team_id = ts.team_id
        o.team_type = ts.team.team_type.value
        o.tier_index = tier_index
        o.preferred = tier_index == 0
        o.dispatched_s = t
        self.push(t + eta_s, _ON_SCENE, i, j)

    def try_new_call(self, i: int, t: float) -> None:
        call = self.calls[i]
        if self.call_node[i] < 0:
            self.outcomes[i].unserved_reason = "location outside the service area or off the road network"
            return
        when = self.now_dt(t)
        teams = self.candidates([i])
        self.refresh_positions(teams, t, when, self.net(self.mode_of(call), when))
        res = suggest(call, teams, network=self.net(self.mode_of(call), when), rules=self.rules,
                      places=self.places, now=when, top=1, coverage=self.coverage, placed=self.placed[i],
                      distances=False)
        if res.best is not None and res.tier_index is not None:  # a best team comes with its tier
            self.dispatch_to(i, self.team_index[res.best.team_id], res.best.eta_s, int(res.tier_index), t)
            self.maybe_moveup(t)
            return
        self.queue.append(i)
        self.queued_set.add(i)
        self.outcomes[i].queued = True
        self.max_queue = max(self.max_queue, len(self.queue))
        if self.max_wait_s is not None:
            self.push(t + self.max_wait_s, _ABANDON, i)

    def candidates(self, calls: Sequence[int]) -> list[TeamState]:
        """The team states worth showing dispatch: dispatchable, of a type in one of the calls' tiers.

        Dispatch would report every other team as ``wrong_type`` or ``busy`` and never choose it, so
        leaving them out changes no decision; it only spares building their explanations.
        """
        types = frozenset().union(*(self.types_of(i) for i in calls))
        return [ts for ts in self.states if ts.status in _DISPATCHABLE and ts.team.team_type in types]

    def types_of(self, i: int) -> frozenset[TeamType]:
        hit = self._types_of_call.get(i)
        if hit is None:
            call = self.calls[i]
            hit = frozenset(t for tier in self.rules.tiers_for(call) for t in tier.team_types)
            self._types_of_call[i] = hit
        return hit

    def could_serve(self, j: int, i: int, when: datetime) -> bool:
        """Cheap necessary condition for team j to take waiting call i (dispatch decides for real)."""
        team = self.teams[j]
        call = self.calls[i]
        if team.team_type not in self.types_of(i):
            return False
        if team.dedicated and self.rules.dedicated_mental_health_only and not call.mental_health:
            return False
        if team.service_area and not team.serves(call.neighborhood, call.district):
            return False
        return team.on_shift(when)

    def offer(self, j: int, t: float) -> None:
        """Team j has become dispatchable: dispatch the waiting calls it could serve."""
        for _ in range(len(self.teams) + 1):
            if not self.queue or self.states[j].status not in (S.available, S.returning):
                return
            when = self.now_dt(t)
            cand = [i for i in self.queue if self.could_serve(j, i, when)]
            if not cand:
                return
            cand.sort(key=lambda i: (self.calls[i].priority, self.outcomes[i].received_s, i))
            cand = cand[:_BATCH]
            progress = False
            if len(cand) == 1:
                i = cand[0]
                call = self.calls[i]
                teams = self.candidates([i])
                self.refresh_positions(teams, t, when, self.net(self.mode_of(call), when))
                res = suggest(call, teams, network=self.net(self.mode_of(call), when), rules=self.rules,
                              places=self.places, now=when, top=1, coverage=self.coverage, placed=self.placed[i],
                              distances=False)
                if res.best is not None and res.tier_index is not None:  # a best team comes with its tier
                    self._unqueue(i)
                    self.dispatch_to(i, self.team_index[res.best.team_id], res.best.eta_s, int(res.tier_index), t)
                    progress = True
            else:
                # One joint assignment per response mode, the urgent mode first.
                for mode in ("emergent", "non_emergent"):
                    group = [i for i in cand if self.mode_of(self.calls[i]) == mode]
                    if not group:
                        continue
                    teams = self.candidates(group)
                    self.refresh_positions(teams, t, when, self.net(mode, when))
                    joint = assign([self.calls[i] for i in group], teams, network=self.net(mode, when),
                                   rules=self.rules, places=self.places, now=when, coverage=self.coverage,
                                   placed=[self.placed[i] for i in group])
                    by_id = {self.calls[i].call_id: i for i in group}
                    for a in sorted(joint.assignments, key=lambda a: a.call_id):
                        i = by_id[a.call_id]
                        self._unqueue(i)
                        self.dispatch_to(i, self.team_index[a.team_id], a.eta_s, a.tier_index, t)
                        progress = True
            if not progress:
                return

    def _unqueue(self, i: int) -> None:
        self.queue.remove(i)
        self.queued_set.discard(i)

    # --- events
    def on_scene(self, i: int, j: int, t: float) -> None:
        self.set_status(j, S.on_scene, t, i)
        self.outcomes[i].on_scene_s = t
        team = self.teams[j]
        service = self.policy.service_for(team.team_type).quantile(float(self.z_scene[i]))
        self.push(t + service, _CLEAR, i, j)

    def clear(self, i: int, j: int, t: float) -> None:
        call = self.calls[i]
        o = self.outcomes[i]
        o.clear_s = t
        node, leg = self.call_node[i], self.call_leg[i]
        team = self.teams[j]
        if call.needs_transport and team.team_type in self.policy.transport_types:
            if not self.hospitals:
                raise InvalidInput("a call needs transport but the policy has no hospitals", field="hospitals")
            net = self.net("non_emergent", self.now_dt(t))
            rows = self._to_hosp.get(id(net.csr))
            if rows is None:
                rows = self._to_hosp[id(net.csr)] = np.vstack([_TREES.toward(net, h)[0] for h in self.hosp_nodes])
            drive = leg + rows[:, node] + self.hosp_leg
            h = int(np.argmin(drive))
            o.transported_to = self.hospitals[h][0]
            self.set_status(j, S.transporting, t, i)
            handoff = self.policy.handoff.quantile(float(self.z_handoff[i]))
            self.push(t + float(drive[h]) + handoff, _HANDOFF, i, j, h)
            return
        if call.needs_transport:
            o.transport_missed = True
        o.free_s = t
        self.start_return(j, t, (call.lat, call.lon), node, leg)
        self.offer(j, t)

    def handoff(self, i: int, j: int, h: int, t: float) -> None:
        self.outcomes[i].free_s = t
        name, lat, lon = self.hospitals[h]
        snap = self.hosp_snap[h]
        self.start_return(j, t, (lat, lon), snap.node, snap.time_s)
        self.offer(j, t)

    def at_base(self, j: int, epoch: int, t: float) -> None:
        if epoch != self.epoch[j] or self.states[j].status is not S.returning:
            return  # re-dispatched on the way back
        ts = self.states[j]
        self.trip[j] = None
        ts.lat, ts.lon = self.home[j]
        ts.position_time = self.now_dt(t)
        self.set_status(j, S.available, t, None)

    # --- coverage: where a freed team goes (DMEXCLP) and move-up of free teams
    def choose_home(self, j: int, t: float, origin: tuple[float, float]) -> None:
        """The post where team j adds the most expected coverage, given where the others are going."""
        from routing.moveup import plan_moveup

        when = self.now_dt(t)
        team = self.teams[j]
        if self.coverage is None or not team.on_shift(when) or team.team_type not in _CRISIS:
            return
        states = self._coverage_states(t, when)
        # The baseline is going home: the team is placed at its home post and a move is taken only if a
        # post adds more coverage than home by more than the travel penalty (measured from home, a
        # stand-in for the drive from the scene that keeps moves near home).
        me = TeamState(team, S.available, self.home[j][0], self.home[j][1], when, when)
        states = [me if ts.team_id == team.team_id else ts for ts in states]
        plan = plan_moveup(states, network=self.cov_net, model=self.coverage, now=when, posts=self.posts,
                           types=(team.team_type,), max_moves=1, movable=[team.team_id], solver="greedy",
                           max_travel_s=float(self.opts.get("moveup_max_travel_s", 900.0)),
                           travel_penalty=float(self.opts.get("travel_penalty", 60.0)))
        if plan.moves:
            post = plan.moves[0].post
            self.home[j] = (post.lat, post.lon)
            self.home_snap[j] = self.network.snap(post.lat, post.lon, field=f"post {post.site_id}")

    def _coverage_states(self, t: float, when: datetime) -> list[TeamState]:
        """Team states for coverage: returning teams counted at their destination (they will be there)."""
        out = []
        for j, ts in enumerate(self.states):
            if ts.status is S.returning:
                ts = TeamState(ts.team, S.returning, self.home[j][0], self.home[j][1], when, when)
            out.append(ts)
        return out

    def maybe_moveup(self, t: float) -> None:
        """Move-up after a dispatch: at most ``moveup_max_moves`` free teams, once per interval."""
        if not self.opts.get("moveup") or self.coverage is None:
            return
        if t - self._last_moveup < float(self.opts.get("moveup_interval_s", 600.0)):
            return
        self._last_moveup = t
        from routing.moveup import plan_moveup

        when = self.now_dt(t)
        plan = plan_moveup(self._coverage_states(t, when), network=self.cov_net, model=self.coverage, now=when,
                           posts=self.posts, max_moves=int(self.opts.get("moveup_max_moves", 1)), solver="greedy",
                           max_travel_s=float(self.opts.get("moveup_max_travel_s", 900.0)),
                           travel_penalty=float(self.opts.get("travel_penalty", 60.0)))
        for m in plan.moves:
            j = self.team_index[m.team_id]
            if self.states[j].status is not S.available:
                continue
            self.home[j] = (m.post.lat, m.post.lon)
            self.home_snap[j] = self.network.snap(m.post.lat, m.post.lon, field=f"post {m.post.site_id}")
            ts = self.states[j]
            snap = self.network.snap(ts.lat, ts.lon, field="team position", on="any")
            # available -> en_route -> returning at the same instant: a relocating team stays dispatchable
            # (the lifecycle has no available -> returning step), driving toward its new post.
            self.set_status(j, S.en_route, t, None)
            self.start_return(j, t, (ts.lat, ts.lon), snap.node, snap.time_s)
            self.moves += 1

    def abandon(self, i: int) -> None:
        if i in self.queued_set:
            self._unqueue(i)
            wait = self.max_wait_s or 0.0
            self.outcomes[i].unserved_reason = f"no eligible team free within {wait / 60:.0f} min"

    # --- shifts
    def on_shift_seconds(self) -> list[float]:
        out = []
        for team in self.teams:
            intervals = _shift_intervals(team, self.start, self.horizon)
            out.append(sum(b - a for a, b in intervals))
        return out

    def schedule_shift_starts(self) -> None:
        for j, team in enumerate(self.teams):
            for a, _ in _shift_intervals(team, self.start, self.horizon):
                if a > 0:
                    self.push(a, _SHIFT_START, j)

    # --- the run
    def run(self) -> None:
        for i, o in enumerate(self.outcomes):
            self.push(o.received_s, _ARRIVAL, i)
        self.schedule_shift_starts()
        report_every = max(1, len(self.calls) // 200)
        arrivals = 0
        heap = self.heap
        last_t = 0.0
        while heap:
            t, _, kind, a, b, c = heapq.heappop(heap)
            last_t = t
            self.events += 1
            if kind == _ARRIVAL:
                self.try_new_call(a, t)
                arrivals += 1
                if self.progress is not None and arrivals % report_every == 0:
                    self.progress(min(1.0, t / self.horizon) if self.horizon > 0 else 1.0, self._label)
            elif kind == _ON_SCENE:
                self.on_scene(a, b, t)
            elif kind == _CLEAR:
                self.clear(a, b, t)
            elif kind == _HANDOFF:
                self.handoff(a, b, c, t)
            elif kind == _AT_BASE:
                self.at_base(a, b, t)
            elif kind == _SHIFT_START:
                self.offer(a, t)
            elif kind == _ABANDON:
                self.abandon(a)
        end = max(last_t, self.horizon)
        for j in range(len(self.teams)):
            self._account(j, end)
        for i in list(self.queue):  # only without max_wait: nobody ever came
            self._unqueue(i)
            self.outcomes[i].unserved_reason = "still waiting at the end of the run"
        if self.progress is not None:
            self.progress(1.0, self._label)


_CRISIS = frozenset({TeamType.emt_clinician, TeamType.co_response, TeamType.community})
_COVERAGE_MODELS: dict[tuple[Any, ...], Any] = {}


def _coverage_model(network: RoadNetwork, places: Places | None, rules: Any) -> Any:
    """The demand/coverage model of coverage-aware policies, shared by runs (its coverage cache too)."""
    from routing.mexclp import CoverageModel

    if places is None:
        raise InvalidInput("coverage-aware policies need places (the demand surface)", field="places")
    cs = rules.choice_settings
    key = (network.source, network.n_nodes, id(places), cs.minutes, cs.busy_fraction)
    hit = _COVERAGE_MODELS.get(key)
    if hit is None:
        hit = _COVERAGE_MODELS[key] = CoverageModel.build(network.with_profile("non_emergent"), places,
                                                          minutes=cs.minutes, busy_fraction=cs.busy_fraction)
    return hit


def _shift_intervals(team: Team, start: datetime, horizon: float) -> list[tuple[float, float]]:
    """On-shift intervals (seconds from ``start``) of a team, clipped to ``[0, horizon]``."""
    if team.shift is None:
        return [(0.0, horizon)]
    shift = team.shift
    tz = ZoneInfo(shift.timezone)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = (start + timedelta(seconds=horizon)).astimezone(tz).date()
    out = []
    day = first
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    while day <= last:
        if shift.days is None or days[day.weekday()] in shift.days:
            a = datetime.combine(day, shift.start, tzinfo=tz)
            end_day = day + timedelta(days=1) if shift.end <= shift.start else day
            b = datetime.combine(end_day, shift.end, tzinfo=tz)
            sa, sb = (a - start).total_seconds(), (b - start).total_seconds()
            sa, sb = max(sa, 0.0), min(sb, horizon)
            if sb > sa:
                out.append((sa, sb))
        day += timedelta(days=1)
    return out


# ------------------------------------------------------------------------------------------ entry points


def simulate(policy: Policy, calls: Sequence[Call], *, network: RoadNetwork, places: Places | None = None,
             start: datetime | None = None, days: float | None = None, seed: int = 0,
             max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
             hospitals: Sequence[tuple[str, float, float]] | None = None,
             emergent_priorities: Sequence[int] = EMERGENT_PRIORITIES, time_of_day: bool = True,
             scenario: dict[str, Any] | None = None,
             progress: Callable[[float, str], None] | None = None, trace: bool = False) -> SimulationResult:
    """Run the calls through a policy.

    Parameters
    ----------
    policy
        Teams, rules, service times (:func:`routing.policy.load_policy`).
    calls
        The calls, any order (from :func:`generate_calls` or :func:`read_calls_file`). Calls outside
        ``[start, start + days)`` are rejected.
    network
        The road network (any profile; the run picks mode and hour per trip).
    places
        To locate calls without a neighborhood/district and resolve ``policy.hospitals``.
    start, days
        The simulated period. Default: from the local midnight before the first call to the end of
        the day of the last one.
    seed
        Seeds the service-time draws (the calls are already drawn).
    max_wait_s
        A call waiting this long with no eligible team free is abandoned and reported unserved
        (``None``: it waits as long as it takes).
    hospitals
        ``(name, lat, lon)`` of transport destinations; default ``policy.hospitals`` resolved in
        ``places``.
    emergent_priorities
        Priorities answered with lights and sirens.
    time_of_day
        Drive at the speed model's hour-of-day factors (``False``: the off-peak baseline all day).
    scenario
        Extra facts for the report (call source, mix...).
    progress
        Called with the fraction of simulated time done (increasing, the last call 1.0) and a label
        naming the run, for a progress bar; the engine draws none itself.
    trace
        Keep every status change ``(t, team_id, old, new, call_id)`` in ``result.trace`` (for tests).

    Returns
    -------
    SimulationResult

    Raises
    ------
    InvalidInput
        Calls outside the period, duplicate call ids, a staging site off the network, bad numbers.
    """
    started = time.perf_counter()
    calls = sorted(calls, key=lambda c: (c.received, c.call_id))
    ids = [c.call_id for c in calls]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i in set(ids) if ids.count(i) > 1)[0]
        raise InvalidInput(f"duplicate call_id {dup!r}", field="calls")
    if start is None:
        if not calls:
            raise InvalidInput("no calls and no start: nothing to simulate", field="calls")
        start = _local_midnight(calls[0].received)
    start = _aware(start, "start")
    if days is None:
        last = calls[-1].received if calls else start
        end_local = _local_midnight(last) + timedelta(days=1)
        days = max(1.0, round((end_local - start).total_seconds() / DAY_S, 6))
    _check_days(days)
    if max_wait_s is not None and (not math.isfinite(max_wait_s) or max_wait_s <= 0):
        raise InvalidInput(f"max_wait_s must be a positive number of seconds, got {max_wait_s!r}",
                           field="max_wait")
    end = start + timedelta(seconds=days * DAY_S)
    outside = [c for c in calls if not start <= c.received < end]
    if outside:
        raise InvalidInput(f"{len(outside)} call(s) outside the simulated period {start.isoformat()} .. "
                           f"{end.isoformat()}, e.g. {outside[0].call_id} at {outside[0].received.isoformat()}",
                           field="calls")
    if places is not None:
        calls = _locate(calls, places)
    if hospitals is None:
        hospitals = []
        if places is not None:
            for site_id in policy.hospitals:
                s = places.site(site_id)
                hospitals.append((s.name, float(s.lat), float(s.lon)))
    sim = _Simulator(policy, calls, network=network, places=places, start=start, end=end, seed=seed,
                     max_wait_s=max_wait_s, hospitals=hospitals, emergent_priorities=emergent_priorities,
                     time_of_day=time_of_day, progress=progress, trace=trace)
    sim.run()
    on_shift = sim.on_shift_seconds()
    usage = [TeamUsage(t.team_id, t.team_type.value, on_shift[j],
                       {s.value: float(sim.status_acc[j, k]) for k, s in enumerate(TeamStatus)},
                       sim.calls_taken[j]) for j, t in enumerate(sim.teams)]
    info = {"max_wait_s": max_wait_s, "emergent_priorities": sorted(sim.emergent), "time_of_day": time_of_day,
            "hospitals": [h[0] for h in hospitals], **(scenario or {})}
    if sim.coverage is not None:  # coverage-aware policies only: other runs report as before
        info["relocations"] = sim.moves
    return SimulationResult(policy, start, float(days), int(seed), sim.outcomes, usage, sim.events, sim.max_queue,
                            info, time.perf_counter() - started, sim.trace, places)


def compare(policies: Sequence[Policy], calls: Sequence[Call], **kwargs: Any) -> ComparisonResult:
    """Run the same calls, with the same seed, through several policies (see :func:`simulate`)."""
    started = time.perf_counter()
    results = [simulate(p, calls, **kwargs) for p in policies]
    return ComparisonResult(results, time.perf_counter() - started)


def select_period(calls: Sequence[Call], *, start: datetime | None = None, days: float | None = None
                  ) -> tuple[list[Call], datetime, float]:
    """The calls inside a period, with the period's defaults filled in (for replays).

    ``start`` defaults to the local midnight before the first call; ``days`` to the end of the day of
    the last call (when ``start`` is not given) or 7.

    Raises
    ------
    InvalidInput
        No calls, or none inside the period.
    """
    ordered = sorted(calls, key=lambda c: (c.received, c.call_id))
    if not ordered:
        raise InvalidInput("no calls to replay", field="calls")
    if start is None:
        start = _local_midnight(ordered[0].received)
        if days is None:
            end_local = _local_midnight(ordered[-1].received) + timedelta(days=1)
            days = round((end_local - start).total_seconds() / DAY_S, 6)
    start = _aware(start, "start")
    days = 7.0 if days is None else days
    _check_days(days)
    end = start + timedelta(seconds=days * DAY_S)
    inside = [c for c in ordered if start <= c.received < end]
    if not inside:
        raise InvalidInput(f"no call between {start.isoformat()} and {end.isoformat()} "
                           f"(the file runs {ordered[0].received.isoformat()} .. {ordered[-1].received.isoformat()})",
                           field="calls")
    return inside, start, float(days)


def default_start() -> datetime:
    """Default start of a generated run: Monday 2024-01-01 00:00 in Boston."""
    return datetime(2024, 1, 1, tzinfo=TZ).astimezone(UTC)


def parse_start(text: str) -> datetime:
    """A start date ``YYYY-MM-DD`` (local midnight in Boston) or an ISO 8601 time with offset."""
    text = str(text).strip()
    try:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=TZ).astimezone(UTC)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"start must be YYYY-MM-DD or an ISO 8601 time, got {text!r}", field="start") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt.astimezone(UTC)


def _local_midnight(when: datetime) -> datetime:
    local = when.astimezone(TZ)
    return datetime(local.year, local.month, local.day, tzinfo=TZ).astimezone(UTC)


__all__ = [
    "CallOutcome", "ComparisonResult", "SimulationResult", "TeamUsage", "compare", "default_start", "parse_start",
    "select_period", "simulate",
]
