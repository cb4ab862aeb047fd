"""Move-up on the five-node line of test_coverage_aware: known answers, hard rules, the audit trail.

    A ---- B ---- C ---- D ---- E      100 s per edge; West = A, B, C; East = D, E
    demand 300/yr at A, 100/yr at E; standard 2 min; q = 0.3; one post "P-B" at B.

With the West team busy, the East team at D covers E (100) only; at B it would cover A (300): moving it
gains 0.7 x 200 = 140 expected calls a year for a 200 s drive (penalty 60/h -> 3.3).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.errors import Conflict
from routing.fleet import Shift, Team, TeamState, TeamStatus, TeamType
from routing.moveup import Post, accept, plan_moveup, proposal, propose, settle, undo
from routing.store import Store
from tests import test_coverage_aware as _line
from tests.test_coverage_aware import NOW, XS, _ll

world = _line.world  # the shared five-node fixture

POSTS = [Post("P-B", "post at B", *_ll(XS["B"]))]


def _team(tid: str, x: float, ttype: TeamType = TeamType.emt_clinician, **kw) -> Team:
    lat, lon = _ll(x)
    return Team(tid, ttype, tid, kw.pop("dedicated", False), tid, lat, lon, **kw)


def _states(*teams: Team, busy: tuple[str, ...] = ()) -> list[TeamState]:
    return [TeamState(t, TeamStatus.en_route if t.team_id in busy else TeamStatus.available, t.base_lat, t.base_lon,
                      NOW, NOW) for t in teams]


def test_the_free_team_moves_west_with_known_gain(world) -> None:
    net, model = world
    teams = _states(_team("EC-W", XS["B"]), _team("EC-E", XS["D"]), busy=("EC-W",))
    for solver in ("greedy", "cp-sat"):
        plan = plan_moveup(teams, network=net, model=model, now=NOW, posts=POSTS, types=(TeamType.emt_clinician,),
                           max_moves=1, solver=solver)
        assert [(m.team_id, m.post.site_id) for m in plan.moves] == [("EC-E", "P-B")]
        assert plan.moves[0].travel_s == pytest.approx(200.0, abs=1)
        assert plan.before["emt_clinician"] == pytest.approx(70.0, abs=0.1)
        assert plan.after["emt_clinician"] == pytest.approx(210.0, abs=0.1)
        assert plan.uncovered_before == {"West": 300.0} and plan.uncovered_after == {"East": 100.0}


def test_no_move_when_k_is_zero_or_the_drive_is_too_long(world) -> None:
    net, model = world
    teams = _states(_team("EC-W", XS["B"]), _team("EC-E", XS["D"]), busy=("EC-W",))
    assert plan_moveup(teams, network=net, model=model, now=NOW, posts=POSTS, max_moves=0).moves == []
    assert plan_moveup(teams, network=net, model=model, now=NOW, posts=POSTS, max_travel_s=150).moves == []


def test_never_a_dedicated_car_out_of_its_area(world) -> None:
    net, model = world
    car = _team("CR-E", XS["D"], TeamType.co_response, dedicated=True, service_area=("East",))
    free = _team("CR-X", XS["E"], TeamType.co_response)
    teams = _states(car, free)
    for solver in ("greedy", "cp-sat"):
        plan = plan_moveup(teams, network=net, model=model, now=NOW, posts=POSTS, types=(TeamType.co_response,),
                           solver=solver)
        assert all(m.team_id != "CR-E" for m in plan.moves)
        assert [m.team_id for m in plan.moves] == ["CR-X"]  # the citywide car goes instead


def test_never_an_off_shift_team(world) -> None:
    net, model = world
    night = Shift.parse("01:00-02:00")  # NOW is 12:00 in Boston
    teams = _states(_team("EC-N", XS["D"], shift=night))
    plan = plan_moveup(teams, network=net, model=model, now=NOW, posts=POSTS)
    assert plan.moves == [] and plan.settings["movers"] == 0


def test_accepted_move_is_recorded_and_undoable(world, tmp_path) -> None:
    net, model = world
    fleet = [_team("EC-W", XS["B"]), _team("EC-E", XS["D"])]
    store = Store(tmp_path / "m.db", fleet=fleet, network=net, now=NOW - timedelta(hours=1))
    store.set_status("EC-W", TeamStatus.en_route, NOW - timedelta(minutes=30))
    plan = plan_moveup(store.teams(), network=net, model=model, now=NOW, posts=POSTS, max_moves=1)
    mid = propose(store, plan)
    assert proposal(store, mid)["state"] == "proposed"
    out = accept(store, mid, NOW)
    assert out["state"] == "accepted" and store.team("EC-E").status is TeamStatus.en_route
    with pytest.raises(Conflict):
        accept(store, mid, NOW)
    kinds = [d["kind"] for d in store.decisions()]
    assert "moveup" in kinds and "moveup_accept" in kinds
    back = undo(store, mid, NOW + timedelta(seconds=30))
    assert back["restored"] == ["EC-E"] and back["state"] == "undone"
    ts = store.team("EC-E")
    assert ts.status is TeamStatus.available
    assert (ts.lat, ts.lon) == pytest.approx(_ll(XS["D"]))
    assert "moveup_undo" in [d["kind"] for d in store.decisions()]


def test_an_accepted_move_settles_at_the_post(world, tmp_path) -> None:
    net, model = world
    fleet = [_team("EC-W", XS["B"]), _team("EC-E", XS["D"])]
    store = Store(tmp_path / "s.db", fleet=fleet, network=net, now=NOW - timedelta(hours=1))
    store.set_status("EC-W", TeamStatus.en_route, NOW - timedelta(minutes=30))
    mid = propose(store, plan_moveup(store.teams(), network=net, model=model, now=NOW, posts=POSTS))
    accept(store, mid, NOW)
    assert settle(store, NOW + timedelta(seconds=100)) == []  # still driving
    assert settle(store, NOW + timedelta(seconds=300)) == ["EC-E"]
    ts = store.team("EC-E")
    assert ts.status is TeamStatus.available and (ts.lat, ts.lon) == pytest.approx(_ll(XS["B"]))
    assert proposal(store, mid)["state"] == "arrived"


def test_policy_dispatch_section(tmp_path) -> None:
    from routing.errors import InvalidInput
    from routing.policy import load_policy

    pol = load_policy("coverage_moveup")
    assert pol.dispatch["moveup"] and pol.dispatch["return_to"] == "coverage"
    assert {r.name: r.choice for r in pol.rules.rules}["mental_health"] == "coverage"
    assert load_policy("default").dispatch["moveup"] is False
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nname = "x"\n[dispatch]\nchoice = { nope = "coverage" }\n')
    with pytest.raises(InvalidInput, match="unknown rule"):
        load_policy(bad)
