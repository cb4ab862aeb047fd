"""Coverage-aware choice (MEXCLP departures) against hand-worked answers on a five-node line.

    A ---- B ---- C ---- D ---- E      two-way, 1000 m per edge at 36 km/h = 100 s
    West district: A, B, C             East district: D, E
    EC-W at B, EC-E at D; demand 300 calls/yr at A (West), 100 at E (East); standard 2 min, q = 0.3.

A call at x = 1900 m: EC-W 90 s, EC-E 110 s (within 3 min and 25 %). Sending EC-W leaves A (300) with
no team within 2 min, sending EC-E leaves E (100): the coverage-aware choice is EC-E, the closest EC-W.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from routing.dispatch import assign, suggest
from routing.errors import InvalidInput
from routing.fleet import Team, TeamState, TeamStatus, TeamType
from routing.mexclp import CoverageModel
from routing.network import network_from_graph
from routing.speeds import load_speeds
from routing.triage import Call, load_rules

LAT0, LON0 = 42.35, -71.06
M_LON = 1 / (111_195 * math.cos(math.radians(LAT0)))
NOW = datetime(2024, 3, 5, 17, 0, tzinfo=UTC)
XS = {"A": 0.0, "B": 1000.0, "C": 2000.0, "D": 3000.0, "E": 4000.0}

RULES = """
[choice]
minutes = 2
busy_fraction = 0.3

[tier.alternative]
types = ["emt_clinician"]

[[rule]]
name = "mental_health"
when = { mental_health = true }
tier = "alternative"
choice = "{choice}"

[[rule]]
name = "other"
when = {}
tier = "alternative"
"""


def _ll(x: float) -> tuple[float, float]:
    return LAT0, LON0 + x * M_LON


@pytest.fixture(scope="module")
def world():
    graph = nx.MultiDiGraph()
    for k, (name, x) in enumerate(XS.items()):
        lat, lon = _ll(x)
        graph.add_node(k + 1, x=lon, y=lat, name=name)
    for k in range(1, len(XS)):
        for a, b in ((k, k + 1), (k + 1, k)):
            graph.add_edge(a, b, length=1000.0, highway="residential", maxspeed="36")
    flat = {h: 1.0 for h in range(24)}
    speeds = dataclasses.replace(load_speeds(), class_factor={"other": 1.0}, hour_factor=flat,
                                 mode_factor={"emergent": 1.0, "non_emergent": 1.0})
    net = network_from_graph(graph, speeds=speeds, source="two-districts")
    order = [min(XS, key=lambda n: abs(_ll(XS[n])[1] - lon)) for lon in net.lon]
    weights = np.array([{"A": 300.0, "E": 100.0}.get(n, 0.0) for n in order])
    nbhd = np.array(["West" if XS[n] < 2500 else "East" for n in order], dtype=object)
    model = CoverageModel(weights, minutes=2.0, busy_fraction=0.3, node_neighborhood=nbhd, node_district=nbhd)
    return net, model


def _teams(**status: TeamStatus) -> list[TeamState]:
    out = []
    for tid, x in (("EC-W", XS["B"]), ("EC-E", XS["D"])):
        lat, lon = _ll(x)
        team = Team(tid, TeamType.emt_clinician, tid, False, tid, lat, lon)
        out.append(TeamState(team, status.get(tid.replace("-", "_"), TeamStatus.available), lat, lon, NOW, NOW))
    return out


def _rules(tmp_path: Path, choice: str = "coverage"):
    path = tmp_path / f"rules_{choice}.toml"
    path.write_text(RULES.replace("{choice}", choice))
    return load_rules(path)


def _call(priority: int = 2) -> Call:
    lat, lon = _ll(1900.0)
    return Call("c1", NOW, lat, lon, mental_health=True, priority=priority)


def test_closest_choice_leaves_west_uncovered_coverage_choice_does_not(world, tmp_path) -> None:
    net, model = world
    closest = suggest(_call(), _teams(), network=net, rules=_rules(tmp_path, "closest"), now=NOW, coverage=model)
    assert [s.team_id for s in closest.suggestions] == ["EC-W", "EC-E"]
    assert closest.suggestions[0].eta_s == pytest.approx(90.0, abs=0.5)
    assert closest.choice is None and "note" not in closest.suggestions[0].to_dict()

    res = suggest(_call(), _teams(), network=net, rules=_rules(tmp_path), now=NOW, coverage=model)
    assert [s.team_id for s in res.suggestions] == ["EC-E", "EC-W"]
    first, second = res.suggestions
    assert first.eta_s == pytest.approx(110.0, abs=0.5)
    # Before: A and E each covered by one team: 0.7 * 400 = 280 expected calls a year.
    assert res.choice["expected_coverage_before"] == pytest.approx(280.0, abs=0.1)
    assert first.coverage["expected_coverage_after"] == pytest.approx(210.0, abs=0.1)  # 0.7 * 300 (A kept)
    assert second.coverage["expected_coverage_after"] == pytest.approx(70.0, abs=0.1)  # 0.7 * 100 (E only)
    assert second.coverage["newly_uncovered_by_neighborhood"] == {"West": 300.0}
    assert "300 expected calls a year of West without an EMT+clinician team within 2 min" in second.note
    assert second.note.startswith("closest (ETA 1 min 30 s) but not first")  # routing.units.format_eta
    assert res.choice["closest"] == "EC-W" and res.choice["chosen"] == "EC-E"


def test_top_one_still_lists_the_closest_with_its_reason(world, tmp_path) -> None:
    net, model = world
    res = suggest(_call(), _teams(), network=net, rules=_rules(tmp_path), now=NOW, coverage=model, top=1)
    assert [s.team_id for s in res.suggestions] == ["EC-E", "EC-W"]
    assert "not first" in res.suggestions[1].note


def test_priority_one_is_always_closest(world, tmp_path) -> None:
    net, model = world
    res = suggest(_call(priority=1), _teams(), network=net, rules=_rules(tmp_path), now=NOW, coverage=model)
    assert [s.team_id for s in res.suggestions] == ["EC-W", "EC-E"]
    assert res.choice is None


def test_beyond_slack_the_closest_goes(world, tmp_path) -> None:
    net, model = world
    lat, lon = _ll(1500.0)  # EC-W 50 s, EC-E 150 s: 3 x later, beyond 25 %
    call = Call("c2", NOW, lat, lon, mental_health=True)
    res = suggest(call, _teams(), network=net, rules=_rules(tmp_path), now=NOW, coverage=model)
    assert res.best.team_id == "EC-W"
    assert "beyond the slack" in res.suggestions[1].note


def test_only_free_teams_count_for_coverage(world, tmp_path) -> None:
    net, model = world
    # With EC-E busy, EC-W is the only candidate; its departure leaves both A and E uncovered.
    res = suggest(_call(), _teams(EC_E=TeamStatus.en_route), network=net, rules=_rules(tmp_path), now=NOW,
                  coverage=model)
    assert [s.team_id for s in res.suggestions] == ["EC-W"]
    assert res.suggestions[0].coverage["expected_coverage_after"] == 0.0


def test_assign_honours_the_coverage_choice(world, tmp_path) -> None:
    net, model = world
    one = assign([_call()], _teams(), network=net, rules=_rules(tmp_path), now=NOW, coverage=model)
    assert [(a.call_id, a.team_id) for a in one.assignments] == [("c1", "EC-E")]
    assert one.assignments[0].eta_s == pytest.approx(110.0, abs=0.5)  # the real ETA is reported
    closest = assign([_call()], _teams(), network=net, rules=_rules(tmp_path, "closest"), now=NOW, coverage=model)
    assert closest.assignments[0].team_id == "EC-W"


def test_rules_file_validation(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RULES.replace("{choice}", "farthest"))
    with pytest.raises(InvalidInput, match="choice must be one of"):
        load_rules(bad)
    bad.write_text("[choice]\npriorities = [1, 2]\n" + RULES.split("\n", 4)[4].replace("{choice}", "coverage"))
    with pytest.raises(InvalidInput, match="priority 1"):
        load_rules(bad)
    rules = _rules(tmp_path)
    assert rules.to_dict()["rules"][0]["choice"] == "coverage"
    assert rules.with_choices({"mental_health": "closest"}).choice_for(_call()) == "closest"


def test_shipped_rules_stay_closest() -> None:
    rules = load_rules()
    assert all(r.choice == "closest" for r in rules.rules)
    assert "choice" not in rules.to_dict()
