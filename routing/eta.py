"""The ETA engine: travel times and road distances between team positions and call locations.

Travel times come from per-node search rows kept in byte-bounded LRU caches (one engine per speed
profile) and from a contraction hierarchy (:mod:`routing.hierarchy`): while teams stay where they are, a
suggestion is a table lookup; the other teams each cost one walk in the hierarchy. Road distances are
computed only for the teams a caller returns.

**Searches that do not grow with the map** (issue 15). On networks of ``hierarchy.MIN_NODES`` (50,000)
nodes or more, every ETA comes from a customizable contraction hierarchy (:mod:`routing.hierarchy`):
exact, one walk up the elimination tree per team node, whatever the distances (40 moving teams spread
over a 1.1M-node network: 1.2 ms a suggestion, against 80 ms for the bounded search below and 280 ms for
a full one; ``bench/bench_statewide.py``). Its order is built once per network (5.7 s at 1.1M
nodes, 43 MB, written with the network cache) and customized once per speed profile (0.7 s there,
204 MB), the customized arrays bounded by ``HIERARCHY_MB``. Road distances come from the same walk (the metres of each
upward arc's path are customized with its time).

Below that size (Boston: 11k nodes) teams that stay put read cached forward rows (a table lookup), and
the teams without one (on the move, or new) are answered by the same hierarchy: one walk each instead
of a search from the call, so a call's cost no longer grows with how many teams are away from base (a
simulation at 4x the volume: the share of calls needing a search rose from 17 % to 50 %).

With the hierarchy off (``USE_HIERARCHY``), teams without rows are answered by a Dijkstra search from
the call, bounded: a suggestion needs exact ETAs only for the teams it returns (the chosen tier's teams,
or with ``top`` its first ``top``), so ``scipy.sparse.csgraph.dijkstra(..., limit=L)`` settles every
node within ``L`` seconds of the call and leaves the others at ``inf``, which here means "more than
``L``", never "unreachable". The caller (:func:`routing.dispatch._candidates`) turns that into an exact
time for a team whose best exit is settled below the bound of its unsettled exits, and a lower bound for
every other team; when the teams it must rank are exact and every other team's lower bound already
ranks after them, the answer is the one a full search gives. When teams with cached forward rows
already give the ``top``-th ETA an upper bound (the ceiling), no team beyond it can rank: the search
goes to the ceiling (or first only as far as the teams without rows, when they are much nearer).
Otherwise ``L`` grows by sqrt(2) (the settled area doubles, so all rounds together cost at most 4x a
search to the limit finally needed), and once a round settles a quarter of the network the next one is
the full search (also, after a failed round, when the limit's disc at the median edge speed would cover
the map's bounding box). The first ``L`` is the straight-line time at the network's top speed to the
``top``-th nearest team of the ranked tier (the farthest without ``top``), times a detour factor. Only
on a strongly connected network (what :func:`routing.network.load_network` builds) does an unsettled
team count as reachable; elsewhere the engine searches in full.

**Reproducible runs.** A cached forward row and a hierarchy walk (or a fresh search) may give a time that
differs in the last bit; :func:`reset_caches` brings the caches to a state that depends only on what the
caller asks for (a simulation: its teams' base rows in every profile it drives in), so a simulated run
gives the same figures whatever ran before it in the process, and still starts warm.

**Memory you can plan for.** Every cache is bounded in bytes, process-wide, over all engines:
``CACHE_MB`` (environment ``CRISIS_DISPATCH_ETA_CACHE_MB``, default 512; change it at run time with
:func:`set_cache_mb`), shared as 80 % forward rows, 14 % reverse rows, 3 % snapped positions, 1 % their
phantom-node legs and 2 % team-movement records, each an LRU of its own so calls with moving teams never
evict the rows of stationary ones. A row is its float64 times and int32 predecessors (12 bytes a node:
135 kB on Boston, 13.5 MB at 1.1M nodes), plus float64 distances once a row answers many (20 bytes a
node). Times stay float64: ETAs are ranked at millisecond resolution and compared to 1e-6 s, and float32
(a 0.25 ms step at one hour) would move ETAs and could swap teams whose times round to the same
millisecond. The default holds about 3,000 Boston rows (1,500 stationary teams on two-way streets).
Networks that use the hierarchy keep no rows; its customized arrays have their own bound,
``HIERARCHY_MB`` (environment ``CRISIS_DISPATCH_HIERARCHY_MB``, default 640: three profiles of a
1.1M-node network). With the hierarchy turned off, rows of networks above ``_WARM_MAX_NODES`` nodes are
filled only by :func:`warm_up` or :meth:`_EtaEngine.prime`, since there a bounded search is cheaper than
a full row.

The decisions that use it (:func:`routing.dispatch.suggest`, :func:`routing.dispatch.assign`, the
simulation) live apart from it, as networkx keeps algorithms apart from data structures.
"""
from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from routing.errors import InvalidInput
from routing.fleet import DISPATCHABLE, TeamState

if TYPE_CHECKING:
    from routing.hierarchy import Metric
    from routing.network import RoadNetwork, Snap


def _env_cache_mb(name: str = "CRISIS_DISPATCH_ETA_CACHE_MB", default: float = 512.0) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = default
    return value if math.isfinite(value) and value >= 0 else default


#: Bytes (in MB) all ETA caches of the process may hold together; see the module docstring.
CACHE_MB: float = _env_cache_mb()
#: Bytes (in MB) the customized hierarchies of the process may hold together (environment
#: ``CRISIS_DISPATCH_HIERARCHY_MB``): 32 bytes an upward arc, 204 MB per speed profile at 1.1M nodes (the
#: order, 43 MB, is the network's and not counted here; nor the 63 MB query workspace), so
#: the default (640) keeps three; one evicted is customized again on its next use (0.7 s there).
HIERARCHY_MB: float = _env_cache_mb("CRISIS_DISPATCH_HIERARCHY_MB", 640.0)
#: Whether ETAs may come from the contraction hierarchy (environment ``CRISIS_DISPATCH_HIERARCHY``, "0"
#: turns it off): on networks of ``hierarchy.MIN_NODES`` or more every ETA, on smaller ones those of the
#: teams without a cached forward row. Off, those are Dijkstra searches from the call (see above).
USE_HIERARCHY: bool = os.environ.get("CRISIS_DISPATCH_HIERARCHY", "1").strip() != "0"
#: Share of ``CACHE_MB`` per cache (each its own process-wide LRU).
CACHE_SHARES = {"rows": 0.80, "reverse_rows": 0.14, "snaps": 0.03, "exit_legs": 0.01, "seen": 0.02}
_SNAP_BYTES = 600  # a cached Snap with its key and LRU links (measured with sys.getsizeof, rounded up)
_SEEN_BYTES = 250  # a team key, its (node, streak) and LRU links
_EXITS_BYTES = 700  # a snapped position's key and its three small leg arrays (sys.getsizeof, rounded up)
_WARM_MAX_NODES = 50_000  # above this, calls do not fill forward rows on their own (see the docstring)
_START_DETOUR = 3.0  # first limit: straight-line time at top speed x this
# A failed round's limit grows by this factor: the settled area doubles, which bounds the total work at
# 4x that of a search to the limit finally needed (a factor r costs up to r^4 / (r^2 - 1) times it).
_GROWTH = math.sqrt(2.0)
_FULL_AFTER = 0.25  # a bounded round that settles this share of the network is followed by a full search
_FILL_PER_CALL = 4  # fill up to this many rows when that avoids the reverse search
_WARM_PER_CALL = 2  # ...else at most this many per call, to warm the cache without stalling a call
_STABLE_AFTER = 1  # a team found at the same node this many times in a row has "not moved"
# ...when the hierarchy answers the others: a row (a full search) costs about 150 walks, so only a team
# that keeps being asked about at the same place earns one
_STABLE_AFTER_HIERARCHY = 16
_REACH_SHARE = 0.5  # a first search just reaching the teams without rows, when below this share of the ceiling
_STILL_M = 25.0  # ...and within this many metres of where it was (GPS jitter, not a drive along the street)
_CHAIN_MAX = 8  # distances wanted from one row at once up to which each path is walked, not the tree
_WALKS_BEFORE_TREE = 16  # a row asked this many path distances gets its whole tree's distances


# distance(pairs): road metres for each (source index, target index) pair
_DistanceFn = Callable[[Iterable[tuple[int, int]]], np.ndarray]


class _EtaEngine:
    """Travel times and road distances between team positions and call locations, with caches."""

    def __init__(self, network: RoadNetwork) -> None:
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
        # Top speed (m/s) over every edge: straight-line metres / it is a lower bound on a travel time,
        # the first guess of a bounded search's limit.
        edge_time = np.asarray(network.csr.data, dtype=float)
        self.top_speed = float(np.max(length / np.maximum(edge_time, 1e-9))) if len(length) else 1.0
        # Median edge speed (m/s): how far a search reaches in a given time, for choosing a bounded search
        # over a full one (top speed holds only on the few expressways).
        self.typical_speed = float(np.median(length / np.maximum(edge_time, 1e-9))) if len(length) else 1.0
        self.x, self.y = np.asarray(network.x, dtype=float), np.asarray(network.y, dtype=float)
        self.area_m2 = float(np.ptp(self.x) * np.ptp(self.y)) if n else 0.0
        self.key = id(network.csr)  # the registry key; the byte budget names entries by it
        self._strong: bool | None = None  # strongly connected (computed on first bounded search)
        # One lock for every engine: the byte budget is process-wide and evicts across engines.
        self.lock = _CACHE_LOCK
        self.rows: OrderedDict[int, _Row] = OrderedDict()
        self.reverse_rows: OrderedDict[int, _Row] = OrderedDict()
        self.snaps: OrderedDict[tuple[float, float], Snap | InvalidInput] = OrderedDict()
        # team key -> (node at last query, unchanged streak, metres from the team to that node)
        self.seen: dict[Hashable, tuple[int, int, float]] = {}
        self.exit_legs: dict[tuple[int, float, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # The customized hierarchy of this profile (key 0), on networks of hierarchy.MIN_NODES or more.
        self.hierarchy: dict[int, Metric] = {}
        self._hierarchy_lock = threading.Lock()
        self._phantom: csr_matrix | None = None  # the reverse graph plus a phantom node (_reverse_call)
        self._phantom_lock = threading.Lock()
        self.stats = {"lookups": 0, "forward_fills": 0, "reverse_searches": 0, "bounded_searches": 0,
                      "full_searches": 0, "hierarchy_queries": 0}

    # --- byte-bounded caches (caller holds self.lock)
    def _remember(self, cache: str, key: Hashable, value: object, nbytes: int) -> None:
        """Store ``value`` in one of the engine's caches and charge its bytes to the process budget."""
        if nbytes > _budget_bytes(cache):
            return  # larger than the whole cache: never kept
        getattr(self, cache)[key] = value
        _BUDGET.charge((self.key, cache, key), nbytes)

    def _touch(self, cache: str, key: Hashable) -> None:
        _BUDGET.touch((self.key, cache, key))

    def strongly_connected(self, network: RoadNetwork) -> bool:
        """Whether every node reaches every other (then a node a bounded search left is still reachable)."""
        if self._strong is None:
            n_comp = connected_components(network.csr, directed=True, connection="strong", return_labels=False)
            self._strong = int(n_comp) == 1
        return self._strong

    def straight_line_s(self, sources: Sequence[int], targets: Sequence[int]) -> np.ndarray:
        """Straight-line metres / top speed from each source to each target: about a lower bound on the
        travel time (edge lengths follow the road, the metres here the projection), only a first guess."""
        s, t = np.asarray(sources, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        d = np.hypot(self.x[s][:, None] - self.x[t][None, :], self.y[s][:, None] - self.y[t][None, :])
        return d / self.top_speed

    # --- hierarchy
    def uses_hierarchy(self) -> bool:
        """Whether every ETA comes from the contraction hierarchy (networks of ``hierarchy.MIN_NODES`` or
        more, unless ``USE_HIERARCHY`` is off); on smaller networks only those without a cached row do."""
        from routing import hierarchy

        return USE_HIERARCHY and self.n >= hierarchy.MIN_NODES

    def metric(self, network: RoadNetwork) -> Metric:
        """This profile's customized hierarchy: the network's order (built once per network, or read from
        its cache) with this profile's times, customized on first use and kept within ``HIERARCHY_MB``."""
        with self.lock:
            hit = self.hierarchy.get(0)
            if hit is not None:
                self._touch("hierarchy", 0)
                return hit
        with self._hierarchy_lock:  # one customization per profile, not one per waiting thread
            with self.lock:
                hit = self.hierarchy.get(0)
            if hit is None:
                from routing.hierarchy import customize

                src, dst = network.edges
                hit = customize(network._t.cch_order(), src, dst, network.csr.data, network.edge_length_m)
                with self.lock:
                    self._remember("hierarchy", 0, hit, hit.nbytes)
        return hit

    def _mixed_legs(self, network: RoadNetwork, sources: Sequence[int], targets: list[int],
                    cached: dict[int, _Row | None]) -> tuple[np.ndarray, _DistanceFn]:
        """lazy_legs with cached forward rows for the teams that have one and the hierarchy for the rest."""
        src = np.asarray(sources, dtype=np.int64)
        rows = [cached[int(u)] for u in sources]
        have = np.array([r is not None for r in rows], dtype=bool)
        times = np.empty((len(sources), len(targets)))
        metres = np.full((len(sources), len(targets)), np.nan)
        for k in np.flatnonzero(have):
            times[k] = rows[k].times[targets]  # type: ignore[union-attr]
        rest = np.flatnonzero(~have)
        unique, back = np.unique(src[rest], return_inverse=True)
        t_h, m_h = self.metric(network).node_times(unique, np.asarray(targets, dtype=np.int64))
        times[rest], metres[rest] = t_h[back], m_h[back]
        with self.lock:
            self.stats["hierarchy_queries"] += 1
        # ``enough`` is not asked: every time here is exact, which is what a caller assumes of a time it
        # never had a verdict on (its test would cost more than the walks at 4x a simulation's volume).
        walk = self._distance_fn

        def distance(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
            pairs = list(pairs)
            out = np.array([metres[k, j] for k, j in pairs], dtype=float)
            from_rows = [m for m, (k, _) in enumerate(pairs) if have[k]]
            if from_rows:  # a row's tree: walked (the only pairs whose (row, node) are needed)
                where = [[(rows[pairs[m][0]], targets[pairs[m][1]])] for m in from_rows]
                out[from_rows] = walk(where)((i, 0) for i in range(len(from_rows)))  # type: ignore[arg-type]
            return out

        return times, distance

    def _hierarchy_legs(self, network: RoadNetwork, sources: Sequence[int], targets: list[int]
                        ) -> tuple[np.ndarray, _DistanceFn]:
        """lazy_legs from the hierarchy: every time exact (no ``enough`` to ask), one walk per distinct source
        node."""
        unique, back = np.unique(np.asarray(sources, dtype=np.int64), return_inverse=True)
        times, metres = self.metric(network).node_times(unique, np.asarray(targets, dtype=np.int64))
        times, metres = times[back], metres[back]
        with self.lock:
            self.stats["hierarchy_queries"] += 1

        def distance(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
            return np.array([metres[k, j] for k, j in pairs], dtype=float)

        return times, distance

    # --- snapping
    def snap_teams(self, network: RoadNetwork, points: Sequence[tuple[float, float]]) -> list[Snap | InvalidInput]:
        """Snap team positions (cached; the misses in one vectorised query).

        Returns, per point, a :class:`routing.network.Snap` or the ``InvalidInput`` snapping raised.
        """
        out: list[Snap | InvalidInput | None] = [None] * len(points)
        misses: list[int] = []
        with self.lock:
            for k, key in enumerate(points):
                hit = self.snaps.get(key)
                if hit is None:
                    misses.append(k)
                else:
                    self.snaps.move_to_end(key)
                    self._touch("snaps", key)
                    out[k] = hit
        if misses:
            lats = np.array([points[k][0] for k in misses], dtype=float)
            lons = np.array([points[k][1] for k in misses], dtype=float)
            # A team's locator may put it on any road, an expressway included: a van can be on I-93.
            snapped = network.snap_many(lats, lons, strict=False, on="any")
            fresh: dict[int, Snap | InvalidInput] = {}
            for m, k in enumerate(misses):
                if int(snapped.nodes[m]) >= 0:
                    fresh[k] = snapped[m]
                else:
                    try:  # rejected: get the precise message
                        fresh[k] = network.snap(*points[k], field="team position", on="any")
                    except InvalidInput as exc:
                        fresh[k] = exc
                out[k] = fresh[k]
            with self.lock:
                for k in misses:
                    self._remember("snaps", points[k], fresh[k], _SNAP_BYTES)
        return cast("list[Snap | InvalidInput]", out)  # every slot was filled: a hit or a miss

    def exits(self, network: RoadNetwork, snap: Snap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`routing.network.RoadNetwork.snap_exits` of a team position, cached (this profile's legs)."""
        key = (snap.segment, snap.fraction, snap.node)
        hit = self.exit_legs.get(key)
        if hit is None:
            hit = network.snap_exits(snap)
            with self.lock:
                self._remember("exit_legs", key, hit, _EXITS_BYTES)
        else:
            with self.lock:
                self._touch("exit_legs", key)
        return hit

    def place_teams(self, points: Sequence[tuple[float, float]], snaps: Sequence[Snap]) -> None:
        """Record where team positions attach, when the caller knows (a simulation moving a team along its
        route, :meth:`routing.network.RoadNetwork.snap_on_edge`): :meth:`snap_teams` then reads them."""
        with self.lock:
            for point, snap in zip(points, snaps, strict=True):
                self._remember("snaps", point, snap, _SNAP_BYTES)

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
        # A bounded row's tree covers a corner of the map but its arrays all of it: always walk there.
        if (row.dist is None and math.isinf(row.limit)
                and (len(nodes) > _CHAIN_MAX or row.walks >= _WALKS_BEFORE_TREE)):
            row.dist = self._tree_distance(row.pred, toward_root_is_forward=row.toward_root_is_forward)
            with self.lock:  # the row grew: charge its new size if it is still cached
                if row.slot is not None:
                    _BUDGET.resize(row.slot, row.nbytes)
        dist = row.dist
        if dist is not None:
            return dist[np.asarray(nodes, dtype=np.int64)]
        row.walks += len(nodes)  # unlocked: a lost increment only delays the switch to the whole tree
        return np.array([self._chain_distance(row, int(v)) for v in nodes], dtype=float)

    def row_bytes(self) -> int:
        """Bytes of one cached search row before its distances: float64 times + int32 predecessors."""
        return self.n * 12

    def _fill(self, network: RoadNetwork, nodes: list[int]) -> None:
        times, pred = dijkstra(network.csr, directed=True, indices=nodes, return_predecessors=True)
        # Each row its own arrays: a view would keep the whole block alive after its row is evicted.
        rows = {u: _Row(times[k].copy(), pred[k].copy(), toward_root_is_forward=False)
                for k, u in enumerate(nodes)}
        with self.lock:
            self.stats["forward_fills"] += len(nodes)
            for u, row in rows.items():
                row.slot = (self.key, "rows", u)
                self._remember("rows", u, row, row.nbytes)

    def _reverse(self, target: int, limit: float = math.inf) -> _Row:
        """The reverse row of ``target``, settled at least up to ``limit`` seconds (cached or searched)."""
        with self.lock:
            hit = self.reverse_rows.get(target)
            if hit is not None and hit.limit >= limit:
                self.reverse_rows.move_to_end(target)
                self._touch("reverse_rows", target)
                return hit
        # One target per search: each row then owns its arrays (see _fill).
        times, pred = dijkstra(self.reverse, directed=True, indices=target, return_predecessors=True, limit=limit)
        row = _Row(times, pred, toward_root_is_forward=True, limit=limit)
        with self.lock:
            self.stats["reverse_searches"] += 1
            self.stats["full_searches" if math.isinf(limit) else "bounded_searches"] += 1
            row.slot = (self.key, "reverse_rows", target)
            self._remember("reverse_rows", target, row, row.nbytes)
        return row

    def _reverse_call(self, entries: Sequence[int], legs: Sequence[float] | np.ndarray, dists: Sequence[float],
                      limit: float) -> _Row:
        """One reverse search from a call's phantom node: ``times[u]`` = min over its entries j of
        (seconds from u to entry j + ``legs[j]``), settled at least up to ``limit`` (cached or searched).

        OSRM and Valhalla search from a phantom node in the same way: one search instead of one per entry
        node (a call on a two-way street has two), and at a million nodes each search also costs ~2 ms of
        array set-up. The phantom is node ``n`` of a copy of the reverse graph with two spare edges,
        set to the call's entries under a lock for the search.
        """
        key = ("call", tuple(int(e) for e in entries), tuple(float(x) for x in legs))
        with self.lock:
            hit = self.reverse_rows.get(key)  # type: ignore[call-overload]
            if hit is not None and hit.limit >= limit:
                self.reverse_rows.move_to_end(key)  # type: ignore[arg-type]
                self._touch("reverse_rows", key)
                return hit
        with self._phantom_lock:
            if self._phantom is None:
                r = self.reverse
                self._phantom = csr_matrix(
                    (np.append(r.data, [0.0, 0.0]), np.append(r.indices, [0, 0]).astype(r.indices.dtype),
                     np.append(r.indptr, r.indptr[-1] + 2)), shape=(self.n + 1, self.n + 1))
            graph = self._phantom
            k = len(entries)
            graph.indices[-2:] = [int(entries[0]), int(entries[min(1, k - 1)])]
            graph.data[-2:] = [float(legs[0]), float(legs[min(1, k - 1)])]
            times, pred = dijkstra(graph, directed=True, indices=self.n, return_predecessors=True, limit=limit)
        row = _Row(times, pred, toward_root_is_forward=True, limit=limit)
        row.entries = (tuple(int(e) for e in entries), tuple(float(d) for d in dists))
        with self.lock:
            self.stats["reverse_searches"] += 1
            self.stats["full_searches" if math.isinf(limit) else "bounded_searches"] += 1
            row.slot = (self.key, "reverse_rows", key)  # type: ignore[assignment]
            self._remember("reverse_rows", key, row, row.nbytes)
        return row

    def _call_distance(self, row: _Row, u: int, j: int) -> float:
        """Road metres from ``u`` along ``row``'s tree (rooted at a call's phantom node) to the entry it
        uses, plus that entry's metres to the call, minus entry ``j``'s (the caller adds those back)."""
        assert row.entries is not None
        entries, dists = row.entries
        v = int(u)
        while True:  # the entry is the last node before the phantom root
            p = int(row.pred[v])
            if p < 0 or p == self.n:
                break
            v = p
        used = entries.index(v) if v in entries else j
        return self._chain_distance(row, int(u)) + dists[used] - dists[j]

    def prime(self, network: RoadNetwork, sources: Sequence[int], targets: Sequence[int]) -> None:
        """Prepare for many queries (sources x targets) with few searches: a forward row per uncached
        source when there are at most half as many as uncached targets, else a reverse row per uncached
        target (if it fits the cache's bytes). Reverse rows are favoured because the calls of a joint
        assignment often wait for the next one, while the uncached sources are teams on the move,
        whose rows would not serve again (a simulation at 4x the volume: 336 of 379 forward rows).
        Nothing to prepare where the hierarchy answers."""
        if USE_HIERARCHY:
            return
        with self.lock:
            missing_s = sorted({int(u) for u in sources} - set(self.rows))
            missing_t = sorted({int(t) for t in targets} - {t for t, r in self.reverse_rows.items()
                                                             if math.isinf(r.limit)})
            held = len(self.rows)
        if not missing_s or not missing_t:
            return
        room = _budget_bytes("rows") // self.row_bytes()
        if 2 * len(missing_s) <= len(missing_t) and len(missing_s) + held <= room:
            self._fill(network, missing_s)
        elif len(missing_t) <= _budget_bytes("reverse_rows") // self.row_bytes():
            times, pred = dijkstra(self.reverse, directed=True, indices=missing_t, return_predecessors=True)
            rows = {t: _Row(times[k].copy(), pred[k].copy(), toward_root_is_forward=True)
                    for k, t in enumerate(missing_t)}
            with self.lock:
                self.stats["reverse_searches"] += len(rows)
                self.stats["full_searches"] += len(rows)
                for t, row in rows.items():
                    row.slot = (self.key, "reverse_rows", t)
                    self._remember("reverse_rows", t, row, row.nbytes)

    def legs(self, network: RoadNetwork, sources: Sequence[int], target: int,
             keys: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Network travel time (s) and road distance (m) from each source node to ``target``."""
        times, distance = self.lazy_legs(network, sources, [target], keys)
        return times[:, 0], distance([(k, 0) for k in range(len(sources))])

    def lazy_legs(self, network: RoadNetwork, sources: Sequence[int], targets: Sequence[int],
                  keys: Sequence[str] | None = None, *,
                  enough: Callable[[np.ndarray, np.ndarray], bool] | None = None,
                  start_s: float | Callable[[], float] = 60.0, offsets: Sequence[float] | None = None,
                  target_legs: Sequence[float] | None = None, target_dists: Sequence[float] | None = None
                  ) -> tuple[np.ndarray, Callable[[Iterable[tuple[int, int]]], np.ndarray]]:
        """Network travel time (s) from each source node to each target node, and road distances on demand.

        The targets are the (at most two) nodes from which a call's phantom node is reached; the sources
        the nodes where teams join the network. ``keys`` (parallel to ``sources``) let the engine notice
        teams that have not moved since their last query: only their nodes are worth a cached forward
        row. A team that moves on every call would only waste the search. ``offsets`` (metres from each
        team's position to its source node, parallel to ``sources``) tell a team still at the same place
        from one driving along a street towards the same node: it "has not moved" only within 25 m.
        ``target_legs`` and ``target_dists`` (seconds and metres from each target to the call) let the
        bounded searches start at the call itself, one search for all targets (:meth:`_reverse_call`).

        With ``enough`` (on a strongly connected network), the reverse searches are bounded (see the
        module docstring): first at ``start_s`` seconds (or what it returns, when a bounded search turns out
        to be needed, if it is a function), then at twice that, and so on, until
        ``enough(times, bounds)`` returns True or a search covered the network (it is called after
        every search, so its last call sees the times returned). ``bounds[k, j]`` is the
        limit of the search that answered ``times[k, j]`` (inf for a full search or a forward row): an
        inf in ``times`` under a finite bound means "more than the bound", not "no path".

        Returns
        -------
        times
            Seconds, shape ``(len(sources), len(targets))`` (inf: no path, or beyond the bound of the
            last search when ``enough`` was given; only the entries ``enough`` accepted are needed).
        distance
            ``distance(pairs)``: road metres from ``sources[k]`` to ``targets[j]`` for each ``(k, j)``.
            Costs a walk along each path unless the row already has its tree's distances.
        """
        targets = [int(t) for t in targets]
        if not len(sources) or not targets:
            return np.zeros((len(sources), len(targets))), lambda pairs: np.zeros(len(list(pairs)))
        if self.uses_hierarchy():
            return self._hierarchy_legs(network, sources, targets)
        unique = sorted(set(int(u) for u in sources))
        with self.lock:
            self.stats["lookups"] += 1
            missing = [u for u in unique if u not in self.rows]
            for u in unique:
                if u in self.rows:
                    self.rows.move_to_end(u)
            stable: set[int] = set()
            place = offsets if offsets is not None else [0.0] * len(sources)
            for key, u, at in zip(keys if keys is not None else sources, sources, place, strict=True):
                u = int(u)
                last, streak, last_at = self.seen.get(key, (-1, 0, 0.0))
                streak = streak + 1 if last == u and abs(at - last_at) <= _STILL_M else 0
                self._remember("seen", key, (u, streak, float(at)), _SEEN_BYTES)
                if streak >= (_STABLE_AFTER_HIERARCHY if USE_HIERARCHY else _STABLE_AFTER):
                    stable.add(u)
            rev_hit = all(t in self.reverse_rows for t in targets)
        # Rows of a large network cost more (a full search, n * 12 bytes) than the bounded searches
        # they would save: there only warm_up and prime fill them.
        if missing and not rev_hit and self.n <= _WARM_MAX_NODES:
            to_fill = [u for u in missing if u in stable]
            if len(to_fill) < len(missing) or len(to_fill) > _FILL_PER_CALL * len(targets):
                # A reverse search is needed anyway: warm up gradually rather than all at once.
                to_fill = to_fill[:_WARM_PER_CALL * len(targets)]
            if to_fill:
                self._fill(network, to_fill)
        with self.lock:
            cached = {u: self.rows.get(u) for u in unique}
        need_reverse = any(v is None for v in cached.values())
        if need_reverse and USE_HIERARCHY:
            return self._mixed_legs(network, sources, targets, cached)
        if need_reverse and enough is not None and self.strongly_connected(network):
            call = None if target_legs is None or target_dists is None else (target_legs, target_dists)
            times, where = self._bounded(sources, targets, cached, enough, start_s, call)
            return times, self._distance_fn(where)
        revs = [self._reverse(t) for t in targets] if need_reverse else []
        times = np.empty((len(sources), len(targets)))
        # Per (source, target): the row that answers it and the node to read in it (the row holds the
        # arrays, so the answer stays valid if the cache evicts the row meanwhile).
        where = []  # the type of _bounded's answer
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
        return times, self._distance_fn(where)

    def _bounded(self, sources: Sequence[int], targets: list[int], cached: dict[int, _Row | None],
                 enough: Callable[[np.ndarray, np.ndarray], bool], start_s: float | Callable[[], float],
                 call: tuple[Sequence[float], Sequence[float]] | None = None
                 ) -> tuple[np.ndarray, list[list[tuple[_Row, int]]]]:
        """Times from bounded reverse searches, the limit doubling until ``enough`` (see lazy_legs)."""
        src = np.asarray(sources, dtype=np.int64)
        have = np.array([cached[int(u)] is not None for u in sources], dtype=bool)
        times = np.empty((len(sources), len(targets)))
        bounds = np.full((len(sources), len(targets)), math.inf)
        for k in np.flatnonzero(have):  # forward rows: exact
            times[k] = cached[int(src[k])].times[targets]  # type: ignore[union-attr]
        cap = getattr(enough, "cap_s", None)
        # The teams with forward rows may already bound how far a team that ranks can be: a search to
        # that bound decides, so no round goes beyond it. Straight to it when there is one: a smaller
        # first guess that fails costs a second round.
        ceiling = max(float(cap(times, have)), 1.0) if cap is not None and have.any() else math.inf
        if math.isfinite(ceiling):
            limit = ceiling
            reach = getattr(enough, "reach_s", None)
            if reach is not None:
                # The teams without rows may all be much nearer than the ceiling (a team driving back
                # past the call): a search that just reaches them is enough when they are exact there.
                near = float(reach(self.straight_line_s(sources, targets), have))
                if near < _REACH_SHARE * ceiling:
                    limit = max(near, 1.0)
        else:
            first = float(start_s() if callable(start_s) else start_s)
            limit = max(first, 1.0) if math.isfinite(first) else math.inf
        rest = src[~have]
        first_round = True
        while True:
            # A bounded search never costs more than a full one; after a failed round, a limit whose disc
            # at a typical speed covers the map would only add a round: go to the ceiling (or in full).
            if not first_round and limit < ceiling and math.pi * (limit * self.typical_speed) ** 2 >= self.area_m2:
                limit = ceiling
            first_round = False
            if call is not None:
                # One search from the call: per source the best total over entries, C(u). Column j gets
                # C(u) - leg_j, so that every column plus its leg is C(u), the best; a source beyond the
                # limit L has C(u) > L, so its bound in column j is L - leg_j (plus leg_j: L).
                legs = np.asarray(call[0], dtype=float)
                row = self._reverse_call(targets, legs, call[1], limit)
                revs = [row] * len(targets)
                for j in range(len(targets)):
                    times[~have, j] = row.times[rest] - legs[j]
                    bounds[~have, j] = row.limit - legs[j]
            else:
                revs = [self._reverse(t, limit) for t in targets]
                for j, row in enumerate(revs):
                    times[~have, j] = row.times[rest]
                    bounds[~have, j] = row.limit
            # Always asked, the full search included: the caller reads its verdict on the final times.
            if enough(times, bounds) or math.isinf(limit):
                break
            # Settled share of the network: past a quarter, doubling again costs about a full search.
            settled = np.count_nonzero(np.isfinite(revs[0].times)) / self.n
            grown = math.inf if settled >= _FULL_AFTER else _GROWTH * max(row.limit for row in revs)
            limit = math.inf if limit >= ceiling else (ceiling if math.isfinite(ceiling) else grown)
        where = [[(cached[int(u)], t) if have[k] else (revs[j], int(u)) for j, t in enumerate(targets)]
                 for k, u in enumerate(sources)]
        return times, where  # type: ignore[return-value]

    def _distance_fn(self, where: list[list[tuple[_Row, int]]]
                     ) -> Callable[[Iterable[tuple[int, int]]], np.ndarray]:
        """``distance(pairs)`` over the rows that answered each (source, target) pair."""

        def distance(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
            pairs = list(pairs)
            out = np.empty(len(pairs))
            pending: dict[int, tuple[_Row, list[int]]] = {}
            for m, (k, j) in enumerate(pairs):
                row, node = where[k][j]
                if row.entries is not None:  # a search from the call itself
                    out[m] = self._call_distance(row, node, j)
                elif row.dist is not None:  # the common case once warm: a plain read
                    out[m] = row.dist[node]
                else:
                    pending.setdefault(id(row), (row, []))[1].append(m)
            for row, ms in pending.values():
                out[ms] = self.distances(row, [where[pairs[m][0]][pairs[m][1]][1] for m in ms])
            return out

        return distance


class _Row:
    """One shortest-path tree: travel times between its root and every node, distances on demand."""

    __slots__ = ("times", "pred", "toward_root_is_forward", "dist", "walks", "limit", "slot", "entries")

    def __init__(self, times: np.ndarray, pred: np.ndarray, *, toward_root_is_forward: bool,
                 limit: float = math.inf) -> None:
        self.times = times
        self.pred = pred
        self.limit = limit  # nodes farther than this (s) were not settled: inf in times, not "no path"
        self.slot: tuple[int, str, int] | None = None  # its entry in the byte budget, once cached
        # Reverse search (root = target): tree edge v -> pred[v]; forward search (root = source): pred[v] -> v.
        self.toward_root_is_forward = toward_root_is_forward
        self.dist: np.ndarray | None = None  # every node's road distance, once worth computing
        self.walks = 0  # distances answered by walking a path so far
        # A search rooted at a call's phantom node (node n, see _EtaEngine._reverse_call): its entry
        # nodes and the metres from each to the call; None for a search rooted at a node.
        self.entries: tuple[tuple[int, ...], tuple[float, ...]] | None = None

    @property
    def nbytes(self) -> int:
        return self.times.nbytes + self.pred.nbytes + (self.dist.nbytes if self.dist is not None else 0)


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
    _BUDGET.drop_engine(key)


class _Budget:
    """Process-wide byte accounting of every engine's caches: one LRU per cache kind.

    Entries are named ``(engine key, cache, key)``; going over a kind's share of :data:`CACHE_MB`
    evicts that kind's least recently used entries, from whichever engine holds them. Callers hold
    ``_CACHE_LOCK``.
    """

    def __init__(self) -> None:
        kinds = [*CACHE_SHARES, "hierarchy"]
        self.lru: dict[str, OrderedDict[tuple[int, str, Hashable], int]] = {c: OrderedDict() for c in kinds}
        self.used = dict.fromkeys(kinds, 0)

    def charge(self, name: tuple[int, str, Hashable], nbytes: int) -> None:
        lru = self.lru[name[1]]
        if lru.get(name) == nbytes:  # an entry updated in place (a team's last node): no new bytes
            lru.move_to_end(name)
            return
        self.used[name[1]] += nbytes - lru.pop(name, 0)
        lru[name] = nbytes
        self.trim(name[1])

    def resize(self, name: tuple[int, str, Hashable], nbytes: int) -> None:
        if name in self.lru[name[1]]:
            self.charge(name, nbytes)

    def touch(self, name: tuple[int, str, Hashable]) -> None:
        lru = self.lru[name[1]]
        if name in lru:
            lru.move_to_end(name)

    def trim(self, cache: str) -> None:
        lru, cap = self.lru[cache], _budget_bytes(cache)
        while self.used[cache] > cap and lru:
            (engine_key, _, key), nbytes = lru.popitem(last=False)
            self.used[cache] -= nbytes
            engine = _ENGINES.get(engine_key)
            if engine is not None:
                getattr(engine, cache).pop(key, None)

    def drop_engine(self, engine_key: int) -> None:
        with _CACHE_LOCK:
            for cache, lru in self.lru.items():
                for name in [n for n in lru if n[0] == engine_key]:
                    self.used[cache] -= lru.pop(name)

    def clear(self) -> None:
        with _CACHE_LOCK:
            for cache in self.lru:
                self.lru[cache].clear()
                self.used[cache] = 0


_CACHE_LOCK = threading.RLock()
_BUDGET = _Budget()


def _budget_bytes(cache: str) -> int:
    if cache == "hierarchy":
        return int(HIERARCHY_MB * 1024 * 1024)
    return int(CACHE_MB * 1024 * 1024 * CACHE_SHARES[cache])


def set_cache_mb(mb: float) -> None:
    """Set :data:`CACHE_MB`, the bytes (in MB) every ETA cache of the process may hold together.

    Takes effect at once: caches over their new share are trimmed, least recently used first.
    """
    global CACHE_MB
    if isinstance(mb, bool) or not isinstance(mb, (int, float)) or not math.isfinite(mb) or mb < 0:
        raise InvalidInput(f"cache size must be a non-negative number of MB, got {mb!r}", field="cache_mb")
    with _CACHE_LOCK:
        CACHE_MB = float(mb)
        for cache in CACHE_SHARES:
            _BUDGET.trim(cache)


def cache_usage() -> dict[str, dict[str, int]]:
    """Bytes and entries each ETA cache holds now, process-wide, and its bound (``limit``)."""
    with _CACHE_LOCK:
        return {c: {"bytes": _BUDGET.used[c], "entries": len(_BUDGET.lru[c]), "limit": _budget_bytes(c)}
                for c in [*CACHE_SHARES, "hierarchy"]}


def eta_engine(network: RoadNetwork) -> _EtaEngine:
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


def warm_up(teams: Sequence[TeamState], *, network: RoadNetwork) -> int:
    """Cache a forward search row for every node where a dispatchable team joins the network.

    Worth it before a batch with more calls than distinct team positions: every following
    :func:`suggest` is then a table lookup. Returns the number of new rows.
    """
    engine = eta_engine(network)
    if engine.uses_hierarchy():  # no rows to fill: the hierarchy answers (prepare it now instead)
        engine.metric(network)
        return 0
    ready = [(ts.lat, ts.lon) for ts in teams if ts.status in DISPATCHABLE]
    nodes = sorted({int(x) for snap in engine.snap_teams(network, ready) if not isinstance(snap, InvalidInput)
                    for x in network.snap_exits(snap)[0]})
    with engine.lock:
        room = _budget_bytes("rows") // engine.row_bytes()
        missing = [u for u in nodes if u not in engine.rows][:room]
    if missing:
        engine._fill(network, missing)
    return len(missing)


def reset_caches(warm: Sequence[tuple[RoadNetwork, Sequence[int]]] = ()) -> int:
    """Bring the ETA caches to a state that depends only on ``warm``: reproducible runs, warm caches.

    A cached forward row and a fresh reverse search can give a travel time that differs in the last
    bit, so which rows are cached could change a simulated decision. After this call the forward rows
    are exactly those of ``warm`` (per network, its nodes, in that order: kept if cached, else
    searched), every other row, every reverse row and every team-movement record are gone; snapped
    positions and their phantom-node legs stay, being pure functions of their inputs. A run that starts
    here gives the same answers whatever ran before it in the process, and replications in one
    process skip the searches the first one made.

    Parameters
    ----------
    warm
        ``(network, nodes)`` pairs: the profile networks and the node indices to hold forward rows for.

    Returns
    -------
    int
        Rows searched (those not already cached).
    """
    with _CACHE_LOCK:
        saved: dict[tuple[int, int], _Row] = {}
        for engine in list(_ENGINES.values()):
            for u, row in engine.rows.items():
                saved[(engine.key, u)] = row
            engine.rows.clear()
            engine.reverse_rows.clear()
            engine.seen.clear()
        for kind in ("rows", "reverse_rows", "seen"):
            _BUDGET.lru[kind].clear()
            _BUDGET.used[kind] = 0
    searched = 0
    for network, nodes in warm:
        engine = eta_engine(network)
        wanted = list(dict.fromkeys(int(u) for u in nodes))
        missing = [u for u in wanted if (engine.key, u) not in saved]
        if missing:
            times, pred = dijkstra(network.csr, directed=True, indices=missing, return_predecessors=True)
            for k, u in enumerate(missing):
                saved[(engine.key, u)] = _Row(times[k].copy(), pred[k].copy(), toward_root_is_forward=False)
            searched += len(missing)
        with engine.lock:
            for u in wanted:
                row = saved[(engine.key, u)]
                row.dist, row.walks = None, 0  # as searched: what a row holds must not depend on its past
                row.slot = (engine.key, "rows", u)
                engine._remember("rows", u, row, row.nbytes)
            engine.stats["forward_fills"] += len(missing)
    return searched


def clear_caches() -> None:
    """Drop every cached search row and snap (for benchmarks that measure a cold start)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()
    _BUDGET.clear()


