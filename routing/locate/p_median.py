"""The p-median model (Hakimi 1964) on a demand x candidate cost matrix, solved by Benders decomposition."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from routing.errors import InvalidInput
from routing.locate._base import (
    _BENDERS_GROUPS,
    _DEFAULT_TIME_LIMIT_S,
    OPTIMALITY_TOLERANCE,
    PlacementResult,
    _as_cost,
    _benders,
    _prepare,
    _relative_gap,
    _status,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# ============================================================================================ p-median


def p_median(cost: npt.ArrayLike, weights: npt.ArrayLike | None, p: int, *, fixed_in: Iterable[int] | None = None,
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
        iters: dict[str, Any] = {}
        lower, solver_status = None, "trivial"
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


