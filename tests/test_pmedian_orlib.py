"""p-median against independent truth: OR-Library's published optima (Beasley 1990) and brute force.

The instances and their optimal values are in bench/data/orlib/ (README.txt there cites the source);
bench/bench_pmedian.py runs all 40. These few solve in seconds in total.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

from routing import locate as lm
from routing.locate.p_median import _p_median_baseline

ORLIB = Path(__file__).resolve().parent.parent / "bench" / "data" / "orlib"


def _load(name: str, repeated: str = "last") -> tuple[np.ndarray, int]:
    """Shortest-path distances of an OR-Library pmed graph; a repeated edge takes its last cost
    (Beasley's convention) or, with ``repeated="min"``, its smallest."""
    with gzip.open(ORLIB / f"{name}.txt.gz", "rt") as f:
        tokens = f.read().split()
    n, n_edges, p = int(tokens[0]), int(tokens[1]), int(tokens[2])
    last: dict[tuple[int, int], int] = {}
    for i, j, c in np.array(tokens[3:3 + 3 * n_edges], dtype=np.int64).reshape(n_edges, 3).tolist():
        key = (min(i, j) - 1, max(i, j) - 1)
        if i != j and (repeated == "last" or c < last.get(key, c + 1)):
            last[key] = c
    ij = np.array(list(last), dtype=np.int64)
    graph = sp.csr_matrix((np.array(list(last.values()), dtype=float), (ij[:, 0], ij[:, 1])), shape=(n, n))
    return shortest_path(graph, method="D", directed=False), p


def _published() -> dict[str, int]:
    rows = (line.split() for line in (ORLIB / "pmedopt.txt").read_text().splitlines())
    return {r[0]: int(r[1]) for r in rows if r and r[0].startswith("pmed")}


def test_all_forty_instances_and_optima_are_shipped():
    published = _published()
    assert len(published) == 40 and published["pmed1"] == 5819 and published["pmed40"] == 5128
    assert all((ORLIB / f"pmed{i}.txt.gz").is_file() for i in range(1, 41))


# pmed1 and pmed21: the relaxation is integral; pmed2, pmed6, pmed11: it is not, and the tree decides.
@pytest.mark.parametrize("name", ["pmed1", "pmed2", "pmed6", "pmed11", "pmed21"])
def test_orlib_published_optimum_proven(name):
    dist, p = _load(name)
    r = lm.p_median(dist, None, p)
    assert r.objective == _published()[name]  # exact: integer data, integer optimum
    assert r.optimal and r.bound == r.objective and r.gap == 0.0
    assert len(r.chosen) == p and r.objective == dist[:, r.chosen].min(axis=1).sum()
    assert np.array_equal(r.assignment, np.asarray(r.chosen)[np.argmin(dist[:, r.chosen], axis=1)])


def test_duplicate_edges_take_the_last_cost():
    # pmed1 repeats edges {19, 20} (22, then 30) and {30, 70} (5, then 74): only the last costs give
    # the published 5819; the smallest give 5718.
    assert lm.p_median(_load("pmed1", "min")[0], None, 5).objective == 5718
    assert lm.p_median(_load("pmed1")[0], None, 5).objective == 5819


def test_baseline_agrees_on_a_small_instance():
    dist, p = _load("pmed1")
    r = _p_median_baseline(dist, None, p)
    assert r.optimal and r.objective == 5819


def _brute(cost, w, p, fixed_in, fixed_out):
    allowed = [j for j in range(cost.shape[1]) if j not in fixed_out]
    return min((w * cost[:, list(s)].min(axis=1)).sum() for s in itertools.combinations(allowed, p)
               if set(fixed_in) <= set(s))


@pytest.mark.parametrize("seed", range(12))
def test_integer_costs_with_fixed_sites_match_brute_force(seed):
    # Integer data takes the integer proof; clustered points give the relaxation a gap, so the
    # branch-and-bound and its penalty tests run, with forced and excluded sites.
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(15, 40)), int(rng.integers(6, 12))
    pts, sites = rng.integers(0, 50, (n, 2)), rng.integers(0, 50, (m, 2))
    cost = np.abs(pts[:, None, :] - sites[None, :, :]).sum(axis=2).astype(float)
    w = rng.integers(1, 5, n).astype(float)
    fixed_in = [int(rng.integers(m))] if seed % 3 == 0 else []
    fixed_out = [j for j in [int(rng.integers(m))] if j not in fixed_in] if seed % 2 == 0 else []
    p = int(rng.integers(max(2, len(fixed_in)), 5))
    r = lm.p_median(cost, w, p, fixed_in=fixed_in, fixed_out=fixed_out)
    assert r.optimal and r.objective == _brute(cost, w, p, fixed_in, fixed_out) and r.bound == r.objective
    assert set(fixed_in) <= set(r.chosen) and not set(fixed_out) & set(r.chosen) and len(r.chosen) == p


def test_many_rows_use_grouped_value_variables_and_stay_exact():
    # Over 2,000 distinct rows: the relaxation sums the rows nearest each site (the city-sized shape).
    rng = np.random.default_rng(7)
    cost = rng.uniform(0.0, 600.0, (2500, 9))
    w = rng.uniform(0.5, 3.0, 2500)
    r = lm.p_median(cost, w, 3)
    assert r.stats["merged_rows"] == 2500 and r.optimal
    assert r.objective == pytest.approx(_brute(cost, w, 3, [], []), rel=1e-12)
