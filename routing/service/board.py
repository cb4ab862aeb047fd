"""The live dispatch board (``GET /board``) and the GeoJSON endpoints it polls.

The page (:mod:`maps.board`) holds only the city base and Leaflet, so it is open; the data endpoints need a
token with the ``read`` permission (dispatcher, analyst, admin), sent by the page as a bearer header.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at runtime, and
# the dependency types are names local to install_board.

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from routing.fleet import DISPATCHABLE

__all__ = ["install_board", "OPEN_CALLS_LIMIT"]

#: Open calls shown at most (the newest); a city's open calls at any moment are a few dozen.
OPEN_CALLS_LIMIT = 500


def _point(lat: float, lon: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [round(float(lon), 6), round(float(lat), 6)]}


def _finite_or_none(x: float) -> float | None:
    return round(x, 1) if math.isfinite(x) else None


def install_board(app: FastAPI) -> None:  # noqa: C901 - the board's endpoints, side by side
    """Add ``/board`` and its GeoJSON endpoints to the service."""
    from routing.service.app import _CallId, _network_at, _Reader, _state

    pages: dict[tuple[int, float], str] = {}

    @app.get("/board", tags=["board"], response_class=HTMLResponse,
             summary="Live dispatch board (HTML; asks for a token, then polls the GeoJSON endpoints)")
    async def board(request: Request,
                    refresh: Annotated[float, Query(ge=1, le=300, description="seconds between updates")] = 5.0
                    ) -> HTMLResponse:
        state = _state(request)
        key = (id(state.network), refresh)
        if key not in pages:  # the base (streets, neighborhoods) never changes while the service runs
            from maps.board import board_map

            def render() -> str:
                return board_map(state.network, state.places, refresh_s=refresh).get_root().render()

            pages[key] = await run_in_threadpool(render)
        # The page keeps the token in sessionStorage: forbid framing and referrers all the same.
        return HTMLResponse(pages[key], headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                                 "X-Frame-Options": "DENY"})

    @app.get("/board/fleet.geojson", tags=["board"], summary="Every team at its last position, by status (GeoJSON)")
    def fleet_geojson(request: Request, _: _Reader) -> JSONResponse:
        state = _state(request)
        now = datetime.now(UTC)
        features = []
        for ts in state.store.teams():
            age = ts.position_age_s(now)
            features.append({"type": "Feature", "id": ts.team_id, "geometry": _point(ts.lat, ts.lon), "properties": {
                "team_id": ts.team_id, "name": ts.team.name, "team_type": ts.team.team_type.value,
                "status": ts.status.value, "dispatchable": ts.status in DISPATCHABLE,
                "position_time": ts.position_time.isoformat(), "position_age_s": _finite_or_none(age),
                "stale": bool(age > state.rules.stale_after_s)}})
        return JSONResponse({"type": "FeatureCollection", "features": features, "generated_at": now.isoformat()},
                            media_type="application/geo+json")

    @app.get("/board/calls.geojson", tags=["board"], summary="Open calls (received, assigned, en route, on scene)")
    def calls_geojson(request: Request, _: _Reader) -> JSONResponse:
        store = _state(request).store
        page = getattr(store, "call_page", None)
        if page is not None:  # stores with the call lifecycle: only the open calls, newest last
            rows = page(status="open", limit=OPEN_CALLS_LIMIT)
        else:
            rows = [{"call": c.to_dict(), "status": "received"} for c in store.calls()[-OPEN_CALLS_LIMIT:]]
        features = []
        for row in rows:
            c = row["call"]
            features.append({"type": "Feature", "id": c["call_id"], "geometry": _point(c["lat"], c["lon"]),
                             "properties": {"call_id": c["call_id"], "received": c.get("received"),
                                            "priority": c.get("priority"), "status": row.get("status"),
                                            "mental_health": c.get("mental_health"),
                                            "safety_risk": c.get("safety_risk"), "weapon": c.get("weapon"),
                                            "neighborhood": c.get("neighborhood")}})
        return JSONResponse({"type": "FeatureCollection", "features": features}, media_type="application/geo+json")

    @app.get("/calls/{call_id}/suggestions.geojson", tags=["board"],
             summary="A recorded call and the teams suggested for it now, ranked (GeoJSON)")
    def suggestions_geojson(request: Request, call_id: _CallId, _: _Reader,
                            top: Annotated[int, Query(ge=1, le=50)] = 5) -> JSONResponse:
        from routing.dispatch import suggest

        state = _state(request)
        call = state.store.call(call_id)  # 404 first
        now = datetime.now(UTC)
        network = _network_at(state, call.received)  # the speeds POST /calls used
        result = suggest(call, state.store.teams(), network=network, rules=state.rules, places=state.places,
                         now=now, top=top)
        features: list[dict[str, Any]] = [{"type": "Feature", "id": call_id, "geometry": _point(call.lat, call.lon),
                                           "properties": {"kind": "call", "call_id": call_id,
                                                          "tier": result.tier.name if result.tier else None}}]
        for s in result.suggestions:
            features.append({"type": "Feature", "id": s.team_id, "geometry": _point(s.lat, s.lon), "properties": {
                "kind": "suggestion", "rank": s.rank, "team_id": s.team_id, "team_type": s.team_type.value,
                "eta_s": _finite_or_none(s.eta_s), "distance_m": _finite_or_none(s.distance_m), "tier": s.tier,
                "stale": bool(s.stale)}})
        return JSONResponse({"type": "FeatureCollection", "features": features, "call_id": call_id,
                             "profile": network.profile, "generated_at": now.isoformat()},
                            media_type="application/geo+json")
