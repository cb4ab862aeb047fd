"""Location models at matrix level: MCLP, p-median, LSCP and backup coverage (MEXCLP).

Like spopt's ``locate`` package: each model is a function of a demand x candidate matrix (the
``from_cost_matrix`` shape), with no knowledge of Boston; :mod:`routing.staging` builds the matrices for
the city.

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
- MCLP and MEXCLP pick their formulation per instance: up to 120,000 coefficients the textbook model on
  merged rows (Church & ReVelle 1974; Daskin 1983 for MEXCLP), solved by SCIP, which on lattices and
  Boston is as fast as it gets (``bench/bench_mclp.py``: at most 1.37x the textbook model's time over
  32 instances); above that, Benders decomposition over the candidate variables alone
  (in the spirit of Fischetti, Ljubic & Sinnl, Management Science 2017). Each merged row's value is a
  piecewise-linear function of the site vector (concave for coverage, convex for cost) whose supporting
  cuts come in closed form from NumPy; the master holds the candidate variables and one value variable
  per group of rows. The linear relaxation is solved first by in-out stabilised cutting planes (GLOP),
  then the integer master (SCIP) is re-cut at each of its solutions until its bound meets the best
  solution's true value. The usual formulations have a variable per row and coverage level (MEXCLP) or
  per demand x candidate pair (p-median: 1.3 million for Boston) and spend seconds to minutes in the
  root LP alone.
- p-median: the LP relaxation of Elloumi's radius formulation by Benders with one closed-form cut per
  row (Duran-Mateluna, Ales & Elloumi, EJOR 2023; HiGHS dual simplex), the LP rounded and improved by
  vertex substitution, then a depth-first Lagrangian branch-and-bound on the sites whose bounds are
  computed from the data, with Beasley's (1993) penalty tests at every node. All 40 OR-Library
  instances (pmed1-40) are proven at their published optima, the slowest in about 15 s on one core
  (``bench/bench_pmedian.py``).
- LSCP is a set-cover integer program on the merged rows, solved directly by SCIP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routing.errors import InvalidInput
from routing.locate._base import MODELS, OPTIMALITY_TOLERANCE, PlacementResult, coverage_matrix
from routing.locate.coverage import backup_coverage, lscp, mclp
from routing.locate.p_median import p_median

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["MODELS", "OPTIMALITY_TOLERANCE", "PlacementResult", "backup_coverage", "coverage_matrix", "lscp", "mclp",
           "p_median", "solve"]


def solve(model: str, matrix: npt.ArrayLike, weights: npt.ArrayLike | None, p: int | None = None, **kwargs: Any
          ) -> PlacementResult:
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


