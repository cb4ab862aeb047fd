"""Benchmark of the road-network engine on the real Boston data.

Run: ``python bench/bench_network.py`` (uses $CRISIS_DISPATCH_DATA or ../shared/data).
Prints load times, one-to-all / all-to-one search times and "rank 40 teams for one call", against the
naive networkx baseline (per-team ``nx.shortest_path_length`` on the osmnx-style graph) in the same run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, summary, timed  # noqa: E402

from routing.network import clear_memory_cache, load_network  # noqa: E402

N_TEAMS = 40


def main() -> None:
    data = data_dir()
    os.environ["CRISIS_DISPATCH_CACHE"] = tempfile.mkdtemp(prefix="bench-cache-")
    print(f"crisis-dispatch network benchmark  (data: {data}, {os.cpu_count()} cores)")

    stats: dict = {}
    network = load_network(data, stats=stats)
    cold = stats["load_s"]
    clear_memory_cache()
    warm_times = []
    for _ in range(5):
        clear_memory_cache()
        stats = {}
        load_network(data, stats=stats)
        assert stats["from_cache"]
        warm_times.append(stats["load_s"])
    network = load_network(data)
    print(f"  network: {network.n_nodes} nodes, {network.n_edges} edges, {network.dropped_nodes} dropped")
    print(f"  load cold (CSV -> arrays, SCC, KD-tree, boundary)   {cold * 1000:9.1f} ms")
    print(f"  load from cache (median of 5)                       {np.median(warm_times) * 1000:9.1f} ms")

    rng = np.random.default_rng(42)
    nodes = rng.choice(network.n_nodes, 200, replace=False)
    it = iter(np.tile(nodes, 10))
    summary("one-to-all (forward Dijkstra)", timed(lambda: network.travel_times_from(int(next(it))), 200))
    summary("all-to-one (reverse Dijkstra)", timed(lambda: network.travel_times_to(int(next(it))), 200))

    # 40 teams at random network points, calls at random points (each snapped with its off-network leg).
    at = rng.choice(network.n_nodes, N_TEAMS, replace=False)
    teams = network.snap_many(network.lat[at] + rng.normal(0, 1e-4, N_TEAMS),
                              network.lon[at] + rng.normal(0, 1e-4, N_TEAMS))
    team_nodes, team_leg = teams.nodes, teams.time_s
    call_idx = rng.choice(network.n_nodes, 300)
    calls = list(zip(network.lat[call_idx] + 1e-4, network.lon[call_idx] - 1e-4, strict=True))

    def rank_reverse(call: tuple[float, float]) -> np.ndarray:
        snap = network.snap(*call)
        eta = network.travel_times_to(snap.node)[team_nodes] + team_leg + snap.time_s
        return np.argsort(eta, kind="stable")

    forward_rows = network.travel_times_from(team_nodes)  # what a fleet cache holds between moves

    def rank_cached(call: tuple[float, float]) -> np.ndarray:
        snap = network.snap(*call)
        eta = forward_rows[:, snap.node] + team_leg + snap.time_s
        return np.argsort(eta, kind="stable")

    graph = network.to_networkx()

    def rank_naive(call: tuple[float, float]) -> list[int]:
        snap = network.snap(*call)
        eta = [nx.shortest_path_length(graph, int(t), snap.node, weight="travel_time") + leg + snap.time_s
               for t, leg in zip(team_nodes, team_leg, strict=True)]
        return sorted(range(len(eta)), key=eta.__getitem__)

    def rank_nx_reverse(call: tuple[float, float]) -> list[int]:
        snap = network.snap(*call)
        times = nx.single_source_dijkstra_path_length(graph.reverse(copy=False), snap.node, weight="travel_time")
        eta = [times[int(t)] + leg + snap.time_s for t, leg in zip(team_nodes, team_leg, strict=True)]
        return sorted(range(len(eta)), key=eta.__getitem__)

    for call in calls[:10]:  # same answers from all methods before timing them
        assert list(rank_reverse(call)[:5]) == list(rank_naive(call)[:5]) == list(rank_cached(call)[:5])

    print(f"\n  rank {len(team_nodes)} teams for one call (snap + ETAs + sort):")
    it_calls = iter(calls * 10)
    naive = summary("naive: per-team nx.shortest_path_length", timed(lambda: rank_naive(next(it_calls)), 15))
    nx_rev = summary("networkx: one reverse Dijkstra", timed(lambda: rank_nx_reverse(next(it_calls)), 30))
    rev = summary("crisis-dispatch: one reverse csgraph Dijkstra", timed(lambda: rank_reverse(next(it_calls)), 1000))
    cached = summary("crisis-dispatch: cached team rows", timed(lambda: rank_cached(next(it_calls)), 1000))
    print(f"\n  speed-up vs naive: reverse {naive / rev:,.0f}x, cached rows {naive / cached:,.0f}x;"
          f" vs networkx reverse Dijkstra: {nx_rev / rev:,.1f}x")
    print(f"  target: median < 2 ms and >= 300x: reverse {'MET' if rev < 0.002 and naive / rev >= 300 else 'MISSED'}")

    start = time.perf_counter()
    network.isochrone(42.3603, -71.0580, 600)
    print(f"\n  isochrone 10 min from City Hall: {(time.perf_counter() - start) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
