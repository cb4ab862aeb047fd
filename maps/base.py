"""Building blocks shared by every map: the base map, city outlines, road network, legend, panels.

Every map is a ``folium.Map`` built by :func:`new_map` and finished by :func:`finish_map`:

- online, the OpenStreetMap tiles are the base layer; offline there are no tiles, and the city's
  neighborhood outlines and road network (drawn from the engine's own data) are the base instead;
- the attribution control always credits OpenStreetMap contributors and the City of Boston;
- a title panel says what the map shows, a legend explains every symbol with its units, and a layer
  control lets the reader switch groups on and off;
- :func:`save_map` writes one HTML file; offline it is self-contained and refuses to write a page that
  would load anything remote.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import folium
import numpy as np
import shapely
from branca.element import Element, Figure, MacroElement
from folium.map import Layer
from folium.template import Template

from maps.assets import make_offline, remote_references
from routing.errors import InvalidInput
from routing.units import format_eta

if TYPE_CHECKING:
    from routing.network import RoadNetwork
    from routing.places import Places

__all__ = [
    "OSM_ATTRIBUTION",
    "BOSTON_ATTRIBUTION",
    "LegendItem",
    "LegendSection",
    "HtmlControl",
    "RoadLayer",
    "LinesLayer",
    "road_polylines",
    "polylines_by_class",
    "new_map",
    "add_city_base",
    "add_legend",
    "add_panel",
    "badge_icon",
    "finish_map",
    "save_map",
    "esc",
    "fmt_duration",
    "fmt_distance",
    "fmt_age",
    "geojson_of",
]

OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
BOSTON_ATTRIBUTION = 'Boundaries: <a href="https://data.boston.gov/">City of Boston</a>'

# Colours of the offline base: land (inside the city) on a neutral background, streets in grey.
_BACKGROUND = "#e6e9ec"
_LAND = "#fbfaf7"
_OUTLINE = "#7d8793"
_ROAD = "#9aa3ad"

# Custom panes and their z-index (Leaflet: tiles 200, overlays 400, markers 600).
PANES = {"cd-land": 350, "cd-tiles": 360, "cd-roads": 370, "cd-areas": 390}

# Road classes drawn heavier so the arterials read as the skeleton of the city.
_MAJOR = {"motorway", "trunk", "primary", "motorway_link", "trunk_link"}
_MEDIUM = {"secondary", "tertiary", "primary_link", "secondary_link", "tertiary_link"}

_CSS = f"""
<style>
.folium-map {{ background: {_BACKGROUND}; }}
.cd-box {{ background: rgba(255,255,255,0.95); border-radius: 6px; box-shadow: 0 1px 5px rgba(0,0,0,0.35);
  padding: 8px 10px; font: 13px/1.35 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #1d2329; max-width: 360px; }}
.cd-panel {{ max-width: 420px; }}
.cd-title h1 {{ font-size: 16px; margin: 0 0 2px 0; font-weight: 700; }}
.cd-title p {{ margin: 0; color: #4a545e; }}
.cd-legend h2, .cd-panel h2 {{ font-size: 13px; margin: 0 0 4px 0; font-weight: 700; }}
.cd-legend h3 {{ font-size: 12px; margin: 6px 0 2px 0; font-weight: 600; color: #39424b; }}
.cd-legend .row {{ display: flex; align-items: center; gap: 6px; margin: 1px 0; white-space: nowrap;
  min-height: 18px; }}
.cd-legend .sw {{ flex: 0 0 auto; display: inline-block; width: 22px; height: 14px; box-sizing: border-box; }}
.cd-legend .note {{ color: #5a646e; font-size: 12px; margin-top: 4px; white-space: normal; }}
.cd-legend .ramp {{ height: 10px; width: 180px; border: 1px solid #999; }}
.cd-legend .ramp-labels {{ display: flex; justify-content: space-between; width: 180px; font-size: 11px; }}
.cd-panel {{ max-height: 42vh; overflow-y: auto; }}
.cd-panel table {{ border-collapse: collapse; font-size: 12px; }}
.cd-panel td, .cd-panel th {{ padding: 2px 5px; text-align: left; border-bottom: 1px solid #e3e3e3;
  vertical-align: top; white-space: nowrap; }}
.cd-panel th {{ font-weight: 600; color: #39424b; }}
.cd-panel td.num, .cd-panel th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.cd-badge {{ display: flex; align-items: center; justify-content: center; box-sizing: border-box;
  font: 700 10px/1 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  border-radius: 50%; box-shadow: 0 1px 3px rgba(0,0,0,0.45); }}
.cd-badge.square {{ border-radius: 3px; }}
.cd-icon {{ background: none; border: none; }}
.cd-popup {{ font: 13px/1.4 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }}
.cd-popup b {{ font-weight: 700; }}
.cd-popup table td {{ padding: 0 6px 0 0; vertical-align: top; }}
.cd-label {{ background: none; border: none; box-shadow: none; color: #39424b; font-weight: 600;
  font-size: 11px; text-shadow: 0 0 3px #fff, 0 0 3px #fff; }}
.leaflet-control-layers-expanded {{ font-size: 13px; max-height: 45vh; overflow-y: auto; }}
</style>
"""


# ---------------------------------------------------------------------------------------------- text
def esc(value: Any) -> str:
    """HTML-escape a value for popups and panels (also ``$``, which folium embeds in JS templates)."""
    return html.escape(str(value)).replace("$", "&#36;").replace("`", "&#96;")


def fmt_duration(seconds: float | None) -> str:
    """``"4 min 05 s"`` (or ``"1 h 02 min"``); ``"unreachable"`` for inf/None: :func:`routing.units.format_eta`,
    the one ETA format of the CLI and the maps."""
    return format_eta(seconds)


def fmt_clock(seconds: float | None) -> str:
    """The same format for tables (``"4 min 05 s"``), ``"-"`` for inf/None."""
    return format_eta(seconds, missing="-")


def fmt_distance(metres: float | None) -> str:
    """``"850 m"`` or ``"2.4 km"``."""
    if metres is None or not math.isfinite(metres):
        return "n/a"
    return f"{metres:.0f} m" if metres < 1000 else f"{metres / 1000:.1f} km"


def fmt_age(seconds: float | None) -> str:
    """Age of a position report: ``"just now"``, ``"3 min ago"``, ``"2 h 10 min ago"``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min ago"


def popup(title: str, rows: Iterable[tuple[str, str]], *, note: str | None = None) -> folium.Popup:
    """A popup with a bold title and a two-column table; values are escaped here."""
    body = "".join(f"<tr><td>{esc(k)}</td><td><b>{esc(v)}</b></td></tr>" for k, v in rows)
    extra = f"<div style='margin-top:4px;color:#555'>{esc(note)}</div>" if note else ""
    return folium.Popup(
        f"<div class='cd-popup'><b>{esc(title)}</b><table>{body}</table>{extra}</div>", max_width=340
    )


# ---------------------------------------------------------------------------------------------- geometry
def geojson_of(geom: shapely.Geometry, *, tolerance_deg: float = 0.0001, digits: int = 5) -> dict[str, Any]:
    """GeoJSON geometry of a lon/lat shape, simplified (about 10 m) and rounded (about 1 m).

    The city's polygons are detailed far beyond what a city-wide map shows; simplifying them keeps
    every page small enough to open instantly on a dispatch console.
    """
    simple = shapely.simplify(geom, tolerance_deg, preserve_topology=True) if tolerance_deg else geom
    rounded = shapely.set_precision(simple, 10.0**-digits, mode="valid_output")
    if rounded.is_empty:  # a sliver below the rounding grid: keep the unrounded shape
        rounded = simple
    return shapely.geometry.mapping(rounded)


# ---------------------------------------------------------------------------------------------- elements
class HtmlControl(MacroElement):
    """A Leaflet control holding static HTML (title, legend, side panel).

    Parameters
    ----------
    html_text
        Inner HTML (already escaped where it holds data).
    position
        ``topleft``, ``topright``, ``bottomleft`` or ``bottomright``.
    css_class
        Class of the control's box (``cd-legend`` and ``cd-panel`` are what the browser check reads).
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.control({position: {{ this.position|tojson }}});
        {{ this.get_name() }}.onAdd = function (map) {
            var div = L.DomUtil.create('div', {{ this.css_class|tojson }});
            div.innerHTML = {{ this.html_text|tojson }};
            L.DomEvent.disableClickPropagation(div);
            L.DomEvent.disableScrollPropagation(div);
            return div;
        };
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, html_text: str, position: str = "bottomright", css_class: str = "cd-box") -> None:
        super().__init__()
        self._name = "HtmlControl"
        self.html_text = html_text
        self.position = position
        self.css_class = css_class


class _ZoomControl(MacroElement):
    # Added after the title so the title sits in the corner and the zoom buttons below it.
    _template = Template(
        """
        {% macro script(this, kwargs) %}
        L.control.zoom({position: 'topleft'}).addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )


class _Panes(MacroElement):
    # Fixed drawing order, whatever order layers are toggled in: land, streets, areas, then everything
    # else (routes, markers) in Leaflet's own panes above.
    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {% for name, z in this.panes %}
        {{ this._parent.get_name() }}.createPane({{ name|tojson }}).style.zIndex = {{ z }};
        {% endfor %}
        {% endmacro %}
        """
    )

    def __init__(self) -> None:
        super().__init__()
        self._name = "Panes"
        self.panes = list(PANES.items())


class _Attribution(MacroElement):
    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {% for text in this.texts %}
        {{ this._parent.get_name() }}.attributionControl.addAttribution({{ text|tojson }});
        {% endfor %}
        {% endmacro %}
        """
    )

    def __init__(self, texts: Sequence[str]) -> None:
        super().__init__()
        self._name = "Attribution"
        self.texts = list(texts)


class LinesLayer(Layer):
    """Many polylines in a few styles as one non-interactive canvas layer (streets, coloured streets).

    Parameters
    ----------
    classes
        ``{class: [[[lon, lat], ...], ...]}``: polylines per class, drawn in this order.
    styles
        ``{class: {"color": ..., "weight": ..., "opacity": ...}}``.
    name
        Name in the layer control.
    show
        Shown on opening.
    pane
        Leaflet pane (``cd-roads`` lies under areas, routes and markers).
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.geoJSON({{ this.data|tojson }}, {
            renderer: L.canvas({padding: 0.5, pane: {{ this.pane|tojson }}}),
            pane: {{ this.pane|tojson }},
            interactive: false,
            style: function (f) { return {{ this.styles|tojson }}[f.properties.cls]; }
        });
        {% endmacro %}
        """
    )

    def __init__(self, classes: Mapping[str, list[list[list[float]]]], styles: Mapping[str, Mapping[str, Any]],
                 name: str, show: bool = True, pane: str = "cd-roads") -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "LinesLayer"
        missing = [c for c, lines in classes.items() if lines and c not in styles]
        if missing:
            raise ValueError(f"no style for line classes {missing}")
        self.data = {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {"cls": cls},
                 "geometry": {"type": "MultiLineString", "coordinates": lines}}
                for cls, lines in classes.items() if lines
            ],
        }
        self.styles = {str(k): dict(v) for k, v in styles.items()}
        self.pane = pane


ROAD_STYLES: dict[str, dict[str, Any]] = {
    "major": {"color": "#7c8590", "weight": 2.4, "opacity": 1.0},
    "medium": {"color": "#959ea8", "weight": 1.6, "opacity": 1.0},
    "minor": {"color": "#aab2bb", "weight": 1.0, "opacity": 1.0},
    "road": {"color": _ROAD, "weight": 1.1, "opacity": 1.0},
}


def RoadLayer(classes: Mapping[str, list[list[list[float]]]], name: str = "Road network",  # noqa: N802
              show: bool = True) -> LinesLayer:
    """The road network as one light canvas layer (the offline base map); see :func:`road_polylines`."""
    return LinesLayer(classes, ROAD_STYLES, name=name, show=show)


def road_polylines(network: RoadNetwork, *, digits: int = 5) -> dict[str, list[list[list[float]]]]:
    """The network's streets as polylines per road class (``major``/``medium``/``minor``, or ``road``).

    Each two-way street appears once; chains of segments through nodes of degree two are merged into
    one polyline.

    Parameters
    ----------
    network
        A ``RoadNetwork`` (uses ``edges``, ``lon``, ``lat`` and, when present, ``edge_highway``).
    digits
        Decimal places kept in coordinates (5 is about a metre).
    """
    src, _ = network.edges
    highway = getattr(network, "edge_highway", None)
    if highway is None:  # a network without road classes: one uniform style
        cls = np.full(len(src), "road", dtype=object)
    else:
        hw = np.asarray([str(h).split(",")[0].strip("[]' ") for h in highway], dtype=object)
        cls = np.where(np.isin(hw, list(_MAJOR)), "major", np.where(np.isin(hw, list(_MEDIUM)), "medium", "minor"))
    # Drawn in this order: arterials on top.
    return polylines_by_class(network, cls, ("minor", "road", "medium", "major"), digits=digits)


def polylines_by_class(network: RoadNetwork, edge_class: np.ndarray, order: Sequence[Any], *,
                       digits: int = 5) -> dict[Any, list[list[list[float]]]]:
    """Streets grouped by a class given per edge (road type, travel-time band...), as merged polylines.

    Parameters
    ----------
    network
        A ``RoadNetwork`` (``edges``, ``lon``, ``lat``).
    edge_class
        One class per edge, in the order of ``network.edges``; edges whose class is not in ``order`` are left
        out.
    order
        The classes wanted, in drawing order.
    digits
        Decimal places kept in coordinates.
    """
    src, dst = network.edges
    src = np.asarray(src)
    dst = np.asarray(dst)
    edge_class = np.asarray(edge_class, dtype=object)
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    lon = np.round(np.asarray(network.lon, dtype=float), digits)
    lat = np.round(np.asarray(network.lat, dtype=float), digits)
    out: dict[Any, list[list[list[float]]]] = {}
    for name in order:
        mask = edge_class == name
        pairs = np.unique(np.stack([lo[mask], hi[mask]], axis=1), axis=0) if mask.any() else np.empty((0, 2), int)
        out[name] = [[[float(lon[n]), float(lat[n])] for n in chain] for chain in _chains(pairs)]
    return out


def _chains(pairs: np.ndarray) -> list[list[int]]:
    """Merge undirected segments into maximal paths that only pass through degree-2 nodes."""
    adj: dict[int, list[int]] = {}
    for a, b in pairs.tolist():
        if a == b:
            continue
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    used: set[tuple[int, int]] = set()
    chains: list[list[int]] = []

    def walk(start: int, nxt: int) -> list[int]:
        chain = [start]
        prev, cur = start, nxt
        used.add((min(prev, cur), max(prev, cur)))
        chain.append(cur)
        while len(adj[cur]) == 2:
            cand = adj[cur][0] if adj[cur][1] == prev else adj[cur][1]
            key = (min(cur, cand), max(cur, cand))
            if key in used:
                break
            used.add(key)
            prev, cur = cur, cand
            chain.append(cur)
        return chain

    # Start at junctions and dead ends first, then whatever is left (pure cycles).
    order = sorted(adj, key=lambda n: len(adj[n]) == 2)
    for node in order:
        for nb in adj[node]:
            if (min(node, nb), max(node, nb)) not in used:
                chains.append(walk(node, nb))
    return chains


# ---------------------------------------------------------------------------------------------- legend
@dataclass
class LegendItem:
    """One legend row: a swatch and its label.

    ``kind``: ``circle`` (filled circle), ``square``, ``line``, ``dashed``, ``fill`` (area), ``badge``
    (a round marker with ``text`` in it), ``square-badge``.
    """

    label: str
    color: str
    kind: str = "circle"
    border: str | None = None
    text: str = ""
    opacity: float = 1.0


@dataclass
class LegendSection:
    """A titled group of legend rows, or a colour ramp (``ramp`` = ``[(value_label, color), ...]``)."""

    title: str
    items: list[LegendItem] = field(default_factory=list)
    ramp: list[tuple[str, str]] | None = None
    note: str | None = None


def _swatch(item: LegendItem) -> str:
    border = item.border or "#333"
    if item.kind == "line":
        return f"<span class='sw' style='border-top:4px solid {item.color};height:0;margin-top:2px'></span>"
    if item.kind == "dashed":
        return f"<span class='sw' style='border-top:3px dashed {item.color};height:0;margin-top:2px'></span>"
    if item.kind == "fill":
        return (f"<span class='sw' style='background:{item.color};opacity:{item.opacity};"
                f"border:1px solid {border}'></span>")
    if item.kind in ("badge", "square-badge"):
        radius = "50%" if item.kind == "badge" else "3px"
        size = 22 if item.text else 16
        font = 9 if len(item.text) <= 2 else 7
        return (f"<span class='sw cd-badge' style='display:flex;width:{size}px;height:{size}px;"
                f"background:{item.color};"
                f"border:2px solid {border};border-radius:{radius};color:#fff;font-size:{font}px'>"
                f"{esc(item.text)}</span>")
    radius = "50%" if item.kind == "circle" else "2px"
    return (f"<span class='sw' style='width:14px;height:14px;background:{item.color};border-radius:{radius};"
            f"border:2px solid {border};opacity:{item.opacity}'></span>")


def legend_html(title: str, sections: Sequence[LegendSection]) -> str:
    """HTML of a legend box (used by :func:`add_legend`)."""
    parts = [f"<h2>{esc(title)}</h2>"]
    for sec in sections:
        parts.append(f"<h3>{esc(sec.title)}</h3>")
        for it in sec.items:
            parts.append(f"<div class='row'>{_swatch(it)}<span>{esc(it.label)}</span></div>")
        if sec.ramp:
            stops = ", ".join(c for _, c in sec.ramp)
            parts.append(f"<div class='ramp' style='background:linear-gradient(to right, {stops})'></div>")
            parts.append("<div class='ramp-labels'>" + "".join(f"<span>{esc(v)}</span>" for v, _ in sec.ramp)
                         + "</div>")
        if sec.note:
            parts.append(f"<div class='note'>{esc(sec.note)}</div>")
    return "".join(parts)


def add_legend(m: folium.Map, title: str, sections: Sequence[LegendSection], *,
               position: str = "bottomright") -> HtmlControl:
    """Add a legend box to the map."""
    ctl = HtmlControl(legend_html(title, sections), position=position, css_class="cd-box cd-legend")
    ctl.add_to(m)
    return ctl


def add_panel(m: folium.Map, title: str, body_html: str, *, position: str = "bottomleft") -> HtmlControl:
    """Add a side panel (ranked lists, gaps) to the map; ``body_html`` must be escaped already."""
    ctl = HtmlControl(f"<h2>{esc(title)}</h2>{body_html}", position=position, css_class="cd-box cd-panel")
    ctl.add_to(m)
    return ctl


def table_html(header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = ()) -> str:
    """An escaped HTML table; columns listed in ``numeric`` are right-aligned."""
    num = set(numeric)

    def cell(tag: str, i: int, v: Any) -> str:
        cls = " class='num'" if i in num else ""
        raw = v.html if isinstance(v, _Raw) else esc(v)
        return f"<{tag}{cls}>{raw}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


@dataclass(frozen=True)
class _Raw:
    html: str


def raw(html_text: str) -> _Raw:
    """Mark a table cell as HTML built here (a swatch), not data to escape."""
    return _Raw(html_text)


def badge_html(text: str, fill: str, *, border: str = "#ffffff", size: int = 24, square: bool = False,
               text_color: str = "#ffffff", border_width: int = 2, border_style: str = "solid") -> str:
    """HTML of a round (or square) badge with a short label."""
    cls = "cd-badge square" if square else "cd-badge"
    font = max(8, int(size * (0.42 if len(text) <= 2 else 0.34)))
    return (f"<div class='{cls}' style='width:{size}px;height:{size}px;background:{fill};"
            f"border:{border_width}px {border_style} {border};color:{text_color};font-size:{font}px'>"
            f"{esc(text)}</div>")


def badge_icon(text: str, fill: str, *, border: str = "#ffffff", size: int = 24, square: bool = False,
               text_color: str = "#ffffff", border_width: int = 2, border_style: str = "solid",
               offset: tuple[float, float] = (0.0, 0.0)) -> folium.DivIcon:
    """A ``DivIcon`` badge (no icon font needed, so it works offline), drawn ``offset`` pixels away."""
    dx, dy = offset
    return folium.DivIcon(
        html=badge_html(text, fill, border=border, size=size, square=square, text_color=text_color,
                        border_width=border_width, border_style=border_style),
        icon_size=(size, size),
        # Leaflet puts the anchor on the point: moving the anchor the other way moves the badge.
        icon_anchor=(round(size / 2 - dx), round(size / 2 - dy)),
        class_name="cd-icon",
    )


# ---------------------------------------------------------------------------------------------- map
def new_map(
    bounds: tuple[float, float, float, float],
    *,
    offline: bool,
    title: str,
    subtitle: str | None = None,
    padding: tuple[int, int, int, int] | None = None,
) -> folium.Map:
    """An empty map over ``bounds`` with the title panel, zoom, scale and attribution.

    Parameters
    ----------
    bounds
        ``(lon_min, lat_min, lon_max, lat_max)`` to fit.
    offline
        No tile layer (the city outlines and roads are the base); otherwise OpenStreetMap tiles.
    title, subtitle
        Shown in the top-left panel (``subtitle`` is HTML: escape data in it).
    padding
        Screen pixels (left, top, right, bottom) kept clear of ``bounds`` when fitting, so that what
        matters is not under the panels.

    Returns
    -------
    folium.Map
    """
    lon_min, lat_min, lon_max, lat_max = (float(b) for b in bounds)
    if not all(math.isfinite(b) for b in (lon_min, lat_min, lon_max, lat_max)):
        raise ValueError(f"map bounds must be finite, got {bounds!r}")
    m = folium.Map(
        location=[(lat_min + lat_max) / 2, (lon_min + lon_max) / 2],
        zoom_start=12,
        tiles=None,
        zoom_control=False,
        control_scale=True,
        zoom_snap=0.25,  # fit the city to the screen instead of the next whole zoom level out
    )
    cast(Figure, m.get_root()).header.add_child(Element(_CSS), name="cd-style")  # a Map's root is its Figure
    _Panes().add_to(m)
    # The base is always the engine's own neighborhoods and streets (OpenStreetMap data, so OSM is credited),
    # so no page is blank without internet. Online, the OSM tiles are an optional layer over that base
    # (ticked in the layer control), never what the page depends on.
    if not offline:
        folium.TileLayer("OpenStreetMap", name="OpenStreetMap tiles (online)", attr=OSM_ATTRIBUTION, overlay=True,
                         control=True, show=False, pane="cd-tiles").add_to(m)
    _Attribution([OSM_ATTRIBUTION, BOSTON_ATTRIBUTION]).add_to(m)
    head = f"<h1>{esc(title)}</h1>" + (f"<p>{subtitle}</p>" if subtitle else "")
    HtmlControl(head, position="topleft", css_class="cd-box cd-title").add_to(m)
    _ZoomControl().add_to(m)
    pad_lat = max((lat_max - lat_min) * 0.04, 0.002)
    pad_lon = max((lon_max - lon_min) * 0.04, 0.002)
    top_left: tuple[float, float] | None = None
    bottom_right: tuple[float, float] | None = None
    if padding is not None:
        left, top, right, bottom = padding
        top_left, bottom_right = (left, top), (right, bottom)
    m.fit_bounds([[lat_min - pad_lat, lon_min - pad_lon], [lat_max + pad_lat, lon_max + pad_lon]],
                 padding_top_left=top_left, padding_bottom_right=bottom_right)
    return m


def add_city_base(
    m: folium.Map,
    places: Places | None,
    network: RoadNetwork | None,
    *,
    offline: bool,
    districts: bool = True,
) -> None:
    """Neighborhood outlines (with names), police districts and, offline, the road network.

    Offline the outlines are filled as land and drawn first, the streets over them, so the map reads
    like a plain street map without any tile. Online they are thin outlines over the tiles.

    Parameters
    ----------
    m
        The map.
    places
        ``routing.places.Places`` (``neighborhoods``, ``districts``) or None.
    network
        ``RoadNetwork`` for the offline street base, or None.
    offline
        Whether the map has no tiles.
    districts
        Also add the police districts (hidden until ticked).
    """
    if places is not None and getattr(places, "neighborhoods", None):
        feats = [
            {"type": "Feature", "properties": {"name": name}, "geometry": geojson_of(geom)}
            for name, geom in sorted(places.neighborhoods.items())
        ]
        # Filled as land on every map (the tiles, where wanted, are drawn over it): see new_map.
        style = {"color": _OUTLINE, "weight": 1.2, "fillColor": _LAND, "fillOpacity": 1.0}
        folium.GeoJson(
            {"type": "FeatureCollection", "features": feats},
            name="Neighborhoods",
            style_function=lambda _f, s=style: s,
            tooltip=folium.GeoJsonTooltip(fields=["name"], labels=False),
            control=True,
            overlay=True,
            show=True,
            pane="cd-land",
        ).add_to(m)
    if network is not None:
        RoadLayer(road_polylines(network), name="Road network").add_to(m)
    if districts and places is not None and getattr(places, "districts", None):
        feats = [
            {"type": "Feature", "properties": {"district": name}, "geometry": geojson_of(geom)}
            for name, geom in sorted(places.districts.items())
        ]
        folium.GeoJson(
            {"type": "FeatureCollection", "features": feats},
            name="Police districts",
            style_function=lambda _f: {"color": "#4b3f72", "weight": 1.5, "dashArray": "2 4", "fillOpacity": 0},
            tooltip=folium.GeoJsonTooltip(fields=["district"], aliases=["Police district"]),
            show=False,
            pane="cd-areas",
        ).add_to(m)


def finish_map(m: folium.Map, *, offline: bool) -> folium.Map:
    """Add the layer control (expanded) and, offline, inline every asset. Call last.

    Returns
    -------
    folium.Map
        The same map.
    """
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    make_offline(m)  # always: a page that needs a CDN for Leaflet is blank without internet
    return m


def save_map(m: folium.Map, path: str | os.PathLike[str], *, offline: bool) -> Path:
    """Write the map as one HTML file.

    Parameters
    ----------
    m
        A map finished with :func:`finish_map`.
    path
        Output file (``.html``); parent directories must exist.
    offline
        Whether the page must be self-contained; then a page that would load anything remote is an
        error, not a file.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        Offline, if the rendered page still references a remote resource.
    """
    out = Path(path)
    page = m.get_root().render()
    if offline:
        remote = remote_references(page)
        if remote:
            raise ValueError(f"offline map would load remote resources: {', '.join(sorted(set(remote))[:5])}")
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write the map to {out}: {exc.strerror or exc}", field="out") from None
    return out
