"""The dispatch service: a thin FastAPI layer over the engine, sharing the CLI's SQLite database.

``create_app(...)`` builds the application; ``crisis-dispatch serve`` (:mod:`routing.cli.serve`) runs it
with uvicorn. The road network, places and rules are loaded once, in the lifespan, not per request.

Contract, in brief (full list in docs/SERVICE.md):

- Every error is JSON ``{"detail": <one line>, "field": <name or null>, "error": <kind>}``. As the
  issue's contract says, every bad input to a write is **422** naming the field: malformed, non-finite
  or out-of-area values, an unknown team or call, an impossible status transition, a position older
  than the stored one, a team no longer dispatchable, an oversized body (``error`` tells these apart:
  ``InvalidInput``, ``NotFound``, ``Conflict``, ``PayloadTooLarge``). Reading an unknown resource is
  404; 401 / 403 are authentication and role. 500 is reserved for bugs.
- Durability: a write is answered only after the SQLite COMMIT that contains it has returned (WAL,
  ``synchronous=FULL``), so an acknowledged write survives ``kill -9`` or a power cut.
- Concurrency: one thread (:class:`GroupWriter`) performs every database write of the process, in
  arrival order; writes that queue while a commit is in progress share the next one (group commit),
  each in its own SAVEPOINT so a refused write changes nothing and does not affect the others. Road
  searches and suggestions run in the thread pool, before their write is queued, on a WAL snapshot that
  never waits for a writer. Every check of a write runs inside its transaction (the store's rule):
  an assignment is recorded and its teams set en route in one transaction (:meth:`Store.assign`) that
  re-reads the teams, so two dispatchers, in this process or in a CLI on the same database, cannot send
  one team to two calls.
- Several worker processes (``serve --workers N``): each has its writer; SQLite's write lock (and a
  ``flock`` beside the database, so a waiting writer wakes at once) makes their transactions take turns,
  and a write is answered after its COMMIT as with one process. Nothing a request depends on lives only
  in one process's memory: calls, suggestions, idempotency (a call id sent again is a retry, decided in
  the transaction that records it), move-up proposals and team positions are in the database, read
  afresh by each request (a WAL read sees every commit before it, whichever process made it); ids are
  SQLite's or random (``uuid4``). What is per process is derived and read-only: the road network, places,
  rules, demand, tokens, the ETA caches and the board's base page; ``/health`` counts one worker's writes.
- CPU-bound work of ``POST /calls`` runs on a one-thread limiter per process, in arrival order
  (:meth:`ServiceState.compute`), not on every pool thread at once fighting for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routing.errors import CrisisDispatchError, DataMissing, InvalidInput
from routing.fleet import DISPATCHABLE, TeamState, TeamStatus, TeamType
from routing.service.auth import Permission, Principal, Role, TokenTable, parse_bearer
from routing.service.errors import AuthFirstRoute, check_body, install_error_handlers
from routing.service.moveup import router as moveup_router  # move-up and redispatch (issue 12)
from routing.store import Store, clock_ahead_s
from routing.validate import timestamp as validate_timestamp

if TYPE_CHECKING:
    from routing.coverage import CoverageResult
    from routing.demand import DemandSurface
    from routing.dispatch import SuggestionResult
    from routing.network import RoadNetwork
    from routing.places import Places
    from routing.triage import Rules

__all__ = ["create_app", "ServiceState", "GroupCommitStore", "GroupWriter", "team_view", "authorize", "MAX_BODY_BYTES"]

#: Largest accepted request body. A position report is ~100 bytes and a call ~300; a joint assignment
#: of :data:`MAX_JOINT_CALLS` calls stays well below this.
MAX_BODY_BYTES = 256 * 1024
MAX_JOINT_CALLS = 200
#: Threads per worker process for the CPU-bound part of ``POST /calls`` (see :meth:`ServiceState.compute`).
#: One: Python runs one thread at a time per process; a second only helps while the first waits on SQLite.
CPU_THREADS = 1

_log = logging.getLogger("crisis_dispatch.service")
_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------- state


class GroupCommitStore(Store):
    """The :class:`~routing.store.Store` the service uses; grouped commits are :meth:`Store.group`.

    Kept as a name for callers of the first service version; it adds nothing to ``Store``.
    """


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any]


class GroupWriter:
    """The one thread that performs this process's database writes, committing them in groups.

    Callers submit a store write and wait for its future, which resolves only after the COMMIT that
    includes it has returned (so the answer follows durability). While one group commits, new writes
    queue up and form the next group: under load, many writes share one ``fsync``; alone, a write
    commits at once. Writes run in submission order, so two reports of one team keep their order.

    Several processes (``serve --workers N``) each have their writer; SQLite's write lock makes their
    transactions take turns, and that alone keeps every guarantee. With ``lock_path``, the writers also
    queue on an exclusive ``flock`` of that file around each group: SQLite's own wait for a busy lock is a
    sleep of 1, 2, 5, 10, ... ms between retries, far longer than the other worker's commit, while a
    ``flock`` waiter wakes the moment the lock is released. The file lock is only for speed: a process
    without it (the CLI) still waits on SQLite's lock, and if the file cannot be opened or locked the
    writer goes on without it (logged once).
    """

    def __init__(self, store: Store, *, max_group: int = 256, lock_path: str | os.PathLike[str] | None = None
                 ) -> None:
        self.store = store
        self.max_group = max_group
        self.writes = 0
        self.commits = 0
        #: Seconds this writer held the database's write lock (its transactions, COMMIT included).
        self.busy_s = 0.0
        self._lock_fd: int | None = None
        if lock_path is not None:
            try:
                self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                _log.warning("writer lock file %s unavailable (%s): writers of several processes will wait on "
                             "SQLite's busy retries instead", lock_path, exc.strerror)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Future[_T]:
        """Queue ``fn(*args, **kwargs)`` (a store write method); its future resolves after the commit."""
        future: Future[_T] = Future()
        self._queue.put(_Job(fn, args, kwargs, future))
        return future

    def close(self) -> None:
        """Finish the queued writes and stop the thread."""
        self._queue.put(None)
        self._thread.join()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock(self) -> bool:
        """Take the inter-process writer lock (blocking); False if there is none or it cannot be taken."""
        if self._lock_fd is None:
            return False
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except OSError as exc:  # a file system without flock: go on with SQLite's lock alone
            _log.warning("writer lock unavailable (%s): going on without it", exc.strerror)
            os.close(self._lock_fd)
            self._lock_fd = None
            return False
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            # Our turn first, then the group: the writes that queued while another worker committed
            # join this commit instead of waiting for the next turn (one fsync for all of them).
            locked = self._lock()
            group = [first]
            try:
                while len(group) < self.max_group:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    group.append(job)
                # A caller that gave up (its request was cancelled) withdraws its write; the others run.
                group = [job for job in group if job.future.set_running_or_notify_cancel()]
                outcomes = self._commit(group) if group else None
            except BaseException as exc:  # never let the writer die: every later write would hang
                _log.error("database writer error", exc_info=exc)
                outcomes = [(False, exc)] * len(group)
            finally:
                if locked:  # released before the answers are handed out: the other workers' turn
                    self._unlock()
            for job, (ok, value) in zip(group, outcomes or (), strict=False):
                if job.future.done():
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _commit(self, group: list[_Job]) -> list[tuple[bool, Any]]:
        """Run the group in one transaction; each job's outcome, (True, value) or (False, exception)."""
        outcomes: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        try:
            with self.store.group():
                for job in group:
                    try:
                        outcomes.append((True, job.fn(*job.args, **job.kwargs)))
                    except BaseException as exc:  # this write alone is rolled back (its savepoint)
                        outcomes.append((False, exc))
        except BaseException as exc:  # the COMMIT itself failed: nothing of the group is stored
            _log.error("database commit failed for %d writes", len(group), exc_info=exc)
            return [(False, exc)] * len(group)
        finally:
            self.busy_s += time.perf_counter() - started
        self.writes += len(group)
        self.commits += 1
        return outcomes


@dataclass
class ServiceState:
    """Everything loaded once at startup and shared by the requests."""

    store: Store
    network: RoadNetwork
    places: Places | None
    rules: Rules
    tokens: TokenTable | None
    demand: DemandSurface | None = None
    write_group: int = 256
    cpu_threads: int = CPU_THREADS
    started: float = field(default_factory=time.time)
    writer: GroupWriter = field(init=False)
    internal_errors: int = 0
    _limiter: anyio.CapacityLimiter | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # The lock file sits beside the database, as SQLite's own -wal and -shm files do.
        lock = self.store.path.with_name(self.store.path.name + "-writer.lock")
        self.writer = GroupWriter(self.store, max_group=self.write_group, lock_path=lock)

    async def compute(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)``, CPU-bound work (a suggestion), on at most :attr:`cpu_threads` threads.

        Why a limiter: the default thread pool runs every request at once, and N threads of pure Python
        share one GIL, so each request takes N times longer and the unlucky ones wait many switch
        intervals (the p99 of ``POST /calls`` was 5x its median under 16 clients). Queued on a small
        limiter (FIFO), requests finish one after the other at the speed of one alone, in arrival order,
        and the event loop keeps the GIL time it needs to read and answer. More cores are used by more
        worker processes (``serve --workers``), not more threads.
        """
        if self._limiter is None:  # created on the event loop that uses it (no await in between)
            self._limiter = anyio.CapacityLimiter(self.cpu_threads)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)

    def write(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one store write on the writer thread and wait for its commit (from a worker thread)."""
        return self.writer.submit(fn, *args, **kwargs).result()

    async def awrite(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """The same, awaited from the event loop (no worker-thread hop on the hot path)."""
        return await asyncio.wrap_future(self.writer.submit(fn, *args, **kwargs))

    def close(self) -> None:
        """Finish queued writes, then close the database."""
        self.writer.close()
        self.store.close()


def _state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "service", None)
    if state is None:  # only if the lifespan did not run (a client used without ``with``)
        raise DataMissing("service not started")
    return state


# --------------------------------------------------------------------------------------------- models

# Strict: a JSON number only (integers included), not "42.3" nor true.
_Lat = Annotated[float, Field(strict=True, ge=-90, le=90, description="WGS84 latitude")]
_Lon = Annotated[float, Field(strict=True, ge=-180, le=180, description="WGS84 longitude")]
_ID_PATTERN = r"^[A-Za-z0-9_.:#-]{1,80}$"


def _timestamp(value: Any) -> datetime | None:
    # Every time in a body goes through the one validator (routing.validate.timestamp): a string with
    # a UTC offset, representable in UTC, within its range. Pydantic alone would take epoch numbers and
    # times such as 9999-12-31T23:59:59-14:00 that overflow later, in the store (a 500).
    if value is None:
        return None
    try:
        return validate_timestamp(value, "time")
    except InvalidInput as exc:
        raise PydanticCustomError("timestamp", exc.message.removeprefix("time: ")) from None


_Time = Annotated[AwareDatetime | None, BeforeValidator(_timestamp)]


class _Model(BaseModel):
    # Unknown keys are errors (a typo such as ``mental_heath`` must not silently change triage) and
    # NaN / Infinity (which Python's JSON parser accepts) are refused.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorOut(BaseModel):
    """Every error answer (4xx, and 500 for a bug)."""

    detail: str = Field(description="one line saying what is wrong")
    field: str | None = Field(description="the offending field (body key, path or query parameter), if any")
    error: str = Field(description="kind: InvalidInput, OutsideServiceArea, NotFound, Conflict, Unauthorized, ...")


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text} for code, text in (
        (401, "no or unknown bearer token"), (403, "the token's role may not do this"),
        (404, "unknown team, call or path (reads)"),
        (422, "bad input: malformed or out-of-area values, unknown team or call, a write that contradicts "
              "the stored state, a body too large"))}


class PositionIn(_Model):
    """A position report from a vehicle locator."""

    lat: _Lat
    lon: _Lon
    timestamp: _Time = Field(
        None, description="when the position was measured, ISO 8601 with offset (default: now); up to 300 s "
                          "ahead of the server clock is taken as a fast device clock (stored as given, "
                          "ordered by arrival, reported as clock_ahead_s)")


class StatusIn(_Model):
    """A status change."""

    status: TeamStatus
    timestamp: _Time = Field(None, description="when it happened, ISO 8601 with offset (default: now); up to "
                                               "300 s ahead of the server clock, as for positions")


class CallIn(_Model):
    """A call for service (the fields of :class:`routing.triage.Call`)."""

    call_id: str | None = Field(None, pattern=_ID_PATTERN, description="default: a generated id")
    received: _Time = Field(None, description="ISO 8601 with offset (default: now); its local hour chooses "
                                              "the hour-of-day speeds of the suggestions")
    lat: _Lat
    lon: _Lon
    mental_health: StrictBool = False
    safety_risk: StrictBool = False
    weapon: StrictBool = False
    needs_transport: StrictBool = False
    priority: StrictInt = Field(2, ge=1, le=5, description="1 (highest) .. 5")
    neighborhood: str | None = Field(None, max_length=100, description="default: from the location")
    district: str | None = Field(None, max_length=20, description="default: from the location")


class AssignIn(_Model):
    """A dispatcher's decision: send this team to the call."""

    team_id: str = Field(min_length=1, max_length=80)
    override: StrictBool = Field(
        False, description="assign a dispatchable team even if it is not among the suggestions, or send again "
                           "a team that has left this call")
    additional: StrictBool = Field(
        False, description="send this team although the call already has one (e.g. EMS backing a co-response "
                           "car); recorded as additional")


class CallStatusIn(_Model):
    """A call's next status (``POST /calls/{id}/status``), or a note for cancel / clear."""

    status: str | None = Field(None, description="en_route, on_scene, cleared or cancelled")
    note: str | None = Field(None, max_length=500, description="recorded with the event")


class AssignmentsIn(_Model):
    """Waiting calls to assign jointly: ids of recorded calls and/or new calls."""

    call_ids: list[Annotated[str, Field(pattern=_ID_PATTERN)]] = Field(default_factory=list,
                                                                       max_length=MAX_JOINT_CALLS)
    calls: list[CallIn] = Field(default_factory=list, max_length=MAX_JOINT_CALLS)
    dry_run: StrictBool = Field(False, description="compute and return the plan; record and apply nothing")


# --------------------------------------------------------------------------------------------- errors


def _error(status: int, detail: str, field_name: str | None, kind: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field_name, "error": kind}, status_code=status,
                        headers=dict(headers) if headers else None)


def _loc_name(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    if not parts:
        return "body"
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]" if out else "body"
        else:
            out += ("." if out else "") + str(p)
    return out


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default handler echoes the input, which may be NaN: not JSON. Name the fields instead.
    errors = []
    for e in exc.errors():
        loc = e.get("loc", ())
        if e.get("type") == "json_invalid":
            name, msg = "body", f"invalid JSON: {e.get('ctx', {}).get('error', 'decode error')}"
        elif tuple(loc) == ("body",) and e.get("type") in ("model_attributes_type", "dict_type", "model_type"):
            name, msg = "body", "expected a JSON object"
        else:
            name, msg = _loc_name(loc), str(e.get("msg", "invalid"))
        errors.append({"field": name, "message": msg})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    body: dict[str, Any] = {"detail": f"{first['field']}: {first['message']}", "field": first["field"],
                            "error": "InvalidInput"}
    if len(errors) > 1:
        body["errors"] = errors
    return JSONResponse(body, status_code=422)


async def _on_domain_error(request: Request, exc: CrisisDispatchError) -> JSONResponse:
    # A missing data file at request time is the server's state, not the caller's fault, nor a bug.
    status = 503 if isinstance(exc, DataMissing) else int(getattr(exc, "status_code", 400))
    if request.method not in ("GET", "HEAD") and status in (404, 409):
        status = 422  # a write naming an unknown team or contradicting the state is bad input
    return _error(status, exc.message, exc.field, type(exc).__name__)


async def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kind = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}.get(
        exc.status_code, "HTTPError")
    return _error(exc.status_code, str(exc.detail), None, kind, exc.headers)


async def _on_bug(request: Request, exc: Exception) -> JSONResponse:
    state = getattr(request.app.state, "service", None)
    if state is not None:
        state.internal_errors += 1
    # The request line only: headers (the token) and bodies are never logged.
    _log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error (logged on the server)", None, "InternalError")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 422, whether declared or streamed.

    A declared ``Content-Length`` over the limit is refused before reading anything; otherwise the body
    is read (never more than the limit plus one chunk) and replayed to the application, so a chunked
    upload without a length cannot exhaust memory either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "invalid Content-Length header", "BadRequest")
                    return
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
                # The server delivers exactly the declared length (h11 / httptools enforce it), so a
                # declared body within the limit needs no counting: the common case costs nothing.
                await self.app(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as the server's would

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await self._reject(send, 422, f"request body larger than {self.max_bytes} bytes", "PayloadTooLarge")

    async def _reject(self, send: Send, status: int, detail: str, kind: str) -> None:
        resp = _error(status, detail, "body", kind, {"Connection": "close"})
        await send({"type": "http.response.start", "status": status, "headers": resp.raw_headers})
        await send({"type": "http.response.body", "body": resp.body})


# --------------------------------------------------------------------------------------------- auth

_OPEN = Principal(Role.admin, "no-auth")


def authorize(request: Request, permission: Permission) -> Principal:
    """The caller's principal if its bearer token's role grants ``permission``; 401 / 403 otherwise."""
    state = _state(request)
    if state.tokens is None:  # serve --no-auth (loopback only)
        return _OPEN
    token = parse_bearer(request.headers.get("authorization"))
    if token is None:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = state.tokens.lookup(token)
    if principal is None:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if not principal.can(permission):
        raise HTTPException(403, f"role {principal.role.value!r} may not {_VERBS[permission]}")
    return principal


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting callers whose token's role grants ``permission`` (see :func:`authorize`)."""

    async def dependency(request: Request) -> Principal:
        return authorize(request, permission)

    # Read by AuthFirstRoute (token before body) and the OpenAPI document (security per route).
    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


_M = TypeVar("_M", bound=BaseModel)


def _parse_body(model: type[_M], raw: bytes) -> _M:
    """Validate a JSON body in one pass (pydantic-core parses it); errors as FastAPI's, under ``body``."""
    check_body(raw)  # not UTF-8, or nested too deep: 422 naming body before the parser runs
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False, include_input=False)]
        raise RequestValidationError(errors) from None


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for an endpoint that reads its body itself."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}


_VERBS = {
    Permission.read: "read fleet, call or coverage data",
    Permission.position: "report positions",
    Permission.dispatch: "create calls, assign teams or change statuses",
}

_Reader = Annotated[Principal, Depends(require(Permission.read))]
_Dispatcher = Annotated[Principal, Depends(require(Permission.dispatch))]
_TeamId = Annotated[str, PathParam(min_length=1, max_length=80, description="team id")]
_CallId = Annotated[str, PathParam(pattern=_ID_PATTERN, description="call id")]


# --------------------------------------------------------------------------------------------- views


def team_view(ts: TeamState, now: datetime | None = None) -> dict[str, Any]:
    """A team as the service shows it: its fields, ``status``, and ``position`` {lat, lon, timestamp}."""
    now = now or datetime.now(UTC)
    d = ts.to_dict()
    d["position"] = {"lat": ts.lat, "lon": ts.lon, "timestamp": ts.position_time.isoformat()}
    d["position_age_s"] = round(ts.position_age_s(now), 1)
    d["dispatchable"] = ts.status in DISPATCHABLE
    return d


def _clock_view(ts: TeamState, stated: datetime | None, received: datetime) -> dict[str, Any]:
    """:func:`team_view` plus ``clock_ahead_s`` and, when the body's time was ahead of the server, a ``note``."""
    out = team_view(ts, received)
    ahead = clock_ahead_s(stated, received) if stated is not None else 0.0
    out["clock_ahead_s"] = round(ahead, 3)
    out["note"] = (f"timestamp is {ahead:.1f} s ahead of the server clock: stored as given, ordered by the time "
                   "the server received it" if ahead > 0 else None)
    return out


def _network_at(state: ServiceState, when: datetime | None) -> RoadNetwork:
    """The road network with the speeds of a request's decision time (the service's mode, its local hour)."""
    return state.network.for_time(when or datetime.now(UTC), mode=state.network.profile.get("mode"))


def _position_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"lat": row["lat"], "lon": row["lon"], "timestamp": row["at"], "recorded_at": row["recorded_at"]}


def _renamed(exc: CrisisDispatchError, names: Mapping[str, str]) -> CrisisDispatchError:
    """The same error with its field named as the HTTP body names it (the store says ``at``)."""
    if exc.field is not None and exc.field in names:
        exc.field = names[exc.field]
    return exc


# --------------------------------------------------------------------------------------------- app


def create_app(
    *,
    db: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tokens: TokenTable | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    auth: bool = True,
    fleet: str | os.PathLike[str] | None = None,
    rules: str | os.PathLike[str] | None = None,
    network: RoadNetwork | None = None,
    places: Places | None = None,
    source: str | None = None,
    speeds: str | None = None,
    mode: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    write_group: int = 256,
) -> FastAPI:
    """Build the dispatch service.

    Parameters
    ----------
    db
        SQLite database shared with the CLI (default ``$CRISIS_DISPATCH_DB`` or ``./crisis-dispatch.db``).
    data_dir
        Real-data directory (default ``$CRISIS_DISPATCH_DATA``).
    tokens
        A :class:`TokenTable`, a mapping token → role, or a tokens-file path; default the file named by
        ``$CRISIS_DISPATCH_TOKENS_FILE``. Read at startup.
    auth
        ``False`` admits every request as ``admin`` (``serve --no-auth``, for local use only).
    fleet, rules
        Fleet file (used when the database has no teams yet) and triage rules (default ``data/``).
    network, places
        Already-loaded objects (tests, embedding); otherwise loaded from ``data_dir`` at startup.
    source, speeds, mode
        Road source, speed model and response mode, as for the CLI's network options.
    max_body_bytes
        Larger request bodies get 422 (``PayloadTooLarge``).
    write_group
        At most this many queued writes share one commit (1: a commit per write, the naive way).

    Returns
    -------
    FastAPI
        Start it with ``uvicorn`` (or ``with TestClient(app)``); startup loads everything once.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        state = await run_in_threadpool(_startup, db=db, data_dir=data_dir, tokens=tokens, auth=auth,
                                        fleet=fleet, rules=rules, network=network, places=places,
                                        source=source, speeds=speeds, mode=mode, write_group=write_group)
        app.state.service = state
        try:
            yield
        finally:
            app.state.service = None
            state.close()

    app = FastAPI(
        title="crisis-dispatch",
        summary="Nearest eligible crisis-response team by road, for CAD systems and vehicle locators.",
        version="0.1.0",
        docs_url=None,  # served by routing.service.docs from local files, never a CDN
        redoc_url=None,
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(CrisisDispatchError, _on_domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_bug)
    install_error_handlers(app)
    app.router.route_class = AuthFirstRoute  # token and role before the body (routes added from here on)
    _routes(app)
    app.router.routes.extend(moveup_router.routes)  # as routes, not a lazily included router: docs reads them
    from routing.service.board import install_board
    from routing.service.docs import install_docs

    install_board(app)
    install_docs(app)
    return app


def _startup(*, db: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None,
             tokens: TokenTable | Mapping[str, Any] | str | os.PathLike[str] | None, auth: bool,
             fleet: str | os.PathLike[str] | None, rules: str | os.PathLike[str] | None, network: RoadNetwork | None,
             places: Places | None, source: str | None, speeds: str | None, mode: str | None, write_group: int
             ) -> ServiceState:
    from routing.config import resolve_data_dir
    from routing.triage import load_rules

    table: TokenTable | None
    if not auth:
        table = None
    elif isinstance(tokens, TokenTable):
        table = tokens
    elif isinstance(tokens, Mapping):
        table = TokenTable(tokens, source="<tokens mapping>")
    elif tokens is not None:
        table = TokenTable.from_file(tokens)
    else:
        table = TokenTable.from_env()
    started = time.perf_counter()
    if network is None:
        from routing.network import load_network

        network = load_network(data_dir, source=source, speeds=speeds)
        if mode:
            network = network.with_profile(mode)
    if places is None:
        directory = resolve_data_dir(data_dir)
        if directory is not None:
            from routing.places import load_places

            places = load_places(directory)
    rule_set = load_rules(rules)
    demand = None
    if places is not None:
        from routing.coverage import default_demand

        try:  # the incident history behind /coverage: read once here, not on the first request
            demand = default_demand(network, places, resolve_data_dir(data_dir))
        except DataMissing as exc:
            _log.warning("coverage disabled: %s", exc)
    store = GroupCommitStore(db, fleet=fleet, network=network)
    from routing.eta import eta_engine

    now_net = network.for_time(datetime.now(UTC), mode=network.profile.get("mode"))
    engine = eta_engine(now_net)
    if engine.uses_hierarchy():  # a statewide network: customize this hour's hierarchy before the first call
        engine.metric(now_net)
    # The snapping index is built on first use (2 s at a million nodes): here, not in the first call.
    for on in ("street", "any"):
        network.snap_many(network.lat[:1], network.lon[:1], strict=False, on=on)
    _log.info("crisis-dispatch service ready in %.1f s: %d teams, %d road nodes, auth %s",
              time.perf_counter() - started, len(store.teams()), network.n_nodes,
              "off" if table is None else ", ".join(f"{n} {r}" for r, n in sorted(table.roles().items())))
    return ServiceState(store=store, network=network, places=places, rules=rule_set, tokens=table,
                        demand=demand, write_group=max(1, int(write_group)))


def _routes(app: FastAPI) -> None:  # noqa: C901 - one place that lists every endpoint
    # ---------------------------------------------------------------- health
    @app.get("/health", tags=["service"], summary="Liveness and readiness (no token)")
    def health(request: Request) -> dict[str, Any]:
        state = _state(request)
        # writes, commits and pid are this worker process's (serve --workers N: each has its own writer).
        return {"status": "ok", "teams": len(state.store.teams()), "road_nodes": state.network.n_nodes,
                "uptime_s": round(time.time() - state.started, 1), "pid": os.getpid(),
                "writes": state.writer.writes, "commits": state.writer.commits,
                "write_busy_s": round(state.writer.busy_s, 4)}

    # ---------------------------------------------------------------- teams
    @app.get("/teams", tags=["teams"], summary="Every team with its status and last position")
    def list_teams(request: Request, _: _Reader) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {"teams": [team_view(ts, now) for ts in _state(request).store.teams()]}

    @app.get("/teams/{team_id}", tags=["teams"], summary="One team with its status and last position")
    def get_team(request: Request, team_id: _TeamId, _: _Reader) -> dict[str, Any]:
        return team_view(_state(request).store.team(team_id))

    @app.get("/teams/{team_id}/positions", tags=["teams"], summary="Position history, oldest first")
    def team_positions(request: Request, team_id: _TeamId, _: _Reader,
                       limit: Annotated[int | None, Query(ge=1, le=1_000_000, description="the newest N (with "
                                                          "after: the oldest N after it)")] = None,
                       before: Annotated[str | None, Query(description="reports before this time (cursor)")] = None,
                       after: Annotated[str | None, Query(description="reports after this time (cursor)")] = None,
                       ) -> dict[str, Any]:
        # Paged in SQL on the (team, order time) index: milliseconds with millions of reports.
        rows = _state(request).store.position_history(team_id, limit=limit, before=before, after=after)
        return {"team_id": team_id, "positions": [_position_view(r) for r in rows]}

    @app.get("/teams/{team_id}/statuses", tags=["teams"], summary="Status history, oldest first")
    def team_statuses(request: Request, team_id: _TeamId, _: _Reader,
                      limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
                      before: Annotated[str | None, Query(description="changes before this time (cursor)")] = None,
                      after: Annotated[str | None, Query(description="changes after this time (cursor)")] = None,
                      ) -> dict[str, Any]:
        return {"team_id": team_id, "statuses": _state(request).store.status_history(
            team_id, limit=limit, before=before, after=after)}

    @app.put("/teams/{team_id}/position", tags=["teams"], summary="Report a position (locator)",
             openapi_extra={**_json_body(PositionIn), "x-permission": Permission.position.value})
    async def put_position(request: Request, team_id: _TeamId) -> JSONResponse:
        # The hottest endpoint (every locator, every few seconds): token and body are checked here rather
        # than by dependency injection and FastAPI's body handling, which cost a third of its CPU time.
        who = authorize(request, Permission.position)
        if not who.may_report_for(team_id):
            raise HTTPException(403, f"this locator token may not report for team {team_id!r}")
        body = _parse_body(PositionIn, await request.body())
        state = _state(request)
        # The service-area check (a KD-tree query) runs inside report_position before its transaction.
        received = datetime.now(UTC)
        try:
            ts = await state.awrite(state.store.report_position, team_id, body.lat, body.lon, body.timestamp,
                                    received=received)
        except CrisisDispatchError as exc:
            raise _renamed(exc, {"at": "timestamp"}) from None
        return JSONResponse(_clock_view(ts, body.timestamp, received))  # JSON-ready: no response-model pass

    @app.put("/teams/{team_id}/status", tags=["teams"], summary="Change a team's status (dispatcher)")
    def put_status(request: Request, team_id: _TeamId, body: StatusIn, who: _Dispatcher) -> dict[str, Any]:
        state = _state(request)
        received = datetime.now(UTC)
        try:
            ts = state.write(state.store.set_status, team_id, body.status, body.timestamp, received=received,
                             actor=who.name)
        except CrisisDispatchError as exc:
            raise _renamed(exc, {"at": "timestamp"}) from None
        return _clock_view(ts, body.timestamp, received)

    # ---------------------------------------------------------------- calls
    @app.post("/calls", status_code=201, tags=["calls"],
              summary="A new call: ranked suggestions of eligible teams (recorded with the call)")
    async def post_call(request: Request, body: CallIn, who: _Dispatcher,
                        top: Annotated[int | None, Query(ge=1, le=1000)] = None) -> JSONResponse:
        # Async, with its CPU part on the state's CPU limiter: requests queue in arrival order for the
        # one computing thread rather than every request's thread fighting for the GIL, which made the
        # latency tail many times the median under 16 clients (see ServiceState.compute).
        state = _state(request)
        result, inputs, network = await state.compute(_suggest_call, state, body, top)
        result, decision_id, known, status, teams = await state.awrite(
            _record_call, state.store, result, inputs, who.name, received_given=body.received is not None)
        out: dict[str, Any] = {"call_id": result.call.call_id, "decision_id": decision_id, **result.to_dict(),
                               "profile": network.profile, "status": status, "teams": teams, "created": not known}
        return JSONResponse(_finite(out), status_code=200 if known else 201,
                            headers={"Location": f"/calls/{result.call.call_id}"})

    @app.get("/calls", tags=["calls"], summary="Recorded calls with their status, oldest first (paged)")
    def list_calls(request: Request, _: _Reader,
                   limit: Annotated[int | None, Query(ge=1, le=100_000, description="the newest N (with "
                                                      "after: the oldest N after it)")] = None,
                   status: Annotated[str | None, Query(description="a call status, or open")] = None,
                   before: Annotated[str | None, Query(description="received before this time (cursor)")] = None,
                   after: Annotated[str | None, Query(description="received after this time (cursor)")] = None,
                   ) -> dict[str, Any]:
        page = _state(request).store.call_page(status=status, limit=limit, before=before, after=after)
        calls = [{**r["call"], "status": r["status"], "status_time": r["status_time"]} for r in page]
        return {"calls": calls, "before": calls[0]["received"] if calls else None,
                "after": calls[-1]["received"] if calls else None}

    @app.get("/calls/{call_id}", tags=["calls"],
             summary="A recorded call, its assignments, its suggestions (newest first) and redispatch advice")
    def get_call(request: Request, call_id: _CallId, _: _Reader) -> JSONResponse:
        from routing import redispatch

        state = _state(request)
        store = state.store
        record = store.call_record(call_id)
        suggestions = [{"decision_id": d["id"], "created_at": d["created_at"], **d["result"]}
                       for d in store.decisions("suggestion", call_id=call_id)]
        # Whether a free team would now beat the one still driving there (advice; recorded by
        # GET /calls/{id}/redispatch, which the board polls).
        advice = redispatch.advice_for_call(store, call_id, network=state.network, rules=state.rules,
                                            places=state.places, now=datetime.now(UTC))
        return JSONResponse(_finite({**record, "suggestions": suggestions, "redispatch": advice}))

    @app.post("/calls/{call_id}/assign", status_code=201, tags=["calls"],
              summary="Send a team to a recorded call: records the decision, the team goes en route")
    def assign_call(request: Request, call_id: _CallId, body: AssignIn, who: _Dispatcher) -> JSONResponse:
        out = _assign_one(_state(request), call_id, body.team_id, override=body.override,
                          additional=body.additional, actor=who.name)
        return JSONResponse(_finite(out), status_code=201 if out["created"] else 200)

    def _call_transition(request: Request, call_id: str, status: str, who: Principal,
                         note: str | None = None) -> JSONResponse:
        state = _state(request)
        out = state.write(state.store.set_call_status, call_id, status, actor=who.name, note=note)
        return JSONResponse(_finite(out))

    @app.post("/calls/{call_id}/cancel", tags=["calls"],
              summary="Cancel a call that is not on scene yet: its en-route teams are free again")
    def cancel_call(request: Request, call_id: _CallId, who: _Dispatcher,
                    body: CallStatusIn | None = None) -> JSONResponse:
        return _call_transition(request, call_id, "cancelled", who, body.note if body else None)

    @app.post("/calls/{call_id}/clear", tags=["calls"],
              summary="Clear a call (dealt with): its teams go returning")
    def clear_call(request: Request, call_id: _CallId, who: _Dispatcher,
                   body: CallStatusIn | None = None) -> JSONResponse:
        return _call_transition(request, call_id, "cleared", who, body.note if body else None)

    @app.post("/calls/{call_id}/status", tags=["calls"],
              summary="Move a call along its lifecycle (en_route, on_scene, cleared, cancelled); teams follow")
    def call_status(request: Request, call_id: _CallId, body: CallStatusIn, who: _Dispatcher) -> JSONResponse:
        if body.status is None:
            raise InvalidInput("give the new status", field="status")
        return _call_transition(request, call_id, body.status, who, body.note)

    @app.get("/events", tags=["calls"], summary="The call audit trail: every status change, who and when")
    def list_events(request: Request, _: _Reader,
                    call_id: Annotated[str | None, Query(pattern=_ID_PATTERN)] = None,
                    since: Annotated[str | None, Query(description="only events at or after this time")] = None,
                    limit: Annotated[int | None, Query(ge=1, le=100_000, description="the newest N")] = 1000,
                    ) -> dict[str, Any]:
        return {"events": _state(request).store.events(call_id=call_id, since=since, limit=limit)}

    # ---------------------------------------------------------------- joint assignment
    @app.post("/assignments", tags=["assignments"],
              summary="Assign several waiting calls jointly (OR-Tools); records and applies the plan")
    def post_assignments(request: Request, body: AssignmentsIn, who: _Dispatcher) -> JSONResponse:
        out = _assign_joint(_state(request), body, actor=who.name)
        return JSONResponse(_finite(out), status_code=200 if body.dry_run else 201)

    @app.get("/assignments", tags=["assignments"], summary="Recorded assignments, oldest first")
    def list_assignments(request: Request, _: _Reader,
                         call_id: Annotated[str | None, Query(pattern=_ID_PATTERN)] = None,
                         limit: Annotated[int | None, Query(ge=1, le=100_000, description="the newest N")] = None,
                         ) -> dict[str, Any]:
        return {"assignments": _state(request).store.assignments(call_id, limit=limit)}

    # ---------------------------------------------------------------- coverage and maps
    @app.get("/coverage", tags=["analysis"],
             summary="Share of (mental-health) demand the dispatchable teams reach within a time standard")
    def get_coverage(request: Request, _: _Reader,
                     minutes: Annotated[float, Query(gt=0, le=180, allow_inf_nan=False,
                                                     description="time standard")] = 10.0,
                     team_type: Annotated[list[TeamType] | None, Query(description="only these types")] = None,
                     from_staging: Annotated[bool, Query(description="from staging sites, not positions")] = False,
                     mental_health: Annotated[bool, Query(description="false: leave dedicated cars out")] = True,
                     geojson: Annotated[bool, Query(description="neighborhoods as a GeoJSON collection")] = False,
                     ) -> JSONResponse:
        result = _coverage(_state(request), minutes=minutes, team_types=team_type, from_staging=from_staging,
                           mental_health=mental_health)
        return JSONResponse(_finite(result.to_geojson() if geojson else result.to_dict()))

    @app.get("/maps/fleet", tags=["maps"], response_class=HTMLResponse, summary="Fleet map (Folium HTML)")
    def map_fleet(request: Request, _: _Reader,
                  offline: Annotated[bool, Query(description="self-contained page, no tiles")] = False
                  ) -> HTMLResponse:
        return HTMLResponse(_fleet_map_html(_state(request), offline=offline))

    @app.get("/maps/calls/{call_id}", tags=["maps"], response_class=HTMLResponse,
             summary="Map of a recorded call and the teams suggested for it now (Folium HTML)")
    def map_call(request: Request, call_id: _CallId, _: _Reader,
                 offline: Annotated[bool, Query(description="self-contained page, no tiles")] = False
                 ) -> HTMLResponse:
        return HTMLResponse(_call_map_html(_state(request), call_id, offline=offline))


# --------------------------------------------------------------------------------------------- actions


def _finite(obj: Any) -> Any:
    """Replace non-finite floats (an unreachable ETA) by None: JSON has no NaN or Infinity."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _recorded(store: Store, call_id: str) -> bool:
    try:
        store.call_status(call_id)
    except CrisisDispatchError:
        return False
    return True


def _suggest_call(state: ServiceState, body: CallIn, top: int | None
                  ) -> tuple[SuggestionResult, dict[str, Any], RoadNetwork]:
    """The CPU part of ``POST /calls``: the call as it will be recorded, its suggestion and decision inputs.

    Reads a WAL snapshot (never waits for a writer); nothing is written here.
    """
    from routing.dispatch import decision_inputs, suggest
    from routing.triage import Call

    call = Call.from_dict(body.model_dump(exclude_none=True))
    now = datetime.now(UTC)
    # A client retry sends the same call again: same details (no `received` = as recorded) is the
    # same call, answered 200 with its record and a fresh suggestion; other details are a 422.
    try:
        call = state.store.reconcile_call(call, received_given=body.received is not None)
    except CrisisDispatchError as exc:
        raise _renamed(exc, {"at": "received"}) from None
    # Speeds of the call's own time (its `received`, else now); shifts and staleness of now.
    network = _network_at(state, call.received)
    teams = state.store.teams()  # a WAL snapshot: never waits for a writer
    result = suggest(call, teams, network=network, rules=state.rules, places=state.places, now=now, top=top)
    inputs = decision_inputs(teams, network=network, rules=state.rules, now=now, top=top)
    return result, inputs, network


def _record_call(store: Store, result: SuggestionResult, inputs: dict[str, Any], actor: str, *,
                 received_given: bool) -> tuple[SuggestionResult, int, bool, str, list[str]]:
    """Record a call's suggestion (and the call, if new); run on the writer thread, inside its transaction.

    Whether the call was already recorded is read in the same transaction as the insert, under the
    database's write lock: two workers (or threads) receiving the same new call at once answer one
    ``created`` and one retry, never two creations. A retry without ``received`` that raced its original
    (both computed before either was recorded) takes the recorded time here, as it would have before
    its suggestion, rather than being refused for a ``received`` a few milliseconds apart.

    Returns
    -------
    tuple
        The suggestion as recorded, the decision id, whether the call was recorded before, its status
        and its active teams.
    """
    call_id = result.call.call_id
    known = _recorded(store, call_id)
    if known and not received_given:
        result = replace(result, call=store.reconcile_call(result.call, received_given=False))
    decision_id = store.record_suggestion(result, inputs, actor=actor)
    if not known:  # just inserted: nothing else can have happened to it in this transaction
        return result, decision_id, False, "received", []
    teams = [a["team_id"] for a in store.assignments(call_id) if a["released_at"] is None]
    return result, decision_id, True, store.call_status(call_id), teams


def _assign_one(state: ServiceState, call_id: str, team_id: str, *, override: bool, additional: bool = False,
                actor: str = "service") -> dict[str, Any]:
    """Record that ``team_id`` goes to ``call_id`` and set the team en route, in one transaction
    (:func:`routing.lifecycle.assign_team`, shared with ``crisis-dispatch call assign``).

    :meth:`Store.assign` re-checks inside its transaction that the team is still dispatchable and the
    call still takes it, so two dispatchers (or the service and a CLI) racing get one success and one
    422 (Conflict). A retried request (the team is still on this very call) answers the recorded
    assignment, ``created: false``; a stale one (the team has left the call since) is a 422 naming why.
    """
    from routing.lifecycle import assign_team

    call = state.store.call(call_id)  # 404 for an unknown call
    now = datetime.now(UTC)
    network = _network_at(state, call.received)
    out = assign_team(state.store, call_id, team_id, network=network, rules=state.rules, places=state.places,
                      now=now, override=override, additional=additional, actor=actor, write=state.write)
    current = state.store.team(team_id)
    return {**out, "team": team_view(current, now), "profile": network.profile}


def _assign_joint(state: ServiceState, body: AssignmentsIn, *, actor: str = "service") -> dict[str, Any]:
    """Jointly assign the waiting calls among ``body`` (:func:`routing.lifecycle.assign_waiting`): calls
    that already have a team are skipped (a re-run changes nothing, and says so); a team that moved
    since the plan keeps its call with a recomputed ETA; only what became impossible is refused."""
    from routing.lifecycle import assign_waiting
    from routing.triage import Call

    store = state.store
    if not body.call_ids and not body.calls:
        raise InvalidInput("give at least one call in 'call_ids' or 'calls'", field="call_ids")
    if len(body.call_ids) + len(body.calls) > MAX_JOINT_CALLS:
        raise InvalidInput(f"at most {MAX_JOINT_CALLS} calls at once", field="calls")
    calls = [store.call(cid) for cid in body.call_ids]
    given = [True] * len(calls)
    for k, c in enumerate(body.calls):
        try:
            calls.append(Call.from_dict(c.model_dump(exclude_none=True)))
        except InvalidInput as exc:
            raise InvalidInput(f"calls[{k}]: {exc.message}", field=f"calls[{k}].{exc.field}") from None
        given.append(c.received is not None)
    ids = [c.call_id for c in calls]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInput(f"duplicate call_id {dup!r}", field="call_id")
    now = datetime.now(UTC)
    # One decision time for the joint plan, the server clock: calls received at different hours still
    # compete for the same teams now.
    network = _network_at(state, now)
    try:
        out = assign_waiting(store, calls, network=network, rules=state.rules, places=state.places, now=now,
                             received_given=given, dry_run=body.dry_run, actor=actor, write=state.write)
    except CrisisDispatchError as exc:
        if exc.field == "received":
            k = next((k for k, c in enumerate(body.calls) if c.received is not None), 0)
            exc.field = f"calls[{k}].received"
        raise
    return {**out, "profile": network.profile}


def _coverage(state: ServiceState, *, minutes: float, team_types: Sequence[TeamType] | None, from_staging: bool,
              mental_health: bool) -> CoverageResult:
    from routing.coverage import fleet_coverage

    if state.places is None or state.demand is None:
        raise DataMissing("coverage needs the places and incident data of a data directory (--data)")
    now = datetime.now(UTC)
    return fleet_coverage(state.store.teams(), network=_network_at(state, now), places=state.places, minutes=minutes,
                          team_types=[t.value for t in team_types] if team_types else None, demand=state.demand,
                          from_staging=from_staging, at=now, mental_health=mental_health)


def _fleet_map_html(state: ServiceState, *, offline: bool) -> str:
    from maps.fleet import fleet_map

    m = fleet_map(state.store.teams(), places=state.places, network=state.network, now=datetime.now(UTC),
                  offline=offline, stale_after_s=state.rules.stale_after_s)
    return m.get_root().render()


def _call_map_html(state: ServiceState, call_id: str, *, offline: bool) -> str:
    from maps.dispatch import dispatch_map
    from routing.dispatch import suggest

    call = state.store.call(call_id)  # 404 first
    now = datetime.now(UTC)
    network = _network_at(state, call.received)  # as POST /calls answered it
    teams = state.store.teams()
    result = suggest(call, teams, network=network, rules=state.rules, places=state.places, now=now)
    m = dispatch_map(result, network=network, teams=teams, places=state.places, offline=offline, now=now,
                     title=f"Call {call_id}: teams that can come now")
    return m.get_root().render()
