"""Benchmark at the scale of the Commonwealth (issue 15), on road networks made by tiling Boston's.

Run: ``python bench/bench_statewide.py`` (uses $CRISIS_DISPATCH_DATA or ../shared/data);
``--tiles 4 10`` (the default) measures a 4 x 4 tiling (~180k nodes) and a 10 x 10 one (~1.1M nodes).

The network generator (:func:`tiled_network`) copies Boston's drive network ``k x k`` times, each copy
shifted in latitude and longitude by a little more than Boston's extent, and joins neighbouring copies
with a few two-way links (arterials between the nodes nearest the shared border), then builds the
network through the product's own topology builder (largest strongly connected component, CSR arrays).

Printed per size: load (build) time; ``suggest`` with 40 moving teams (every team moves before every
call: no cached row can help) ranked in full and with ``top=3``, and with stationary teams (cached rows);
the full-search baseline in the same process (the engine forced to search the whole network, as before
issue 15) and the ratio; an 8-min isochrone; the process's peak memory (``ru_maxrss``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402, F401  (first: it puts this checkout ahead of whatever copy pip installed)

from routing.network import RoadNetwork, _build_topology, topo_network  # noqa: E402
from routing.speeds import MPH_TO_MPS  # noqa: E402

_GAP_DEG = 0.004  # between neighbouring copies (~400 m): the links cross it
_LINKS = 6  # links per shared border, one per band along it
_LINK_MPH = 40.0


def tiled_network(base: RoadNetwork, tiles: int, *, links: int = _LINKS) -> RoadNetwork:
    """A ``tiles x tiles`` copy of ``base`` with neighbouring copies joined by ``links`` two-way links.

    Edge classes, lengths and base travel times are those of ``base`` (posted speeds are recovered from
    its base times, so the speed model gives the same times again); links are ``primary`` roads at
    40 mph. Node ``osm_ids`` are ``base id + copy * 10**12``.
    """
    t = base._t
    n = base.n_nodes
    src0 = np.repeat(np.arange(n), np.diff(t.indptr))
    dst0 = t.indices.astype(np.int64)
    classes, class_idx = t.edge_classes()
    factor = np.array([t.speeds.class_factor.get(c, t.speeds.class_factor["other"]) for c in classes])[class_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        mph0 = np.where(t.base_time_s > 0, t.length_m / t.base_time_s / factor / MPH_TO_MPS, np.nan)
    dlat = float(t.lat.max() - t.lat.min()) + _GAP_DEG
    dlon = float(t.lon.max() - t.lon.min()) + _GAP_DEG
    lat0, lon0 = float(t.lat.min()), float(t.lon.min())
    bands = np.linspace(0.0, 1.0, links + 1)
    rel_lat = (t.lat - lat0) / (dlat - _GAP_DEG)
    rel_lon = (t.lon - lon0) / (dlon - _GAP_DEG)
    # Per band, the base node farthest east / west / north / south: where a link leaves a copy.
    east, west, north, south = [], [], [], []
    for lo, hi in zip(bands[:-1], bands[1:], strict=True):
        in_lat = np.flatnonzero((rel_lat >= lo) & (rel_lat <= hi))
        in_lon = np.flatnonzero((rel_lon >= lo) & (rel_lon <= hi))
        if len(in_lat):
            east.append(int(in_lat[np.argmax(t.lon[in_lat])]))
            west.append(int(in_lat[np.argmin(t.lon[in_lat])]))
        if len(in_lon):
            north.append(int(in_lon[np.argmax(t.lat[in_lon])]))
            south.append(int(in_lon[np.argmin(t.lat[in_lon])]))
    lats, lons, ids, srcs, dsts, lengths, highways, mphs = [], [], [], [], [], [], [], []
    for i in range(tiles):
        for j in range(tiles):
            c = i * tiles + j
            lats.append(t.lat + i * dlat)
            lons.append(t.lon + j * dlon)
            ids.append(t.osm_ids + c * 10**12)
            srcs.append(src0 + c * n)
            dsts.append(dst0 + c * n)
            lengths.append(t.length_m)
            highways.append(t.highway)
            mphs.append(mph0)
    lat, lon = np.concatenate(lats), np.concatenate(lons)
    link_src, link_dst = [], []
    for i in range(tiles):
        for j in range(tiles):
            c = i * tiles + j
            if j + 1 < tiles:  # east neighbour
                for a, b in zip(east, west, strict=True):
                    link_src.append(c * n + a)
                    link_dst.append((c + 1) * n + b)
            if i + 1 < tiles:  # north neighbour
                for a, b in zip(north, south, strict=True):
                    link_src.append(c * n + a)
                    link_dst.append((c + tiles) * n + b)
    ls, ld = np.array(link_src, dtype=np.int64), np.array(link_dst, dtype=np.int64)
    link_len = _haversine_m(lat[ls], lon[ls], lat[ld], lon[ld])
    k = 2 * len(ls)
    src = np.concatenate(srcs + [ls, ld])
    dst = np.concatenate(dsts + [ld, ls])
    length = np.concatenate(lengths + [link_len, link_len])
    highway = np.concatenate([np.asarray(h, dtype=object) for h in highways] + [np.full(k, "primary", dtype=object)])
    mph = np.concatenate(mphs + [np.full(k, _LINK_MPH)])
    topo = _build_topology(np.concatenate(ids), lat, lon, src, dst, length, highway, mph, speeds=t.speeds,
                           source=f"tiled {tiles}x{tiles} of {t.source}", boundary=None)
    return topo_network(topo)


def _haversine_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000.0 * np.arcsin(np.sqrt(a))


def main() -> None:
    import argparse

    from _common import data_dir

    import routing.eta as eta
    from routing import hierarchy
    from routing.network import load_network

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[4, 10], help="copies per side (default 4 10)")
    parser.add_argument("--calls", type=int, default=60, help="calls per measurement (default 60)")
    parser.add_argument("--teams", type=int, default=40, help="teams of the non-dedicated types (default 40)")
    parser.add_argument("--spread", nargs="+", choices=["region", "state"], default=["region", "state"],
                        help="where teams and calls are: a 2 x 2-copy region around the centre (a metro "
                             "area's fleet), or anywhere on the map (default both)")
    args = parser.parse_args()
    base = load_network(data_dir())
    print(f"crisis-dispatch statewide benchmark  (Boston {base.n_nodes} nodes; ETA cache {eta.CACHE_MB:.0f} MB)")
    import time

    for k in args.tiles:
        eta.clear_caches()
        started = time.perf_counter()
        net = tiled_network(base, k)
        net._t.segments()  # the snapping index, built on first use: part of loading
        load_s = time.perf_counter() - started
        print(f"\n{k} x {k} tiles: {net.n_nodes:,} nodes, {net.n_edges:,} edges; built in {load_s:.1f} s")
        if net.n_nodes >= hierarchy.MIN_NODES:
            started = time.perf_counter()
            order = net._t.cch_order()
            order_s = time.perf_counter() - started
            started = time.perf_counter()
            metric = eta.eta_engine(net).metric(net)
            print(f"  hierarchy: order (METIS nested dissection + elimination) {order_s:.1f} s, once per network "
                  f"(written with its cache); customization {time.perf_counter() - started:.2f} s per speed "
                  f"profile; {order.n_arcs:,} upward arcs, tree height {order.height}, "
                  f"{(order.nbytes + metric.nbytes) / 2**20:.0f} MB")
        cache_round_trip(net)
        for spread in args.spread:
            measure(net, n_calls=args.calls, n_teams=args.teams, spread=spread)
        del net


def cache_round_trip(net: RoadNetwork) -> None:
    """Print what loading this network from the prepared-network cache costs: the file, the arrays, the
    network object, and the snapping index (built on first use)."""
    import tempfile
    import time
    from pathlib import Path

    from routing.network import RoadNetwork as _Net
    from routing.network import _load_cache, _save_cache

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.npz"
        _save_cache(net._t, path)
        started = time.perf_counter()
        topo = _load_cache(path, net._t.speeds)
        assert topo is not None
        loaded = _Net(topo, None, None)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        loaded._t.segments()
        index_s = time.perf_counter() - started
        print(f"  from the cache ({path.stat().st_size / 2**20:.0f} MB file): network {load_s:.2f} s, "
              f"snapping index on first use {index_s:.2f} s")


def _points(net: RoadNetwork, rng: np.random.Generator, n: int, region: bool = False
            ) -> list[tuple[float, float]]:
    pool = np.arange(net.n_nodes)
    if region:  # a window two copies wide around the centre of the map
        lat_c, lon_c = (net.lat.min() + net.lat.max()) / 2, (net.lon.min() + net.lon.max()) / 2
        pool = np.flatnonzero((np.abs(net.lat - lat_c) <= 0.17) & (np.abs(net.lon - lon_c) <= 0.19))
    at = rng.choice(pool, n)
    return list(zip((net.lat[at] + rng.normal(0, 1e-4, n)).tolist(),
                    (net.lon[at] + rng.normal(0, 1e-4, n)).tolist(), strict=True))


def measure(net: RoadNetwork, *, n_calls: int, n_teams: int, spread: str = "region") -> None:
    """Print the figures of one network (see the module docstring)."""
    import math
    import resource
    from dataclasses import replace
    from datetime import UTC, datetime

    from _common import summary, timed

    import routing.eta as eta
    from routing import hierarchy
    from routing.dispatch import suggest
    from routing.fleet import TeamState, load_fleet
    from routing.triage import Call, load_rules

    now = datetime(2025, 5, 6, 18, 0, tzinfo=UTC)
    rules = load_rules()
    kinds = [t for t in load_fleet() if not t.dedicated]
    eta.clear_caches()
    print(f" {n_teams} teams and {n_calls} calls: {spread}")
    region = spread == "region"
    rng = np.random.default_rng(15)
    teams = [TeamState.at_base(replace(kinds[i % len(kinds)], team_id=f"T-{i:03d}", service_area=(), shift=None),
                               now).moved(lat, lon, now)
             for i, (lat, lon) in enumerate(_points(net, rng, n_teams, region))]
    calls = [Call.from_dict({"call_id": f"c{i}", "lat": lat, "lon": lon, "received": now.isoformat(),
                             "mental_health": True, "safety_risk": bool(i % 3 == 0)})
             for i, (lat, lon) in enumerate(_points(net, rng, n_calls, region))]
    for c in calls[:3]:  # first use: engine tables, the connectivity check
        suggest(c, teams, network=net, rules=rules, now=now, top=3)

    seeds = iter(range(1, 1000))

    def moving(top: int | None, calls: list[Call] = calls) -> list[float]:
        it = iter(calls)
        # Fresh positions in every measurement: repeating the last one's would find them snapped already.
        jitter = np.random.default_rng(next(seeds))

        def one() -> None:
            moved = [ts.moved(ts.lat + jitter.normal(0, 3e-4), ts.lon + jitter.normal(0, 3e-4), now) for ts in teams]
            suggest(next(it), moved, network=net, rules=rules, now=now, top=top)
        return timed(one, len(calls))

    def stationary(top: int | None) -> list[float]:
        it = iter(calls)
        return timed(lambda: suggest(next(it), teams, network=net, rules=rules, now=now, top=top), len(calls))

    fast = summary(f"suggest, {n_teams} moving teams, top=3", moving(3))
    summary(f"suggest, {n_teams} moving teams, all ranked", moving(None))
    real_strong, real_hier = eta._EtaEngine.strongly_connected, eta.USE_HIERARCHY
    bounded = math.nan
    try:
        eta.USE_HIERARCHY = False  # Dijkstra searches from the call, as before the hierarchy
        if net.n_nodes >= hierarchy.MIN_NODES:  # the search bounded by the farthest team that can rank
            eta.clear_caches()
            bounded = summary("bounded Dijkstra search (no hierarchy), moving, top=3", moving(3))
        eta._EtaEngine.strongly_connected = lambda self, network: False  # type: ignore[method-assign]
        n_full = min(len(calls), 30 if net.n_nodes < 500_000 else 12)  # the full search, as before issue 15
        full = summary("baseline: full search, moving, top=3", moving(3, calls[:n_full]))
    finally:
        eta._EtaEngine.strongly_connected = real_strong  # type: ignore[method-assign]
        eta.USE_HIERARCHY = real_hier
        eta.clear_caches()
        suggest(calls[0], teams, network=net, rules=rules, now=now, top=3)  # customized again, untimed
    print(f"  {'speed-up over the full search (medians)':<46} {full / fast:9.1f} x")
    if math.isfinite(bounded):
        print(f"  {'speed-up over the bounded search (medians)':<46} {bounded / fast:9.1f} x")
    summary(f"suggest, {n_teams} stationary teams, top=3", stationary(3))
    summary(f"suggest, {n_teams} stationary teams, all ranked", stationary(None))
    origins = iter(_points(net, rng, 20, region))
    summary("isochrone, 8 min", timed(lambda: net.isochrone(*next(origins), 480), 20))
    usage = eta.cache_usage()
    print("  ETA caches: " + ", ".join(f"{c} {u['bytes'] / 2**20:.1f}/{u['limit'] / 2**20:.0f} MB"
                                       for c, u in usage.items()))
    print(f"  process peak memory (ru_maxrss)                 "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:9.0f} MB")


if __name__ == "__main__":
    main()
