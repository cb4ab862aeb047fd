"""CLI: a dispatcher's shift on recorded calls (``call list|show|assign|status|cancel|clear``), the call
audit trail (``audit``) and ``fleet sync``.

Every command works on the shared SQLite database (``--db``), the same one the service uses; every
change is recorded with its time and actor (``cli``). Errors are one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from routing.cli import emit, number_arg, time_arg
from routing.cli.dispatch import _store, add_db, add_rules
from routing.cli.network import add_network_args, network_from_args
from routing.store import CALL_STATUSES, Store
from routing.units import local_clock

_limit = number_arg(int, low=1, what="a positive integer")
_ACTOR = "cli"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``call``, ``audit`` and ``fleet sync``."""
    call = subparsers.add_parser("call", help="recorded calls: list, show, assign a team, cancel, clear")
    sub = call.add_subparsers(dest="call_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", parents=[common], help="recorded calls with their status (newest last)")
    p.add_argument("--status", metavar="STATUS",
                   help=f"only calls in this status: open (not cleared nor cancelled), {', '.join(CALL_STATUSES)} "
                        "(default: all)")
    p.add_argument("--limit", type=_limit, default=50, help="at most the newest N calls (default 50)")
    p.add_argument("--before", type=time_arg, metavar="TIME", help="only calls received before TIME (default: any)")
    p.add_argument("--after", type=time_arg, metavar="TIME", help="only calls received after TIME (default: any)")
    add_db(p)
    p.set_defaults(func=_list)

    p = sub.add_parser("show", parents=[common], help="a call: its status, teams, assignments and events")
    p.add_argument("call_id", metavar="ID", help="the recorded call's id (required)")
    add_db(p)
    p.set_defaults(func=_show)

    p = sub.add_parser("assign", parents=[common], help="send a chosen team to a recorded call (team en route)")
    p.add_argument("call_id", metavar="ID", help="the recorded call's id (required)")
    p.add_argument("team", metavar="TEAM", help="the team to send, by id (required)")
    p.add_argument("--override", metavar="REASON",
                   help="assign a dispatchable team outside the suggestions (or one that left this call), "
                        "recording why (default: only a suggested team)")
    p.add_argument("--additional", action="store_true",
                   help="send this team although the call already has one (e.g. EMS backing a co-response car)")
    add_db(p)
    add_rules(p)
    add_network_args(p)
    p.set_defaults(func=_assign)

    p = sub.add_parser("status", parents=[common], help="move a call along its lifecycle; its teams follow")
    p.add_argument("call_id", metavar="ID", help="the recorded call's id (required)")
    p.add_argument("status", metavar="STATUS", help="en_route, on_scene, cleared or cancelled")
    p.add_argument("--note", help="free text recorded with the event (default: none)")
    add_db(p)
    p.set_defaults(func=_status)

    for name, target, text in (("cancel", "cancelled", "cancel a call not on scene yet: its en-route teams are free"),
                               ("clear", "cleared", "clear a call (dealt with): its teams go returning")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("call_id", metavar="ID", help="the recorded call's id (required)")
        p.add_argument("--note", help="free text recorded with the event (default: none)")
        add_db(p)
        p.set_defaults(func=_status, status=target)

    p = subparsers.add_parser("audit", parents=[common],
                              help="the call audit trail: every status change, with time and actor")
    p.add_argument("--call", metavar="ID", help="only this call (default: every call)")
    p.add_argument("--since", type=time_arg, metavar="TIME", help="only events at or after TIME (default: no limit)")
    p.add_argument("--limit", type=_limit, default=200, help="at most the newest N events (default 200)")
    add_db(p)
    p.set_defaults(func=_audit)

    # ``fleet`` itself belongs to routing.cli.dispatch, registered before this module.
    fleet = subparsers.choices.get("fleet")
    if fleet is not None:
        fleet_sub = next(a for a in fleet._actions if isinstance(a, argparse._SubParsersAction))
        p = fleet_sub.add_parser("sync", parents=[common],
                                 help="make the database's teams those of the fleet file (adds and retires "
                                      "teams, keeps history)")
        p.add_argument("--db", metavar="PATH", help="fleet database (default: $CRISIS_DISPATCH_DB or "
                                                    "./crisis-dispatch.db)")
        p.add_argument("--fleet", metavar="TOML", help="fleet file (default: data/fleet.toml)")
        p.add_argument("--dry-run", action="store_true", help="print the difference only")
        p.set_defaults(func=_sync)


def _call_line(r: dict[str, Any]) -> str:
    c = r["call"]
    flags = ",".join(k for k in ("mental_health", "safety_risk", "weapon", "needs_transport") if c.get(k)) or "-"
    return (f"{c['call_id']:<20} {r['status']:<10} P{c.get('priority', 2)} {local_clock(c['received'])}  "
            f"{c['lat']:.5f},{c['lon']:.5f}  {flags}")


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    page = store.call_page(status=args.status, limit=args.limit, before=args.before, after=args.after)
    result = {"db": str(store.path), "calls": page}
    emit(args, result, lambda r: "\n".join([f"{'call':<20} {'status':<10} pri received                 location"]
                                           + [_call_line(x) for x in r["calls"]]
                                           + [f"{len(r['calls'])} calls"]))
    return 0


def _record_text(r: dict[str, Any]) -> str:
    lines = [_call_line(r), f"  teams now: {', '.join(r['teams']) or '-'}"]
    for a in r["assignments"]:
        extra = " (additional)" if a["additional"] else ""
        left = f", left {local_clock(a['released_at'])}" if a["released_at"] else ""
        lines.append(f"  assigned {a['team_id']}{extra} at {local_clock(a['created_at'])} by {a['actor'] or '-'}{left}")
    for e in r["events"]:
        lines.append(f"  {local_clock(e['at'])}  {e['old_status'] or '-'} -> {e['new_status']}"
                     + (f"  team {e['team_id']}" if e["team_id"] else "") + f"  by {e['actor']}"
                     + (f"  ({e['note']})" if e["note"] else ""))
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    emit(args, _store(args).call_record(args.call_id), _record_text)
    return 0


def _assign(args: argparse.Namespace) -> int:
    from routing.lifecycle import assign_team
    from routing.places import load_places
    from routing.triage import load_rules

    store = _store(args)
    call = store.call(args.call_id)  # an unknown call fails before the network loads
    store.team(args.team)
    now = args.at or datetime.now(UTC)
    network = network_from_args(args, at=call.received)
    out = assign_team(store, args.call_id, args.team, network=network, rules=load_rules(args.rules),
                      places=load_places(args.data), now=now, override=args.override or False,
                      additional=args.additional, actor=_ACTOR)
    emit(args, out, lambda r: r["message"])
    return 0


def _status(args: argparse.Namespace) -> int:
    out = _store(args).set_call_status(args.call_id, args.status, actor=_ACTOR, note=args.note)
    emit(args, out, lambda r: (f"{args.call_id}: {r['status']}" if r["changed"]
                               else f"{args.call_id} was already {r['status']}; nothing changed"))
    return 0


def _audit(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.call is not None:
        store.call(args.call)  # an unknown call is an error, not an empty trail
    events = store.events(call_id=args.call, since=args.since, limit=args.limit)

    def line(e: dict[str, Any]) -> str:
        return (f"{local_clock(e['at'])}  {e['call_id']:<20} {e['old_status'] or '-':>9} -> {e['new_status']:<9}"
                + (f" team {e['team_id']}" if e["team_id"] else "") + f"  by {e['actor']}"
                + (f"  ({e['note']})" if e["note"] else ""))

    emit(args, {"events": events}, lambda r: "\n".join(line(e) for e in r["events"]) or "no events")
    return 0


def _sync(args: argparse.Namespace) -> int:
    with Store(args.db) as store:
        diff = store.fleet_difference(args.fleet) if args.dry_run else store.sync_fleet(args.fleet)
    result = {"db": str(store.path), "applied": not args.dry_run, **diff}
    emit(args, result, lambda r: ("; ".join(f"{k}: {', '.join(r[k])}" for k in ("added", "retired", "changed")
                                            if r.get(k)) or "the database already matches the fleet file")
         + ("" if r["applied"] or not diff else " (dry run: nothing changed)"))
    return 0

