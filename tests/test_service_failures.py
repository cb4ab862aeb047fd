"""Failure modes a caller can act on, through the HTTP client on the real Boston network.

- a database that cannot take a write (disk full, locked, read-only) or cannot be read is **503** with a
  one-line reason and ``Retry-After``, and nothing of the refused write is stored;
- a body that is not UTF-8, not JSON or nested too deep is **422** naming ``body``, and the token is
  checked before the body (401 / 403 first);
- every status an operation answers is declared for it in the OpenAPI document, with the error model and
  the bearer scheme.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette's notice that it prefers httpx2: not ours to fix
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*", category=UserWarning)
    from fastapi.testclient import TestClient

from routing.jsonlimits import MAX_DEPTH, depth_error
from routing.service.app import create_app
from routing.service.errors import RETRY_AFTER_S

DISPATCHER = f"dispatcher-{secrets.token_urlsafe(24)}"
LOCATOR = f"locator-{secrets.token_urlsafe(24)}"
ANALYST = f"analyst-{secrets.token_urlsafe(24)}"
TOKENS = {DISPATCHER: "dispatcher", LOCATOR: "locator", ANALYST: "analyst"}
ROXBURY = (42.3296, -71.0840)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, boston: Any, places: Any) -> Iterator[tuple[TestClient, Any]]:
    db = tmp_path_factory.mktemp("failures") / "service.db"
    app = create_app(db=db, tokens=TOKENS, network=boston, places=places)
    with TestClient(app) as client:
        yield client, app
        assert app.state.service.internal_errors == 0, "a request reached the catch-all 500 handler"


def _positions(db: Path, team_id: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM positions WHERE team_id = ?", (team_id,)).fetchone()[0])
    finally:
        con.close()


def _assert_503(r: Any) -> dict[str, Any]:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == str(RETRY_AFTER_S)
    body = r.json()
    assert body["error"] == "ServiceUnavailable" and "\n" not in body["detail"]
    return body


# ------------------------------------------------------------------------------------------ 503
@pytest.mark.parametrize("message, reason", [
    ("database or disk is full", "disk is full"),
    ("database is locked", "locked by another process"),
    ("attempt to write a readonly database", "read-only"),
])
def test_a_failed_commit_is_503_with_retry_after_and_stores_nothing(svc: Any, monkeypatch: pytest.MonkeyPatch,
                                                                    message: str, reason: str) -> None:
    client, app = svc
    store = app.state.service.store
    before = _positions(store.path, "CR-A1")
    real_group = store.group

    @contextmanager
    def failing_group() -> Iterator[None]:
        # The writes run (in their savepoints) and then the COMMIT fails, as SQLite does on a full disk.
        with real_group():
            yield
            raise sqlite3.OperationalError(message)

    monkeypatch.setattr(store, "group", failing_group)
    r = client.put("/teams/CR-A1/position", json={"lat": ROXBURY[0], "lon": ROXBURY[1]}, headers=bearer(LOCATOR))
    body = _assert_503(r)
    assert reason in body["detail"] and "send it again later" in body["detail"]
    r = client.post("/calls", json={"lat": ROXBURY[0], "lon": ROXBURY[1], "mental_health": True},
                    headers=bearer(DISPATCHER))
    _assert_503(r)
    monkeypatch.undo()
    assert _positions(store.path, "CR-A1") == before  # the refused writes left nothing behind
    # The writer thread survived: the next write is stored and answered.
    r = client.put("/teams/CR-A1/position", json={"lat": ROXBURY[0], "lon": ROXBURY[1]}, headers=bearer(LOCATOR))
    assert r.status_code == 200, r.text
    assert _positions(store.path, "CR-A1") == before + 1


def test_an_unreadable_database_is_503_for_reads_too(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, app = svc
    store = app.state.service.store

    def broken() -> list[Any]:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(store, "teams", broken)
    body = _assert_503(client.get("/teams", headers=bearer(ANALYST)))
    assert "cannot be opened" in body["detail"]
    _assert_503(client.get("/board/fleet.geojson", headers=bearer(ANALYST)))


def test_a_bug_in_sql_is_still_a_500(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, app = svc
    store = app.state.service.store
    state = app.state.service

    def broken() -> list[Any]:
        raise sqlite3.OperationalError("no such table: teams")

    monkeypatch.setattr(store, "teams", broken)
    r = client.get("/teams", headers=bearer(ANALYST))
    assert r.status_code == 500 and r.json()["error"] == "InternalError"
    state.internal_errors -= 1  # expected here; the fixture checks no other request reached the handler


# ------------------------------------------------------------------------------------------ bodies
BAD_BODIES = {
    "not UTF-8": (b'{"lat": 42.33, "lon": -71.08, "\xff": 1}', "not UTF-8"),
    "not JSON": (b"lat=42.33&lon=-71.08", "invalid JSON"),
    "truncated": (b'{"lat": 42.33,', "invalid JSON"),
    "nested 100k deep": (b"[" * 100_000 + b"]" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    "deep object": (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, f"nested deeper than {MAX_DEPTH} levels"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
@pytest.mark.parametrize("method, path, token", [
    ("POST", "/calls", DISPATCHER),
    ("PUT", "/teams/CR-A1/position", LOCATOR),
    ("PUT", "/teams/CR-A1/status", DISPATCHER),
    ("POST", "/assignments", DISPATCHER),
])
def test_unreadable_bodies_are_422_naming_body_but_only_after_the_token(svc: Any, name: str, method: str, path: str,
                                                                       token: str) -> None:
    client, _ = svc
    raw, words = BAD_BODIES[name]
    headers = {"Content-Type": "application/json"}
    r = client.request(method, path, content=raw, headers=headers)
    assert r.status_code == 401, (name, r.text)
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.request(method, path, content=raw, headers={**headers, **bearer("x" * 32)})
    assert r.status_code == 401, (name, r.text)
    wrong_role = ANALYST
    r = client.request(method, path, content=raw, headers={**headers, **bearer(wrong_role)})
    assert r.status_code == 403, (name, r.text)
    r = client.request(method, path, content=raw, headers={**headers, **bearer(token)})
    assert r.status_code == 422, (name, r.text)
    body = r.json()
    assert body["field"] == "body" and words in body["detail"], body
    assert "\n" not in body["detail"] and len(body["detail"]) < 300


def test_depth_limit_counts_nesting_not_brackets_in_strings() -> None:
    assert depth_error(b'{"a": "' + b"[" * 1000 + b'"}') is None
    assert depth_error(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
    assert depth_error(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)) == f"nested deeper than {MAX_DEPTH} levels"
    flat = b"[" + b",".join(b"[1]" for _ in range(10_000)) + b"]"  # many brackets, depth 2
    assert depth_error(flat) is None
    assert depth_error(b'{"s": "\\"[[[["}') is None  # an escaped quote does not end the string


def test_an_oversized_body_is_refused_naming_body(svc: Any) -> None:
    client, _ = svc
    r = client.post("/calls", content=b" " * (300 * 1024), headers={"Content-Type": "application/json",
                                                                     **bearer(DISPATCHER)})
    assert r.status_code == 422 and r.json()["field"] == "body" and r.json()["error"] == "PayloadTooLarge"


# ------------------------------------------------------------------------------------------ OpenAPI
def test_openapi_declares_the_bearer_scheme_and_every_status_answered(svc: Any) -> None:
    client, _ = svc
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "a token of the tokens file (docs/SERVICE.md)"}
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert "security" not in ops[("GET", "/health")] and "security" not in ops[("GET", "/board")]
    for key, op in ops.items():
        if key[1] not in ("/health", "/board"):
            assert op["security"] == [{"HTTPBearer": []}], key
        for status, resp in op["responses"].items():
            if status[0] in "45":
                assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
        assert "Retry-After" in op["responses"]["503"]["headers"]
    # What the requests above and here actually answered, each declared for its operation.
    answered = [
        ("PUT", "/teams/{team_id}/position", "401"), ("PUT", "/teams/{team_id}/position", "403"),
        ("PUT", "/teams/{team_id}/position", "422"), ("PUT", "/teams/{team_id}/position", "503"),
        ("POST", "/calls", "400"), ("POST", "/calls", "401"), ("POST", "/calls", "403"), ("POST", "/calls", "422"),
        ("POST", "/calls", "503"), ("GET", "/teams", "503"), ("GET", "/teams", "500"),
        ("GET", "/teams/{team_id}", "404"), ("GET", "/calls/{call_id}/suggestions.geojson", "404"),
        ("GET", "/board/fleet.geojson", "401"), ("GET", "/board/fleet.geojson", "403"),
    ]
    for method, path, status in answered:
        assert status in ops[(method, path)]["responses"], (method, path, status)
    r = client.post("/calls", content=b"{}", headers={"Content-Length": "x", **bearer(DISPATCHER)})
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert client.get("/teams/NOPE", headers=bearer(ANALYST)).status_code == 404


def test_docs_pages_load_nothing_remote(svc: Any) -> None:
    from maps.assets import remote_references

    client, _ = svc
    for page, script in (("/docs", "/assets/docs/swagger-ui-bundle.js"), ("/redoc", "/assets/redoc.js")):
        r = client.get(page)
        assert r.status_code == 200
        assert remote_references(r.text) == [], page
        assert script in r.text
        asset = client.get(script)
        assert asset.status_code == 200 and len(asset.content) > 100_000
        assert b"cdn.redoc.ly" not in asset.content
    assert json.loads(client.get("/openapi.json").text)["info"]["title"] == "crisis-dispatch"
