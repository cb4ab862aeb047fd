"""Analysis layers shared by the coverage and staging maps: travel-time bands on the streets, shaded
neighborhoods, demand heat, reach outlines. Each comes with the legend section that explains it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import folium
import numpy as np
from folium.plugins import HeatMap

from maps import base
from maps.style import ETA_BAND_COLORS, ETA_BANDS_MIN, HEAT_COLORS

if TYPE_CHECKING:
    import shapely

    from routing.network import RoadNetwork

__all__ = [
    "band_labels",
    "add_eta_streets",
    "eta_legend",
    "add_choropleth",
    "step_colors",
    "add_heat",
    "add_outline",
    "scale_legend",
    "heat_legend",
]


def band_labels(bands_min: Sequence[float]) -> list[str]:
    """``["0-4 min", "4-8 min", ..., "over 16 min"]`` for band edges ``(4, 8, 12, 16)``."""
    edges = [0, *bands_min]
    labels = [f"{_num(a)}-{_num(b)} min" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [*labels, f"over {_num(edges[-1])} min"]


def _num(x: float) -> str:
    return f"{x:g}"


def add_eta_streets(
    m: folium.Map,
    network: RoadNetwork,
    times_s: np.ndarray,
    *,
    name: str,
    bands_min: Sequence[float] = ETA_BANDS_MIN,
    colors: Sequence[str] = ETA_BAND_COLORS,
    show: bool = True,
) -> base.LinesLayer:
    """Colour every street by the travel time to reach it: the per-node ETA surface, on the roads.

    A street takes the band of its slower end, so a street coloured "0-8 min" is reached entirely
    within 8 minutes. Streets never reached (``inf``) are left out.

    Parameters
    ----------
    m
        The map.
    network
        ``RoadNetwork`` (``edges``, ``lon``, ``lat``).
    times_s
        Seconds per node (shape ``(n_nodes,)``), e.g. from the nearest team of a type.
    name
        Layer name (say what the time is from, and the unit).
    bands_min
        Band edges in minutes, increasing.
    colors
        One colour per band plus one for beyond the last edge.
    show
        Shown on opening.
    """
    times = np.asarray(times_s, dtype=float)
    if times.shape != (len(network.lat),):
        raise ValueError(f"times must have one value per node ({len(network.lat)}), got shape {times.shape}")
    if len(colors) != len(bands_min) + 1:
        raise ValueError("need one colour per band plus one beyond the last edge")
    src, dst = network.edges
    edge_t = np.maximum(times[np.asarray(src)], times[np.asarray(dst)])
    band = np.searchsorted(np.asarray(bands_min, float) * 60.0, edge_t, side="left").astype(object)
    band[~np.isfinite(edge_t)] = None
    order = list(range(len(bands_min), -1, -1))  # slowest first, so the quick streets are drawn on top
    classes = base.polylines_by_class(network, band, order)
    styles = {k: {"color": colors[k], "weight": 2.2 if k < len(bands_min) else 1.4, "opacity": 0.95}
              for k in order}
    layer = base.LinesLayer({str(k): v for k, v in classes.items()}, {str(k): v for k, v in styles.items()},
                            name=name, show=show)
    layer.add_to(m)
    return layer


def eta_legend(title: str, bands_min: Sequence[float] = ETA_BANDS_MIN,
               colors: Sequence[str] = ETA_BAND_COLORS, note: str | None = None) -> base.LegendSection:
    """Legend section for :func:`add_eta_streets`."""
    items = [base.LegendItem(label, c, kind="line") for label, c in zip(band_labels(bands_min), colors, strict=True)]
    return base.LegendSection(title, items, note=note)


def step_colors(values: Sequence[float], edges: Sequence[float], colors: Sequence[str]) -> list[str]:
    """Colour of each value on a stepped scale: ``colors[i]`` for ``edges[i-1] <= v < edges[i]``."""
    if len(colors) != len(edges) + 1:
        raise ValueError("need one colour more than there are edges")
    idx = np.searchsorted(np.asarray(edges, float), np.asarray(values, float), side="right")
    return [colors[int(i)] for i in idx]


def add_choropleth(
    m: folium.Map,
    geoms: Mapping[str, shapely.Geometry],
    values: Mapping[str, float],
    *,
    name: str,
    edges: Sequence[float],
    colors: Sequence[str],
    details: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    show: bool = True,
    opacity: float = 0.6,
) -> folium.GeoJson:
    """Shade areas (neighborhoods) by a value on a stepped colour scale; hover shows the details.

    Parameters
    ----------
    m
        The map.
    geoms
        ``{area name: lon/lat geometry}``.
    values
        ``{area name: value}``; areas without a value are drawn hatched grey ("no data").
    name
        Layer name (with the unit).
    edges, colors
        Stepped scale (see :func:`step_colors`).
    details
        ``{area name: [(label, text), ...]}`` shown in the tooltip (already formatted, with units).
    show
        Shown on opening.
    opacity
        Fill opacity (the streets must stay readable underneath).
    """
    names = sorted(geoms)
    known = [n for n in names if n in values and values[n] is not None and math.isfinite(values[n])]
    fills = dict(zip(known, step_colors([values[n] for n in known], edges, colors), strict=True))
    feats = []
    for n in names:
        rows = list((details or {}).get(n, ()))
        info = "".join(f"<br>{base.esc(k)}: <b>{base.esc(v)}</b>" for k, v in rows)
        feats.append({
            "type": "Feature",
            "properties": {"name": n, "fill": fills.get(n, "#bdbdbd"), "info": f"<b>{base.esc(n)}</b>{info}"},
            "geometry": base.geojson_of(geoms[n]),
        })
    layer = folium.GeoJson(
        {"type": "FeatureCollection", "features": feats},
        name=name,
        style_function=lambda f, o=opacity: {
            "fillColor": f["properties"]["fill"], "fillOpacity": o, "color": "#555555", "weight": 1.0,
        },
        highlight_function=lambda _f: {"weight": 3, "color": "#222222"},
        tooltip=folium.GeoJsonTooltip(fields=["info"], labels=False),
        show=show,
        pane="cd-areas",
    )
    layer.add_to(m)
    return layer


def scale_legend(title: str, edges: Sequence[float], colors: Sequence[str],
                 fmt: Callable[[float], str], *, note: str | None = None,
                 no_data: bool = False) -> base.LegendSection:
    """Legend section for a stepped scale: one swatch per step with its range."""
    items = []
    lows: list[float | None] = [None, *edges]
    highs: list[float | None] = [*edges, None]
    for lo, hi, c in zip(lows, highs, colors, strict=True):
        if lo is None:
            assert hi is not None  # one colour more than edges: the first step has an upper edge
            label = f"below {fmt(hi)}"
        elif hi is None:
            label = f"{fmt(lo)} or more"
        else:
            label = f"{fmt(lo)} to {fmt(hi)}"
        items.append(base.LegendItem(label, c, kind="fill", opacity=0.8))
    if no_data:
        items.append(base.LegendItem("no data", "#bdbdbd", kind="fill", opacity=0.8))
    return base.LegendSection(title, items, note=note)


def add_heat(m: folium.Map, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray,
             weights: Sequence[float] | np.ndarray | None = None, *, name: str, show: bool = True, radius: int = 14
             ) -> HeatMap:
    """Demand as a heat layer (weights scaled to 0-1 so the colours mean "share of the busiest spot")."""
    w = np.ones(len(lats)) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(lats) or len(lats) != len(lons):
        raise ValueError("lats, lons and weights must have the same length")
    top = float(w.max()) if len(w) and w.max() > 0 else 1.0
    data = [[round(float(a), 5), round(float(b), 5), round(float(c) / top, 4)]
            for a, b, c in zip(lats, lons, w, strict=True) if c > 0]
    # One hue, light to dark: must not be mistaken for the travel-time colours or the shaded areas.
    layer = HeatMap(data, name=name, show=show, radius=radius, blur=radius, min_opacity=0.25, max_zoom=14,
                    gradient=dict(zip((0.2, 0.45, 0.7, 1.0), HEAT_COLORS, strict=True)))
    layer.add_to(m)
    return layer


def heat_legend(title: str, note: str | None = None) -> base.LegendSection:
    """Legend section for :func:`add_heat`."""
    return base.LegendSection(title, ramp=[("fewer", HEAT_COLORS[0]), ("", HEAT_COLORS[1]), ("", HEAT_COLORS[2]),
                                           ("more", HEAT_COLORS[3])], note=note)


def add_outline(m: folium.Map | folium.FeatureGroup, geom: shapely.Geometry, *, color: str, tooltip: str | None = None,
                weight: float = 2.5, dash: str | None = None, fill_opacity: float = 0.0) -> folium.GeoJson:
    """Outline of an area (a reach within T minutes, a service area) in the areas pane."""
    layer = folium.GeoJson(
        {"type": "Feature", "properties": {}, "geometry": base.geojson_of(geom, tolerance_deg=0.0002)},
        style_function=lambda _f: {"color": color, "weight": weight, "dashArray": dash, "fillColor": color,
                                   "fillOpacity": fill_opacity},
        tooltip=base.esc(tooltip) if tooltip else None,
        pane="cd-areas",
    )
    layer.add_to(m)
    return layer
