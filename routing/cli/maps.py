"""CLI: ``map {dispatch,fleet,coverage,staging} --out FILE.html [--offline]``.

Each map takes the options of the command whose result it draws (``suggest``, plus ``--demo`` for the
demo's sample calls; ``fleet list``; ``coverage``; ``stage``) and writes one HTML file. ``--offline``
(or ``CRISIS_DISPATCH_OFFLINE=1``) makes the page self-contained: Leaflet and its styles inlined from
locally installed packages, no tiles, the neighborhood outlines and the road network as the base. A map
is a view: unlike ``suggest`` it records nothing in the database's audit trail.

The rendering lives in ``maps/``; this module only gathers the engine's results.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing.cli import OFFLINE_ENV, emit, number_arg, offline_requested
from routing.errors import InvalidInput


def _out_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"--out must be a file, {text!r} is a directory")
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory of --out does not exist: {path.resolve().parent}")
    return path


def _map_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=_out_path, metavar="FILE.html",
                        help="HTML file to write (required)")
    parser.add_argument("--offline", action="store_true",
                        help=f"self-contained page: no CDN, no tiles (also ${OFFLINE_ENV}=1)")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``map`` and its four kinds."""
    from routing.cli import dispatch as cli_dispatch
    from routing.cli.network import add_network_args

    top = subparsers.add_parser("map", help="draw a result as a self-contained HTML map")
    kinds = top.add_subparsers(dest="map_kind", metavar="KIND")
    kinds.required = True

    p = kinds.add_parser("fleet", parents=[common], help="every team by type and status, sites, service areas")
    _map_args(p)
    cli_dispatch.add_db(p)
    p.add_argument("--stale-after", type=cli_dispatch.seconds, metavar="S",
                   help="seconds after which a position is shown stale (default: from the rules, 900 in "
                        "data/rules.toml)")
    p.add_argument("--rules", metavar="TOML", help="rules file giving the default staleness limit "
                                                   "(default: data/rules.toml)")
    p.add_argument("--at-base", action="store_true",
                   help="draw the fleet file's teams at their staging sites instead of the database's state")
    add_network_args(p)
    p.set_defaults(func=_fleet)

    p = kinds.add_parser("dispatch", parents=[common],
                         help="a call (or each call of a file) with its ranked teams and their routes")
    cli_dispatch.add_call_args(p, call_id_help="identifier shown on the map (default: generated)")
    p.add_argument("--calls", metavar="FILE",
                   help="several calls: CSV or JSON lines, one per call (format: examples/README.md; default: "
                        "the one call of --lat/--lon)")
    p.add_argument("--top", type=cli_dispatch.positive_int, metavar="N",
                   help="at most N suggested teams per call (default: every eligible team)")
    p.add_argument("--routes", type=_non_negative_int, metavar="N",
                   help="draw the routes of the N fastest teams per call, a number of teams (default 3 for one "
                        "call, 1 for several)")
    p.add_argument("--demo", action="store_true",
                   help="the demo's sample calls against the default fleet at its bases (no database)")
    _map_args(p)
    cli_dispatch.add_db(p)
    cli_dispatch.add_rules(p)
    add_network_args(p)
    p.set_defaults(func=_dispatch)

    _register_planning(kinds, common)


_non_negative_int = number_arg(int, low=0, what="a non-negative integer")


def _register_planning(kinds: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``map coverage`` / ``map staging`` with the options of ``coverage`` / ``stage``."""
    from routing.cli import planning as cli_planning

    p = kinds.add_parser("coverage", parents=[common],
                         help="coverage by neighborhood, travel times on the streets, demand, gaps")
    _map_args(p)
    cli_planning.add_coverage_args(p)
    p.set_defaults(func=_coverage)

    p = kinds.add_parser("staging", parents=[common],
                         help="proposed staging sites versus today's, the streets each reaches first")
    _map_args(p)
    cli_planning.add_staging_args(p)
    p.add_argument("--reach-outlines", action="store_true",
                   help="also outline each proposed site's full reach within the standard (slower)")
    p.set_defaults(func=_staging)


# ---------------------------------------------------------------------------------------------- run

def _written(args: argparse.Namespace, kind: str, path: Path, offline: bool, extra: dict[str, Any],
             profile: dict[str, Any]) -> int:
    from routing.cli.network import speeds_line

    result = {"map": kind, "out": str(path.resolve()), "offline": offline, "bytes": path.stat().st_size, **extra,
              "profile": profile}
    mode = "offline, self-contained" if offline else "online: CDN assets and OpenStreetMap tiles"
    emit(args, result, lambda r: f"wrote {r['out']} ({kind} map, {mode}, {r['bytes'] / 1e6:.1f} MB)\n"
                                 + speeds_line(profile, args))
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from maps.base import save_map
    from maps.fleet import fleet_map
    from routing.cli.network import network_from_args
    from routing.fleet import TeamState, load_fleet
    from routing.places import load_places

    offline = offline_requested(args)
    places = load_places(args.data)
    now = args.at or datetime.now(UTC)
    network = network_from_args(args, at=now)
    if args.at_base:
        states = [TeamState.at_base(t, now) for t in load_fleet(args.fleet, places=places)]
    else:
        from routing.store import Store

        states = Store(args.db, fleet=args.fleet, network=network).teams()
    from routing.triage import load_rules

    stale_after = args.stale_after if args.stale_after is not None else load_rules(args.rules).stale_after_s
    m = fleet_map(states, places=places, network=network, now=now, offline=offline, stale_after_s=stale_after)
    path = save_map(m, args.out, offline=offline)
    return _written(args, "fleet", path, offline, {"teams": len(states)}, network.profile)


def _dispatch(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from maps.base import save_map
    from maps.dispatch import dispatch_map
    from routing.cli import dispatch as cli_dispatch
    from routing.cli.network import network_from_args
    from routing.dispatch import suggest
    from routing.fleet import TeamState, TeamStatus, load_fleet
    from routing.places import load_places
    from routing.triage import load_rules

    given = [x for x, on in (("--calls", bool(args.calls)), ("--lat/--lon", args.lat is not None or
                                                               args.lon is not None), ("--demo", args.demo)) if on]
    if len(given) > 1:
        raise InvalidInput(f"give one of --calls FILE, --lat/--lon or --demo, not {' and '.join(given)}",
                           field="calls")
    offline = offline_requested(args)
    now = args.at or datetime.now(UTC)
    network = network_from_args(args, at=now)
    places = load_places(args.data)
    rules = load_rules(args.rules)
    if args.demo:
        calls = cli_dispatch.sample_calls(now)
        teams = [TeamState.at_base(t, now) for t in load_fleet(args.fleet, places=places)]
    else:
        calls = (cli_dispatch.read_calls(args.calls, default_received=now) if args.calls
                 else [cli_dispatch.single_call(args)])
        from routing.store import Store

        teams = Store(args.db, fleet=args.fleet, network=network).teams()
    results = []
    for call in calls:
        r = suggest(call, teams, network=network, rules=rules, places=places, now=now, top=args.top,
                    stale_after_s=args.stale_after)
        results.append(r)
        if args.demo and r.best is not None:  # as in `demo`: the chosen team is en route for the next call
            teams = [replace(ts, status=TeamStatus.en_route) if ts.team_id == r.best.team_id else ts
                     for ts in teams]
    m = dispatch_map(results if len(results) > 1 else results[0], network=network, teams=teams, places=places,
                     offline=offline, routes=args.routes, now=now)
    path = save_map(m, args.out, offline=offline)
    best = [{"call_id": r.call.call_id, "team_id": r.best.team_id if r.best else None,
             "eta_s": round(r.best.eta_s, 1) if r.best else None} for r in results]
    return _written(args, "dispatch", path, offline, {"calls": best}, network.profile)


def _coverage(args: argparse.Namespace) -> int:
    from maps.base import save_map
    from maps.coverage import coverage_map
    from routing.cli.planning import coverage_result_from_args

    offline = offline_requested(args)
    result, context = coverage_result_from_args(args)
    m = coverage_map(result, network=context["network"], places=context["places"], offline=offline)
    path = save_map(m, args.out, offline=offline)
    return _written(args, "coverage", path, offline, {"covered_share": round(result.overall_covered_share, 4),
                                                      "gaps": [g["name"] for g in result.gaps[:10]]},
                    context["network"].profile)


def _staging(args: argparse.Namespace) -> int:
    from maps.base import save_map
    from maps.staging import staging_map
    from routing.cli.planning import staging_result_from_args

    offline = offline_requested(args)
    plan, context = staging_result_from_args(args)
    m = staging_map(plan, network=context["network"], places=context["places"], problem=context["problem"],
                    demand=context["demand"], offline=offline, reach_outlines=args.reach_outlines)
    path = save_map(m, args.out, offline=offline)
    return _written(args, "staging", path, offline, {"sites": [s.site_id for s in plan.sites],
                                                     "covered_share": round(plan.covered_share, 4)},
                    context["network"].profile)
