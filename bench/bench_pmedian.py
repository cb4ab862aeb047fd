"""Benchmark: p-median on the 40 OR-Library instances (Beasley 1990), proven optimal.

For each instance ``pmed1`` .. ``pmed40`` (100-900 nodes, p = 5-200; ``bench/data/orlib/``, see its
README.txt): the graph's all-pairs shortest paths (not timed), then ``routing.locate.p_median`` (the
radius-formulation Benders relaxation + Lagrangian branch-and-bound) and, in the same process, the
baseline: the previous solver (Benders with 64 aggregated cuts, GLOP + iterated SCIP master), kept as
``routing.locate.p_median._p_median_baseline``.

Printed per instance: wall time, objective, the published optimum (``pmedopt.txt``), whether the solve
proved optimality and matched the published value exactly, and the baseline's time with the ratio
baseline / ours (``>=`` when the baseline hit its time limit, so the ratio is a lower bound). Then the
maximum, total and slowest five of our times.

Target (the project's issue): every instance proven optimal within 60 s on one core.

Run: ``python bench/bench_pmedian.py [--instances pmed1,pmed36] [--time-limit 60]
[--baseline-time-limit 60] [--skip-baseline]``.
"""

from __future__ import annotations

import argparse
import gzip
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy

from routing.locate import p_median  # noqa: E402
from routing.locate.p_median import _p_median_baseline  # noqa: E402

ORLIB = Path(__file__).resolve().parent / "data" / "orlib"


def load_instance(name: str) -> tuple[np.ndarray, int]:
    """``(n, n)`` shortest-path distances and ``p`` of an OR-Library pmed file.

    Edges are undirected; a repeated edge takes its last cost (Beasley's convention, README.txt).
    """
    with gzip.open(ORLIB / f"{name}.txt.gz", "rt") as f:
        tokens = f.read().split()
    n, n_edges, p = int(tokens[0]), int(tokens[1]), int(tokens[2])
    edges = np.array(tokens[3:3 + 3 * n_edges], dtype=np.int64).reshape(n_edges, 3)
    last: dict[tuple[int, int], int] = {}
    for i, j, c in edges.tolist():
        if i != j:
            last[(min(i, j) - 1, max(i, j) - 1)] = c
    ij = np.array(list(last), dtype=np.int64)
    graph = sp.csr_matrix((np.array(list(last.values()), dtype=float), (ij[:, 0], ij[:, 1])), shape=(n, n))
    return shortest_path(graph, method="D", directed=False), p


def optima() -> dict[str, int]:
    """Published optimal values (pmedopt.txt)."""
    out = {}
    for line in (ORLIB / "pmedopt.txt").read_text().splitlines():
        parts = line.split()
        if parts and parts[0].startswith("pmed"):
            out[parts[0]] = int(parts[1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", default=",".join(f"pmed{i}" for i in range(1, 41)),
                    help="comma-separated names (default: pmed1..pmed40)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per instance for ours (default 60)")
    ap.add_argument("--baseline-time-limit", type=float, default=60.0,
                    help="seconds per instance for the baseline (default 60)")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    names = [s.strip() for s in args.instances.split(",") if s.strip()]
    published = optima()
    unknown = [s for s in names if s not in published]
    if unknown:
        raise SystemExit(f"error: unknown instance(s) {', '.join(unknown)}; expected pmed1..pmed40")

    print(f"{'instance':<9} {'n':>4} {'p':>4} {'ours s':>8} {'objective':>10} {'published':>10} {'proven':>7} "
          f"{'nodes':>6}" + ("" if args.skip_baseline else f" {'baseline s':>11} {'status':>9} {'ratio':>8}"))
    times: dict[str, float] = {}
    ratios: list[float] = []
    failures = []
    for name in names:
        dist, p = load_instance(name)
        start = time.perf_counter()
        res = p_median(dist, None, p, time_limit_s=args.time_limit)
        elapsed = time.perf_counter() - start
        times[name] = elapsed
        proven = res.optimal and res.objective == published[name]
        if not proven:
            failures.append(name)
        line = (f"{name:<9} {dist.shape[0]:>4} {p:>4} {elapsed:8.2f} {res.objective:10.0f} {published[name]:10d} "
                f"{'yes' if proven else 'NO':>7} {res.stats.get('mip_iterations', 0):>6}")
        if not args.skip_baseline:
            start = time.perf_counter()
            base = _p_median_baseline(dist, None, p, time_limit_s=args.baseline_time_limit)
            base_s = time.perf_counter() - start
            ratio = base_s / elapsed
            ratios.append(ratio)
            line += (f" {base_s:11.2f} {base.status:>9} {'>=' if not base.optimal else '  '}{ratio:6.1f}")
        print(line, flush=True)

    total = sum(times.values())
    slowest = sorted(times.items(), key=lambda kv: -kv[1])[:5]
    print(f"\n{len(names) - len(failures)} of {len(names)} proven optimal at the published value"
          + (f"; NOT: {', '.join(failures)}" if failures else ""))
    print(f"ours: max {max(times.values()):.2f} s, total {total:.1f} s; slowest: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in slowest))
    print(f"target (each proven within 60 s): {'met' if not failures and max(times.values()) <= 60 else 'NOT met'}")
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"baseline / ours: geometric mean x{geo:.1f} (a lower bound where the baseline hit its "
              f"{args.baseline_time_limit:g} s limit)")
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
