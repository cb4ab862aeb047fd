"""Covering models: MCLP (Church & ReVelle 1974), LSCP (Toregas et al. 1971) and MEXCLP
(Daskin 1983), each a function of a demand x candidate coverage matrix."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from routing.errors import InvalidInput
from routing.locate._base import (
    _BENDERS_GROUPS,
    _DEFAULT_TIME_LIMIT_S,
    PlacementResult,
    _as_coverage,
    _benders,
    _covered_counts,
    _merge_rows,
    _Mip,
    _prepare,
    _Prepared,
    _relative_gap,
    _status,
    _time_left,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# ============================================================================================ MCLP


def mclp(coverage: npt.ArrayLike, weights: npt.ArrayLike | None, p: int, *, fixed_in: Iterable[int] | None = None,
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


def lscp(coverage: npt.ArrayLike, weights: npt.ArrayLike | None = None, *, fixed_in: Iterable[int] | None = None,
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
            assert bound is not None  # a solution comes with its bound (_Mip.solve)
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


def backup_coverage(coverage: npt.ArrayLike, weights: npt.ArrayLike | None, p: int, *, busy_fraction: float = 0.3,
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


