"""Coverage map: neighborhoods shaded by covered share (or uncovered demand), travel times on the
streets, demand heat, the responders, and the gaps ranked in a side panel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import folium
import numpy as np

from maps import base, layers
from maps.style import GAP_COLORS, SHARE_COLORS, SITE_KIND_COLORS, TYPE_CODES, TYPE_COLORS, TYPE_LABELS
from routing.units import format_eta

if TYPE_CHECKING:
    from routing.coverage import CoverageResult
    from routing.demand import DemandSurface
    from routing.network import RoadNetwork
    from routing.places import Places

__all__ = ["coverage_map", "coverage_bands"]

_SHARE_EDGES = (0.2, 0.4, 0.6, 0.8, 0.95)
_GAPS_LISTED = 10


def coverage_bands(minutes: float) -> tuple[float, ...]:
    """Travel-time band edges (minutes) around a standard ``T``: T/2, T, 1.5 T, 2 T.

    The standard is always a band edge, so "covered" reads as the two green bands.
    """
    return (minutes / 2, minutes, 1.5 * minutes, 2 * minutes)


# Green up to the standard, warm beyond it.
_BAND_COLORS = ("#1a9850", "#91cf60", "#fdae61", "#d73027", "#762a83")


def _gap_edges(values: Sequence[float]) -> tuple[float, ...]:
    """Four round edges for uncovered demand (calls a year) that split the non-zero values sensibly."""
    positive = sorted(v for v in values if v > 0)
    if not positive:
        return (1, 10, 50, 100)
    top = positive[-1]
    raw = [top * f for f in (0.05, 0.15, 0.35, 0.6)]
    edges: list[float] = []
    for r in raw:
        mag = 10 ** math.floor(math.log10(r)) if r > 0 else 1
        v = round(r / mag) * mag
        if not edges or v > edges[-1]:
            edges.append(float(v))
    while len(edges) < 4:
        edges.append(edges[-1] * 2 if edges else 1.0)
    return tuple(edges)


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None or not math.isfinite(seconds) else format_eta(seconds)


def coverage_map(
    result: CoverageResult,
    *,
    network: RoadNetwork,
    places: Places | None = None,
    demand: DemandSurface | None = None,
    offline: bool = False,
    title: str | None = None,
) -> folium.Map:
    """Map of a coverage analysis.

    Parameters
    ----------
    result
        ``routing.coverage.CoverageResult`` (``minutes``, ``label``, ``neighborhoods``, ``gaps``,
        ``eta_s`` and ``node_weights`` per node, ``responder_points``, ``excluded``, ...).
    network
        The ``RoadNetwork`` the result was computed on (same node order as ``eta_s``).
    places
        ``routing.places.Places`` for the outlines (default: the result's neighborhood shapes).
    demand
        Unused: the demand per node travels with the result (``node_weights``). Accepted so the map
        takes the same context as the other planning maps.
    offline
        Self-contained page without tiles.
    title
        Title panel heading.

    Returns
    -------
    folium.Map
        Finished (layer control added; assets inlined when offline).
    """
    del demand  # the result carries its own per-node demand
    eta = np.asarray(result.eta_s, dtype=float)
    if eta.shape != (network.n_nodes,):
        raise ValueError(f"result has {eta.size} node times but the network {network.n_nodes} nodes")
    t = float(result.minutes)
    rows = {n.name: n for n in result.neighborhoods}
    geoms = dict(getattr(result, "neighborhood_geometry", None) or (places.neighborhoods if places else {}))
    head = title or f"Coverage within {t:g} min"
    sub = (f"{base.esc(result.label)}<br><b>{result.overall_covered_share:.0%}</b> of "
           f"{result.total_demand:,.0f} expected calls a year reached within {t:g} min; "
           f"median ETA {_minutes(result.median_eta_s)}, 90th percentile {_minutes(result.p90_eta_s)}")
    # The gaps panel sits on the left: keep the city clear of it so no gap hides under the table.
    m = base.new_map(network.bbox, offline=offline, title=head, subtitle=sub, padding=(450, 20, 400, 10))
    base.add_city_base(m, places, network, offline=offline)

    details = {
        name: [
            ("Expected calls a year", f"{r.demand:,.0f}"),
            (f"Reached within {t:g} min", "n/a" if r.covered_share is None else f"{r.covered_share:.0%}"),
            ("Not reached in time (calls a year)", f"{r.uncovered_demand:,.0f}"),
            ("Median / 90th pct ETA", f"{_minutes(r.median_eta_s)} / {_minutes(r.p90_eta_s)}"),
        ]
        for name, r in rows.items()
    }
    share = {n: r.covered_share for n, r in rows.items() if r.covered_share is not None}
    layers.add_choropleth(m, geoms, share, name=f"Neighborhoods: share reached within {t:g} min",
                          edges=_SHARE_EDGES, colors=SHARE_COLORS, details=details, show=True)
    gap_values = {n: r.uncovered_demand for n, r in rows.items()}
    gap_edges = _gap_edges(list(gap_values.values()))
    layers.add_choropleth(m, geoms, gap_values, name="Neighborhoods: calls a year not reached in time",
                          edges=gap_edges, colors=GAP_COLORS, details=details, show=False)
    bands = coverage_bands(t)
    layers.add_eta_streets(m, network, eta, name="Streets: travel time from the nearest responder",
                           bands_min=bands, colors=_BAND_COLORS, show=False)
    weights = np.asarray(result.node_weights, dtype=float)
    has = weights > 0
    layers.add_heat(m, np.asarray(network.lat)[has], np.asarray(network.lon)[has], weights[has],
                    name="Demand (expected calls a year)", show=False)
    n_resp = _add_responders(m, result)

    legend = [
        layers.scale_legend(f"Share of calls reached within {t:g} min", _SHARE_EDGES, SHARE_COLORS,
                            lambda x: f"{x:.0%}", no_data=True),
        layers.eta_legend("Streets: travel time (layer off at start)", bands, _BAND_COLORS),
        layers.heat_legend("Demand heat (layer off at start)"),
    ]
    types = sorted({r.team_type for r in result.responder_points if r.team_type})
    if n_resp:
        items = [base.LegendItem(TYPE_LABELS.get(tt, tt), TYPE_COLORS.get(tt, "#444"), kind="badge",
                                 text=TYPE_CODES.get(tt, tt[:2].upper())) for tt in types]
        if any(r.service_area for r in result.responder_points):
            items.append(base.LegendItem("Serves only its own area (black ring)", "#777777", kind="badge",
                                         border="#111111"))
        legend.append(base.LegendSection("Responders", items or [
            base.LegendItem("Site", SITE_KIND_COLORS["chosen"], kind="square")]))
    base.add_legend(m, "Legend", legend)
    base.add_panel(m, f"Gaps: calls a year not reached within {t:g} min", _gaps_panel(result),
                   position="bottomleft")
    return base.finish_map(m, offline=offline)


def _add_responders(m: folium.Map, result: CoverageResult) -> int:
    points = list(result.responder_points)
    if not points:
        return 0
    from maps.fleet import spread_offsets

    group = folium.FeatureGroup(name=f"Responders ({len(points)})", show=True)
    offsets = spread_offsets([(p.lat, p.lon) for p in points])
    for p, off in zip(points, offsets, strict=True):
        tt = p.team_type
        if tt:
            # A black ring: the responder serves only its own area (the pilot's dedicated cars).
            ring = ("#111111", 3) if p.service_area else ("#ffffff", 2)
            icon = base.badge_icon(TYPE_CODES.get(tt, tt[:2].upper()), TYPE_COLORS.get(tt, "#444"), size=22,
                                   offset=off, border=ring[0], border_width=ring[1])
        else:
            icon = base.badge_icon("", SITE_KIND_COLORS["chosen"], size=14, square=True, offset=off)
        area = ", ".join(p.service_area) if p.service_area else "citywide"
        folium.Marker([p.lat, p.lon], icon=icon,
                      tooltip=base.esc(f"{p.label} ({TYPE_LABELS.get(tt, tt) if tt else 'site'}; serves {area})"),
                      ).add_to(group)
    group.add_to(m)
    return len(points)


def _gaps_panel(result: CoverageResult) -> str:
    gaps = list(result.gaps)[:_GAPS_LISTED]
    if not gaps:
        body = "<p><b>No gap:</b> every expected call is reached in time.</p>"
    else:
        rows = [[k, g["name"], f"{g['uncovered_demand']:,.0f}", f"{g['demand']:,.0f}",
                 "-" if g["covered_share"] is None else f"{g['covered_share']:.0%}"]
                for k, g in enumerate(gaps, start=1)]
        body = base.table_html(["#", "Neighborhood", "Not reached", "All calls", "Reached"], rows,
                               numeric=(0, 2, 3, 4))
        more = len(result.gaps) - len(gaps)
        if more > 0:
            body += f"<p style='color:#666'>{more} more neighborhoods with smaller gaps (hover the map).</p>"
    excluded = list(getattr(result, "excluded", []) or [])
    if excluded:
        text = "; ".join(f"{base.esc(e['label'])} ({base.esc(e['reason'])})" for e in excluded[:8])
        extra = f" and {len(excluded) - 8} more" if len(excluded) > 8 else ""
        body += f"<p style='margin:6px 0 0 0;color:#444'><b>Left out:</b> {text}{extra}</p>"
    body += (f"<p style='margin:6px 0 0 0;color:#666;white-space:normal'>Demand: "
             f"{base.esc(result.demand_description)}</p>")
    return body
