"""Issue 15: the contraction hierarchy (routing.hierarchy) gives the times and path metres of Dijkstra.

Truth: scipy's Dijkstra on hand-made random graphs (one-way streets, parallel edges, self loops, zero
times, disconnected parts), brute force over source and target node sets, and the network cache.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import routing.eta as eta
from routing.errors import InvalidInput
from routing.hierarchy import build_order, customize
from routing.network import _load_cache, _save_cache


def _graph(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random road-like digraph: near neighbours on a plane, many two-way, some one-way, duplicates."""
    xy = rng.uniform(0, 1000, (n, 2))
    src = rng.integers(0, n, m)
    near = np.argsort(np.hypot(*(xy[src][:, None, :] - xy[None, :, :]).transpose(2, 0, 1)), axis=1)[:, 1:5]
    dst = near[np.arange(m), rng.integers(0, near.shape[1], m)]
    back = rng.random(m) < 0.7  # two-way
    src, dst = np.concatenate([src, dst[back], [0]]), np.concatenate([dst, src[back], [0]])  # and a self loop
    length = np.hypot(*(xy[src] - xy[dst]).T) + rng.uniform(0, 5, len(src))
    time = length / rng.uniform(5, 30, len(src))
    time[rng.random(len(src)) < 0.02] = 0.0
    return src, dst, time, length


def _dijkstra(n, src, dst, time, length):
    """Times between every pair, and the metres of the path in Dijkstra's tree (the fastest of parallel
    edges: what csr_matrix keeps after summing would be wrong, so build from the minimum)."""
    best: dict[tuple[int, int], tuple[float, float]] = {}
    for a, b, t, d in zip(src.tolist(), dst.tolist(), time.tolist(), length.tolist(), strict=True):
        if a != b and ((a, b) not in best or t < best[(a, b)][0]):
            best[(a, b)] = (t, d)
    keys = list(best)
    rows, cols = np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
    # Zero times would vanish from a sparse matrix: a tiny epsilon keeps the edge.
    times = np.array([max(best[k][0], 1e-300) for k in keys])
    g = csr_matrix((times, (rows, cols)), shape=(n, n))
    dist, pred = dijkstra(g, return_predecessors=True)
    metres = np.full((n, n), np.inf)
    for s in range(n):
        for t in range(n):
            if np.isfinite(dist[s, t]):
                total, v = 0.0, t
                while v != s:
                    u = pred[s, v]
                    total += best[(int(u), int(v))][1]
                    v = u
                metres[s, t] = total
    return dist, metres


@pytest.mark.parametrize("seed", range(6))
def test_times_and_metres_are_dijkstras(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 160))
    src, dst, time, length = _graph(rng, n, 2 * n)
    if seed % 2:  # a second component that nothing reaches from the first
        s2, d2, t2, l2 = _graph(rng, 20, 40)
        src, dst = np.concatenate([src, s2 + n]), np.concatenate([dst, d2 + n])
        time, length, n = np.concatenate([time, t2]), np.concatenate([length, l2]), n + 20
    truth, truth_m = _dijkstra(n, src, dst, time, length)
    metric = customize(build_order(n, src, dst), src, dst, time, length)
    targets = rng.choice(n, 3, replace=False)
    times, metres = metric.many_to_few(np.arange(n)[:, None], 0.0, targets[:, None], 0.0)
    assert np.array_equal(np.isinf(times), np.isinf(truth[:, targets]))
    finite = np.isfinite(times)
    assert np.allclose(times[finite], truth[:, targets][finite], rtol=0, atol=1e-9)
    assert np.allclose(metres[finite], truth_m[:, targets][finite], rtol=0, atol=1e-6)
    if seed % 2:
        assert np.isinf(times).any()


def test_node_sets_with_offsets_are_the_best_combination() -> None:
    # A team leaves by either end of its segment, a call is reached from either end of its own:
    # the answer is the best (exit, entry) pair with both legs added, checked by brute force.
    rng = np.random.default_rng(7)
    n = 120
    src, dst, time, length = _graph(rng, n, 260)
    truth, truth_m = _dijkstra(n, src, dst, time, length)
    metric = customize(build_order(n, src, dst), src, dst, time, length)
    sources = rng.integers(0, n, (25, 2))
    sources[::5, 1] = -1  # a one-way street: a single exit
    s_off = rng.uniform(0, 30, sources.shape)
    targets = rng.integers(0, n, (2, 2))
    t_off = rng.uniform(0, 30, targets.shape)
    times, metres = metric.many_to_few(sources, s_off, targets, t_off)
    for k in range(len(sources)):
        for j in range(len(targets)):
            combos = [(s_off[k, a] + truth[sources[k, a], targets[j, b]] + t_off[j, b],
                       truth_m[sources[k, a], targets[j, b]])
                      for a in range(2) if sources[k, a] >= 0 for b in range(2)]
            best = min(combos)
            assert times[k, j] == pytest.approx(best[0], abs=1e-9)
            if np.isfinite(best[0]):
                assert metres[k, j] == pytest.approx(best[1], abs=1e-6)


def test_bad_input_is_refused_with_the_field_named() -> None:
    rng = np.random.default_rng(1)
    src, dst, time, length = _graph(rng, 40, 80)
    order = build_order(40, src, dst)
    metric = customize(order, src, dst, time, length)
    cases = [
        (lambda: metric.many_to_few(np.array([[40]]), 0.0, np.array([[1]]), 0.0), "sources"),
        (lambda: metric.many_to_few(np.array([[1]]), 0.0, np.array([[-2]]), 0.0), "targets"),
        # 1-D would silently be one source with two start nodes: refused, with the fix in the message
        (lambda: metric.many_to_few(np.array([0, 1]), 0.0, np.array([[4]]), 0.0), "sources"),
        (lambda: build_order(40, src, dst[:-1]), "edges"),
        (lambda: build_order(40, np.append(src, 40), np.append(dst, 0)), "edges"),
        (lambda: customize(order, src, dst, time[:-1], length), "edges"),
        (lambda: customize(order, src, dst, np.where(np.arange(len(time)) == 3, -1.0, time), length), "time_s"),
        (lambda: customize(order, src, dst, time, np.where(np.arange(len(time)) == 3, np.nan, length)),
         "length_m"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.field == field, str(info.value)


def test_every_upward_arc_goes_up_and_the_graph_is_chordal() -> None:
    # Chordality (every two upper neighbours of a node are joined) is what makes the elimination-tree
    # walk exact; checked directly on a random graph.
    rng = np.random.default_rng(3)
    src, dst, _, _ = _graph(rng, 150, 300)
    order = build_order(150, src, dst)
    assert sorted(order.node.tolist()) == list(range(150))
    assert np.array_equal(order.rank[order.node], np.arange(150))
    up = [set(order.up_idx[order.up_ptr[v]:order.up_ptr[v + 1]].tolist()) for v in range(150)]
    for v in range(150):
        assert all(w > v for w in up[v])
        for u in up[v]:
            assert up[v] - {u} - set(range(u + 1)) <= up[u]
    for a, b in zip(order.rank[src].tolist(), order.rank[dst].tolist(), strict=True):
        if a != b:
            assert max(a, b) in up[min(a, b)]  # every road is an arc


def test_the_order_travels_with_the_network_cache(boston, tmp_path) -> None:
    order = boston._t.cch_order()
    path = tmp_path / "network.npz"
    _save_cache(boston._t, path)
    topo = _load_cache(path, boston._t.speeds)
    assert topo is not None and topo.cch is not None
    for name in ("rank", "node", "up_ptr", "up_idx"):
        assert np.array_equal(getattr(topo.cch, name), getattr(order, name))


def test_hierarchies_stay_within_their_bytes(boston, monkeypatch) -> None:
    eta.clear_caches()
    monkeypatch.setattr(eta, "HIERARCHY_MB", 0.5)  # less than Boston's (1.9 MB): used, never kept
    engine = eta.eta_engine(boston)
    metric = engine.metric(boston)
    assert metric.nbytes > 0.5 * 2**20
    assert eta.cache_usage()["hierarchy"]["bytes"] == 0 and not engine.hierarchy
    monkeypatch.setattr(eta, "HIERARCHY_MB", 64.0)
    engine.metric(boston)
    used = eta.cache_usage()["hierarchy"]
    assert used["entries"] == 1 and used["bytes"] == metric.nbytes <= used["limit"]
    eta.clear_caches()
