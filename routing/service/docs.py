"""The API's documentation and static assets, all served from installed packages (nothing from a CDN).

- ``/docs`` (Swagger UI) and ``/redoc`` load their scripts from ``/assets/docs/``: the files shipped in
  the PyPI package ``fastapi-offline``. A dispatch room's network is often closed; FastAPI's defaults load
  them from a CDN and the page stays blank there.
- ``/assets/leaflet/`` serves Leaflet from ``XStatic-Leaflet`` (the live board, :mod:`maps.board`).
- ``/openapi.json`` declares the bearer scheme (``HTTPBearer``, so "Authorize" in ``/docs`` sends the
  token) and, per operation, every status it can answer with the error model: 401 / 403 where a token is
  needed, 422 (and 400 for a malformed ``Content-Length``) where it takes input, 404 for reads of a named
  resource, 503 (database unavailable, ``Retry-After``) and 500 (a bug) everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from routing.service.errors import BODY_METHODS, RETRY_AFTER_S, route_permission

__all__ = ["install_docs", "docs_assets_dir", "leaflet_assets_dir", "ASSETS"]

ASSETS = "/assets"
_REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
SCHEME = "HTTPBearer"


def docs_assets_dir() -> Path | None:
    """Folder of Swagger UI and Redoc files (package ``fastapi-offline``), or None if not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def leaflet_assets_dir() -> Path:
    """Folder of Leaflet's files (``XStatic-Leaflet``, a dependency)."""
    # XStatic packages ship no type information; BASE_DIR names their data folder.
    return Path(importlib.import_module("xstatic.pkg.leaflet").BASE_DIR)


_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorOut",
    "type": "object",
    "required": ["detail", "field", "error"],
    "properties": {
        "detail": {"type": "string", "description": "one line saying what is wrong"},
        "field": {"anyOf": [{"type": "string"}, {"type": "null"}],
                  "description": "the offending field (body key, path or query parameter), if any"},
        "error": {"type": "string", "description": "kind: InvalidInput, OutsideServiceArea, NotFound, Conflict, "
                                                   "PayloadTooLarge, Unauthorized, Forbidden, "
                                                   "ServiceUnavailable, InternalError, ..."},
        "errors": {"type": "array", "description": "every validation error, when there are several",
                   "items": {"type": "object", "properties": {"field": {"type": "string"},
                                                              "message": {"type": "string"}}}},
    },
}

_TEXT = {
    "400": "a malformed Content-Length header",
    "401": "no or unknown bearer token (checked before the body is read)",
    "403": "the token's role may not do this",
    "404": "unknown team or call",
    "422": "bad input, naming the field: malformed, non-finite or out-of-area values; a body that is not "
           "UTF-8 JSON, nested deeper than 64 levels or larger than --max-body (field body); an unknown "
           "team or call in a write; a write that contradicts the stored state (Conflict)",
    "500": "a bug: logged on the server with its traceback",
    "503": "the database is unavailable (disk full, locked by another process, read-only) or the data a "
           "feature needs is missing; nothing of the request was stored. Retry after Retry-After seconds",
}


# Operations with a second success status besides the one FastAPI declares.
_OTHER_SUCCESS = {
    ("POST", "/assignments"): ("201", "the plan was recorded and applied (200: dry_run, nothing recorded)"),
    ("POST", "/calls/{call_id}/assign"): ("200", "the same assignment again: answered as recorded, created false"),
}


def _error_response(status: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _TEXT[status],
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
    if status == "503":
        out["headers"] = {"Retry-After": {"description": f"seconds to wait before resending ({RETRY_AFTER_S})",
                                          "schema": {"type": "integer"}}}
    if status == "401":
        out["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    return out


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with the bearer scheme and every status each operation can answer."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                      routes=app.routes)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorOut"] = _ERROR_SCHEMA
    components["securitySchemes"] = {SCHEME: {"type": "http", "scheme": "bearer",
                                              "description": "a token of the tokens file (docs/SERVICE.md)"}}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path = doc["paths"].get(route.path_format)
        if path is None:
            continue
        permission = route_permission(route)
        for method in route.methods or ():
            op = path.get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            for status in [s for s in responses if s[0] in "45"]:
                del responses[status]  # the app-wide defaults: replaced by what this operation can answer
            statuses = ["500", "503"]
            if permission is not None:
                statuses += ["401", "403"]
                op["security"] = [{SCHEME: []}]
                op["x-permission"] = str(getattr(permission, "value", permission))
            params = op.get("parameters", [])
            if params or "requestBody" in op:
                statuses.append("422")
            if method in BODY_METHODS:
                statuses += ["400", "422"]
            if method == "GET" and any(p.get("in") == "path" for p in params):
                statuses.append("404")
            for status in sorted(set(statuses)):
                responses[status] = _error_response(status)
            extra = _OTHER_SUCCESS.get((method, route.path_format))
            if extra is not None and extra[0] not in responses:
                responses[extra[0]] = {"description": extra[1]}
    app.openapi_schema = doc
    return doc


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and ``/assets/...`` and the OpenAPI document above. Call after every route."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    static = docs_assets_dir()
    app.mount(f"{ASSETS}/leaflet", StaticFiles(directory=leaflet_assets_dir()), name="assets-leaflet")
    if static is not None:
        app.mount(f"{ASSETS}/docs", StaticFiles(directory=static), name="assets-docs")
    openapi_url = app.openapi_url or "/openapi.json"
    missing = ("<!doctype html><title>API documentation unavailable</title><p>The documentation pages need "
               "the package <code>fastapi-offline</code> (<code>pip install fastapi-offline</code>), which "
               "ships Swagger UI and Redoc; this service loads nothing from the internet. The schema itself "
               f"is at <a href='{openapi_url}'>{openapi_url}</a>.</p>")

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        if static is None:
            return HTMLResponse(missing, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title}: API", oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS}/docs/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/docs/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/docs/favicon.png",
            # No online validator badge; the token is kept for the page only, never in localStorage.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        # Browsers ask for it on every page; a 404 would be a console error on the board.
        if static is not None and (static / "favicon.png").is_file():
            return FileResponse(static / "favicon.png", media_type="image/png")
        return Response(status_code=204)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    redoc_js: list[bytes] = []

    @app.get(f"{ASSETS}/redoc.js", include_in_schema=False)
    def redoc_script() -> Response:
        # Redoc's bundle draws its "powered by" logo from its CDN: point it at the local favicon instead.
        if not redoc_js and static is not None:
            text = (static / "redoc.standalone.js").read_text(encoding="utf-8")
            redoc_js.append(text.replace(_REDOC_LOGO, f"{ASSETS}/docs/favicon.png").encode("utf-8"))
        if not redoc_js:
            return Response(status_code=404)
        return Response(redoc_js[0], media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        if static is None or not (static / "redoc.standalone.js").is_file():
            return HTMLResponse(missing, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title}: API",
                              redoc_js_url=f"{ASSETS}/redoc.js",
                              redoc_favicon_url=f"{ASSETS}/docs/favicon.png", with_google_fonts=False)
