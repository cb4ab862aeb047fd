"""The discrete-event simulation: hand-checked timelines on a tiny network, conservation, no team in two
places at once, Little's law, determinism, the demand model against facts of the Boston data, policies,
replay files and the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from routing.arrivals import CallMix, generate_calls, load_arrival_model, read_calls_file
from routing.cli import main
from routing.errors import InvalidInput, NotFound
from routing.fleet import TRANSITIONS, Team, TeamStatus, TeamType
from routing.policy import Policy, ServiceTime, available_policies, load_policy
from routing.simulation import compare, default_start, select_period, simulate
from routing.triage import Call, load_rules
from tests._line import EDGE_S, latlon, line_network

# ------------------------------------------------------------------------------------------ tiny world

#   A --- B --- C --- D     two-way, every edge 100 m at 36 km/h = 10 s (tests/_line.py)
START = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def line():
    return line_network()


def _rules(tmp_path: Path, team_type: str):
    path = tmp_path / "rules.toml"
    path.write_text(f'[tier.only]\ntypes = ["{team_type}"]\n\n[[rule]]\nname = "all"\ntier = "only"\n')
    return load_rules(path)


def _policy(tmp_path: Path, team_type: TeamType = TeamType.community, n_teams: int = 1,
            service: ServiceTime = ServiceTime(600.0, 0.0), handoff: ServiceTime = ServiceTime(300.0, 0.0)):
    lat, lon = latlon("A")
    teams = [Team(f"T{k:02d}", team_type, f"team {k}", False, "A", lat, lon) for k in range(1, n_teams + 1)]
    return Policy("tiny", teams, _rules(tmp_path, team_type.value), service={team_type: service}, handoff=handoff)


def _call(call_id: str, at_s: float, where: str, **flags) -> Call:
    lat, lon = latlon(where)
    return Call(call_id, START + timedelta(seconds=at_s), lat, lon, mental_health=True, **flags)


def _run(policy, calls, network, **kw):
    kw.setdefault("hospitals", [])
    return simulate(policy, calls, network=network, start=START, days=1, seed=0, trace=True, **kw)


def _by_id(result):
    return {o.call_id: o for o in result.outcomes}


def test_one_team_two_calls_hand_checked(line, tmp_path) -> None:
    # c1 at C (20 s from A) at t=0; c2 at B at t=100 while the team is on scene: it waits until the
    # team clears c1 at 620, then the team drives C -> B (10 s) from where it is.
    result = _run(_policy(tmp_path), [_call("c1", 0, "C"), _call("c2", 100, "B")], line)
    c1, c2 = _by_id(result)["c1"], _by_id(result)["c2"]
    assert c1.dispatched_s == pytest.approx(0)
    assert c1.on_scene_s == pytest.approx(2 * EDGE_S, abs=1e-3)
    assert c1.clear_s == pytest.approx(620, abs=1e-3)
    assert not c1.queued and c1.wait_s == pytest.approx(0)
    assert c2.queued
    assert c2.dispatched_s == pytest.approx(620, abs=1e-3)
    assert c2.on_scene_s == pytest.approx(630, abs=1e-3)
    assert c2.response_s == pytest.approx(530, abs=1e-3)
    assert c2.wait_s == pytest.approx(520, abs=1e-3)
    assert c2.clear_s == pytest.approx(1230, abs=1e-3)
    # Status timeline of the only team, ending back at base after B -> A (10 s).
    timeline = [(round(t, 2), new, call) for t, _, _, new, call in result.trace]
    assert timeline == [
        (0.0, "en_route", "c1"), (20.0, "on_scene", "c1"), (620.0, "returning", "c1"),
        (620.0, "en_route", "c2"), (630.0, "on_scene", "c2"), (1230.0, "returning", "c2"),
        (1240.0, "available", None),
    ]
    usage = result.usage[0]
    assert usage.busy_s == pytest.approx(20 + 600 + 10 + 600, abs=1e-2)
    assert usage.status_s["returning"] == pytest.approx(10, abs=1e-2)
    assert usage.calls == 2
    summary = result.summary()
    assert summary["calls"]["served"] == 2
    assert summary["queue"]["queued_calls"] == 1
    assert summary["response_time"]["overall"]["median_s"] == pytest.approx((20 + 530) / 2, abs=0.1)


def test_returning_team_is_sent_from_where_it_is(line, tmp_path) -> None:
    # After c1 at B the team heads back to A (B -> A, 10 s). 3 s into that drive c2 comes in at D: the
    # team is on the road 30 m west of B (a phantom node on B-A, no off-network leg), turns back to B
    # (30 m, 3 s) and drives B -> D.
    result = _run(_policy(tmp_path), [_call("c1", 0, "B"), _call("c2", 613, "D")], line)
    c1, c2 = _by_id(result)["c1"], _by_id(result)["c2"]
    assert c1.clear_s == pytest.approx(610, abs=1e-3)
    assert c2.dispatched_s == pytest.approx(613)
    assert c2.on_scene_s == pytest.approx(613 + 0.3 * EDGE_S + 2 * EDGE_S, abs=0.15)
    assert not c2.queued
    # Back at A from D: 30 s.
    t, _, old, new, _ = result.trace[-1]
    assert (old, new) == ("returning", "available")
    assert t == pytest.approx(c2.clear_s + 3 * EDGE_S, abs=1e-3)


def test_transport_to_the_nearest_hospital(line, tmp_path) -> None:
    policy = _policy(tmp_path, TeamType.ems)
    hospitals = [("far", *latlon("A")), ("near", *latlon("D"))]
    result = _run(policy, [_call("c1", 0, "C", needs_transport=True)], line, hospitals=hospitals)
    c1 = result.outcomes[0]
    assert c1.transported_to == "near"
    assert c1.clear_s == pytest.approx(620, abs=1e-3)
    assert c1.free_s == pytest.approx(620 + EDGE_S + 300, abs=1e-3)  # C -> D, hand-off 5 min
    assert [new for _, _, _, new, _ in result.trace] == ["en_route", "on_scene", "transporting", "returning",
                                                         "available"]
    assert result.trace[-1][0] == pytest.approx(c1.free_s + 3 * EDGE_S, abs=1e-3)  # D -> A


def test_a_team_that_cannot_transport_reports_it(line, tmp_path) -> None:
    result = _run(_policy(tmp_path, TeamType.community), [_call("c1", 0, "C", needs_transport=True)], line,
                  hospitals=[("H", *latlon("D"))])
    c1 = result.outcomes[0]
    assert c1.transported_to is None and c1.transport_missed
    assert c1.free_s == pytest.approx(c1.clear_s)


def test_conservation_and_abandonment(line, tmp_path) -> None:
    # One team, a call every 5 minutes, 10 minutes on scene: half the calls cannot be served.
    calls = [_call(f"c{k:03d}", 300 * k, "BCD"[k % 3]) for k in range(100)]
    result = _run(_policy(tmp_path), calls, line, max_wait_s=900)
    served = [o for o in result.outcomes if o.served]
    unserved = [o for o in result.outcomes if not o.served]
    assert len(served) + len(unserved) == len(calls) == len(result.outcomes)
    assert unserved and served
    assert all(o.unserved_reason == "no eligible team free within 15 min" for o in unserved)
    assert all(o.dispatched_s is None and o.on_scene_s is None for o in unserved)
    for o in served:
        assert o.received_s <= o.dispatched_s <= o.on_scene_s <= o.clear_s <= o.free_s
        assert o.wait_s <= 900 + 1e-6
    summary = result.summary()
    assert summary["calls"]["served"] + summary["calls"]["unserved"] == summary["calls"]["total"] == 100
    assert sum(v["calls"] for v in summary["calls"]["by_class"].values()) == 100


def test_no_team_in_two_places_at_once(line, tmp_path) -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 80_000, 300))
    calls = [_call(f"c{k:03d}", float(t), "ABCD"[rng.integers(4)], needs_transport=bool(rng.random() < 0.3))
             for k, t in enumerate(times)]
    policy = _policy(tmp_path, TeamType.ems, n_teams=3, service=ServiceTime(900.0, 0.6))
    result = _run(policy, calls, line, hospitals=[("H", *latlon("D"))], max_wait_s=None)
    assert all(o.served for o in result.outcomes)
    by_team: dict[str, list] = {}
    for o in result.outcomes:
        by_team.setdefault(o.team_id, []).append((o.dispatched_s, o.free_s))
    assert len(by_team) == 3
    for intervals in by_team.values():
        intervals.sort()
        for (_, end), (nxt, _) in zip(intervals, intervals[1:], strict=False):
            assert nxt >= end - 1e-9  # next call only once the previous one is done
    # Every status change is allowed by the lifecycle, and each team holds one status at a time.
    last: dict[str, tuple[float, str]] = {}
    for t, team, old, new, _ in result.trace:
        prev_t, prev = last.get(team, (0.0, "available"))
        assert old == prev and t >= prev_t
        assert TeamStatus(new) in TRANSITIONS[TeamStatus(old)]
        last[team] = (t, new)


def test_littles_law_utilisation(line, tmp_path) -> None:
    # Enough teams that no call waits: mean number of busy teams = arrival rate x mean busy time per
    # call, with busy time = drive to the call (10 s to B or 20 s to C, equally likely) + on-scene time
    # (log-normal: mean = median x exp(sigma^2 / 2)).
    rng = np.random.default_rng(11)
    horizon = 20 * 86400.0
    n = rng.poisson(2.0 * 19 * 24)  # 2 calls an hour, none in the last day (no clipping at the end)
    times = np.sort(rng.uniform(0, 19 * 86400, n))
    calls = [_call(f"c{k:04d}", float(t), "BC"[rng.integers(2)]) for k, t in enumerate(times)]
    service = ServiceTime(1200.0, 0.5)
    policy = _policy(tmp_path, n_teams=12, service=service)
    result = simulate(policy, calls, network=line, start=START, days=20, seed=4, hospitals=[])
    assert result.summary()["queue"]["queued_calls"] == 0
    busy_teams = sum(u.busy_s for u in result.usage) / horizon
    per_call = [o.clear_s - o.dispatched_s for o in result.outcomes]
    assert busy_teams == pytest.approx(len(calls) / horizon * np.mean(per_call), rel=1e-6)  # L = lambda W
    expected = len(calls) / horizon * (15.0 + service.mean_s)
    assert busy_teams == pytest.approx(expected, rel=0.06)
    on_shift = sum(u.on_shift_s for u in result.usage)
    assert on_shift == pytest.approx(12 * horizon)


def test_calls_outside_the_period_and_duplicates_are_rejected(line, tmp_path) -> None:
    policy = _policy(tmp_path)
    with pytest.raises(InvalidInput, match="outside the simulated period"):
        _run(policy, [_call("c1", 2 * 86400, "B")], line)
    with pytest.raises(InvalidInput, match="duplicate call_id"):
        _run(policy, [_call("c1", 0, "B"), _call("c1", 5, "C")], line)
    with pytest.raises(InvalidInput, match="days"):
        simulate(policy, [], network=line, start=START, days=0)


def test_shifts_bound_on_shift_time_and_waiting_calls_meet_the_next_shift(line, tmp_path) -> None:
    policy = _policy(tmp_path)
    from routing.fleet import Shift

    # START is 07:00 in Boston (EST); the team works 08:00-09:00 local.
    team = dataclasses.replace(policy.teams[0], shift=Shift.parse("08:00-09:00"))
    policy = dataclasses.replace(policy, teams=[team])
    result = _run(policy, [_call("c1", 600, "B")], line, max_wait_s=None)
    c1 = result.outcomes[0]
    assert c1.queued
    assert c1.dispatched_s == pytest.approx(3600)  # the shift starts
    assert c1.on_scene_s == pytest.approx(3600 + EDGE_S, abs=1e-3)
    assert result.usage[0].on_shift_s == pytest.approx(3600)


# ------------------------------------------------------------------------------------------ Boston


@pytest.fixture(scope="module")
def model(data_dir, boston, places):
    return load_arrival_model(data_dir, network=boston, places=places)


def test_demand_model_matches_volumes_and_the_data(model) -> None:
    calls = generate_calls(model, start=default_start(), days=365, seed=1)
    mix = CallMix()
    mh = [c for c in calls if c.mental_health]
    medical = [c for c in calls if not c.mental_health and c.priority == 1]
    assert len(mh) == pytest.approx(mix.mh_per_year, rel=0.04)  # Poisson sd is 1 %
    assert len(medical) == pytest.approx(mix.medical_per_year, rel=0.04)
    assert len(calls) == pytest.approx(mix.mh_per_year + mix.medical_per_year + mix.other_per_year, rel=0.03)
    risk = sum(c.safety_risk for c in mh) / len(mh)
    assert risk == pytest.approx(mix.mh_risk_share, abs=0.02)
    # Dorchester has the most mental-health-proxy incidents (SOURCES.md: 619 of 3,004), then Roxbury.
    counts: dict[str, int] = {}
    for c in mh:
        counts[c.neighborhood] = counts.get(c.neighborhood, 0) + 1
    ranked = sorted(counts, key=lambda k: -counts[k])
    assert ranked[:2] == ["Dorchester", "Roxbury"]
    # Incidents peak in the afternoon and bottom out before dawn (hours 4-5: 38 each; 13-16: 161-197).
    from zoneinfo import ZoneInfo

    hours = np.bincount([c.received.astimezone(ZoneInfo("America/New_York")).hour for c in calls], minlength=24)
    assert hours[13:17].sum() > 3 * hours[3:7].sum()
    assert [c.received for c in calls] == sorted(c.received for c in calls)


def test_same_seed_same_results_and_run_holds_the_wall_clock(model, boston, places) -> None:
    policy = load_policy("default", places=places)
    start = default_start()
    runs = []
    for seed in (5, 5, 6):
        calls = generate_calls(model, start=start, days=1, seed=seed)
        runs.append(simulate(policy, calls, network=boston, places=places, start=start, days=1, seed=seed))
    a, b, c = (r.to_dict() for r in runs)
    assert set(a) - set(runs[0].summary()) == {"run"}
    a.pop("run"), b.pop("run"), c.pop("run")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(a, sort_keys=True) != json.dumps(c, sort_keys=True)
    json.dumps(runs[0].to_dict(), allow_nan=False)
    geo = runs[0].to_geojson()
    assert len(geo["features"]) == 26  # Boston's neighborhoods, lon/lat
    lon, lat = geo["features"][0]["geometry"]["coordinates"][0][0][:2] if geo["features"][0]["geometry"][
        "type"] == "Polygon" else geo["features"][0]["geometry"]["coordinates"][0][0][0][:2]
    assert -71.2 < lon < -70.9 and 42.2 < lat < 42.45
    assert sum(f["properties"]["calls"] for f in geo["features"]) <= runs[0].summary()["calls"]["total"]
    summary = runs[0].summary()
    assert summary["calls"]["served"] + summary["calls"]["unserved"] == summary["calls"]["total"] > 0
    # Every served call went to a team of one of its tiers; mental-health calls of a police tier are
    # counted in police_share.
    mh = summary["mental_health"]
    assert 0 <= mh["police_share"] <= mh["fell_back_share"] <= 1
    assert mh["preferred_share"] + mh["fell_back_share"] == pytest.approx(mh["served"] / mh["calls"], abs=1e-3)


def test_figures_do_not_depend_on_what_ran_before_in_the_process(model, boston, places) -> None:
    # A run starts from ETA caches holding exactly its teams' base rows (routing.eta.reset_caches): a
    # cached forward row and a fresh reverse search may differ in the last bit, so without it a sweep
    # worker's answer could depend on the replications it ran before. Cold caches, caches disturbed by
    # another policy's run and by suggestions for other teams and calls, and a tiny cache budget must
    # all give the same figures, to the bit.
    from routing import eta
    from routing.dispatch import suggest
    from routing.fleet import TeamState

    policy = load_policy("default", places=places)
    start = default_start()
    calls = generate_calls(model, start=start, days=2, seed=11)

    def figures() -> str:
        d = simulate(policy, calls, network=boston, places=places, start=start, days=2, seed=11).to_dict()
        d.pop("run")
        return json.dumps(d, sort_keys=True)

    def fills() -> int:
        return sum(e.stats["forward_fills"] for e in eta._ENGINES.values())

    eta.clear_caches()
    cold = figures()
    cold_fills = fills()
    other = load_policy("emt_citywide_plus", places=places)
    simulate(other, generate_calls(model, start=start, days=1, seed=3), network=boston, places=places,
             start=start, days=1, seed=3)
    rng = np.random.default_rng(4)
    fleet = [TeamState.at_base(t, start).moved(float(lat), float(lon), start)
             for t, lat, lon in zip(policy.teams, rng.uniform(42.30, 42.36, len(policy.teams)),
                                    rng.uniform(-71.10, -71.05, len(policy.teams)), strict=True)]
    for hour in (3, 8, 17):
        net = boston.with_profile("non_emergent", hour)
        for c in calls[:20]:
            suggest(c, fleet, network=net, rules=policy.rules, places=places, now=c.received, top=2)
    assert figures() == cold
    try:
        eta.set_cache_mb(2)  # room for a handful of rows: evictions in mid-run
        assert figures() != "" and figures() == figures()
    finally:
        eta.set_cache_mb(512)
    # The rows a run leaves are the next one's start: a second run searches far fewer forward rows.
    assert figures() == cold
    before = fills()
    assert figures() == cold
    assert fills() - before < cold_fills / 2


def test_compare_meets_the_same_calls(model, boston, places) -> None:
    start = default_start()
    calls = generate_calls(model, start=start, days=1, seed=2)
    policies = [load_policy("default", places=places), load_policy("emt_citywide_plus", places=places)]
    result = compare(policies, calls, network=boston, places=places, start=start, days=1, seed=2)
    d = result.to_dict()
    assert [p["policy"]["name"] for p in d["policies"]] == ["default", "emt_citywide_plus"]
    classes = [{k: v["calls"] for k, v in p["calls"]["by_class"].items()} for p in d["policies"]]
    assert classes[0] == classes[1] and sum(classes[0].values()) == len(calls)
    assert all("run" not in p for p in d["policies"]) and "run" in d
    used = {o.team_id for o in result.results[1].outcomes if o.served}
    assert used <= {t.team_id for t in policies[1].teams}


# ------------------------------------------------------------------------------------------ policies


def test_shipped_policies(places) -> None:
    names = available_policies()
    assert {"default", "more_co_response", "emt_citywide_plus", "community_expanded"} <= set(names)
    base = load_policy("default", places=places)

    def count(p, t):
        return sum(1 for team in p.teams if team.team_type == t)

    more = load_policy("more_co_response", places=places)
    assert count(more, TeamType.co_response) == count(base, TeamType.co_response) + 3
    assert all(t.shift is None for t in more.teams if t.team_id in ("CR-C11", "CR-D4", "CR-E13"))
    emt = load_policy("emt_citywide_plus", places=places)
    emt_teams = [t for t in emt.teams if t.team_type == TeamType.emt_clinician]
    day = datetime(2024, 5, 7, 4, 30, tzinfo=UTC)  # every hour of a Tuesday in Boston
    for h in range(24):
        assert sum(t.on_shift(day + timedelta(hours=h)) for t in emt_teams) >= 2
    community = load_policy("community_expanded", places=places)
    com = [t for t in community.teams if t.team_type == TeamType.community]
    assert len(com) == 7 and {t.shift.label() for t in com} == {"08:00-24:00"}
    for t in com:  # every community team is staged inside its own service area
        nbhd, district = places.locate(t.base_lat, t.base_lon)
        assert t.serves(nbhd, district), t.team_id


def test_policy_file_changes_and_errors(tmp_path, places) -> None:
    p = tmp_path / "p.toml"
    p.write_text('[policy]\nname = "moved"\nremove = ["EMS-*"]\n\n[staging]\n"CR-E13" = "police:B3"\n\n'
                 '[hours]\n"EC-1" = { shift = "08:00-16:00", days = ["mon", "tue"] }\n\n'
                 '[service.community]\nmedian_min = 25\nsigma = 0\n')
    policy = load_policy(p, places=places)
    assert not any(t.team_type == TeamType.ems for t in policy.teams)
    e13 = next(t for t in policy.teams if t.team_id == "CR-E13")
    b3 = places.site("police:B3")
    assert (e13.base_lat, e13.base_lon) == (b3.lat, b3.lon)
    ec1 = next(t for t in policy.teams if t.team_id == "EC-1")
    assert ec1.shift.label() == "08:00-16:00 mon,tue"
    assert policy.service_for(TeamType.community) == ServiceTime(25 * 60, 0.0)
    for body, match in [
        ('[policy]\nremove = ["NOPE-*"]\n', "matches no team"),
        ("[policy]\ncolour = 1\n", "unknown key"),
        ("[surprise]\n", "unknown section"),
        ('[hours]\n"EC-1" = "8-16"\n', "HH:MM-HH:MM"),
        ("[service.community]\nmedian_min = -5\n", "median_min"),
        ("[service.wizard]\nmedian_min = 5\n", "unknown team type"),
        ('[policy]\nname = "x"\n[[team]]\nid = "CR-A1"\ntype = "community"\nname = "dup"\nbase = "b"\n'
         "lat = 42.33\nlon = -71.07\n", "already in the fleet"),
    ]:
        p.write_text(body)
        with pytest.raises(InvalidInput, match=match):
            load_policy(p, places=places)
    p.write_text('[staging]\n"CR-E13" = "police:Z9"\n')
    with pytest.raises(NotFound):
        load_policy(p, places=places)
    with pytest.raises(NotFound, match="unknown policy"):
        load_policy("no_such_policy")


# ------------------------------------------------------------------------------------------ replay


def test_replay_incident_reports(tmp_path, places) -> None:
    path = tmp_path / "incidents.csv"
    path.write_text(
        "INCIDENT_NUMBER,OFFENSE_DESCRIPTION,OCCURRED_ON_DATE,Lat,Long\n"
        "1,INVESTIGATE PERSON,2023-01-05 10:09:00+00,42.3289,-71.0833\n"
        "2,SICK ASSIST,2023-07-05 10:09:00+00,42.3488,-71.1608\n"
        "3,LARCENY SHOPLIFTING,2023-01-05 11:00:00+00,42.35,-71.06\n"
        "4,SUICIDE / SUICIDE ATTEMPT,2023-01-05 12:00:00+00,,\n"
    )
    replay = read_calls_file(path, places=places)
    assert replay.format == "incidents" and replay.skipped == 2
    first, second = replay.calls
    assert first.mental_health and not second.mental_health
    assert first.received == datetime(2023, 1, 5, 15, 9, tzinfo=UTC)  # 10:09 EST
    assert second.received == datetime(2023, 7, 5, 14, 9, tzinfo=UTC)  # 10:09 EDT
    assert (first.neighborhood, first.district) == ("Roxbury", "B2")
    calls, start, days = select_period(replay.calls, days=1)
    assert [c.call_id for c in calls] == ["inc-1"] and days == 1
    assert start == datetime(2023, 1, 5, 5, 0, tzinfo=UTC)


def test_replay_call_files_and_errors(tmp_path) -> None:
    good = tmp_path / "calls.json"
    good.write_text(json.dumps({"calls": [{"call_id": "x", "received": "2024-01-02T10:00:00Z", "lat": 42.33,
                                           "lon": -71.07, "mental_health": True}]}))
    assert read_calls_file(good).calls[0].call_id == "x"
    bad = tmp_path / "calls.jsonl"
    bad.write_text('{"lat": 42.3, "lon": -71.0, "received": "2024-01-02T10:00:00Z"}\n{"lat": "x"}\n')
    with pytest.raises(InvalidInput, match="line 2"):
        read_calls_file(bad)
    with pytest.raises(InvalidInput, match="must be .json"):
        read_calls_file(good.rename(tmp_path / "calls.txt"))


def test_progress_reports_increasing_fractions_ending_at_one(line, tmp_path) -> None:
    steps: list[tuple[float, str]] = []
    calls = [_call(f"c{k}", 600.0 * k, "BCD"[k % 3]) for k in range(40)]
    _run(_policy(tmp_path, n_teams=2), calls, line, progress=lambda f, label: steps.append((f, label)))
    fractions = [f for f, _ in steps]
    assert len(fractions) > 2
    assert all(a <= b for a, b in zip(fractions, fractions[1:], strict=False))
    assert fractions[0] < 1.0 and fractions[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in fractions)
    assert {label for _, label in steps} == {"simulate tiny"}


# ------------------------------------------------------------------------------------------ CLI


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_simulate_and_compare(data_dir) -> None:
    code, out, err = _cli("simulate", "--days", "0.5", "--seed", "3", "--json")
    assert code == 0, err
    d = json.loads(out)
    for key in ("calls", "response_time", "mental_health", "queue", "utilisation", "run"):
        assert key in d
    assert d["calls"]["total"] > 0 and "by_neighborhood" in d["response_time"]
    assert err == ""  # no progress bar when not a terminal
    code, out, _ = _cli("simulate", "--days", "0.5", "--compare", "default", "more_co_response", "--json")
    assert code == 0
    d = json.loads(out)
    assert len(d["policies"]) == 2 and "run" in d
    code, out, _ = _cli("simulate", "--days", "0.5", "--compare", "default", "community_expanded")
    assert code == 0 and "community_expanded" in out and "response p90" in out
    code, _, err = _cli("simulate", "--compare", "default")
    assert code == 2 and "at least two" in err
    code, _, err = _cli("simulate", "--policy", "nope")
    assert code == 2 and err.startswith("error: unknown policy")


def test_cli_replays_real_incident_history(data_dir) -> None:
    path = data_dir / "boston-context" / "incidents_citywide_2023Q1.csv.gz"
    code, out, err = _cli("simulate", "--calls", str(path), "--start", "2023-01-10", "--days", "1", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["scenario"]["calls_source"]["format"] == "incidents"
    assert d["scenario"]["start"].startswith("2023-01-10T00:00:00-05:00")
    assert 10 < d["calls"]["total"] < 200  # about 40 mental-health-proxy incidents a day in Q1 2023
