"""Covering models: MCLP (Church & ReVelle 1974), LSCP (Toregas et al. 1971) and MEXCLP
(Daskin 1983), each a function of a demand x candidate coverage matrix.

MCLP and MEXCLP have two exact formulations here, picked per instance (``formulation="auto"``):

- ``"compact"``: the textbook model on merged rows (Church & ReVelle 1974 for MCLP; Daskin 1983 for
  MEXCLP): one site variable per candidate, one continuous coverage variable per merged row (and per
  coverage level for MEXCLP), solved directly by SCIP. After rows with identical coverage sets are
  merged, this model is small (Boston: ~1-3 thousand rows x ~100 sites), and SCIP's own presolve,
  cuts and symmetry handling on the full model beat a master that sees the rows only through cuts:
  on lattice instances the Benders master was measured up to ~50x slower than this model.
- ``"benders"``: Benders decomposition over the site variables alone (:func:`routing.locate._base._benders`),
  whose master does not grow with the number of rows; kept for instances whose compact model would
  have more than :data:`COMPACT_MAX_NONZEROS` coefficients, where (on LP-tight instances) branching
  over thousands of row variables costs more than a master over the sites alone.

References
----------
Church, R. & ReVelle, C. (1974). The maximal covering location problem. Papers of the Regional
Science Association 32(1), 101-118.
Daskin, M. S. (1983). A maximum expected covering location model: formulation, properties and
heuristic solution. Transportation Science 17(1), 48-70.
Toregas, C., Swain, R., ReVelle, C. & Bergman, L. (1971). The location of emergency service
facilities. Operations Research 19(6), 1363-1373.
Fischetti, M., Ljubic, I. & Sinnl, M. (2017). Redesigning Benders decomposition for large-scale
facility location. Management Science 63(7), 2146-2162.
"""

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

#: Formulations :func:`mclp` and :func:`backup_coverage` accept (``"auto"`` picks one per instance).
FORMULATIONS = ("auto", "compact", "benders")

#: ``"auto"`` solves the compact model when it has at most this many constraint coefficients (coverage
#: nonzeros of the merged rows, plus one per row-level variable and one per site), Benders above.
#: Measured (SCIP, one thread): up to here the compact model is never slower than the textbook one (it
#: is that model) and beats Benders by up to ~50x on lattice instances (weak LP bound, symmetric; e.g.
#: a 50 x 50 lattice, 74k coefficients: compact 40 s, Benders > 100 s). Above it, on random-point
#: instances with a tight LP bound, the compact model's branch-and-bound over thousands of row variables
#: is what costs: 30,000 x 400 points (8,876 merged rows, 164k coefficients): compact 39 s, Benders
#: 2.8 s; 60,000 x 500 (662k): compact not optimal after 200 s. Boston's instances sit far below it.
COMPACT_MAX_NONZEROS = 120_000

# ============================================================================================ MCLP


def mclp(coverage: npt.ArrayLike, weights: npt.ArrayLike | None, p: int, *, fixed_in: Iterable[int] | None = None,
         fixed_out: Iterable[int] | None = None, time_limit_s: float = _DEFAULT_TIME_LIMIT_S,
         formulation: str = "auto") -> PlacementResult:
    """Maximal covering location problem (Church & ReVelle 1974).

    ``max sum_i w_i z_i`` subject to ``z_i <= sum_{j covers i} y_j``, ``sum_j y_j = p``, ``y`` binary,
    ``0 <= z_i <= 1``, on the demand rows merged by coverage set (weights summed).

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
    formulation
        ``"auto"`` (default): the compact model when it has at most :data:`COMPACT_MAX_NONZEROS`
        coefficients, else Benders. ``"compact"`` or ``"benders"`` force one; all are exact. The one used
        is in ``stats["formulation"]`` (``"trivial"`` when no solver was needed).

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
    _check_formulation(formulation)
    cov = _as_coverage(coverage)
    prep = _prepare(cov.shape[0], cov.shape[1], weights, p, fixed_in, fixed_out)
    return _expected_coverage("mclp", cov, prep, 0.0, 1, start, time_limit_s, formulation)


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
                    fixed_out: Iterable[int] | None = None, time_limit_s: float = _DEFAULT_TIME_LIMIT_S,
                    formulation: str = "auto") -> PlacementResult:
    """Maximum expected covering (MEXCLP, Daskin 1983): coverage that survives busy teams.

    Each of the ``p`` teams is busy with probability ``q = busy_fraction``, independently, so a demand
    point covered by ``k`` teams is served within the standard with probability ``1 - q**k``. The model
    maximises ``sum_i w_i (1 - q**k_i)``: a second covering team is worth ``(1 - q) q`` of the first.

    Parameters
    ----------
    coverage, weights, p, fixed_in, fixed_out, time_limit_s, formulation
        As :func:`mclp`. The compact model is Daskin's: one variable per merged row and coverage level
        ``k`` worth ``W (1 - q) q**(k - 1)``; the worths fall with ``k``, so the LP fills levels in order.
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
    _check_formulation(formulation)
    if not isinstance(busy_fraction, (int, float, np.floating)) or not 0 <= float(busy_fraction) < 1:
        raise InvalidInput(f"busy_fraction must be in [0, 1), got {busy_fraction!r}", field="busy_fraction")
    if isinstance(max_per_site, bool) or not isinstance(max_per_site, (int, np.integer)) or max_per_site < 1:
        raise InvalidInput(f"max_per_site must be a positive integer, got {max_per_site!r}",
                           field="max_per_site")
    cov = _as_coverage(coverage)
    prep = _prepare(cov.shape[0], cov.shape[1], weights, p, fixed_in, fixed_out, per_site=int(max_per_site))
    return _expected_coverage("backup", cov, prep, float(busy_fraction), int(max_per_site), start, time_limit_s,
                              formulation)


def _check_formulation(formulation: str) -> None:
    if formulation not in FORMULATIONS:
        raise InvalidInput(f"formulation must be one of {', '.join(map(repr, FORMULATIONS))}, got {formulation!r}",
                           field="formulation")


def _expected_coverage(model: str, cov: np.ndarray, prep: _Prepared, q: float, per_site: int, start: float,
                       time_limit_s: float, formulation: str = "auto") -> PlacementResult:
    """MCLP (q = 0, one team per site) and MEXCLP on merged rows, by the compact model or by Benders.

    A merged row ``u`` covered ``s`` times is worth ``g_u(s) = W_u (1 - q**s)`` (``W_u min(s, 1)`` for
    MCLP), a concave function of ``s = rows_u . y``. The compact model spells ``g_u`` with one
    variable per coverage level (:func:`_compact_coverage`); Benders keeps only the site variables and
    adds the supporting lines ``theta_u <= g_u(k) + (g_u(k+1) - g_u(k)) (s - k)`` as cuts, whose linear
    relaxation is the compact model's. Both are exact; ``formulation`` picks one (see :func:`mclp`).
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
    # Coefficients of the compact model: coverage nonzeros, one per level variable, one per site.
    compact_size = int(counts_per_row.sum()) + int(levels.sum()) + a
    stats["compact_nonzeros"] = compact_size
    upper: float | None = None
    if u == 0 or prep.p == lb.sum() or (per_site == 1 and prep.p == a):
        y = _coverage_greedy(rows, rw, prep.p, q, levels, lb, per_site)
        used, solver_status, counters = "trivial", "trivial", {}
    elif formulation == "compact" or (formulation == "auto" and compact_size <= COMPACT_MAX_NONZEROS):
        used = "compact"
        y, upper, solver_status = _compact_coverage(rows, rw, prep.p, q, levels, lb, per_site,
                                                    _time_left(start, time_limit_s))
        # The same keys as Benders (one MIP solve, no cutting-plane rounds), so reports read either.
        counters = {"lp_iterations": 0, "mip_iterations": 1, "cuts": 0, "master_status": solver_status}
    else:
        used = "benders"
        y0 = _coverage_greedy(rows, rw, prep.p, q, levels, lb, per_site)
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
    bound = objective if used == "trivial" else upper
    gap = _relative_gap(objective, bound)
    stats.update(counters)
    stats["formulation"] = used
    stats["solver_status"] = solver_status
    return PlacementResult(model, chosen, objective, bound, gap, _status(gap), time.perf_counter() - start,
                           int(sum(per)), float(w.sum()), covered_weight=float(w[counts > 0].sum()),
                           covered_twice_weight=float(w[counts >= 2].sum()), teams_per_site=per, stats=stats)


def _compact_coverage(rows: np.ndarray, rw: np.ndarray, p: int, q: float, levels: np.ndarray, lb: np.ndarray,
                      per_site: int, time_limit_s: float) -> tuple[np.ndarray, float | None, str]:
    """The textbook model on merged rows, solved by SCIP; returns (sites, upper bound, status).

    Variables: ``y_j`` integer in ``[lb_j, per_site]`` (teams at site ``j``) and, per merged row ``u``
    and coverage level ``k = 1..L_u``, ``x_uk`` in ``[0, 1]`` worth ``W_u (1 - q) q**(k - 1)``;
    constraints ``sum_k x_uk <= rows_u . y`` and ``sum_j y_j = p``. With ``q = 0`` (``L_u = 1``) this is
    exactly Church & ReVelle's MCLP (1974) on merged rows, otherwise Daskin's MEXCLP (1983). The worths
    fall with ``k``, so the optimum fills the levels in order and ``sum_k`` is the row's expected cover.

    No incumbent is passed: the model is deliberately the textbook one, so SCIP takes the same path
    as on that model (a greedy hint was measured to help some lattice instances and hurt others by
    more than 1.5x, MIP performance variability rather than a gain). The greedy solution is only the
    fallback when the time limit leaves SCIP without a solution.
    """
    u, a = rows.shape
    lv = levels.astype(np.int64)
    row_of = np.repeat(np.arange(u), lv)  # the row of each level variable
    level = np.arange(len(row_of)) - np.repeat(np.cumsum(lv) - lv, lv)  # k - 1, 0-based within its row
    worth = rw[row_of] * (1.0 - q) * q ** level  # numpy's 0.0 ** 0 is 1: MCLP's level 1 is worth W_u
    n_levels = len(row_of)
    cover = sp.csr_matrix(rows, dtype=float)
    pick = sp.csr_matrix((np.ones(n_levels), (row_of, np.arange(n_levels))), shape=(u, n_levels))
    matrix = sp.vstack([sp.hstack([sp.csr_matrix(np.ones((1, a))), sp.csr_matrix((1, n_levels))]),
                        sp.hstack([-cover, pick])]).tocsr()
    mip = _Mip(np.r_[lb, np.zeros(n_levels)], np.r_[np.full(a, float(per_site)), np.ones(n_levels)],
               np.r_[np.zeros(a), worth], np.r_[p, np.full(u, -np.inf)], np.r_[p, np.zeros(u)], matrix,
               np.r_[np.ones(a, bool), np.zeros(n_levels, bool)], maximize=True)
    status, values, _, bound = mip.solve("scip", time_limit_s)
    if values is None:
        return _coverage_greedy(rows, rw, p, q, levels, lb, per_site), None, status
    return np.clip(np.rint(values[:a]), lb, per_site), bound, status


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


