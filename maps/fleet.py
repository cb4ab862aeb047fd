"""Fleet map: every team by type and status, the staging sites, and the service areas outlined."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import folium
import shapely

from maps import base
from maps.style import (
    DISPATCHABLE_STATUSES,
    SITE_KIND_COLORS,
    STALE_COLOR,
    STATUS_COLORS,
    STATUS_LABELS,
    TYPE_CODES,
    TYPE_COLORS,
    TYPE_LABELS,
    value_of,
)

if TYPE_CHECKING:
    from routing.fleet import Team, TeamState
    from routing.network import RoadNetwork
    from routing.places import Places

__all__ = ["fleet_map", "spread_offsets", "local_time_label"]

LOCAL_TZ = "America/New_York"
_AREA_DASH = "8 6"
_SITE_HTML = ("<div style='width:12px;height:12px;box-sizing:border-box;background:#fff;"
              "border:2.5px solid #222;border-radius:2px'></div>")


def local_time_label(when: datetime) -> str:
    """``"Tue 2024-05-07 14:05 (Boston time)"``."""
    local = when.astimezone(ZoneInfo(LOCAL_TZ))
    return local.strftime("%a %Y-%m-%d %H:%M") + " (Boston time)"


def spread_offsets(points: Sequence[tuple[float, float]], *, radius_px: float = 15.0,
                   digits: int = 4) -> list[tuple[float, float]]:
    """Pixel offsets that fan out markers sharing a location (about 10 m) around it.

    Teams staged at the same station would otherwise hide one another exactly. The markers stay
    anchored at their true position; only the drawing moves, by ``(dx, dy)`` pixels.

    Parameters
    ----------
    points
        ``(lat, lon)`` of each marker.
    radius_px
        Ring radius for two markers; it grows with the number sharing the spot.
    digits
        Decimal places that define "the same location".

    Returns
    -------
    list of (dx, dy)
        ``(0, 0)`` for a marker alone at its spot.
    """
    groups: dict[tuple[float, float], list[int]] = defaultdict(list)
    for i, (lat, lon) in enumerate(points):
        groups[(round(lat, digits), round(lon, digits))].append(i)
    out = [(0.0, 0.0)] * len(points)
    for members in groups.values():
        k = len(members)
        if k == 1:
            continue
        r = radius_px + 3.0 * (k - 2)
        for j, i in enumerate(members):
            angle = -math.pi / 2 + 2 * math.pi * j / k
            out[i] = (r * math.cos(angle), r * math.sin(angle))
    return out


def team_badge(code: str, fill: str, *, dedicated: bool, offset: tuple[float, float] = (0.0, 0.0),
               size: int = 26, text_color: str = "#ffffff", stale: bool = False) -> folium.DivIcon:
    """Badge for a team: type code on a coloured disc; a thick black ring marks a dedicated team, a
    dashed amber ring a stale position."""
    border, width = ("#111111", 3) if dedicated else ("#ffffff", 2)
    style = "solid"
    if stale:
        border, width, style = STALE_COLOR, 3, "dashed"
    return base.badge_icon(code, fill, border=border, border_width=width, size=size, text_color=text_color,
                           offset=offset, border_style=style)


def _top_point(geom: shapely.Geometry) -> tuple[float, float]:
    """(lat, lon) of the northernmost vertex of a shape."""
    coords = shapely.get_coordinates(geom)
    lon, lat = coords[coords[:, 1].argmax()]
    return float(lat), float(lon)


def _area_label(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "citywide"


def fleet_map(
    states: Sequence[TeamState],
    *,
    places: Places | None = None,
    network: RoadNetwork | None = None,
    now: datetime | None = None,
    offline: bool = False,
    stale_after_s: float | None = None,
    title: str = "Fleet status",
) -> folium.Map:
    """Map of the fleet: one badge per team, coloured by status, labelled with its type.

    Parameters
    ----------
    states
        ``routing.fleet.TeamState`` objects (``team``, ``status``, ``lat``, ``lon``, ``position_time``).
    places
        ``routing.places.Places`` for neighborhoods, service areas and candidate sites (optional).
    network
        ``RoadNetwork``: the street base of an offline map and the map's extent (optional).
    now
        Reference time for "position reported N min ago" (default: the current time).
    offline
        Self-contained page without tiles.
    stale_after_s
        Positions reported longer ago than this are flagged stale (dashed amber ring); None: no flag.
    title
        Title panel heading.

    Returns
    -------
    folium.Map
        Finished (layer control added; assets inlined when offline).
    """
    now = now or datetime.now(UTC)
    states = list(states)
    lats = [s.lat for s in states]
    lons = [s.lon for s in states]
    boundary = getattr(places, "boundary", None)  # None without places
    if network is not None:
        bounds = network.bbox
    elif boundary is not None:
        bounds = tuple(boundary.bounds)
    elif states:
        bounds = (min(lons), min(lats), max(lons), max(lats))
    else:
        raise ValueError("fleet map needs teams, a network or places to know where to look")
    statuses = Counter(value_of(s.status) for s in states)
    n_disp = sum(statuses[s] for s in DISPATCHABLE_STATUSES)
    subtitle = (f"{len(states)} teams, <b>{n_disp} dispatchable</b> &middot; as of "
                f"{base.esc(local_time_label(now))}")
    m = base.new_map(bounds, offline=offline, title=title, subtitle=subtitle)
    base.add_city_base(m, places, network, offline=offline)

    _add_service_areas(m, states, places)
    _add_sites(m, states, places)
    n_stale = _add_teams(m, states, now, stale_after_s)

    base.add_legend(m, "Legend", _legend_sections(statuses, n_stale if stale_after_s is not None else None,
                                                  stale_after_s))
    base.add_panel(m, "Teams by type", _summary_table(states), position="bottomleft")
    return base.finish_map(m, offline=offline)


def _add_service_areas(m: folium.Map, states: Sequence[TeamState], places: Places | None) -> None:
    if places is None:
        return
    areas: dict[tuple[str, ...], list[Team]] = defaultdict(list)
    for s in states:
        if s.team.service_area:
            areas[tuple(s.team.service_area)].append(s.team)
    # Dedicated areas (the pilot districts) and the others in separate layers: the former decide which
    # car may take a call at all, the latter only where a team prefers to work.
    for dedicated in (True, False):
        chosen = sorted(
            ((names, teams) for names, teams in areas.items() if any(t.dedicated for t in teams) == dedicated),
            key=lambda kv: kv[1][0].team_id,
        )
        if not chosen:
            continue
        kind = "dedicated teams" if dedicated else "other teams"
        group = folium.FeatureGroup(name=f"Service areas, {kind} ({len(chosen)})", show=True)
        for names, teams in chosen:
            geom = places.area_geometry(list(names))
            color = TYPE_COLORS.get(value_of(teams[0].team_type), "#333")
            who = ", ".join(t.team_id for t in teams)
            folium.GeoJson(
                {"type": "Feature", "properties": {}, "geometry": base.geojson_of(geom)},
                style_function=lambda _f, c=color, d=dedicated: {
                    "color": c, "weight": 3.5 if d else 2.0, "dashArray": None if d else _AREA_DASH,
                    "fillColor": c, "fillOpacity": 0.08 if d else 0.04,
                },
                tooltip=base.esc(f"Service area of {who}: {_area_label(names)}"),
                pane="cd-areas",
            ).add_to(group)
            if dedicated:
                # Name the pilot district just above its northern edge, clear of the badges inside.
                lat, lon = _top_point(geom)
                folium.Marker(
                    [lat, lon],
                    icon=folium.DivIcon(
                        html=f"<div class='cd-label' style='color:{color};text-align:center'>"
                             f"{base.esc(who)} area</div>",
                        icon_size=(120, 14), icon_anchor=(60, 16), class_name="cd-label",
                    ),
                    interactive=False,
                ).add_to(group)
        group.add_to(m)


def _add_sites(m: folium.Map, states: Sequence[TeamState], places: Places | None) -> None:
    bases: dict[tuple[str, float, float], list[str]] = defaultdict(list)
    for s in states:
        t = s.team
        bases[(t.base_name, round(t.base_lat, 6), round(t.base_lon, 6))].append(t.team_id)
    group = folium.FeatureGroup(name=f"Staging sites in use ({len(bases)})", show=True)
    for (name, lat, lon), ids in sorted(bases.items()):
        folium.Marker(
            [lat, lon],
            icon=folium.DivIcon(html=_SITE_HTML, icon_size=(12, 12), icon_anchor=(6, 6), class_name="cd-icon"),
            tooltip=base.esc(f"Staging site {name}: {', '.join(ids)}"),
        ).add_to(group)
    group.add_to(m)
    if places is None:
        return
    sites = places.sites()
    if not sites:
        return
    cand = folium.FeatureGroup(name=f"Candidate sites ({len(sites)})", show=False)
    for site in sites:
        folium.CircleMarker(
            [site.lat, site.lon], radius=4, color=SITE_KIND_COLORS.get(site.kind, "#555"), weight=1.5,
            fill=True, fill_opacity=0.6, tooltip=base.esc(f"{site.name} ({site.kind}, {site.site_id})"),
        ).add_to(cand)
    cand.add_to(m)


def _add_teams(m: folium.Map, states: Sequence[TeamState], now: datetime, stale_after_s: float | None) -> int:
    offsets = spread_offsets([(s.lat, s.lon) for s in states])
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(states):
        by_type[value_of(s.team.team_type)].append(i)
    order = [t for t in TYPE_CODES if t in by_type] + sorted(t for t in by_type if t not in TYPE_CODES)
    n_stale = 0
    for ttype in order:
        idx = by_type[ttype]
        n_disp = sum(value_of(states[i].status) in DISPATCHABLE_STATUSES for i in idx)
        label = f"{TYPE_LABELS.get(ttype, ttype)} ({len(idx)}, {n_disp} dispatchable)"
        group = folium.FeatureGroup(name=label, show=True)
        for i in idx:
            s = states[i]
            t = s.team
            status = value_of(s.status)
            age = s.position_age_s(now)
            stale = stale_after_s is not None and age > stale_after_s
            n_stale += stale
            position = base.fmt_age(age)
            if stale and stale_after_s is not None:
                position = f"STALE: reported {position} (older than {stale_after_s / 60:.0f} min)"
            rows = [
                ("Team", t.team_id),
                ("Type", TYPE_LABELS.get(ttype, ttype)),
                ("Status", STATUS_LABELS.get(status, status)),
                ("Position", position),
                ("Base", t.base_name),
                ("Serves", ("mental-health calls only, " if t.dedicated else "") + _area_label(t.service_area)),
            ]
            shift = getattr(t, "shift", None)
            if shift is not None:
                rows.append(("Shift", shift.label()))
            folium.Marker(
                [s.lat, s.lon],
                icon=team_badge(TYPE_CODES.get(ttype, ttype[:3].upper()), STATUS_COLORS.get(status, "#555"),
                                dedicated=t.dedicated, offset=offsets[i], stale=stale,
                                text_color="#222222" if status in ("off_shift", "returning") else "#ffffff"),
                tooltip=base.esc(f"{t.team_id}: {STATUS_LABELS.get(status, status)}"
                                 + (" (position stale)" if stale else "")),
                popup=base.popup(t.name, rows),
            ).add_to(group)
        group.add_to(m)
    return n_stale


def _legend_sections(statuses: Counter[str], n_stale: int | None,
                     stale_after_s: float | None) -> list[base.LegendSection]:
    status_items = [
        base.LegendItem(f"{STATUS_LABELS[s]} ({statuses.get(s, 0)})", STATUS_COLORS[s], kind="badge",
                        border="#ffffff")
        for s in STATUS_COLORS
    ]
    type_items = [base.LegendItem(TYPE_LABELS[t], "#555555", kind="badge", text=TYPE_CODES[t], border="#fff")
                  for t in TYPE_CODES]
    other = [
        base.LegendItem("Dedicated team (mental-health calls, own area only)", "#555555", kind="badge",
                        border="#111111"),
        base.LegendItem("Staging site", "#ffffff", kind="square", border="#222222"),
        *([base.LegendItem(f"Position older than {stale_after_s / 60:.0f} min ({n_stale})", "#555555",
                           kind="badge", border=STALE_COLOR)] if n_stale is not None and stale_after_s else []),
        base.LegendItem("Service area, dedicated team", TYPE_COLORS["co_response"], kind="line"),
        base.LegendItem("Service area, other team", TYPE_COLORS["community"], kind="dashed"),
    ]
    return [
        base.LegendSection("Badge colour: status (count)", status_items),
        base.LegendSection("Badge letters: team type", type_items),
        base.LegendSection("Other symbols", other,
                           note="Badges at one station are fanned out around it. Click a badge for details."),
    ]


def _summary_table(states: Sequence[TeamState]) -> str:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for s in states:
        counts[value_of(s.team.team_type)][value_of(s.status)] += 1
    rows = []
    for ttype in [t for t in TYPE_CODES if t in counts] + sorted(t for t in counts if t not in TYPE_CODES):
        c = counts[ttype]
        busy = sum(v for k, v in c.items() if k in ("en_route", "on_scene", "transporting"))
        off = sum(v for k, v in c.items() if k in ("out_of_service", "off_shift"))
        disp = sum(c[k] for k in DISPATCHABLE_STATUSES)
        rows.append([TYPE_LABELS.get(ttype, ttype), sum(c.values()), disp, busy, off])
    return base.table_html(["Type", "Teams", "Dispatchable", "Busy", "Off / out"], rows, numeric=(1, 2, 3, 4))
