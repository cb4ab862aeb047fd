"""The compiled loops of :mod:`routing.hierarchy` (numba; imported on first use, not with ``routing``).

Ranks, not network indices, throughout: node ``r`` is the ``r``-th contracted, and every upward arc
goes from a lower to a higher rank.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _gather(src: np.ndarray, lo: int, hi: int, v: int, mark: np.ndarray, buf: np.ndarray, k: int) -> int:
    """Append ``src[lo:hi]`` to ``buf[:k]``, skipping nodes already marked for ``v``; returns the new k."""
    for p in range(lo, hi):
        w = src[p]
        if mark[w] != v:
            mark[w] = v
            buf[k] = w
            k += 1
    return k


@njit(cache=True)
def _eliminate(n: int, orig_ptr: np.ndarray, orig_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symbolic elimination: up(v) = original upper neighbours of v, plus up(c) minus v for every child
    c of v in the elimination tree (parent = lowest upper neighbour), sorted ascending."""
    up_ptr = np.zeros(n + 1, dtype=np.int64)
    cap = max(16, 4 * len(orig_hi))
    up_idx = np.empty(cap, dtype=np.int32)
    child_head = np.full(n, -1, dtype=np.int64)
    child_next = np.full(n, -1, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    buf = np.empty(n, dtype=np.int32)
    used = 0
    for v in range(n):
        k = _gather(orig_hi, orig_ptr[v], orig_ptr[v + 1], v, mark, buf, 0)
        c = child_head[v]
        while c != -1:  # up(c) without its first entry, which is v
            k = _gather(up_idx, up_ptr[c] + 1, up_ptr[c + 1], v, mark, buf, k)
            c = child_next[c]
        row = np.sort(buf[:k])
        if used + k > cap:
            cap = max(2 * cap, used + k)
            grown = np.empty(cap, dtype=np.int32)
            grown[:used] = up_idx[:used]
            up_idx = grown
        up_idx[used:used + k] = row
        used += k
        up_ptr[v + 1] = used
        if k:
            parent = row[0]
            child_next[v] = child_head[parent]
            child_head[parent] = v
    return up_ptr, up_idx[:used].copy()


@njit(cache=True)
def _height(up_ptr: np.ndarray, up_idx: np.ndarray) -> int:
    n = len(up_ptr) - 1
    depth = np.zeros(n, dtype=np.int64)
    best = 0
    for v in range(n - 1, -1, -1):  # parents have higher ranks: done before their children
        if up_ptr[v + 1] > up_ptr[v]:
            depth[v] = depth[up_idx[up_ptr[v]]] + 1
        if depth[v] > best:
            best = depth[v]
    return best + 1 if n else 0


@njit(cache=True)
def _arc(up_ptr: np.ndarray, up_idx: np.ndarray, lo: int, hi: int) -> int:
    a, b = up_ptr[lo], up_ptr[lo + 1]
    while a < b:
        mid = (a + b) // 2
        if up_idx[mid] < hi:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True)
def _customize(up_ptr: np.ndarray, up_idx: np.ndarray, rs: np.ndarray, rd: np.ndarray, t: np.ndarray,
               length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(up_ptr) - 1
    m = len(up_idx)
    fw = np.full(m, np.inf)
    bw = np.full(m, np.inf)
    fw_m = np.full(m, np.inf)
    bw_m = np.full(m, np.inf)
    for k in range(len(rs)):  # the original edges
        a, b = rs[k], rd[k]
        if a == b:
            continue
        if a < b:
            e = _arc(up_ptr, up_idx, a, b)
            if t[k] < fw[e]:
                fw[e] = t[k]
                fw_m[e] = length[k]
        else:
            e = _arc(up_ptr, up_idx, b, a)
            if t[k] < bw[e]:
                bw[e] = t[k]
                bw_m[e] = length[k]
    # Lower triangles, lowest corner first: when x is processed its arcs are final.
    for x in range(n):
        lo_x, hi_x = up_ptr[x], up_ptr[x + 1]
        for i in range(lo_x, hi_x):
            u = up_idx[i]
            u_to_x, x_to_u = bw[i], fw[i]
            if u_to_x == np.inf and x_to_u == np.inf:
                continue
            p = up_ptr[u]  # up(u) holds every later up(x) entry (chordality): walk both in step
            for j in range(i + 1, hi_x):
                w = up_idx[j]
                while up_idx[p] < w:
                    p += 1
                via = u_to_x + fw[j]  # u -> x -> w
                if via < fw[p]:
                    fw[p] = via
                    fw_m[p] = bw_m[i] + fw_m[j]
                via = bw[j] + x_to_u  # w -> x -> u
                if via < bw[p]:
                    bw[p] = via
                    bw_m[p] = bw_m[j] + fw_m[i]
    return fw, bw, fw_m, bw_m


@njit(cache=True)
def _chain(up_ptr: np.ndarray, up_idx: np.ndarray, seeds: np.ndarray, stamp: np.ndarray, tag: int,
           out: np.ndarray) -> int:
    """The union of the seeds' ancestor chains, ascending (ranks), into ``out``; returns its size."""
    k = 0
    for s in seeds:
        v = s
        while v != -1 and stamp[v] != tag:
            stamp[v] = tag
            out[k] = v
            k += 1
            v = up_idx[up_ptr[v]] if up_ptr[v + 1] > up_ptr[v] else -1
    out[:k].sort()
    return k


@njit(cache=True)
def _walk(up_ptr: np.ndarray, up_idx: np.ndarray, w: np.ndarray, w_m: np.ndarray, chain: np.ndarray, k: int,
          d: np.ndarray, dm: np.ndarray) -> None:
    """Relax the upward arcs of the chain's nodes, lowest rank first: ``d`` along ``w``."""
    for q in range(k):
        v = chain[q]
        dv = d[v]
        if dv == np.inf:
            continue
        for e in range(up_ptr[v], up_ptr[v + 1]):
            x = up_idx[e]
            if dv + w[e] < d[x]:
                d[x] = dv + w[e]
                dm[x] = dm[v] + w_m[e]


@njit(cache=True)
def _many_to_few(up_ptr: np.ndarray, up_idx: np.ndarray, fw: np.ndarray, bw: np.ndarray, fw_m: np.ndarray,
                 bw_m: np.ndarray, sources: np.ndarray, source_off: np.ndarray, targets: np.ndarray,
                 target_off: np.ndarray, stamp: np.ndarray, tag: int, height: int, db: np.ndarray,
                 dbm: np.ndarray, df: np.ndarray, dfm: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    n_t = targets.shape[0]
    k_src = sources.shape[0]
    times = np.full((k_src, n_t), np.inf)
    metres = np.full((k_src, n_t), np.inf)
    # Backward walks, one per target: db[j, v] = seconds from v to target j over upward arcs.
    t_chain_len = np.zeros(n_t, dtype=np.int64)
    t_chains = np.empty((n_t, height * max(targets.shape[1], 1)), dtype=np.int64)
    for j in range(n_t):
        tag += 1
        seeds = targets[j][targets[j] >= 0]
        k = _chain(up_ptr, up_idx, seeds, stamp, tag, t_chains[j])
        t_chain_len[j] = k
        for i in range(targets.shape[1]):
            v = targets[j, i]
            if v >= 0 and target_off[j, i] < db[j, v]:
                db[j, v] = target_off[j, i]
                dbm[j, v] = 0.0
        _walk(up_ptr, up_idx, bw, bw_m, t_chains[j], k, db[j], dbm[j])
    s_chain = np.empty(height * max(sources.shape[1], 1), dtype=np.int64)
    for s in range(k_src):
        tag += 1
        k = _chain(up_ptr, up_idx, sources[s][sources[s] >= 0], stamp, tag, s_chain)
        for i in range(sources.shape[1]):
            v = sources[s, i]
            if v >= 0 and source_off[s, i] < df[v]:
                df[v] = source_off[s, i]
                dfm[v] = 0.0
        _walk(up_ptr, up_idx, fw, fw_m, s_chain, k, df, dfm)
        for j in range(n_t):  # the path meets at the best common ancestor
            best = np.inf
            best_m = np.inf
            for q in range(k):
                v = s_chain[q]
                total = df[v] + db[j, v]
                if total < best:
                    best = total
                    best_m = dfm[v] + dbm[j, v]
            times[s, j] = best
            metres[s, j] = best_m
        for q in range(k):
            df[s_chain[q]] = np.inf
    for j in range(n_t):
        for q in range(t_chain_len[j]):
            db[j, t_chains[j, q]] = np.inf
    return times, metres, tag
