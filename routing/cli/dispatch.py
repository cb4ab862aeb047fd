"""CLI: ``fleet list|position|status|history``, ``suggest``, ``assign`` and ``demo``.

The fleet's live state lives in a SQLite database (``--db PATH``, default ``$CRISIS_DISPATCH_DB`` or
``./crisis-dispatch.db``), created on first use from the fleet file (``--fleet``, default
``data/fleet.toml``). ``suggest`` and ``assign`` read the teams from it and write every decision to
its audit trail. ``demo`` needs no database: it puts the default fleet at its staging sites.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from routing.cli import emit, number_arg, offline_requested, parse_latlon, time_arg, to_jsonable
from routing.cli.network import add_network_args, network_from_args, speeds_line
from routing.errors import InvalidInput

# Only standard-library engine modules at the top (the parser needs their names); the network and
# the solvers are imported by the commands that use them, so that --help starts fast.
from routing.fleet import DEFAULT_TIMEZONE, TeamState, TeamStatus, load_fleet
from routing.store import Store, clock_ahead_s, default_db_path
from routing.triage import FLAGS, Call, load_rules
from routing.units import format_eta

if TYPE_CHECKING:
    from routing.dispatch import AssignmentResult, SuggestionResult
    from routing.network import RoadNetwork
    from routing.places import Places

#: Sample calls for ``demo`` (and tests): one or more of each class, in different neighbourhoods, at
#: the coordinates of real public buildings taken from the shared data files (named in ``where``).
SAMPLE_CALLS: list[dict[str, Any]] = [
    {"call_id": "demo-1", "where": "Erich Lindemann Mental Health Center, 25 Staniford St (hospitals.geojson)",
     "lat": 42.361914, "lon": -71.063491, "mental_health": True, "weapon": True, "priority": 1},
    {"call_id": "demo-2", "where": "BCYF Vine Street, 339 Dudley St, Roxbury (bcyf_community_centers.geojson)",
     "lat": 42.326782, "lon": -71.076715, "mental_health": True, "safety_risk": True, "priority": 1},
    {"call_id": "demo-3", "where": "BCYF Perkins, 155 Talbot Ave, Dorchester (bcyf_community_centers.geojson)",
     "lat": 42.292451, "lon": -71.080451, "mental_health": True, "priority": 2},
    {"call_id": "demo-4", "where": "BMC East Newton Campus, 88 East Newton St, South End (hospitals.geojson)",
     "lat": 42.337774, "lon": -71.070795, "mental_health": True, "priority": 2},
    {"call_id": "demo-5", "where": "BCYF Charlestown, 255 Medford St (bcyf_community_centers.geojson)",
     "lat": 42.380995, "lon": -71.060951, "mental_health": True, "priority": 3},
    {"call_id": "demo-6", "where": "BCYF Paris Street, 112 Paris St, East Boston (bcyf_community_centers.geojson)",
     "lat": 42.372882, "lon": -71.037522, "mental_health": True, "needs_transport": True, "priority": 2},
    {"call_id": "demo-7", "where": "BCYF Nazzaro, 30 N. Bennet St, North End (bcyf_community_centers.geojson)",
     "lat": 42.365300, "lon": -71.054497, "safety_risk": True, "priority": 2},
    {"call_id": "demo-8", "where": "BCYF Hyde Park, 1179 River St (bcyf_community_centers.geojson)",
     "lat": 42.256425, "lon": -71.120992, "weapon": True, "priority": 1},
    {"call_id": "demo-9", "where": "BCYF Roche, 1716 Centre St, West Roxbury (bcyf_community_centers.geojson)",
     "lat": 42.286936, "lon": -71.149306, "needs_transport": True, "priority": 2},
]


def sample_calls(received: datetime | None = None) -> list[Call]:
    """The demo's sample calls as :class:`Call` objects, received at ``received`` (default now).

    Their ids follow that time, ``demo-3-20260601T173000`` (local Boston time), so that demos at
    different times (``demo --at``) recorded in one database are different calls.
    """
    when = received or datetime.now(UTC)
    stamp = when.astimezone(ZoneInfo(DEFAULT_TIMEZONE)).strftime("%Y%m%dT%H%M%S")
    return [Call.from_dict({**{k: v for k, v in d.items() if k != "where"}, "call_id": f"{d['call_id']}-{stamp}"},
                           default_received=when)
            for d in SAMPLE_CALLS]


# ---------------------------------------------------------------------------------------------- options

positive_int = number_arg(int, low=1, what="a positive integer")


seconds = number_arg(float, low=0, what="a non-negative number of seconds")


def add_call_args(parser: argparse.ArgumentParser, *, call_id_help: str) -> None:
    """Add the options of one call (``--lat``, ``--lon``, the class flags, priority, id, time)."""
    where = parser.add_argument_group("single call")
    where.add_argument("--lat", type=float, help="latitude of the call in WGS84 decimal degrees "
                                                 "(required for one call, with --lon)")
    where.add_argument("--lon", type=float, help="longitude of the call in WGS84 decimal degrees "
                                                 "(required for one call, with --lat)")
    for flag in FLAGS:
        where.add_argument(f"--{flag.replace('_', '-')}", action="store_true", dest=flag,
                           help=f"triage flag {flag} (default: false)")
    where.add_argument("--priority", type=int, default=None, help="priority rank, 1 (highest) to 5; default 2")
    where.add_argument("--call-id", help=call_id_help)
    where.add_argument("--received", type=time_arg, metavar="TIME",
                       help="when the call came in: ISO 8601 with offset, or HH:MM today in Boston (default: now)")


def add_db(parser: argparse.ArgumentParser) -> None:
    """Add ``--db`` (the shared SQLite database) and ``--fleet`` (used when creating it) to ``parser``."""
    parser.add_argument("--db", metavar="PATH", type=Path,
                        help=f"fleet database (default: $CRISIS_DISPATCH_DB or ./{default_db_path().name}); "
                             "created on first use from --fleet")
    parser.add_argument("--fleet", metavar="TOML", help="fleet file used to create the database "
                                                        "(default: data/fleet.toml)")


def add_rules(parser: argparse.ArgumentParser) -> None:
    """Add ``--rules``, ``--stale-after`` and ``--at`` (the decision time) to ``parser``."""
    parser.add_argument("--rules", metavar="TOML", help="triage rules (default: data/rules.toml)")
    parser.add_argument("--stale-after", type=seconds, metavar="S",
                        help="seconds after which a position report is stale (default: from the rules)")
    parser.add_argument("--at", type=time_arg, metavar="TIME",
                        help="decision time: ISO 8601 with offset, or HH:MM today in Boston (default: now); "
                             "shifts, staleness and the hour-of-day speeds (unless --hour) are judged at "
                             "this time")


def _store(args: argparse.Namespace, network: RoadNetwork | None = None) -> Store:
    return Store(args.db, fleet=args.fleet, network=network)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``fleet``, ``suggest``, ``assign`` and ``demo``."""
    fleet = subparsers.add_parser("fleet", help="teams, their positions and statuses")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", metavar="ACTION")
    fleet_sub.required = True

    p = fleet_sub.add_parser("list", parents=[common], help="every team with its status and position")
    add_db(p)
    p.add_argument("--stale-after", type=seconds, metavar="S",
                   help="seconds after which a position report is stale (default: from the rules, 900 in "
                        "data/rules.toml)")
    p.add_argument("--rules", metavar="TOML", help="rules file giving the default staleness limit "
                                                   "(default: data/rules.toml)")
    p.set_defaults(func=_fleet_list)

    p = fleet_sub.add_parser("position", parents=[common], help="record a team's position report")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("latlon", metavar="LAT,LON", type=parse_latlon)
    p.add_argument("--at", type=time_arg, metavar="TIME",
                   help="time of the report: ISO 8601 with offset, or HH:MM today in Boston (default: now); "
                        "at most 300 s ahead of this machine's clock")
    add_db(p)
    add_network_args(p)
    p.set_defaults(func=_fleet_position)

    p = fleet_sub.add_parser("status", parents=[common], help="change a team's status")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("status", metavar="STATUS", help=", ".join(s.value for s in TeamStatus))
    p.add_argument("--at", type=time_arg, metavar="TIME",
                   help="time of the change: ISO 8601 with offset, or HH:MM today in Boston (default: now); "
                        "at most 300 s ahead of this machine's clock")
    add_db(p)
    p.set_defaults(func=_fleet_status)

    p = fleet_sub.add_parser("history", parents=[common], help="a team's position reports and status changes")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="only the last N position reports (default: all of them)")
    add_db(p)
    p.set_defaults(func=_fleet_history)

    p = subparsers.add_parser("suggest", parents=[common],
                              help="rank the eligible teams for a call (or each call of a file)")
    add_call_args(p, call_id_help="identifier for the audit trail (default: generated)")
    p.add_argument("--calls", metavar="FILE",
                   help="batch: CSV or JSON lines with the same fields, one per call (format: "
                        "examples/README.md; default: the one call of --lat/--lon)")
    p.add_argument("--top", type=positive_int, metavar="N",
                   help="at most N suggested teams per call (default: every eligible team)")
    add_db(p)
    add_rules(p)
    add_network_args(p)
    p.add_argument("--jsonl", action="store_true",
                   help="with --calls: one JSON answer per line as each is computed, then a summary line")
    p.set_defaults(func=_suggest)

    p = subparsers.add_parser("assign", parents=[common],
                              help="jointly assign waiting calls to teams (OR-Tools CP-SAT)")
    p.add_argument("--calls", metavar="FILE", required=True,
                   help="CSV or JSON lines, one call per row (format: examples/README.md; required)")
    p.add_argument("--tier-penalty", type=seconds, metavar="S",
                   help="cost of sending a team of one tier lower, in seconds of ETA, times the call's priority "
                        "weight (default: tier_penalty_s of the rules, 600 in data/rules.toml)")
    p.add_argument("--unserved-penalty", type=seconds, metavar="S",
                   help="cost of leaving a call unserved, in seconds of ETA, times its priority weight "
                        "(default: unserved_penalty_s of the rules, 7200 in data/rules.toml)")
    p.add_argument("--time-limit", type=seconds, default=10.0, metavar="S",
                   help="solver time limit in seconds (default 10)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan only; record nothing and leave the teams' statuses as they are")
    add_db(p)
    add_rules(p)
    add_network_args(p)
    p.set_defaults(func=_assign)

    p = subparsers.add_parser("demo", parents=[common],
                              help="the main job: sample calls across Boston, ranked teams with ETAs")
    p.add_argument("--top", type=positive_int, default=3, metavar="N", help="teams shown per call (default 3)")
    p.add_argument("--db", metavar="PATH", type=Path,
                   help="use the live fleet of this database (default: the default fleet at its bases)")
    p.add_argument("--fleet", metavar="TOML", help="fleet file (default: data/fleet.toml)")
    p.add_argument("--map", metavar="HTML", default="crisis-dispatch-demo.html",
                   help="where to write the dispatch map (default: ./crisis-dispatch-demo.html)")
    p.add_argument("--no-map", action="store_true", help="do not write the map")
    p.add_argument("--offline", action="store_true",
                   help="self-contained map with no remote resource (also $CRISIS_DISPATCH_OFFLINE=1)")
    p.add_argument("--independent", action="store_true",
                   help="answer every call against the same fleet (default: the chosen team of each call "
                        "is en route for the following calls)")
    add_rules(p)
    add_network_args(p)
    p.set_defaults(func=_demo)


# ---------------------------------------------------------------------------------------------- fleet

def _fleet_list(args: argparse.Namespace) -> int:
    store = _store(args)
    now = datetime.now(UTC)
    stale_after = args.stale_after if args.stale_after is not None else load_rules(args.rules).stale_after_s
    rows = []
    for ts in store.teams():
        d = ts.to_dict()
        age = ts.position_age_s(now)
        d.update(position_age_s=round(age, 1), stale=age > stale_after)
        rows.append(d)
    result = {"db": str(store.path), "stale_after_s": stale_after, "teams": rows}

    def text(r: dict[str, Any]) -> str:
        tw = max([9, *(len(t["team_id"]) for t in r["teams"])])  # long ids widen the column
        lines = [f"{'team':<{tw}} {'type':<13} {'ded':<3} {'status':<14} {'lat':>9} {'lon':>10} "
                 f"{'age':>7}  base"]
        for t in r["teams"]:
            age = _fmt_age(t["position_age_s"]) + ("!" if t["stale"] else " ")
            lines.append(f"{t['team_id']:<{tw}} {t['team_type']:<13} {'yes' if t['dedicated'] else '':<3} "
                         f"{t['status']:<14} {t['lat']:>9.5f} {t['lon']:>10.5f} {age:>7}  {t['base_name']}")
        lines.append(f"{len(r['teams'])} teams in {r['db']} ('!' = position older than "
                     f"{_fmt_age(r['stale_after_s'])})")
        return "\n".join(lines)

    emit(args, result, text)
    return 0


def _clock_answer(state: TeamState, stated: datetime | None, received: datetime) -> dict[str, Any]:
    """The team's state plus ``clock_ahead_s`` and, when the given time was ahead, a ``note``."""
    ahead = clock_ahead_s(stated, received) if stated is not None else 0.0
    note = (f"time {stated.isoformat()} is {ahead:.1f} s ahead of this machine's clock: stored as given, "
            "ordered by when it was received" if stated is not None and ahead > 0 else None)
    return {**state.to_dict(), "clock_ahead_s": round(ahead, 3), "note": note}


def _fleet_position(args: argparse.Namespace) -> int:
    network = network_from_args(args)
    store = _store(args, network)
    received = datetime.now(UTC)
    lat, lon = args.latlon
    state = store.report_position(args.team, lat, lon, at=args.at, received=received)
    emit(args, _clock_answer(state, args.at, received),
         lambda d: f"{d['team_id']}: position {d['lat']:.6f}, {d['lon']:.6f} at {d['position_time']}"
                   + (f"\nnote: {d['note']}" if d["note"] else ""))
    return 0


def _fleet_status(args: argparse.Namespace) -> int:
    store = _store(args)
    before = store.team(args.team).status
    received = datetime.now(UTC)
    state = store.set_status(args.team, args.status, at=args.at, received=received)
    emit(args, _clock_answer(state, args.at, received),
         lambda d: f"{d['team_id']}: {before.value} -> {d['status']}" + (f"\nnote: {d['note']}" if d["note"] else ""))
    return 0


def _fleet_history(args: argparse.Namespace) -> int:
    store = _store(args)
    result = {"team_id": args.team, "positions": store.position_history(args.team, limit=args.limit),
              "statuses": store.status_history(args.team)}

    def text(r: dict[str, Any]) -> str:
        lines = [f"{r['team_id']}: {len(r['positions'])} position reports, {len(r['statuses'])} status changes"]
        lines += [f"  position {p['at']}  {p['lat']:.6f}, {p['lon']:.6f}" for p in r["positions"]]
        lines += [f"  status   {s['at']}  {s['old_status'] or '-'} -> {s['new_status']}" for s in r["statuses"]]
        return "\n".join(lines)

    emit(args, result, text)
    return 0


# ---------------------------------------------------------------------------------------------- calls

def read_calls(path: str | Path, *, default_received: datetime | None = None) -> list[Call]:
    """Every call of a CSV (header row), JSON-lines or JSON-array file (see ``_callfile.iter_calls``).

    Raises
    ------
    InvalidInput
        Naming the file and line of the first bad record.
    """
    from routing.cli._callfile import iter_calls

    return [c for c, _ in iter_calls(path, default_received=default_received or datetime.now(UTC))]


# ---------------------------------------------------------------------------------------------- suggest

def single_call(args: argparse.Namespace) -> Call:
    """The one call described by ``--lat/--lon``, ``--priority``, the flags, ``--call-id``, ``--received``.

    Raises
    ------
    InvalidInput
        No location given, or a field the call model refuses.
    """
    if args.lat is None or args.lon is None:
        raise InvalidInput("give --lat and --lon for one call, or --calls FILE for a batch", field="location")
    record: dict[str, Any] = {"lat": args.lat, "lon": args.lon, "priority": args.priority,
                              "call_id": args.call_id,
                              "received": args.received.isoformat() if args.received else None}
    record.update({f: getattr(args, f) for f in FLAGS})
    # A generated id follows the call's time (--received, else the decision time --at, else now, in UTC)
    # plus a digest of what the call is: the same call at the same time gets the same id (a retry), a
    # different one another id. Without --received the call is received now, whatever --at says.
    when = args.received or getattr(args, "at", None) or datetime.now(UTC)
    digest = hashlib.sha1(json.dumps({k: v for k, v in record.items() if k != "received"}, sort_keys=True)
                          .encode()).hexdigest()[:6]
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S") + (f"{when.microsecond:06d}" if when.microsecond else "")
    return Call.from_dict(record, default_id=f"cli-{stamp}-{digest}")


def _suggest(args: argparse.Namespace) -> int:
    if args.calls and (args.lat is not None or args.lon is not None):
        raise InvalidInput("give either --calls FILE or --lat/--lon, not both", field="calls")
    # The decision time (shifts, staleness, speeds): --at for the whole command; without it each call's
    # own `received` (the single call's --received, each row's column), else now.
    now = args.at or args.received or datetime.now(UTC)
    if args.calls:  # streamed: answers written as computed, bounded memory for any file size
        from routing.cli._callfile import suggest_stream

        return suggest_stream(args, now, open_store=_store, text=_suggestion_text)
    calls = [single_call(args)]
    from routing.dispatch import decision_inputs, suggest
    from routing.eta import warm_up
    from routing.places import load_places

    network = network_from_args(args, at=now)
    places = load_places(args.data)
    rules = load_rules(args.rules)
    store = _store(args, network)
    # The same call id again (suggest, then assign): without --received it is the recorded call.
    calls = [store.reconcile_call(calls[0], received_given=args.received is not None)]
    teams = store.teams()
    started = time.perf_counter()
    if len(calls) > len(teams):  # more calls than team positions: make every call a lookup
        warm_up(teams, network=network)
    results = [suggest(c, teams, network=network, rules=rules, places=places, now=now, top=args.top,
                       stale_after_s=args.stale_after) for c in calls]
    elapsed = time.perf_counter() - started
    store.record_suggestions(results, decision_inputs(teams, network=network, rules=rules, now=now,
                                                      top=args.top, stale_after_s=args.stale_after))
    speeds = speeds_line(network.profile, args)
    if not args.calls:
        status = store.call_status(results[0].call.call_id)
        extra: dict[str, Any] = {"call_status": status}
        warning = ""
        if status in ("cleared", "cancelled"):
            # A dispatcher must not act on a ranking for a call that is already closed.
            extra["warning"] = (f"call {results[0].call.call_id} is {status}: these teams would be sent to a "
                                "closed call (use a new call id for a new incident)")
            warning = "WARNING: " + extra["warning"] + "\n"
        emit(args, {**results[0].to_dict(), "profile": network.profile, **extra},
             lambda _: warning + _suggestion_text(results[0], args.top) + "\n" + speeds)
        return 0
    batch = {"count": len(results), "elapsed_s": round(elapsed, 4),
             "calls_per_s": round(len(results) / elapsed, 1) if elapsed > 0 else None,
             "profile": network.profile, "results": [r.to_dict() for r in results]}
    if args.json:
        _emit_compact(batch)
        return 0
    emit(args, batch, lambda _: "\n\n".join(_suggestion_text(r, args.top) for r in results)
         + f"\n\n{len(results)} calls in {elapsed:.3f} s ({len(results) / max(elapsed, 1e-9):.0f} calls/s)"
         + f"\n{speeds}")
    return 0


def _emit_compact(obj: dict[str, Any]) -> None:
    """One compact JSON document in one write: a batch answer can be megabytes, and the indented,
    chunked output of ``emit`` would take longer than computing it."""
    try:
        text = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):  # something not plain JSON: take the general converter
        text = json.dumps(to_jsonable(obj), allow_nan=False, separators=(",", ":"))
    sys.stdout.write(text + "\n")


def _fmt_age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _suggestion_text(r: SuggestionResult, top: int | None = None, where: str | None = None) -> str:
    c = r.call
    place = ", ".join(x for x in (c.neighborhood, c.district) if x) or "unknown area"
    head = f"{c.call_id}  {c.klass}  P{c.priority}  {place}  ({c.lat:.5f}, {c.lon:.5f})"
    lines = [head]
    if where:
        lines.append(f"  at {where}")
    lines.append(f"  rule {r.rule}: " + " → ".join(t.name for t in r.tiers))
    lines.append("  " + r.message)
    if r.suggestions:
        tw = max([9, *(len(s.team_id) for s in r.suggestions)])  # long ids widen the column
        lines.append(f"  {'#':>2}  {'team':<{tw}} {'type':<13} {'ETA':>11} {'km':>6}  note")
        for s in r.suggestions:
            notes = []
            if s.stale:
                notes.append(f"position {_fmt_age(s.position_age_s)} old (stale)")
            if s.status != TeamStatus.available:
                notes.append(s.status.value)
            if s.dedicated:
                notes.append("dedicated")
            lines.append(f"  {s.rank:>2}  {s.team_id:<{tw}} {s.team_type.value:<13} {format_eta(s.eta_s):>11} "
                         f"{s.distance_m / 1000:>6.2f}  {', '.join(notes)}".rstrip())
        if r.omitted:
            lines.append(f"      ... {r.omitted} more eligible")
    counts: dict[str, int] = {}
    for i in r.ineligible:
        counts[i.code] = counts.get(i.code, 0) + 1
    if counts:
        lines.append("  not suggested: " + ", ".join(f"{n} {code.replace('_', ' ')}"
                                                     for code, n in sorted(counts.items())))
    if not r.suggestions:
        # Nobody can come: every team of the call's tiers with its reason (busy ones included).
        notable = [i for i in r.ineligible if i.code != "wrong_type" and i.team_id]
        shown = len(notable)
    else:
        notable = [i for i in r.ineligible if i.code in ("dedicated_mh_only", "outside_area", "outside_hours")
                   and i.team_id]
        shown = 4
    for i in notable[:shown]:
        lines.append(f"    {i.team_id}: {i.reason}")
    if len(notable) > shown:
        lines.append(f"    ... {len(notable) - shown} more (--json lists every team's reason)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- assign

def _assign(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # --time-limit bounds the whole command's solving, not CP-SAT alone
    now = args.at or datetime.now(UTC)
    from routing.cli._callfile import iter_calls, plan_text

    pairs = list(iter_calls(args.calls, default_received=now))
    from routing.lifecycle import assign_waiting
    from routing.places import load_places

    network = network_from_args(args, at=now)
    places = load_places(args.data)
    rules = load_rules(args.rules)
    store = _store(args, network)
    # Only the calls still waiting are assigned: a re-run on the same file changes nothing and says so.
    # One transaction applies the plan (Store.apply_plan): a team that moved meanwhile keeps its call
    # with the ETA from where it is now; one that was taken (e.g. by the service) is refused alone.
    out = assign_waiting(store, [c for c, _ in pairs], network=network, rules=rules, places=places, now=now,
                         received_given=[g for _, g in pairs], dry_run=args.dry_run, actor="cli",
                         inputs_extra={"time_limit_s": args.time_limit},
                         tier_penalty_s=args.tier_penalty, unserved_penalty_s=args.unserved_penalty,
                         stale_after_s=args.stale_after,
                         time_limit_s=max(0.0, args.time_limit - (time.perf_counter() - started)))
    emit(args, {**out, "profile": network.profile},
         lambda r: plan_text(r) + "\n" + r["message"] + "\n" + speeds_line(network.profile, args))
    return 0


def _assignment_text(r: AssignmentResult) -> str:
    # Columns as wide as the longest id (a CAD call id is often longer than the header).
    cw = max([12, *(len(a.call_id) for a in r.assignments), *(len(u.call_id) for u in r.unserved)])
    tw = max([9, *(len(a.team_id) for a in r.assignments)])
    lines = [f"{'call':<{cw}} {'team':<{tw}} {'type':<13} {'tier':<22} {'ETA':>11}"]
    for a in r.assignments:
        lines.append(f"{a.call_id:<{cw}} {a.team_id:<{tw}} {a.team_type.value:<13} {a.tier:<22} "
                     f"{format_eta(a.eta_s):>11}" + ("  (stale position)" if a.stale else ""))
    for u in r.unserved:
        lines.append(f"{u.call_id:<{cw}} {'-':<{tw}} unserved: {u.reason}")
    proof = "proven optimal" if r.optimal else f"not proven optimal ({r.status})"
    lines.append(f"objective {r.objective:.1f} weighted s, {proof}, solved in {r.solve_time_s * 1000:.0f} ms")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- demo

def _demo(args: argparse.Namespace) -> int:
    from routing.dispatch import decision_inputs, suggest
    from routing.places import load_places

    now = args.at or datetime.now(UTC)
    network = network_from_args(args, at=now)
    places = load_places(args.data)
    rules = load_rules(args.rules)
    store = None
    if args.db is not None:
        store = Store(args.db, fleet=args.fleet, network=network)
        teams = store.teams()
        source = f"live fleet in {args.db}"
    else:
        teams = [TeamState.at_base(t, now) for t in load_fleet(args.fleet, places=places)]
        source = "default fleet at its staging sites" if args.fleet is None else f"{args.fleet} at its bases"
    calls = sample_calls(now)
    results = []
    for c in calls:
        r = suggest(c, teams, network=network, rules=rules, places=places, now=now, top=args.top)
        results.append(r)
        if r.best is not None and not args.independent:  # the chosen team is busy for the next calls
            teams = [replace(ts, status=TeamStatus.en_route) if ts.team_id == r.best.team_id else ts
                     for ts in teams]
    if store is not None:
        store.record_suggestions(results, decision_inputs(teams, network=network, rules=rules, now=now,
                                                          top=args.top, demo=True))
    map_note = None if args.no_map else _write_map(args, results, teams, places, network, now)
    local = now.astimezone(ZoneInfo(DEFAULT_TIMEZONE))
    payload = {"now": now.isoformat(), "fleet": source, "sequential": not args.independent, "teams": len(teams),
               "network": network.info(), "profile": network.profile, "map": map_note,
               "results": [r.to_dict() for r in results]}

    def text(_: Any) -> str:
        mode = ("each call against the same fleet" if args.independent
                else "in turn: each call's first-ranked team is then en route")
        head = [f"crisis-dispatch demo: {len(calls)} sample calls, {len(teams)} teams ({source})",
                f"calls dispatched {mode}",
                f"time: {local.strftime('%a %Y-%m-%d %H:%M')} Boston ({now.isoformat(timespec='seconds')}); "
                f"road network {network.n_nodes:,} nodes; {speeds_line(network.profile, args)}",
                f"rules: {rules.source}", "", ""]
        where = {c.call_id: d["where"] for c, d in zip(calls, SAMPLE_CALLS, strict=True)}
        body = "\n\n".join(_suggestion_text(r, args.top, where.get(r.call.call_id)) for r in results)
        tail = f"\n\nmap: {map_note}" if map_note else ""
        return "\n".join(head) + body + tail

    emit(args, payload, text)
    return 0


def _write_map(args: argparse.Namespace, results: list[SuggestionResult], teams: list[TeamState],
               places: Places | None, network: RoadNetwork, now: datetime) -> str:
    """Write the demo's dispatch map; returns where it went."""
    from maps.base import save_map
    from maps.dispatch import dispatch_map

    offline = offline_requested(args)
    m = dispatch_map(results, teams=teams, places=places, network=network, now=now, offline=offline)
    return str(save_map(m, args.map, offline=offline).resolve())
