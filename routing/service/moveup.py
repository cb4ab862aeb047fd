"""Move-up and redispatch endpoints (issue 12), as an APIRouter that :mod:`routing.service.app` includes.

- ``GET /moveup``: plan relocations of free crisis teams from the live state and record the proposal
  (its ``id``); ``?minutes=&max_moves=&max_travel=``.
- ``POST /moveup/{id}/accept``: the moved teams go ``en_route`` to their posts (recorded, undoable);
  they are settled at the post, ``available``, by the next move-up request after their arrival time.
- ``POST /moveup/{id}/undo``: the teams still on the move (or idle at the post) are available again
  where they came from (recorded).
- ``GET /moveup/{id}``: a recorded plan and its state.
- ``GET /calls/{call_id}/redispatch``: whether a free team would reach the call sooner than its en-route
  team by more than the rules' ``[redispatch] threshold_s`` (:mod:`routing.redispatch`).
- ``GET /redispatch``: the same for every call with an en-route team (for the live board).

The app's helpers are imported inside the functions: app.py imports this module at its top.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from routing.service.auth import Permission, Principal
from routing.service.errors import AuthFirstRoute

router = APIRouter(route_class=AuthFirstRoute)


async def _reader(request: Request) -> Principal:
    from routing.service.app import authorize

    return authorize(request, Permission.read)


async def _dispatcher(request: Request) -> Principal:
    from routing.service.app import authorize

    return authorize(request, Permission.dispatch)


# Read by the app's AuthFirstRoute (token before body) and its OpenAPI document (security per route).
_reader.permission = Permission.read  # type: ignore[attr-defined]
_dispatcher.permission = Permission.dispatch  # type: ignore[attr-defined]

_Reader = Annotated[Principal, Depends(_reader)]
_Dispatcher = Annotated[Principal, Depends(_dispatcher)]
_Id = Annotated[int, PathParam(ge=1, description="move-up plan id (from GET /moveup)")]


def _json(obj: Any, status: int = 200) -> JSONResponse:
    from routing.service.app import _finite

    return JSONResponse(_finite(obj), status_code=status)


def _state(request: Request) -> Any:
    from routing.service.app import _state as state

    return state(request)


@router.get("/moveup", tags=["moveup"],
            summary="Relocations of free crisis teams that best restore expected coverage (recorded proposal)")
def get_moveup(request: Request, _: _Reader,
               minutes: Annotated[float, Query(gt=0, le=180, allow_inf_nan=False)] = 8.0,
               max_moves: Annotated[int, Query(ge=0, le=20)] = 2,
               max_travel: Annotated[float, Query(gt=0, le=7200, allow_inf_nan=False,
                                                  description="longest drive, seconds")] = 900.0) -> JSONResponse:
    from routing import moveup
    from routing.mexclp import CoverageModel

    state = _state(request)
    now = datetime.now(UTC)
    state.write(moveup.settle, state.store, now)
    model = None
    if state.demand is not None:
        model = CoverageModel(state.demand.weights, minutes, 0.3, state.demand.node_neighborhood)
        if state.places is not None:
            from routing.demand import node_areas

            nb, dist = node_areas(state.network, state.places)
            model = CoverageModel(state.demand.weights, minutes, 0.3, nb, dist)
    plan = moveup.plan_from_store(state.store, network=state.network, places=state.places, now=now, model=model,
                                  minutes=minutes, max_moves=max_moves, max_travel_s=max_travel)
    mid = state.write(moveup.propose, state.store, plan, moveup.plan_inputs(state.store))
    return _json({"id": mid, "state": "proposed", **plan.to_dict()})


@router.get("/moveup/{moveup_id}", tags=["moveup"], summary="A recorded move-up plan and its state")
def get_moveup_plan(request: Request, moveup_id: _Id, _: _Reader) -> JSONResponse:
    from routing import moveup

    return _json(moveup.proposal(_state(request).store, moveup_id))


@router.post("/moveup/{moveup_id}/accept", tags=["moveup"],
             summary="Accept a move-up: the teams go en route to their posts (recorded, undoable)")
async def accept_moveup(request: Request, moveup_id: _Id, _: _Dispatcher) -> JSONResponse:
    from routing import moveup

    state = _state(request)
    out = await state.awrite(moveup.accept, state.store, moveup_id, datetime.now(UTC))
    return _json(out, 201)


@router.post("/moveup/{moveup_id}/undo", tags=["moveup"],
             summary="Undo an accepted move-up: the teams are available where they came from (recorded)")
async def undo_moveup(request: Request, moveup_id: _Id, _: _Dispatcher) -> JSONResponse:
    from routing import moveup

    state = _state(request)
    return _json(await state.awrite(moveup.undo, state.store, moveup_id, datetime.now(UTC)))


@router.get("/calls/{call_id}/redispatch", tags=["calls"],
            summary="Would a free team reach this call sooner than its en-route team? (advice)")
async def call_redispatch(request: Request, call_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.:#-]{1,80}$")],
                          _: _Reader) -> JSONResponse:
    from routing import redispatch

    state = _state(request)
    state.store.call(call_id)  # 404/422 for an unknown call, as GET /calls/{id}
    adv = await run_in_threadpool(redispatch.advice_for_call, state.store, call_id, network=state.network,
                                  rules=state.rules, places=state.places, now=datetime.now(UTC))
    if adv is not None and adv["better"]:
        await state.awrite(redispatch.record, state.store, "redispatch", adv, [state.store.call(call_id)])
    return _json({"call_id": call_id, "redispatch": adv})


@router.get("/redispatch", tags=["calls"], summary="Calls whose en-route team a free team would beat (board)")
async def all_redispatch(request: Request, _: _Reader) -> JSONResponse:
    from routing import redispatch

    state = _state(request)
    out = await run_in_threadpool(redispatch.board_advice, state.store, network=state.network, rules=state.rules,
                                  places=state.places, now=datetime.now(UTC))
    return _json({"advice": out})
