"""CLI: ``serve``, the HTTP dispatch service (FastAPI + uvicorn) over the CLI's database.

``--workers N`` runs N worker processes with uvicorn's own supervisor (``uvicorn.run(..., workers=N)``:
spawned processes sharing the listening socket, restarted if one dies). The parent checks the options,
prepares the road-network cache and creates or checks the database once, then passes the options to the
workers in the environment (:data:`WORKER_ENV`); each worker builds its app with :func:`worker_app`,
reading the prepared network from the cache (no worker builds or writes it). The workers share the
database file: every write commits through SQLite's lock (see :mod:`routing.service.app`), so the
durability guarantees of one process hold for all of them.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from routing.cli import emit
from routing.errors import InvalidInput

if TYPE_CHECKING:
    from fastapi import FastAPI

#: Environment variable through which ``serve --workers N`` hands its options to the worker processes.
WORKER_ENV = "CRISIS_DISPATCH_SERVE_WORKER"
#: GIL switch interval of a server process, seconds (Python's default is 5 ms); see :func:`_app`.
SWITCH_INTERVAL_S = 0.00025
#: Most worker processes accepted (a few per core is already too many for CPU-bound work).
MAX_WORKERS = 64


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
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes sharing the port and the database (default 1; about one per "
                            "core: each runs its suggestions on one core)")
    serve.add_argument("--keep-alive", type=float, default=75.0, metavar="SECONDS",
                       help="close a client's idle connection after this many seconds (default 75 s, as "
                            "nginx; uvicorn's own 5 s makes CAD clients and locators reconnect all the time)")
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


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on now, before loading anything (uvicorn would exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"--host {host!r} cannot be resolved: {exc.strerror}", field="host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="port") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.no_auth and not _is_loopback(args.host):
        raise InvalidInput(f"--no-auth is allowed only on a loopback address, not {args.host}", field="host")
    if args.write_group < 1:
        raise InvalidInput("--write-group must be at least 1", field="write_group")
    if args.max_body is not None and args.max_body < 1024:
        raise InvalidInput("--max-body must be at least 1024 bytes", field="max_body")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise InvalidInput(f"--workers must be 1-{MAX_WORKERS}", field="workers")
    if not (math.isfinite(args.keep_alive) and 1 <= args.keep_alive <= 3600):
        raise InvalidInput("--keep-alive must be 1-3600 seconds", field="keep_alive")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    # Everything that can fail for a user reason fails here, as a one-line error, before listening.
    _check_port_free(args.host, args.port)
    config = _worker_config(args)
    loaded = _load(config, prepare=True)
    if args.json:
        emit(args, {"host": args.host, "port": args.port, "auth": not args.no_auth, "workers": args.workers,
                    "docs": f"http://{args.host}:{args.port}/docs"})
        sys.stdout.flush()
    # A worker loads the road network before it answers uvicorn's health check: at a million nodes or on
    # a busy machine that takes longer than uvicorn's 5 s default, which then kills and replaces it.
    common: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": args.log_level,
                              "access_log": args.access_log, "timeout_graceful_shutdown": 5,
                              "timeout_keep_alive": args.keep_alive,
                              "timeout_worker_healthcheck": 120}
    if args.workers == 1:
        uvicorn.run(_app(config, **loaded), **common)
        return 0
    # The parent only supervises: it drops what it loaded (the workers load their own copies from the
    # cache it has just prepared) and hands the options over in the environment, which spawned
    # processes inherit.
    del loaded
    os.environ[WORKER_ENV] = json.dumps(config)
    uvicorn.run("routing.cli.serve:worker_app", factory=True, workers=args.workers, **common)
    return 0


def _worker_config(args: argparse.Namespace) -> dict[str, Any]:
    """The options a worker needs, as JSON-ready values (paths as strings)."""
    from routing.service.app import MAX_BODY_BYTES
    from routing.service.auth import TOKENS_ENV

    tokens = None if args.no_auth else (args.tokens or os.environ.get(TOKENS_ENV))

    def path(value: Any) -> str | None:
        return None if value is None else str(value)

    return {"db": path(args.db), "data": path(args.data), "source": path(args.source),
            "boundary": path(args.boundary), "speeds": path(args.speeds), "mode": args.mode,
            "fleet": path(args.fleet), "rules": path(args.rules), "tokens": path(tokens), "auth": not args.no_auth,
            "max_body": args.max_body or MAX_BODY_BYTES, "write_group": args.write_group}


def _load(config: dict[str, Any], *, prepare: bool) -> dict[str, Any]:
    """Tokens, road network and places of ``config``; with ``prepare``, also check the rules and the database.

    In the parent (``prepare``) this builds the network cache if missing and creates or checks the
    database, so a user error is one line before listening; in a worker it only reads.
    """
    from routing.config import resolve_data_dir
    from routing.network import load_network
    from routing.service.auth import TokenTable

    tokens = None
    if config["auth"]:
        tokens = TokenTable.from_file(config["tokens"]) if config["tokens"] else TokenTable.from_env()
    stats: dict[str, Any] = {}
    network = load_network(config["data"], source=config["source"], speeds=config["speeds"],
                           boundary=config["boundary"], stats=stats)
    if not prepare and not stats.get("from_cache", True):
        logging.getLogger("crisis_dispatch.service").warning("worker %d built the road network: the cache "
                                                             "prepared by the parent was not found", os.getpid())
    if config["mode"]:
        network = network.with_profile(config["mode"])
    data_dir = resolve_data_dir(config["data"])
    places = None
    if data_dir is not None:
        from routing.places import load_places

        places = load_places(data_dir)
    if prepare:
        from routing.store import Store
        from routing.triage import load_rules

        load_rules(config["rules"])
        Store(config["db"], fleet=config["fleet"], network=network).close()  # creates or checks the database
    return {"tokens": tokens, "network": network, "places": places, "data_dir": data_dir}


def _app(config: dict[str, Any], *, tokens: Any, network: Any, places: Any, data_dir: Any) -> FastAPI:
    from routing.service.app import create_app

    # A server process has three busy threads: the event loop, the one computing suggestions and the
    # database writer. The writer gives up the GIL at every SQLite call and, with Python's default 5 ms
    # switch interval, may wait that long to get it back from the computing thread each time, while it
    # holds the database's write lock (every worker waits with it). A shorter interval bounds those
    # waits; the cost, a few more thread switches, is small with so few threads.
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    return create_app(db=config["db"], data_dir=data_dir, tokens=tokens, auth=config["auth"], fleet=config["fleet"],
                      rules=config["rules"], network=network, places=places, max_body_bytes=config["max_body"],
                      write_group=config["write_group"])


def worker_app() -> FastAPI:
    """The app of one ``serve --workers N`` worker process, from the options in :data:`WORKER_ENV`.

    Called by uvicorn in each spawned worker (``factory=True``).

    Raises
    ------
    RuntimeError
        If :data:`WORKER_ENV` is unset (not started by ``serve --workers``).
    """
    raw = os.environ.get(WORKER_ENV)
    if not raw:
        raise RuntimeError(f"{WORKER_ENV} is not set: worker_app is started by 'crisis-dispatch serve --workers N'")
    config = json.loads(raw)
    return _app(config, **_load(config, prepare=False))
