"""Dispatch map: the call, the suggested teams ranked with their routes, and why the others are not."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import folium

from maps import base
from maps.fleet import local_time_label, spread_offsets
from maps.style import (
    CALL_COLOR,
    INELIGIBLE_COLOR,
    RANK_COLORS,
    STALE_COLOR,
    STATUS_LABELS,
    TYPE_CODES,
    TYPE_LABELS,
    rank_color,
    value_of,
)

if TYPE_CHECKING:
    from routing.dispatch import Ineligible, Suggestion, SuggestionResult
    from routing.fleet import TeamState
    from routing.network import RoadNetwork, Route
    from routing.places import Places
    from routing.triage import Call

__all__ = ["dispatch_map", "REASON_LABELS"]

# Ineligibility codes of routing.dispatch, in words a dispatcher reads at a glance.
REASON_LABELS: dict[str, str] = {
    "wrong_type": "type not used for this call",
    "busy": "busy on another call",
    "out_of_service": "out of service",
    "off_shift": "off shift",
    "outside_hours": "outside service hours",
    "dedicated_mh_only": "dedicated car, mental-health calls only",
    "outside_area": "call outside its service area",
    "unreachable": "not on the road network",
    "lower_tier": "lower tier (a better-suited team can come)",
}



def _call_icon(text: str = "!") -> folium.DivIcon:
    """A map pin (tip on the call's location) with a short label."""
    size = 16 if len(text) == 1 else 12
    html_text = (
        "<div style='width:30px;height:30px;border-radius:50% 50% 50% 0;transform:rotate(-45deg);"
        f"background:{CALL_COLOR};border:3px solid #fff;box-shadow:0 1px 5px rgba(0,0,0,.6);"
        "display:flex;align-items:center;justify-content:center;box-sizing:border-box'>"
        f"<span style='transform:rotate(45deg);color:#fff;font:900 {size}px/1 Arial,sans-serif'>"
        f"{base.esc(text)}</span></div>"
    )
    # The pin's tip is its bottom-left corner, rotated to point down: 21 px below the box centre.
    return folium.DivIcon(html=html_text, icon_size=(30, 30), icon_anchor=(15, 36), class_name="cd-icon")


def _call_rows(call: Call) -> list[tuple[str, str]]:
    flags = [name.replace("_", " ") for name in ("mental_health", "safety_risk", "weapon", "needs_transport")
             if getattr(call, name, False)]
    where = ", ".join(x for x in (call.neighborhood, f"district {call.district}" if call.district else None) if x)
    return [
        ("Received", local_time_label(call.received)),
        ("Priority", str(call.priority)),
        ("Flags", ", ".join(flags) or "none"),
        ("Where", where or "outside the mapped neighborhoods"),
        ("Location", f"{call.lat:.5f}, {call.lon:.5f}"),
    ]


def _route_layers(route: Route) -> tuple[list[list[float]], list[list[list[float]]]]:
    """Split a route's path (lon/lat) into the street part and the off-street legs, as (lat, lon)."""
    pts = [[lat, lon] for lon, lat in route.path]
    if len(pts) < 3:  # no street part: both points snap to one node
        return [], [pts]
    street = pts[1:-1]
    legs = [pts[:2], pts[-2:]]
    return street, [leg for leg in legs if leg[0] != leg[1]]


def dispatch_map(
    results: SuggestionResult | Sequence[SuggestionResult],
    *,
    network: RoadNetwork,
    teams: Sequence[TeamState] | None = None,
    places: Places | None = None,
    offline: bool = False,
    routes: int | None = None,
    title: str | None = None,
    now: datetime | None = None,
) -> folium.Map:
    """Map of dispatch suggestions: one call in detail, or several calls side by side.

    Parameters
    ----------
    results
        One ``routing.dispatch.SuggestionResult`` (``call``, ``suggestions``, ``ineligible``,
        ``message``, ``to_geojson()`` for where the ineligible teams are), or a list of them. One call
        shows every suggestion and every team not suggested with its reason; several calls show each
        call with its suggestions, one layer per call.
    network
        The ``RoadNetwork`` (same travel-time profile as the suggestion) used to draw the routes.
    teams
        The ``TeamState`` list given to ``suggest``: where the teams not suggested are. Without it they
        are placed from ``result.to_geojson()``.
    places
        ``routing.places.Places`` for the neighborhood outlines (optional).
    offline
        Self-contained page without tiles.
    routes
        Draw the road route of this many best suggestions per call (0: none; default 3 for one call,
        1 for several).
    title
        Title panel heading (default ``"Call <id>: suggested teams"``).
    now
        Time shown as "as of" for several calls (default: the first result's ``now``).

    Returns
    -------
    folium.Map
        Finished (layer control added; assets inlined when offline).
    """
    many = list(results) if isinstance(results, Sequence) else [results]
    if not many:
        raise ValueError("dispatch map needs at least one suggestion result")
    if routes is None:
        routes = 3 if len(many) == 1 else 1
    if isinstance(routes, bool) or not isinstance(routes, int) or routes < 0:
        raise ValueError(f"routes must be a non-negative integer, got {routes!r}")
    if len(many) > 1:
        return _many_calls(many, network=network, places=places, offline=offline, routes=routes, title=title,
                           now=now)
    result = many[0]
    call = result.call
    suggestions = list(result.suggestions)
    others = _ineligible_positions(result, teams)
    drawn = suggestions[:routes]
    route_objs = [network.route((s.lat, s.lon), (call.lat, call.lon)) for s in drawn]

    # Frame the call and the routes a dispatcher compares, not the whole city.
    lats = [call.lat] + [p[1] for r in route_objs for p in r.path] + [s.lat for s in suggestions[:max(routes, 3)]]
    lons = [call.lon] + [p[0] for r in route_objs for p in r.path] + [s.lon for s in suggestions[:max(routes, 3)]]
    if not suggestions:
        # Nobody can come: show the nearest teams of the call's types, whatever holds them up.
        near = sorted((i for i in others if i[0].code != "wrong_type"),
                      key=lambda i: (i[1] - call.lat) ** 2 + ((i[2] - call.lon) * 0.74) ** 2)[:3]
        lats += [lat for _, lat, _ in near]
        lons += [lon for _, _, lon in near]
    # Never closer than about a kilometre around the call: the streets around it give the context.
    lats += [call.lat - 0.009, call.lat + 0.009]
    lons += [call.lon - 0.012, call.lon + 0.012]
    bounds = (min(lons), min(lats), max(lons), max(lats))
    head = title or f"Call {call.call_id}: suggested teams"
    sub = [base.esc(result.message)]
    if getattr(result, "fell_back", False):
        sub.insert(0, "<b style='color:#b2182b'>Fallback tier</b>")
    sub.append("received " + base.esc(local_time_label(call.received)))
    # The panels take the left and right thirds of a console screen; keep the routes between them.
    m = base.new_map(bounds, offline=offline, title=head, subtitle="<br>".join(sub), padding=(460, 30, 390, 30))
    base.add_city_base(m, places, network, offline=offline)

    _add_ineligible(m, others)
    _add_routes(m, drawn, route_objs)
    _add_suggestions(m, suggestions, result)
    call_group = folium.FeatureGroup(name="The call", show=True)
    folium.Marker(
        [call.lat, call.lon],
        icon=_call_icon("!"),
        tooltip=base.esc(f"Call {call.call_id}"),
        popup=base.popup(f"Call {call.call_id}", _call_rows(call)),
        z_index_offset=1000,
    ).add_to(call_group)
    call_group.add_to(m)

    base.add_legend(m, "Legend", _legend(result, len(drawn)))
    base.add_panel(m, "Suggested teams (fastest first)", _panel(result, others), position="bottomleft")
    return base.finish_map(m, offline=offline)


def _many_calls(results: Sequence[SuggestionResult], *, network: RoadNetwork, places: Places | None, offline: bool,
                routes: int, title: str | None, now: datetime | None) -> folium.Map:
    """Several calls: a numbered pin per call, its ranked teams and best routes, one layer per call."""
    plans = []
    for r in results:
        drawn = list(r.suggestions)[:routes]
        plans.append((r, drawn, [network.route((s.lat, s.lon), (r.call.lat, r.call.lon)) for s in drawn]))
    lats = [r.call.lat for r in results] + [s.lat for r in results for s in r.suggestions[:1]]
    lons = [r.call.lon for r in results] + [s.lon for r in results for s in r.suggestions[:1]]
    when = now or getattr(results[0], "now", None)
    served = sum(1 for r in results if r.suggestions)
    sub = f"{served} of {len(results)} calls have an eligible team"
    if when is not None:
        sub += " &middot; as of " + base.esc(local_time_label(when))
    m = base.new_map((min(lons), min(lats), max(lons), max(lats)), offline=offline,
                     title=title or f"{len(results)} calls: suggested teams", subtitle=sub,
                     padding=(460, 30, 390, 30))
    base.add_city_base(m, places, network, offline=offline)
    for k, (r, drawn, route_objs) in enumerate(plans, start=1):
        call = r.call
        best = r.suggestions[0] if r.suggestions else None
        label = (f"Call {k} {call.call_id}: " + (f"{best.team_id}, {base.fmt_duration(best.eta_s)}" if best
                                                  else "no eligible team"))
        group = folium.FeatureGroup(name=base.esc(label), show=True)
        for s, route in reversed(list(zip(drawn, route_objs, strict=True))):
            street, legs = _route_layers(route)
            tip = base.esc(f"Call {k}, #{s.rank} {s.team_id}: {base.fmt_duration(route.travel_time_s)}")
            if street:
                folium.PolyLine(street, color="#ffffff", weight=8, opacity=0.9, interactive=False).add_to(group)
                folium.PolyLine(street, color=rank_color(s.rank), weight=5, opacity=0.95, tooltip=tip).add_to(group)
            for leg in legs:
                folium.PolyLine(leg, color=rank_color(s.rank), weight=3, dash_array="4 6", tooltip=tip).add_to(group)
        for s in r.suggestions:
            folium.Marker(
                [s.lat, s.lon],
                icon=base.badge_icon(str(s.rank), rank_color(s.rank), size=24,
                                     border=STALE_COLOR if s.stale else "#ffffff",
                                     border_style="dashed" if s.stale else "solid"),
                tooltip=base.esc(f"Call {k} ({call.call_id}), #{s.rank} {s.team_id}: ETA "
                                 f"{base.fmt_duration(s.eta_s)}"),
                popup=base.popup(f"Call {k}: #{s.rank} {s.name} ({s.team_id})", _suggestion_rows(s, r)),
            ).add_to(group)
        folium.Marker(
            [call.lat, call.lon], icon=_call_icon(str(k)),
            tooltip=base.esc(f"Call {k}: {call.call_id}"),
            popup=base.popup(f"Call {k}: {call.call_id}", _call_rows(call) + [("Result", r.message)]),
            z_index_offset=1000,
        ).add_to(group)
        group.add_to(m)
    rows = []
    for k, r in enumerate(results, start=1):
        best = r.suggestions[0] if r.suggestions else None
        note = "fallback tier" if getattr(r, "fell_back", False) else ""
        if best is not None and best.stale:
            note = ", ".join(x for x in (note, "position stale") if x)
        rows.append([k, r.call.call_id, r.call.neighborhood or "", best.team_id if best else "none",
                     base.fmt_clock(best.eta_s) if best else "-", note])
    base.add_legend(m, "Legend", [
        base.LegendSection("Symbols", [
            base.LegendItem("Call (number = row of the table)", CALL_COLOR, kind="circle", border="#ffffff"),
            *rank_legend(max(len(r.suggestions) for r in results), of="of that call"),
            base.LegendItem("Position stale (dashed amber ring)", "#777777", kind="badge", border=STALE_COLOR),
            base.LegendItem("Fastest road route (colour = rank)", rank_color(1), kind="line"),
        ], note="Each call is a layer: untick it in the list to hide it."),
    ])
    base.add_panel(m, "Calls and their fastest team",
                   base.table_html(["#", "Call", "Where", "Best team", "ETA", "Note"], rows,
                                   numeric=(0, 4)),
                   position="bottomleft")
    return base.finish_map(m, offline=offline)


def _ineligible_positions(result: SuggestionResult, teams: Sequence[TeamState] | None
                          ) -> list[tuple[Ineligible, float, float]]:
    """(Ineligible, lat, lon) for each team not suggested whose position is known."""
    where: dict[str, tuple[float, float]] = {}
    if teams is not None:
        where = {ts.team_id: (ts.lat, ts.lon) for ts in teams}
    else:
        for f in result.to_geojson()["features"]:
            if f["properties"].get("role") == "ineligible":
                lon, lat = f["geometry"]["coordinates"]
                where[f["properties"]["team_id"]] = (lat, lon)
    return [(i, *where[i.team_id]) for i in result.ineligible if i.team_id in where]


def _add_routes(m: folium.Map, drawn: Sequence[Suggestion], route_objs: Sequence[Route]) -> None:
    if not drawn:
        return
    group = folium.FeatureGroup(name=f"Routes of the {len(drawn)} fastest", show=True)
    # Worst first, so the best route is drawn on top where routes share streets.
    for s, r in reversed(list(zip(drawn, route_objs, strict=True))):
        color = rank_color(s.rank)
        weight = 7 if s.rank == 1 else 5
        street, legs = _route_layers(r)
        tip = base.esc(f"#{s.rank} {s.team_id}: {base.fmt_duration(r.travel_time_s)}, "
                       f"{base.fmt_distance(r.distance_m)}")
        if street:
            folium.PolyLine(street, color="#ffffff", weight=weight + 4, opacity=0.9, interactive=False).add_to(group)
            folium.PolyLine(street, color=color, weight=weight, opacity=0.95, tooltip=tip).add_to(group)
        for leg in legs:
            folium.PolyLine(leg, color=color, weight=3, opacity=0.9, dash_array="4 6", tooltip=tip).add_to(group)
    group.add_to(m)


def _suggestion_rows(s: Suggestion, result: SuggestionResult) -> list[tuple[str, str]]:
    ttype = value_of(s.team_type)
    age = base.fmt_age(s.position_age_s)
    position = f"STALE: reported {age} (older than {result.stale_after_s / 60:.0f} min)" if s.stale \
        else f"reported {age}"
    return [
        ("ETA", base.fmt_duration(s.eta_s)),
        ("Road distance", base.fmt_distance(s.distance_m)),
        ("Type", TYPE_LABELS.get(ttype, ttype)),
        ("Status", STATUS_LABELS.get(value_of(s.status), value_of(s.status))),
        ("Position", position),
        ("Tier", s.tier),
    ]


def _add_suggestions(m: folium.Map, suggestions: Sequence[Suggestion], result: SuggestionResult) -> None:
    group = folium.FeatureGroup(name=f"Suggested teams ({len(suggestions)})", show=True)
    offsets = spread_offsets([(s.lat, s.lon) for s in suggestions])
    for s, off in zip(suggestions, offsets, strict=True):
        stale = bool(s.stale)
        icon = base.badge_icon(
            str(s.rank), rank_color(s.rank), size=30 if s.rank == 1 else 26,
            border=STALE_COLOR if stale else "#ffffff", border_width=3 if stale else 2,
            border_style="dashed" if stale else "solid", offset=off,
        )
        folium.Marker(
            [s.lat, s.lon],
            icon=icon,
            tooltip=base.esc(f"#{s.rank} {s.team_id}: ETA {base.fmt_duration(s.eta_s)}"
                             + (" (position stale)" if stale else "")),
            popup=base.popup(f"#{s.rank} {s.name} ({s.team_id})", _suggestion_rows(s, result)),
            z_index_offset=500 - s.rank,
        ).add_to(group)
    group.add_to(m)


def _add_ineligible(m: folium.Map, others: Sequence[tuple[Ineligible, float, float]]) -> None:
    if not others:
        return
    group = folium.FeatureGroup(name=f"Not suggested ({len(others)})", show=True)
    offsets = spread_offsets([(lat, lon) for _, lat, lon in others])
    for (i, lat, lon), off in zip(others, offsets, strict=True):
        ttype = value_of(i.team_type)
        folium.Marker(
            [lat, lon],
            icon=base.badge_icon(TYPE_CODES.get(ttype, ttype[:3].upper()), INELIGIBLE_COLOR, size=20,
                                 border="#ffffff", offset=off),
            tooltip=base.esc(f"{i.team_id}: {REASON_LABELS.get(i.code, i.code)}"),
            popup=base.popup(f"{i.team_id} (not suggested)", [
                ("Type", TYPE_LABELS.get(ttype, ttype)),
                ("Why", REASON_LABELS.get(i.code, i.code)),
                ("Detail", i.reason),
            ]),
        ).add_to(group)
    group.add_to(m)


def rank_legend(n: int, *, of: str = "") -> list[base.LegendItem]:
    """Legend items for every rank badge drawn when ``n`` teams are ranked: ``#1`` to ``#4`` one by one
    (each its own colour), then one item for ``#5`` to ``#n``, which share the last colour of
    :data:`maps.style.RANK_COLORS` and carry their own number."""
    last = len(RANK_COLORS)
    suffix = f" {of}" if of else ""
    items = [base.LegendItem(f"#{k} " + ("fastest" if k == 1 else "next fastest") + suffix, rank_color(k),
                             kind="badge", text=str(k)) for k in range(1, min(n, last - 1) + 1)]
    if n >= last:
        span = f"#{last}" if n == last else f"#{last} to #{n}"
        items.append(base.LegendItem(f"{span} (badge shows the rank){suffix}", rank_color(last), kind="badge",
                                     text=str(last)))
    return items


def _legend(result: SuggestionResult, n_routes: int) -> list[base.LegendSection]:
    ranks = rank_legend(len(result.suggestions))
    ranks.append(base.LegendItem("Position stale (dashed amber ring)", "#777777", kind="badge", border=STALE_COLOR))
    symbols = [
        base.LegendItem("The call", CALL_COLOR, kind="circle", border="#ffffff"),
        base.LegendItem("Not suggested (type letters; click for the reason)", INELIGIBLE_COLOR, kind="badge",
                        text="PD"),
    ]
    if n_routes:
        symbols += [
            base.LegendItem("Fastest road route (colour = rank)", rank_color(1), kind="line"),
            base.LegendItem("Off-road leg to / from the nearest street", rank_color(1), kind="dashed"),
        ]
    return [
        base.LegendSection("Suggested teams, by ETA", ranks),
        base.LegendSection("Symbols", symbols, note="ETA = road travel time plus the walk-up legs, "
                                                    "in the suggestion's travel-time profile."),
    ]


def _panel(result: SuggestionResult, others: Sequence[tuple[Ineligible, float, float]]) -> str:
    rows = []
    for s in result.suggestions:
        sw = base.raw(base.badge_html(str(s.rank), rank_color(s.rank), size=18))
        age = base.fmt_age(s.position_age_s) + (" STALE" if s.stale else "")
        rows.append([sw, s.team_id, TYPE_CODES.get(value_of(s.team_type), value_of(s.team_type)),
                     base.fmt_clock(s.eta_s), base.fmt_distance(s.distance_m), age])
    parts = []
    if rows:
        parts.append(base.table_html(["#", "Team", "Type", "ETA", "Road", "Position"], rows,
                                     numeric=(3, 4)))
    else:
        parts.append("<p><b>No eligible team.</b></p>")
    if getattr(result, "omitted", 0):
        parts.append(f"<p>{result.omitted} more eligible teams not listed.</p>")
    reasons = Counter(REASON_LABELS.get(i.code, i.code) for i in result.ineligible)
    if reasons:
        text = "; ".join(f"{base.esc(k)}: {v}" for k, v in reasons.most_common())
        parts.append(f"<p style='margin:6px 0 0 0;color:#444'><b>Not suggested ({len(result.ineligible)})</b>"
                     f" &ndash; {text}</p>")
    missing = len(result.ineligible) - len(others)
    if missing > 0:
        parts.append(f"<p style='color:#777'>{missing} of them have no known position (not drawn).</p>")
    return "".join(parts)
