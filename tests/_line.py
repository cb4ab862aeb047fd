"""A hand-built line of streets for simulation tests: A --- B --- C --- D, two-way, every edge 100 m
at 36 km/h = 10 s, with every speed factor 1 so that times can be worked out by hand."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx

from routing.network import RoadNetwork, network_from_graph
from routing.speeds import load_speeds

LAT0, LON0 = 42.35, -71.06
DLON = 100 / (111_195 * math.cos(math.radians(LAT0)))  # 100 m east
NODES = "ABCD"
EDGE_S = 10.0


def latlon(name: str) -> tuple[float, float]:
    """(lat, lon) of node ``name``."""
    return LAT0, LON0 + NODES.index(name) * DLON


def line_network() -> RoadNetwork:
    """The line as a :class:`RoadNetwork`."""
    graph = nx.MultiDiGraph()
    for k, name in enumerate(NODES):
        lat, lon = latlon(name)
        graph.add_node(100 + k, x=lon, y=lat)
    for k in range(len(NODES) - 1):
        for a, b in ((k, k + 1), (k + 1, k)):
            graph.add_edge(100 + a, 100 + b, length=100.0, highway="residential", maxspeed="36")
    flat = {h: 1.0 for h in range(24)}
    speeds = dataclasses.replace(load_speeds(), class_factor={"other": 1.0}, hour_factor=flat,
                                 mode_factor={"emergent": 1.0, "non_emergent": 1.0})
    return network_from_graph(graph, speeds=speeds, source="line")
