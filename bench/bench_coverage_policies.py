"""Closest-idle vs coverage-aware choice vs coverage-aware choice + move-up, on the same calls (issue 12).

Runs the shipped policies ``default`` (closest idle, teams return to base), ``coverage_aware`` and
``coverage_moveup`` (``data/policies/``) through :func:`routing.experiments.replicate`: replication
``r`` draws its calls from the demand model with seed ``seed + r`` and every policy meets exactly the
same calls and on-scene times (common random numbers), so the paired differences have narrow intervals.

Printed per policy, as mean [95 % CI] over replications: late share of mental-health calls (response
over the class's standard in ``data/time_standards.toml``, or never served), late share of all calls,
mean and 90th-percentile response (all calls and mental-health calls), police share of mental-health
calls (police fallbacks); then the paired differences against ``default`` and the wall time.

Target (issue 12): at least 10 % fewer late mental-health arrivals than closest idle, the interval of
the difference excluding zero, and mean response at most 5 % worse.

Run: ``python bench/bench_coverage_policies.py [--days 14] [--replications 5] [--seed 0]`` (uses
$CRISIS_DISPATCH_DATA or ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy
from _common import data_dir  # noqa: E402

from routing.arrivals import load_arrival_model  # noqa: E402
from routing.experiments import replicate  # noqa: E402
from routing.network import load_network  # noqa: E402
from routing.places import load_places  # noqa: E402
from routing.policy import load_policy  # noqa: E402

POLICIES = ("default", "coverage_aware", "coverage_moveup")
FIGURES = (
    ("mh_late_share", "MH late share", 100, "%"),
    ("late_share[mental health, no risk]", "MH (no risk) late share", 100, "%"),
    ("late_share[mental health with risk]", "MH+risk late share", 100, "%"),
    ("late_share", "all calls late share", 100, "%"),
    ("mh_response_mean_s", "MH mean response", 1 / 60, "min"),
    ("mh_response_p90_s", "MH p90 response", 1 / 60, "min"),
    ("response_mean_s", "mean response", 1 / 60, "min"),
    ("response_p90_s", "p90 response", 1 / 60, "min"),
    ("police_backup_rate", "police share of MH calls", 100, "%"),
)


def _fmt(d: dict, k: float) -> str:
    m, (lo, hi) = d["mean"], d["ci95"]
    if m is None:
        return "n/a"
    if lo is None:
        return f"{m * k:7.2f}"
    return f"{m * k:7.2f} [{lo * k:7.2f}, {hi * k:7.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--replications", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the full comparison here")
    args = parser.parse_args()
    data = data_dir()
    t0 = time.perf_counter()
    network = load_network(data)
    places = load_places(data)
    model = load_arrival_model(data, network=network, places=places)
    policies = [load_policy(name, places=places) for name in POLICIES]
    print(f"coverage-aware dispatch benchmark  ({args.days:g} days x {args.replications} replications, "
          f"seed {args.seed}; world loaded in {time.perf_counter() - t0:.1f} s)")
    t1 = time.perf_counter()
    res = replicate(policies, network=network, places=places, arrival_model=model, days=args.days,
                    replications=args.replications, seed=args.seed)
    wall = time.perf_counter() - t1
    out = res.to_dict()
    for p in POLICIES:
        sc = out["policies"][p]["scalars"]
        walls = out["run"]["replication_wall_s"][p]
        print(f"\n{p}  (calls per replication {sc['calls']['mean']:.0f}; "
              f"wall {sum(walls):.1f} s, {sum(walls) / len(walls):.1f} s per replication)")
        for key, label, k, unit in FIGURES:
            print(f"  {label:<28} {_fmt(sc[key], k)} {unit}")
    for name, diff in out["differences"].items():
        print(f"\n{name}  (paired differences, mean [95 % CI])")
        for key, label, k, unit in FIGURES:
            print(f"  {label:<28} {_fmt(diff[key], k)} {unit}")
        base = out["policies"]["default"]["scalars"]
        late0, mean0 = base["mh_late_share"]["mean"], base["response_mean_s"]["mean"]
        d_late, d_mean = diff["mh_late_share"], diff["response_mean_s"]
        rel_late = d_late["mean"] / late0 if late0 else float("nan")
        rel_mean = d_mean["mean"] / mean0 if mean0 else float("nan")
        excl = d_late["ci95"][1] is not None and d_late["ci95"][1] < 0
        ok = rel_late <= -0.10 and excl and rel_mean <= 0.05
        print(f"  MH late arrivals {rel_late * 100:+.1f} % (interval excludes zero: {excl}); mean response "
              f"{rel_mean * 100:+.1f} %  ->  target {'MET' if ok else 'NOT met'}")
    print(f"\ntotal wall {wall:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
