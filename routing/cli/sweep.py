"""CLI: ``sweep GRID.toml``: run a grid of scenarios x replications on dask.distributed (see routing.sweep)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from routing.cli import emit, number_arg
from routing.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``sweep``."""
    p = subparsers.add_parser(
        "sweep", parents=[common],
        help="run a grid of policies x fleet sizes x shift patterns x call volumes x replications on Dask",
        description="Run every scenario of GRID.toml (format: routing/sweep.py, docs/METRICS.md) with its "
                    "replications on dask.distributed: a local cluster of processes on every core, or "
                    "--scheduler ADDRESS. Writes one tidy row per scenario and replication (rows.parquet, "
                    "rows.csv) and the summary with 95 % intervals (summary.json) to --out.")
    p.add_argument("grid", metavar="GRID.toml", help="the grid file (e.g. examples/sweep_quick.toml)")
    p.add_argument("--out", metavar="DIR", default="sweep-results", help="output folder (default: sweep-results)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    p.add_argument("--workers", type=number_arg(int, low=1, what="a positive integer"), metavar="N",
                   help="number of local worker processes (default: every core)")
    p.add_argument("--serial", action="store_true", help="no Dask: run the tasks one by one in this process")
    p.add_argument("--source", metavar="SRC",
                   help="road data instead of DATA/boston (as for 'route'; default: DATA/boston)")
    p.add_argument("--boundary", metavar="FILE",
                   help="service-area polygon for --source (default: Boston's boundary)")
    p.add_argument("--speeds", metavar="TOML", help="travel-time model (default: data/speeds.toml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from routing.config import require_data_dir
    from routing.network import load_network
    from routing.sweep import load_grid, run_dask, run_serial

    if args.serial and (args.workers is not None or args.scheduler is not None):
        raise InvalidInput("--serial runs in this process: it takes neither --workers nor --scheduler",
                           field="serial")
    grid = load_grid(args.grid)
    data_dir = str(require_data_dir(args.data))
    # Prepare the network cache here once, so that the workers only read it.
    load_network(data_dir, source=args.source, speeds=args.speeds, boundary=args.boundary)
    bar = _bar(args, len(grid.tasks()))
    kw = dict(source=args.source, speeds=args.speeds, boundary=args.boundary, progress=bar)
    if args.serial:
        result = run_serial(grid, data_dir, **kw)
    else:
        result = run_dask(grid, data_dir, scheduler=args.scheduler, workers=args.workers, **kw)
    written = result.write(args.out)
    summary = result.summary()
    emit(args, summary, lambda s: _text(s, written))
    return 0


def _bar(args: argparse.Namespace, total: int) -> Any:
    """tqdm's bar (done / total, elapsed < time left) on a terminal; else nothing."""
    if args.json or args.no_progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="scenario x replication", unit="run", file=sys.stderr)
    started = time.perf_counter()

    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            sys.stderr.write(f"{total} runs in {time.perf_counter() - started:.1f} s\n")

    return update


def _text(summary: dict[str, Any], written: list[Any]) -> str:
    from routing.report import diff_unit, fmt_ci

    # Headed by their names in rows.csv and docs/METRICS.md.
    cols = (("eligible_reach", "eligible_reach", "%"), ("police_backup_rate", "police_backup_rate", "%"),
            ("late_share", "late_share", "%"), ("response_median_s", "response_median_s", "min"),
            ("response_gap_s", "response_gap_s", "min"), ("backlog_mean", "backlog_mean", "n"))
    days = summary["grid"]["days"]
    lines = [f"sweep {summary['grid']['name']}: {len(summary['scenarios'])} scenarios x "
             f"{summary['grid']['replications']} replications, {days:g} day{'s' if days != 1 else ''} each; "
             "mean [95 % CI]"]
    paired = [(f"{sid} - {entry['difference_vs'].split('|')[0]}", entry["differences"])
              for sid, entry in summary["scenarios"].items() if entry.get("differences")]
    width = max(len(k) for k in [*summary["scenarios"], *(label for label, _ in paired)])
    lines.append(f"{'scenario':<{width}}  " + "  ".join(f"{label:>30}" for _, label, _ in cols))
    for sid, entry in summary["scenarios"].items():
        m = entry["metrics"]
        lines.append(f"{sid:<{width}}  " + "  ".join(f"{fmt_ci(m[k], u) if k in m else '-':>30}" for k, _, u in cols))
    if paired:
        lines.append("paired differences (replication by replication; shares in percentage points):")
        for label, d in paired:
            lines.append(f"{label:<{width}}  " + "  ".join(
                f"{fmt_ci(d[k], diff_unit(u)) if k in d else '-':>30}" for k, _, u in cols))
    run = summary["run"]
    lines.append(f"run: {run['wall_s']:.1f} s on {run['workers']} worker(s); wrote " + ", ".join(map(str, written)))
    return "\n".join(lines)
