"""Failure modes a caller can act on: an unavailable database is 503 with ``Retry-After``, an unreadable
body is 422 naming ``body``, and the token is checked before the body is read.

- **503.** A full disk, a database locked by another process for longer than the busy timeout, a read-only
  or vanished database file: none is the caller's fault nor a bug, and each may pass. The answer says
  which in one line and when to try again (``Retry-After``); nothing of the refused write is stored (its
  group commit rolled back), so resending it is safe. Acknowledged writes were committed before they
  were answered and are unaffected.
- **Token first.** FastAPI parses a JSON body before it runs the dependencies that check the token, so a
  malformed body without a token was a 422 that told an anonymous caller about the body. The route
  class here checks the token (and the role) first, then the body.
- **Body.** Not UTF-8, or nested deeper than :data:`routing.jsonlimits.MAX_DEPTH`, is 422 naming ``body``
  before any parser runs (Python's parser would raise ``RecursionError``).
"""

from __future__ import annotations

import errno
import inspect
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

from routing.errors import CrisisDispatchError
from routing.jsonlimits import MAX_DEPTH, depth_error

__all__ = ["AuthFirstRoute", "install_error_handlers", "unavailable_reason", "check_body", "RETRY_AFTER_S",
           "BODY_METHODS"]

_log = logging.getLogger("crisis_dispatch.service")

#: Seconds a client should wait before resending after a 503 (a lock held by a CLI run lasts seconds; a
#: full disk needs an operator, but retrying every half-minute costs nothing).
RETRY_AFTER_S = 30
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# SQLite's messages (stable for decades) -> what an operator reads.
_SQLITE_REASONS = (
    ("disk is full", "the database disk is full"),
    ("database is locked", "the database is locked by another process"),
    ("database table is locked", "the database is locked by another process"),
    ("readonly database", "the database file is read-only"),
    ("unable to open database", "the database file cannot be opened"),
    ("disk i/o error", "the database disk reported an I/O error"),
    ("grouped transaction was rolled back", "the database refused the write (disk full or I/O error)"),
)
_OS_REASONS = {
    errno.ENOSPC: "the database disk is full",
    errno.EDQUOT: "the database disk quota is exhausted",
    errno.EROFS: "the database file system is read-only",
    errno.EACCES: "the database file cannot be written (permission denied)",
    errno.EIO: "the database disk reported an I/O error",
}


def unavailable_reason(exc: BaseException) -> str | None:
    """The one-line reason if ``exc`` means the database is (temporarily) unusable, else None."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        for needle, reason in _SQLITE_REASONS:
            if needle in text:
                return reason
        return None  # "no such table", "syntax error": SQLite says OperationalError, but it is a bug
    if isinstance(exc, OSError) and exc.errno in _OS_REASONS:
        return _OS_REASONS[exc.errno]
    if isinstance(exc, CrisisDispatchError) and exc.field == "db":
        # Store._con raises InvalidInput(field="db") when a connection cannot be opened: the server's
        # state, not the caller's input.
        return exc.message
    return None


def _unavailable(request: Request, reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"{reason}; nothing of this request was stored, send it again later", "field": None,
         "error": "ServiceUnavailable"},
        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _on_database_error(request: Request, exc: Exception) -> Response:
    reason = unavailable_reason(exc)
    if reason is None:  # a programming error in SQL (no such table, syntax): a bug, logged as one
        from routing.service.app import _on_bug

        return await _on_bug(request, exc)
    # One line, no traceback: the operator needs the reason, and a full disk may repeat it per request.
    _log.error("503 on %s %s: %s (%s)", request.method, request.url.path, reason, exc)
    return _unavailable(request, reason)


def install_error_handlers(app: FastAPI) -> None:
    """Answer database and disk failures 503 (with ``Retry-After``) instead of 500 or a dropped connection.

    Call after the application's own handlers: the domain-error handler is wrapped so that a store that
    cannot open its database (``field="db"``) is 503 too.
    """
    domain = app.exception_handlers.get(CrisisDispatchError)

    async def on_domain(request: Request, exc: Exception) -> Response:
        if isinstance(exc, CrisisDispatchError) and exc.field == "db":
            return await _on_database_error(request, exc)
        assert domain is not None
        result = domain(request, exc)
        return await result if inspect.isawaitable(result) else result

    if domain is not None:
        app.add_exception_handler(CrisisDispatchError, on_domain)
    app.add_exception_handler(sqlite3.OperationalError, _on_database_error)
    app.add_exception_handler(OSError, _on_database_error)


def _invalid_body(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "body_invalid", "loc": ("body",), "msg": message}])


def check_body(raw: bytes) -> None:
    """Refuse a body that is not UTF-8 or nests too deep, as a 422 naming ``body``.

    Raises
    ------
    RequestValidationError
        Handled by the service's validation handler (422, ``field: body``).
    """
    if not raw:
        return
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid_body(f"not UTF-8 text (byte {exc.start}); send JSON encoded as UTF-8") from None
    problem = depth_error(raw, MAX_DEPTH)
    if problem is not None:
        raise _invalid_body(problem)


def route_permission(route: APIRoute) -> Any:
    """The permission a route's ``require(...)`` dependency checks (see ``routing.service.app.require``),
    or its ``x-permission`` OpenAPI extra (routes that check the token themselves), else None (open)."""
    for dep in route.dependant.dependencies:
        permission = getattr(dep.call, "permission", None)
        if permission is not None:
            return permission
    extra = route.openapi_extra or {}
    return extra.get("x-permission")


class AuthFirstRoute(APIRoute):
    """An API route that checks the bearer token and role, then that the body is UTF-8 JSON of sane depth,
    before FastAPI parses the body (so 401 / 403 come before any 422 about the body)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        permission = None
        for dep in self.dependant.dependencies:
            permission = permission or getattr(dep.call, "permission", None)
        parses_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            if permission is not None:
                from routing.service.app import authorize

                authorize(request, permission)
            if parses_body and request.method in BODY_METHODS:
                check_body(await request.body())  # cached by the request: FastAPI reads the same bytes
            return await handler(request)

        return checked
