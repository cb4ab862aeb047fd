"""Staging placement: MCLP, p-median, LSCP and backup coverage, at matrix level and for Boston.

Matrix level
------------
Each model is a function over a demand x candidate matrix that anyone can call with their own data:

- :func:`mclp`: choose ``p`` candidates to maximise the demand weight covered (a demand point is covered
  when at least one chosen candidate covers it).
- :func:`p_median`: choose ``p`` candidates to minimise the demand-weighted cost (travel time) from each
  demand point to its nearest chosen candidate.
- :func:`lscp`: the fewest candidates such that every demand point with positive weight is covered.
- :func:`backup_coverage`: MEXCLP (Daskin 1983): choose ``p`` candidates to maximise the *expected*
  covered demand when each team is busy with probability ``busy_fraction`` (independently), so a point
  covered ``k`` times is served with probability ``1 - q**k``. Demand covered twice is rewarded.

All four take ``fixed_in`` (candidates that must be chosen, e.g. existing stations) and ``fixed_out``
(candidates that may not be), are solved with OR-Tools (SCIP for the integer programs, GLOP for linear
relaxations) and return a :class:`PlacementResult` with the solver status (``optimal`` = proven optimal;
``feasible`` = a time limit stopped the proof), the relative optimality gap and the wall-clock time.

Why they are fast
-----------------
- Coverage models depend on a demand point only through its *coverage set*, so points with identical
  sets are merged (weights summed) before solving: Boston's 11,249 nodes become ~1-3 thousand rows.
  p-median rows equal up to a constant offset (a dead end reached only through its neighbour) are
  merged too, exactly.
- MCLP, MEXCLP and p-median are solved by Benders decomposition over the candidate variables alone
  (in the spirit of Fischetti, Ljubic & Sinnl, Management Science 2017). Each merged row's value is a
  piecewise-linear function of the site vector (concave for coverage, convex for cost) whose supporting
  cuts come in closed form from NumPy; the master holds the candidate variables and one value variable
  per group of rows. The linear relaxation is solved first by in-out stabilised cutting planes (GLOP),
  then the integer master (SCIP) is re-cut at each of its solutions until its bound meets the best
  solution's true value. The usual formulations have a variable per row and coverage level (MEXCLP) or
  per demand x candidate pair (p-median: 1.3 million for Boston) and spend seconds to minutes in the
  root LP alone.
- LSCP is a set-cover integer program on the merged rows, solved directly by SCIP.

Boston level
------------
:func:`candidate_sites` (real police and fire stations, hospitals, community centres, plus a planner's
CSV), :func:`build_problem` (travel times from every candidate to every network node, demand weights)
and :func:`plan_staging` (one model on that problem, with the proposed sites compared with today's
staging from the fleet file).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from routing.errors import InvalidInput, NotFound

MODELS = ("mclp", "pmedian", "lscp", "backup")

#: Relative gap below which a solve counts as proven optimal: the solvers' own floating-point
#: tolerances sit around 1e-9 relative, so "exactly zero" is not observable.
OPTIMALITY_TOLERANCE = 1e-7

_DEFAULT_TIME_LIMIT_S = 120.0
_BENDERS_GROUPS = 64  # cost variables in the Benders masters; balances master size against iterations
_BENDERS_LP_ITERATIONS = 300


# ============================================================================================ results


@dataclass
class PlacementResult:
    """Solution of one placement model on a demand x candidate matrix.

    Attributes
    ----------
    model
        ``"mclp"``, ``"pmedian"``, ``"lscp"`` or ``"backup"``.
    chosen
        Indices (columns of the matrix) of the chosen candidates, ascending.
    objective
        The model's objective at ``chosen``, recomputed from the input matrix: covered weight (MCLP),
        weighted cost (p-median), number of sites (LSCP), expected covered weight (backup).
    bound
        The best proven bound on the optimum (upper for maximisation, lower for minimisation).
    gap
        ``|bound - objective| / |objective|`` (0 when the objective is 0 and the bound meets it).
    status
        ``"optimal"`` (gap within :data:`OPTIMALITY_TOLERANCE`) or ``"feasible"`` (time limit).
    solve_s
        Wall-clock seconds, model building included.
    p
        Number of chosen candidates.
    total_weight
        Sum of the demand weights.
    covered_weight
        Weight covered at least once (coverage models; ``None`` for p-median).
    covered_twice_weight
        Weight covered at least twice (backup model).
    teams_per_site
        Teams at each chosen site, aligned with ``chosen`` (backup with ``max_per_site > 1``; else 1s).
    assignment
        p-median: for every demand row, the column of its nearest chosen candidate (-1 if unreachable).
    stats
        Solver details (rows after merging, iterations, ...).
    """

    model: str
    chosen: list[int]
    objective: float
    bound: float | None
    gap: float | None
    status: str
    solve_s: float
    p: int
    total_weight: float
    covered_weight: float | None = None
    covered_twice_weight: float | None = None
    teams_per_site: list[int] = field(default_factory=list)
    assignment: np.ndarray | None = field(default=None, repr=False)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    @property
    def covered_share(self) -> float | None:
        """Covered weight / total weight (coverage models)."""
        if self.covered_weight is None or self.total_weight <= 0:
            return None
        return self.covered_weight / self.total_weight

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the per-row assignment)."""
        return {
            "model": self.model,
            "chosen": list(self.chosen),
            "teams_per_site": list(self.teams_per_site),
            "p": self.p,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "status": self.status,
            "optimal": self.optimal,
            "solve_s": self.solve_s,
            "total_weight": self.total_weight,
            "covered_weight": self.covered_weight,
            "covered_share": self.covered_share,
            "covered_twice_weight": self.covered_twice_weight,
            "stats": dict(self.stats),
        }


# ============================================================================================ validation


@dataclass
class _Prepared:
    """Validated input: weights, allowed / fixed columns and the number still to choose."""

    weights: np.ndarray
    allowed: np.ndarray  # column indices that may be chosen (fixed_in included)
    fixed_in: np.ndarray  # sorted column indices
    p: int


def _as_matrix(matrix: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(matrix)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a 2-D numeric array", field=name) from None
    if arr.ndim != 2:
        raise InvalidInput(f"{name} must be 2-D (demand x candidates), got {arr.ndim}-D", field=name)
    if arr.shape[0] == 0:
        raise InvalidInput(f"{name} has no demand rows (empty demand)", field=name)
    if arr.shape[1] == 0:
        raise InvalidInput(f"{name} has no candidate columns", field=name)
    if arr.dtype == bool:
        return arr
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must hold numbers", field=name) from None
    if np.isnan(arr).any():
        raise InvalidInput(f"{name} contains NaN", field=name)
    return arr


def _as_coverage(coverage: Any) -> np.ndarray:
    arr = _as_matrix(coverage, "coverage")
    if arr.dtype == bool:
        return arr
    if not np.isin(arr, (0.0, 1.0)).all():
        raise InvalidInput("coverage must be boolean or 0/1 (build it with coverage_matrix(cost, limit))",
                           field="coverage")
    return arr.astype(bool)


def _as_cost(cost: Any) -> np.ndarray:
    arr = _as_matrix(cost, "cost").astype(float)
    if (arr < 0).any():
        raise InvalidInput("cost must be non-negative", field="cost")
    if np.isneginf(arr).any():
        raise InvalidInput("cost must not be -inf", field="cost")
    return arr


def _as_index_set(values: Iterable[int] | None, m: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(0, dtype=np.int64)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InvalidInput(f"{name} must hold candidate column indices (integers), got {v!r}", field=name)
        if not 0 <= int(v) < m:
            raise InvalidInput(f"{name}: candidate index {int(v)} out of range 0..{m - 1}", field=name)
        out.append(int(v))
    return np.unique(np.asarray(out, dtype=np.int64))


def _prepare(n: int, m: int, weights: Any, p: int | None, fixed_in: Iterable[int] | None,
             fixed_out: Iterable[int] | None, *, need_p: bool = True, per_site: int = 1) -> _Prepared:
    if weights is None:
        w = np.ones(n)
    else:
        try:
            w = np.asarray(weights, dtype=float)
        except (TypeError, ValueError):
            raise InvalidInput("weights must be numbers", field="weights") from None
        if w.shape != (n,):
            raise InvalidInput(f"weights must have one value per demand row ({n}), got shape {w.shape}",
                               field="weights")
        if not np.isfinite(w).all():
            raise InvalidInput("weights contain NaN or infinity", field="weights")
        if (w < 0).any():
            raise InvalidInput("weights must be non-negative", field="weights")
    if w.sum() <= 0:
        raise InvalidInput("demand weights sum to zero (empty demand)", field="weights")
    f_in = _as_index_set(fixed_in, m, "fixed_in")
    f_out = _as_index_set(fixed_out, m, "fixed_out")
    both = np.intersect1d(f_in, f_out)
    if both.size:
        raise InvalidInput(f"candidate(s) {both.tolist()} are both forced in and excluded", field="fixed_in")
    allowed = np.setdiff1d(np.arange(m), f_out)
    if allowed.size == 0:
        raise InvalidInput("every candidate is excluded", field="fixed_out")
    if need_p:
        if p is None or isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise InvalidInput(f"p (number of sites) must be an integer, got {p!r}", field="p")
        p = int(p)
        if p < 1:
            raise InvalidInput(f"p (number of sites) must be at least 1, got {p}", field="p")
        if p > allowed.size * per_site:
            raise InvalidInput(f"p = {p} is larger than the {allowed.size} candidate sites available"
                               + (f" ({f_out.size} excluded)" if f_out.size else "")
                               + (f" x {per_site} teams each" if per_site > 1 else ""), field="p")
        if f_in.size > p:
            raise InvalidInput(f"{f_in.size} sites are forced in but p = {p}", field="p")
    return _Prepared(w, allowed, f_in, int(p) if p is not None else 0)


def _merge_rows(matrix: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique rows of a boolean matrix with summed weights; returns (rows, weights, inverse)."""
    packed = np.packbits(matrix, axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    return matrix[first], np.bincount(inverse, weights=weights, minlength=len(first)), inverse


def _relative_gap(objective: float, bound: float | None) -> float | None:
    if bound is None or not math.isfinite(bound):
        return None
    diff = abs(bound - objective)
    if diff <= 1e-12 * max(1.0, abs(objective)):
        return 0.0
    return diff / max(abs(objective), 1e-12)


def _status(gap: float | None) -> str:
    return "optimal" if gap is not None and gap <= OPTIMALITY_TOLERANCE else "feasible"


# ============================================================================================ MIP plumbing


class _Mip:
    """A model built from sparse arrays with OR-Tools' model_builder (no per-term Python calls)."""

    def __init__(self, lb: np.ndarray, ub: np.ndarray, obj: np.ndarray, row_lb: np.ndarray,
                 row_ub: np.ndarray, matrix: sp.csr_matrix, integer: np.ndarray, *, maximize: bool) -> None:
        from ortools.linear_solver.python import model_builder as mb

        self._mb = mb
        self.model = mb.Model()
        helper = self.model.helper
        helper.fill_model_from_sparse_data(lb.astype(float), ub.astype(float), obj.astype(float),
                                           row_lb.astype(float), row_ub.astype(float),
                                           sp.csr_matrix(matrix, dtype=float))
        for j in np.flatnonzero(integer):
            helper.set_var_integrality(int(j), True)
        helper.set_maximize(maximize)
        self.n_vars = len(lb)

    def solve(self, solver: str, time_limit_s: float, hint: np.ndarray | None = None,
              mip_gap: float = 0.0) -> tuple[str, np.ndarray | None, float | None, float | None]:
        """Returns (status name, values, objective, best bound)."""
        mb = self._mb
        if hint is not None:
            self.model.clear_hints()
            for j, v in enumerate(hint):
                self.model.add_hint(self.model.var_from_index(j), float(v))
        solver_ = mb.Solver(solver)
        solver_.set_time_limit_in_seconds(max(0.05, float(time_limit_s)))
        if solver == "scip":
            # Presolve is left on; gap 0 so SCIP proves optimality instead of stopping at 1e-4.
            solver_.set_solver_specific_parameters(f"limits/gap = {mip_gap}\nlimits/absgap = 0\n")
        status = solver_.solve(self.model)
        name = status.name
        if status not in (mb.SolveStatus.OPTIMAL, mb.SolveStatus.FEASIBLE):
            return name, None, None, None
        values = solver_.values(self.model.get_variables()).to_numpy()
        bound = solver_.best_objective_bound if solver == "scip" else solver_.objective_value
        return name, values, float(solver_.objective_value), float(bound)


def _time_left(start: float, limit: float) -> float:
    return limit - (time.perf_counter() - start)


# ============================================================================================ helpers


def coverage_matrix(cost: Any, limit: float) -> np.ndarray:
    """Boolean coverage matrix: ``cost <= limit`` (``inf`` never covers).

    Parameters
    ----------
    cost
        Demand x candidate costs (e.g. travel seconds), non-negative.
    limit
        The standard, in the cost's unit.

    Returns
    -------
    ndarray of bool
    """
    arr = _as_cost(cost)
    if not isinstance(limit, (int, float, np.floating, np.integer)) or not math.isfinite(limit) or limit < 0:
        raise InvalidInput(f"the coverage limit must be a non-negative number, got {limit!r}", field="limit")
    return arr <= float(limit)


def _covered_counts(coverage: np.ndarray, chosen: Sequence[int], per_site: Sequence[int] | None = None
                    ) -> np.ndarray:
    if len(chosen) == 0:
        return np.zeros(coverage.shape[0], dtype=np.int64)
    mult = np.ones(len(chosen), dtype=np.int64) if per_site is None else np.asarray(per_site, dtype=np.int64)
    return coverage[:, list(chosen)].astype(np.int64) @ mult


# ============================================================================================ MCLP


def mclp(coverage: Any, weights: Any, p: int, *, fixed_in: Iterable[int] | None = None,
         fixed_out: Iterable[int] | None = None, time_limit_s: float = _DEFAULT_TIME_LIMIT_S
         ) -> PlacementResult:
    """Maximal covering location problem (Church & ReVelle 1974).

    Parameters
    ----------
    coverage
        ``(n_demand, n_candidates)`` boolean (or 0/1) matrix: ``coverage[i, j]`` is true when candidate
        ``j`` covers demand point ``i`` (e.g. travel time within the standard).
    weights
        ``(n_demand,)`` non-negative demand weights (``None``: all 1).
    p
        Number of candidates to choose (``fixed_in`` included).
    fixed_in, fixed_out
        Column indices that must / must not be chosen.
    time_limit_s
        Solver time limit; on expiry the best solution found is returned with ``status="feasible"``.

    Returns
    -------
    PlacementResult
        ``objective`` = ``covered_weight``.

    Raises
    ------
    InvalidInput
        Empty demand or candidates, NaN, negative or all-zero weights, ``p`` out of range, a candidate
        both forced in and out.
    """
    start = time.perf_counter()
    cov = _as_coverage(coverage)
    prep = _prepare(cov.shape[0], cov.shape[1], weights, p, fixed_in, fixed_out)
    return _expected_coverage("mclp", cov, prep, 0.0, 1, start, time_limit_s)


# ============================================================================================ LSCP


def lscp(coverage: Any, weights: Any = None, *, fixed_in: Iterable[int] | None = None,
         fixed_out: Iterable[int] | None = None, uncoverable: str = "error",
         time_limit_s: float = _DEFAULT_TIME_LIMIT_S) -> PlacementResult:
    """Location set covering problem (Toregas et al. 1971): fewest candidates covering all demand.

    Parameters
    ----------
    coverage
        ``(n_demand, n_candidates)`` boolean coverage matrix.
    weights
        Demand weights; rows with weight 0 need no coverage (``None``: every row must be covered).
    fixed_in, fixed_out
        Column indices that must / must not be chosen.
    uncoverable
        ``"error"`` (default): raise if some demand with positive weight is covered by no allowed
        candidate. ``"ignore"``: leave such demand out and report it in ``stats["uncoverable_weight"]``.
    time_limit_s
        Solver time limit.

    Returns
    -------
    PlacementResult
        ``objective`` = number of chosen sites; ``covered_weight`` = all coverable demand.

    Raises
    ------
    InvalidInput
        As :func:`mclp`, and when demand cannot be covered (``uncoverable="error"``).
    """
    start = time.perf_counter()
    if uncoverable not in ("error", "ignore"):
        raise InvalidInput(f"uncoverable must be 'error' or 'ignore', got {uncoverable!r}", field="uncoverable")
    cov = _as_coverage(coverage)
    n, m = cov.shape
    prep = _prepare(n, m, weights, None, fixed_in, fixed_out, need_p=False)
    w = prep.weights
    need = w > 0
    coverable = cov[:, prep.allowed].any(axis=1)
    lost = need & ~coverable
    stats: dict[str, Any] = {"demand_rows": n, "candidates": m,
                             "uncoverable_rows": int(lost.sum()), "uncoverable_weight": float(w[lost].sum())}
    if lost.any() and uncoverable == "error":
        raise InvalidInput(f"LSCP is infeasible: {int(lost.sum())} demand point(s) with weight "
                           f"{float(w[lost].sum()):g} of {float(w.sum()):g} are covered by no allowed candidate "
                           "(raise the time standard or add candidates)", field="coverage")
    free = np.setdiff1d(prep.allowed, prep.fixed_in)
    base = cov[:, prep.fixed_in].any(axis=1) if prep.fixed_in.size else np.zeros(n, dtype=bool)
    active = need & coverable & ~base
    if not active.any():
        chosen_free: list[int] = []
        bound: float | None = 0.0
        solver_status = "trivial"
    else:
        rows, _, _ = _merge_rows(cov[np.ix_(active, free)], w[active])
        u = len(rows)
        stats["merged_rows"] = u
        # Greedy set cover as a hint (and the fallback).
        left = np.ones(u, dtype=bool)
        hint_cols: list[int] = []
        while left.any():
            j = int(np.argmax(rows[left].sum(axis=0)))
            hint_cols.append(j)
            left &= ~rows[:, j]
        mip = _Mip(np.zeros(free.size), np.ones(free.size), np.ones(free.size), np.ones(u),
                   np.full(u, np.inf), sp.csr_matrix(rows.astype(float)), np.ones(free.size, bool),
                   maximize=False)
        hint = np.zeros(free.size)
        hint[hint_cols] = 1.0
        solver_status, values, _, bound = mip.solve("scip", _time_left(start, time_limit_s), hint)
        if values is None:
            chosen_free = free[hint_cols].tolist()
            bound = None
        else:
            chosen_free = free[np.flatnonzero(values > 0.5)].tolist()
            bound = bound + prep.fixed_in.size
    chosen = sorted(set(prep.fixed_in.tolist()) | set(chosen_free))
    counts = _covered_counts(cov, chosen)
    if (need & coverable & (counts == 0)).any():  # cannot happen with a correct solver; never hide it
        raise RuntimeError("LSCP solution leaves coverable demand uncovered")
    objective = float(len(chosen))
    if solver_status == "trivial":
        bound = objective
    elif bound is not None:
        bound = float(math.ceil(bound - 1e-6))  # the count is an integer
    gap = _relative_gap(objective, bound)
    stats["solver_status"] = solver_status
    return PlacementResult("lscp", chosen, objective, bound, gap, _status(gap), time.perf_counter() - start,
                           len(chosen), float(w.sum()), covered_weight=float(w[counts > 0].sum()),
                           covered_twice_weight=float(w[counts >= 2].sum()),
                           teams_per_site=[1] * len(chosen), stats=stats)


# ============================================================================================ backup


def backup_coverage(coverage: Any, weights: Any, p: int, *, busy_fraction: float = 0.3,
                    max_per_site: int = 1, fixed_in: Iterable[int] | None = None,
                    fixed_out: Iterable[int] | None = None, time_limit_s: float = _DEFAULT_TIME_LIMIT_S
                    ) -> PlacementResult:
    """Maximum expected covering (MEXCLP, Daskin 1983): coverage that survives busy teams.

    Each of the ``p`` teams is busy with probability ``q = busy_fraction``, independently, so a demand
    point covered by ``k`` teams is served within the standard with probability ``1 - q**k``. The model
    maximises ``sum_i w_i (1 - q**k_i)``: a second covering team is worth ``(1 - q) q`` of the first.

    Parameters
    ----------
    coverage, weights, p, fixed_in, fixed_out, time_limit_s
        As :func:`mclp`.
    busy_fraction
        Probability that a team is busy, in ``[0, 1)``. Boston has published no figure for its crisis
        teams; ``0.3`` is a planning assumption (set it from the simulation's utilisation).
    max_per_site
        Teams one site may hold (1: each chosen site one team).

    Returns
    -------
    PlacementResult
        ``objective`` = expected covered weight; ``covered_weight`` (at least once) and
        ``covered_twice_weight``; ``teams_per_site``.
    """
    start = time.perf_counter()
    if not isinstance(busy_fraction, (int, float, np.floating)) or not 0 <= float(busy_fraction) < 1:
        raise InvalidInput(f"busy_fraction must be in [0, 1), got {busy_fraction!r}", field="busy_fraction")
    if isinstance(max_per_site, bool) or not isinstance(max_per_site, (int, np.integer)) or max_per_site < 1:
        raise InvalidInput(f"max_per_site must be a positive integer, got {max_per_site!r}",
                           field="max_per_site")
    cov = _as_coverage(coverage)
    prep = _prepare(cov.shape[0], cov.shape[1], weights, p, fixed_in, fixed_out, per_site=int(max_per_site))
    return _expected_coverage("backup", cov, prep, float(busy_fraction), int(max_per_site), start, time_limit_s)


def _expected_coverage(model: str, cov: np.ndarray, prep: _Prepared, q: float, per_site: int, start: float,
                       time_limit_s: float) -> PlacementResult:
    """MCLP (q = 0, one team per site) and MEXCLP by Benders decomposition over the site variables.

    A merged row ``u`` covered ``s`` times is worth ``g_u(s) = W_u (1 - q**s)`` (``W_u min(s, 1)`` for
    MCLP), a concave function of ``s = rows_u . y``; its linear interpolation between integers is
    exactly what the LP relaxation of the usual formulation (one variable per row and coverage level)
    gives, so the cuts ``theta_u <= g_u(k) + (g_u(k+1) - g_u(k)) (s - k)`` reproduce that model with
    only the site variables in the master.
    """
    w = prep.weights
    allowed = prep.allowed
    n, m = cov.shape
    stats: dict[str, Any] = {"demand_rows": n, "candidates": m}
    if model == "backup":
        stats["busy_fraction"] = q
    active = (w > 0) & cov[:, allowed].any(axis=1)
    rows, rw, _ = _merge_rows(cov[np.ix_(active, allowed)], w[active])
    u, a = rows.shape
    stats["merged_rows"] = u
    lb = np.zeros(a)
    lb[np.searchsorted(allowed, prep.fixed_in)] = 1.0
    counts_per_row = rows.sum(axis=1)
    levels = np.ones(u) if q == 0 else np.minimum(prep.p, counts_per_row * per_site).astype(float)
    y0 = _coverage_greedy(rows, rw, prep.p, q, levels, lb, per_site)
    if u == 0 or prep.p == lb.sum() or (per_site == 1 and prep.p == a):
        y, upper, solver_status, counters = y0, None, "trivial", {}
    else:
        matrix = sp.csr_matrix(rows.astype(float))
        groups = min(_BENDERS_GROUPS, u)
        agg = sp.csr_matrix((np.ones(u), (np.argmax(rows, axis=1) % groups, np.arange(u))), shape=(groups, u))

        def evaluate(y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            # Minimise F = -f: theta_g >= -(sum over its rows of the supporting line at s(y)).
            s_now = matrix @ y
            k = np.minimum(np.floor(s_now + 1e-9), levels)
            saturated = k >= levels
            g_k = rw * (1.0 - q ** k)
            slope = np.where(saturated, 0.0, rw * (1.0 - q) * q ** np.minimum(k, levels - 1))
            const = -(g_k - slope * k)
            coef = matrix.multiply(-slope[:, None]).tocsr()
            value = float((const + coef @ y).sum())
            return value, np.asarray(agg @ const).ravel(), (agg @ coef).toarray()

        outcome = _benders(evaluate, a, prep.p, lb, np.full(a, float(per_site)), y0,
                           -np.asarray(agg @ rw).ravel(), start, time_limit_s)
        y, solver_status, counters = outcome.y, outcome.status, outcome.counters
        upper = None if outcome.lower is None else -outcome.lower
    x = np.rint(y).astype(int)
    chosen_local = np.flatnonzero(x > 0)
    chosen = allowed[chosen_local].tolist()
    per = x[chosen_local].tolist()
    counts = _covered_counts(cov, chosen, per)
    objective = float((w * (1 - q ** counts)).sum()) if model == "backup" else float(w[counts > 0].sum())
    bound = objective if solver_status == "trivial" else upper
    gap = _relative_gap(objective, bound)
    stats.update(counters)
    stats["solver_status"] = solver_status
    return PlacementResult(model, chosen, objective, bound, gap, _status(gap), time.perf_counter() - start,
                           int(sum(per)), float(w.sum()), covered_weight=float(w[counts > 0].sum()),
                           covered_twice_weight=float(w[counts >= 2].sum()), teams_per_site=per, stats=stats)


def _coverage_greedy(rows: np.ndarray, rw: np.ndarray, p: int, q: float, levels: np.ndarray, lb: np.ndarray,
                     per_site: int) -> np.ndarray:
    """Greedy incumbent: add the team with the largest marginal expected coverage, p times."""
    y = lb.copy()
    counts = rows.astype(float) @ y
    rows_t = rows.T.astype(float)
    for _ in range(p - int(y.sum())):
        marginal = np.where(counts < levels, (1.0 - q) * q ** counts, 0.0)
        gain = rows_t @ (rw * marginal)
        gain[y >= per_site] = -1.0
        j = int(np.argmax(gain))
        y[j] += 1.0
        counts += rows[:, j]
    return y


# ============================================================================================ p-median


def p_median(cost: Any, weights: Any, p: int, *, fixed_in: Iterable[int] | None = None,
             fixed_out: Iterable[int] | None = None, time_limit_s: float = _DEFAULT_TIME_LIMIT_S
             ) -> PlacementResult:
    """p-median (Hakimi 1964): minimise the demand-weighted cost to the nearest chosen candidate.

    Parameters
    ----------
    cost
        ``(n_demand, n_candidates)`` non-negative costs (e.g. travel seconds); ``inf`` = unreachable.
    weights
        ``(n_demand,)`` non-negative demand weights (``None``: all 1).
    p, fixed_in, fixed_out, time_limit_s
        As :func:`mclp`.

    Returns
    -------
    PlacementResult
        ``objective`` = ``sum_i w_i min_{j chosen} cost[i, j]``; ``assignment`` = nearest chosen column
        per row; ``stats["mean_cost"]`` = objective / total weight.

    Raises
    ------
    InvalidInput
        As :func:`mclp`, and when demand with positive weight cannot be reached from any allowed
        candidate, or from any set of ``p`` of them.

    Notes
    -----
    Exact Benders decomposition (see the module docstring). For a demand row ``i`` and site vector
    ``y`` (possibly fractional), let ``D*`` be the cost of the candidate at which the cumulative ``y``
    in cost order reaches 1; then ``theta_i >= D* + sum_j min(0, c_ij - D*) y_j`` is valid for every
    integer ``y`` and tight at ``y`` (it is the dual of the assignment subproblem).
    """
    start = time.perf_counter()
    c = _as_cost(cost)
    n, m = c.shape
    prep = _prepare(n, m, weights, p, fixed_in, fixed_out)
    w = prep.weights
    allowed = prep.allowed
    stats: dict[str, Any] = {"demand_rows": n, "candidates": m}
    active = w > 0
    sub = c[np.ix_(active, allowed)]
    reachable = np.isfinite(sub).any(axis=1)
    if not reachable.all():
        bad = int(np.flatnonzero(active)[np.flatnonzero(~reachable)[0]])
        raise InvalidInput(f"p-median is infeasible: demand row {bad} (and {int((~reachable).sum()) - 1} "
                           "more) cannot be reached from any allowed candidate", field="cost")
    finite_max = float(sub[np.isfinite(sub)].max()) if np.isfinite(sub).any() else 0.0
    # An unreachable pair costs more than any solution that avoids every such pair can cost in total.
    big = (finite_max + 1.0) * (float(w[active].sum()) / max(float(w[active].min()), 1e-12) + 1.0)
    sub = np.where(np.isfinite(sub), sub, big)
    fixed_local = np.searchsorted(allowed, prep.fixed_in)
    k_free = prep.p - prep.fixed_in.size
    if k_free == 0 or prep.p == allowed.size:
        y = np.zeros(allowed.size)
        y[fixed_local if k_free == 0 else np.arange(allowed.size)] = 1.0
        chosen_local = np.flatnonzero(y > 0.5)
        lower, solver_status, iters = None, "trivial", {}
    else:
        chosen_local, lower, solver_status, iters = _pmedian_benders(sub, w[active], prep.p, fixed_local,
                                                                      start, time_limit_s, stats)
    chosen = allowed[chosen_local].tolist()
    nearest = c[:, chosen]
    best = nearest.min(axis=1)
    if not np.isfinite(best[active]).all():
        raise InvalidInput(f"p-median is infeasible: no set of {prep.p} allowed candidates reaches every "
                           "demand point", field="cost")
    assignment = np.where(np.isfinite(best), np.asarray(chosen)[np.argmin(nearest, axis=1)], -1)
    objective = float((w[active] * best[active]).sum())
    bound = objective if solver_status == "trivial" else lower
    gap = _relative_gap(objective, bound)
    if gap is not None and bound is not None and bound > objective:  # rounding in the merged rows
        gap = 0.0 if gap <= OPTIMALITY_TOLERANCE else gap
    stats.update(iters)
    stats["solver_status"] = solver_status
    stats["mean_cost"] = objective / float(w.sum())
    return PlacementResult("pmedian", sorted(chosen), objective, bound, gap, _status(gap),
                           time.perf_counter() - start, len(chosen), float(w.sum()), teams_per_site=[1] * len(chosen),
                           assignment=assignment, stats=stats)


def _pmedian_benders(cost: np.ndarray, w: np.ndarray, p: int, fixed: np.ndarray, start: float,
                     time_limit_s: float, stats: dict[str, Any]
                     ) -> tuple[np.ndarray, float | None, str, dict[str, Any]]:
    """Benders decomposition for p-median; returns (chosen columns, lower bound, status, counters)."""
    n, m = cost.shape
    # Rows equal up to a constant (a dead end reached only through its neighbour) share every decision.
    row_min = cost.min(axis=1)
    shifted = cost - row_min[:, None]
    scale = max(float(shifted.max()), 1.0)
    _, first, inverse = np.unique(np.round(shifted / scale, 12), axis=0, return_index=True,
                                  return_inverse=True)
    inverse = inverse.ravel()
    wu = np.bincount(inverse, weights=w, minlength=len(first))
    d = shifted[first] * wu[:, None]  # weighted costs of the merged rows
    constant = float((w * row_min).sum())
    u = len(first)
    stats["merged_rows"] = u
    order = np.argsort(d, axis=1, kind="stable")
    d_sorted = np.take_along_axis(d, order, axis=1)
    rows_idx = np.arange(u)
    groups = min(_BENDERS_GROUPS, u)
    group = np.argmin(d, axis=1) % groups  # rows near the same site behave alike
    agg = sp.csr_matrix((np.ones(u), (group, rows_idx)), shape=(groups, u))

    def evaluate(y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """f(y) and the grouped cuts at y: theta_g >= const_g + coef_g . y."""
        cum = np.cumsum(y[order], axis=1)
        level = np.argmax(cum >= 1.0 - 1e-9, axis=1)
        d_star = d_sorted[rows_idx, level]
        coef = np.minimum(0.0, d - d_star[:, None])
        value = float((d_star + coef @ y).sum())
        return value, np.asarray(agg @ d_star).ravel(), np.asarray(agg @ coef)

    y0 = _pmedian_heuristic(d, p, fixed)  # greedy, then vertex substitution (Teitz & Bart)
    lb = np.zeros(m)
    lb[fixed] = 1.0
    outcome = _benders(evaluate, m, p, lb, np.ones(m), y0, np.zeros(groups), start, time_limit_s)
    return (np.flatnonzero(outcome.y > 0.5), None if outcome.lower is None else outcome.lower + constant,
            outcome.status, outcome.counters)


@dataclass
class _BendersOutcome:
    y: np.ndarray
    value: float
    lower: float | None
    status: str
    counters: dict[str, Any]


def _benders(evaluate: Any, m: int, p: int, lb: np.ndarray, ub: np.ndarray, y0: np.ndarray,
             theta_lb: np.ndarray, start: float, time_limit_s: float) -> _BendersOutcome:
    """Minimise a convex piecewise-linear ``F(y) = sum_g F_g(y)`` over ``sum y = p``, ``lb <= y <= ub``
    integer, given ``evaluate(y) -> (F(y), const_g, coef_g)`` with valid cuts
    ``theta_g >= const_g + coef_g . y`` tight at ``y``.

    The linear relaxation is solved first by in-out stabilised cutting planes (Ben-Ameur & Neto 2007)
    with GLOP; then the integer master (SCIP) is re-solved with the cuts of each of its solutions
    until its lower bound meets the best integer value found.
    """
    groups = len(theta_lb)
    cut_const: list[np.ndarray] = []
    cut_coef: list[np.ndarray] = []

    def add_cuts(y: np.ndarray) -> float:
        value, c0, c1 = evaluate(y)
        cut_const.append(c0)
        cut_coef.append(c1)
        return value

    def master(integer: bool) -> _Mip:
        consts = np.concatenate(cut_const)
        coefs = np.vstack(cut_coef)
        r = len(consts)
        theta = sp.csr_matrix((np.ones(r), (np.arange(r), np.tile(np.arange(groups), len(cut_const)))),
                              shape=(r, groups))
        matrix = sp.vstack([sp.csr_matrix(np.r_[np.ones(m), np.zeros(groups)][None, :]),
                            sp.hstack([sp.csr_matrix(-coefs), theta])]).tocsr()
        matrix.eliminate_zeros()
        return _Mip(np.r_[lb, theta_lb], np.r_[ub, np.full(groups, np.inf)], np.r_[np.zeros(m), np.ones(groups)],
                    np.r_[p, consts], np.r_[p, np.full(r, np.inf)], matrix,
                    np.r_[np.full(m, integer), np.zeros(groups, bool)], maximize=False)

    best_y = y0.copy()
    best_value = add_cuts(best_y)
    # Linear relaxation. The core point starts at the centre of the polytope.
    free = lb < ub
    core = lb.copy()
    core[free] += (p - lb.sum()) / free.sum()
    alpha, lp_upper, lp_lower = 0.5, math.inf, -math.inf
    y_master = core.copy()
    lp_iter = 0
    while lp_iter < _BENDERS_LP_ITERATIONS and _time_left(start, time_limit_s) > 0:
        lp_iter += 1
        y_sep = alpha * core + (1 - alpha) * y_master
        lp_upper = min(lp_upper, add_cuts(y_sep))
        _, values, objective, _ = master(False).solve("glop", _time_left(start, time_limit_s))
        if values is None or objective is None:
            break
        y_master = np.clip(values[:m], lb, ub)
        if objective <= lp_lower + 1e-9 * max(abs(lp_upper), 1.0):
            alpha = 0.0  # the stabilised point stopped helping: plain Kelley steps
        lp_lower = max(lp_lower, objective)
        core = 0.5 * (core + y_master)
        if lp_upper - lp_lower <= 1e-6 * max(abs(lp_upper), 1.0):
            break
    lower: float | None = lp_lower if math.isfinite(lp_lower) else None
    mip_iter = 0
    status_name = "NOT_SOLVED"
    while _time_left(start, time_limit_s) > 0:
        mip_iter += 1
        status_name, values, _, bound = master(True).solve("scip", _time_left(start, time_limit_s),
                                                       np.r_[best_y, np.zeros(groups)])
        if values is None or bound is None:
            break
        lower = bound if lower is None else max(lower, bound)
        y_int = np.clip(np.rint(values[:m]), lb, ub)
        value = add_cuts(y_int)
        if value < best_value:
            best_value, best_y = value, y_int
        if best_value - lower <= 0.1 * OPTIMALITY_TOLERANCE * max(abs(best_value), 1.0):
            break
    counters = {"lp_iterations": lp_iter, "mip_iterations": mip_iter,
                "cuts": int(sum(len(c) for c in cut_const)), "master_status": status_name}
    return _BendersOutcome(best_y, best_value, lower, status_name, counters)


def _pmedian_heuristic(d: np.ndarray, p: int, fixed: np.ndarray) -> np.ndarray:
    """Greedy add then vertex substitution on the (weighted) cost matrix; returns a 0/1 vector."""
    n, m = d.shape
    chosen = [int(j) for j in fixed]
    best = d[:, chosen].min(axis=1) if chosen else np.full(n, np.inf)
    while len(chosen) < p:
        totals = np.minimum(d, best[:, None]).sum(axis=0)
        totals[chosen] = np.inf
        j = int(np.argmin(totals))
        chosen.append(j)
        best = np.minimum(best, d[:, j])
    current = float(best.sum())
    fixed_set = set(int(j) for j in fixed)
    for _ in range(10 * p):  # each pass strictly improves; the cap only guards against float ties
        sub = d[:, chosen]
        two = np.argsort(sub, axis=1)[:, :2] if len(chosen) > 1 else np.zeros((n, 1), dtype=int)
        first = sub[np.arange(n), two[:, 0]]
        second = sub[np.arange(n), two[:, 1]] if len(chosen) > 1 else np.full(n, np.inf)
        move, move_value = None, current
        for slot, j_out in enumerate(chosen):
            if j_out in fixed_set:
                continue
            without = np.where(two[:, 0] == slot, second, first)
            totals = np.minimum(d, without[:, None]).sum(axis=0)
            totals[chosen] = np.inf
            j_in = int(np.argmin(totals))
            if totals[j_in] < move_value - 1e-9 * max(move_value, 1.0):
                move, move_value = (slot, j_in), float(totals[j_in])
        if move is None:
            break
        chosen[move[0]] = move[1]
        current = move_value
    y = np.zeros(m)
    y[chosen] = 1.0
    return y


# ============================================================================================ dispatch


def solve(model: str, matrix: Any, weights: Any, p: int | None = None, **kwargs: Any) -> PlacementResult:
    """Run one model by name (``mclp``, ``pmedian``, ``lscp``, ``backup``).

    ``matrix`` is a coverage matrix for the coverage models and a cost matrix for p-median.
    """
    if model == "mclp":
        return mclp(matrix, weights, p, **kwargs)  # type: ignore[arg-type]
    if model == "pmedian":
        return p_median(matrix, weights, p, **kwargs)  # type: ignore[arg-type]
    if model == "lscp":
        return lscp(matrix, weights, **kwargs)
    if model == "backup":
        return backup_coverage(matrix, weights, p, **kwargs)  # type: ignore[arg-type]
    raise InvalidInput(f"unknown model {model!r}; expected one of {', '.join(MODELS)}", field="model")


# ============================================================================================ Boston level

_OBJECTIVE_LABELS = {
    "mclp": "demand covered within the standard (calls a year)",
    "pmedian": "demand-weighted travel time (seconds x calls a year)",
    "lscp": "number of sites",
    "backup": "expected demand covered within the standard with busy teams (calls a year)",
}


def load_candidates_csv(path: str | Path) -> list[Any]:
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
        raise InvalidInput(f"cannot read candidates file {p}: {exc}", field="candidates") from None
    if not sites:
        raise InvalidInput(f"{p}: no candidate rows", field="candidates")
    return sites


def candidate_sites(places: Any, *, kinds: Sequence[str] | None = None, extra: Sequence[Any] | None = None,
                    candidates_csv: str | Path | None = None) -> list[Any]:
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


def today_sites(teams: Sequence[Any], team_types: Iterable[str] | str | None = None) -> list[Any]:
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

    sites: list[Any]
    times: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    demand_description: str
    skipped: list[dict[str, str]]
    network: Any = field(repr=False)
    places: Any = field(repr=False)

    def index(self, site_id: str) -> int:
        for j, s in enumerate(self.sites):
            if s.site_id == site_id:
                return j
        for s in self.skipped:
            if s["site_id"] == site_id:
                raise InvalidInput(f"site {site_id!r} cannot be used: {s['reason']}", field="site")
        raise NotFound(f"unknown candidate site {site_id!r}", field="site")


def build_problem(network: Any, places: Any, *, demand: Any = None, sites: Sequence[Any] | None = None,
                  candidates_csv: str | Path | None = None, kinds: Sequence[str] | None = None
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

    Returns
    -------
    StagingProblem
        Sites that are off the network are left out and listed in ``skipped``.
    """
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
    times = (network.travel_times_from(snaps.nodes[ok]) + snaps.time_s[ok][:, None]).T
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


def _check_minutes(minutes: Any) -> float:
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"minutes must be a number, got {minutes!r}", field="minutes")
    m = float(minutes)
    if not math.isfinite(m) or m <= 0 or m > 180:
        raise InvalidInput(f"minutes must be between 0 and 180, got {minutes!r}", field="minutes")
    return m


def plan_staging(problem: StagingProblem, model: str, *, minutes: float, p: int | None = None,
                 fixed: Sequence[str] = (), exclude: Sequence[str] = (), today: Sequence[Any] | None = None,
                 team_type: str | None = None, busy_fraction: float = 0.3, allow_uncoverable: bool = False,
                 compare_same_count: bool = True, time_limit_s: float = _DEFAULT_TIME_LIMIT_S
                 ) -> StagingPlan:
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
    common = {"fixed_in": fixed_idx, "fixed_out": excluded_idx, "time_limit_s": time_limit_s}
    if model == "mclp":
        result = mclp(cover, w, p, **common)  # type: ignore[arg-type]
    elif model == "pmedian":
        result = p_median(times, w, p, **common)  # type: ignore[arg-type]
    elif model == "lscp":
        result = lscp(cover, w, uncoverable="ignore" if allow_uncoverable else "error", **common)
    else:
        result = backup_coverage(cover, w, p, busy_fraction=busy_fraction, **common)  # type: ignore[arg-type]
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
        comparison = _compare(problem, today, limit, covered, mean_eta, fixed_idx, excluded_idx,
                              compare_same_count, time_limit_s)
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


def _compare(problem: StagingProblem, today: list[Any], limit: float, covered: float, mean_eta: float,
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
        extra = {"model": "mclp", "p": k, "covered_share": r.covered_weight / total, "covered_demand": r.covered_weight,
                 "extra_covered_demand": r.covered_weight - today_cov,
                 "sites": [problem.sites[j].site_id for j in r.chosen], "status": r.status, "gap": r.gap}
    return StagingComparison(
        today_sites=[{"id": s.site_id, "name": s.name, "lat": float(s.lat), "lon": float(s.lon)} for s in today],
        today_covered_share=today_cov / total, today_covered_demand=today_cov,
        today_mean_eta_s=float((w * eta).sum() / total), proposed_covered_share=covered / total,
        proposed_covered_demand=covered, proposed_mean_eta_s=mean_eta, same_count=extra)
