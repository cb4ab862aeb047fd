"""CLI: ``moveup``: relocations of free crisis teams that restore coverage (see :mod:`routing.moveup`).

``moveup [--minutes T] [--max-moves K] [--max-travel S]`` proposes and records a plan (its id is printed);
``moveup accept ID`` sends the teams (``en_route`` to their posts, recorded); ``moveup undo ID`` puts
them back; ``moveup show ID`` prints a recorded plan and its state. Arrivals at the posts are settled
(team at the post, ``available``) whenever a move-up command runs after the planned arrival time.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from routing.cli import emit, number_arg
from routing.cli.dispatch import _store, add_db
from routing.cli.network import add_network_args, network_from_args
from routing.units import format_eta


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "moveup", parents=[common], help="move free crisis teams to restore coverage (MEXCLP, OR-Tools)",
        description="From the live fleet (the database), the relocations of available crisis teams to staging "
                    "and candidate sites that best restore expected coverage (MEXCLP: demand x (1 - q^k)), minus "
                    "a travel penalty. Never an off-shift team, never a team out of its service area. "
                    "Actions: (none) plan and record, 'accept ID', 'undo ID', 'show ID'.")
    p.add_argument("action", nargs="?", choices=["plan", "accept", "undo", "show"], default="plan",
                   help="plan (default), accept, undo or show a recorded plan")
    p.add_argument("moveup_id", nargs="?", type=int, metavar="ID", help="the plan's id (accept, undo, show)")
    p.add_argument("--minutes", type=number_arg(float, low=0.5, high=180), default=8.0,
                   help="time standard of the coverage in minutes (default 8)")
    p.add_argument("--max-moves", type=number_arg(int, low=0, high=20), default=2, metavar="K",
                   help="at most K relocations of teams (default 2)")
    p.add_argument("--max-travel", type=number_arg(float, low=1, high=7200), default=900.0, metavar="S",
                   help="longest relocation drive in seconds (default 900)")
    p.add_argument("--busy-fraction", type=number_arg(float, low=0, high=0.99), default=0.3, metavar="Q",
                   help="MEXCLP busy fraction q (default 0.3)")
    p.add_argument("--travel-penalty", type=number_arg(float, low=0), default=60.0,
                   help="expected calls a year a move must gain per hour of driving (default 60)")
    p.add_argument("--map", metavar="HTML",
                   help="also write a map of coverage before and after (plan, show; default: no map)")
    add_db(p)
    add_network_args(p)
    p.set_defaults(func=_moveup)


def _moveup(args: argparse.Namespace) -> int:
    from routing import moveup
    from routing.errors import InvalidInput
    from routing.places import load_places

    now = datetime.now(UTC)
    if args.action != "plan" and args.moveup_id is None:
        raise InvalidInput(f"moveup {args.action} needs the plan's ID", field="moveup_id")
    network = network_from_args(args, at=now)
    store = _store(args, network)
    moveup.settle(store, now)
    if args.action == "accept":
        out: dict[str, Any] = moveup.accept(store, args.moveup_id, now)
        emit(args, out, lambda d: f"move-up {d['id']} accepted: " + ", ".join(
            f"{m['team_id']} -> {m['to']['name']} (by {d['arrive_by'][m['team_id']]})" for m in d["moves"]))
        return 0
    if args.action == "undo":
        out = moveup.undo(store, args.moveup_id, now)
        emit(args, out, lambda d: f"move-up {d['id']} undone: restored {', '.join(d['restored']) or 'none'}"
             + (f"; left {', '.join(x['team_id'] for x in d['left'])}" if d["left"] else ""))
        return 0
    places = load_places(args.data)
    if args.action == "show":
        out = moveup.proposal(store, args.moveup_id)
    else:
        plan = moveup.plan_from_store(store, network=network, places=places, now=now, minutes=args.minutes,
                                      busy_fraction=args.busy_fraction, max_moves=args.max_moves,
                                      max_travel_s=args.max_travel, travel_penalty=args.travel_penalty)
        mid = moveup.propose(store, plan, moveup.plan_inputs(store))
        out = {"id": mid, "state": "proposed", **plan.to_dict()}
    if args.map:
        from maps.moveup import moveup_map

        moveup_map(out, store.teams(), network=network, places=places, offline=True).save(args.map)
    emit(args, out, _text)
    return 0


def _text(d: dict[str, Any]) -> str:
    before, after = sum(d["coverage_before"].values()), sum(d["coverage_after"].values())
    lines = [f"move-up {d['id']} ({d['state']}): expected coverage {before:.0f} -> {after:.0f} calls a year "
             f"({d['settings']['minutes']:g} min, q = {d['settings']['busy_fraction']:g}; {d['status']})"]
    for m in d["moves"]:
        lines.append(f"  {m['team_id']:<8} -> {m['to']['name']} ({m['to']['site_id']}), {format_eta(m['travel_s'])}, "
                     f"+{m['coverage_gain_alone']:.0f} alone")
    if not d["moves"]:
        lines.append("  no move is worth its drive")
    elif d["state"] == "proposed":
        lines.append(f"accept with: crisis-dispatch moveup accept {d['id']}")
    return "\n".join(lines)
