"""Bounded work: history and listing pages with 1M position reports and 100k calls, and a 100k-row
``suggest --calls`` batch (time and peak memory).

Fills a temporary database by bulk insert (the store's own schema and indexes), then times

- through the store: the last 10 positions of a team, the newest 10 calls, the newest 10 open calls,
  against the naive way (read the whole history, then slice) run on the same file;
- through the real HTTP service (``crisis-dispatch serve`` on loopback): ``GET /teams/{id}/positions?limit=10``,
  ``GET /calls?limit=10``, ``GET /calls?status=open&limit=10``;
- ``crisis-dispatch suggest --calls FILE --jsonl`` with N rows in a child process: wall time and peak
  resident memory (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``).

    python3 bench/bench_store.py [--positions 1000000] [--calls 100000] [--batch 100000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import REPO, data_dir, summary, timed

from routing.store import Store

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def fill(db: Path, n_positions: int, n_calls: int) -> str:
    """Bulk-insert position reports (spread over the teams) and calls (most cleared); returns a team id."""
    Store(db, now=T0).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous = OFF")
    teams = [r[0] for r in con.execute("SELECT team_id FROM teams ORDER BY seq")]
    rng = random.Random(1)

    def positions():
        for i in range(n_positions):
            t = (T0 + timedelta(seconds=i)).isoformat(timespec="microseconds")
            yield teams[i % len(teams)], 42.3 + rng.random() * 0.05, -71.1 + rng.random() * 0.05, t, t

    con.executemany("INSERT INTO positions (team_id, lat, lon, at, recorded_at) VALUES (?, ?, ?, ?, ?)", positions())

    def calls():
        for i in range(n_calls):
            t = (T0 + timedelta(seconds=30 * i)).isoformat(timespec="microseconds")
            data = json.dumps({"call_id": f"b-{i}", "received": t, "lat": 42.33, "lon": -71.08, "mental_health": True,
                               "safety_risk": False, "weapon": False, "needs_transport": False, "priority": 2,
                               "neighborhood": None, "district": None}, sort_keys=True)
            yield f"b-{i}", t, data, t, "cleared" if i < n_calls - 20 else "received", t

    con.executemany("INSERT INTO calls (call_id, received, data, recorded_at, status, status_time) "
                    "VALUES (?, ?, ?, ?, ?, ?)", calls())
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return teams[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_timings(db: Path, team: str, data: Path, work: Path) -> None:
    port = _free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "routing.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--db", str(db), "--data", str(data), "--no-auth", "--log-level", "warning"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                con = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                con.request("GET", "/health")
                if con.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"error: server did not start; see {work / 'server.log'}") from None
                time.sleep(0.2)
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def get(path: str) -> None:
            con.request("GET", path)
            r = con.getresponse()
            body = r.read()
            assert r.status == 200, body[:300]

        print("through the HTTP service (one keep-alive connection):")
        for path in (f"/teams/{team}/positions?limit=10", "/calls?limit=10", "/calls?status=open&limit=10",
                     f"/teams/{team}/positions?limit=10&before=2025-01-05T00:00:00Z"):
            summary(f"GET {path}", timed(lambda p=path: get(p), 30))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def batch(db: Path, n: int, data: Path, work: Path) -> None:
    from routing.errors import InvalidInput
    from routing.network import load_network

    network = load_network(data)
    path = work / "calls.csv"
    rng = random.Random(2)
    with open(path, "w") as fh:
        fh.write("call_id,lat,lon,mental_health,safety_risk,priority\n")
        i = 0
        while i < n:  # uniform over a box in the city, keeping the points inside the service area
            # Rounded before the check: the file's 6 decimals must not move a point across the limit.
            lat, lon = round(42.25 + rng.random() * 0.12, 6), round(-71.16 + rng.random() * 0.12, 6)
            try:
                network.check_point(lat, lon)
            except InvalidInput:
                continue
            fh.write(f"q-{i},{lat:.6f},{lon:.6f},{int(rng.random() < 0.6)},{int(rng.random() < 0.2)},"
                     f"{rng.randint(1, 4)}\n")
            i += 1
    # Measured in a fresh wrapper process: RUSAGE_CHILDREN of this one would include the server.
    wrapper = ("import resource, subprocess, sys\n"
               "with open(sys.argv[1], 'wb') as out:\n"
               "    code = subprocess.call(sys.argv[2:], stdout=out)\n"
               "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    started = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", wrapper, str(work / "batch.out"), sys.executable, "-m", "routing.cli",
                          "suggest", "--calls", str(path), "--db", str(db), "--data", str(data), "--jsonl",
                          "--top", "3"], cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    took = time.perf_counter() - started
    code, peak_kb = (int(x) for x in res.stdout.split())
    if code:
        print("  the batch failed (its error is above)")
    with open(work / "batch.out", "rb") as fh:
        lines = sum(1 for _ in fh)
    print(f"suggest --calls ({n:,} rows, --jsonl): exit {code}, {took:.1f} s ({n / took:,.0f} calls/s), "
          f"{lines:,} lines out, peak RSS {peak_kb / 1024:,.0f} MB (ru_maxrss of the child)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100_000, help="rows of the suggest batch (0: skip)")
    args = parser.parse_args()
    data = data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "big.db"
        started = time.perf_counter()
        team = fill(db, args.positions, args.calls)
        print(f"filled {db.name}: {args.positions:,} positions, {args.calls:,} calls in "
              f"{time.perf_counter() - started:.1f} s ({os.path.getsize(db) / 1e6:,.0f} MB)")
        with Store(db) as s:
            print("through the store:")
            summary(f"position_history({team}, limit=10)", timed(lambda: s.position_history(team, limit=10), 50))
            summary("call_page(limit=10)", timed(lambda: s.call_page(limit=10), 50))
            summary("call_page(status='open', limit=10)", timed(lambda: s.call_page(status="open", limit=10), 50))
            con = s._con()
            summary("naive: whole history, then slice (positions)",
                    timed(lambda: [dict(r) for r in con.execute(
                        "SELECT lat, lon, at, recorded_at FROM positions WHERE team_id = ? "
                        "ORDER BY min(at, recorded_at), id", (team,)).fetchall()][-10:], 3))
            summary("naive: every call parsed, then slice", timed(lambda: [json.loads(r[0]) for r in con.execute(
                "SELECT data FROM calls ORDER BY received, call_id").fetchall()][-10:], 3))
        http_timings(db, team, data, work)
        if args.batch:
            batch(work / "batch.db", args.batch, data, work)


if __name__ == "__main__":
    main()
