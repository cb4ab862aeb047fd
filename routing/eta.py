"""The ETA engine: travel times and road distances between team positions and call locations.

Travel times come from per-node search rows kept in LRU caches per network (one engine per speed
profile): while teams stay where they are, a suggestion is a table lookup; otherwise one reverse
Dijkstra from each node that leads into the call's road segment serves every team. Road distances are
computed only for the teams a caller returns, by walking their paths in the search tree.

The decisions that use it (:func:`routing.dispatch.suggest`, :func:`routing.dispatch.assign`, the
simulation) live apart from it, as networkx keeps algorithms apart from data structures.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy.sparse.csgraph import dijkstra

from routing.errors import InvalidInput
from routing.fleet import DISPATCHABLE, TeamState

_ROW_CACHE = 256  # forward rows kept per network (each ~135 kB on Boston)
_REVERSE_CACHE = 128  # reverse rows (per call node) kept per network
_SNAP_CACHE = 8192
_FILL_PER_CALL = 4  # fill up to this many rows when that avoids the reverse search
_WARM_PER_CALL = 2  # ...else at most this many per call, to warm the cache without stalling a call
_STABLE_AFTER = 1  # a team found at the same node this many times in a row has "not moved"
_CHAIN_MAX = 8  # distances wanted from one row at once up to which each path is walked, not the tree
_WALKS_BEFORE_TREE = 16  # a row asked this many path distances gets its whole tree's distances


class _EtaEngine:
    """Travel times and road distances between team positions and call locations, with caches."""

    def __init__(self, network: Any) -> None:
        # No reference to the network itself: the registry entry must not keep it alive.
        n = network.n_nodes
        self.n = n
        self.reverse = network.csr.T.tocsr()
        src, dst = network.edges
        length = np.asarray(network.edge_length_m, dtype=float)
        # Padded neighbour tables (max degree is small on a road network) give the length of a tree
        # edge with one vectorised comparison instead of a search: out_* for edge v -> w, in_* for u -> v.
        self.out_nbr, self.out_len = _padded(src, dst, length, n)
        self.in_nbr, self.in_len = _padded(dst, src, length, n)
        self.lock = threading.Lock()
        self.rows: OrderedDict[int, _Row] = OrderedDict()
        self.reverse_rows: OrderedDict[int, _Row] = OrderedDict()
        self.snaps: OrderedDict[tuple[float, float], Any] = OrderedDict()
        self.seen: dict[Any, tuple[int, int]] = {}  # team key -> (node at last query, unchanged streak)
        self.stats = {"lookups": 0, "forward_fills": 0, "reverse_searches": 0}

    # --- snapping
    def snap_teams(self, network: Any, points: Sequence[tuple[float, float]]) -> list[Any]:
        """Snap team positions (cached; the misses in one vectorised query).

        Returns, per point, a :class:`routing.network.Snap` or the ``InvalidInput`` snapping raised.
        """
        out: list[Any] = [None] * len(points)
        misses: list[int] = []
        with self.lock:
            for k, key in enumerate(points):
                hit = self.snaps.get(key)
                if hit is None:
                    misses.append(k)
                else:
                    self.snaps.move_to_end(key)
                    out[k] = hit
        if misses:
            lats = np.array([points[k][0] for k in misses], dtype=float)
            lons = np.array([points[k][1] for k in misses], dtype=float)
            # A team's locator may put it on any road, an expressway included: a van can be on I-93.
            snapped = network.snap_many(lats, lons, strict=False, on="any")
            for m, k in enumerate(misses):
                if int(snapped.nodes[m]) >= 0:
                    out[k] = snapped[m]
                else:
                    try:  # rejected: get the precise message
                        out[k] = network.snap(*points[k], field="team position", on="any")
                    except InvalidInput as exc:
                        out[k] = exc
            with self.lock:
                for k in misses:
                    self.snaps[points[k]] = out[k]
                while len(self.snaps) > _SNAP_CACHE:
                    self.snaps.popitem(last=False)
        return out

    # --- search rows
    def _tree_distance(self, pred: np.ndarray, *, toward_root_is_forward: bool) -> np.ndarray:
        """Road length from every node to the root of a shortest-path tree, by pointer jumping.

        ``pred[v]`` is v's parent (-9999 at the root). For a forward search from s the tree edge is
        ``pred[v] -> v``; for a reverse search toward t it is ``v -> pred[v]``.
        """
        n = self.n
        nodes = np.arange(n)
        has = pred >= 0
        p = np.where(has, pred, nodes).astype(np.int64)
        nbr, lens = (self.out_nbr, self.out_len) if toward_root_is_forward else (self.in_nbr, self.in_len)
        d = np.where(nbr == p[:, None], lens, 0.0).sum(axis=1)
        d[~has] = 0.0
        for _ in range(64):  # depth halves each round: 64 rounds cover any tree
            pp = p[p]
            if np.array_equal(pp, p):
                break
            d = d + d[p]
            p = pp
        return d

    def _chain_distance(self, row: _Row, v: int) -> float:
        """Road length from ``v`` to the root of ``row``'s tree, walking only v's own path.

        Bit for bit the value :meth:`_tree_distance` gives for ``v``: pointer jumping adds the path's
        edge lengths as a balanced binary tree over blocks of 2^r edges (zeros past the root), which is
        the pairwise sum below, in the same order.
        """
        pred = row.pred
        parent = pred.item  # a bound scalar read: the loop below is the walk's main cost
        chain: list[int] = []
        u, p = int(v), parent(int(v))
        while p >= 0:
            chain.append(u)
            u, p = p, parent(p)
        if not chain:  # the root itself, or a node the search did not reach (its time is inf)
            return 0.0
        c = np.asarray(chain, dtype=np.int64)
        nbr, lens = (self.out_nbr, self.out_len) if row.toward_root_is_forward else (self.in_nbr, self.in_len)
        edge = np.where(nbr[c] == pred[c].astype(np.int64)[:, None], lens[c], 0.0).sum(axis=1)
        size = 1
        while size < len(edge):
            size *= 2
        a = np.zeros(size)
        a[:len(edge)] = edge
        while len(a) > 1:
            a = a[0::2] + a[1::2]
        return float(a[0])

    def distances(self, row: _Row, nodes: Sequence[int]) -> np.ndarray:
        """Road lengths between ``nodes`` and the root of ``row``'s tree.

        A search row answers travel times for every node, but a caller needs the distance of a few
        (the teams it returns): those are walked along their own path. A row asked for many distances
        (a cached forward row serves call after call) gets the whole tree's at once, kept in the row.
        """
        if row.dist is None and (len(nodes) > _CHAIN_MAX or row.walks >= _WALKS_BEFORE_TREE):
            row.dist = self._tree_distance(row.pred, toward_root_is_forward=row.toward_root_is_forward)
        dist = row.dist
        if dist is not None:
            return dist[np.asarray(nodes, dtype=np.int64)]
        row.walks += len(nodes)  # unlocked: a lost increment only delays the switch to the whole tree
        return np.array([self._chain_distance(row, int(v)) for v in nodes], dtype=float)

    def _fill(self, network: Any, nodes: list[int]) -> None:
        times, pred = dijkstra(network.csr, directed=True, indices=nodes, return_predecessors=True)
        rows = {}
        for k, u in enumerate(nodes):
            rows[u] = _Row(times[k], pred[k], toward_root_is_forward=False)
        with self.lock:
            self.stats["forward_fills"] += len(nodes)
            for u, row in rows.items():
                self.rows[u] = row
            while len(self.rows) > _ROW_CACHE:
                self.rows.popitem(last=False)

    def _reverse(self, target: int) -> _Row:
        with self.lock:
            hit = self.reverse_rows.get(target)
            if hit is not None:
                self.reverse_rows.move_to_end(target)
                return hit
        times, pred = dijkstra(self.reverse, directed=True, indices=target, return_predecessors=True)
        row = _Row(times, pred, toward_root_is_forward=True)
        with self.lock:
            self.stats["reverse_searches"] += 1
            self.reverse_rows[target] = row
            while len(self.reverse_rows) > _REVERSE_CACHE:
                self.reverse_rows.popitem(last=False)
        return row

    def prime(self, network: Any, sources: Sequence[int], targets: Sequence[int]) -> None:
        """Prepare for many queries (sources x targets) with the fewest searches: either a forward row
        per uncached source or a reverse row per uncached target, whichever is fewer."""
        with self.lock:
            missing_s = sorted({int(u) for u in sources} - set(self.rows))
            missing_t = sorted({int(t) for t in targets} - set(self.reverse_rows))
        if not missing_s or not missing_t:
            return
        if len(missing_s) <= len(missing_t) and len(missing_s) + len(self.rows) <= _ROW_CACHE:
            self._fill(network, missing_s)
        elif len(missing_t) <= _REVERSE_CACHE:
            times, pred = dijkstra(self.reverse, directed=True, indices=missing_t, return_predecessors=True)
            rows = {t: _Row(times[k], pred[k], toward_root_is_forward=True) for k, t in enumerate(missing_t)}
            with self.lock:
                self.stats["reverse_searches"] += len(rows)
                self.reverse_rows.update(rows)
                while len(self.reverse_rows) > _REVERSE_CACHE:
                    self.reverse_rows.popitem(last=False)

    def legs(self, network: Any, sources: Sequence[int], target: int,
             keys: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Network travel time (s) and road distance (m) from each source node to ``target``."""
        times, distance = self.lazy_legs(network, sources, [target], keys)
        return times[:, 0], distance([(k, 0) for k in range(len(sources))])

    def lazy_legs(self, network: Any, sources: Sequence[int], targets: Sequence[int],
                  keys: Sequence[str] | None = None
                  ) -> tuple[np.ndarray, Callable[[Iterable[tuple[int, int]]], np.ndarray]]:
        """Network travel time (s) from each source node to each target node, and road distances on demand.

        The targets are the (at most two) nodes from which a call's phantom node is reached; the sources
        the nodes where teams join the network. ``keys`` (parallel to ``sources``) let the engine notice
        teams that have not moved since their last query: only their nodes are worth a cached forward
        row. A team that moves on every call would only waste the search.

        Returns
        -------
        times
            Seconds, shape ``(len(sources), len(targets))`` (inf: no path).
        distance
            ``distance(pairs)``: road metres from ``sources[k]`` to ``targets[j]`` for each ``(k, j)``.
            Costs a walk along each path unless the row already has its tree's distances.
        """
        targets = [int(t) for t in targets]
        if not len(sources) or not targets:
            return np.zeros((len(sources), len(targets))), lambda pairs: np.zeros(len(list(pairs)))
        unique = sorted(set(int(u) for u in sources))
        with self.lock:
            self.stats["lookups"] += 1
            missing = [u for u in unique if u not in self.rows]
            for u in unique:
                if u in self.rows:
                    self.rows.move_to_end(u)
            stable: set[int] = set()
            for key, u in zip(keys if keys is not None else sources, sources, strict=True):
                u = int(u)
                last, streak = self.seen.get(key, (-1, 0))
                streak = streak + 1 if last == u else 0
                self.seen[key] = (u, streak)
                if streak >= _STABLE_AFTER:
                    stable.add(u)
            if len(self.seen) > 8 * _SNAP_CACHE:  # keys of teams long gone
                self.seen.clear()
            rev_hit = all(t in self.reverse_rows for t in targets)
        if missing and not rev_hit:
            to_fill = [u for u in missing if u in stable]
            if len(to_fill) < len(missing) or len(to_fill) > _FILL_PER_CALL * len(targets):
                # A reverse search is needed anyway: warm up gradually rather than all at once.
                to_fill = to_fill[:_WARM_PER_CALL * len(targets)]
            if to_fill:
                self._fill(network, to_fill)
        with self.lock:
            cached = {u: self.rows.get(u) for u in unique}
        need_reverse = any(v is None for v in cached.values())
        revs = [self._reverse(t) for t in targets] if need_reverse else []
        times = np.empty((len(sources), len(targets)))
        # Per (source, target): the row that answers it and the node to read in it (the row holds the
        # arrays, so the answer stays valid if the cache evicts the row meanwhile).
        where: list[list[tuple[_Row, int]]] = []
        for k, u in enumerate(sources):
            row = cached[int(u)]
            here = []
            for j, t in enumerate(targets):
                if row is not None:
                    times[k, j] = row.times[t]
                    here.append((row, t))
                else:
                    times[k, j] = revs[j].times[u]
                    here.append((revs[j], int(u)))
            where.append(here)

        def distance(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
            pairs = list(pairs)
            out = np.empty(len(pairs))
            pending: dict[int, tuple[_Row, list[int]]] = {}
            for m, (k, j) in enumerate(pairs):
                row, node = where[k][j]
                if row.dist is not None:  # the common case once warm: a plain read
                    out[m] = row.dist[node]
                else:
                    pending.setdefault(id(row), (row, []))[1].append(m)
            for row, ms in pending.values():
                out[ms] = self.distances(row, [where[pairs[m][0]][pairs[m][1]][1] for m in ms])
            return out

        return times, distance


class _Row:
    """One shortest-path tree: travel times between its root and every node, distances on demand."""

    __slots__ = ("times", "pred", "toward_root_is_forward", "dist", "walks")

    def __init__(self, times: np.ndarray, pred: np.ndarray, *, toward_root_is_forward: bool) -> None:
        self.times = times
        self.pred = pred
        # Reverse search (root = target): tree edge v -> pred[v]; forward search (root = source): pred[v] -> v.
        self.toward_root_is_forward = toward_root_is_forward
        self.dist: np.ndarray | None = None  # every node's road distance, once worth computing
        self.walks = 0  # distances answered by walking a path so far


def _padded(a: np.ndarray, b: np.ndarray, length: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, max_degree) tables: for each node u, its neighbours b over edges (u, b) and their lengths;
    padding is -1 (never equal to a node index)."""
    order = np.argsort(a, kind="stable")
    a, b, length = a[order], b[order], length[order]
    deg = np.bincount(a, minlength=n)
    width = max(int(deg.max()), 1)
    slot = np.arange(len(a)) - np.repeat(np.cumsum(deg) - deg, deg)
    nbr = np.full((n, width), -1, dtype=np.int64)
    lens = np.zeros((n, width))
    nbr[a, slot] = b
    lens[a, slot] = length
    return nbr, lens


_ENGINES: dict[int, _EtaEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _forget(key: int) -> None:
    with _ENGINES_LOCK:
        _ENGINES.pop(key, None)


def eta_engine(network: Any) -> _EtaEngine:
    """The cached ETA engine of a network.

    Keyed by the travel-time matrix, so the profile twins of ``with_profile`` that share travel times
    share the cache; the entry goes when the matrix is garbage-collected.
    """
    csr = network.csr
    key = id(csr)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _EtaEngine(network)
            _ENGINES[key] = engine
            weakref.finalize(csr, _forget, key)
    return engine


def warm_up(teams: Sequence[TeamState], *, network: Any) -> int:
    """Cache a forward search row for every node where a dispatchable team joins the network.

    Worth it before a batch with more calls than distinct team positions: every following
    :func:`suggest` is then a table lookup. Returns the number of new rows.
    """
    engine = eta_engine(network)
    ready = [(ts.lat, ts.lon) for ts in teams if ts.status in DISPATCHABLE]
    nodes = sorted({int(x) for snap in engine.snap_teams(network, ready) if not isinstance(snap, InvalidInput)
                    for x in network.snap_exits(snap)[0]})
    with engine.lock:
        missing = [u for u in nodes if u not in engine.rows][:_ROW_CACHE]
    if missing:
        engine._fill(network, missing)
    return len(missing)


def clear_caches() -> None:
    """Drop every cached search row and snap (for benchmarks that measure a cold start)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()


