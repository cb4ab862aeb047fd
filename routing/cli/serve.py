"""CLI: ``serve``, the HTTP dispatch service (FastAPI + uvicorn) over the CLI's database."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from routing.cli import emit
from routing.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    serve = subparsers.add_parser(
        "serve", parents=[common], help="run the HTTP dispatch service (for CAD systems and vehicle locators)",
        description="Load the road network once, then answer HTTP requests (OpenAPI docs at /docs). "
                    "Bearer tokens and roles come from the JSON file named by --tokens or "
                    "$CRISIS_DISPATCH_TOKENS_FILE (see docs/SERVICE.md).")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, metavar="PORT", help="TCP port number (default 8000)")
    serve.add_argument("--db", metavar="PATH",
                       help="SQLite database shared with the CLI (default $CRISIS_DISPATCH_DB or "
                            "./crisis-dispatch.db)")
    serve.add_argument("--tokens", metavar="FILE",
                       help="tokens file: JSON mapping token -> role (default $CRISIS_DISPATCH_TOKENS_FILE)")
    serve.add_argument("--no-auth", action="store_true",
                       help="admit every request as admin; only allowed on a loopback address")
    serve.add_argument("--fleet", metavar="TOML", help="fleet file for a new database (default data/fleet.toml)")
    serve.add_argument("--rules", metavar="TOML", help="triage rules (default data/rules.toml)")
    serve.add_argument("--source", metavar="SRC",
                       help="road data instead of DATA/boston (as for 'route'; default: DATA/boston)")
    serve.add_argument("--boundary", metavar="FILE",
                       help="service-area polygon for --source (as for 'route'; default: Boston's boundary)")
    serve.add_argument("--speeds", metavar="TOML", help="travel-time model (default data/speeds.toml)")
    serve.add_argument("--mode", choices=("emergent", "non_emergent"),
                       help="response mode for travel times (default: the speed model's default_mode, "
                            "non_emergent in data/speeds.toml)")
    serve.add_argument("--max-body", type=int, default=None, metavar="BYTES",
                       help="largest accepted request body in bytes (default 262144)")
    serve.add_argument("--write-group", type=int, default=256, metavar="N",
                       help="at most N queued writes share one commit (default 256; 1 = one fsync per write)")
    serve.add_argument("--access-log", action="store_true", help="log every request line (never headers)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                       help="least severe messages logged (default info)")
    serve.set_defaults(func=_serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer 1-65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer 1-65535, got {text!r}")
    return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from routing.config import resolve_data_dir
    from routing.network import load_network
    from routing.service.app import MAX_BODY_BYTES, create_app
    from routing.service.auth import TokenTable
    from routing.store import Store
    from routing.triage import load_rules

    if args.no_auth and not _is_loopback(args.host):
        raise InvalidInput(f"--no-auth is allowed only on a loopback address, not {args.host}", field="host")
    if args.write_group < 1:
        raise InvalidInput("--write-group must be at least 1", field="write_group")
    if args.max_body is not None and args.max_body < 1024:
        raise InvalidInput("--max-body must be at least 1024 bytes", field="max_body")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    # Everything that can fail for a user reason fails here, as a one-line error, before listening.
    tokens = None if args.no_auth else (TokenTable.from_file(args.tokens) if args.tokens else TokenTable.from_env())
    network = load_network(args.data, source=args.source, speeds=args.speeds, boundary=args.boundary)
    if args.mode:
        network = network.with_profile(args.mode)
    data_dir = resolve_data_dir(args.data)
    places = None
    if data_dir is not None:
        from routing.places import load_places

        places = load_places(data_dir)
    load_rules(args.rules)
    Store(args.db, fleet=args.fleet, network=network).close()  # creates or checks the database

    app = create_app(db=args.db, data_dir=data_dir, tokens=tokens, auth=not args.no_auth, fleet=args.fleet,
                     rules=args.rules, network=network, places=places,
                     max_body_bytes=args.max_body or MAX_BODY_BYTES, write_group=args.write_group)
    if args.json:
        emit(args, {"host": args.host, "port": args.port, "auth": not args.no_auth,
                    "docs": f"http://{args.host}:{args.port}/docs"})
        sys.stdout.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                timeout_graceful_shutdown=5)
    return 0
