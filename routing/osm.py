"""OpenStreetMap sources: reading OSM XML and PBF, the drive filter, and the rules for merged edges.

An extract is read into plain ``(nodes, ways)`` by :func:`read_osm` (XML, optionally bz2-compressed, with
``xml.etree`` iterparse; PBF with pyosmium, an optional dependency). The drive filter
(:class:`DriveFilter`, configured in ``data/speeds.toml`` ``[osm_drive_filter]``) then decides, per way
and from the way's own tags, whether a car may use it and in which direction. Only then is the graph
simplified (osmnx's ``simplify_graph``), so a street that becomes a footway mid-block, or a closed or
reversible way, can never be merged into a drivable edge and filtered, or not, by whichever class
happened to come first in a merged list.

Simplification merges the segments between junctions into one edge, and osmnx stores an attribute whose
values differ along that edge as a list. :func:`resolve_edge_attributes` turns those lists back into one
value with one rule per attribute, the same for every graph source (OSM XML, PBF, GraphML, online):

- ``highway``: the most important class (the order of ``drivable``: motorway > motorway_link > trunk ...);
- ``maxspeed``: the lowest posted speed (units parsed by :func:`routing.speeds.parse_maxspeed`);
- ``tunnel``: true if any part is a tunnel;
- ``name``: the first.

Every step keeps file order and never iterates over a set of strings, so the network does not depend on
``PYTHONHASHSEED``.
"""

from __future__ import annotations

import bz2
import functools
import hashlib
import math
import os
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routing.config import project_data_path
from routing.errors import DataMissing, InvalidInput
from routing.speeds import parse_maxspeed

if TYPE_CHECKING:
    import networkx as nx

FILTER_TABLE = "osm_drive_filter"

# From the most specific to the most general: the first one a way has decides (OSM access hierarchy).
ACCESS_KEYS = ("motorcar", "motor_vehicle", "vehicle", "access")
_YES = {"yes", "true", "1"}
_REVERSE = {"-1", "reverse"}
_NOT_TUNNEL = {"", "no", "false", "0"}

# Suffix -> reader. ``.osm.bz2`` and friends are matched on the full lower-cased name.
XML_SUFFIXES = (".osm", ".xml", ".osm.bz2", ".xml.bz2")
PBF_SUFFIXES = (".osm.pbf", ".pbf")


@dataclass(frozen=True)
class DriveFilter:
    """Which OSM ways a car may use (see ``[osm_drive_filter]`` in ``data/speeds.toml``).

    Attributes
    ----------
    drivable
        Road classes a car drives, most important first (also the order of :func:`most_important_class`).
    excluded
        Classes left out on purpose; sources already filtered by osmnx drop edges of these classes.
    closed_access
        Values of the access keys (:data:`ACCESS_KEYS`) that close a way to a car.
    digest
        Hash of the three lists, for cache keys.
    """

    drivable: tuple[str, ...]
    excluded: tuple[str, ...]
    closed_access: frozenset[str]
    digest: str

    def way_direction(self, tags: dict[str, str]) -> int:
        """How a car may use a way: ``0`` not at all, ``1`` both ways, ``2`` forward only, ``-2`` backward only.

        Parameters
        ----------
        tags
            The way's OSM tags.
        """
        if tags.get("highway") not in self.drivable or tags.get("area") in _YES:
            return 0
        for key in ACCESS_KEYS:
            value = tags.get(key)
            if value is not None:
                # "no;destination" style multi-values: closed only if every part closes it
                parts = [p.strip() for p in value.lower().split(";")]
                if all(p in self.closed_access for p in parts):
                    return 0
                break
        oneway = tags.get("oneway", "").strip().lower()
        if oneway == "reversible":  # direction changes by time of day: no safe assumption either way
            return 0
        if oneway in _REVERSE:
            return -2
        if oneway in _YES:
            return 2
        if oneway != "no" and tags.get("junction") in ("roundabout", "circular"):
            return 2
        return 1

    def rank(self, highway: Any) -> int:
        """Position of a class in the importance order; unknown classes come after every known one."""
        try:
            return self.drivable.index(str(highway))
        except ValueError:
            return len(self.drivable)

    def is_excluded(self, highway: Any) -> bool:
        """Whether an edge's class (or any class of a merged edge) is one a car may not use."""
        if isinstance(highway, (list, tuple)):
            return any(self.is_excluded(h) for h in highway)
        return str(highway) in self.excluded


def load_drive_filter(speeds_path: str | os.PathLike[str] | None = None) -> DriveFilter:
    """Read ``[osm_drive_filter]`` from a speeds TOML, falling back to ``data/speeds.toml``'s table.

    Raises
    ------
    InvalidInput
        The table is malformed (a list missing, a class both drivable and excluded).
    """
    table = None
    if speeds_path is not None:
        try:
            table = tomllib.loads(Path(speeds_path).read_text(encoding="utf-8")).get(FILTER_TABLE)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            table = None  # load_speeds reports a bad speeds file with a better message
    if table is None:
        return _default_drive_filter()
    return _drive_filter_from_table(table, str(speeds_path))


@functools.cache
def _default_drive_filter() -> DriveFilter:
    path = project_data_path("speeds.toml")
    table = tomllib.loads(path.read_text(encoding="utf-8")).get(FILTER_TABLE)
    if table is None:
        raise InvalidInput(f"{path}: missing table [{FILTER_TABLE}]")
    return _drive_filter_from_table(table, str(path))


def _drive_filter_from_table(table: Any, where: str) -> DriveFilter:
    lists = {}
    for name in ("drivable", "excluded", "closed_access"):
        value = table.get(name) if isinstance(table, dict) else None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"{where}: [{FILTER_TABLE}] {name} must be a list of strings")
        lists[name] = tuple(value)
    both = sorted(set(lists["drivable"]) & set(lists["excluded"]))
    if both:
        raise InvalidInput(f"{where}: [{FILTER_TABLE}] classes both drivable and excluded: {', '.join(both)}")
    digest = hashlib.sha256(repr(sorted(lists.items())).encode()).hexdigest()[:16]
    return DriveFilter(lists["drivable"], lists["excluded"], frozenset(lists["closed_access"]), digest)


# --------------------------------------------------------------------------- list rules
def most_important_class(values: Any, drive: DriveFilter | None = None) -> str:
    """``highway`` rule: the most important class of a merged edge (ties keep the first)."""
    drive = drive or _default_drive_filter()
    items = [str(v) for v in _as_list(values)] or ["other"]
    return min(items, key=drive.rank)  # min() keeps the first of equal ranks


def lowest_maxspeed(values: Any) -> str | None:
    """``maxspeed`` rule: the value with the lowest posted speed, as its OSM text (None if none parses)."""
    best, best_mph = None, math.inf
    for value in _as_list(values):
        mph = parse_maxspeed(value, bare_unit="kph")
        if math.isfinite(mph) and mph < best_mph:
            best, best_mph = value, mph
    return best


def any_tunnel(values: Any) -> bool:
    """``tunnel`` rule: true if any part is a tunnel (``yes``, ``building_passage``, ``culvert``, ...)."""
    for value in _as_list(values):
        if isinstance(value, (bool, np.bool_)):
            if value:
                return True
        elif value is not None and str(value).strip().lower() not in _NOT_TUNNEL:
            return True
    return False


def first_value(values: Any) -> Any:
    """``name`` rule (and any attribute only shown to people): the first value."""
    items = _as_list(values)
    return items[0] if items else None


def resolve_edge_attributes(data: dict[str, Any], drive: DriveFilter | None = None) -> dict[str, Any]:
    """One value per attribute an engine reads, whatever the source stored (a value or a list).

    Parameters
    ----------
    data
        An edge's attributes (osmnx style). Not modified.
    drive
        Gives the class order for ``highway`` (default: ``data/speeds.toml``).

    Returns
    -------
    dict
        ``highway`` (str), ``maxspeed`` (OSM text or None), ``tunnel`` (bool), ``name`` (or None).
    """
    return {
        "highway": most_important_class(data.get("highway", "other"), drive),
        "maxspeed": lowest_maxspeed(data.get("maxspeed")),
        "tunnel": any_tunnel(data.get("tunnel")),
        "name": first_value(data.get("name")),
    }


def _as_list(values: Any) -> list[Any]:
    if values is None:
        return []
    if isinstance(values, (list, tuple)):
        return [v for v in values if v is not None]
    if isinstance(values, float) and math.isnan(values):
        return []
    return [values]


# --------------------------------------------------------------------------- reading
Way = tuple[int, list[int], dict[str, str]]


def file_kind(path: Path) -> str:
    """``"osm"`` (XML), ``"pbf"`` or ``"graphml"`` from a file name; InvalidInput for anything else."""
    name = path.name.lower()
    if name.endswith(PBF_SUFFIXES):
        return "pbf"
    if name.endswith(XML_SUFFIXES):
        return "osm"
    if name.endswith(".graphml"):
        return "graphml"
    raise InvalidInput(f"unknown network file type {path.name!r}: expected .osm, .xml, .osm.bz2, .xml.bz2, "
                       ".osm.pbf, .pbf or .graphml")


def read_osm(path: Path, drive: DriveFilter) -> tuple[dict[int, tuple[float, float]], list[Way], set[int]]:
    """Nodes (id -> (lon, lat)), the ways a car may use (in file order) and the nodes of the others.

    The third item holds every node of a ``highway`` way the drive filter left out (a footway, a closed
    or reversible street). Simplification keeps those of them that lie on a drivable way: where a path
    or a closed street meets a street stays a node, as it would be had the way been driven, instead of
    disappearing into an edge drawn straight past it. (A class change mid-block between two drivable
    ways is not such a node: it merges as osmnx merges it.)

    Raises
    ------
    InvalidInput
        The file is empty, truncated, not OSM, or has no drivable way.
    DataMissing
        A PBF file and pyosmium is not installed.
    """
    kind = file_kind(path)
    left_out: set[int] = set()
    if kind == "pbf":
        nodes, ways = _read_pbf(path, drive, left_out)
    elif kind == "osm":
        nodes, ways = _read_xml(path, drive, left_out)
    else:
        raise InvalidInput(f"{path.name}: not an OSM XML or PBF file")
    if not ways:
        raise InvalidInput(f"{path}: no drivable road in the file")
    return nodes, ways, left_out


def _read_xml(path: Path, drive: DriveFilter, left_out: set[int]
              ) -> tuple[dict[int, tuple[float, float]], list[Way]]:
    nodes: dict[int, tuple[float, float]] = {}
    ways: list[Way] = []
    opener = bz2.open if path.name.lower().endswith(".bz2") else open
    try:
        with opener(path, "rb") as fh:
            context = ET.iterparse(fh, events=("start", "end"))
            _, root = next(context)
            if root.tag != "osm":
                raise InvalidInput(f"{path}: not an OSM XML file (root element <{root.tag}>, expected <osm>)")
            for event, elem in context:
                if event != "end":
                    continue
                if elem.tag == "node":
                    if elem.get("visible") != "false":
                        nodes[int(elem.get("id"))] = (float(elem.get("lon")), float(elem.get("lat")))
                elif elem.tag == "way":
                    if elem.get("visible") != "false":
                        tags = {t.get("k"): t.get("v") for t in elem.iter("tag")}
                        if "highway" in tags:
                            refs = [int(nd.get("ref")) for nd in elem.iter("nd")]
                            if drive.way_direction(tags):
                                ways.append((int(elem.get("id")), refs, tags))
                            else:
                                left_out.update(refs)
                elif elem.tag != "relation":
                    continue  # children (nd, tag, member) are read with their parent
                root.clear()  # elements already read: keeps memory flat on a city-size file
    except InvalidInput:
        raise
    except ET.ParseError as exc:
        raise InvalidInput(f"{path}: not a readable OSM XML file ({one_line(exc)})") from None
    except StopIteration:
        raise InvalidInput(f"{path}: empty file") from None
    except (EOFError, OSError) as exc:  # truncated or corrupt bz2
        raise InvalidInput(f"{path}: cannot read the file ({one_line(exc)})") from None
    except (TypeError, ValueError) as exc:  # a node or way without a numeric id / coordinate
        raise InvalidInput(f"{path}: malformed OSM element ({one_line(exc)})") from None
    return nodes, ways


def _read_pbf(path: Path, drive: DriveFilter, left_out: set[int]
              ) -> tuple[dict[int, tuple[float, float]], list[Way]]:
    try:
        import osmium
    except ImportError:
        raise DataMissing("reading .pbf needs pyosmium: pip install osmium (or convert the file to .osm XML)"
                          ) from None
    nodes: dict[int, tuple[float, float]] = {}
    ways: list[Way] = []
    try:
        for obj in osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY):
            if isinstance(obj, osmium.osm.Node):
                if obj.location.valid():
                    nodes[obj.id] = (obj.location.lon, obj.location.lat)
            elif isinstance(obj, osmium.osm.Way):
                tags = {tag.k: tag.v for tag in obj.tags}
                if "highway" in tags:
                    refs = [n.ref for n in obj.nodes]
                    if drive.way_direction(tags):
                        ways.append((obj.id, refs, tags))
                    else:
                        left_out.update(refs)
    except RuntimeError as exc:  # libosmium's errors: not PBF, truncated, bad blob
        raise InvalidInput(f"{path}: not a readable OSM PBF file ({one_line(exc)})") from None
    return nodes, ways


def one_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (the CLI's error contract is one line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- graph
_EDGE_TAGS = ("maxspeed", "name", "tunnel")


def graph_from_osm_file(path: Path, drive: DriveFilter | None = None) -> nx.MultiDiGraph:
    """A simplified osmnx-style ``MultiDiGraph`` of the drivable ways of an OSM XML or PBF file.

    Edges carry ``osmid`` (way id), ``highway``, ``oneway``, ``reversed``, ``length`` (m, great-circle as
    osmnx computes it) and, when tagged, ``maxspeed``, ``name`` and ``tunnel``; merged edges get single
    values by the rules of :func:`resolve_edge_attributes`.
    """
    drive = drive or _default_drive_filter()
    nodes, ways, left_out = read_osm(path, drive)
    try:
        graph = build_graph(nodes, ways, drive, keep_nodes=left_out)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    return simplify(graph, drive)


def build_graph(nodes: dict[int, tuple[float, float]], ways: Sequence[Way], drive: DriveFilter, *,
                keep_nodes: Collection[int] = ()) -> nx.MultiDiGraph:
    """The unsimplified directed graph: one edge per segment and allowed direction.

    Nodes in ``keep_nodes`` get a ``keep_node`` attribute, so that :func:`simplify` keeps them.
    """
    import networkx as nx
    from osmnx.distance import great_circle

    graph = nx.MultiDiGraph(crs="epsg:4326")
    for way_id, refs, tags in ways:
        direction = drive.way_direction(tags)
        if direction == 0:
            continue
        # Only segments whose both ends are in the file: an extract may cut a way at its edge.
        pairs = [(a, b) for a, b in zip(refs[:-1], refs[1:], strict=True) if a != b and a in nodes and b in nodes]
        if not pairs:
            continue
        lon1, lat1 = np.array([nodes[a] for a, _ in pairs]).T
        lon2, lat2 = np.array([nodes[b] for _, b in pairs]).T
        lengths = np.atleast_1d(great_circle(lat1, lon1, lat2, lon2))
        attrs = {"osmid": way_id, "highway": tags["highway"], "oneway": abs(direction) == 2}
        attrs.update({k: tags[k] for k in _EDGE_TAGS if k in tags})
        for (a, b), length in zip(pairs, lengths.tolist(), strict=True):
            for node in (a, b):
                if node not in graph:
                    graph.add_node(node, x=nodes[node][0], y=nodes[node][1])
                    if node in keep_nodes:
                        graph.nodes[node]["keep_node"] = True
            if direction in (1, 2):
                graph.add_edge(a, b, **attrs, reversed=False, length=length)
            if direction in (1, -2):
                graph.add_edge(b, a, **attrs, reversed=True, length=length)
    if graph.number_of_edges() == 0:
        raise InvalidInput("no drivable road segment has both its nodes in the file")
    return graph


def simplify(graph: nx.MultiDiGraph, drive: DriveFilter) -> nx.MultiDiGraph:
    """osmnx simplification with this module's rules as the merge functions (no set-ordered lists)."""
    import osmnx as ox

    aggs = {
        "length": sum,
        "highway": functools.partial(most_important_class, drive=drive),
        "maxspeed": lowest_maxspeed,
        "tunnel": any_tunnel,
        "name": first_value,
        # ints and bools: osmnx's unique-values list would do, but first-appearance order is stable
        "osmid": _unique_in_order,
        "oneway": _unique_in_order,
        "reversed": _unique_in_order,
    }
    simple = ox.simplify_graph(graph, node_attrs_include=["keep_node"], edge_attr_aggs=aggs)
    for _, data in simple.nodes(data=True):
        data.pop("keep_node", None)  # only a mark for simplification
    return simple


def _unique_in_order(values: Iterable[Any]) -> Any:
    seen = list(dict.fromkeys(values))
    return seen[0] if len(seen) == 1 else seen
