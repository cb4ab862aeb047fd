"""Benchmark: loading a road network from each source format at statewide size, and from the cache.

Builds networks by tiling Boston's export ``k x k`` times (``bench_statewide.tiled_network``), writes
each as an osmnx CSV export, an OSM PBF extract and an osmnx GraphML file, and times
``load_network(source=...)`` with the cache off (a first load), then the prepared-network cache. Prints
seconds and the loading process's peak memory for each. GraphML goes through networkx and an XML parser
(osmnx's own reader) and is measured at the smaller sizes only unless ``--graphml-tiles`` says more.

Run: ``python bench/bench_loaders.py [--tiles 3 10] [--graphml-tiles 3]`` (uses $CRISIS_DISPATCH_DATA or
../shared/data). Each load runs in a fresh child process, so its memory is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import data_dir  # noqa: E402
from bench_statewide import tiled_network  # noqa: E402

from routing.network import RoadNetwork, clear_memory_cache, load_network  # noqa: E402


def write_csv_export(net: RoadNetwork, directory: Path) -> Path:
    """The network as an osmnx CSV export (``boston_nodes.csv`` / ``boston_edges.csv``); speeds by class."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"idx": np.arange(net.n_nodes), "osm_idx": net.osm_ids, "lat": net.lat, "lon": net.lon}).to_csv(
        directory / "boston_nodes.csv", index=False)
    src, dst = net.edges
    pd.DataFrame({"src": src, "dst": dst, "length": net.edge_length_m, "highway": net.edge_highway,
                  "maxspeed": np.nan}).to_csv(directory / "boston_edges.csv", index=False)
    return directory


def write_pbf(net: RoadNetwork, path: Path) -> Path:
    """The network as an OSM PBF extract: one two-node one-way way per directed edge."""
    import osmium

    src, dst = net.edges
    highway = net.edge_highway
    with osmium.SimpleWriter(str(path)) as writer:
        for i in range(net.n_nodes):
            writer.add_node(osmium.osm.mutable.Node(id=i + 1, location=(float(net.lon[i]), float(net.lat[i]))))
        for e, (u, v) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
            writer.add_way(osmium.osm.mutable.Way(id=e + 1, nodes=[u + 1, v + 1],
                                                  tags={"highway": str(highway[e]), "oneway": "yes"}))
    return path


def write_graphml(net: RoadNetwork, path: Path) -> Path:
    """The network as an osmnx GraphML file (``osmnx.save_graphml`` of :meth:`RoadNetwork.to_networkx`)."""
    import osmnx as ox

    ox.save_graphml(net.to_networkx(), path)
    return path


def _child(conn: Any, source: str, cache: str) -> None:
    os.environ["CRISIS_DISPATCH_CACHE"] = cache
    started = time.perf_counter()
    net = load_network(source=source, use_cache=False)
    first = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the whole child process, MB
    clear_memory_cache()  # else the next call answers from memory and writes no cache file
    load_network(source=source)  # writes the prepared-network cache
    conn.send((first, peak, net.n_nodes))


def _cached_child(conn: Any, source: str, cache: str) -> None:
    os.environ["CRISIS_DISPATCH_CACHE"] = cache
    started = time.perf_counter()
    net = load_network(source=source)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    net.snap(float(net.lat[0]), float(net.lon[0]), on="any")  # the snapping index, built on first use
    conn.send((loaded, time.perf_counter() - started))


def _run(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--graphml-tiles", type=int, nargs="*", default=[3])
    parser.add_argument("--formats", nargs="+", default=["csv", "pbf", "graphml"])
    args = parser.parse_args()
    base = load_network(data_dir())
    print("crisis-dispatch loader benchmark (first load: cache off; then the prepared-network cache)")
    for k in args.tiles:
        net = tiled_network(base, k)
        print(f"\n{k} x {k} tiles: {net.n_nodes:,} nodes, {net.n_edges:,} edges")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for fmt in args.formats:
                if fmt == "graphml" and k not in args.graphml_tiles:
                    continue
                started = time.perf_counter()
                if fmt == "csv":
                    source = write_csv_export(net, root / "boston")
                elif fmt == "pbf":
                    source = write_pbf(net, root / "net.osm.pbf")
                else:
                    source = write_graphml(net, root / "net.graphml")
                written = time.perf_counter() - started
                size = sum(f.stat().st_size for f in Path(source).rglob("*")) if Path(source).is_dir() \
                    else Path(source).stat().st_size
                cache = str(root / f"cache-{fmt}")
                first, peak, nodes = _run(_child, str(source), cache)
                loaded, index = _run(_cached_child, str(source), cache)
                print(f"  {fmt:<8} {size / 2**20:7.0f} MB (written in {written:5.1f} s): first load {first:6.1f} s, "
                      f"process peak {peak:6.0f} MB; from the cache {loaded:5.2f} s (+ snapping index on first use "
                      f"{index:4.1f} s); {nodes:,} nodes")
        del net


if __name__ == "__main__":
    main()
