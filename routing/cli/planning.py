"""CLI: ``demand``, ``coverage`` and ``stage`` (planning and analysis).

- ``demand``: the demand surface (calls a year per neighborhood), optionally per node as GeoJSON.
- ``coverage --team-type TYPE --minutes M [--from-staging]``: ETA from the nearest team of the type to
  every node; per neighborhood demand, covered share, median and p90 ETA; gaps ranked by uncovered
  demand. Teams come from the fleet database (dispatchable teams where they are now) or, with
  ``--from-staging``, the fleet file's staging sites.
- ``stage --model {mclp,pmedian,lscp,backup} --sites P --minutes T``: choose staging sites among the
  real police and fire stations, hospitals and community centres (plus ``--candidates FILE``), and
  compare them with today's staging in the fleet file.

``map coverage`` / ``map staging`` reuse :func:`add_coverage_args` / :func:`add_staging_args` and
:func:`coverage_result_from_args` / :func:`staging_result_from_args`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routing.cli import emit, number_arg, progress_for, run_parameters, time_arg, write_json_file
from routing.errors import InvalidInput
from routing.units import format_eta

if TYPE_CHECKING:  # types only: the CLI imports the engine where a command needs it
    from collections.abc import Sequence

    from routing.coverage import CoverageResult
    from routing.demand import DemandSurface
    from routing.fleet import Team, TeamState
    from routing.network import RoadNetwork
    from routing.places import Places, Site
    from routing.staging import StagingPlan

#: ``routing.staging.MODELS``, spelled out so that ``stage --help`` does not import the solvers (a test
#: checks they agree).
STAGING_MODELS = ("mclp", "pmedian", "lscp", "backup")
#: Team types that answer mental-health calls: today's staging for ``stage`` without ``--team-type``.
CRISIS_TEAM_TYPES = ("co_response", "emt_clinician", "community")
_CALL_FLAGS = ("mental_health", "safety_risk", "weapon", "needs_transport")


# ---------------------------------------------------------------------------------------------- arguments

_positive_minutes = number_arg(float, low=0, high=180, low_open=True, what="minutes in (0, 180]")


_positive_int = number_arg(int, low=1, what="a positive integer")


_positive_float = number_arg(float, low=0, low_open=True, what="a positive number")


_non_negative_float = number_arg(float, low=0, what="a non-negative number")


_fraction = number_arg(float, low=0, high=1, high_open=True, what="a number in [0, 1)")


def _call_class(text: str) -> dict[str, bool]:
    flags = [f.strip().replace("-", "_") for f in text.split(",") if f.strip()]
    if flags == ["other"]:
        return {f: False for f in _CALL_FLAGS}
    bad = [f for f in flags if f not in _CALL_FLAGS]
    if bad or not flags:
        raise argparse.ArgumentTypeError(f"call class is 'other' or comma-separated flags from "
                                         f"{', '.join(_CALL_FLAGS)}; got {text!r}")
    return {f: f in flags for f in _CALL_FLAGS}


def _add_demand_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("demand")
    group.add_argument("--demand", metavar="CSV",
                       help="your own demand: CSV with lat, lon and optional weight columns "
                            "(default: BPD mental-health-proxy incidents, citywide 2023 Q1)")
    group.add_argument("--annual-total", type=_positive_float, metavar="N",
                       help="scale demand to N calls a year (default 10,000 for the built-in surface; "
                            "a --demand file keeps its weights unless given)")
    group.add_argument("--bandwidth", type=_non_negative_float, metavar="M",
                       help="kernel bandwidth in metres spreading each point over nearby nodes "
                            "(default 250 for the built-in surface, 0 for --demand files)")


def _add_fleet_args(parser: argparse.ArgumentParser, *, db: bool) -> None:
    from routing.store import default_db_path

    if db:
        parser.add_argument("--db", metavar="PATH", type=Path,
                            help=f"fleet database (default: $CRISIS_DISPATCH_DB or ./{default_db_path().name}); "
                                 "created on first use from --fleet")
    parser.add_argument("--fleet", metavar="TOML", help="fleet file (default: data/fleet.toml)")


def add_coverage_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``coverage`` (also used by ``map coverage``)."""
    from routing.cli.network import add_network_args

    who = parser.add_mutually_exclusive_group()
    who.add_argument("--team-type", action="append", metavar="TYPE", dest="team_type",
                     help="team type (co_response, emt_clinician, community, police, ems); repeat for several; "
                          "default: every team")
    who.add_argument("--call-class", type=_call_class, metavar="FLAGS",
                     help="the whole eligible fleet of a call class, e.g. 'mental_health', "
                          "'mental_health,safety_risk' or 'other' (tiers from the rules; default: --team-type)")
    parser.add_argument("--minutes", type=_positive_minutes, required=True, metavar="M",
                        help="time standard in minutes, in (0, 180], e.g. 8, 10, 12 (required)")
    parser.add_argument("--from-staging", action="store_true",
                        help="teams at their staging sites (fleet file) instead of where they are now")
    parser.add_argument("--at", type=time_arg, metavar="TIME",
                        help="leave out teams off shift at this time (ISO 8601 with offset, or HH:MM today in "
                             "Boston); its local hour also chooses the hour-of-day speeds unless --hour is given "
                             "(default: every team, speeds of now)")
    parser.add_argument("--rules", metavar="TOML", help="triage rules for --call-class (default: data/rules.toml)")
    _add_fleet_args(parser, db=True)
    _add_demand_args(parser)
    add_network_args(parser)


def add_staging_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``stage`` (also used by ``map staging``)."""
    from routing.cli.network import add_network_args

    parser.add_argument("--model", choices=STAGING_MODELS, default="mclp",
                        help="mclp: most demand within T with P sites; pmedian: least demand-weighted travel "
                             "time; lscp: fewest sites covering all demand within T; backup: MEXCLP, demand "
                             "covered twice counts (busy teams). Default mclp")
    parser.add_argument("--sites", type=_positive_int, metavar="P",
                        help="number of sites (default: today's number of sites for the team type)")
    parser.add_argument("--minutes", type=_positive_minutes, metavar="T",
                        help="time standard in minutes (required, except with --list-candidates)")
    parser.add_argument("--team-type", metavar="TYPE",
                        help="plan for this team type: today's staging is its bases in the fleet file "
                             f"(default: the crisis teams, {', '.join(CRISIS_TEAM_TYPES)})")
    parser.add_argument("--candidates", metavar="FILE",
                        help="extra candidate sites: CSV with id, name, lat, lon (default: none)")
    parser.add_argument("--kinds", nargs="+", choices=("police", "fire", "hospital", "community"),
                        help="real candidate kinds to use (default: all)")
    parser.add_argument("--fixed", nargs="+", default=[], metavar="ID",
                        help="site ids forced in, e.g. police:B2 (default: none)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="ID", help="site ids left out (default: none)")
    parser.add_argument("--busy-fraction", type=_fraction, default=0.3, metavar="Q",
                        help="backup model: probability a team is busy, a fraction in [0, 1) (default 0.3, an "
                             "assumption)")
    parser.add_argument("--allow-uncoverable", action="store_true",
                        help="lscp: ignore demand that no candidate reaches within T instead of failing")
    parser.add_argument("--time-limit", type=_positive_float, default=120.0, metavar="S",
                        help="solver time limit in seconds (default 120); the status says if it stopped early")
    parser.add_argument("--no-compare", action="store_true", help="skip the comparison with today's staging")
    _add_fleet_args(parser, db=False)
    _add_demand_args(parser)
    add_network_args(parser)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``demand``, ``coverage`` and ``stage``."""
    from routing.cli.network import add_network_args

    p = subparsers.add_parser("demand", parents=[common],
                              help="expected mental-health calls a year per neighborhood (the demand surface)")
    _add_demand_args(p)
    p.add_argument("--geojson", metavar="FILE",
                   help="also write the per-node demand as GeoJSON points, with the parameters it was computed "
                        "with (default: not written)")
    p.add_argument("--hourly", action="store_true",
                   help="add the hour-of-day profile and calls per hour x neighborhood")
    add_network_args(p)
    p.set_defaults(func=_demand)

    p = subparsers.add_parser("coverage", parents=[common],
                              help="coverage of demand within a time standard by neighborhood, with the gaps")
    add_coverage_args(p)
    p.add_argument("--geojson", metavar="FILE",
                   help="also write the results as GeoJSON, with the parameters they were computed with "
                        "(default: not written)")
    p.add_argument("--geojson-level", choices=("neighborhood", "node"), default="neighborhood",
                   help="one polygon per neighborhood (default) or one point per network node")
    p.set_defaults(func=_coverage)

    p = subparsers.add_parser("stage", parents=[common],
                              help="choose staging sites (MCLP, p-median, LSCP, backup coverage)")
    add_staging_args(p)
    p.add_argument("--geojson", metavar="FILE",
                   help="also write proposed and today's sites as GeoJSON, with the parameters they were "
                        "computed with (default: not written)")
    p.add_argument("--list-candidates", action="store_true", help="list the candidate site ids and exit")
    p.set_defaults(func=_stage)


# ---------------------------------------------------------------------------------------------- builders

def _context(args: argparse.Namespace) -> tuple[RoadNetwork, Places, DemandSurface]:
    from routing.cli.network import network_from_args
    from routing.coverage import default_demand
    from routing.demand import demand_from_csv, load_demand
    from routing.places import load_places

    network = network_from_args(args)
    places = load_places(args.data)
    if args.demand:
        demand = demand_from_csv(args.demand, network, places, annual_total=args.annual_total,
                                 bandwidth_m=args.bandwidth if args.bandwidth is not None else 0.0)
    elif args.annual_total is not None or args.bandwidth is not None:
        kwargs: dict[str, Any] = {}
        if args.annual_total is not None:
            kwargs["annual_total"] = args.annual_total
        if args.bandwidth is not None:
            kwargs["bandwidth_m"] = args.bandwidth
        demand = load_demand(network, places, data_dir=args.data, **kwargs)
    else:
        demand = default_demand(network, places, args.data)
    return network, places, demand


def coverage_result_from_args(args: argparse.Namespace) -> tuple[CoverageResult, dict[str, Any]]:
    """Run ``coverage`` from parsed options; returns (CoverageResult, context for maps)."""
    from routing.coverage import eligible_team_types, fleet_coverage
    from routing.fleet import load_fleet

    network, places, demand = _context(args)
    team_types: list[str] | None = args.team_type
    mental_health = True
    if args.call_class is not None:
        from routing.triage import load_rules

        team_types = eligible_team_types(load_rules(args.rules), **args.call_class)
        mental_health = args.call_class["mental_health"]
    if args.from_staging:
        teams: Sequence[Team | TeamState] = load_fleet(args.fleet, places=places)
    else:
        from routing.store import Store

        teams = Store(args.db, fleet=args.fleet, network=network).teams()
    result = fleet_coverage(teams, network=network, places=places, minutes=args.minutes, team_types=team_types,
                            demand=demand, from_staging=args.from_staging, at=args.at,
                            mental_health=mental_health)
    return result, {"places": places, "network": network, "demand": demand}


def _today(args: argparse.Namespace, places: Places) -> tuple[list[Site], str | None]:
    from routing.fleet import load_fleet, parse_team_type
    from routing.staging import today_sites

    team_type = parse_team_type(args.team_type).value if args.team_type else None
    teams = load_fleet(args.fleet, places=places)
    return today_sites(teams, team_type or list(CRISIS_TEAM_TYPES)), team_type


def staging_result_from_args(args: argparse.Namespace) -> tuple[StagingPlan, dict[str, Any]]:
    """Run ``stage`` from parsed options; returns (StagingPlan, context for maps)."""
    from routing.staging import build_problem, plan_staging

    if args.minutes is None:
        raise InvalidInput("--minutes T is required", field="minutes")
    network, places, demand = _context(args)
    today, team_type = _today(args, places)
    progress = progress_for(args)
    problem = build_problem(network, places, demand=demand, candidates_csv=args.candidates, kinds=args.kinds,
                            progress=progress)
    p = args.sites
    if p is None and args.model != "lscp":
        if not today:
            raise InvalidInput(f"--sites P is required: the fleet has no {team_type or 'crisis'} teams to count",
                               field="sites")
        p = len(today)
    try:
        plan = plan_staging(problem, args.model, minutes=args.minutes, p=p, fixed=args.fixed,
                            exclude=args.exclude, today=None if args.no_compare else today,
                            team_type=team_type, busy_fraction=args.busy_fraction,
                            allow_uncoverable=args.allow_uncoverable, time_limit_s=args.time_limit,
                            progress=progress)
    except InvalidInput as exc:
        if args.model == "lscp" and "LSCP is infeasible" in exc.message:
            raise InvalidInput(exc.message + "; or pass --allow-uncoverable", field=exc.field) from None
        raise
    return plan, {"places": places, "network": network, "demand": demand, "problem": problem}


# ---------------------------------------------------------------------------------------------- commands

def _write_geojson(path: str, doc: dict[str, Any], args: argparse.Namespace, **extra: Any) -> None:
    """Write a GeoJSON export with the ``parameters`` it was computed with (options, speed profile)."""
    write_json_file(path, {**doc, "parameters": run_parameters(args, **extra)}, field="geojson")


def _fmt_s(v: float | None) -> str:
    return "  -  " if v is None else f"{v / 60:5.1f}"


def _demand(args: argparse.Namespace) -> int:
    from routing.demand import arrival_rates, hourly_profile

    network, places, demand = _context(args)
    out = demand.to_dict()
    if args.hourly:
        if args.demand:
            raise InvalidInput("--hourly describes the built-in incident data; drop --demand", field="hourly")
        profile = hourly_profile(args.data)
        out["hourly_profile"] = profile.to_dict()
        out["arrival_rates"] = arrival_rates(demand, profile).to_dict()
    if args.geojson:
        _write_geojson(args.geojson, demand.to_geojson(), args, profile=network.profile)

    def text(d: dict[str, Any]) -> str:
        lines = [d["description"], f"{d['annual_total']:,.0f} calls a year on {d['nodes_with_demand']:,} of "
                 f"{d['nodes']:,} nodes ({d['points_used']:,} points, {d['points_dropped']} off the network)", ""]
        lines.append(f"{'neighborhood':<26}{'calls/yr':>10}{'share':>8}")
        for r in d["neighborhoods"]:
            lines.append(f"{r['name']:<26}{r['demand']:>10,.0f}{r['share']:>8.1%}")
        if "hourly_profile" in d:
            # The citywide hour-of-day profile: expected calls in each local hour over a year.
            shares = d["hourly_profile"]["citywide"]
            lines += ["", f"{'hour':<6}{'calls/yr':>10}{'share':>8}"]
            lines += [f"{h:02d}:00 {d['annual_total'] * s:>10,.0f}{s:>8.1%}" for h, s in enumerate(shares)]
        return "\n".join(lines)

    emit(args, out, text)
    return 0


def _coverage(args: argparse.Namespace) -> int:
    from routing.cli.network import speeds_line

    result, context = coverage_result_from_args(args)
    if args.geojson:
        _write_geojson(args.geojson, result.to_geojson(args.geojson_level), args,
                       profile=context["network"].profile, label=result.label,
                       level=args.geojson_level)

    def text(r: CoverageResult) -> str:
        lines = [f"{r.label}: {len(r.responders)} team(s), standard {r.minutes:g} min",
                 f"covered: {r.overall_covered_share:.1%} of {r.total_demand:,.0f} calls a year; "
                 f"median ETA {format_eta(r.median_eta_s)}, p90 {format_eta(r.p90_eta_s)}", "",
                 f"{'neighborhood':<26}{'calls/yr':>9}{'covered':>9}{'med min':>9}{'p90 min':>9}"]
        for n in r.neighborhoods:
            share = "   -" if n.covered_share is None else f"{n.covered_share:8.1%}"
            lines.append(f"{n.name:<26}{n.demand:>9,.0f}{share:>9}{_fmt_s(n.median_eta_s):>9}"
                         f"{_fmt_s(n.p90_eta_s):>9}")
        if r.gaps:
            lines += ["", "gaps (uncovered calls a year): " + ", ".join(
                f"{g['name']} {g['uncovered_demand']:,.0f}" for g in r.gaps[:8])]
        for e in r.excluded:
            lines.append(f"left out: {e['label']} ({e['reason']})")
        return "\n".join(lines)

    profile = context["network"].profile
    emit(args, {**result.to_dict(), "profile": profile},
         lambda _: text(result) + "\n" + speeds_line(profile, args))
    return 0


def _stage(args: argparse.Namespace) -> int:
    if args.list_candidates:
        from routing.places import load_places
        from routing.staging import candidate_sites

        sites = candidate_sites(load_places(args.data), kinds=args.kinds, candidates_csv=args.candidates)
        rows = [{"id": s.site_id, "name": s.name, "kind": s.kind, "lat": s.lat, "lon": s.lon} for s in sites]
        emit(args, {"candidates": rows}, lambda d: "\n".join(f"{s['id']:<40} {s['name']}" for s in d["candidates"]))
        return 0
    from routing.cli.network import speeds_line

    plan, context = staging_result_from_args(args)
    if args.geojson:
        _write_geojson(args.geojson, plan.to_geojson(), args, profile=context["network"].profile)

    def text(p: StagingPlan) -> str:
        gap = "" if p.gap is None else f", gap {p.gap:.2%}"
        lines = [f"{p.model}: {p.p} site(s), standard {p.minutes:g} min, {p.status}{gap}, solved in {p.solve_s:.2f} s",
                 f"objective ({p.objective_label}): {p.objective:,.1f}",
                 f"covered within {p.minutes:g} min: {p.covered_share:.1%} of {p.total_demand:,.0f} calls a year; "
                 f"mean ETA {format_eta(p.mean_eta_s)}", "",
                 f"{'site':<34}{'name':<44}{'served/yr':>10}"]
        for s in p.sites:
            fixed = "  (fixed)" if s.fixed else ""
            lines.append(f"{s.site_id:<34}{s.name[:43]:<44}{s.demand_served:>10,.0f}{fixed}")
        c = p.comparison
        if c is not None:
            lines += ["", f"today's staging ({len(c.today_sites)} site(s)): {c.today_covered_share:.1%} covered; "
                          f"proposed: {c.proposed_covered_share:.1%} "
                          f"({c.proposed_covered_demand - c.today_covered_demand:+,.0f} calls a year)"]
            if c.same_count is not None:
                same = c.same_count
                lines.append(f"with today's number of sites ({same['p']}) placed by MCLP: {same['covered_share']:.1%} "
                             f"({same['extra_covered_demand']:+,.0f} calls a year)")
        return "\n".join(lines)

    profile = context["network"].profile
    emit(args, {**plan.to_dict(), "profile": profile}, lambda _: text(plan) + "\n" + speeds_line(profile, args))
    return 0
