"""Move-up (relocation) of free crisis teams to restore expected coverage, solved with OR-Tools (SCIP).

When teams are out on calls, the free ones can be moved to posts that cover the demand left uncovered.
:func:`plan_moveup` chooses at most ``K`` relocations of available teams to candidate posts (today's
staging sites plus the city's candidate sites, :func:`routing.staging.candidate_sites`) that maximise

    sum_g sum_n d_n * (1 - q ** k_gn)  -  penalty * travel hours

where ``g`` runs over the team types that matter (each type's coverage counted on its own: an
EMT+clinician team does not stand in for a co-response car), ``k_gn`` is the number of free teams of
type ``g`` within the standard of node ``n`` after the moves (MEXCLP, :mod:`routing.mexclp`), and the
travel term keeps moves short. It is the static MEXCLP of Daskin (1983) solved over the live state, as
DMEXCLP move-up does (Jagtenberg, van der Mei & Bhulai 2015, about 17 % fewer late arrivals than static
staging in their Utrecht study).

Hard rules: only ``available`` teams on shift move; a team with a service area (the dedicated cars, the
community teams) moves only to a post inside it; a move longer than ``max_travel_s`` is not offered.

The model (SCIP by default, CP-SAT on request): ``x[j, p]`` = team ``j`` ends at post ``p``
(``p = stay`` included, one per team); ``sum of moves <= K``; per type and per distinct coverage row
``r`` (nodes with the same pattern of coverage over the type's candidate positions are merged, their
demand summed), ``y[r, k]`` = "row r is covered by at least k teams", ``sum_k y[r, k] <= covering
teams``; the objective weights ``y[r, k]`` by ``d_r (1 - q) q^(k-1)``, the marginal gain of the k-th
covering team, so the optimum sets the first ones. Coefficients are integers (thousandths of a call a
year).

Audit trail and live state (:func:`propose`, :func:`accept`, :func:`undo`, :func:`settle`) use the
store's decisions table: ``moveup`` (a proposal), ``moveup_accept``, ``moveup_undo``, ``moveup_arrive``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse.csgraph import dijkstra

from routing.errors import Conflict, InvalidInput, NotFound
from routing.fleet import TeamState, TeamStatus, TeamType
from routing.mexclp import CoverageModel, free_teams

if TYPE_CHECKING:
    from routing.network import RoadNetwork, Snap
    from routing.places import Places, Site
    from routing.store import Store

#: The crisis teams (police and EMS are not this system's to move).
CRISIS_TYPES: tuple[TeamType, ...] = (TeamType.emt_clinician, TeamType.co_response, TeamType.community)
#: Expected calls a year a move must gain per hour of driving (an assumption: 60 means a 10-minute move
#: must win back at least 10 calls a year of expected coverage, ~0.1 % of Boston's 10,000).
DEFAULT_TRAVEL_PENALTY = 60.0
DEFAULT_MAX_TRAVEL_S = 900.0


@dataclass(frozen=True)
class Post:
    """A place a team may be moved to."""

    site_id: str
    name: str
    lat: float
    lon: float

    def to_dict(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "name": self.name, "lat": self.lat, "lon": self.lon}


@dataclass
class Move:
    """One relocation: team, from where it is to a post, travel time and what this move alone gains."""

    team_id: str
    team_type: TeamType
    from_lat: float
    from_lon: float
    post: Post
    travel_s: float
    coverage_gain: float

    def to_dict(self) -> dict[str, Any]:
        return {"team_id": self.team_id, "team_type": self.team_type.value,
                "from": {"lat": self.from_lat, "lon": self.from_lon}, "to": self.post.to_dict(),
                "travel_s": round(self.travel_s, 1), "coverage_gain_alone": round(self.coverage_gain, 1)}


@dataclass
class MoveUpPlan:
    """Solution of :func:`plan_moveup`: expected coverage in calls a year, before and after the moves."""

    moves: list[Move]
    before: dict[str, float]
    after: dict[str, float]
    uncovered_before: dict[str, float]
    uncovered_after: dict[str, float]
    objective: float
    status: str
    solve_time_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    now: datetime | None = None

    @property
    def gain(self) -> float:
        return sum(self.after.values()) - sum(self.before.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat() if self.now else None,
            "moves": [m.to_dict() for m in self.moves],
            "coverage_before": {k: round(v, 1) for k, v in self.before.items()},
            "coverage_after": {k: round(v, 1) for k, v in self.after.items()},
            "coverage_gain": round(self.gain, 1),
            "uncovered_before_by_neighborhood": {k: round(v, 1) for k, v in self.uncovered_before.items()},
            "uncovered_after_by_neighborhood": {k: round(v, 1) for k, v in self.uncovered_after.items()},
            "objective": round(self.objective, 3), "status": self.status,
            "solve_time_s": round(self.solve_time_s, 4), "settings": self.settings,
        }


def default_posts(teams: Sequence[TeamState], places: Places | None, *,
                  kinds: Sequence[str] | None = ("police", "fire", "community")) -> list[Post]:
    """Today's staging sites of the fleet plus the city's candidate sites (police, fire, community)."""
    from routing.staging import candidate_sites, today_sites

    sites: list[Site] = list(today_sites(teams))
    if places is not None:
        sites += candidate_sites(places, kinds=kinds)
    seen: set[tuple[float, float]] = set()
    out = []
    for s in sites:
        key = (round(float(s.lat), 5), round(float(s.lon), 5))
        if key not in seen:
            seen.add(key)
            out.append(Post(s.site_id, s.name, float(s.lat), float(s.lon)))
    return out


def _travel_to_posts(network: RoadNetwork, lat: float, lon: float, post_entries: list[tuple[np.ndarray, np.ndarray]],
                     post_leg: np.ndarray, limit: float) -> np.ndarray:
    """Seconds from a position to every post (inf beyond ``limit``)."""
    snap = network.snap(lat, lon, field="team position", on="any")
    nodes, legs, _ = network.snap_exits(snap)
    rows = np.atleast_2d(dijkstra(network.csr, directed=True, indices=np.asarray(nodes, dtype=np.int64), limit=limit))
    best = np.min(rows + np.asarray(legs, dtype=float)[:, None], axis=0) + snap.time_s
    out = np.full(len(post_entries), np.inf)
    for p, (ent_nodes, ent_legs) in enumerate(post_entries):
        if len(ent_nodes):
            out[p] = float(np.min(best[ent_nodes] + ent_legs)) + post_leg[p]
    return out


def plan_moveup(teams: Sequence[TeamState], *, network: RoadNetwork, model: CoverageModel, now: datetime,
                posts: Sequence[Post], types: Sequence[TeamType] = CRISIS_TYPES, max_moves: int = 2,
                max_travel_s: float = DEFAULT_MAX_TRAVEL_S, travel_penalty: float = DEFAULT_TRAVEL_PENALTY,
                time_limit_s: float = 5.0, movable: Sequence[str] | None = None, solver: str = "mip"
                ) -> MoveUpPlan:
    """The relocations of free teams that best restore expected coverage (see the module docstring).

    Parameters
    ----------
    teams
        Live team states (every team; the free ones of ``types`` count for coverage).
    network, model
        Road network (travel and coverage) and demand/coverage model (:class:`routing.mexclp.CoverageModel`).
    now
        Decision time: shifts are judged at it.
    posts
        Candidate posts (:func:`default_posts`).
    types
        Team types whose coverage is restored and which may move.
    max_moves
        At most this many relocations (``K``).
    max_travel_s
        Longest relocation drive (seconds).
    travel_penalty
        Expected calls a year a move must gain per hour of driving.
    time_limit_s
        CP-SAT time limit; the answer is deterministic (one worker, fixed seed).
    movable
        Only these team ids may move (default: every available team on shift of ``types``).
    solver
        ``"mip"`` (default: SCIP on the merged rows, see :class:`_MipModel`), ``"cp-sat"`` (the same
        model in CP-SAT; both warm-started from the greedy answer and never worse than it) or
        ``"greedy"``: the best single move, ``K`` times (exact for ``K = 1``; what the simulation uses,
        at a few milliseconds a decision).

    Returns
    -------
    MoveUpPlan
    """
    from ortools.sat.python import cp_model

    if isinstance(max_moves, bool) or not isinstance(max_moves, int) or max_moves < 0:
        raise InvalidInput(f"max_moves must be a non-negative integer, got {max_moves!r}", field="max_moves")
    if not math.isfinite(max_travel_s) or max_travel_s <= 0:
        raise InvalidInput(f"max_travel_s must be positive, got {max_travel_s!r}", field="max_travel_s")
    started = time.perf_counter()
    free = free_teams(teams, types, now)
    cols = {ts.team_id: model.team_column(network, ts) for ts in free}
    allowed = set(movable) if movable is not None else None
    movers = [ts for ts in free if ts.status is TeamStatus.available and (allowed is None or ts.team_id in allowed)]
    post_snaps: list[Snap | None] = []
    for post in posts:
        try:
            post_snaps.append(network.snap(post.lat, post.lon, field=f"post {post.site_id}"))
        except InvalidInput:
            post_snaps.append(None)
    none = (np.zeros(0, np.int64), np.zeros(0))
    entries = [network.snap_entries(s)[:2] if s is not None else none for s in post_snaps]
    post_leg = np.array([s.time_s if s is not None else np.inf for s in post_snaps])
    post_node = np.array([s.node if s is not None else -1 for s in post_snaps])
    options: dict[str, list[tuple[int, float, np.ndarray]]] = {}  # team -> (post, travel, column)
    for ts in movers:
        try:
            travel = _travel_to_posts(network, ts.lat, ts.lon, entries, post_leg, max_travel_s)
        except InvalidInput:
            continue
        mask = model.area_mask(ts.team.service_area)
        opts = []
        for p, t in enumerate(travel.tolist()):
            if not t <= max_travel_s or t < 60.0:  # beyond reach, or where it already is
                continue
            if mask is not None and (post_node[p] < 0 or not mask[post_node[p]]):
                continue  # never out of its service area (dedicated cars, community teams)
            opts.append((p, t, model.team_column(network, ts, lat=posts[p].lat, lon=posts[p].lon)))
        if opts:
            options[ts.team_id] = opts

    def by_type(positions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts = {t.value: np.zeros(model.weights.size, dtype=np.int64) for t in types}
        for ts in free:
            counts[ts.team.team_type.value] += positions.get(ts.team_id, cols[ts.team_id])
        return counts

    before_counts = by_type({})
    before = {k: model.expected(c) for k, c in before_counts.items()}
    q = model.busy_fraction
    greedy = _greedy(options, cols, before_counts, {ts.team_id: ts.team.team_type.value for ts in free}, model,
                     max_moves, travel_penalty)
    if solver not in ("mip", "cp-sat", "greedy"):
        raise InvalidInput(f"solver must be mip, cp-sat or greedy, got {solver!r}", field="solver")
    scale = 1000.0
    mdl: Any = _MipModel() if solver == "mip" else cp_model.CpModel()
    x: dict[tuple[str, int], Any] = {}
    objective: list[Any] = []
    if solver != "greedy":  # the greedy answer needs no model
        _build(mdl, x, objective, options, free, cols, types, model, max_moves, travel_penalty, scale)

    def value(plan: dict[str, int]) -> float:
        pos = {tid: next(col for pp, _, col in options[tid] if pp == p) for tid, p in plan.items()}
        travel = sum(next(t for pp, t, _ in options[tid] if pp == p) for tid, p in plan.items())
        return sum(model.expected(c) for c in by_type(pos).values()) - travel_penalty * travel / 3600.0

    status = "GREEDY" if solver == "greedy" else "OPTIMAL"
    chosen: dict[str, int] = dict(greedy)
    if solver == "mip" and x and objective:
        status, found_mip = mdl.solve(objective, x, greedy, time_limit_s)
        if found_mip is None or value(found_mip) < value(greedy) - 1e-6:
            status += " (greedy)"  # out of time: the greedy answer is at least as good
        else:
            chosen = found_mip
    if solver == "cp-sat" and x and objective:
        mdl.maximize(sum(objective))
        for key, var in x.items():
            mdl.add_hint(var, 1 if greedy.get(key[0]) == key[1] else 0)
        cp = cp_model.CpSolver()
        cp.parameters.max_time_in_seconds = float(time_limit_s)
        cp.parameters.num_workers = 1
        cp.parameters.random_seed = 0
        res = cp.solve(mdl)
        status = cp.status_name(res)
        found = {tid: p for (tid, p), var in x.items() if cp.value(var)} if res in (
            cp_model.OPTIMAL, cp_model.FEASIBLE) else None
        if found is None or value(found) < value(greedy) - 1e-6:
            status += " (greedy)"  # out of time: the greedy answer is at least as good
        else:
            chosen = found
    positions = {tid: next(col for pp, _, col in options[tid] if pp == p) for tid, p in chosen.items()}
    after_counts = by_type(positions)
    after = {k: model.expected(c) for k, c in after_counts.items()}
    moves = []
    state = {ts.team_id: ts for ts in free}
    for tid, p in sorted(chosen.items()):
        ts = state[tid]
        t = next(tt for pp, tt, _ in options[tid] if pp == p)
        alone = by_type({tid: positions[tid]})
        gain = sum(model.expected(c) for c in alone.values()) - sum(before.values())
        moves.append(Move(tid, ts.team.team_type, ts.lat, ts.lon, posts[p], t, gain))
    zeros = np.zeros(model.weights.size, dtype=np.int64)
    total_before = sum(before_counts.values(), zeros)
    total_after = sum(after_counts.values(), zeros)
    obj = sum(after.values()) - sum(before.values()) - travel_penalty * sum(m.travel_s for m in moves) / 3600
    return MoveUpPlan(moves, before, after, _top(model.uncovered_by_neighborhood(total_before)),
                      _top(model.uncovered_by_neighborhood(total_after)), obj, status,
                      time.perf_counter() - started,
                      {"minutes": model.minutes, "busy_fraction": q, "max_moves": max_moves,
                       "max_travel_s": max_travel_s, "travel_penalty": travel_penalty,
                       "types": [t.value for t in types], "posts": len(posts), "movers": len(movers)}, now)


class _MipModel:
    """The few CP-SAT calls :func:`_build` makes, on SCIP through ``pywraplp``.

    The covering rows are merged (identical coverage patterns summed) and their level variables ``y``
    are continuous: with the weights ``(1 - q) q^(k-1)`` decreasing in ``k`` the LP fills them in order,
    so only the moves ``x`` need to be integer. On Boston (3 movers x 87 posts) CP-SAT does not prove
    this model in 5 s; SCIP's LP bound closes it at once.
    """

    def __init__(self) -> None:
        from ortools.linear_solver import pywraplp  # type: ignore[attr-defined]  # SWIG module, no stubs

        self.solver = pywraplp.Solver.CreateSolver("SCIP")
        if self.solver is None:  # pragma: no cover - OR-Tools wheels ship SCIP
            raise InvalidInput("OR-Tools has no SCIP solver here; use solver='cp-sat'", field="solver")

    def new_bool_var(self, name: str) -> Any:
        return self.solver.NumVar(0.0, 1.0, name) if name.startswith("y_") else self.solver.BoolVar(name)

    def add_at_most_one(self, variables: Any) -> None:
        self.solver.Add(sum(variables) <= 1)

    def add(self, constraint: Any) -> None:
        self.solver.Add(constraint)

    def solve(self, objective: list[Any], x: dict[tuple[str, int], Any], greedy: dict[str, int],
              time_limit_s: float) -> tuple[str, dict[str, int] | None]:
        from ortools.linear_solver import pywraplp  # type: ignore[attr-defined]  # SWIG module, no stubs

        s = self.solver
        s.Maximize(sum(objective))
        s.SetTimeLimit(int(max(time_limit_s, 0.01) * 1000))
        s.SetHint(list(x.values()), [1.0 if greedy.get(tid) == p else 0.0 for tid, p in x])
        res = s.Solve()
        names = {pywraplp.Solver.OPTIMAL: "OPTIMAL", pywraplp.Solver.FEASIBLE: "FEASIBLE"}
        if res not in names:
            return "NOT_SOLVED", None
        return names[res], {tid: p for (tid, p), var in x.items() if var.solution_value() > 0.5}


def _build(mdl: Any, x: dict[tuple[str, int], Any], objective: list[Any],
           options: dict[str, list[tuple[int, float, np.ndarray]]], free: list[TeamState],
           cols: dict[str, np.ndarray], types: Sequence[TeamType], model: CoverageModel, max_moves: int,
           travel_penalty: float, scale: float) -> None:
    """The CP-SAT model of the module docstring, into ``mdl``, ``x`` and ``objective``."""
    q = model.busy_fraction
    for tid, opts in options.items():
        for p, _, _ in opts:
            x[tid, p] = mdl.new_bool_var(f"x_{tid}_{p}")
        mdl.add_at_most_one(x[tid, p] for p, _, _ in opts)
    if x:
        mdl.add(sum(x.values()) <= max_moves)
    positive = model.weights > 0
    for ttype in types:
        members = [ts for ts in free if ts.team.team_type is ttype]
        if not members:
            continue
        # Columns of this type: each member where it is, and each option of each mover.
        columns = [cols[ts.team_id] for ts in members]
        terms: list[tuple[int, Any]] = []  # (column index, +1 var or -1 var) for the movable parts
        for ts in members:
            for p, _, col in options.get(ts.team_id, []):
                columns.append(col)
                terms.append((len(columns) - 1, x[ts.team_id, p]))
        mat = np.column_stack(columns)[positive]
        w = model.weights[positive]
        packed = np.packbits(mat, axis=1)
        uniq, inv = np.unique(packed, axis=0, return_inverse=True)
        rw = np.bincount(inv.ravel(), weights=w, minlength=len(uniq))
        rows = np.unpackbits(uniq, axis=1)[:, :mat.shape[1]].astype(bool)
        n_fixed = len(members)
        for r in range(len(uniq)):
            if rw[r] <= 0:
                continue
            fixed = int(rows[r, :n_fixed].sum())
            # A mover that leaves takes its current column with it: count it as (1 - sum of its x).
            expr: list[Any] = []
            const = fixed
            for m_idx, ts in enumerate(members):
                opts = options.get(ts.team_id, [])
                if opts and rows[r, m_idx]:
                    for p, _, _ in opts:
                        expr.append(-1 * x[ts.team_id, p])
            for c_idx, var in terms:
                if rows[r, c_idx]:
                    expr.append(var)
            if not expr:
                continue  # nothing a move can change here
            most = fixed + sum(1 for c_idx, _ in terms if rows[r, c_idx])
            leaving = sum(1 for m_idx, ts in enumerate(members) if rows[r, m_idx] and options.get(ts.team_id))
            lo = max(0, fixed - leaving)
            ys = [mdl.new_bool_var(f"y_{ttype.value}_{r}_{k}") for k in range(lo + 1, most + 1)]
            if not ys:
                continue
            mdl.add(sum(ys) <= const - lo + sum(expr))
            for k, y in zip(range(lo + 1, most + 1), ys, strict=True):
                objective.append(int(round(scale * rw[r] * (1 - q) * q ** (k - 1))) * y)
    for (tid, p), var in x.items():
        t = next(tt for pp, tt, _ in options[tid] if pp == p)
        objective.append(-int(round(scale * travel_penalty * t / 3600.0)) * var)


def _greedy(options: dict[str, list[tuple[int, float, np.ndarray]]], cols: dict[str, np.ndarray],
            counts: dict[str, np.ndarray], type_of: dict[str, str], model: CoverageModel, max_moves: int,
            travel_penalty: float) -> dict[str, int]:
    """Best single move (coverage gain minus travel penalty), repeated up to ``max_moves`` times."""
    counts = {k: v.copy() for k, v in counts.items()}
    chosen: dict[str, int] = {}
    for _ in range(max_moves):
        best: tuple[float, str, int] | None = None
        for tid, opts in options.items():
            if tid in chosen:
                continue
            base = counts[type_of[tid]] - cols[tid]
            e0 = model.expected(counts[type_of[tid]])
            for p, t, col in opts:
                gain = model.expected(base + col) - e0 - travel_penalty * t / 3600.0
                if gain > 1e-6 and (best is None or gain > best[0] + 1e-9):
                    best = (gain, tid, p)
        if best is None:
            break
        _, tid, p = best
        col = next(c for pp, _, c in options[tid] if pp == p)
        counts[type_of[tid]] += col.astype(np.int64) - cols[tid]
        chosen[tid] = p
    return chosen


def _top(d: dict[str, float], n: int = 10) -> dict[str, float]:
    return {k: v for k, v in list(d.items())[:n] if v > 0.05}


# ------------------------------------------------------------------------------------------ live state


def _decisions(store: Store, kind: str) -> list[dict[str, Any]]:
    return store.decisions(kind)


def _record(store: Store, kind: str, result: dict[str, Any], inputs: dict[str, Any]) -> int:
    # The store's audit trail (decisions table), written in one transaction with the team changes.
    with store._write() as con:  # noqa: SLF001 - the store's own transaction, shared on purpose
        return store._insert_decision(con, kind, [], result, inputs)  # noqa: SLF001


def propose(store: Store, plan: MoveUpPlan, inputs: dict[str, Any] | None = None) -> int:
    """Record a move-up proposal in the audit trail; returns its id (the ``ID`` of accept and undo)."""
    return _record(store, "moveup", plan.to_dict(), inputs or {})


def proposal(store: Store, moveup_id: int) -> dict[str, Any]:
    """A recorded proposal with its state: ``proposed``, ``accepted``, ``arrived`` or ``undone``."""
    d = store.decision(moveup_id)
    if d["kind"] != "moveup":
        raise NotFound(f"decision {moveup_id} is not a move-up", field="moveup_id")
    state = "proposed"
    for kind in ("moveup_accept", "moveup_arrive", "moveup_undo"):
        if any(e["result"].get("moveup_id") == moveup_id for e in _decisions(store, kind)):
            state = {"moveup_accept": "accepted", "moveup_arrive": "arrived", "moveup_undo": "undone"}[kind]
    return {"id": moveup_id, "state": state, **d["result"]}


def accept(store: Store, moveup_id: int, now: datetime) -> dict[str, Any]:
    """Accept a proposal: each moved team goes ``en_route`` to its post; recorded (undoable).

    Raises
    ------
    Conflict
        Already accepted or undone, or a team is no longer available (the plan is stale).
    """
    prop = proposal(store, moveup_id)
    if prop["state"] != "proposed":
        raise Conflict(f"move-up {moveup_id} is {prop['state']}", field="moveup_id")
    for m in prop["moves"]:
        ts = store.team(m["team_id"])
        if ts.status is not TeamStatus.available:
            raise Conflict(f"team {m['team_id']} is {ts.status.value}, no longer available: plan again",
                           field="moveup_id")
    for m in prop["moves"]:
        store.set_status(m["team_id"], TeamStatus.en_route, now)
    arrive = {m["team_id"]: (now + timedelta(seconds=float(m["travel_s"]))).isoformat() for m in prop["moves"]}
    did = _record(store, "moveup_accept", {"moveup_id": moveup_id, "at": now.isoformat(), "arrive_by": arrive},
                  {})
    return {"accept_id": did, **proposal(store, moveup_id), "arrive_by": arrive}


def undo(store: Store, moveup_id: int, now: datetime) -> dict[str, Any]:
    """Undo an accepted move: every moved team still on the move (or at the post, available) is available
    again where it came from. A team that has since been sent to a call is left alone and reported."""
    prop = proposal(store, moveup_id)
    if prop["state"] not in ("accepted", "arrived"):
        raise Conflict(f"move-up {moveup_id} is {prop['state']}: only an accepted move can be undone",
                       field="moveup_id")
    restored, left = [], []
    for m in prop["moves"]:
        ts = store.team(m["team_id"])
        if ts.status in (TeamStatus.en_route, TeamStatus.available) and not _on_call_since(store, m["team_id"], prop):
            if ts.status is TeamStatus.en_route:
                store.set_status(m["team_id"], TeamStatus.available, now)
            store.report_position(m["team_id"], m["from"]["lat"], m["from"]["lon"], now)
            restored.append(m["team_id"])
        else:
            left.append({"team_id": m["team_id"], "status": ts.status.value})
    did = _record(store, "moveup_undo", {"moveup_id": moveup_id, "at": now.isoformat(), "restored": restored,
                                          "left": left}, {})
    return {"undo_id": did, **proposal(store, moveup_id), "restored": restored, "left": left}


def _on_call_since(store: Store, team_id: str, prop: dict[str, Any]) -> bool:
    when = prop.get("now") or ""
    return any(a["team_id"] == team_id and str(a["created_at"]) >= str(when) for a in store.assignments())


def settle(store: Store, now: datetime) -> list[str]:
    """Teams of accepted moves whose drive is over: at the post and ``available``. Returns their ids."""
    done = []
    for acc in _decisions(store, "moveup_accept"):
        mid = acc["result"]["moveup_id"]
        prop = proposal(store, mid)
        if prop["state"] != "accepted":
            continue
        arrived = []
        for m in prop["moves"]:
            due = datetime.fromisoformat(acc["result"]["arrive_by"][m["team_id"]])
            ts = store.team(m["team_id"])
            if now >= due and ts.status is TeamStatus.en_route and not _on_call_since(store, m["team_id"], prop):
                store.report_position(m["team_id"], m["to"]["lat"], m["to"]["lon"], now)
                store.set_status(m["team_id"], TeamStatus.available, now)
                arrived.append(m["team_id"])
        if arrived and len(arrived) == len(prop["moves"]):
            _record(store, "moveup_arrive", {"moveup_id": mid, "at": now.isoformat(), "teams": arrived}, {})
        done += arrived
    return done


def plan_from_store(store: Store, *, network: RoadNetwork, places: Places | None, now: datetime,
                    model: CoverageModel | None = None, minutes: float = 8.0, busy_fraction: float = 0.3,
                    max_moves: int = 2, max_travel_s: float = DEFAULT_MAX_TRAVEL_S,
                    travel_penalty: float = DEFAULT_TRAVEL_PENALTY) -> MoveUpPlan:
    """:func:`plan_moveup` over the store's live teams (the CLI's and the service's entry point)."""
    teams = store.teams()
    if model is None:
        model = CoverageModel.build(network, places, minutes=minutes, busy_fraction=busy_fraction)
    model = model.with_settings(minutes, busy_fraction)
    return plan_moveup(teams, network=network, model=model, now=now, posts=default_posts(teams, places),
                       max_moves=max_moves, max_travel_s=max_travel_s, travel_penalty=travel_penalty)


def plan_inputs(store: Store) -> dict[str, Any]:
    """The inputs of a proposal for the audit trail: the fleet snapshot."""
    return {"teams": json.loads(json.dumps([ts.to_dict() for ts in store.teams()], default=str))}


__all__ = ["CRISIS_TYPES", "Move", "MoveUpPlan", "Post", "accept", "default_posts", "plan_from_store",
           "plan_moveup", "propose", "proposal", "settle", "undo"]
