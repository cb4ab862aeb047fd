"""CLI: ``network info``, ``route``, ``isochrone``."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from routing.cli import emit, number_arg, parse_latlon, progress_for, run_parameters, time_arg, write_json_file
from routing.units import format_eta

if TYPE_CHECKING:  # the engine is imported by the commands that run, so that --help starts fast
    from routing.network import RoadNetwork

#: Help of ``--at`` where the command has no other use for it than the speeds.
AT_HELP = ("decision time: ISO 8601 with offset, or HH:MM today in Boston (default: now); its local hour "
           "chooses the hour-of-day speed factors unless --hour is given")


def add_network_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads the road network.

    Adds ``--at`` too unless the command already has one (``suggest``, ``coverage``, ``fleet position``
    ...): one clock decides shifts, staleness and speeds.
    """
    parser.add_argument("--source", metavar="SRC",
                        help="road data instead of DATA/boston: a CSV export dir, .osm/.xml/.osm.bz2, "
                             ".osm.pbf (needs pyosmium), .graphml, or 'online' (download Boston from "
                             "OpenStreetMap once, then cached); default: the osmnx CSV export in DATA/boston")
    parser.add_argument("--boundary", metavar="FILE",
                        help="service-area polygon (GeoJSON, shapefile, ...); default: Boston's boundary for "
                             "Boston data, else the road network's own extent")
    parser.add_argument("--speeds", metavar="TOML", help="travel-time model (default: data/speeds.toml)")
    parser.add_argument("--mode", choices=("emergent", "non_emergent"),
                        help="response mode for travel times (default: the speed model's default_mode, "
                             "non_emergent in data/speeds.toml)")
    parser.add_argument("--hour", type=_hour, metavar="H",
                        help="local (Boston) hour of day 0-23 for the hour-of-day speed factors; overrides the "
                             "hour of --at for speeds only (default: the hour of --at, else of now)")
    if "--at" not in parser._option_string_actions:
        parser.add_argument("--at", type=time_arg, metavar="TIME", help=AT_HELP)


_hour = number_arg(int, low=0, high=23, what="an hour of day 0-23")
_iso_minutes = number_arg(float, low=0, high=180, low_open=True, what="minutes in (0, 180]")


def network_from_args(args: argparse.Namespace, at: datetime | None = None) -> RoadNetwork:
    """Load the network the command-line options name, with the speeds of the command's decision time.

    ``network.for_time(at or --at, mode=--mode, hour=--hour)``: the local hour of the decision time
    (``at``, a command's resolved "now", else ``--at``, else now) unless ``--hour`` is given. Its
    ``profile`` says which mode and hour were used, and why.
    """
    from routing.network import load_network

    network = load_network(args.data, source=args.source, speeds=args.speeds,
                           boundary=getattr(args, "boundary", None), progress=progress_for(args))
    when = at if at is not None else getattr(args, "at", None)
    return network.for_time(when, mode=getattr(args, "mode", None), hour=getattr(args, "hour", None))


def speeds_line(profile: dict[str, Any], args: argparse.Namespace) -> str:
    """The line every text result ends with: ``speeds: non_emergent, 17:00 (from --at)``."""
    hour = profile.get("hour")
    if hour is None:
        return f"speeds: {profile.get('mode')}, off-peak baseline"
    if profile.get("hour_source") == "hour":
        why = "from --hour"
    elif getattr(args, "at", None) is not None:
        why = "from --at"
    else:
        why = "now"
    return f"speeds: {profile.get('mode')}, {int(hour):02d}:00 ({why})"




def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    network = subparsers.add_parser("network", help="the road network")
    network_sub = network.add_subparsers(dest="network_command", metavar="ACTION")
    network_sub.required = True
    info = network_sub.add_parser("info", parents=[common], help="size, source and extent of the network")
    add_network_args(info)
    info.set_defaults(func=_info)

    route = subparsers.add_parser("route", parents=[common], help="fastest route between two points")
    route.add_argument("--from", dest="origin", required=True, type=parse_latlon, metavar="LAT,LON",
                       help="start: latitude,longitude in WGS84 decimal degrees (required)")
    route.add_argument("--to", dest="destination", required=True, type=parse_latlon, metavar="LAT,LON",
                       help="destination: latitude,longitude in WGS84 decimal degrees (required)")
    route.add_argument("--geojson", metavar="FILE",
                       help="also write the route as a GeoJSON Feature, with the speeds it was computed with "
                            "(default: not written)")
    add_network_args(route)
    route.set_defaults(func=_route)

    iso = subparsers.add_parser("isochrone", parents=[common], help="area reachable within a time budget")
    iso.add_argument("--from", dest="origin", required=True, type=parse_latlon, metavar="LAT,LON",
                     help="start: latitude,longitude in WGS84 decimal degrees (required)")
    iso.add_argument("--minutes", required=True, type=_iso_minutes, metavar="M",
                     help="time budget in minutes, in (0, 180] (required)")
    iso.add_argument("--geojson", metavar="FILE",
                     help="also write the area as a GeoJSON Feature (lon/lat), with the speeds it was computed "
                          "with (default: not written; --json prints it)")
    add_network_args(iso)
    iso.set_defaults(func=_isochrone)


def _info(args: argparse.Namespace) -> int:
    network = network_from_args(args)
    info = network.info()

    def text(i: dict[str, Any]) -> str:
        rows = {**i, "profile": speeds_line(network.profile, args).removeprefix("speeds: ")}
        return "\n".join(f"{k:>16}: {v}" for k, v in rows.items())

    emit(args, info, text)
    return 0


def _route(args: argparse.Namespace) -> int:
    network = network_from_args(args)
    route = network.route(args.origin, args.destination)
    if args.geojson:
        doc = {**route.to_geojson(), "parameters": run_parameters(args, profile=network.profile)}
        write_json_file(args.geojson, doc, field="geojson")
    out = {**route.to_dict(), "profile": network.profile}
    emit(args, out, lambda _: f"{format_eta(route.travel_time_s)}, {route.distance_m / 1000:.2f} km, "
                              f"{len(route.nodes)} nodes\n{speeds_line(network.profile, args)}")
    return 0


def _isochrone(args: argparse.Namespace) -> int:
    import shapely

    network = network_from_args(args)
    lat, lon = args.origin
    polygon = network.isochrone(lat, lon, args.minutes * 60)
    feature = {"type": "Feature", "geometry": json.loads(shapely.to_geojson(polygon)),
               "properties": {"minutes": args.minutes, "from": list(args.origin), "profile": network.profile}}
    if args.geojson:
        write_json_file(args.geojson, {**feature, "parameters": run_parameters(args, profile=network.profile)},
                        field="geojson")
    if args.json:
        emit(args, feature)
        return 0
    # People read a summary; the polygon itself (thousands of vertices) goes to --geojson or --json.
    from pyproj import Geod

    area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(polygon)[0]) / 1e6
    lon_min, lat_min, lon_max, lat_max = polygon.bounds if not polygon.is_empty else (lon, lat, lon, lat)
    text = (f"reachable within {args.minutes:g} min of {lat:.5f},{lon:.5f}: {area_km2:.1f} km2, "
            f"{shapely.get_num_geometries(polygon)} part(s), bbox lat {lat_min:.4f}..{lat_max:.4f}, "
            f"lon {lon_min:.4f}..{lon_max:.4f}"
            + (f"\nwritten to {args.geojson}" if args.geojson else "\n(--geojson FILE writes the area)")
            + f"\n{speeds_line(network.profile, args)}")
    emit(args, feature, text)
    return 0
