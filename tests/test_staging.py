"""Staging placement: matrix-level models against brute force and hand-solved cases; Boston wrappers."""

from __future__ import annotations

import itertools
import json
import types

import numpy as np
import pytest

from routing import locate as lm
from routing import staging as st
from routing.errors import InvalidInput, NotFound

# ============================================================================================ brute force


def _subsets(m: int, p: int, fixed_in: list[int], fixed_out: list[int]):
    allowed = [j for j in range(m) if j not in fixed_out]
    for s in itertools.combinations(allowed, p):
        if set(fixed_in) <= set(s):
            yield list(s)


def _instance(rng: np.random.Generator):
    n = int(rng.integers(4, 30))
    m = int(rng.integers(2, 8))
    cost = rng.uniform(0.0, 10.0, (n, m))
    weights = rng.integers(0, 6, n).astype(float)
    weights[0] += 1.0  # never all zero
    fixed_in = [int(rng.integers(m))] if rng.random() < 0.3 else []
    fixed_out = [j for j in [int(rng.integers(m))] if j not in fixed_in and rng.random() < 0.3]
    allowed = m - len(fixed_out)
    p = int(rng.integers(max(1, len(fixed_in)), allowed + 1))
    return cost, weights, p, fixed_in, fixed_out


@pytest.mark.parametrize("seed", range(30))
def test_mclp_backup_pmedian_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    cost, w, p, f_in, f_out = _instance(rng)
    cover = cost <= rng.uniform(2.0, 6.0)
    q = float(rng.uniform(0.05, 0.8))
    subsets = list(_subsets(cost.shape[1], p, f_in, f_out))
    best_mclp = max(w[cover[:, s].any(axis=1)].sum() for s in subsets)
    best_backup = max((w * (1 - q ** cover[:, s].sum(axis=1))).sum() for s in subsets)
    best_pmed = min((w * cost[:, s].min(axis=1)).sum() for s in subsets)

    r = lm.mclp(cover, w, p, fixed_in=f_in, fixed_out=f_out)
    assert r.optimal and r.objective == pytest.approx(best_mclp)
    assert len(r.chosen) == p and set(f_in) <= set(r.chosen) and not set(f_out) & set(r.chosen)

    r = lm.backup_coverage(cover, w, p, busy_fraction=q, fixed_in=f_in, fixed_out=f_out)
    assert r.optimal and r.objective == pytest.approx(best_backup)
    assert len(r.chosen) == p and set(f_in) <= set(r.chosen) and not set(f_out) & set(r.chosen)

    r = lm.p_median(cost, w, p, fixed_in=f_in, fixed_out=f_out)
    assert r.optimal and r.objective == pytest.approx(best_pmed, rel=1e-9)
    assert r.bound is not None and r.bound <= r.objective * (1 + 1e-7)
    assert len(r.chosen) == p and set(f_in) <= set(r.chosen) and not set(f_out) & set(r.chosen)
    # The assignment is each row's nearest chosen candidate.
    assert np.allclose(cost[np.arange(len(cost)), r.assignment], cost[:, r.chosen].min(axis=1))


@pytest.mark.parametrize("seed", range(30))
def test_lscp_matches_brute_force_and_covers_everything(seed):
    rng = np.random.default_rng(100 + seed)
    cost, w, _, f_in, f_out = _instance(rng)
    cover = cost <= rng.uniform(2.0, 6.0)
    m = cost.shape[1]
    allowed = [j for j in range(m) if j not in f_out]
    need = w > 0
    if not cover[np.ix_(need, allowed)].any(axis=1).all():
        with pytest.raises(InvalidInput, match="infeasible"):
            lm.lscp(cover, w, fixed_in=f_in, fixed_out=f_out)
        r = lm.lscp(cover, w, fixed_in=f_in, fixed_out=f_out, uncoverable="ignore")
        coverable = need & cover[:, allowed].any(axis=1)
        assert cover[np.ix_(coverable, r.chosen)].any(axis=1).all()
        return
    best = min(k for k in range(1, len(allowed) + 1)
               if any(cover[np.ix_(need, s)].any(axis=1).all() for s in _subsets(m, k, f_in, f_out)))
    r = lm.lscp(cover, w, fixed_in=f_in, fixed_out=f_out)
    assert r.optimal and r.objective == best == len(r.chosen)
    assert cover[np.ix_(need, r.chosen)].any(axis=1).all()
    assert set(f_in) <= set(r.chosen) and not set(f_out) & set(r.chosen)


def test_pmedian_with_unreachable_pairs_matches_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(10):
        cost = rng.uniform(0, 10, (15, 6))
        cost[rng.random(cost.shape) < 0.3] = np.inf
        cost[:, 0] = rng.uniform(0, 10, 15)  # candidate 0 reaches everyone: always feasible
        w = rng.uniform(0.5, 3.0, 15)
        best = min((w * cost[:, s].min(axis=1)).sum() for s in _subsets(6, 2, [], []))
        r = lm.p_median(cost, w, 2)
        assert r.optimal and r.objective == pytest.approx(best)


# ============================================================================================ hand-solved

# Demand 0..3 with weights 5, 3, 2, 1; candidate 0 covers {0, 1}, 1 covers {1, 2, 3}, 2 covers {3}.
_COVER = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1]], dtype=bool)
_W = np.array([5.0, 3.0, 2.0, 1.0])


def test_mclp_hand_solved():
    r = lm.mclp(_COVER, _W, 1)
    assert r.chosen == [0] and r.objective == 8.0 and r.covered_share == pytest.approx(8 / 11)
    r = lm.mclp(_COVER, _W, 2)
    assert r.chosen == [0, 1] and r.objective == 11.0
    r = lm.mclp(_COVER, _W, 1, fixed_out=[0])
    assert r.chosen == [1] and r.objective == 6.0
    r = lm.mclp(_COVER, _W, 2, fixed_in=[2])
    assert r.chosen == [0, 2] and r.objective == 9.0
    assert r.to_dict()["status"] == "optimal" and json.dumps(r.to_dict())


def test_pmedian_hand_solved():
    # Demand at 0, 1 and 10 on a line, candidates at the same points, cost = distance.
    pos = np.array([0.0, 1.0, 10.0])
    cost = np.abs(pos[:, None] - pos[None, :])
    r = lm.p_median(cost, [3.0, 1.0, 1.0], 1)  # site 0: 0+1+10 = 11; site 1: 3+0+9 = 12; site 2: 39
    assert r.chosen == [0] and r.objective == pytest.approx(11.0)
    r = lm.p_median(cost, [2.0, 1.0, 1.0], 2)  # {0, 2}: 0+1+0 = 1 beats {1, 2}: 2+0+0 = 2
    assert r.chosen == [0, 2] and r.objective == pytest.approx(1.0)
    assert r.assignment.tolist() == [0, 0, 2]
    r = lm.p_median(cost, [2.0, 1.0, 1.0], 2, fixed_in=[1])  # {1, 2}: 2
    assert r.chosen == [1, 2] and r.objective == pytest.approx(2.0)


def test_lscp_hand_solved():
    # A covers {0,1,2}, B {2,3}, C {3,4}, D {0,4}: only A covers 1, then C is the one site for 3 and 4.
    cover = np.zeros((5, 4), dtype=bool)
    for j, rows in enumerate([(0, 1, 2), (2, 3), (3, 4), (0, 4)]):
        cover[list(rows), j] = True
    r = lm.lscp(cover)
    assert r.chosen == [0, 2] and r.objective == 2 and r.covered_share == 1.0
    r = lm.lscp(cover, fixed_in=[3])  # D forced: A still needed for 1, and 3 needs B or C
    assert r.objective == 3 and {0, 3} <= set(r.chosen)
    # Weight 0 on demand 1 frees the model from A: {C, D} covers 0, 3, 4 but not 2 -> B or A needed.
    r = lm.lscp(cover, [1, 0, 1, 1, 1])
    assert r.objective == 2 and cover[np.ix_([0, 2, 3, 4], r.chosen)].any(axis=1).all()


def test_backup_hand_solved():
    # Point 0 (weight a) covered by c0 and c1, point 1 (weight 6) only by c2; q = 0.5, p = 2.
    cover = np.array([[1, 1, 0], [0, 0, 1]], dtype=bool)
    r = lm.backup_coverage(cover, [10.0, 6.0], 2, busy_fraction=0.5)
    assert r.chosen in ([0, 2], [1, 2]) and r.objective == pytest.approx(10 * 0.5 + 6 * 0.5)
    r = lm.backup_coverage(cover, [4.0, 1.0], 2, busy_fraction=0.5)  # double cover: 4 * 0.75 = 3 > 2.5
    assert r.chosen == [0, 1] and r.objective == pytest.approx(3.0)
    assert r.covered_twice_weight == 4.0
    # Two teams may share a site: both at c0 gives 4 * 0.75 too, with one site.
    r = lm.backup_coverage(cover[:, :1], [4.0, 1.0], 2, busy_fraction=0.5, max_per_site=2)
    assert r.chosen == [0] and r.teams_per_site == [2] and r.objective == pytest.approx(3.0)
    # q = 0: MEXCLP is MCLP.
    assert lm.backup_coverage(_COVER, _W, 1, busy_fraction=0.0).objective == lm.mclp(_COVER, _W, 1).objective


def test_merging_identical_rows_keeps_the_answer():
    rng = np.random.default_rng(3)
    base = rng.random((6, 5)) < 0.4
    cover = np.repeat(base, 50, axis=0)  # 300 rows, 6 distinct
    w = rng.uniform(0.1, 2.0, 300)
    r = lm.mclp(cover, w, 2)
    assert r.stats["merged_rows"] <= 6
    best = max(w[cover[:, s].any(axis=1)].sum() for s in _subsets(5, 2, [], []))
    assert r.objective == pytest.approx(best)


# ============================================================================================ errors


@pytest.mark.parametrize("call, message", [
    (lambda: lm.mclp(_COVER, _W, 4), "larger than the 3 candidate"),
    (lambda: lm.mclp(_COVER, _W, 2, fixed_out=[0, 1]), "larger than the 1 candidate"),
    (lambda: lm.mclp(_COVER, _W, 0), "at least 1"),
    (lambda: lm.mclp(_COVER, _W, 1.5), "integer"),
    (lambda: lm.mclp(np.zeros((0, 3), bool), [], 1), "empty demand"),
    (lambda: lm.mclp(np.zeros((3, 0), bool), [1, 1, 1], 1), "no candidate"),
    (lambda: lm.mclp(_COVER, [0, 0, 0, 0], 1), "sum to zero"),
    (lambda: lm.mclp(_COVER, [1, np.nan, 1, 1], 1), "NaN"),
    (lambda: lm.mclp(_COVER, [1, -1, 1, 1], 1), "non-negative"),
    (lambda: lm.mclp(_COVER, [1, 1], 1), "one value per demand row"),
    (lambda: lm.mclp(_COVER * 0.5, _W, 1), "boolean or 0/1"),
    (lambda: lm.mclp(np.ones(3), [1, 1, 1], 1), "2-D"),
    (lambda: lm.mclp(_COVER, _W, 1, fixed_in=[0], fixed_out=[0]), "both forced in and excluded"),
    (lambda: lm.mclp(_COVER, _W, 1, fixed_in=[0, 1]), "forced in but p = 1"),
    (lambda: lm.mclp(_COVER, _W, 1, fixed_in=[5]), "out of range"),
    (lambda: lm.mclp(_COVER, _W, 1, fixed_out=[0, 1, 2]), "every candidate is excluded"),
    (lambda: lm.p_median(np.array([[1.0, np.nan]]), [1], 1), "NaN"),
    (lambda: lm.p_median(np.array([[1.0, -2.0]]), [1], 1), "non-negative"),
    (lambda: lm.p_median(np.array([[np.inf, np.inf], [1.0, 2.0]]), [1, 1], 1), "cannot be reached"),
    (lambda: lm.p_median(np.array([[1.0, np.inf], [np.inf, 1.0]]), [1, 1], 1), "no set of 1"),
    (lambda: lm.lscp(np.array([[1, 0], [0, 0]], bool)), "LSCP is infeasible"),
    (lambda: lm.lscp(np.array([[1, 0], [0, 1]], bool), fixed_out=[1]), "LSCP is infeasible"),
    (lambda: lm.backup_coverage(_COVER, _W, 1, busy_fraction=1.0), "busy_fraction"),
    (lambda: lm.backup_coverage(_COVER, _W, 1, max_per_site=0), "max_per_site"),
    (lambda: lm.solve("center", _COVER, _W, 1), "unknown model"),
    (lambda: lm.coverage_matrix([[1.0, np.nan]], 2.0), "NaN"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(InvalidInput, match=message):
        call()


def test_zero_weight_rows_need_no_coverage_and_do_not_count():
    cover = np.array([[1, 0], [0, 1]], dtype=bool)
    assert lm.lscp(cover, [1, 0]).chosen == [0]
    r = lm.mclp(cover, [0, 1], 1)
    assert r.chosen == [1] and r.covered_share == 1.0


# ============================================================================================ Boston


@pytest.fixture(scope="module")
def problem(boston, places):
    return st.build_problem(boston, places)


def test_candidates_are_the_real_sites(problem):
    # SOURCES.md: 12 police stations (HQ + 11 districts), 35 BFD sites, 30 hospitals, 37 BCYF centres,
    # all inside the city, so every one is on the network.
    kinds = [s.kind for s in problem.sites]
    assert len(kinds) == 12 + 35 + 30 + 37 and not problem.skipped
    assert (kinds.count("police"), kinds.count("fire"), kinds.count("hospital"), kinds.count("community")) == (
        12, 35, 30, 37)
    assert problem.times.shape == (11_245, len(problem.sites))  # Boston's SCC without busways (test_network_boston)
    assert np.isfinite(problem.times).all()


def test_covered_share_grows_with_sites_and_standard(problem):
    # Short standards keep these solves small; the 8-minute, 10-site instance is in bench/.
    by_p = [st.plan_staging(problem, "mclp", minutes=3, p=p).covered_share for p in (2, 4, 8)]
    assert by_p[0] < by_p[1] < by_p[2] < 1.0
    by_t = [st.plan_staging(problem, "mclp", minutes=t, p=8).covered_share for t in (2, 3, 4)]
    assert by_t[0] < by_t[1] < by_t[2] < 1.0
    # An optimal MCLP with p sites covers at least what any p of the candidates cover, e.g. a greedy pick.
    cover, w = problem.times <= 180, problem.weights
    covered, greedy = np.zeros(len(cover), bool), []
    for _ in range(4):
        greedy.append(int(np.argmax(((cover & ~covered[:, None]) * w[:, None]).sum(axis=0))))
        covered |= cover[:, greedy[-1]]
    assert by_p[1] * w.sum() >= w[covered].sum() - 1e-6


def test_pmedian_on_boston_is_optimal_and_locally_optimal(problem):
    plan = st.plan_staging(problem, "pmedian", minutes=8, p=6)
    assert plan.status == "optimal" and plan.gap is not None and plan.gap <= lm.OPTIMALITY_TOLERANCE
    t, w = problem.times, problem.weights
    idx = [problem.index(s.site_id) for s in plan.sites]
    value = (w * t[:, idx].min(axis=1)).sum()
    assert plan.mean_eta_s == pytest.approx(value / w.sum())
    # No single swap of a chosen site for another improves it (a necessary condition, checked directly).
    for k in range(len(idx)):
        rest = t[:, idx[:k] + idx[k + 1:]].min(axis=1)
        swapped = (w[:, None] * np.minimum(t, rest[:, None])).sum(axis=0)
        assert swapped.min() >= value - 1e-6 * value
    # Demand served sums to the total; fewer sites cannot be faster.
    assert sum(s.demand_served for s in plan.sites) == pytest.approx(w.sum())
    assert st.plan_staging(problem, "pmedian", minutes=8, p=3).mean_eta_s > plan.mean_eta_s


def test_lscp_on_boston_covers_all_coverable_demand(problem):
    with pytest.raises(InvalidInput):
        st.plan_staging(problem, "lscp", minutes=2)  # no set of sites reaches all of Boston in 2 min
    plan = st.plan_staging(problem, "lscp", minutes=6, allow_uncoverable=True)
    cover = problem.times <= 360
    coverable = (problem.weights > 0) & cover.any(axis=1)
    idx = [problem.index(s.site_id) for s in plan.sites]
    assert cover[np.ix_(coverable, idx)].any(axis=1).all()
    assert plan.p == len(idx) and plan.status == "optimal"


def test_fixed_excluded_and_comparison_with_today(problem, boston):
    from routing.fleet import load_fleet

    today = st.today_sites(load_fleet(), "co_response")
    plan = st.plan_staging(problem, "mclp", minutes=6, p=len(today) + 1, fixed=["police:B2"],
                           exclude=["police:A1"], today=today)
    ids = [s.site_id for s in plan.sites]
    assert "police:B2" in ids and "police:A1" not in ids
    assert [s.fixed for s in plan.sites if s.site_id == "police:B2"] == [True]
    # Today's coverage recomputed independently: nearest of today's bases by network + off-network leg,
    # each base leaving from the end(s) of its street segment (phantom node).
    eta = np.full(boston.n_nodes, np.inf)
    for s in today:
        snap = boston.snap(s.lat, s.lon)
        for x, t in zip(*boston.snap_exits(snap)[:2], strict=True):
            eta = np.minimum(eta, boston.travel_times_from(int(x)) + t + snap.time_s)
    w = problem.weights
    c = plan.comparison
    assert c.today_covered_share == pytest.approx(w[eta <= 360].sum() / w.sum())
    assert c.same_count["p"] == len(today) and c.same_count["covered_share"] >= c.today_covered_share - 1e-12
    d = plan.to_dict()
    for key in ("sites", "objective", "covered_share", "status", "gap", "solve_s"):
        assert key in d
    assert set(d["sites"][0]) >= {"id", "name", "lat", "lon", "demand_served"}
    json.dumps(d, allow_nan=False)
    with pytest.raises(NotFound):
        st.plan_staging(problem, "mclp", minutes=6, p=3, fixed=["police:Z9"])
    with pytest.raises(InvalidInput, match="larger than"):
        st.plan_staging(problem, "mclp", minutes=6, p=500)


def test_progress_of_building_and_solving(problem, boston, places):
    from routing.fleet import load_fleet

    steps = []
    demand = types.SimpleNamespace(weights=problem.weights, description=problem.demand_description)
    small = st.build_problem(boston, places, demand=demand, sites=problem.sites[:70],
                             progress=lambda f, label: steps.append((f, label)))
    assert np.array_equal(small.times, problem.times[:, :70])  # blocks of searches, the same times
    fractions = [f for f, _ in steps]
    assert len(fractions) == 4 and fractions == sorted(fractions) and fractions[-1] == 1.0  # 0, 3 blocks
    steps.clear()
    today = st.today_sites(load_fleet(), "co_response")
    st.plan_staging(problem, "mclp", minutes=6, p=3, today=today, progress=lambda f, label: steps.append((f, label)))
    assert steps == [(0.0, "staging: mclp"), (0.5, "staging: mclp"), (1.0, "staging: mclp")]


def test_planner_candidates_csv(tmp_path, places):
    f = tmp_path / "cands.csv"
    f.write_text("id,name,lat,lon\nnew:1,Parking lot,42.3300,-71.0800\nnew:2,Church,42.2900,-71.0700\n")
    sites = st.candidate_sites(places, candidates_csv=f)
    assert len(sites) == 114 + 2 and sites[-1].site_id == "new:2" and sites[-1].kind == "planner"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,lat,lon\nx,X,42.3,oops\n")
    with pytest.raises(InvalidInput, match="line 2"):
        st.load_candidates_csv(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("id,name,lat,lon\npolice:B2,Again,42.3,-71.08\n")
    with pytest.raises(InvalidInput, match="already a site id"):
        st.candidate_sites(places, candidates_csv=dup)
    with pytest.raises(InvalidInput, match="missing column"):
        missing = tmp_path / "m.csv"
        missing.write_text("id,lat,lon\n")
        st.load_candidates_csv(missing)
