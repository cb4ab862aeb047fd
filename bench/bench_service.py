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
4. ``POST /calls`` under 1, 4 and 16 concurrent clients (closed loop: each sends its next call when
   the previous one is answered), for ``serve --workers 1`` (the baseline) and ``--workers 2``, both
   servers up at once and measured in alternation, round after round, so that load from other
   processes falls on both alike. Prints median, p90, p99, throughput, the servers' CPU per call and
   how busy the database writer was, then how throughput grows with worker processes (cores).
   Target: 16 clients, p99 under 50 ms.

The clients run on the same machine as the server (2 cores here), so they take CPU from it: the
numbers are a lower bound of what the server does for clients elsewhere. Each concurrent client is a
process of its own (threads of one process would queue on its GIL and add that wait to every latency).
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
        """CPU time the server process and its worker processes have used (Linux /proc), or None."""
        try:
            total = 0.0
            for pid in [self.proc.pid, *_children(self.proc.pid)]:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime, stime, and the CPU of reaped children (uvicorn's spawn helper, dead workers)
                total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
            return total
        except (OSError, ValueError, IndexError):
            return None

    def workers_health(self, workers: int) -> list[dict[str, Any]]:
        """``/health`` of each worker process: new connections until ``workers`` pids answered (bounded)."""
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(50 * workers):
            status, body = self.get("/health")
            if status == 200:
                seen[body["pid"]] = body
            if len(seen) >= workers:
                break
        return list(seen.values())

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


def _children(pid: int) -> list[int]:
    """Descendant process ids of ``pid`` (Linux /proc)."""
    out: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        direct = [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return out
    for child in direct:
        out += [child, *_children(child)]
    return out


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


def _client_process(args: tuple[int, int, list[tuple[float, float]], str, float]) -> list[float]:
    """One client of :func:`bench_clients`, in a process of its own: its latencies (s), or raises."""
    port, c, points, tag, start_at = args
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    rng = np.random.default_rng(1000 + c)
    out: list[float] = []
    try:
        while time.time() < start_at:  # every client starts together
            time.sleep(0.001)
        for k, (lat, lon) in enumerate(points):
            body = {"call_id": f"{tag}-{c}-{k}", "lat": lat, "lon": lon,
                    "mental_health": bool(rng.random() < 0.6), "safety_risk": bool(rng.random() < 0.2),
                    "priority": int(rng.integers(1, 4))}
            start = time.perf_counter()
            status, raw = _request(con, "POST", "/calls", body)
            out.append(time.perf_counter() - start)
            if status != 201:
                raise RuntimeError(f"POST /calls answered {status}: {raw[:200]!r}")
    finally:
        con.close()
    return out


def bench_clients(server: Server, points: list[tuple[float, float]], clients: int, per_client: int,
                  tag: str) -> dict[str, Any]:
    """``clients`` concurrent keep-alive clients, each sending ``per_client`` POST /calls back to back.

    Closed loop: a client sends its next call when the previous one is answered, so with ``clients``
    clients there are always ``clients`` requests in the server. Each client is a process of its own,
    as clients on other machines would be: threads of one Python process take turns on its GIL, and at
    16 clients that wait (up to hundreds of ms) was counted as the server's latency. Returns the
    latency quantiles (ms) over every request, ``throughput``, answered calls per second of wall time
    from the first request to the last answer, and ``times``, every latency (seconds).
    """
    import multiprocessing

    work = [(server.port, c, [points[(c * per_client + k) % len(points)] for k in range(per_client)], tag)
            for c in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        start_at = time.time() + 0.5  # time for every process to be up and connected
        try:
            times = pool.map(_client_process, [(*w, start_at) for w in work])
        except (OSError, RuntimeError) as exc:
            raise SystemExit(f"error: {exc}") from None
        elapsed = time.time() - start_at
    flat = [x for ts in times for x in ts]
    return {**_quantiles(flat), "throughput": len(flat) / elapsed, "times": flat}


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


def bench_scaling(work: Path, data: Path, points: list[tuple[float, float]], *, levels: list[int],
                  workers: list[int], per_run: int, rounds: int) -> dict[tuple[int, int], dict[str, float]]:
    """``POST /calls`` under each number of concurrent clients, for each ``--workers``; printed as a table.

    Every server is started first; then each round measures every (clients, workers) pair in turn, so
    that other processes on the machine slow both configurations alike. Latencies of the rounds are
    pooled; throughput, CPU per call and writer busy time are summed over the rounds.
    """
    servers = {w: Server(work, data, "--workers", str(w)) for w in workers}
    pooled: dict[tuple[int, int], dict[str, Any]] = {}
    try:
        for w, server in servers.items():
            bench_clients(server, points[:40], 4, 10, f"warm-w{w}")
        offset = 0
        for r in range(rounds):
            for clients in levels:
                per_client = max(10, per_run // clients)
                n = per_client * clients
                run_points = [points[(offset + k) % len(points)] for k in range(n)]
                offset += n
                for w, server in servers.items():
                    health0 = server.workers_health(w)
                    cpu0 = server.cpu_seconds()
                    q = bench_clients(server, run_points, clients, per_client, f"s{r}-c{clients}-w{w}")
                    cpu1 = server.cpu_seconds()
                    health1 = server.workers_health(w)
                    entry = pooled.setdefault((clients, w), {"times": [], "calls": 0, "seconds": 0.0, "cpu": 0.0,
                                                             "busy": 0.0, "commits": 0, "writes": 0})
                    entry["times"] += q["times"]
                    entry["calls"] += q["n"]
                    entry["seconds"] += q["n"] / q["throughput"]
                    entry["cpu"] += (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else float("nan")
                    # Per worker; a worker that did not answer /health both times is left out of the sums.
                    before = {h["pid"]: h for h in health0}
                    for h in health1:
                        if h["pid"] in before:
                            entry["busy"] += h["write_busy_s"] - before[h["pid"]]["write_busy_s"]
                            entry["commits"] += h["commits"] - before[h["pid"]]["commits"]
                            entry["writes"] += h["writes"] - before[h["pid"]]["writes"]
    finally:
        for server in servers.values():
            server.stop()
    out: dict[tuple[int, int], dict[str, float]] = {}
    print(f"  {'clients':>7} {'workers':>7} {'median':>8} {'p90':>8} {'p99':>8}  {'calls/s':>8}  "
          f"{'CPU/call':>8}  {'writer busy':>11}  {'writes/commit':>13}   n")
    for (clients, w), e in sorted(pooled.items()):
        q = _quantiles(e["times"])
        q["throughput"] = e["calls"] / e["seconds"]
        q["cpu_ms"] = e["cpu"] * 1000 / e["calls"]
        q["busy"] = e["busy"] / e["seconds"]
        out[(clients, w)] = q
        print(f"  {clients:>7} {w:>7} {q['median']:6.1f}ms {q['p90']:6.1f}ms {q['p99']:6.1f}ms  "
              f"{q['throughput']:8.0f}  {q['cpu_ms']:6.2f}ms  {q['busy'] * 100:10.0f}%  "
              f"{e['writes'] / max(1, e['commits']):13.1f}   {q['n']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="POST /calls requests to time (default 300)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent locators (default 8)")
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of the position load (default 6)")
    parser.add_argument("--locator-rate", type=float, default=200.0,
                        help="position updates per second sent during the second latency run (default 200)")
    parser.add_argument("--cli-runs", type=int, default=3, help="CLI-per-call baseline runs (default 3; 0 skips)")
    parser.add_argument("--workers", default="1,2",
                        help="serve --workers values compared under concurrent clients (default 1,2; the first "
                             "is the baseline)")
    parser.add_argument("--concurrent-calls", type=int, default=800,
                        help="POST /calls per (clients, workers) run and round (default 800)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the concurrency runs (default 2)")
    parser.add_argument("--only-scaling", action="store_true", help="run only the concurrency comparison (4.)")
    args = parser.parse_args()
    args.calls = max(20, min(args.calls, 5000))
    args.seconds = max(1.0, min(args.seconds, 60.0))
    args.locator_rate = max(1.0, min(args.locator_rate, 2000.0))
    try:
        workers = sorted({max(1, min(int(w), 16)) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        raise SystemExit(f"error: --workers takes numbers separated by commas, got {args.workers!r}") from None
    args.concurrent_calls = max(100, min(args.concurrent_calls, 20_000))
    args.rounds = max(1, min(args.rounds, 10))
    data = data_dir()
    os.environ.setdefault("CRISIS_DISPATCH_DATA", str(data))
    print(f"crisis-dispatch service benchmark  (data: {data}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} before starting; clients on the same machine)")
    if args.only_scaling:
        with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
            scaling_section(Path(tmp), data, workers, args)
        return
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
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        scaling_section(Path(tmp), data, workers, args)


def scaling_section(work: Path, data: Path, workers: list[int], args: argparse.Namespace) -> None:
    """Section 4: ``POST /calls`` under 1, 4 and 16 clients for each ``--workers``, and how throughput grows."""
    levels = [1, 4, 16]
    print(f"\nPOST /calls under concurrent clients, serve --workers {' vs '.join(map(str, workers))} "
          f"({args.rounds} alternating rounds, {os.cpu_count()} cores shared by the servers and the clients; "
          f"load average {os.getloadavg()[0]:.1f})")
    n_points = args.concurrent_calls * len(levels) * args.rounds
    table = bench_scaling(work, data, call_points(n_points, seed=23), levels=levels, workers=workers,
                          per_run=args.concurrent_calls, rounds=args.rounds)
    base = workers[0]
    for w in workers[1:]:
        for clients in levels:
            gain = table[(clients, w)]["throughput"] / table[(clients, base)]["throughput"]
            print(f"  {clients:>2} clients: --workers {w} answers {gain:.2f}x the calls/s of --workers {base}")
    top = workers[-1]
    cpu = table[(16, top)]["cpu_ms"]
    busy = table[(16, top)]["busy"]
    rate16 = table[(16, top)]["throughput"]
    print(f"  how throughput grows with cores: each worker process computes on one core (one GIL), so calls/s "
          f"grows with workers up to the cores left over by the clients; here a call costs the server "
          f"{cpu:.2f} ms of CPU, so each further core adds at most ~{1000 / cpu:.0f} calls/s, until the one "
          f"database write lock saturates: busy {busy * 100:.0f}% of the time at {rate16:.0f} calls/s with "
          f"--workers {top}, so not before ~{rate16 / max(busy, 1e-9):.0f} calls/s (more load makes larger "
          "groups share each commit)")
    p99 = table[(16, top)]["p99"]
    print(f"  target (16 clients, p99 < 50 ms, --workers {top}): p99 {p99:.1f} ms: "
          f"{'met' if p99 < 50 else 'NOT met'}   (load average at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
