"""Benchmark: staging placement and coverage on Boston.

- MCLP and p-median on the whole city: every network node a demand point (weights from the default
  demand surface), every real candidate site (police, fire, hospitals, community centres), p = 10,
  T = 8 min, solved to proven optimality by ``routing.locate``; the same instances solved by PySAL's
  ``spopt`` (PuLP + CBC, the usual Python tool) in the same run, with the time ratio.
- Coverage for one team type across the city (``routing.coverage.fleet_coverage``), against a naive
  baseline: one Dijkstra per team and a Python loop over neighborhoods.

Run: ``python bench/bench_planning.py [--p 10] [--minutes 8] [--spopt-time-limit 600] [--skip-spopt]``.
spopt's p-median builds one PuLP variable per node x site pair (1.3 million). Each spopt solve runs in a
forked child stopped after ``--spopt-time-limit`` seconds (CBC does not honour its own limit inside the
root LP); when it is stopped, the printed ratio is a lower bound.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, summary, timed  # noqa: E402

from routing import locate as lm  # noqa: E402
from routing import staging as st  # noqa: E402
from routing.coverage import default_demand, fleet_coverage  # noqa: E402
from routing.fleet import load_fleet  # noqa: E402
from routing.network import load_network  # noqa: E402
from routing.places import load_places  # noqa: E402


def _spopt_child(conn: Any, scratch: str, model: str, times: np.ndarray, weights: np.ndarray, p: int,
                 limit_s: float, time_limit: float) -> None:
    os.setpgrp()  # own process group, so a timeout can stop CBC (our grandchild) along with us
    os.environ["TMPDIR"] = os.environ["TMP"] = scratch  # PuLP's .mps/.sol files (450 MB for p-median),
    tempfile.tempdir = scratch  # removed by the parent whatever happens to this process
    import pulp
    from spopt.locate import MCLP, PMedian

    start = time.perf_counter()
    if model == "mclp":
        problem = MCLP.from_cost_matrix(times, weights, service_radius=limit_s, p_facilities=p)
    else:
        problem = PMedian.from_cost_matrix(times, weights, p_facilities=p)
    built = time.perf_counter() - start
    problem.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit))
    chosen = [j for j, v in enumerate(problem.fac_vars) if (v.value() or 0) > 0.5]
    conn.send((time.perf_counter() - start, built, pulp.LpStatus[problem.problem.status], chosen))


def _spopt(model: str, times: np.ndarray, weights: np.ndarray, p: int, limit_s: float, wall_limit: float
           ) -> tuple[float, str, list[int]]:
    """spopt on the same matrix, in a forked child with a hard wall-clock limit.

    CBC does not check its own time limit inside the root LP, so the limit is enforced from outside;
    the fork shares the matrix without copying. Returns (seconds, status, chosen columns).
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    scratch = tempfile.mkdtemp(prefix="bench-spopt-")
    start = time.perf_counter()
    proc = ctx.Process(target=_spopt_child, args=(child, scratch, model, times, weights, p, limit_s, wall_limit))
    proc.start()
    try:
        if parent.poll(wall_limit):
            try:
                elapsed, built, status, chosen = parent.recv()
            except EOFError:  # the child died (out of memory, an exception): report, do not guess
                proc.join()
                return time.perf_counter() - start, f"failed (exit code {proc.exitcode})", []
            proc.join()
            print(f"      (spopt built the PuLP model in {built:.1f} s)")
            return elapsed, status, chosen
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own group: it and its CBC process, nothing else
        proc.join()
        return time.perf_counter() - start, f"stopped after {wall_limit:.0f} s without an answer", []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--spopt-time-limit", type=float, default=600.0,
                    help="wall-clock seconds allowed to each spopt solve, model building included (default 600)")
    ap.add_argument("--skip-spopt", action="store_true")
    args = ap.parse_args()

    data = data_dir()
    t0 = time.perf_counter()
    net = load_network(data)
    places = load_places(data)
    demand = default_demand(net, places, data)
    problem = st.build_problem(net, places, demand=demand)
    setup_s = time.perf_counter() - t0
    times, w = problem.times, problem.weights
    limit = args.minutes * 60
    print(f"Boston: {times.shape[0]:,} demand nodes x {times.shape[1]} candidate sites, p = {args.p}, "
          f"T = {args.minutes:g} min (setup incl. demand and the site x node matrix: {setup_s:.1f} s)")

    # ------------------------------------------------------------------ MCLP
    ours = lm.mclp(times <= limit, w, args.p)
    s = ours.stats
    print(f"\nMCLP  routing.locate ({s.get('formulation', 'benders')}; LP {s['lp_iterations']} + MIP "
          f"{s['mip_iterations']} rounds, "
          f"{s['merged_rows']:,} rows): {ours.solve_s:7.2f} s  status {ours.status}, gap {ours.gap:.1e}, "
          f"covered {ours.covered_share:.4%}")
    if not args.skip_spopt:
        sp_s, sp_status, sp_chosen = _spopt("mclp", times, w, args.p, limit, args.spopt_time_limit)
        sp_cov = w[(times[:, sp_chosen] <= limit).any(axis=1)].sum() if sp_chosen else float("nan")
        print(f"MCLP  spopt (PuLP + CBC):  {sp_s:7.2f} s  status {sp_status}, covered {sp_cov / w.sum():.4%}")
        print(f"MCLP  speed-up vs spopt: x{sp_s / ours.solve_s:.1f}"
              + ("" if sp_chosen else " (at least: spopt gave no answer)")
              + (f"  (same optimum: {abs(sp_cov - ours.objective) <= 1e-6 * ours.objective})" if sp_chosen else ""))

    # ------------------------------------------------------------------ p-median
    ours_pm = lm.p_median(times, w, args.p)
    s = ours_pm.stats
    print(f"\np-median routing.locate (radius Benders + Lagrangian branch-and-bound; "
          f"{s['merged_rows']:,} rows): {ours_pm.solve_s:7.2f} s  status {ours_pm.status}, gap {ours_pm.gap:.1e}, "
          f"mean ETA {s['mean_cost']:.1f} s")
    if not args.skip_spopt:
        sp_s, sp_status, sp_chosen = _spopt("pmedian", times, w, args.p, limit, args.spopt_time_limit)
        sp_obj = (w * times[:, sp_chosen].min(axis=1)).sum() if len(sp_chosen) == args.p else float("nan")
        print(f"p-median spopt (PuLP + CBC):  {sp_s:7.2f} s  status {sp_status}, mean ETA {sp_obj / w.sum():.1f} s")
        print(f"p-median speed-up vs spopt: x{sp_s / ours_pm.solve_s:.1f}"
              + ("" if sp_chosen else " (at least: spopt gave no answer)")
              + (f"  (objective ours {ours_pm.objective:,.1f}, spopt {sp_obj:,.1f})" if sp_chosen else ""))

    # ------------------------------------------------------------------ coverage
    fleet = load_fleet(places=places)
    node_nbhd, node_district = places.locate_many(net.lat, net.lon)  # the naive baseline's join, done once
    for team_type in ("co_response", "emt_clinician", "ems"):
        n_teams = sum(t.team_type.value == team_type for t in fleet)
        fleet_coverage(fleet, network=net, places=places, minutes=args.minutes, team_types=team_type,
                       demand=demand, from_staging=True)  # warm the per-network caches

        def run(team_type: str = team_type) -> object:
            return fleet_coverage(fleet, network=net, places=places, minutes=args.minutes, team_types=team_type,
                                  demand=demand, from_staging=True)

        def naive(team_type: str = team_type) -> float:
            # One search per team, service areas and neighborhood sums by Python loops over nodes.
            teams = [t for t in fleet if t.team_type.value == team_type]
            snaps = net.snap_many([t.base_lat for t in teams], [t.base_lon for t in teams])
            table = (net.travel_times_from(snaps.nodes) + snaps.time_s[:, None]).T.tolist()
            groups: dict[object, list[tuple[float, float]]] = {}
            for i, (name, district) in enumerate(zip(node_nbhd.tolist(), node_district.tolist(), strict=True)):
                eta = min((table[i][k] for k, t in enumerate(teams) if t.serves(name, district)),
                          default=float("inf"))
                groups.setdefault(name, []).append((eta, float(w[i])))
            covered = 0.0
            for rows in groups.values():
                rows.sort()
                total = sum(r[1] for r in rows)
                acc, median = 0.0, None
                for eta, wt in rows:
                    acc += wt
                    if median is None and acc >= 0.5 * total:
                        median = eta
                covered += sum(wt for eta, wt in rows if eta <= limit)
            return covered

        print(f"\ncoverage, {team_type} ({n_teams} teams), whole city, T = {args.minutes:g} min:")
        fast = summary("routing.coverage.fleet_coverage", timed(run, 30))
        slow = summary("naive (per-team Dijkstra + Python loop)", timed(naive, 5))
        print(f"  speed-up x{slow / fast:.1f}; target < 50 ms: {'met' if fast < 0.05 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
