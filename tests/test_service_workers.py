"""``crisis-dispatch serve --workers 2``: several worker processes on one database, on loopback.

The server runs as a child process in its own process group (``python -m routing.cli serve --workers 2``
on a free 127.0.0.1 port, temporary database). Requests are spread over the workers by giving each client
its own keep-alive connection and learning which worker answers it from ``/health`` (``pid``).

- **Durability**: concurrent ``POST /calls`` and position reports through both workers, then SIGKILL of
  the whole process group at a random moment; after a restart on the same database every request that
  was acknowledged (2xx) is stored, once, and nothing is stored that was never sent.
- **Read-your-writes across workers**: a call created or a position reported through one worker is
  read at once through the other.
- **Idempotency across workers**: the same new call sent through both workers at the same instant is
  created once (201) and answered as a retry (200) the other time.

Everything is bounded in time; nothing leaves 127.0.0.1; no assertion is about speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.fleet import load_fleet
from tests.test_service_crash import (
    Server,
    _point,
    acknowledged,
    assert_database_intact,
    check_history,
    stream_positions,
)

DISPATCHER = f"dispatcher-{secrets.token_urlsafe(24)}"
LOCATOR = f"locator-{secrets.token_urlsafe(24)}"
ANALYST = f"analyst-{secrets.token_urlsafe(24)}"
FLEET = {t.team_id: t for t in load_fleet()}
WORKERS = 2
START_TIMEOUT_S = 180.0
#: Call locations: around City Hall, Dudley Square and Codman Square (inside the service area).
CENTRES = [(42.3604, -71.0580), (42.3296, -71.0840), (42.2877, -71.0714)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class WorkerServer(Server):
    """``crisis-dispatch serve --workers N`` as a child process leading its own process group."""

    def __init__(self, db: Path, tokens: Path, data_dir: Path, log: Path, workers: int = WORKERS) -> None:
        super().__init__(db, tokens, data_dir, log)
        self.workers = workers

    def command(self) -> list[str]:
        return [*super().command(), "--workers", str(self.workers)]

    def popen_options(self) -> dict[str, Any]:
        return {"start_new_session": True}  # its own group: one killpg reaches the workers too

    def _wait_ready(self) -> bool:
        """Until every worker has answered ``/health`` (each on a new connection), within the timeout."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        seen: set[int] = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = httpx.get(f"{self.url}/health", timeout=2.0)
                if r.status_code == 200:
                    seen.add(r.json()["pid"])
                    if len(seen) >= self.workers:
                        return True
                    continue  # the next new connection may reach another worker
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and workers) and wait until none is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the workers, orphaned by the supervisor, die on their own signal
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError("worker processes survived SIGKILL of their group")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            return
        self.proc.send_signal(signal.SIGTERM)  # the supervisor stops its workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.kill()  # whatever is left (nothing, normally)


def pinned_clients(url: str, token: str, per_worker: int, workers: int = WORKERS,
                   ) -> tuple[list[httpx.Client], list[int]]:
    """``per_worker`` clients per worker, each holding one keep-alive connection, and each one's worker pid."""
    clients: list[httpx.Client] = []
    pids: list[int] = []
    count: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while min([count.get(p, 0) for p in count] or [0]) < per_worker or len(count) < workers:
        assert time.monotonic() < deadline, f"connections reached workers {count}, not {workers} of them"
        client = httpx.Client(base_url=url, headers=bearer(token), timeout=30.0,
                              limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        pid = int(client.get("/health").json()["pid"])
        if count.get(pid, 0) >= per_worker:
            client.close()
            continue
        count[pid] = count.get(pid, 0) + 1
        clients.append(client)
        pids.append(pid)
    return clients, pids


@pytest.fixture
def setup(tmp_path: Path, data_dir: Path, boston: Any) -> Iterator[dict[str, Path]]:
    # ``boston`` first: the prepared-network cache the server process reads is then warm.
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({DISPATCHER: "dispatcher", LOCATOR: "locator", ANALYST: "analyst"}))
    tokens.chmod(0o600)
    yield {"db": tmp_path / "dispatch.db", "tokens": tokens, "data": data_dir, "log": tmp_path / "server.log"}


def _call_body(call_id: str, k: int) -> dict[str, Any]:
    lat, lon = CENTRES[k % len(CENTRES)]
    return {"call_id": call_id, "lat": round(lat + ((k * 7) % 11 - 5) * 3e-4, 6),
            "lon": round(lon + ((k * 5) % 13 - 6) * 3e-4, 6), "mental_health": k % 3 != 0, "priority": 2}


def test_workers_lose_no_acknowledged_write_under_sigkill(setup: dict[str, Path]) -> None:
    server = WorkerServer(setup["db"], setup["tokens"], setup["data"], setup["log"]).start()
    dispatchers, d_pids = pinned_clients(server.url, DISPATCHER, per_worker=3)
    locators, l_pids = pinned_clients(server.url, LOCATOR, per_worker=2)
    teams = ["CR-A1", "CR-B2", "EC-1", "P-B2"][:len(locators)]
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    sent_calls: dict[str, dict[str, Any]] = {}
    acked_calls: dict[str, dict[str, Any]] = {}
    acked_pos: dict[str, list[tuple[datetime, float, float]]] = {t: [] for t in teams}
    sent_pos: dict[str, set[datetime]] = {t: set() for t in teams}
    unexpected: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def dispatcher(n: int, client: httpx.Client) -> None:
        for i in range(5000):
            call_id = f"w{n}-{i}"
            body = _call_body(call_id, n * 5000 + i)
            with lock:
                sent_calls[call_id] = body
            if not acknowledged(client, "POST", "/calls", body, 201, call_id, killed, unexpected):
                return
            with lock:
                acked_calls[call_id] = body

    def locator(team_id: str, client: httpx.Client) -> None:
        stream_positions(client, team_id, t0, sent_pos[team_id], acked_pos[team_id], killed, unexpected)

    threads = [threading.Thread(target=dispatcher, args=(n, c)) for n, c in enumerate(dispatchers)]
    threads += [threading.Thread(target=locator, args=(t, c)) for t, c in zip(teams, locators, strict=True)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 90
        while (len(acked_calls) < 60 or sum(map(len, acked_pos.values())) < 200) and time.monotonic() < deadline \
                and not unexpected:
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.5))  # a random moment, every client with a request in flight
        killed.set()
        server.kill()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert not unexpected, unexpected[:5]
        assert len(acked_calls) >= 60 and sum(map(len, acked_pos.values())) >= 200
        assert len(set(d_pids)) == WORKERS and len(set(l_pids)) == WORKERS  # load went through every worker
    finally:
        killed.set()
        for c in [*dispatchers, *locators]:
            c.close()

    # What is on disk, read apart from any server.
    con = sqlite3.connect(setup["db"])
    try:
        stored_calls = {cid: json.loads(data) for cid, data in con.execute("SELECT call_id, data FROM calls")}
        decisions = dict(con.execute("SELECT call_id, count(*) FROM decision_calls GROUP BY call_id").fetchall())
        events = dict(con.execute("SELECT call_id, count(*) FROM call_events GROUP BY call_id").fetchall())
    finally:
        con.close()
    for call_id, body in acked_calls.items():
        assert call_id in stored_calls, f"acknowledged call {call_id} lost"
        assert (stored_calls[call_id]["lat"], stored_calls[call_id]["lon"]) == (body["lat"], body["lon"])
    assert set(stored_calls) <= set(sent_calls)  # nothing invented
    # Each call was sent once: one suggestion and one 'received' event each, none duplicated.
    assert all(decisions.get(cid) == 1 for cid in stored_calls), {c: n for c, n in decisions.items() if n != 1}
    assert all(events.get(cid) == 1 for cid in stored_calls)
    # At most the requests in flight at the kill (one per client) were committed without an answer.
    assert len(stored_calls) - len(acked_calls) <= len(dispatchers)

    server.start()  # same database, two workers again
    try:
        with httpx.Client(base_url=server.url, headers=bearer(ANALYST), timeout=30.0) as client:
            for call_id in random.sample(sorted(acked_calls), min(30, len(acked_calls))):
                r = client.get(f"/calls/{call_id}")
                assert r.status_code == 200, r.text
                assert r.json()["call"]["call_id"] == call_id
            for team_id in teams:
                r = client.get(f"/teams/{team_id}/positions")
                assert r.status_code == 200, r.text
                history = [(datetime.fromisoformat(p["timestamp"]), p["lat"], p["lon"]) for p in r.json()["positions"]]
                check_history(team_id, history, acked_pos[team_id], sent_pos[team_id])
        # The restarted workers take new writes.
        r = httpx.post(f"{server.url}/calls", json=_call_body("after-restart", 1), headers=bearer(DISPATCHER),
                       timeout=30)
        assert r.status_code == 201, r.text
    finally:
        server.stop()
    assert_database_intact(setup["db"])


def test_a_write_through_one_worker_is_read_through_the_other_and_a_call_is_created_once(
        setup: dict[str, Path]) -> None:
    server = WorkerServer(setup["db"], setup["tokens"], setup["data"], setup["log"]).start()
    clients: list[httpx.Client] = []
    try:
        dispatchers, d_pids = pinned_clients(server.url, DISPATCHER, per_worker=1)
        readers, r_pids = pinned_clients(server.url, ANALYST, per_worker=1)
        locators, l_pids = pinned_clients(server.url, LOCATOR, per_worker=1)
        clients = [*dispatchers, *readers, *locators]
        other = {pid: readers[r_pids.index(next(p for p in r_pids if p != pid))] for pid in d_pids}

        # Read-your-writes: each write answered by one worker is read at once through the other.
        for k in range(20):
            writer = k % WORKERS
            call_id = f"ryw-{k}"
            r = dispatchers[writer].post("/calls", json=_call_body(call_id, k))
            assert r.status_code == 201, r.text
            read = other[d_pids[writer]].get(f"/calls/{call_id}")
            assert read.status_code == 200, read.text
            assert read.json()["status"] == "received"
            assert read.json()["suggestions"][0]["decision_id"] == r.json()["decision_id"]

            when = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            lat, lon = _point("CR-A1", k)
            r = locators[writer].put("/teams/CR-A1/position", json={"lat": lat, "lon": lon, "timestamp": when})
            assert r.status_code == 200, r.text
            team = other[l_pids[writer]].get("/teams/CR-A1").json()
            assert (team["lat"], team["lon"], team["position"]["timestamp"]) == (lat, lon, r.json()["position"][
                "timestamp"])
        # The connections stayed on their workers (the pairs above really crossed processes).
        assert [int(c.get("/health").json()["pid"]) for c in dispatchers] == d_pids
        assert [int(c.get("/health").json()["pid"]) for c in readers] == r_pids

        # Idempotency: the same new call through both workers at the same instant, with and without
        # `received`: created once, the other answer is the retry (200, created false), one call stored.
        for k in range(12):
            call_id = f"twice-{k}"
            body = _call_body(call_id, k)
            if k % 2:
                body["received"] = datetime.now(UTC).isoformat()
            barrier = threading.Barrier(WORKERS)
            answers: list[httpx.Response] = []

            def send(client: httpx.Client, body: dict[str, Any] = body, barrier: threading.Barrier = barrier,
                     answers: list[httpx.Response] = answers) -> None:
                barrier.wait(timeout=30)
                answers.append(client.post("/calls", json=body))

            threads = [threading.Thread(target=send, args=(c,)) for c in dispatchers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert len(answers) == WORKERS
            assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
            assert sorted(a.json()["created"] for a in answers) == [False, True]
            record = readers[0].get(f"/calls/{call_id}").json()
            assert len(record["suggestions"]) == WORKERS
            assert [e["new_status"] for e in record["events"]] == ["received"]
    finally:
        for c in clients:
            c.close()
        server.stop()


def test_serve_refuses_a_bad_worker_count_and_worker_app_needs_its_options(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from routing.cli import main
    from routing.cli.serve import WORKER_ENV, worker_app

    for bad in ("0", "65"):
        assert main(["serve", "--no-auth", "--workers", bad]) == 2
        assert "--workers" in capsys.readouterr().err
    for bad in ("0", "nan", "1e9"):
        assert main(["serve", "--no-auth", "--keep-alive", bad]) == 2
        assert "--keep-alive" in capsys.readouterr().err
    monkeypatch.delenv(WORKER_ENV, raising=False)
    with pytest.raises(RuntimeError, match=WORKER_ENV):
        worker_app()


def test_serve_refuses_a_port_in_use_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # uvicorn alone would load the network, then exit 3 with its own message; a busy port is a user's
    # error like any other: one line naming the port, exit 2, before anything is loaded.
    import socket

    from routing.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--no-auth", "--port", str(port), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err


def test_an_idle_keep_alive_connection_outlives_uvicorns_five_seconds(setup: dict[str, Path]) -> None:
    # CAD clients and locators hold their connections; uvicorn's default closes an idle one after 5 s,
    # and a request sent on it as it closes fails ("Server disconnected"). serve keeps it 75 s.
    import socket

    server = WorkerServer(setup["db"], setup["tokens"], setup["data"], setup["log"], workers=1).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
            for _ in range(2):
                sock.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data:  # the head, then exactly the body it announces
                    chunk = sock.recv(65536)
                    assert chunk, f"connection closed: {data[:100]!r}"
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head[:100]
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    chunk = sock.recv(65536)
                    assert chunk, "connection closed mid-body"
                    body += chunk
                time.sleep(6.5)  # past uvicorn's default keep-alive
    finally:
        server.stop()
