"""CLI: ``data fetch [--dir DIR]``: build a data directory from public sources (see :mod:`routing.datafetch`)."""

from __future__ import annotations

import argparse
import os
import sys

from routing.cli import emit
from routing.config import DATA_ENV
from routing.datafetch import (
    ARCGIS_ENV,
    DEFAULT_ARCGIS_URL,
    DEFAULT_OVERPASS_URL,
    DEFAULT_PORTAL_URL,
    OVERPASS_ENV,
    PORTAL_ENV,
    SOURCES,
    Endpoints,
    fetch_data,
)
from routing.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    data = subparsers.add_parser("data", help="the data directory")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    fetch = data_sub.add_parser(
        "fetch", parents=[common],
        help="download and check Boston's data from OpenStreetMap and Analyze Boston into DIR",
        description="Assemble a data directory from public sources (OpenStreetMap through osmnx, the City of "
                    "Boston's open data), check every file and record its source in DIR/manifest.json and "
                    "DIR/SOURCES.md. Files already present and valid are kept, so an interrupted run resumes.")
    fetch.add_argument("--dir", metavar="DIR",
                       help=f"target directory (default: --data, else ${DATA_ENV})")
    fetch.add_argument("--portal-url", metavar="URL",
                       help=f"Analyze Boston CKAN base URL (default: ${PORTAL_ENV}, else {DEFAULT_PORTAL_URL})")
    fetch.add_argument("--arcgis-url", metavar="URL",
                       help=f"BostonMaps ArcGIS Hub base URL (default: ${ARCGIS_ENV}, else {DEFAULT_ARCGIS_URL})")
    fetch.add_argument("--overpass-url", metavar="URL",
                       help=f"Overpass API base URL (default: ${OVERPASS_ENV}, else {DEFAULT_OVERPASS_URL})")
    fetch.add_argument("--only", metavar="FILE", action="append", choices=[s.path for s in SOURCES],
                       help="fetch only this file (and what it is derived from); repeatable")
    fetch.add_argument("--force", action="store_true", help="fetch again files that are present and valid")
    fetch.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    directory = args.dir or args.data or os.environ.get(DATA_ENV)
    if not directory:
        raise InvalidInput(f"no target directory: pass --dir DIR (or --data DIR, or set {DATA_ENV})", field="dir")
    endpoints = Endpoints.from_env(args.portal_url, args.arcgis_url, args.overpass_url)
    report = fetch_data(directory, endpoints, only=args.only, force=args.force,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    fetched = sum(1 for a in report.actions.values() if a == "fetched")
    emit(args, report, f"{report.directory}: {fetched} file(s) fetched, {len(report.actions) - fetched} kept; "
                       f"sources in {report.directory / 'SOURCES.md'}\n"
                       f"use it with --data {report.directory} or {DATA_ENV}={report.directory}")
    return 0
