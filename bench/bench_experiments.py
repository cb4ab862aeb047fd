"""Benchmark of replicated experiments through the sweep: a year at the published volume x 10
replications on dask.distributed (a local cluster on every core), and the cost of 4x the call volume.

Run: ``python bench/bench_experiments.py [--days 365] [--replications 10] [--ratio-days 14]`` (uses
$CRISIS_DISPATCH_DATA or ../shared/data). Target: the year x 10 replications in under 60 s on a 2-core
machine. The volume ratio runs ``--ratio-days`` days at 1x and 4x the published volume, serially in
this process (one replication each, same seed), and prints wall-clock per run and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy
from _common import data_dir  # noqa: E402

from routing.network import load_network  # noqa: E402
from routing.sweep import Grid, Scenario, run_dask, run_task  # noqa: E402

TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--ratio-days", type=float, default=14.0)
    parser.add_argument("--skip-year", action="store_true")
    args = parser.parse_args()
    data = str(data_dir())
    os.environ.setdefault("CRISIS_DISPATCH_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    print(f"crisis-dispatch experiments benchmark  (data: {data}, {os.cpu_count()} cores)")
    t0 = time.perf_counter()
    load_network(data)  # prepare the cache once, as the CLI does before starting workers
    print(f"  network cache ready                                            {time.perf_counter() - t0:8.2f} s")

    # 4x vs 1x volume, serially, one replication each (cold ETA caches in both, as in every task).
    per = {}
    for volume in (1.0, 4.0):
        grid = Grid("ratio", [Scenario("default", volume=volume)], days=args.ratio_days, replications=1)
        run_task(grid, 0, 0, data)  # load the world in this process first: not part of the run's cost
        t = time.perf_counter()
        res = run_task(grid, 0, 0, data)
        per[volume] = time.perf_counter() - t
        print(f"  {args.ratio_days:g} days at {volume:g}x volume: {res['row']['calls']:>7,.0f} calls   "
              f"{per[volume]:8.2f} s   ({per[volume] / res['row']['calls'] * 1000:.2f} ms per call, "
              f"backlog mean {res['row']['backlog_mean']:.2f}, eligible reach {res['row']['eligible_reach']:.3f})")
    print(f"  cost ratio 4x / 1x volume                                      {per[4.0] / per[1.0]:8.2f} x")

    if args.skip_year:
        return
    grid = Grid("year", [Scenario("default")], days=args.days, replications=args.replications)
    done = []
    t = time.perf_counter()
    result = run_dask(grid, data, workers=args.workers,
                      progress=lambda k, n: done.append((k, time.perf_counter() - t)))
    wall = time.perf_counter() - t
    tasks = [r["wall_s"] for r in result.results]
    print(f"  sweep: {args.days:g} days x {args.replications} replications on {result.workers} workers    "
          f"{wall:8.2f} s   {'OK' if wall < TARGET_S else 'OVER'} (target {TARGET_S:.0f} s)")
    print(f"    per replication (simulate, in the worker): min {min(tasks):.1f} s, max {max(tasks):.1f} s, "
          f"sum {sum(tasks):.1f} s; overhead (cluster start, world load, scheduling) "
          f"{wall - sum(tasks) / max(1, result.workers):.1f} s")
    s = result.summary()["scenarios"]["default|fleet=1|shifts=as_policy|volume=1"]["metrics"]
    for key in ("calls", "eligible_reach", "police_backup_rate", "late_share", "response_median_s", "backlog_mean"):
        m = s[key]
        print(f"    {key:<22} mean {m['mean']:.4g}  95% CI [{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]")


if __name__ == "__main__":
    main()
