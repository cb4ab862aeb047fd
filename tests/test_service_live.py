"""The real server process on loopback: a full disk, the live board and the API documentation in Chromium.

- **Disk full**: the database lives on a 3 MB tmpfs that a filler file then fills. Every answer must be a
  200 or a 503 with ``Retry-After`` (never a dropped connection nor a 500); once space is freed the
  service writes again without a restart, and every acknowledged position is in the history.
- **Board**: ``/board`` in headless Chromium with the token typed into the page's prompt (or put in
  ``sessionStorage`` beforehand); a position reported through the API moves the team's marker within
  two refreshes, a selected call shows the ranked teams the API suggests, and no request leaves
  loopback nor carries the token in its URL.
- **Docs**: ``/docs`` (Swagger UI) and ``/redoc`` render with no request leaving loopback.

Chromium and ``mount`` (root) are required: without them these tests FAIL, they never skip.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from maps.board import TOKEN_KEY
from maps.browser import Chromium, LivePage, screenshot_stats
from routing.fleet import load_fleet
from tests.test_service_crash import Server

DISPATCHER = f"dispatcher-{secrets.token_urlsafe(24)}"
LOCATOR = f"locator-{secrets.token_urlsafe(24)}"
ANALYST = f"analyst-{secrets.token_urlsafe(24)}"
FLEET = {t.team_id: t for t in load_fleet()}
ROXBURY = (42.3296, -71.0840)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tokens(path: Path) -> Path:
    path.write_text(json.dumps({DISPATCHER: "dispatcher", LOCATOR: "locator", ANALYST: "analyst"}))
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------------------------ disk full
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}", pytrace=False)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left to flush when closing
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_disk_full_is_503_never_a_dropped_connection(tmp_path: Path, tiny_disk: Path, data_dir: Path,
                                                     boston: Any) -> None:
    server = Server(tiny_disk / "dispatch.db", _tokens(tmp_path / "tokens.json"), data_dir,
                    tmp_path / "server.log").start()
    acked: list[tuple[float, float]] = []
    refused: list[str] = []
    base = FLEET["CR-A1"]
    try:
        with httpx.Client(base_url=server.url, headers=bearer(LOCATOR), timeout=60.0) as client:
            def report(i: int) -> int:
                lat, lon = round(base.base_lat + (i % 40) * 1e-5, 7), round(base.base_lon + (i // 40) * 1e-5, 7)
                r = client.put("/teams/CR-A1/position", json={"lat": lat, "lon": lon})  # a TransportError fails
                assert r.status_code in (200, 503), r.text
                if r.status_code == 200:
                    acked.append((lat, lon))
                else:
                    assert r.headers["retry-after"].isdigit(), r.headers
                    body = r.json()
                    assert body["error"] == "ServiceUnavailable" and body["field"] is None
                    refused.append(body["detail"])
                return r.status_code

            assert report(0) == 200
            filler = _fill(tiny_disk)
            statuses = [report(i) for i in range(1, 400)]
            assert 503 in statuses, "the full disk never refused a write"
            assert any("disk is full" in d for d in refused), refused[:3]
            # Reads still work while the disk is full.
            assert client.get("/teams/CR-A1", headers=bearer(ANALYST)).status_code == 200
            filler.unlink()
            recovered = [report(i) for i in range(400, 420)]
            assert recovered[-5:] == [200] * 5, recovered
            history = client.get("/teams/CR-A1/positions", headers=bearer(ANALYST)).json()["positions"]
        stored = [(p["lat"], p["lon"]) for p in history]
        assert stored[-len(acked):] == acked or all(a in stored for a in acked)
        assert len(stored) >= len(acked)
        log = (tmp_path / "server.log").read_text()
        assert "internal error on" not in log  # every failure was a 503, none reached the bug handler
    finally:
        server.stop()
    # The database is intact after a restart on it: every acknowledged position is still there.
    again = Server(tiny_disk / "dispatch.db", tmp_path / "tokens.json", data_dir, tmp_path / "server2.log").start()
    try:
        r = httpx.get(f"{again.url}/teams/CR-A1/positions", headers=bearer(ANALYST), timeout=30)
        stored = [(p["lat"], p["lon"]) for p in r.json()["positions"]]
        assert all(a in stored for a in acked)
    finally:
        again.stop()


# ------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, boston: Any) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("live")
    srv = Server(tmp / "dispatch.db", _tokens(tmp / "tokens.json"), data_dir, tmp / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


def _local_only(page: LivePage, server: Server) -> list[str]:
    local = (server.url + "/", "data:", "about:", f"blob:{server.url}/")  # blob: a worker of the page
    return [u for u in page.requests() if not u.startswith(local)]


def _moved(page: LivePage, team_id: str, lat: float, lon: float) -> bool:
    pos = page.evaluate("cdBoard.positions()")[team_id]
    return abs(pos[0] - lat) < 1e-6 and abs(pos[1] - lon) < 1e-6


def test_board_follows_a_reported_position_within_two_refreshes(server: Server, browser: Chromium,
                                                                tmp_path: Path) -> None:
    seed = f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(DISPATCHER)})"
    with browser.live(f"{server.url}/board?refresh=1", before_load=seed) as page:
        page.wait_for("window.cdBoard && cdBoard.refreshes > 0", timeout=30)
        positions = page.evaluate("cdBoard.positions()")
        assert set(positions) == set(FLEET)
        statuses = page.evaluate("cdBoard.statuses()")
        teams = httpx.get(f"{server.url}/teams", headers=bearer(ANALYST)).json()["teams"]
        assert statuses == {t["team_id"]: t["status"] for t in teams}
        assert not _moved(page, "CR-B2", *ROXBURY)
        r = httpx.put(f"{server.url}/teams/CR-B2/position", json={"lat": ROXBURY[0], "lon": ROXBURY[1]},
                      headers=bearer(LOCATOR))
        assert r.status_code == 200, r.text
        start = page.evaluate("cdBoard.refreshes")
        deadline = time.monotonic() + 15
        while not _moved(page, "CR-B2", *ROXBURY):
            assert page.evaluate("cdBoard.refreshes") <= start + 2, "marker did not move within two refreshes"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # A call: it appears on the board; selected, its ranked teams are the API's.
        r = httpx.post(f"{server.url}/calls?top=5", headers=bearer(DISPATCHER),
                       json={"call_id": "B-1", "lat": 42.3265, "lon": -71.0765, "mental_health": True})
        assert r.status_code == 201, r.text
        api_rank = [s["team_id"] for s in r.json()["suggestions"]]
        page.wait_for("cdBoard.calls().includes('B-1')", timeout=10)
        page.evaluate("cdBoard.select('B-1')")
        page.wait_for("cdBoard.suggestions().length > 0", timeout=10)
        assert [s[1] for s in page.evaluate("cdBoard.suggestions()")] == api_rank
        panel = page.evaluate("document.querySelector('.cd-board-panel').innerText")
        assert "Suggestions for B-1" in panel and api_rank[0] in panel
        # Sending the last-ranked team while the first is free: the board shows the redispatch advice. (A
        # safety-risk call: the police units work around the clock, so the ranking never depends on the hour.)
        r = httpx.post(f"{server.url}/calls", headers=bearer(DISPATCHER),
                       json={"call_id": "B-2", "lat": 42.3603, "lon": -71.0580, "safety_risk": True})
        assert r.status_code == 201, r.text
        ranked = [(s["team_id"], s["eta_s"]) for s in r.json()["suggestions"]]
        assert ranked[-1][1] - ranked[0][1] > 300
        r = httpx.post(f"{server.url}/calls/B-2/assign", headers=bearer(DISPATCHER), json={"team_id": ranked[-1][0]})
        assert r.status_code == 201, r.text
        page.wait_for("cdBoard.advice().length > 0", timeout=10)
        assert ranked[0][0] in page.evaluate("cdBoard.advice()")[0]
        assert "Redispatch advice" in page.evaluate("document.querySelector('.cd-board-panel').innerText")
        assert page.console_errors() == []
        requests = page.requests()
        assert _local_only(page, server) == []
        assert not any(DISPATCHER in u for u in requests)
        assert any(u.endswith("/board/fleet.geojson") for u in requests)
        shot = page.screenshot()
        (tmp_path / "board.png").write_bytes(shot)
        assert not screenshot_stats(shot).blank


def test_board_asks_for_the_token_once_and_keeps_it_for_the_tab(server: Server, browser: Chromium) -> None:
    with browser.live(f"{server.url}/board?refresh=1") as page:
        page.wait_for("!!document.querySelector('#cd-token-input')", timeout=30)
        assert page.evaluate("cdBoard.refreshes") == 0
        assert page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})") is None
        # A wrong token is refused and asked for again, then the right one is kept.
        for token in ("not-a-token-but-long-enough", ANALYST):
            page.evaluate(f"document.querySelector('#cd-token-input').value = {json.dumps(token)};"
                          "document.querySelector('.cd-board-token button').click()")
            if token == ANALYST:
                page.wait_for("cdBoard.refreshes > 0", timeout=10)
            else:
                page.wait_for("!!document.querySelector('.cd-board-token .err')", timeout=10)
        assert page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})") == ANALYST
        assert page.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})") is None
        assert page.evaluate("document.querySelector('.cd-board-token').style.display") == "none"
        assert len(page.evaluate("cdBoard.positions()")) == len(FLEET)
        assert not any(ANALYST in u for u in page.requests())
        assert _local_only(page, server) == []


def test_docs_render_offline_with_authorize(server: Server, browser: Chromium) -> None:
    with browser.live(f"{server.url}/docs") as page:
        page.wait_for("document.querySelectorAll('#swagger-ui .opblock').length > 10", timeout=30)
        assert page.evaluate("!!document.querySelector('#swagger-ui .btn.authorize')")
        assert "crisis-dispatch" in page.evaluate("document.querySelector('#swagger-ui .info').innerText")
        assert _local_only(page, server) == []
        assert page.console_errors() == []
    with browser.live(f"{server.url}/redoc") as page:
        page.wait_for("document.querySelectorAll('redoc .api-content, redoc [id^=\"operation/\"]').length > 0",
                      timeout=30)
        assert _local_only(page, server) == []


def test_no_token_in_any_url_the_board_serves(server: Server) -> None:
    html = httpx.get(f"{server.url}/board").text
    assert "sessionStorage" in html and "localStorage" not in html
    assert "?token=" not in html and "access_token" not in html
    assert os.environ.get("CRISIS_DISPATCH_TOKENS_FILE", "") not in html or not os.environ.get(
        "CRISIS_DISPATCH_TOKENS_FILE")
