"""Shared parts of the location models: results, input checks, the MIP wrapper and Benders."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from routing.errors import InvalidInput

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

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

    def to_frame(self) -> pd.DataFrame:
        """One row per chosen candidate: ``candidate`` (its column in the matrix) and ``teams`` there.

        Returns
        -------
        pandas.DataFrame
            Shape ``(len(chosen), 2)``, in the order of ``chosen`` (ascending column).
        """
        from routing._frames import frame

        teams = self.teams_per_site or [1] * len(self.chosen)
        return frame(({"candidate": int(j), "teams": int(t)} for j, t in zip(self.chosen, teams, strict=True)),
                     ("candidate", "teams"))

    def __repr__(self) -> str:
        covered = "" if self.covered_share is None else f", {self.covered_share:.1%} covered"
        gap = "" if self.gap is None else f", gap {self.gap:.2%}"
        return (f"<PlacementResult {self.model}: {self.p} sites{covered}, objective {self.objective:,.6g}, "
                f"{self.status}{gap}, {self.solve_s:.2f} s>")


# ============================================================================================ validation


@dataclass
class _Prepared:
    """Validated input: weights, allowed / fixed columns and the number still to choose."""

    weights: np.ndarray
    allowed: np.ndarray  # column indices that may be chosen (fixed_in included)
    fixed_in: np.ndarray  # sorted column indices
    p: int


def _as_matrix(matrix: npt.ArrayLike, name: str) -> np.ndarray:
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


def _as_coverage(coverage: npt.ArrayLike) -> np.ndarray:
    arr = _as_matrix(coverage, "coverage")
    if arr.dtype == bool:
        return arr
    if not np.isin(arr, (0.0, 1.0)).all():
        raise InvalidInput("coverage must be boolean or 0/1 (build it with coverage_matrix(cost, limit))",
                           field="coverage")
    return arr.astype(bool)


def _as_cost(cost: npt.ArrayLike) -> np.ndarray:
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


def _prepare(n: int, m: int, weights: npt.ArrayLike | None, p: int | None, fixed_in: Iterable[int] | None,
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
        # The pybind11 stub spells the arrays numpy.ndarray[numpy.float64[m, 1]], which mypy reads as a
        # shape of float64: any 1-D float array is what the C++ side takes.
        helper.fill_model_from_sparse_data(lb.astype(float), ub.astype(float), obj.astype(float),  # type: ignore[arg-type]
                                           row_lb.astype(float), row_ub.astype(float),  # type: ignore[arg-type]
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


def coverage_matrix(cost: npt.ArrayLike, limit: float) -> np.ndarray:
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


@dataclass
class _BendersOutcome:
    y: np.ndarray
    value: float
    lower: float | None
    status: str
    counters: dict[str, Any]


def _benders(evaluate: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]], m: int, p: int,
             lb: np.ndarray, ub: np.ndarray, y0: np.ndarray, theta_lb: np.ndarray, start: float,
             time_limit_s: float) -> _BendersOutcome:
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


