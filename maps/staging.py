"""Staging map: the proposed sites versus today's, the streets each proposed site reaches first within
the standard, the demand each serves, and where coverage is gained or lost."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import folium
import numpy as np

from maps import base, layers
from routing.units import format_eta

if TYPE_CHECKING:
    from routing.demand import DemandSurface
    from routing.network import RoadNetwork
    from routing.places import Places
    from routing.staging import StagedSite, StagingComparison, StagingPlan, StagingProblem

__all__ = ["staging_map", "MODEL_LABELS", "CATCHMENT_COLORS"]

MODEL_LABELS: dict[str, str] = {
    "mclp": "maximal covering (MCLP): most calls within the standard",
    "pmedian": "p-median: least average travel time",
    "lscp": "set covering (LSCP): fewest sites reaching every call",
    "backup": "backup covering (MEXCLP): calls covered twice count when teams are busy",
}
# Qualitative (Tableau 10 and two more): neighbouring catchments must differ; cycled beyond twelve sites.
CATCHMENT_COLORS: tuple[str, ...] = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                                     "#b07aa1", "#ff9da7", "#9c755f", "#17becf", "#bcbd22", "#1f3b73")
_NOT_REACHED = "#c9ced4"
_GAINED, _LOST, _KEPT = "#1b9e77", "#d95f02", "#9fb7c9"


def _site_color(k: int) -> str:
    return CATCHMENT_COLORS[k % len(CATCHMENT_COLORS)]


def staging_map(
    plan: StagingPlan,
    *,
    network: RoadNetwork,
    places: Places | None = None,
    problem: StagingProblem | None = None,
    demand: DemandSurface | None = None,
    offline: bool = False,
    reach_outlines: bool = False,
    title: str | None = None,
) -> folium.Map:
    """Map of a staging plan.

    Parameters
    ----------
    plan
        ``routing.staging.StagingPlan`` (``sites`` with ``demand_served``/``demand_covered``,
        ``comparison`` with today's sites, ``eta_s`` per node, ``minutes``, ``model``, ...).
    network
        The ``RoadNetwork`` the plan was computed on.
    places
        ``routing.places.Places`` for the outlines.
    problem
        The ``StagingProblem`` solved (candidate x node travel times): needed to colour each proposed
        site's catchment; without it the streets are coloured reached / not reached.
    demand
        ``DemandSurface`` for the demand heat layer (optional).
    offline
        Self-contained page without tiles.
    reach_outlines
        Also outline the full area each proposed site reaches within the standard (overlapping; about
        a third of a second per site to compute).
    title
        Title panel heading.

    Returns
    -------
    folium.Map
        Finished (layer control added; assets inlined when offline).
    """
    t = float(plan.minutes)
    limit = t * 60.0
    sites = list(plan.sites)
    times = _site_times(plan, problem, network)
    head = title or f"Staging plan: {len(sites)} sites, {t:g}-minute standard"
    sub = [base.esc(MODEL_LABELS.get(plan.model, plan.model)),
           f"proposed: <b>{plan.covered_share:.0%}</b> of {plan.total_demand:,.0f} expected calls a year within "
           f"{t:g} min, mean ETA {format_eta(plan.mean_eta_s)}"]
    c = plan.comparison
    if c is not None:
        delta = c.proposed_covered_demand - c.today_covered_demand
        sub.append(f"today's staging ({len(c.today_sites)} sites): {c.today_covered_share:.0%}, mean ETA "
                   f"{format_eta(c.today_mean_eta_s)} &rarr; <b>{delta:+,.0f} calls a year</b> reached in time")
    status = plan.status + ("" if plan.gap is None else f", gap {plan.gap:.2%}")
    sub.append(f"solver: {base.esc(status)}, {plan.solve_s:.1f} s")
    m = base.new_map(network.bbox, offline=offline, title=head, subtitle="<br>".join(sub),
                     padding=(450, 20, 400, 10))
    base.add_city_base(m, places, network, offline=offline)

    eta = np.asarray(plan.eta_s, dtype=float) if plan.eta_s is not None else None
    if times is not None:
        nearest = np.argmin(times, axis=1)
        best = times[np.arange(times.shape[0]), nearest]
        cls = np.where(best <= limit, nearest, -1).astype(object)
        src, dst = network.edges
        # A street belongs to a catchment when both its ends do; mixed streets read as borders.
        edge_cls = np.where(cls[np.asarray(src)] == cls[np.asarray(dst)], cls[np.asarray(src)], -1)
        order = [-1, *range(len(sites))]
        lines = base.polylines_by_class(network, edge_cls, order)
        styles = {str(k): {"color": _NOT_REACHED if k == -1 else _site_color(k), "weight": 1.2 if k == -1 else 2.2,
                           "opacity": 1.0} for k in order}
        base.LinesLayer({str(k): v for k, v in lines.items()}, styles,
                        name=f"Streets: first proposed site to reach them, within {t:g} min").add_to(m)
    elif eta is not None:
        covered = np.where(eta <= limit, 0, -1).astype(object)
        src, dst = network.edges
        edge_cls = np.where((covered[np.asarray(src)] == 0) & (covered[np.asarray(dst)] == 0), 0, -1)
        lines = base.polylines_by_class(network, edge_cls, [-1, 0])
        base.LinesLayer({"-1": lines[-1], "0": lines[0]},
                        {"-1": {"color": _NOT_REACHED, "weight": 1.2}, "0": {"color": _site_color(0), "weight": 2.2}},
                        name=f"Streets reached within {t:g} min").add_to(m)
    if c is not None and eta is not None:
        _add_change(m, network, c, eta, limit, t)
    if reach_outlines and times is not None:
        group = folium.FeatureGroup(name=f"Full reach of each proposed site within {t:g} min", show=False)
        for k, s in enumerate(sites):
            geom = network.isochrone_from_times(times[:, k], limit)
            layers.add_outline(group, geom, color=_site_color(k), tooltip=f"{s.name}: reach within {t:g} min",
                               weight=1.0, fill_opacity=0.15)
        group.add_to(m)
    if demand is not None:
        w = np.asarray(demand.weights, dtype=float)
        has = w > 0
        layers.add_heat(m, np.asarray(network.lat)[has], np.asarray(network.lon)[has], w[has],
                        name="Demand (expected calls a year)", show=False)
    _add_today(m, c)
    _add_proposed(m, sites, t, times is not None)

    legend = [
        base.LegendSection("Sites", [
            base.LegendItem("Proposed site (size = calls it serves)", _site_color(0), kind="badge", text="1"),
            base.LegendItem("Today's staging site", "#ffffff", kind="square", border="#222222"),
        ]),
        base.LegendSection(f"Streets (reached within {t:g} min)", [
            base.LegendItem("Colour of the first proposed site to reach them", _site_color(1), kind="line"),
            base.LegendItem(f"Not reached within {t:g} min", _NOT_REACHED, kind="line"),
        ]),
    ]
    if c is not None:
        legend.append(base.LegendSection("Change against today (layer off at start)", [
            base.LegendItem("Newly reached in time", _GAINED, kind="line"),
            base.LegendItem("No longer reached in time", _LOST, kind="line"),
            base.LegendItem("Reached in both", _KEPT, kind="line"),
        ]))
    if demand is not None:
        legend.append(layers.heat_legend("Demand heat (layer off at start)"))
    base.add_legend(m, "Legend", legend)
    base.add_panel(m, "Proposed sites and the calls they serve", _panel(plan), position="bottomleft")
    return base.finish_map(m, offline=offline)


def _site_times(plan: StagingPlan, problem: StagingProblem | None, network: RoadNetwork) -> np.ndarray | None:
    """Node x proposed-site travel times (s) from the solved problem, or None without it."""
    if problem is None or not plan.sites:
        return None
    idx = [problem.index(s.site_id) for s in plan.sites]
    times = np.asarray(problem.times)[:, idx]
    if times.shape[0] != network.n_nodes:
        raise ValueError("the staging problem was built on another network")
    return times


def _add_change(m: folium.Map, network: RoadNetwork, c: StagingComparison, eta: np.ndarray, limit: float,
                t: float) -> None:
    from routing.coverage import Responder, eta_surface

    today_eta, _, _ = eta_surface(network, [Responder(s["id"], s["lat"], s["lon"]) for s in c.today_sites])
    now_ok, plan_ok = today_eta <= limit, eta <= limit
    node_cls = np.full(network.n_nodes, "none", dtype=object)
    node_cls[plan_ok & ~now_ok] = "gained"
    node_cls[now_ok & ~plan_ok] = "lost"
    node_cls[now_ok & plan_ok] = "kept"
    src, dst = (np.asarray(a) for a in network.edges)
    # The class of a street is its end nodes' class when they agree.
    edge_cls = np.where(node_cls[src] == node_cls[dst], node_cls[src], "none")
    lines = base.polylines_by_class(network, edge_cls, ["kept", "lost", "gained"])
    base.LinesLayer(lines, {"kept": {"color": _KEPT, "weight": 1.2}, "lost": {"color": _LOST, "weight": 2.4},
                            "gained": {"color": _GAINED, "weight": 2.4}},
                    name=f"Streets: change against today, within {t:g} min", show=False).add_to(m)


def _add_today(m: folium.Map, c: StagingComparison | None) -> None:
    if c is None or not c.today_sites:
        return
    group = folium.FeatureGroup(name=f"Today's staging sites ({len(c.today_sites)})", show=True)
    for s in c.today_sites:
        folium.Marker(
            [s["lat"], s["lon"]],
            icon=folium.DivIcon(html="<div style='width:14px;height:14px;box-sizing:border-box;background:#fff;"
                                     "border:3px solid #222;border-radius:2px'></div>",
                                icon_size=(14, 14), icon_anchor=(7, 7), class_name="cd-icon"),
            tooltip=base.esc(f"Today: {s['name']}"),
        ).add_to(group)
    group.add_to(m)


def _add_proposed(m: folium.Map, sites: list[StagedSite], t: float, coloured: bool) -> None:
    group = folium.FeatureGroup(name=f"Proposed sites ({len(sites)})", show=True)
    top = max((s.demand_served for s in sites), default=1.0) or 1.0
    for k, s in enumerate(sites):
        # Area proportional to the calls served, between 22 and 44 px across.
        size = int(round(22 + 22 * math.sqrt(max(s.demand_served, 0.0) / top)))
        color = _site_color(k) if coloured else _site_color(0)
        rows = [
            ("Kind", s.kind),
            ("Calls served a year (nearest site)", f"{s.demand_served:,.0f}"),
            (f"Calls within {t:g} min of it a year", f"{s.demand_covered:,.0f}"),
            ("Teams", str(s.teams)),
            ("Forced in", "yes" if s.fixed else "no"),
            ("Site id", s.site_id),
        ]
        folium.Marker(
            [s.lat, s.lon],
            icon=base.badge_icon(str(k + 1), color, size=size, border="#222222", border_width=2),
            tooltip=base.esc(f"{k + 1}. {s.name}: {s.demand_served:,.0f} calls a year"),
            popup=base.popup(f"{k + 1}. {s.name}", rows),
            z_index_offset=500,
        ).add_to(group)
    group.add_to(m)


def _panel(plan: StagingPlan) -> str:
    rows = []
    for k, s in enumerate(plan.sites):
        sw = base.raw(base.badge_html(str(k + 1), _site_color(k), size=18, border="#222222", border_width=1))
        rows.append([sw, s.name[:32], s.kind, f"{s.demand_served:,.0f}", f"{s.demand_covered:,.0f}"])
    body = base.table_html(["#", "Site", "Kind", "Serves / yr", f"Within {plan.minutes:g} min"], rows,
                           numeric=(3, 4))
    c = plan.comparison
    if c is not None and c.same_count is not None:
        same = c.same_count
        body += (f"<p style='margin:6px 0 0 0;white-space:normal'>With today's number of sites ({same['p']}) placed "
                 f"for the most coverage: {same['covered_share']:.0%} ({same['extra_covered_demand']:+,.0f} calls "
                 "a year against today).</p>")
    if plan.skipped_candidates:
        body += (f"<p style='color:#666'>{len(plan.skipped_candidates)} candidate sites off the road network "
                 "were left out.</p>")
    return body
