"""The p-median model (Hakimi 1964) on a demand x candidate cost matrix, solved exactly.

Method
------
The exact solver combines the three ingredients that let the exact methods of the literature prove the
OR-Library p-median instances (Beasley 1990) optimal in seconds:

1. **A strong start.** Greedy addition, then vertex substitution (Teitz & Bart 1968): on the OR-Library
   instances this finds the optimum or comes within 1 %.
2. **The radius formulation's linear relaxation, by Benders cuts per demand row.** In Elloumi's radius
   formulation (Elloumi 2010; Duran-Mateluna, Ales & Elloumi, EJOR 2023) the cost of demand row ``i`` is
   ``theta_i = D_i^1 + sum_k (D_i^{k+1} - D_i^k) z_i^k`` with ``z_i^k = 1`` when no chosen candidate lies
   within its ``k``-th distinct cost ``D_i^k``. Projected on the site vector ``y`` it needs, for each row,
   only the cuts ``theta_i >= D - sum_j max(0, D - c_ij) y_j`` (one per level ``D``), and the deepest
   cut at a given ``y`` is found in closed form: ``D`` is the cost at which the cumulative ``y`` of the
   row, in cost order, reaches 1 (Duran-Mateluna et al. 2023, Prop. 2). The relaxation is solved by
   stabilised cutting planes (in-out, Ben-Ameur & Neto 2007) with HiGHS' dual simplex, one cut per
   violated row (the older code aggregated rows into 64 cuts, which weakens the master). Only when
   rows far outnumber candidates (over 2,000 merged rows, e.g. a city's nodes against ~100 sites) are
   the rows of each nearest site summed into one value variable, to keep every LP small.
3. **Lagrangian branch-and-bound with reduction tests.** The relaxation's duals give optimal multipliers
   of the Lagrangian relaxation of the assignment constraints (``lambda_i = sum_c mu_c D_c`` over row
   ``i``'s cuts), whose bound ``sum_i lambda_i + min_{|S| = p} sum_{j in S} rho_j`` with
   ``rho_j = sum_i min(0, c_ij - lambda_i)`` then equals the LP bound and is cheap to evaluate anywhere
   (NumPy, ``O(rows x candidates)``). A depth-first tree branches on sites; at each node a few
   subgradient steps (Polyak) re-tune ``lambda``, every evaluation yields a feasible solution, and the
   penalty tests of Beasley (1993) close or open sites whose bound exceeds the incumbent: the
   reduced-cost fixing of the reduction tests (Duran-Mateluna et al. 2023, Sec. 4; García, Labbé &
   Marín, INFORMS JoC 2011) applied at every node. Every bound used is a Lagrangian value computed
   from the data, so it is valid whatever the LP solver's tolerances.

When every weighted cost is an integer (the OR-Library instances), the optimum is an integer and a
bound above ``incumbent - 1`` proves the incumbent optimal; otherwise the proof is to within a relative
``1e-8`` (below :data:`OPTIMALITY_TOLERANCE`).

The previous method (Benders with 64 aggregated cuts and an iterated SCIP master) is kept as
:func:`_p_median_baseline` for the benchmark (``bench/bench_pmedian.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

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
    _time_left,
)

if TYPE_CHECKING:
    import numpy.typing as npt

_LP_ROUNDS = 200  # cutting-plane rounds for the root relaxation (pmed instances need 5-40)
_ROOT_STEPS = 60  # subgradient steps at the root (it starts from the LP's optimal multipliers)
_NODE_STEPS = 30  # subgradient steps at every other node (warm-started from the parent's multipliers)
_STALL_STEPS = 5  # halve the Polyak step factor after this many steps without a better bound
_ROW_CUTS_MAX = 2000  # up to this many (merged) rows, one Benders value variable per row
_FLOAT_PROOF = 0.1 * OPTIMALITY_TOLERANCE  # relative proof target when the optimum need not be an integer

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
        per row; ``stats["mean_cost"]`` = objective / total weight; ``stats`` also holds the solver's
        counters (``lp_iterations``: cutting-plane rounds of the root relaxation, ``mip_iterations``:
        branch-and-bound nodes, ``lp_bound``, ``heuristic_value``, ``fixed_at_root``).

    Raises
    ------
    InvalidInput
        As :func:`mclp`, and when demand with positive weight cannot be reached from any allowed
        candidate, or from any set of ``p`` of them.

    Notes
    -----
    Exact: Benders cuts of the radius formulation for the linear relaxation, then a Lagrangian
    branch-and-bound with reduction tests (see the module docstring for the method and its sources).
    When all ``w_i * cost[i, j]`` are integers the optimum is proven exactly (``bound == objective``);
    otherwise to within a relative ``1e-8``. It proves each of the 40 OR-Library instances ``pmed1`` ..
    ``pmed40`` (100-900 nodes, p = 5-200) optimal in well under a minute on one core
    (``bench/bench_pmedian.py``).
    """
    return _solve(cost, weights, p, fixed_in, fixed_out, time_limit_s, exact=True)


def _p_median_baseline(cost: npt.ArrayLike, weights: npt.ArrayLike | None, p: int, *,
                       fixed_in: Iterable[int] | None = None, fixed_out: Iterable[int] | None = None,
                       time_limit_s: float = _DEFAULT_TIME_LIMIT_S) -> PlacementResult:
    """The previous p-median solver, kept as the benchmark's baseline: Benders decomposition with the
    rows aggregated into 64 cuts per round (GLOP for the relaxation, then an iterated SCIP master).

    Same parameters, result and errors as :func:`p_median`; proves optimality too, but slowly when
    p is small (minutes, or not within 10 min, on the 800-900 node OR-Library instances).
    """
    return _solve(cost, weights, p, fixed_in, fixed_out, time_limit_s, exact=False)


def _solve(cost: npt.ArrayLike, weights: npt.ArrayLike | None, p: int, fixed_in: Iterable[int] | None,
           fixed_out: Iterable[int] | None, time_limit_s: float, *, exact: bool) -> PlacementResult:
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
    # Rounded up so that integer data stays integer (the exact solver then proves with integer steps).
    big = math.ceil((finite_max + 1.0) * (float(w[active].sum()) / max(float(w[active].min()), 1e-12) + 1.0))
    sub = np.where(np.isfinite(sub), sub, float(big))
    fixed_local = np.searchsorted(allowed, prep.fixed_in)
    k_free = prep.p - prep.fixed_in.size
    if k_free == 0 or prep.p == allowed.size:
        y = np.zeros(allowed.size)
        y[fixed_local if k_free == 0 else np.arange(allowed.size)] = 1.0
        chosen_local = np.flatnonzero(y > 0.5)
        iters: dict[str, Any] = {}
        lower, solver_status = None, "trivial"
    else:
        solver = _pmedian_exact if exact else _pmedian_benders
        chosen_local, lower, solver_status, iters = solver(sub, w[active], prep.p, fixed_local, start,
                                                           time_limit_s, stats)
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


def _merge_rows(cost: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Rows equal up to a constant (a dead end reached only through its neighbour) share every decision.

    Returns the weighted costs of the merged rows minus each row's minimum ``(u, m)``, the constant
    ``sum_i w_i min_j cost[i, j]`` that was taken out, and ``u``.
    """
    row_min = cost.min(axis=1)
    shifted = cost - row_min[:, None]
    scale = max(float(shifted.max()), 1.0)
    _, first, inverse = np.unique(np.round(shifted / scale, 12), axis=0, return_index=True,
                                  return_inverse=True)
    inverse = inverse.ravel()
    wu = np.bincount(inverse, weights=w, minlength=len(first))
    d = shifted[first] * wu[:, None]  # weighted costs of the merged rows
    return d, float((w * row_min).sum()), len(first)


# ============================================================================================ exact solver


def _pmedian_exact(cost: np.ndarray, w: np.ndarray, p: int, fixed: np.ndarray, start: float,
                   time_limit_s: float, stats: dict[str, Any]
                   ) -> tuple[np.ndarray, float | None, str, dict[str, Any]]:
    """Radius-formulation Benders relaxation + Lagrangian branch-and-bound (module docstring).

    Parameters
    ----------
    cost
        ``(n, m)`` finite costs of the rows with positive weight over the allowed candidates.
    w
        ``(n,)`` positive weights.
    p
        Number of candidates to choose; ``fixed`` (local column indices) must be among them.

    Returns
    -------
    tuple
        (chosen local columns, proven lower bound on the objective or ``None``, status, counters).
    """
    d, constant, u = _merge_rows(cost, w)
    stats["merged_rows"] = u
    top = float(d.max(axis=1).sum()) + abs(constant)  # no objective value exceeds it
    # Integer data: the optimum is an integer, so a bound above incumbent - 1 proves the incumbent.
    integral = (bool(np.array_equal(d, np.round(d))) and constant == round(constant) and top < 2.0 ** 50)
    y0 = _pmedian_heuristic(d, p, fixed)  # greedy, then vertex substitution (Teitz & Bart)
    heuristic_value = float(d[:, y0 > 0.5].min(axis=1).sum())
    # One value variable per row unless rows far outnumber candidates (then per-row LPs get large).
    master = _RadiusMaster(d, p, fixed, u if u <= _ROW_CUTS_MAX else max(_BENDERS_GROUPS, d.shape[1]))
    lam, lp_bound, lp_rounds, y_lp = master.relaxation(y0, heuristic_value, start, time_limit_s)
    if y_lp is not None:
        # When the relaxation is (nearly) integral, as for most OR-Library instances with larger p, its
        # p largest sites plus vertex substitution find the optimum that the greedy start missed;
        # the tree then only has to confirm it.
        ranked = np.argsort(-(y_lp + 2.0 * master.lo), kind="stable")  # fixed sites first
        y1 = _pmedian_heuristic(d, p, fixed, start=ranked[:p])
        value = float(d[:, y1 > 0.5].min(axis=1).sum())
        if value < heuristic_value:
            y0, heuristic_value = y1, value
    tree = _LagrangianTree(d, p, fixed, heuristic_value, np.flatnonzero(y0 > 0.5), integral)
    lower = tree.run(lam, start, time_limit_s)
    if not tree.complete and lp_bound is not None:
        lower = min(max(lower, lp_bound), tree.upper)  # both bounds are valid; keep the better
    counters = {"lp_iterations": lp_rounds, "mip_iterations": tree.nodes, "subgradient_steps": tree.steps,
                "cuts": master.n_cuts, "lp_bound": None if lp_bound is None else lp_bound + constant,
                "heuristic_value": heuristic_value + constant, "fixed_at_root": tree.fixed_at_root,
                "integral_costs": integral, "master_status": "optimal" if tree.complete else "time limit"}
    bound = lower + constant if math.isfinite(lower) else None
    return tree.best_set, bound, "optimal" if tree.complete else "time limit", counters


class _RadiusMaster:
    """Benders master of the radius formulation's linear relaxation.

    A cut of row ``i`` at level ``D`` reads ``theta_i + sum_{j: c_ij < D} (D - c_ij) y_j >= D``. With one
    value variable per row (``groups >= u``, the strong form of Duran-Mateluna et al. 2023) the master
    minimises ``sum_i theta_i``; with many more rows than candidates (a city's nodes against a hundred
    sites) the rows are summed into ``groups`` value variables (rows nearest the same site together),
    which keeps each LP small at the price of more rounds. Both converge to the same relaxation, over
    ``sum_j y_j = p``, ``0 <= y <= 1`` (fixed sites at 1) and ``theta >= sum of the rows' smallest costs``.
    """

    def __init__(self, d: np.ndarray, p: int, fixed: np.ndarray, groups: int) -> None:
        self.d = d
        self.u, self.m = d.shape
        self.p = p
        self.order = np.argsort(d, axis=1, kind="stable")
        self.d_sorted = np.take_along_axis(d, self.order, axis=1)
        self.rows = np.arange(self.u)
        if groups >= self.u:
            self.group = self.rows
        else:
            self.group = np.unique(np.argmin(d, axis=1) % groups, return_inverse=True)[1].ravel()
        self.g = int(self.group.max()) + 1
        self.theta_low = np.bincount(self.group, weights=self.d_sorted[:, 0], minlength=self.g)
        self.lo = np.zeros(self.m)
        self.lo[fixed] = 1.0
        # Cut blocks: (cut row of each group or -1 (g,), the rows' levels (u,), theta of each cut,
        # right-hand sides, COO row, column, value) with global cut rows.
        self.blocks: list[tuple[np.ndarray, ...]] = []
        self.n_cuts = 0

    def levels(self, y: np.ndarray) -> np.ndarray:
        """``(u,)`` the deepest level at ``y``: the cost where the row's cumulative ``y`` reaches 1."""
        cum = np.cumsum(y[self.order], axis=1)
        return np.asarray(self.d_sorted[self.rows, np.argmax(cum >= 1.0 - 1e-9, axis=1)])

    def values(self, level: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(u,)`` right-hand sides of the cuts at ``level`` evaluated at ``y``; at ``y``'s own levels,
        the rows' exact relaxed costs (the assignment subproblem's optimum)."""
        gain = np.maximum(level[:, None] - self.d_sorted, 0.0) * y[self.order]
        return np.asarray(level - gain.sum(axis=1))

    def add(self, level: np.ndarray, y: np.ndarray, theta: np.ndarray | None) -> int:
        """Add the cuts at ``level`` of the groups whose value at ``y`` exceeds ``theta`` (all groups
        when ``theta`` is None); returns how many."""
        at = np.bincount(self.group, weights=self.values(level, y), minlength=self.g)
        if theta is None:
            cut_groups = np.arange(self.g)
        else:
            cut_groups = np.flatnonzero(at > theta + 1e-9 * np.maximum(np.abs(at), 1.0))
        if cut_groups.size == 0:
            return 0
        cut_of = np.full(self.g, -1)
        cut_of[cut_groups] = self.n_cuts + np.arange(cut_groups.size)
        rows = np.flatnonzero(cut_of[self.group] >= 0)
        ds = self.d_sorted[rows]
        r, q = np.nonzero(ds < level[rows, None])
        rhs = np.bincount(self.group, weights=level, minlength=self.g)[cut_groups]
        self.blocks.append((cut_of, level.copy(), cut_groups, rhs, cut_of[self.group[rows[r]]],
                            self.order[rows[r], q], level[rows[r]] - ds[r, q]))
        self.n_cuts += cut_groups.size
        return int(cut_groups.size)

    def solve_lp(self, time_left: float) -> Any:
        """The master LP by HiGHS' dual simplex (the right method after adding cuts)."""
        theta_of = np.concatenate([b[2] for b in self.blocks])
        rhs = np.concatenate([b[3] for b in self.blocks])
        rows = np.concatenate([np.concatenate([b[4] for b in self.blocks]), np.arange(self.n_cuts)])
        cols = np.concatenate([np.concatenate([b[5] for b in self.blocks]), self.m + theta_of])
        vals = np.concatenate([np.concatenate([b[6] for b in self.blocks]), np.ones(self.n_cuts)])
        # Rows of one group on the same site are summed by the conversion; negated for A_ub x <= b_ub.
        a = sp.csr_matrix((-vals, (rows, cols)), shape=(self.n_cuts, self.m + self.g))
        bounds = np.c_[np.r_[self.lo, self.theta_low], np.r_[np.ones(self.m), np.full(self.g, np.inf)]]
        return linprog(np.r_[np.zeros(self.m), np.ones(self.g)], A_ub=a, b_ub=-rhs,
                       A_eq=np.r_[np.ones(self.m), np.zeros(self.g)][None, :], b_eq=[self.p], bounds=bounds,
                       method="highs-ds", options={"time_limit": max(0.1, time_left)})

    def multipliers(self, res: Any) -> np.ndarray:
        """Lagrangian multipliers from the master's duals: ``lambda_i = sum_c mu_c D_ic`` over the cuts of
        row ``i``'s group (plus the bound on theta as the cut at the rows' lowest levels). At the
        relaxation's optimum they are optimal: by concavity of ``min(0, c - D)`` in ``D`` the Lagrangian
        value is at least the LP value, and by weak duality at most."""
        mu = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
        mu_low = np.maximum(np.asarray(res.lower.marginals)[self.m:], 0.0)
        lam = mu_low[self.group] * self.d_sorted[:, 0]
        for block in self.blocks:
            cut = block[0][self.group]
            lam = lam + np.where(cut >= 0, mu[np.maximum(cut, 0)] * block[1], 0.0)
        return np.asarray(lam)

    def relaxation(self, y0: np.ndarray, upper: float, start: float, time_limit_s: float
                   ) -> tuple[np.ndarray, float | None, int, np.ndarray | None]:
        """Solve the relaxation by in-out stabilised cutting planes (Ben-Ameur & Neto 2007).

        Returns (Lagrangian multipliers ``(u,)``, the master's LP bound or ``None``, rounds, the last
        master's site vector ``(m,)`` or ``None``). Without an LP answer the multipliers are the rows'
        costs at ``y0`` (valid, weaker).
        """
        y_master: np.ndarray | None = None
        lam = self.values(self.levels(y0), y0)
        self.add(self.levels(y0), y0, None)
        core = self.lo.copy()
        free = self.lo < 1.0
        core[free] += (self.p - self.lo.sum()) / free.sum()
        core = 0.5 * (core + y0)  # an interior point leaning to the heuristic's sites
        alpha, lp_upper, lp_lower = 0.5, upper, -math.inf
        rounds = 0
        while rounds < _LP_ROUNDS and _time_left(start, time_limit_s) > 0:
            rounds += 1
            res = self.solve_lp(_time_left(start, time_limit_s))
            if res.status != 0 or res.x is None:
                break
            lam = self.multipliers(res)
            lp_lower = max(lp_lower, float(res.fun))
            y_master = np.clip(res.x[:self.m], self.lo, 1.0)
            theta = res.x[self.m:]
            if lp_upper - lp_lower <= 1e-9 * max(abs(lp_upper), 1.0):
                break
            y_sep = alpha * core + (1.0 - alpha) * y_master
            level = self.levels(y_sep)
            lp_upper = min(lp_upper, float(self.values(level, y_sep).sum()))
            if self.add(level, y_master, theta) == 0:
                # The stabilised point no longer cuts the master's: separate at the master's point.
                alpha = 0.0
                level = self.levels(y_master)
                lp_upper = min(lp_upper, float(self.values(level, y_master).sum()))
                if self.add(level, y_master, theta) == 0:
                    break
            core = 0.5 * (core + y_master)
        return lam, (None if not math.isfinite(lp_lower) else lp_lower), rounds, y_master


@dataclass
class _Node:
    lam: np.ndarray  # multipliers to start from (the parent's best)
    free: np.ndarray  # candidate columns still undecided
    ones: np.ndarray  # columns chosen at this node
    bound: float  # the parent's bound (valid for this node)


class _LagrangianTree:
    """Depth-first branch-and-bound on the sites with the Lagrangian bound of the assignment constraints.

    At a node with chosen set ``O`` and undecided set ``F``, ``k = p - |O|``,
    ``L(lambda) = sum_i lambda_i + sum_{j in O} rho_j + (sum of the k smallest rho_j over F)``,
    ``rho_j = sum_i min(0, c_ij - lambda_i)``, is a lower bound for every completion. Penalty tests
    (Beasley 1993): an undecided site ``j`` outside the ``k`` smallest costs at least
    ``L + rho_j - rho_[k]`` when opened, one inside at least ``L - rho_j + rho_[k+1]`` when closed.
    """

    def __init__(self, d: np.ndarray, p: int, fixed: np.ndarray, upper: float, best_set: np.ndarray,
                 integral: bool) -> None:
        self.d = d
        self.p = p
        self.fixed = np.asarray(fixed, dtype=np.int64)
        self.upper = upper
        self.best_set = np.sort(best_set)
        self.integral = integral
        self.nodes = 0
        self.steps = 0
        self.fixed_at_root = 0
        self.complete = False

    def _target(self) -> float:
        """Prune a node whose bound exceeds this: it cannot hold a solution better than the incumbent
        by the proof's step (1 for integer data, a relative 1e-8 otherwise), less float rounding."""
        scale = max(abs(self.upper), 1.0)
        step = 1.0 if self.integral else _FLOAT_PROOF * scale
        return self.upper - step + 1e-9 * scale

    def _incumbent(self, chosen: np.ndarray, near: np.ndarray | None = None) -> None:
        near = self.d[:, chosen] if near is None else near
        value = float(near.min(axis=1).sum())
        if value < self.upper:
            self.upper, self.best_set = value, np.sort(chosen)

    def run(self, lam: np.ndarray, start: float, time_limit_s: float) -> float:
        """Explore the tree; returns the proven lower bound (the incumbent's value minus the proof step
        when complete)."""
        free = np.setdiff1d(np.arange(self.d.shape[1]), self.fixed)
        stack = [_Node(lam, free, self.fixed, -math.inf)]
        root = True
        while stack:
            if _time_left(start, time_limit_s) <= 0:
                return min(min(node.bound for node in stack), self.upper)
            node = stack.pop()
            if node.bound > self._target():
                continue
            stack.extend(self._process(node, root))
            root = False
        self.complete = True
        if self.integral:
            return self.upper
        return self.upper - _FLOAT_PROOF * max(abs(self.upper), 1.0)

    def _lagrangian(self, lam: np.ndarray, d_free: np.ndarray, rho_ones: float, k: int
                    ) -> tuple[float, np.ndarray, np.ndarray]:
        rho = np.minimum(d_free - lam[:, None], 0.0).sum(axis=0)
        pick = np.argpartition(rho, k - 1)[:k] if k < rho.size else np.arange(rho.size)
        return float(lam.sum() + rho_ones + rho[pick].sum()), rho, pick

    def _process(self, node: _Node, root: bool) -> list[_Node]:
        """Bound, test and branch one node; returns its children (to be pushed in this order)."""
        self.nodes += 1
        d, ones, free = self.d, node.ones, node.free
        k = self.p - ones.size
        if k == 0 or free.size == k:  # a leaf: the choice is made
            self._incumbent(np.r_[ones, free] if k else ones)
            return []
        d_free = d[:, free]
        d_ones = d[:, ones]
        lam = node.lam.copy()
        best_bound, best_lam = -math.inf, lam
        factor, stall = 1.0, 0
        for _ in range(_ROOT_STEPS if root else _NODE_STEPS):
            self.steps += 1
            rho_ones = float(np.minimum(d_ones - lam[:, None], 0.0).sum())
            bound, rho, pick = self._lagrangian(lam, d_free, rho_ones, k)
            if bound > best_bound:
                best_bound, best_lam, stall = bound, lam, 0
            else:
                stall += 1
                if stall >= _STALL_STEPS:
                    factor, stall = 0.5 * factor, 0
            if best_bound > self._target():
                return []
            # The Lagrangian choice is a solution: it improves the incumbent now and then.
            chosen = np.r_[ones, free[pick]]
            near = np.c_[d_ones, d_free[:, pick]]
            self._incumbent(chosen, near)
            # Subgradient of the relaxed assignment constraints: 1 - (chosen sites cheaper than lambda_i).
            g = 1.0 - (near < lam[:, None]).sum(axis=1)
            norm = float(g @ g)
            if norm == 0.0 or factor < 1e-3:
                break
            lam = lam + factor * (self.upper - bound) / norm * g
        lam = best_lam
        rho_ones = float(np.minimum(d_ones - lam[:, None], 0.0).sum())
        bound, rho, pick = self._lagrangian(lam, d_free, rho_ones, k)
        target = self._target()
        if bound > target:
            return []
        # Penalty tests: sites that cannot be opened (closed) in any better solution are closed (opened).
        ranked = np.sort(rho)
        kth, next_ = ranked[k - 1], (ranked[k] if k < rho.size else math.inf)
        picked = np.zeros(free.size, dtype=bool)
        picked[pick] = True
        close = ~picked & (bound + rho - kth > target)
        open_ = picked & (bound - rho + next_ > target)
        if root:
            self.fixed_at_root = int(close.sum() + open_.sum())
        ones = np.r_[ones, free[open_]]
        keep = ~(close | open_)
        free, rho, picked = free[keep], rho[keep], picked[keep]
        k = self.p - ones.size
        if k <= 0 or free.size <= k:
            if k >= 0 and free.size >= k:
                return [_Node(lam, free, ones, bound)]
            return []  # the tests left no feasible completion: nothing better below
        # Branch on the picked site whose closing raises the bound most (the smallest rho): its "closed"
        # child is the likeliest to be pruned at once, its "open" child is explored first.
        candidates = np.flatnonzero(picked)
        if candidates.size == 0:
            candidates = np.arange(free.size)
        j = int(candidates[np.argmin(rho[candidates])])
        rest = np.delete(free, j)
        return [_Node(lam, rest, ones, bound), _Node(lam, rest, np.r_[ones, free[j]], bound)]


# ============================================================================================ baseline


def _pmedian_benders(cost: np.ndarray, w: np.ndarray, p: int, fixed: np.ndarray, start: float,
                     time_limit_s: float, stats: dict[str, Any]
                     ) -> tuple[np.ndarray, float | None, str, dict[str, Any]]:
    """The baseline: Benders with aggregated cuts; returns (chosen columns, lower bound, status, counters)."""
    m = cost.shape[1]
    d, constant, u = _merge_rows(cost, w)
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


def _pmedian_heuristic(d: np.ndarray, p: int, fixed: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Greedy add (or ``start``: ``p`` columns including ``fixed``) then vertex substitution on the
    (weighted) cost matrix; returns a 0/1 vector."""
    n, m = d.shape
    chosen = [int(j) for j in (fixed if start is None else start)]
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


