"""CLI: ``simulate``: run calls through one response policy, or compare several on the same calls."""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routing.cli import emit, number_arg, progress_for, run_parameters, write_json_file
from routing.errors import InvalidInput, reason
from routing.policy import available_policies

if TYPE_CHECKING:  # the simulation is imported when it runs, so that --help starts fast
    from routing.simulation import ComparisonResult, SimulationResult

# Defaults shown in --help, spelled out so that building the parser does not import the engine's
# NumPy/SciPy modules; a test checks they equal routing.arrivals.CallMix() and
# routing.simulation.DEFAULT_MAX_WAIT_S.
MH_PER_YEAR = 10_000.0
MEDICAL_PER_YEAR = 7_900.0
OTHER_PER_YEAR = 7_000.0
MAX_WAIT_MIN = 120.0

_positive = number_arg(float, low=0, low_open=True, what="a positive number")


_non_negative = number_arg(float, low=0, what="a number >= 0")


_seed = number_arg(int, low=0, what="a non-negative integer seed")


def _start(text: str) -> Any:
    from routing.simulation import parse_start

    try:
        return parse_start(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``simulate``."""
    shipped = ", ".join(available_policies()) or "none"
    p = subparsers.add_parser(
        "simulate", parents=[common],
        help="discrete-event simulation of calls and teams under a response policy",
        description="Simulate days to a year of calls (drawn from the demand model, or replayed with "
                    "--calls) under a response policy, or compare policies on the same calls and seed. "
                    f"Shipped policies: {shipped}.")
    p.add_argument("--days", type=_positive, metavar="D",
                   help="simulated days (default 7; with --calls: the file's span)")
    p.add_argument("--seed", type=_seed, default=0, metavar="SEED",
                   help="random seed, an integer >= 0 (default 0); same seed, same results")
    p.add_argument("--start", type=_start, metavar="DATE",
                   help="first day, YYYY-MM-DD in Boston time (default 2024-01-01; with --calls: the first call's day)")
    p.add_argument("--policy", metavar="NAME|FILE", default="default",
                   help="a shipped policy name or a policy TOML file (default: default)")
    p.add_argument("--fleet", metavar="TOML", help="use this fleet file instead of the policy's (default: the "
                                                   "policy's)")
    p.add_argument("--rules", metavar="TOML", help="use this rules file instead of the policy's (default: the "
                                                   "policy's)")
    p.add_argument("--compare", nargs="+", metavar="POLICY",
                   help="run two or more policies on the same calls and seed and print them side by side "
                        "(instead of --policy; default: only --policy)")
    p.add_argument("--calls", metavar="FILE",
                   help="replay calls from FILE (.json/.jsonl/.csv of calls, or BPD incident CSV, optionally .gz; "
                        "default: calls drawn from the demand model)")
    mix = p.add_argument_group("call volumes (demand model; see routing.arrivals.CallMix for sources)")
    mix.add_argument("--scale", type=_non_negative, default=1.0, metavar="X",
                     help="multiplier of every call volume (default 1)")
    mix.add_argument("--mh-per-year", type=_non_negative, default=MH_PER_YEAR, metavar="N",
                     help=f"mental-health calls a year (default {MH_PER_YEAR:,.0f})")
    mix.add_argument("--medical-per-year", type=_non_negative, default=MEDICAL_PER_YEAR, metavar="N",
                     help=f"non-mental-health medical calls a year (default {MEDICAL_PER_YEAR:,.0f})")
    mix.add_argument("--other-per-year", type=_non_negative, default=OTHER_PER_YEAR, metavar="N",
                     help=f"other police-led calls a year (default {OTHER_PER_YEAR:,.0f})")
    p.add_argument("--max-wait", type=_non_negative, default=MAX_WAIT_MIN, metavar="MIN",
                   help="minutes a call may wait with no eligible team before it is reported unserved "
                        f"(default {MAX_WAIT_MIN:.0f}; 0 = wait as long as it takes)")
    p.add_argument("--no-traffic", action="store_true",
                   help="drive at off-peak speeds all day (default: hour-of-day speed factors)")
    p.add_argument("--records", metavar="CSV",
                   help="also write one row per call: times in seconds from the start and as ISO 8601 "
                        "(Boston time with offset), team, outcome, and the run's parameters (run_* columns; "
                        "default: not written)")
    p.add_argument("--geojson", metavar="FILE",
                   help="also write neighbourhoods with their response times as GeoJSON (with --compare: "
                        "one file per policy, FILE's name + '-POLICY'; default: not written)")
    p.add_argument("--source", metavar="SRC",
                   help="road data instead of DATA/boston (as for 'route'; default: DATA/boston)")
    p.add_argument("--boundary", metavar="FILE",
                   help="service-area polygon for --source (as for 'route'; default: Boston's boundary)")
    p.add_argument("--speeds", metavar="TOML", help="travel-time model (default: data/speeds.toml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rep = p.add_argument_group("replications (routing.experiments; figures defined in docs/METRICS.md)")
    rep.add_argument("--replications", type=number_arg(int, low=1, what="a positive integer"), default=1,
                     metavar="N", help="run N replications (seeds SEED..SEED+N-1, the same for every policy) "
                                       "and give every figure with its 95 %% confidence interval (default 1)")
    rep.add_argument("--report", metavar="FILE.html",
                     help="write an offline HTML report with plots (PNGs also written beside it; default: "
                          "not written)")
    rep.add_argument("--standards", metavar="TOML",
                     help="response-time standards for the late share (default: data/time_standards.toml)")
    p.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from routing.arrivals import CallMix, generate_calls, load_arrival_model, read_calls_file
    from routing.config import require_data_dir
    from routing.network import load_network
    from routing.places import load_places
    from routing.policy import load_policy
    from routing.simulation import ComparisonResult, default_start, select_period, simulate

    if args.compare is not None and len(args.compare) < 2:
        raise InvalidInput("--compare needs at least two policies", field="compare")
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise InvalidInput(f"--report writes HTML: name the file FILE.html, not {args.report!r}", field="report")
    data_dir = require_data_dir(args.data)
    progress = progress_for(args)
    network = load_network(data_dir, source=args.source, speeds=args.speeds, boundary=args.boundary,
                           progress=progress)
    places = load_places(data_dir)
    names = args.compare if args.compare is not None else [args.policy]
    policies = [load_policy(n, places=places, fleet=args.fleet, rules=args.rules) for n in names]
    mix = CallMix(mh_per_year=args.mh_per_year, medical_per_year=args.medical_per_year,
                  other_per_year=args.other_per_year, scale=args.scale)
    if args.calls:
        replay = read_calls_file(args.calls, places=places, mix=mix, seed=args.seed)
        calls, start, days = select_period(replay.calls, start=args.start, days=args.days)
        scenario = {"calls_source": replay.to_dict(), "calls_in_period": len(calls)}
    else:
        start = args.start or default_start()
        days = args.days or 7.0
        model = load_arrival_model(data_dir, network=network, places=places)
        calls = generate_calls(model, mix, start=start, days=days, seed=args.seed)
        scenario = {"calls_source": {"model": model.source, "mix": mix.to_dict()}}
    max_wait = args.max_wait * 60 if args.max_wait > 0 else None
    if args.replications > 1 or args.report:
        from routing.cli import _experiments

        return _experiments.run(args, policies=policies, network=network, places=places,
                                model=None if args.calls else model, mix=mix, calls=calls if args.calls else None,
                                start=start, days=days, max_wait_s=max_wait, scenario=scenario)
    from routing.metrics import load_time_standards, published_metrics

    standards = load_time_standards(args.standards)  # read (and refused if bad) before the run
    kwargs = dict(network=network, places=places, start=start, days=days, seed=args.seed, max_wait_s=max_wait,
                  time_of_day=not args.no_traffic, scenario=scenario)
    started = time.perf_counter()
    results = [simulate(policy, calls, progress=progress, **kwargs) for policy in policies]
    wall = time.perf_counter() - started
    for r in results:  # the figures of docs/METRICS.md, as replication 0 of --replications reports them
        r.scenario["published"] = published_metrics(r, standards=standards).to_dict()["scalars"]
    if args.records:
        _write_records(args.records, results, args)
    if args.geojson:
        _write_geojson(args.geojson, results, several=args.compare is not None, args=args)
    if args.compare is not None:
        emit(args, ComparisonResult(results, wall), _compare_text)
    else:
        emit(args, results[0], _text)
    return 0


def _write_geojson(path: str, results: list[SimulationResult], *, several: bool,
                   args: argparse.Namespace | None = None) -> None:
    target = Path(path)
    for r in results:
        out = target.with_name(f"{target.stem}-{r.policy.name}{target.suffix}") if several else target
        doc = r.to_geojson()
        if args is not None:  # what the figures were computed with, as on every GeoJSON export
            doc["parameters"] = run_parameters(args, policy=r.policy.name, start=_local(r.start), days=r.days,
                                               seed=r.seed)
        write_json_file(out, doc, field="geojson")


#: Times of a record, in seconds from the run's start; each also gets an ISO 8601 column (``..._at``).
_RECORD_TIMES = ("received", "dispatched", "on_scene", "clear", "free")
#: The run's parameters, one column each, so that a row read on its own says what it came from.
_RECORD_RUN = ("run_start", "run_days", "run_seed", "run_volume_scale", "run_max_wait_min", "run_time_of_day")


def _local(when: Any) -> Any:
    from zoneinfo import ZoneInfo

    from routing.fleet import DEFAULT_TIMEZONE

    return when.astimezone(ZoneInfo(DEFAULT_TIMEZONE))


def _write_records(path: str, results: list[SimulationResult], args: argparse.Namespace | None = None) -> None:
    from routing.units import iso_at

    fields = ["policy", "call_id", "klass", "mental_health", "neighborhood", "received_s", "served", "team_id",
              "team_type", "tier_index", "preferred", "queued", "dispatched_s", "on_scene_s", "clear_s", "free_s",
              "response_s", "wait_s", "transported_to", "transport_missed", "unserved_reason",
              *(f"{k}_at" for k in _RECORD_TIMES), *_RECORD_RUN]
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for r in results:
                start = _local(r.start)  # Boston time, with its offset
                run = {"run_start": start.isoformat(), "run_days": r.days, "run_seed": r.seed,
                       "run_volume_scale": getattr(args, "scale", None),
                       "run_max_wait_min": getattr(args, "max_wait", None),
                       "run_time_of_day": None if args is None else not args.no_traffic}
                for o in r.outcomes:
                    d = o.to_dict()
                    w.writerow({"policy": r.policy.name, **d, **run,
                                **{f"{k}_at": iso_at(start, d[f"{k}_s"]) for k in _RECORD_TIMES}})
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {reason(exc)}", field="records") from None


# ---------------------------------------------------------------------------------------------- text


def _min(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _text(result: SimulationResult) -> str:
    d = result.to_dict()
    c, rt, mh, q = d["calls"], d["response_time"], d["mental_health"], d["queue"]
    sc = d["scenario"]
    lines = [
        f"policy {d['policy']['name']}: {d['policy']['description']}",
        f"{sc['days']:g} days from {sc['start']}, seed {sc['seed']}; {c['total']:,} calls "
        f"({c['served']:,} served, {c['unserved']:,} unserved)",
        "calls by class: " + ", ".join(f"{k} {v['calls']:,}" for k, v in c["by_class"].items()),
    ]
    if c["unserved_reasons"]:
        lines.append("unserved: " + "; ".join(f"{k}: {v:,}" for k, v in c["unserved_reasons"].items()))
    o = rt["overall"]
    lines.append(f"response time (call to on scene): median {_min(o['median_s'])} min, "
                 f"90th percentile {_min(o['p90_s'])} min")
    lines.append(f"  {'team type':<16} {'calls':>7} {'median':>7} {'p90':>7}  (minutes)")
    for k, v in rt["by_team_type"].items():
        lines.append(f"  {k:<16} {v['n']:>7,} {_min(v['median_s']):>7} {_min(v['p90_s']):>7}")
    lines.append(f"mental-health calls: {mh['calls']:,}; by the preferred team type {_pct(mh['preferred_share'])}, "
                 f"fell back {_pct(mh['fell_back_share'])}, to police {_pct(mh['police_share'])}")
    w = q["wait"]
    lines.append(f"queue: {q['queued_calls']:,} calls waited ({_pct(q['queued_share'])}), median wait "
                 f"{_min(w['median_s'])} min, p90 {_min(w['p90_s'])} min, longest queue {q['max_length']}")
    util = d["utilisation"]["by_team_type"]
    lines.append("utilisation (busy / on shift): " + ", ".join(f"{k} {_pct(v['utilisation'])}"
                                                               for k, v in util.items()))
    nb = sorted(rt["by_neighborhood"].items(), key=lambda kv: -(kv[1]["p90_s"] or 0))[:8]
    lines.append("slowest neighbourhoods (p90 min): " + ", ".join(f"{k} {_min(v['p90_s'])}" for k, v in nb))
    pub = sc.get("published")
    if pub:
        lines.append(f"published figures (docs/METRICS.md): eligible-call reach {_pct(pub.get('eligible_reach'))}, "
                     f"police-backup rate {_pct(pub.get('police_backup_rate'))}, late share "
                     f"{_pct(pub.get('late_share'))}, transport rate {_pct(pub.get('transport_rate'))}")
    lines.append(f"run: {d['run']['wall_s']:.1f} s, {d['events']:,} events")
    return "\n".join(lines)


def _compare_text(result: ComparisonResult) -> str:
    summaries = [r.summary() for r in result.results]
    names = [s["policy"]["name"] for s in summaries]
    width = max(12, *(len(n) for n in names))
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("teams", lambda s: str(s["policy"]["teams"])),
        ("calls", lambda s: f"{s['calls']['total']:,}"),
        ("unserved", lambda s: f"{s['calls']['unserved']:,}"),
        ("response median (min)", lambda s: _min(s["response_time"]["overall"]["median_s"])),
        ("response p90 (min)", lambda s: _min(s["response_time"]["overall"]["p90_s"])),
        ("MH response median (min)", lambda s: _min(_mh_stat(s, "median_s"))),
        ("MH response p90 (min)", lambda s: _min(_mh_stat(s, "p90_s"))),
        ("MH by preferred type", lambda s: _pct(s["mental_health"]["preferred_share"])),
        ("MH fell back to police", lambda s: _pct(s["mental_health"]["police_share"])),
        ("calls that waited", lambda s: f"{s['queue']['queued_calls']:,}"),
        ("wait median (min)", lambda s: _min(s["queue"]["wait"]["median_s"])),
        ("wait p90 (min)", lambda s: _min(s["queue"]["wait"]["p90_s"])),
    ]
    types = sorted({k for s in summaries for k in s["utilisation"]["by_team_type"]})
    for t in types:
        def utilisation(s: dict[str, Any], t: str = t) -> str:
            return _pct(s["utilisation"]["by_team_type"].get(t, {}).get("utilisation"))

        rows.append((f"utilisation {t}", utilisation))
    first = summaries[0]["scenario"]
    lines = [f"{first['days']:g} days from {first['start']}, seed {first['seed']}, same calls for every policy",
             f"{'':<26}" + "".join(f"{n:>{width + 2}}" for n in names)]
    for label, fn in rows:
        lines.append(f"{label:<26}" + "".join(f"{fn(s):>{width + 2}}" for s in summaries))
    lines.append(f"run: {result.wall_s:.1f} s")
    return "\n".join(lines)


def _mh_stat(summary: dict[str, Any], key: str) -> float | None:
    return summary["mental_health"]["response_time"][key]
