"""The real server process on loopback: durability under ``kill -9`` and concurrent locators.

``crisis-dispatch serve`` is started as a child process (``python -m routing.cli serve``) on a free
loopback port with a temporary database. The truth is the client's own record of what the server
acknowledged (a 2xx answer): after a SIGKILL in the middle of a stream of concurrent position
updates and a restart on the same database, every acknowledged update must be in the history, and the
history may hold nothing that was never sent.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.fleet import load_fleet

REPO = Path(__file__).resolve().parent.parent
LOCATOR = f"locator-{secrets.token_urlsafe(24)}"
ANALYST = f"analyst-{secrets.token_urlsafe(24)}"
FLEET = {t.team_id: t for t in load_fleet()}
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``crisis-dispatch serve`` child process."""

    def __init__(self, db: Path, tokens: Path, data_dir: Path, log: Path) -> None:
        self.db, self.tokens, self.data_dir, self.log = db, tokens, data_dir, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "routing.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--db", str(self.db), "--tokens", str(self.tokens), "--data", str(self.data_dir),
                "--log-level", "warning"]

    def popen_options(self) -> dict[str, Any]:
        return {}

    def start(self) -> Server:
        for _ in range(3):  # a free port can be taken between the probe and the bind: try another
            self.port = _free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                             env={**os.environ, "PYTHONUNBUFFERED": "1"}, **self.popen_options())
            if self._wait_ready():
                return self
            self.kill()
        raise AssertionError(f"server did not start; log:\n{self.log.read_text()[-3000:]}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def setup(tmp_path: Path, data_dir: Path, boston: Any) -> Iterator[dict[str, Path]]:
    # ``boston`` first: the prepared-network cache the child process reads is then warm.
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({LOCATOR: "locator", ANALYST: "analyst"}))
    tokens.chmod(0o600)
    yield {"db": tmp_path / "dispatch.db", "tokens": tokens, "data": data_dir, "log": tmp_path / "server.log"}


def stream_positions(client: httpx.Client, team_id: str, t0: datetime, sent: set[datetime],
                     acked: list[tuple[datetime, float, float]], killed: threading.Event,
                     unexpected: list[str]) -> None:
    """Report positions for one team, a millisecond apart, until the server goes away: each sent time
    into ``sent``, each acknowledged report into ``acked``; a failure before ``killed`` is unexpected."""
    for i in range(20_000):
        when = t0 + timedelta(milliseconds=i)
        lat, lon = _point(team_id, i)
        sent.add(when)
        if not acknowledged(client, "PUT", f"/teams/{team_id}/position",
                            {"lat": lat, "lon": lon, "timestamp": when.isoformat()}, 200, team_id, killed, unexpected):
            return
        acked.append((when, lat, lon))


def acknowledged(client: httpx.Client, method: str, path: str, body: dict[str, Any], status: int, label: str,
                 killed: threading.Event, unexpected: list[str]) -> bool:
    """Send one write; True if the server answered ``status``. A lost connection before ``killed`` is set,
    or any other answer, is recorded in ``unexpected`` (a connection lost after the kill is expected)."""
    try:
        r = client.request(method, path, json=body)
    except httpx.TransportError as exc:
        if not killed.is_set():
            unexpected.append(f"{label}: {exc!r} before the kill")
        return False
    if r.status_code != status:
        unexpected.append(f"{label}: {r.status_code} {r.text[:300]}")
        return False
    return True


def assert_database_intact(db: Path) -> None:
    """SQLite's own check of every page and index of the database."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def check_history(team_id: str, history: list[tuple[datetime, float, float]],
                  acked: list[tuple[datetime, float, float]], sent: set[datetime]) -> None:
    """A team's stored positions after a crash: every acknowledged one, nothing invented, in order."""
    stored = {when: (lat, lon) for when, lat, lon in history}
    for when, lat, lon in acked:
        assert stored.get(when) == (lat, lon), f"acknowledged update of {team_id} at {when} lost"
    # Nothing invented: after the base position, only reports that were sent, in time order.
    base = FLEET[team_id]
    assert (history[0][1], history[0][2]) == (base.base_lat, base.base_lon)
    assert all(when in sent for when, _, _ in history[1:])
    times = [when for when, _, _ in history]
    assert times == sorted(times) and len(set(times)) == len(times)
    # At most the one request in flight at the kill was committed without an answer.
    assert len(history) - 1 - len(acked) in (0, 1)


def _positions(url: str, team_id: str) -> list[tuple[datetime, float, float]]:
    r = httpx.get(f"{url}/teams/{team_id}/positions", headers={"Authorization": f"Bearer {ANALYST}"}, timeout=30)
    assert r.status_code == 200, r.text
    return [(datetime.fromisoformat(p["timestamp"]), p["lat"], p["lon"]) for p in r.json()["positions"]]


def _point(team_id: str, i: int) -> tuple[float, float]:
    """A deterministic point within ~30 m of the team's base (inside the service area)."""
    base = FLEET[team_id]
    return (round(base.base_lat + ((i % 23) - 11) * 2e-5, 7), round(base.base_lon + ((i % 17) - 8) * 2e-5, 7))


def test_sigkill_mid_stream_loses_no_acknowledged_position(setup: dict[str, Path]) -> None:
    server = Server(setup["db"], setup["tokens"], setup["data"], setup["log"]).start()
    teams = ["CR-A1", "CR-B2", "EC-1", "P-B2", "P-D4", "EMS-CT"]
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    acked: dict[str, list[tuple[datetime, float, float]]] = {t: [] for t in teams}
    sent: dict[str, set[datetime]] = {t: set() for t in teams}
    unexpected: list[str] = []
    killed = threading.Event()

    def locator(team_id: str) -> None:
        headers = {"Authorization": f"Bearer {LOCATOR}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10.0) as client:
            stream_positions(client, team_id, t0, sent[team_id], acked[team_id], killed, unexpected)

    threads = [threading.Thread(target=locator, args=(t,)) for t in teams]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(map(len, acked.values())) < 300 and time.monotonic() < deadline and not unexpected:
            time.sleep(0.01)
        killed.set()
        server.kill()  # SIGKILL while every thread has a request in flight
        for t in threads:
            t.join(timeout=30)
        assert not unexpected, unexpected[:5]
        assert sum(map(len, acked.values())) >= 300

        server.start()  # same database
        for team_id in teams:
            check_history(team_id, _positions(server.url, team_id), acked[team_id], sent[team_id])
        # The restarted service takes new reports.
        later = (t0 + timedelta(seconds=30)).isoformat()
        r = httpx.put(f"{server.url}/teams/CR-A1/position", json={"lat": 42.3615, "lon": -71.0600, "timestamp": later},
                      headers={"Authorization": f"Bearer {LOCATOR}"}, timeout=10)
        assert r.status_code == 200, r.text
    finally:
        killed.set()
        server.stop()
    assert_database_intact(setup["db"])


def test_many_locators_at_once_lose_nothing_and_the_newest_report_wins(setup: dict[str, Path]) -> None:
    server = Server(setup["db"], setup["tokens"], setup["data"], setup["log"]).start()
    shared = "CR-C11"
    own = ["P-A1", "P-A7", "P-B3", "P-C6"]
    n_shared, per_thread = 8, 30
    # Every stamp after the teams' creation and behind the server clock: reports stamped ahead of it are
    # ordered by arrival instead (a fast device clock, see tests/test_clocks.py), not by their stamps.
    teams_now = httpx.get(f"{server.url}/teams", headers={"Authorization": f"Bearer {ANALYST}"}, timeout=30).json()
    t0 = max(datetime.fromisoformat(t["position_time"]) for t in teams_now["teams"]) + timedelta(milliseconds=1)
    while datetime.now(UTC) < t0 + timedelta(seconds=1):
        time.sleep(0.05)
    results: list[tuple[str, datetime, float, float, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_shared + len(own))

    def report(team_id: str, stamps: list[int], offset: int) -> None:
        headers = {"Authorization": f"Bearer {LOCATOR}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30.0) as client:
            barrier.wait()
            for ms in stamps:
                when = t0 + timedelta(milliseconds=ms)
                lat, lon = _point(team_id, ms + offset)
                body = {"lat": lat, "lon": lon, "timestamp": when.isoformat()}
                r = client.put(f"/teams/{team_id}/position", json=body)
                with lock:
                    results.append((team_id, when, lat, lon, r.status_code))

    # Eight locators report for one team with interleaved times (so some arrive after a newer one), and
    # four more each report for their own team.
    threads = [threading.Thread(target=report, args=(shared, [i * n_shared + k for i in range(per_thread)], 0))
               for k in range(n_shared)]
    threads += [threading.Thread(target=report, args=(t, list(range(per_thread)), 0)) for t in own]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(results) == (n_shared + len(own)) * per_thread
        assert {code for *_, code in results} <= {200, 422}
        for team_id in [shared, *own]:
            mine = [r for r in results if r[0] == team_id]
            ok = [(when, lat, lon) for _, when, lat, lon, code in mine if code == 200]
            refused = [when for _, when, _, _, code in mine if code == 422]
            history = _positions(server.url, team_id)
            stored = {when: (lat, lon) for when, lat, lon in history[1:]}
            assert {w: (a, b) for w, a, b in ok} == stored  # exactly the acknowledged reports
            assert not set(refused) & set(stored)
            newest = max(ok)
            team = httpx.get(f"{server.url}/teams/{team_id}", headers={"Authorization": f"Bearer {ANALYST}"},
                             timeout=10).json()
            assert datetime.fromisoformat(team["position"]["timestamp"]) == newest[0]
            assert (team["lat"], team["lon"]) == (newest[1], newest[2])
            if team_id != shared:  # one locator per team, in time order: nothing is refused
                assert len(ok) == per_thread
            for when in refused:  # refused only because a newer report was already stored
                assert any(w > when for w, _, _ in ok)
    finally:
        server.stop()
