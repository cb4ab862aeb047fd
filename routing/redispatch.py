"""Redispatch: a better team for a call whose team is still driving, and diversion for priority-1 calls.

Two situations, both settings in ``[redispatch]`` of the rules file
(:class:`routing.triage.RedispatchSettings`):

- **Better team free.** A team becomes free (clears a call, comes on shift) close to a call whose
  assigned team is still ``en_route``: if the free team would arrive sooner by more than
  ``threshold_s`` (default 120 s) than the assigned team from where it is now, say so. The dispatcher
  decides; nothing is changed.
- **Diversion.** A priority-1 call may take a team driving to a lower-priority call when the rules'
  ``divert`` matrix allows it (e.g. ``divert = { "1" = [3, 4, 5] }``), if that team would arrive sooner
  than every free eligible team by more than the threshold. The diverted call goes back to waiting.

Both compare ETAs computed by :func:`routing.dispatch.suggest` from the teams' current positions (the
en-route team is shown to dispatch as if it were free, at its last reported position), so the
eligibility rules (types, shifts, service areas, dedicated cars) are the same as for a new call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from routing.dispatch import suggest
from routing.fleet import TeamState, TeamStatus
from routing.triage import Call, Rules
from routing.units import format_eta

if TYPE_CHECKING:
    from routing.network import RoadNetwork
    from routing.places import Places
    from routing.store import Store


def better_team(call: Call, assigned: str, teams: Sequence[TeamState], *, network: RoadNetwork, rules: Rules,
                places: Places | None = None, now: datetime | None = None,
                threshold_s: float | None = None) -> dict[str, Any]:
    """Whether a free team would reach ``call`` sooner than its en-route team ``assigned``.

    Returns
    -------
    dict
        ``call_id``, ``assigned_team``, ``assigned_eta_s`` (from its current position; None if it cannot
        be ranked), ``threshold_s``, ``better`` (free teams faster by more than the threshold:
        ``team_id``, ``eta_s``, ``saves_s``), ``advice`` (a sentence or None).
    """
    thr = rules.redispatch.threshold_s if threshold_s is None else float(threshold_s)
    shown = [replace(ts, status=TeamStatus.available) if ts.team_id == assigned else ts for ts in teams]
    res = suggest(call, shown, network=network, rules=rules, places=places, now=now)
    eta = {s.team_id: s.eta_s for s in res.suggestions}
    mine = eta.get(assigned)
    better: list[dict[str, Any]] = []
    if mine is not None:
        for s in res.suggestions:
            if s.team_id != assigned and mine - s.eta_s > thr:
                better.append({"team_id": s.team_id, "eta_s": round(s.eta_s, 1), "saves_s": round(mine - s.eta_s, 1)})
    advice = None
    if better:
        b = better[0]
        advice = (f"{b['team_id']} is free and would reach {call.call_id} in {format_eta(b['eta_s'])}, "
                  f"{format_eta(b['saves_s'])} before {assigned} (still en route)")
    return {"call_id": call.call_id, "assigned_team": assigned,
            "assigned_eta_s": None if mine is None else round(mine, 1), "threshold_s": thr, "better": better,
            "advice": advice}


def divert_option(call: Call, teams: Sequence[TeamState], en_route_to: Mapping[str, Call], *,
                  network: RoadNetwork, rules: Rules, places: Places | None = None,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """A team en route to a lower-priority call that a new call may take, per the ``divert`` matrix.

    Parameters
    ----------
    en_route_to
        Team id -> the call it is driving to.

    Returns
    -------
    dict or None
        ``team_id``, ``from_call``, ``eta_s``, ``best_free`` (team id and ETA, or None), ``saves_s``;
        None when the matrix does not allow a diversion or no diverted team is faster by more than the
        threshold.
    """
    allowed = set(rules.redispatch.divert.get(call.priority, ()))
    if not allowed:
        return None
    divertable = {tid for tid, c in en_route_to.items() if c.priority in allowed}
    if not divertable:
        return None
    shown = [replace(ts, status=TeamStatus.available) if ts.team_id in divertable else ts for ts in teams]
    res = suggest(call, shown, network=network, rules=rules, places=places, now=now)
    free = [s for s in res.suggestions if s.team_id not in divertable]
    cand = [s for s in res.suggestions if s.team_id in divertable]
    if not cand:
        return None
    best = cand[0]
    free_eta = free[0].eta_s if free else None
    saves = None if free_eta is None else free_eta - best.eta_s
    if saves is not None and saves <= rules.redispatch.threshold_s:
        return None
    return {"call_id": call.call_id, "team_id": best.team_id, "from_call": en_route_to[best.team_id].call_id,
            "from_priority": en_route_to[best.team_id].priority, "eta_s": round(best.eta_s, 1),
            "best_free": None if not free else {"team_id": free[0].team_id, "eta_s": round(free[0].eta_s, 1)},
            "saves_s": None if saves is None else round(saves, 1)}


def en_route_calls(store: Store) -> dict[str, Call]:
    """Team id -> the call it was last assigned to, for teams now ``en_route`` (from the store)."""
    status = {ts.team_id: ts.status for ts in store.teams()}
    out: dict[str, Call] = {}
    for a in store.assignments():  # oldest first: the last assignment of a team wins
        if status.get(a["team_id"]) is TeamStatus.en_route:
            out[a["team_id"]] = store.call(a["call_id"])
    return out


def advice_for_call(store: Store, call_id: str, *, network: RoadNetwork, rules: Rules, places: Places | None,
                    now: datetime) -> dict[str, Any] | None:
    """:func:`better_team` for a recorded call whose assigned team is still en route (None otherwise)."""
    for tid, call in en_route_calls(store).items():
        if call.call_id == call_id:
            return better_team(call, tid, store.teams(), network=network, rules=rules, places=places, now=now)
    return None


def board_advice(store: Store, *, network: RoadNetwork, rules: Rules, places: Places | None,
                 now: datetime) -> list[dict[str, Any]]:
    """Every call with an en-route team that a free team would reach sooner (for the live board)."""
    teams = store.teams()
    out = []
    for tid, call in sorted(en_route_calls(store).items()):
        adv = better_team(call, tid, teams, network=network, rules=rules, places=places, now=now)
        if adv["better"]:
            out.append(adv)
    return out


def record(store: Store, kind: str, result: Mapping[str, Any], calls: Sequence[Call] = ()) -> int:
    """Record redispatch advice (``kind="redispatch"``) or a diversion (``"divert"``) in the audit trail."""
    with store._write() as con:  # noqa: SLF001 - the store's own transaction and audit table
        return store._insert_decision(con, kind, list(calls), dict(result), {})  # noqa: SLF001


__all__ = ["advice_for_call", "better_team", "board_advice", "divert_option", "en_route_calls", "record"]
