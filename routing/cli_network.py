"""CLI: ``network info``, ``route``, ``isochrone``."""

from __future__ import annotations

import argparse
import json

from routing.cli import emit, number_arg, parse_latlon, write_json_file
from routing.network import RoadNetwork, load_network


def add_network_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads the road network."""
    parser.add_argument("--source", metavar="SRC",
                        help="road data instead of DATA/boston: a CSV export dir, .osm/.xml/.pbf, .graphml, "
                             "or 'online' (download Boston from OpenStreetMap once, then cached)")
    parser.add_argument("--speeds", metavar="TOML", help="travel-time model (default: data/speeds.toml)")
    parser.add_argument("--mode", choices=("emergent", "non_emergent"), help="response mode for travel times")
    parser.add_argument("--hour", type=_hour, help="hour of day 0-23 for time-of-day speed factors")


_hour = number_arg(int, low=0, high=23, what="an hour of day 0-23")


def network_from_args(args: argparse.Namespace) -> RoadNetwork:
    """Load the network the command-line options name, in the requested profile."""
    network = load_network(args.data, source=args.source, speeds=args.speeds)
    if getattr(args, "mode", None) or getattr(args, "hour", None) is not None:
        network = network.with_profile(args.mode, args.hour)
    return network




def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    network = subparsers.add_parser("network", help="the road network")
    network_sub = network.add_subparsers(dest="network_command", metavar="ACTION")
    network_sub.required = True
    info = network_sub.add_parser("info", parents=[common], help="size, source and extent of the network")
    add_network_args(info)
    info.set_defaults(func=_info)

    route = subparsers.add_parser("route", parents=[common], help="fastest route between two points")
    route.add_argument("--from", dest="origin", required=True, type=parse_latlon, metavar="LAT,LON")
    route.add_argument("--to", dest="destination", required=True, type=parse_latlon, metavar="LAT,LON")
    route.add_argument("--geojson", metavar="FILE", help="also write the route as a GeoJSON Feature")
    add_network_args(route)
    route.set_defaults(func=_route)

    iso = subparsers.add_parser("isochrone", parents=[common], help="area reachable within a time budget")
    iso.add_argument("--from", dest="origin", required=True, type=parse_latlon, metavar="LAT,LON")
    iso.add_argument("--minutes", required=True, type=float)
    add_network_args(iso)
    iso.set_defaults(func=_isochrone)


def _info(args: argparse.Namespace) -> int:
    info = network_from_args(args).info()
    emit(args, info, lambda i: "\n".join(f"{k:>16}: {v}" for k, v in i.items()))
    return 0


def _route(args: argparse.Namespace) -> int:
    route = network_from_args(args).route(args.origin, args.destination)
    if args.geojson:
        write_json_file(args.geojson, route.to_geojson(), field="geojson")
    emit(args, route, lambda r: f"{r.travel_time_s / 60:.1f} min, {r.distance_m / 1000:.2f} km, "
                                f"{len(r.nodes)} nodes")
    return 0


def _isochrone(args: argparse.Namespace) -> int:
    import shapely

    polygon = network_from_args(args).isochrone(*args.origin, args.minutes * 60)
    feature = {"type": "Feature", "geometry": json.loads(shapely.to_geojson(polygon)),
               "properties": {"minutes": args.minutes, "from": list(args.origin)}}
    emit(args, feature)
    return 0
