"""CLI helpers of ``simulate --replications N`` and ``--report``: run :func:`routing.experiments.replicate`
and print every figure with its 95 % interval (and the paired differences of ``--compare``).

Not a command module (it registers nothing): ``routing.cli.simulate`` hands over to :func:`run` when
replications or a report are asked for.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from routing.cli import emit


def run(args: argparse.Namespace, *, policies: list[Any], network: Any, places: Any, model: Any, mix: Any,
        calls: Any, start: Any, days: float, max_wait_s: float | None, scenario: dict[str, Any]) -> int:
    """Replicate, print (text or ``--json``), write ``--report``; returns the exit code."""
    from routing.experiments import replicate
    from routing.metrics import load_time_standards

    standards = load_time_standards(getattr(args, "standards", None))
    bar = _bar(args, len(policies) * args.replications)
    result = replicate(policies, network=network, places=places, arrival_model=model, mix=mix, calls=calls,
                       start=start, days=days, replications=args.replications, seed=args.seed,
                       max_wait_s=max_wait_s, time_of_day=not args.no_traffic, standards=standards,
                       scenario=scenario, progress=bar)
    if bar is not None:
        bar(1.0)
    if args.report:
        from routing.report import write_report

        written = write_report(result, args.report)
        if not args.json:
            sys.stderr.write(f"report: {written[0]} (+ {len(written) - 1} PNG images beside it)\n")
    emit(args, result, text)
    return 0


def _bar(args: argparse.Namespace, total: int) -> Any:
    if args.json or getattr(args, "no_progress", False) or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="replications", file=sys.stderr, unit="run")

    def update(fraction: float) -> None:
        done = round(fraction * total)
        if done > bar.n:
            bar.update(done - bar.n)
        if fraction >= 1.0:
            bar.close()

    return update


def text(result: Any) -> str:
    """Every headline figure as ``mean [low, high]``, policies side by side, then the paired differences."""
    from routing.report import HEADLINE, diff_unit, fmt_ci

    sc = result.scenario
    names = result.policies
    summaries = {p: result.summary(p)["scalars"] for p in names}
    diffs = result.differences() if len(names) > 1 else {}
    keys = list(HEADLINE) + [(k, "late share: " + k[len("late_share["):-1], "%")
                             for k in summaries[names[0]] if k.startswith("late_share[")]
    keys += [(k, "utilisation " + k[len("utilisation["):-1], "%")
             for k in summaries[names[0]] if k.startswith("utilisation[")]
    cols = names + list(diffs)
    cells = {c: [fmt_ci((summaries.get(c) or diffs[c])[k], u if c in summaries else diff_unit(u))
                 if k in (summaries.get(c) or diffs[c]) else "-" for k, _, u in keys] for c in cols}
    width = {c: max(len(c), *(len(x) for x in cells[c])) for c in cols}
    label_w = max(len(lbl) for _, lbl, _ in keys)
    reps = result.replications
    lines = [f"{reps} replication{'s' if reps != 1 else ''} (seeds {sc['seed']}..{sc['seed'] + reps - 1}), "
             f"{sc['days']:g} days from {sc['start']}; common random numbers across policies",
             "every figure: mean [95 % CI over replications]" + (
                 "; differences are paired, replication by replication (shares in percentage points)"
                 if diffs else ""),
             f"{'':<{label_w}}  " + "  ".join(f"{c:>{width[c]}}" for c in cols)]
    for k, (_, label, _) in enumerate(keys):
        lines.append(f"{label:<{label_w}}  " + "  ".join(f"{cells[c][k]:>{width[c]}}" for c in cols))
    lines.append(f"run: {result.wall_s:.1f} s")
    return "\n".join(lines)
