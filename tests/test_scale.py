"""Issue 15: bounded searches give exactly the full-search answers, caches stay within their bytes,
isochrones stop at their budget. On Boston and on a 3 x 3 tiling of it (bench/bench_statewide.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely

import routing.eta as eta
from bench.bench_statewide import tiled_network
from routing import hierarchy
from routing.dispatch import suggest
from routing.eta import cache_usage, clear_caches, eta_engine, set_cache_mb, warm_up
from routing.fleet import TeamState, TeamType, load_fleet
from routing.network import _TO_METRIC, _metric_to_lonlat_coords
from routing.triage import Call, load_rules

NOW = datetime(2025, 5, 6, 18, 0, tzinfo=UTC)  # Tuesday 14:00 in Boston


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def tiled(boston):
    return tiled_network(boston, 3)


def _teams(network, rng: np.random.Generator, n: int, *, one_way: bool = False) -> list[TeamState]:
    """``n`` teams of every type at random road points, with no service area (any call is theirs)."""
    base = [t for t in load_fleet() if not t.dedicated]
    points = _points(network, rng, n, one_way=one_way)
    out = []
    for i, (lat, lon) in enumerate(points):
        team = replace(base[i % len(base)], team_id=f"T-{i:04d}", service_area=(), shift=None)
        out.append(TeamState.at_base(team, NOW).moved(lat, lon, NOW))
    return out


def _points(network, rng: np.random.Generator, n: int, *, one_way: bool = False) -> list[tuple[float, float]]:
    """Points a few metres off random road segments (only one-way segments with ``one_way``)."""
    seg = network._t.segments()
    pool = np.flatnonzero((seg.fwd < 0) | (seg.bwd < 0)) if one_way else np.arange(len(seg.a))
    pick = rng.choice(pool, n)
    f = rng.uniform(0.05, 0.95, n)
    x = network.x[seg.a[pick]] * (1 - f) + network.x[seg.b[pick]] * f + rng.normal(0, 3, n)
    y = network.y[seg.a[pick]] * (1 - f) + network.y[seg.b[pick]] * f + rng.normal(0, 3, n)
    lonlat = _metric_to_lonlat_coords(np.column_stack([x, y]))
    return [(float(lat), float(lon)) for lon, lat in lonlat]


def _call(lat: float, lon: float, k: int, rng: np.random.Generator) -> Call:
    return Call.from_dict({"call_id": f"c{k}", "lat": lat, "lon": lon, "received": NOW.isoformat(),
                           "mental_health": bool(rng.random() < 0.6), "safety_risk": bool(rng.random() < 0.3),
                           "weapon": bool(rng.random() < 0.05)})


def _answer(result):
    return ([(s.rank, s.team_id, s.eta_s, s.distance_m, s.tier) for s in result.suggestions], result.omitted,
            [(i.team_id, i.code) for i in result.ineligible], result.tier_index)


def _full(monkeypatch, call, teams, network, rules, top):
    """The answer of a full search: the engine told the network is not strongly connected (and to leave
    the hierarchy aside)."""
    with monkeypatch.context() as m:
        m.setattr(eta._EtaEngine, "strongly_connected", lambda self, network: False)
        m.setattr(eta, "USE_HIERARCHY", False)
        return suggest(call, teams, network=network, rules=rules, now=NOW, top=top)


def _same(fast, full) -> None:
    a, b = _answer(fast), _answer(full)
    assert [r[:2] for r in a[0]] == [r[:2] for r in b[0]]
    for x, y in zip(a[0], b[0], strict=True):
        assert x[2] == pytest.approx(y[2], abs=1e-6)  # ETA
        assert x[3] == pytest.approx(y[3], abs=1e-6)  # road distance
        assert x[4] == y[4]
    assert a[1:] == b[1:]


@pytest.mark.parametrize("where", ["boston", "tiled"])
def test_bounded_suggestions_are_the_full_search_answers(where, request, monkeypatch, rules) -> None:
    network = request.getfixturevalue(where)
    monkeypatch.setattr(eta, "USE_HIERARCHY", False)  # the bounded Dijkstra searches, not the hierarchy
    rng = np.random.default_rng(15)
    bounded = 0
    for k in range(24):
        teams = _teams(network, rng, int(rng.integers(5, 60)), one_way=k % 4 == 3)
        (lat, lon), = _points(network, rng, 1, one_way=k % 3 == 2)
        call = _call(lat, lon, k, rng)
        for top in (None, 1, 3, 10):
            clear_caches()
            fast = suggest(call, teams, network=network, rules=rules, now=NOW, top=top)
            bounded += eta_engine(network).stats["bounded_searches"]
            clear_caches()
            _same(fast, _full(monkeypatch, call, teams, network, rules, top))
    assert bounded > 0


@pytest.mark.parametrize("where", ["boston", "boston-only-hierarchy", "tiled"])
def test_hierarchy_suggestions_are_the_full_search_answers(where, request, monkeypatch, rules) -> None:
    # The 3 x 3 tiling (101k nodes) answers every ETA from the hierarchy; Boston (11k) the ETAs of teams
    # without a cached row (the default), or every one when made to.
    network = request.getfixturevalue(where.split("-")[0])
    if where == "boston-only-hierarchy":
        monkeypatch.setattr(hierarchy, "MIN_NODES", 0)
    assert eta_engine(network).uses_hierarchy() is (where != "boston")
    rng = np.random.default_rng(16)
    queries = eta_engine(network).stats["hierarchy_queries"]
    for k in range(24):
        teams = _teams(network, rng, int(rng.integers(5, 60)), one_way=k % 4 == 3)
        (lat, lon), = _points(network, rng, 1, one_way=k % 3 == 2)
        call = _call(lat, lon, k, rng)
        for top in (None, 1, 3):
            before = dict(eta_engine(network).stats)
            fast = suggest(call, teams, network=network, rules=rules, now=NOW, top=top)
            assert eta_engine(network).stats["reverse_searches"] == before["reverse_searches"]  # no Dijkstra
            _same(fast, _full(monkeypatch, call, teams, network, rules, top))
    assert eta_engine(network).stats["hierarchy_queries"] > queries + 48


def test_teams_beyond_the_first_limits_and_tiny_first_limits(tiled, monkeypatch, rules) -> None:
    # A first limit of a few seconds: the answer must come from later, larger searches, never from
    # reading "not settled" as "unreachable". Teams sit in far tiles, the call in a corner one.
    rng = np.random.default_rng(3)
    monkeypatch.setattr(eta, "_START_DETOUR", 1e-9)
    monkeypatch.setattr(eta, "USE_HIERARCHY", False)
    for k in range(8):
        teams = _teams(tiled, rng, 12)
        (lat, lon), = _points(tiled, rng, 1)
        call = _call(lat, lon, k, rng)
        for top in (None, 1, 2):
            clear_caches()
            engine = eta_engine(tiled)
            fast = suggest(call, teams, network=tiled, rules=rules, now=NOW, top=top)
            assert engine.stats["bounded_searches"] >= 2 * 2  # at least two rounds of two entries
            clear_caches()
            _same(fast, _full(monkeypatch, call, teams, tiled, rules, top))


def test_cached_rows_and_mixed_fleets_give_the_same_answers(boston, monkeypatch, rules) -> None:
    rng = np.random.default_rng(8)
    stationary = _teams(boston, rng, 30)
    clear_caches()
    warm_up(stationary, network=boston)
    engine = eta_engine(boston)
    for k in range(12):
        moving = _teams(boston, rng, 10)
        moving = [replace(ts, team=replace(ts.team, team_id=f"M-{i}")) for i, ts in enumerate(moving)]
        (lat, lon), = _points(boston, rng, 1)
        call = _call(lat, lon, k, rng)
        for teams in (stationary, stationary + moving):  # rows alone, then rows and the hierarchy
            searches = engine.stats["reverse_searches"]
            fast = suggest(call, teams, network=boston, rules=rules, now=NOW, top=2)
            if teams is stationary:
                assert engine.stats["reverse_searches"] == searches  # a lookup in the cached rows
            _same(fast, _full(monkeypatch, call, teams, boston, rules, 2))


def test_caches_stay_within_their_bytes(boston, rules, monkeypatch) -> None:
    # Without the hierarchy the calls fill rows readily (with it, only teams seen 16 times in a row).
    monkeypatch.setattr(eta, "USE_HIERARCHY", False)
    clear_caches()
    set_cache_mb(24)  # rows: 19.2 MB, ~140 Boston rows; 400 teams need ~700
    try:
        rng = np.random.default_rng(4)
        teams = _teams(boston, rng, 400)
        for k in range(40):
            (lat, lon), = _points(boston, rng, 1)
            suggest(_call(lat, lon, k, rng), teams if k % 2 else teams[:200], network=boston, rules=rules, now=NOW)
            moved = [ts.moved(ts.lat + 1e-4 * k, ts.lon, NOW) for ts in teams[:50]]
            suggest(_call(lat, lon, k, rng), moved, network=boston, rules=rules, now=NOW, top=1)
            usage = cache_usage()
            for cache, use in usage.items():
                assert use["bytes"] <= use["limit"], cache
            engine = eta_engine(boston)
            held = sum(r.nbytes for r in engine.rows.values())
            assert held == usage["rows"]["bytes"] and held <= usage["rows"]["limit"]
            assert sum(r.nbytes for r in engine.reverse_rows.values()) <= usage["reverse_rows"]["limit"]
        assert usage["rows"]["entries"] > 50 and usage["snaps"]["entries"] > 400
        set_cache_mb(2)  # shrinking trims at once
        assert all(u["bytes"] <= u["limit"] for u in cache_usage().values())
    finally:
        set_cache_mb(eta._env_cache_mb())
        clear_caches()


def test_many_stationary_teams_keep_their_rows(boston, rules) -> None:
    # 400 stationary teams used to evict each other's rows (256 kept) and search on every call.
    clear_caches()
    rng = np.random.default_rng(5)
    teams = _teams(boston, rng, 400)
    engine = eta_engine(boston)
    calls = [_call(*_points(boston, rng, 1)[0], k, rng) for k in range(60)]
    for call in calls[:40]:  # warming up, a few rows per call
        suggest(call, teams, network=boston, rules=rules, now=NOW, top=3)
    warm_up(teams, network=boston)
    searches = engine.stats["reverse_searches"]
    for call in calls[40:]:
        suggest(call, teams, network=boston, rules=rules, now=NOW, top=3)
    assert engine.stats["reverse_searches"] == searches
    clear_caches()


def _isochrone_full(network, lat, lon, seconds, resolution_m=50.0):
    """The isochrone as it was computed before issue 15: full search, every edge tested."""
    start = network.snap(lat, lon)
    x_nodes, x_t, _ = network.snap_exits(start)
    times = (network.travel_times_from(x_nodes) + x_t[:, None]).min(axis=0) + start.time_s
    src, dst = network.edges
    reached = (times[src] <= seconds) & (times[dst] <= seconds)
    samples = np.maximum(1, np.ceil(network.edge_length_m[reached] / (resolution_m / 2)).astype(np.int64))
    edge = np.repeat(np.arange(int(reached.sum())), samples)
    frac = (np.arange(int(samples.sum())) - np.repeat(np.cumsum(samples) - samples, samples)) / np.repeat(
        samples, samples)
    s, d = src[reached][edge], dst[reached][edge]
    xs = np.concatenate([network.x[s] * (1 - frac) + network.x[d] * frac, network.x[times <= seconds]])
    ys = np.concatenate([network.y[s] * (1 - frac) + network.y[d] * frac, network.y[times <= seconds]])
    x, y = _TO_METRIC.transform(lon, lat)
    px, py = network._projection_xy(start)
    f = np.linspace(0, 1, int(start.distance_m // (resolution_m / 2)) + 2)
    xs, ys = np.concatenate([xs, x + (px - x) * f]), np.concatenate([ys, y + (py - y) * f])
    cells = np.unique(np.floor(np.column_stack([xs, ys]) / resolution_m).astype(np.int64), axis=0)
    boxes = shapely.box(cells[:, 0] * resolution_m, cells[:, 1] * resolution_m,
                        (cells[:, 0] + 1) * resolution_m, (cells[:, 1] + 1) * resolution_m)
    geom = shapely.coverage_union_all(boxes).simplify(resolution_m / 5)
    return shapely.transform(geom, _metric_to_lonlat_coords)


@pytest.mark.parametrize("where", ["boston", "tiled"])
def test_bounded_isochrone_is_the_full_one(where, request) -> None:
    network = request.getfixturevalue(where)
    rng = np.random.default_rng(9)
    for k, (lat, lon) in enumerate(_points(network, rng, 6, one_way=False) + _points(network, rng, 3, one_way=True)):
        seconds = [60, 300, 480, 900][k % 4]
        got = network.isochrone(lat, lon, seconds)
        want = _isochrone_full(network, lat, lon, seconds)
        assert got.equals_exact(want, 0.0)


def test_team_types_cover_the_fleet() -> None:
    # The random fleets above draw from every non-dedicated type of the default fleet.
    assert {t.team_type for t in load_fleet() if not t.dedicated} >= {TeamType.police}


def test_reset_caches_leaves_exactly_the_warm_rows(boston, rules) -> None:
    # reset_caches is what makes a simulation's figures independent of the process's history: after it
    # the forward rows are exactly the asked ones (in order), nothing else, and their times are those of
    # a fresh search; asked again, it searches nothing.
    rng = np.random.default_rng(21)
    teams = _teams(boston, rng, 20)
    clear_caches()
    for k in range(5):  # leave rows, reverse rows and movement records behind
        (lat, lon), = _points(boston, rng, 1)
        suggest(_call(lat, lon, k, rng), teams, network=boston, rules=rules, now=NOW, top=2)
    warm_up(teams[:10], network=boston)
    evening = boston.with_profile("non_emergent", 18)
    keep = [int(u) for u in rng.choice(boston.n_nodes, 12, replace=False)]
    searched = eta.reset_caches([(boston, keep[:8]), (evening, keep[4:])])
    assert 0 < searched <= 16
    engine, engine_pm = eta_engine(boston), eta_engine(evening)
    assert list(engine.rows) == keep[:8] and list(engine_pm.rows) == keep[4:]
    assert not engine.reverse_rows and not engine.seen and not engine_pm.reverse_rows
    for net, e in ((boston, engine), (evening, engine_pm)):
        for u, row in e.rows.items():
            np.testing.assert_array_equal(row.times, net.travel_times_from(u))
    assert cache_usage()["rows"]["entries"] == 16
    assert eta.reset_caches([(boston, keep[:8]), (evening, keep[4:])]) == 0


@pytest.mark.parametrize("use_hierarchy", [False, True])
def test_a_team_driving_towards_the_same_node_gets_no_row_a_still_one_does(boston, rules, monkeypatch,
                                                                          use_hierarchy) -> None:
    # Forward rows are for teams that stay put (GPS jitter within 25 m); a team driving along a long
    # street keeps the same exit node between calls but would only waste a full search. With the
    # hierarchy answering the others, a team earns its row after 16 sightings in a row, not 1.
    monkeypatch.setattr(eta, "USE_HIERARCHY", use_hierarchy)
    repeat = 17 if use_hierarchy else 1
    seg = boston._t.segments()
    length = np.hypot(boston.x[seg.a] - boston.x[seg.b], boston.y[seg.a] - boston.y[seg.b])
    s = int(np.flatnonzero((length > 300) & (seg.fwd >= 0) & (seg.bwd < 0))[0])  # a long one-way street
    a, b = int(seg.a[s]), int(seg.b[s])
    team = replace(load_fleet()[0], team_id="V", service_area=(), shift=None, dedicated=False)
    rng = np.random.default_rng(2)
    calls = [_call(lat, lon, k, rng) for k, (lat, lon) in enumerate(_points(boston, rng, 3 * repeat))]

    def at(f: float) -> TeamState:
        plat = float(boston.lat[a] + (boston.lat[b] - boston.lat[a]) * f)
        plon = float(boston.lon[a] + (boston.lon[b] - boston.lon[a]) * f)
        return TeamState.at_base(team, NOW).moved(plat, plon, NOW)

    for path, filled in (([0.1, 0.4, 0.7], False), ([0.5, 0.5 + 5 / 300, 0.5 - 5 / 300], True)):
        clear_caches()
        engine = eta_engine(boston)
        # Driving: every sighting 90 m or more from the last; still: each within 25 m of the first.
        path = (path * repeat) if not filled else [f for f in path for _ in range(repeat)]
        if use_hierarchy and filled:  # one sighting short: no row yet
            for f, call in zip(path[:16], calls, strict=False):
                suggest(call, [at(f)], network=boston, rules=rules, now=NOW, top=1)
            assert b not in engine.rows
            clear_caches()
            engine = eta_engine(boston)
        for f, call in zip(path, calls, strict=True):  # new calls: a cached reverse row would answer instead
            suggest(call, [at(f)], network=boston, rules=rules, now=NOW, top=1)
        assert (b in engine.rows) is filled, path
