"""Calls files read as a stream, and ``suggest --calls`` answered as one.

A batch of 100,000 calls must not hold 100,000 answers in memory: the file is read record by record
(once to validate it whole, so a bad line 90,000 is refused before anything is written or printed,
then again to answer), every answer is written out as soon as it is computed, and the audit trail is
written in chunks, each one transaction.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from routing.errors import InvalidInput, reason
from routing.jsonlimits import check_depth
from routing.triage import Call, iter_call_records

#: Suggestions written to the audit trail per transaction.
CHUNK = 1000


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, record) for every record of a CSV, JSON-lines or JSON-array file."""
    try:
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise InvalidInput(f"calls file not found: {path}", field="calls") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read calls file {path}: {reason(exc)}", field="calls") from None
    with fh:
        try:
            head = fh.read(4096).lstrip()
            fh.seek(0)
            if not head:
                raise InvalidInput("no calls", field="calls")
            if path.suffix.lower() == ".csv" or not head.startswith(("{", "[")):
                reader = csv.DictReader(fh)
                for row in reader:
                    if None in row:
                        raise InvalidInput(f"line {reader.line_num}: more values than header columns", field="calls")
                    yield reader.line_num, {k.strip(): v for k, v in row.items() if k is not None}
            elif head.startswith("["):  # a JSON array is one document: read whole (as before)
                text = fh.read()
                check_depth(text, field="calls")  # json.loads would raise RecursionError
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"line {exc.lineno}: invalid JSON: {exc.msg}", field="calls") from None
                yield from enumerate(data, start=1)
            else:
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    check_depth(line, field="calls", where=f"line {n}")
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InvalidInput(f"line {n}: invalid JSON: {exc.msg}", field="calls") from None
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"cannot read calls file {path}: {reason(exc)}", field="calls") from None


def iter_calls(path: str | Path, *, default_received: datetime) -> Iterator[tuple[Call, bool]]:
    """Each call of the file with whether it gave its ``received`` (validated one record at a time).

    Raises
    ------
    InvalidInput
        Naming the file and line of the first bad record (or a duplicate id).
    """
    p = Path(path)
    count = 0
    try:
        for call, given in iter_call_records(_records(p), default_received=default_received):
            count += 1
            yield call, given
        if not count:
            raise InvalidInput("no calls", field="calls")
    except InvalidInput as exc:
        raise InvalidInput(f"{p}: {exc.message}", field=exc.field) from None


def suggest_stream(args: argparse.Namespace, now: datetime, *, open_store: Callable[..., Any],
                   text: Callable[..., str]) -> int:
    """``suggest --calls FILE``: answer each call as it is read; bounded memory for any file size.

    ``--json`` writes one JSON document (``profile``, ``results``, then ``count``, ``elapsed_s`` and
    ``calls_per_s``), ``--jsonl`` one answer per line and a last ``{"summary": ...}`` line, otherwise
    text (``text(result, top)``). Answers are written as computed, never gathered; ``open_store(args,
    network)`` opens the database.
    """
    from routing.cli import to_jsonable
    from routing.cli.network import network_from_args, speeds_line
    from routing.dispatch import decision_inputs, suggest
    from routing.eta import warm_up
    from routing.places import load_places
    from routing.triage import load_rules

    network = network_from_args(args, at=now)
    # Validate the whole file first, locations included: nothing is written or printed for a file
    # that would stop at a bad row half-way.
    total = 0
    for call, _ in iter_calls(args.calls, default_received=now):
        try:
            network.snap(call.lat, call.lon, field="location")
        except InvalidInput as exc:
            raise type(exc)(f"{args.calls}: call {call.call_id}: {exc.message}", field=exc.field) from None
        total += 1
    places = load_places(args.data)
    rules = load_rules(args.rules)
    store = open_store(args, network)
    teams = store.teams()
    if total > len(teams):  # more calls than team positions: make every call a lookup
        warm_up(teams, network=network)
    inputs = decision_inputs(teams, network=network, rules=rules, now=now, top=args.top,
                             stale_after_s=args.stale_after)
    out = sys.stdout
    jsonl = getattr(args, "jsonl", False)
    if args.json and not jsonl:
        out.write('{"profile":' + json.dumps(network.profile) + ',"results":[')
    started = time.perf_counter()
    pending = []
    count = 0
    per_call = getattr(args, "at", None) is None  # without --at each call is judged at its own `received`
    for call, given in iter_calls(args.calls, default_received=now):
        call = store.reconcile_call(call, received_given=given)
        when = call.received if per_call else now
        net = network.for_time(when, mode=getattr(args, "mode", None), hour=getattr(args, "hour", None)) \
            if per_call else network
        result = suggest(call, teams, network=net, rules=rules, places=places, now=when, top=args.top,
                         stale_after_s=args.stale_after)
        pending.append(result)
        if len(pending) >= CHUNK:
            store.record_suggestions(pending, inputs)
            pending.clear()
        if args.json or jsonl:
            doc = json.dumps(to_jsonable(result.to_dict()), allow_nan=False, separators=(",", ":"))
            out.write(doc + "\n" if jsonl else ("," if count else "") + doc)
        else:
            out.write(("\n" if count else "") + text(result, args.top) + "\n")
        count += 1
    if pending:
        store.record_suggestions(pending, inputs)
    elapsed = time.perf_counter() - started
    summary = {"count": count, "elapsed_s": round(elapsed, 4),
               "calls_per_s": round(count / elapsed, 1) if elapsed > 0 else None}
    if jsonl:
        out.write(json.dumps({"summary": {**summary, "profile": network.profile}}) + "\n")
    elif args.json:
        out.write('],' + json.dumps(summary)[1:] + "\n")
    else:
        clock = ("speeds and shifts: each call's `received` time (--at sets one time for all)"
                 if per_call and getattr(args, "hour", None) is None else speeds_line(network.profile, args))
        out.write(f"\n{count} calls in {elapsed:.3f} s ({count / max(elapsed, 1e-9):.0f} calls/s)\n{clock}\n")
    return 0



def plan_text(r: dict[str, Any]) -> str:
    """Text of a joint assignment answer (:func:`routing.lifecycle.assign_waiting`)."""
    from routing.units import format_eta

    rows = [*r["assignments"], *r["unserved"], *r["skipped"]]
    cw = max([12, *(len(x["call_id"]) for x in rows)])
    lines = [f"{'call':<{cw}} {'team':<9} {'type':<13} {'tier':<22} {'ETA':>11}"]
    for a in r["assignments"]:
        lines.append(f"{a['call_id']:<{cw}} {a['team_id']:<9} {a['team_type']:<13} {a['tier']:<22} "
                     f"{format_eta(a['eta_s'] if a['eta_s'] is not None else float('inf')):>11}"
                     + ("  (stale position)" if a["stale"] else ""))
    for u in r["unserved"]:
        lines.append(f"{u['call_id']:<{cw}} {'-':<9} unserved: {u['reason']}")
    for s in r["skipped"]:
        lines.append(f"{s['call_id']:<{cw}} {'-':<9} skipped: {s['status']}"
                     + (f" ({', '.join(s['teams'])})" if s.get("teams") else ""))
    if r.get("status"):
        proof = "proven optimal" if r["optimal"] else f"not proven optimal ({r['status']})"
        lines.append(f"objective {r['objective']:.1f} weighted s, {proof}, solved in {r['solve_time_s'] * 1000:.0f} ms")
    return "\n".join(lines)
