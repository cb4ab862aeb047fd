"""A customizable contraction hierarchy (CCH): exact travel times that do not grow with the map.

A suggestion on a statewide network with teams spread over the state needs the times from teams hours
away: a Dijkstra search from the call then settles most of a million nodes (80 ms; a full search
~280 ms). A contraction hierarchy answers the same times exactly after preprocessing, by two searches
that only go "upward" in a node order. The customizable variant (Dibbelt, Strasser and Wagner,
"Customizable Contraction Hierarchies", ACM JEA 2016) splits preprocessing in two:

1. **Metric-independent** (:func:`build_order`, once per network topology, cached with the network): a
   nested-dissection order from METIS (``pymetis.nested_dissection``; small separators ranked last),
   then the chordal supergraph that eliminating the nodes in that order creates (symbolic elimination
   along the elimination tree). Every speed profile of the network shares it.
2. **Customization** (:func:`customize`, per speed profile, 0.7 s at 1.1M nodes): every
   upward arc gets its exact travel time in both directions by enumerating lower triangles, and the
   road metres of the path that time belongs to.

A query then walks the elimination tree: the search space of a node is its ancestors in the tree, a
chain, so no priority queue is needed (Bauer, Columbus, Rutter and Wagner, "Search-space size in
contraction hierarchies", TCS 2016). Times from many sources to one target cost one backward walk plus
one forward walk per source (:meth:`Metric.many_to_few`).

Why a CCH rather than a plain CH or pandana's: a plain CH's build depends on the metric (pandana takes
two minutes per speed profile at a million nodes, and a network has one profile per mode and distinct
hour), while here the order and the graph are built once and each profile costs one customization; it
is exact by construction (no witness-search heuristics); and it is a few hundred lines over NumPy
arrays, compiled with numba, that serialize with the network cache.

Times are float64 seconds, as the searches elsewhere; a hierarchy sums a path's edges in a different
order than Dijkstra, so a time may differ from a search's in the last bits (tests compare to 1e-9 s).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix

from routing.errors import InvalidInput

__all__ = ["MIN_NODES", "Metric", "Order", "build_order", "customize"]

#: Networks with at least this many nodes answer every ETA from the hierarchy (:mod:`routing.eta`); on
#: smaller ones (Boston, 11k nodes) teams that stay put read cached search rows first (a table lookup,
#: cheaper than a walk) and only the others use the hierarchy.
MIN_NODES = 50_000
_NO = -1


@dataclass(frozen=True)
class Order:
    """The metric-independent part of a CCH: a node order and its chordal supergraph, in rank space.

    Attributes
    ----------
    rank : ndarray of int32, shape (n,)
        Position of each node (network index) in the contraction order.
    node : ndarray of int32, shape (n,)
        Network index of each rank (the inverse of ``rank``).
    up_ptr : ndarray of int64, shape (n + 1,)
        CSR offsets: the upward arcs of rank ``r`` are ``up_ptr[r]:up_ptr[r + 1]``.
    up_idx : ndarray of int32, shape (n_arcs,)
        Head (a higher rank) of each upward arc, ascending within a node; the first is the node's parent
        in the elimination tree.
    """

    rank: np.ndarray
    node: np.ndarray
    up_ptr: np.ndarray
    up_idx: np.ndarray

    @property
    def n_arcs(self) -> int:
        return len(self.up_idx)

    @property
    def nbytes(self) -> int:
        return self.rank.nbytes + self.node.nbytes + self.up_ptr.nbytes + self.up_idx.nbytes

    @functools.cached_property
    def height(self) -> int:
        """Height of the elimination tree: the longest chain a query walks (nodes)."""
        from routing._hierarchy_kernels import _height

        return int(_height(self.up_ptr, self.up_idx))


def build_order(n: int, src: np.ndarray, dst: np.ndarray) -> Order:
    """Order the ``n`` nodes of a road network by nested dissection and build the chordal supergraph.

    Parameters
    ----------
    n : int
        Number of nodes.
    src, dst : ndarray of int, shape (m,)
        Directed edges (direction and parallel edges do not matter here: the order is metric- and
        direction-independent).

    Returns
    -------
    Order
        5.7 s at 1.1M nodes (METIS, then symbolic elimination; ``bench/bench_statewide.py``): 6.7M
        upward arcs, 43 MB.

    Raises
    ------
    InvalidInput
        ``src`` and ``dst`` of different lengths, or a node outside ``0..n-1``.
    """
    import pymetis  # imported here: only networks that use a hierarchy pay for loading it

    src = np.asarray(src, dtype=np.int64).ravel()
    dst = np.asarray(dst, dtype=np.int64).ravel()
    if len(src) != len(dst):
        raise InvalidInput(f"src and dst differ in length ({len(src)} and {len(dst)})", field="edges")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise InvalidInput(f"an edge names a node outside 0..{n - 1}", field="edges")
    keep = src != dst
    a = np.concatenate([src[keep], dst[keep]])
    b = np.concatenate([dst[keep], src[keep]])
    sym = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    sym.sum_duplicates()
    if n <= 1 or sym.nnz == 0:
        perm = np.arange(n, dtype=np.int64)
    else:
        # A fixed seed: the same network always gets the same order (and the same last bits of a time).
        adjacency = pymetis.CSRAdjacency(sym.indptr.astype(np.int64), sym.indices.astype(np.int64))
        perm_raw, _ = pymetis.nested_dissection(adjacency, options=pymetis.Options(seed=1))
        perm = np.asarray(perm_raw, dtype=np.int64)  # perm[r] = the node eliminated r-th
    rank = np.empty(n, dtype=np.int64)
    rank[perm] = np.arange(n)
    # The graph in rank space, each undirected edge once, from its lower end.
    coo = sym.tocoo()
    ra, rb = rank[coo.row], rank[coo.col]
    low = ra < rb
    lo, hi = ra[low], rb[low]
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    orig_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(orig_ptr, lo + 1, 1)
    orig_ptr = np.cumsum(orig_ptr)
    from routing._hierarchy_kernels import _eliminate

    up_ptr, up_idx = _eliminate(n, orig_ptr, hi.astype(np.int32))
    return Order(rank=rank.astype(np.int32), node=perm.astype(np.int32), up_ptr=up_ptr, up_idx=up_idx)


class Metric:
    """A customized CCH: exact times (s) on every upward arc, and the road metres of their paths.

    Attributes
    ----------
    order : Order
    fw, bw : ndarray of float64, shape (n_arcs,)
        Seconds from an arc's tail to its head (``fw``) and back (``bw``); inf where no path.
    fw_m, bw_m : ndarray of float64, shape (n_arcs,)
        Road metres of the path each time belongs to (float64, so that a distance matches the
        Dijkstra tree's to a micrometre, as the tests compare them).

    Queries share one workspace (a few arrays of the network's size, allocated once), under a lock.
    """

    def __init__(self, order: Order, fw: np.ndarray, bw: np.ndarray, fw_m: np.ndarray, bw_m: np.ndarray) -> None:
        self.order, self.fw, self.bw, self.fw_m, self.bw_m = order, fw, bw, fw_m, bw_m
        self._lock = threading.Lock()
        self._work: _Workspace | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the arc arrays (the shared :class:`Order` not included)."""
        return self.fw.nbytes + self.bw.nbytes + self.fw_m.nbytes + self.bw_m.nbytes

    def node_times(self, sources: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`many_to_few` between single nodes, unchecked (the ETA engine's own, called per call):
        ``sources`` (k,) and ``targets`` (t,) valid network indices; returns two (k, t) arrays."""
        rank = self.order.rank
        rs = rank[sources].astype(np.int64).reshape(-1, 1)
        rt = rank[targets].astype(np.int64).reshape(-1, 1)
        return self._run(rs, np.zeros(rs.shape), rt, np.zeros(rt.shape))

    def many_to_few(self, sources: np.ndarray, source_offsets: np.ndarray | float, targets: np.ndarray,
                    target_offsets: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Seconds and road metres from each source to each target, every one a set of network nodes.

        Parameters
        ----------
        sources : ndarray of int, shape (k, s)
            Per source, up to ``s`` network nodes it may start from (``-1`` pads), with
            ``source_offsets`` (k, s), or one number for all: seconds from the source to each.
        targets : ndarray of int, shape (t, e)
            Per target, up to ``e`` network nodes it is reached from (``-1`` pads), with
            ``target_offsets`` (t, e), or one number for all: seconds from each to the target.

        Returns
        -------
        times : ndarray of float64, shape (k, t)
            min over the source's nodes a and the target's nodes b of offset_a + time(a -> b) + offset_b;
            inf where no path.
        metres : ndarray of float64, shape (k, t)
            Road metres from node a to node b along the path of that time (offsets not included).

        Raises
        ------
        InvalidInput
            (a ValueError) ``sources`` or ``targets`` not 2-D, or a node outside ``0..n-1`` (``-1`` pads).
        """
        o = self.order
        n = len(o.rank)
        src = np.asarray(sources, dtype=np.int64)
        tgt = np.asarray(targets, dtype=np.int64)
        for name, a in (("sources", src), ("targets", tgt)):
            if a.ndim != 2:
                raise InvalidInput(f"{name} must be 2-D, one row of nodes per {name[:-1]} (got shape {a.shape}; "
                                   f"single nodes: {name}[:, None])", field=name)
            if a.size and (a.max() >= n or a.min() < -1):
                raise InvalidInput(f"{name}: node index outside 0..{n - 1}", field=name)
        rs = np.where(src >= 0, o.rank[np.maximum(src, 0)], _NO).astype(np.int64)
        rt = np.where(tgt >= 0, o.rank[np.maximum(tgt, 0)], _NO).astype(np.int64)
        s_off = np.ascontiguousarray(np.broadcast_to(np.asarray(source_offsets, dtype=np.float64), src.shape))
        t_off = np.ascontiguousarray(np.broadcast_to(np.asarray(target_offsets, dtype=np.float64), tgt.shape))
        return self._run(rs, s_off, rt, t_off)

    def _run(self, rs: np.ndarray, s_off: np.ndarray, rt: np.ndarray, t_off: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        from routing._hierarchy_kernels import _many_to_few

        o = self.order
        n = len(o.rank)
        with self._lock:
            work = self._work
            if work is None or work.db.shape[0] < len(rt):
                work = self._work = _Workspace(n, max(len(rt), 2))
            times, metres, work.tag = _many_to_few(
                o.up_ptr, o.up_idx, self.fw, self.bw, self.fw_m, self.bw_m, rs, s_off, rt, t_off, work.stamp,
                work.tag, o.height, work.db, work.dbm, work.df,
                work.dfm)
        return times, metres


class _Workspace:
    """Arrays a query reuses (filling them per query would cost more than the query at a million nodes).
    Every query leaves ``db`` and ``df`` at inf again; ``stamp`` tags stay unique through ``tag``."""

    def __init__(self, n: int, n_targets: int) -> None:
        self.stamp = np.full(n, -1, dtype=np.int64)
        self.tag = 0
        self.db = np.full((n_targets, n), np.inf)
        self.dbm = np.zeros((n_targets, n))
        self.df = np.full(n, np.inf)
        self.dfm = np.zeros(n)


def customize(order: Order, src: np.ndarray, dst: np.ndarray, time_s: np.ndarray, length_m: np.ndarray) -> Metric:
    """Give every upward arc of ``order`` its exact travel time in both directions.

    Parameters
    ----------
    order : Order
        From :func:`build_order` on the same nodes.
    src, dst : ndarray of int, shape (m,)
        Directed edges (network indices).
    time_s, length_m : ndarray of float, shape (m,)
        Each edge's travel time (s) and length (m); of parallel edges the fastest counts.

    Returns
    -------
    Metric
        0.7 s at 1.1M nodes (one pass over the lower triangles); 32 bytes an upward arc (204 MB there).

    Raises
    ------
    InvalidInput
        Arrays of different lengths, a node outside the order, or a time or length that is negative or
        not finite (a negative time would make ETAs negative; a NaN would compare as no path).
    """
    from routing._hierarchy_kernels import _customize

    src = np.asarray(src, dtype=np.int64).ravel()
    dst = np.asarray(dst, dtype=np.int64).ravel()
    time_s = np.asarray(time_s, dtype=np.float64).ravel()
    length_m = np.asarray(length_m, dtype=np.float64).ravel()
    n = len(order.rank)
    if not len(src) == len(dst) == len(time_s) == len(length_m):
        raise InvalidInput(f"src, dst, time_s and length_m differ in length ({len(src)}, {len(dst)}, "
                           f"{len(time_s)}, {len(length_m)})", field="edges")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise InvalidInput(f"an edge names a node outside the order's 0..{n - 1}", field="edges")
    for name, a in (("time_s", time_s), ("length_m", length_m)):
        if not np.all(np.isfinite(a) & (a >= 0)):
            raise InvalidInput(f"{name} must be finite and non-negative", field=name)
    r = order.rank.astype(np.int64)
    fw, bw, fw_m, bw_m = _customize(order.up_ptr, order.up_idx, r[src], r[dst], time_s, length_m)
    return Metric(order, fw, bw, fw_m, bw_m)
