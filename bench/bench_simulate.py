"""Benchmark of the discrete-event simulation: a year of Boston calls under the default fleet.

Run: ``python bench/bench_simulate.py [--days 365] [--seed 0]`` (uses $CRISIS_DISPATCH_DATA or
../shared/data). The volume is the published one: >10,000 mental-health calls a year (2020), plus the
medical and other police-led classes of :class:`routing.arrivals.CallMix` (about 25,000 calls in all).
Target: under 60 s on a 2-core machine.

The naive baseline, run in the same process on a shorter period, dispatches every call with cold ETA
caches (``routing.eta.clear_caches()`` before each suggestion), i.e. fresh shortest-path searches
for every decision instead of cached rows for teams at their staging sites; the ratio is per call.
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

import routing.simulation as sim_module  # noqa: E402
from routing import eta  # noqa: E402
from routing.arrivals import generate_calls, load_arrival_model  # noqa: E402
from routing.network import load_network  # noqa: E402
from routing.places import load_places  # noqa: E402
from routing.policy import load_policy  # noqa: E402
from routing.simulation import default_start, simulate  # noqa: E402

TARGET_S = 60.0


def _engine_stats() -> dict[str, int]:
    total: dict[str, int] = {}
    for engine in list(eta._ENGINES.values()):
        for k, v in engine.stats.items():
            total[k] = total.get(k, 0) + v
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-days", type=float, default=7.0)
    args = parser.parse_args()
    data = data_dir()
    os.environ.setdefault("CRISIS_DISPATCH_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    print(f"crisis-dispatch simulation benchmark  (data: {data}, {os.cpu_count()} cores)")

    t0 = time.perf_counter()
    network = load_network(data)
    places = load_places(data)
    policy = load_policy("default", places=places)
    model = load_arrival_model(data, network=network, places=places)
    start = default_start()
    calls = generate_calls(model, start=start, days=args.days, seed=args.seed)
    setup = time.perf_counter() - t0
    mh = sum(c.mental_health for c in calls)
    print(f"  setup (network, places, policy, demand model, {len(calls):,} calls drawn)  {setup:8.2f} s")
    print(f"  calls: {len(calls):,} over {args.days:g} days ({mh:,} mental-health), "
          f"{len(policy.teams)} teams")

    eta.clear_caches()
    cpu0 = time.process_time()
    result = simulate(policy, calls, network=network, places=places, start=start, days=args.days, seed=args.seed)
    wall = result.wall_s
    cpu = time.process_time() - cpu0
    stats = _engine_stats()
    per_call = wall / max(1, len(calls))
    print(f"  simulate {args.days:g} days                                     {wall:8.2f} s   "
          f"{'OK' if wall < TARGET_S or args.days < 365 else 'OVER'} (target {TARGET_S:.0f} s for a year)")
    print(f"    CPU time {cpu:.2f} s (wall clock counts other processes' load on a shared machine)")
    print(f"    events {result.events:,}  ->  {result.events / wall:,.0f} events/s, "
          f"{len(calls) / wall:,.0f} calls/s, {per_call * 1000:.2f} ms per call")
    print(f"    ETA engine: {stats}")
    s = result.summary()
    rt = s["response_time"]["overall"]
    print(f"    served {s['calls']['served']:,} / {s['calls']['total']:,}; response median "
          f"{rt['median_s'] / 60:.1f} min, p90 {rt['p90_s'] / 60:.1f} min; "
          f"MH by preferred type {s['mental_health']['preferred_share'] * 100:.1f}%")

    # Naive baseline: cold ETA caches for every decision.
    base_calls = [c for c in calls if (c.received - start).total_seconds() < args.baseline_days * 86400]
    real_suggest = sim_module.suggest

    def cold_suggest(*a, **kw):
        eta.clear_caches()
        return real_suggest(*a, **kw)

    sim_module.suggest = cold_suggest
    try:
        base = simulate(policy, base_calls, network=network, places=places, start=start, days=args.baseline_days,
                        seed=args.seed)
    finally:
        sim_module.suggest = real_suggest
    base_per_call = base.wall_s / max(1, len(base_calls))
    print(f"  naive baseline, cold ETA caches, {args.baseline_days:g} days ({len(base_calls):,} calls)   "
          f"{base.wall_s:8.2f} s   {base_per_call * 1000:.2f} ms per call")
    print(f"  speed-up per call vs naive baseline                         {base_per_call / per_call:8.1f} x")
    print(f"  a year with the naive baseline would take about             "
          f"{base_per_call * len(calls) * 365 / args.days:8.0f} s")


if __name__ == "__main__":
    main()
