"""Benchmark of the HTTP dispatch service: a real ``crisis-dispatch serve`` (uvicorn) on loopback.

Run: ``python bench/bench_service.py`` (uses $CRISIS_DISPATCH_DATA or ../shared/data). Everything is
bounded in count and time and stays on 127.0.0.1; the server gets a temporary database and tokens file.

Prints:

1. ``POST /calls`` end-to-end latency (median, p90, p99) from one client: validation, suggestion on
   the road network, the call and its suggestion committed to SQLite, the JSON answer. Target: median
   under 15 ms, p99 under 50 ms. Then the same while 8 locators stream position updates (the write path
   must not hold suggestions up).
2. Sustained position updates per second from 8 concurrent clients (keep-alive connections, each
   reporting for its own team), then a check that every acknowledged update is in the history. Target:
   at least 500/s with nothing lost. Baseline in the same run: the same server with group commit off
   (``--write-group 1``: one fsync per update, the naive way).
3. Baseline for a suggestion without a service: one ``crisis-dispatch suggest`` process per call
   (loads the network each time), a few runs.

The clients run on the same machine as the server (2 cores here), so they take CPU from it: the
numbers are a lower bound of what the server does for clients elsewhere.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, data_dir  # noqa: E402

from routing.fleet import load_fleet  # noqa: E402

TOKEN = f"bench-admin-{secrets.token_urlsafe(24)}"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``crisis-dispatch serve`` child process on a free loopback port."""

    def __init__(self, work: Path, data: Path, *extra: str) -> None:
        self.port = _free_port()
        tokens = work / "tokens.json"
        tokens.write_text(json.dumps({TOKEN: "admin"}))
        tokens.chmod(0o600)
        self.db = work / f"bench-{self.port}.db"
        self.log = open(work / f"server-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "routing.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--db", str(self.db), "--tokens", str(tokens), "--data", str(data), "--log-level", "warning", *extra],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: server exited; see {self.log.name}")
            try:
                if self.get("/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise SystemExit("error: server did not start within 120 s")
        self.startup_s = time.perf_counter() - started

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux /proc), or None where unavailable."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def get(self, path: str) -> tuple[int, Any]:
        con = self.connection()
        try:
            con.request("GET", path, headers=HEADERS)
            r = con.getresponse()
            return r.status, json.loads(r.read())
        finally:
            con.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _request(con: http.client.HTTPConnection, method: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    con.request(method, path, body=json.dumps(body), headers=HEADERS)
    r = con.getresponse()
    return r.status, r.read()


def _quantiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"median": statistics.median(ordered) * 1000, "p90": pick(0.90) * 1000, "p99": pick(0.99) * 1000,
            "n": len(ordered)}


def _print_latency(label: str, q: dict[str, float]) -> None:
    print(f"  {label:<52} median {q['median']:7.2f} ms   p90 {q['p90']:7.2f}   p99 {q['p99']:7.2f}   n={q['n']}")


def call_points(n: int, seed: int = 7) -> list[tuple[float, float]]:
    """Call locations: road nodes of Boston with a few metres of jitter (all inside the service area)."""
    from routing.network import load_network

    net = load_network(data_dir())
    rng = np.random.default_rng(seed)
    idx = rng.choice(net.n_nodes, n, replace=False)
    return [(float(net.lat[i] + rng.normal(0, 2e-5)), float(net.lon[i] + rng.normal(0, 2e-5))) for i in idx]


def bench_calls(server: Server, points: list[tuple[float, float]], tag: str) -> dict[str, float]:
    """Sequential POST /calls from one keep-alive client; returns latency quantiles (ms)."""
    con = server.connection()
    times = []
    rng = np.random.default_rng(11)
    try:
        for k, (lat, lon) in enumerate(points):
            body = {"call_id": f"{tag}-{k}", "lat": lat, "lon": lon, "mental_health": bool(rng.random() < 0.6),
                    "safety_risk": bool(rng.random() < 0.2), "priority": int(rng.integers(1, 4))}
            start = time.perf_counter()
            status, raw = _request(con, "POST", "/calls", body)
            elapsed = time.perf_counter() - start
            if status != 201:
                raise SystemExit(f"error: POST /calls answered {status}: {raw[:300]!r}")
            times.append(elapsed)
    finally:
        con.close()
    return _quantiles(times)


class Locators:
    """``clients`` threads, each streaming position reports for its own team until stopped."""

    def __init__(self, server: Server, team_ids: list[str], *, max_each: int, rate_each: float | None = None) -> None:
        fleet = {t.team_id: t for t in load_fleet()}
        self.server = server
        self.bases = {t: (fleet[t].base_lat, fleet[t].base_lon) for t in team_ids}
        self.max_each = max_each
        self.interval = 1.0 / rate_each if rate_each else 0.0  # paced (open loop) or as fast as possible
        self.t0 = datetime.now(UTC) + timedelta(seconds=1)
        self.acked: dict[str, list[tuple[str, float, float]]] = {t: [] for t in team_ids}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in team_ids]

    def _run(self, team_id: str) -> None:
        con = self.server.connection()
        lat0, lon0 = self.bases[team_id]
        next_at = time.perf_counter()
        try:
            for i in range(self.max_each):
                if self.stop.is_set():
                    return
                if self.interval:
                    next_at += self.interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                when = (self.t0 + timedelta(milliseconds=i)).isoformat()
                lat, lon = round(lat0 + ((i % 21) - 10) * 2e-5, 7), round(lon0 + ((i % 13) - 6) * 2e-5, 7)
                status, raw = _request(con, "PUT", f"/teams/{team_id}/position",
                                       {"lat": lat, "lon": lon, "timestamp": when})
                if status != 200:
                    self.errors.append(f"{team_id}: {status} {raw[:200]!r}")
                    return
                self.acked[team_id].append((when, lat, lon))
        except OSError as exc:
            self.errors.append(f"{team_id}: {exc!r}")
        finally:
            con.close()

    def start(self) -> None:
        self.started = time.perf_counter()
        for t in self.threads:
            t.start()

    def finish(self, seconds: float) -> float:
        """Let them run ``seconds`` (or until each reached ``max_each``); returns updates per second."""
        deadline = self.started + seconds
        while time.perf_counter() < deadline and any(t.is_alive() for t in self.threads):
            time.sleep(0.02)
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        elapsed = time.perf_counter() - self.started
        return sum(map(len, self.acked.values())) / elapsed

    def lost(self) -> int:
        """Acknowledged updates missing from the stored history (must be 0)."""
        missing = 0
        for team_id, acked in self.acked.items():
            status, body = self.server.get(f"/teams/{team_id}/positions")
            assert status == 200, body
            stored = {(datetime.fromisoformat(p["timestamp"]), p["lat"], p["lon"]) for p in body["positions"]}
            missing += sum((datetime.fromisoformat(w), a, b) not in stored for w, a, b in acked)
        return missing


def bench_positions(server: Server, clients: int, seconds: float, max_each: int) -> tuple[float, int, int, str]:
    teams = [t.team_id for t in load_fleet() if t.team_type == "police"][:clients]
    if len(teams) < clients:
        teams += [t.team_id for t in load_fleet() if t.team_type == "ems"][:clients - len(teams)]
    _, before = server.get("/health")
    cpu0 = server.cpu_seconds()
    loc = Locators(server, teams, max_each=max_each)
    loc.start()
    rate = loc.finish(seconds)
    cpu1 = server.cpu_seconds()
    _, after = server.get("/health")
    writes = after["writes"] - before["writes"]
    commits = max(1, after["commits"] - before["commits"])
    acked = sum(map(len, loc.acked.values()))
    cpu = f"server CPU {(cpu1 - cpu0) * 1000 / max(acked, 1):.2f} ms/update; " if cpu0 is not None and cpu1 else ""
    return rate, acked, loc.lost(), f"{cpu}{writes / commits:.1f} writes per commit; errors: {len(loc.errors)}"


def bench_cli_baseline(server: Server, points: list[tuple[float, float]], data: Path) -> list[float]:
    out = []
    for k, (lat, lon) in enumerate(points):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "routing.cli", "suggest", "--lat", str(lat), "--lon", str(lon), "--mental-health",
             "--call-id", f"cli-{k}", "--db", str(server.db), "--data", str(data), "--json"],
            cwd=REPO, capture_output=True, timeout=120)
        if proc.returncode != 0:
            print(f"  (CLI baseline skipped: {proc.stderr.decode()[-200:].strip()})")
            return []
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="POST /calls requests to time (default 300)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent locators (default 8)")
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of the position load (default 6)")
    parser.add_argument("--locator-rate", type=float, default=200.0,
                        help="position updates per second sent during the second latency run (default 200)")
    parser.add_argument("--cli-runs", type=int, default=3, help="CLI-per-call baseline runs (default 3; 0 skips)")
    args = parser.parse_args()
    args.calls = max(20, min(args.calls, 5000))
    args.seconds = max(1.0, min(args.seconds, 60.0))
    args.locator_rate = max(1.0, min(args.locator_rate, 2000.0))
    data = data_dir()
    os.environ.setdefault("CRISIS_DISPATCH_DATA", str(data))
    print(f"crisis-dispatch service benchmark  (data: {data}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} before starting; clients on the same machine)")
    points = call_points(args.calls + 40 + args.cli_runs)
    warm, timed, loaded, cli_points = (points[:20], points[20:20 + args.calls], points[20 + args.calls:40 + args.calls],
                                       points[40 + args.calls:])
    max_each = int(args.seconds * 2000)  # an upper bound the clients never reach in time at ~2000/s each

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        server = Server(work, data)
        try:
            print(f"  server ready in {server.startup_s:.1f} s (network, places, demand loaded once)")
            bench_calls(server, warm, "warm")
            idle = bench_calls(server, timed, "idle")
            _print_latency("POST /calls, idle server", idle)

            loc = Locators(server, [t.team_id for t in load_fleet() if t.team_type == "ems"][:args.clients],
                           max_each=max_each, rate_each=args.locator_rate / args.clients)
            loc.start()
            busy = bench_calls(server, loaded * max(1, args.calls // 20), "busy")
            paced = loc.finish(0)
            _print_latency(f"POST /calls, while locators send {paced:.0f} updates/s", busy)

            rate, acked, lost, note = bench_positions(server, args.clients, args.seconds, max_each)
            print(f"  position updates, {args.clients} clients, group commit   {rate:9.0f} /s   "
                  f"acknowledged {acked}, lost {lost}   ({note})")
            cli = bench_cli_baseline(server, cli_points, data) if args.cli_runs else []
        finally:
            server.stop()

        naive = Server(work, data, "--write-group", "1")
        try:
            base_rate, base_acked, base_lost, base_note = bench_positions(naive, args.clients, args.seconds, max_each)
            print(f"  position updates, {args.clients} clients, naive (1 fsync each) {base_rate:7.0f} /s   "
                  f"acknowledged {base_acked}, lost {base_lost}   ({base_note})")
        finally:
            naive.stop()

    print(f"  group commit vs one fsync per update: {rate / base_rate:.2f}x")
    if cli:
        med = statistics.median(cli)
        print(f"  naive suggestion: one 'crisis-dispatch suggest' process per call   median {med * 1000:9.0f} ms"
              f"   n={len(cli)}   ({med * 1000 / idle['median']:.0f}x the service's median)")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (other processes on the machine slow every number)")
    ok = idle["median"] < 15 and idle["p99"] < 50 and rate >= 500 and lost == 0
    print(f"  targets (median < 15 ms, p99 < 50 ms, >= 500 updates/s, nothing lost): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
