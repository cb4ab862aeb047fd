"""Redispatch advice and priority-1 diversion on a hand-built line of streets (times worked out by hand)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import networkx as nx
import pytest

from routing.fleet import Team, TeamState, TeamStatus, TeamType
from routing.network import network_from_graph
from routing.redispatch import better_team, divert_option
from routing.speeds import load_speeds
from routing.triage import Call, load_rules

LAT0, LON0 = 42.35, -71.06
DLON = 100 / (111_195 * math.cos(math.radians(LAT0)))  # 100 m east
NOW = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
N = 30  # nodes 0..29, 100 m apart: 10 s per edge at 36 km/h


@pytest.fixture(scope="module")
def line():
    graph = nx.MultiDiGraph()
    for k in range(N):
        graph.add_node(k + 1, x=LON0 + k * DLON, y=LAT0, osmid=k + 1)
    for k in range(N - 1):
        for a, b in ((k, k + 1), (k + 1, k)):
            graph.add_edge(a + 1, b + 1, length=100.0, highway="residential", maxspeed="36")
    speeds = dataclasses.replace(load_speeds(), class_factor={"other": 1.0})
    return network_from_graph(graph, speeds=speeds, source="line")


def _at(k: int) -> tuple[float, float]:
    return LAT0, LON0 + k * DLON


def _team(team_id: str, k: int, status: TeamStatus = TeamStatus.available) -> TeamState:
    lat, lon = _at(k)
    return dataclasses.replace(TeamState.at_base(Team(team_id, TeamType.police, team_id, False, "x", lat, lon), NOW),
                               status=status)


def _call(call_id: str, k: int, priority: int) -> Call:
    lat, lon = _at(k)
    return Call.from_dict({"call_id": call_id, "lat": lat, "lon": lon, "safety_risk": True, "priority": priority,
                           "received": NOW.isoformat()})


def test_a_free_team_much_nearer_than_the_en_route_one_is_advised(line) -> None:
    rules = load_rules()
    call = _call("c", 29, 2)
    teams = [_team("P-FAR", 0, TeamStatus.en_route), _team("P-NEAR", 28)]
    adv = better_team(call, "P-FAR", teams, network=line, rules=rules, now=NOW)
    # P-FAR drives 29 edges (290 s), P-NEAR one (10 s): 280 s saved, over the 120 s threshold.
    assert adv["assigned_eta_s"] == pytest.approx(290.0, abs=0.1)
    assert [(b["team_id"], b["eta_s"], b["saves_s"]) for b in adv["better"]] == [("P-NEAR", 10.0, 280.0)]
    assert "P-NEAR is free" in adv["advice"]
    # A free team only 100 s sooner stays quiet.
    close = [_team("P-FAR", 0, TeamStatus.en_route), _team("P-MID", 10)]  # 190 s: saves 100 s
    quiet = better_team(call, "P-FAR", close, network=line, rules=rules, now=NOW, threshold_s=120)
    assert quiet["better"] == [] and quiet["advice"] is None


def test_priority_one_diverts_only_as_the_matrix_allows(line) -> None:
    rules = load_rules()
    urgent = _call("p1", 0, 1)
    low = _call("p3", 5, 3)
    teams = [_team("P-EN", 1, TeamStatus.en_route), _team("P-FREE", 29)]
    # The shipped rules allow no diversion.
    assert divert_option(urgent, teams, {"P-EN": low}, network=line, rules=rules, now=NOW) is None
    allowing = dataclasses.replace(rules, redispatch=dataclasses.replace(rules.redispatch, divert={1: (3, 4, 5)}))
    out = divert_option(urgent, teams, {"P-EN": low}, network=line, rules=allowing, now=NOW)
    assert out is not None
    assert (out["team_id"], out["from_call"], out["eta_s"]) == ("P-EN", "p3", 10.0)
    assert out["best_free"] == {"team_id": "P-FREE", "eta_s": 290.0} and out["saves_s"] == 280.0
    # A priority-2 call may not take it, nor may a priority-1 call take a team on another priority-1 call.
    assert divert_option(_call("p2", 0, 2), teams, {"P-EN": low}, network=line, rules=allowing, now=NOW) is None
    assert divert_option(urgent, teams, {"P-EN": _call("o", 5, 1)}, network=line, rules=allowing, now=NOW) is None
