"""A dispatcher's decisions on recorded calls, shared by the CLI and the service.

:func:`assign_team` sends a chosen team to one call and :func:`assign_waiting` jointly assigns the calls
that are still waiting. Both are safe to retry: a request repeated by a client (same call, same team,
the team still on it) answers what was recorded and changes nothing; a stale one (the team has since
left the call) is refused naming why; a second team for a call that has one is sent only when asked
(``additional``). The checks are made first here, for a clear answer, and again by the store inside the
transaction that applies the decision, so a race between two dispatchers cannot get past them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from routing.errors import Conflict, InvalidInput, NotFound
from routing.fleet import DISPATCHABLE, TeamState
from routing.store import Store
from routing.triage import Call

if TYPE_CHECKING:
    from routing.dispatch import Assignment
    from routing.network import RoadNetwork
    from routing.places import Places
    from routing.triage import Rules

__all__ = ["assign_team", "assign_waiting", "plan_repricer", "Writer"]

#: Runs a store write: ``write(fn, *args, **kwargs)``. The service passes its single writer thread;
#: the CLI calls the store directly.
Writer = Callable[..., Any]


def _direct(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def plan_repricer(network: RoadNetwork, calls: Sequence[Call]) -> Callable[[Assignment, TeamState], Assignment | None]:
    """The ``reprice`` of :meth:`Store.apply_plan`: a moved team's ETA from where it is now, by road."""
    by_id = {c.call_id: c for c in calls}

    def reprice(a: Assignment, ts: TeamState) -> Assignment | None:
        call = by_id[a.call_id]
        try:
            # A team may stand on any road (a van on I-93); the call is reached at the street.
            eta = float(network.eta((ts.lat, ts.lon), (call.lat, call.lon), origin_on="any"))
        except InvalidInput:
            return None
        if not math.isfinite(eta):
            return None
        return replace(a, eta_s=eta, lat=ts.lat, lon=ts.lon)

    return reprice


def _retry_or_refuse(store: Store, call_id: str, team_id: str, *, override: bool, additional: bool,
                     now: datetime) -> dict[str, Any] | None:
    """The recorded answer for a retry, ``None`` for a new assignment; raises ``Conflict`` for a stale one."""
    record = store.call_record(call_id)
    status = record["status"]
    mine = [a for a in record["assignments"] if a["team_id"] == team_id]
    if mine and mine[-1]["released_at"] is None:  # the same decision again: answer what was recorded
        return {"created": False, "call_id": call_id, "decision_id": mine[-1]["decision_id"],
                "assignment": mine[-1], "status": status,
                "message": f"{team_id} was already assigned to {call_id}; nothing changed"}
    if status not in ("received", "assigned", "en_route", "on_scene"):
        raise Conflict(f"call {call_id} is {status}: it takes no team", field="call_id")
    team = store.team(team_id)
    if mine and not override:
        elsewhere = store.active_assignment(team_id)
        where = f", on call {elsewhere['call_id']}" if elsewhere else ""
        raise Conflict(f"stale retry: {team_id} was sent to {call_id} at {mine[-1]['created_at']} and left it at "
                       f"{mine[-1]['released_at']}; it is {team.status.value}{where} now (send \"override\": true, "
                       "CLI --override REASON, to send it again)", field="team_id")
    if record["teams"] and not additional:
        raise Conflict(f"call {call_id} already has {', '.join(record['teams'])} ({status}); send another team "
                       "only as an additional one (\"additional\": true, CLI --additional)", field="call_id")
    if team.status not in DISPATCHABLE:
        elsewhere = store.active_assignment(team_id)
        where = f" (on call {elsewhere['call_id']})" if elsewhere else ""
        raise Conflict(f"team {team_id} is {team.status.value}{where}, not dispatchable (available or returning)",
                       field="team_id")
    return None


def assign_team(store: Store, call_id: str, team_id: str, *, network: RoadNetwork, rules: Rules,
                places: Places | None, now: datetime, override: bool | str = False, additional: bool = False,
                actor: str = "cli", write: Writer = _direct) -> dict[str, Any]:
    """Send ``team_id`` to the recorded call ``call_id``; the team goes en route, the call ``assigned``.

    Parameters
    ----------
    store
        The database.
    call_id, team_id
        The recorded call and the chosen team.
    network, rules, places, now
        As for :func:`routing.dispatch.suggest` (``network`` with the speeds of the call's time).
    override
        ``True`` or a reason: assign a dispatchable team even if it is not among the suggestions, or
        send again a team that has already left this call.
    additional
        Send the team although the call already has one (recorded as additional).
    actor
        Who decided (a token's name, ``cli``).
    write
        Runs the store write (the service's writer thread).

    Returns
    -------
    dict
        ``created`` (false: a retry, nothing changed), ``call_id``, ``decision_id``, ``assignment``,
        ``team`` (its state), ``override`` (the reason, if any), ``additional``, ``status`` and ``message``.

    Raises
    ------
    NotFound
        Unknown call or team.
    Conflict
        A closed call, a stale retry, a second team not asked for, a team not dispatchable or not
        suggested without ``override``.
    """
    from routing.dispatch import Assignment, AssignmentResult, decision_inputs, suggest

    call = store.call(call_id)
    store.team(team_id)  # NotFound first
    retried = _retry_or_refuse(store, call_id, team_id, override=bool(override), additional=additional, now=now)
    if retried is not None:
        return {**retried, "team": store.team(team_id).to_dict(), "override": None, "additional": False}
    teams = store.teams()
    result = suggest(call, teams, network=network, rules=rules, places=places, now=now)
    snap = next((ts for ts in teams if ts.team_id == team_id), None)
    if snap is None:
        raise Conflict(f"team {team_id} is no longer in the fleet", field="team_id")
    sug = next((s for s in result.suggestions if s.team_id == team_id), None)
    note: str | None = None
    if sug is not None:
        assignment = Assignment(call_id, team_id, snap.team.team_type, sug.eta_s, sug.distance_m, sug.tier,
                                result.tier_index or 0, sug.stale, snap.lat, snap.lon)
    else:
        why = next((i for i in result.ineligible if i.team_id == team_id), None)
        if why is not None and not override:
            raise Conflict(f"team {team_id} is not suggested for {call_id}: {why.reason}; "
                           "send \"override\": true (CLI --override REASON) to assign it anyway", field="team_id")
        note = why.reason if why is not None else None
        if isinstance(override, str) and override:
            note = f"{override}" + (f" ({note})" if note else "")
        assignment = _manual_assignment(network, rules, call, snap, now)
    if note is None and isinstance(override, str) and override:
        note = override
    plan = AssignmentResult([call], [assignment], [], assignment.eta_s if math.isfinite(assignment.eta_s) else 0.0,
                            True, "MANUAL" if note is None else "OVERRIDE", 0.0, rules.tier_penalty_s,
                            rules.unserved_penalty_s, now)
    inputs = decision_inputs(teams, network=network, rules=rules, now=now, chosen_by="dispatcher",
                             override_reason=note, additional=additional, actor=actor)
    try:
        decision_id = write(store.assign, plan, [call], inputs, at=now, received=now, actor=actor,
                            additional=additional)
    except Conflict:
        # Lost a race: to an identical request (answer as a retry), or to another decision (it stands).
        retried = _retry_or_refuse(store, call_id, team_id, override=bool(override), additional=additional,
                                   now=now)
        if retried is not None:
            return {**retried, "team": store.team(team_id).to_dict(), "override": None, "additional": False}
        raise
    extra = " as an additional team" if additional else ""
    return {"created": True, "call_id": call_id, "decision_id": decision_id, "assignment": assignment.to_dict(),
            "team": store.team(team_id).to_dict(), "override": note, "additional": additional,
            "status": store.call_status(call_id),
            "message": f"{team_id} sent to {call_id}{extra}" + (f" (override: {note})" if note else "")}


def _manual_assignment(network: RoadNetwork, rules: Rules, call: Call, ts: TeamState, now: datetime) -> Assignment:
    """An assignment for a team outside the suggestions: its own ETA, its tier from the rules."""
    from routing.dispatch import Assignment

    try:
        eta = float(network.eta((ts.lat, ts.lon), (call.lat, call.lon)))
    except InvalidInput:
        eta = math.inf
    tiers = rules.tiers_for(call)
    index = next((i for i, t in enumerate(tiers) if ts.team.team_type in t.team_types), -1)
    tier = tiers[index].name if index >= 0 else "override"
    stale = ts.position_age_s(now) > rules.stale_after_s
    return Assignment(call.call_id, ts.team_id, ts.team.team_type, eta, math.nan, tier, index, stale, ts.lat, ts.lon)


def waiting_calls(store: Store, calls: Sequence[Call], received_given: Sequence[bool] | None = None
                  ) -> tuple[list[Call], list[dict[str, Any]]]:
    """Split calls into those waiting for a team (new, or recorded as ``received``) and the others.

    A recorded call sent again is reconciled (:meth:`Store.reconcile_call`): without its ``received``
    it is the recorded one; with other details it is a ``Conflict`` naming them.
    """
    waiting: list[Call] = []
    skipped: list[dict[str, Any]] = []
    given = list(received_given) if received_given is not None else [True] * len(calls)
    for call, has_received in zip(calls, given, strict=True):
        call = store.reconcile_call(call, received_given=has_received)
        try:
            status = store.call_status(call.call_id)
        except NotFound:  # a new call: waiting by definition
            status = "received"
        if status == "received":
            waiting.append(call)
        else:
            skipped.append({"call_id": call.call_id, "status": status,
                            "teams": store.call_record(call.call_id)["teams"]})
    return waiting, skipped


def assign_waiting(store: Store, calls: Sequence[Call], *, network: RoadNetwork, rules: Rules,
                   places: Places | None, now: datetime, received_given: Sequence[bool] | None = None,
                   dry_run: bool = False, actor: str = "cli", write: Writer = _direct,
                   inputs_extra: dict[str, Any] | None = None, **solver: Any) -> dict[str, Any]:
    """Jointly assign the calls that are waiting (OR-Tools), applied to the fleet as it is at commit.

    Calls that already have a team, or are closed, are left alone and listed in ``skipped``: running
    the same batch twice changes nothing the second time, and says so. The plan is applied by
    :meth:`Store.apply_plan`: a team that moved meanwhile keeps its call with a recomputed ETA; only a
    team no longer dispatchable loses its call (listed in ``refused``).

    Returns
    -------
    dict
        The plan (``AssignmentResult.to_dict()``; with ``dry_run`` nothing is recorded), ``decision_id``,
        ``skipped``, ``repriced``, ``refused``, ``changed`` and ``message``.
    """
    from routing.dispatch import assign, decision_inputs

    waiting, skipped = waiting_calls(store, calls, received_given)
    if not waiting:
        return {"dry_run": dry_run, "decision_id": None, "assignments": [], "unserved": [], "calls": [],
                "skipped": skipped, "repriced": [], "refused": [], "changed": False,
                "message": f"nothing to assign: none of the {len(skipped)} calls is waiting (each already has a "
                           "team or is closed); nothing changed"}
    teams = store.teams()
    result = assign(waiting, teams, network=network, rules=rules, places=places, now=now, **solver)
    out: dict[str, Any] = {"dry_run": dry_run, "decision_id": None, **result.to_dict(), "skipped": skipped,
                           "repriced": [], "refused": [], "changed": False}
    if dry_run:
        out["message"] = f"plan for {len(waiting)} waiting calls (dry run: nothing recorded)"
        return out
    inputs = decision_inputs(teams, network=network, rules=rules, now=now, chosen_by="joint", actor=actor,
                             **(inputs_extra or {}))
    applied = write(store.apply_plan, result, inputs, snapshot={ts.team_id: ts for ts in teams},
                    reprice=plan_repricer(network, result.calls), actor=actor)  # stamped with the real time
    out.update(decision_id=applied["decision_id"], assignments=applied["assignments"],
               repriced=applied["repriced"], refused=applied["refused"],
               skipped=skipped + applied["skipped"], changed=applied["decision_id"] is not None)
    out["unserved"] = out["unserved"] + [{"call_id": r["call_id"], "reason": r["reason"]} for r in applied["refused"]]
    n = len(applied["assignments"])
    out["message"] = (f"{n} of {len(calls)} calls assigned" + (f", {len(out['skipped'])} skipped (not waiting)"
                                                               if out["skipped"] else "")
                      + (f", {len(applied['repriced'])} teams moved meanwhile (ETA recomputed)"
                         if applied["repriced"] else "")
                      + (f", {len(applied['refused'])} refused (team no longer dispatchable)"
                         if applied["refused"] else ""))
    return out
