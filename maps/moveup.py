"""Move-up map: uncovered demand per neighborhood before and after a plan, and the moves as arrows.

Two layers of neighborhood polygons shaded by the demand (expected calls a year) left with no free team
within the standard, "before" and "after" (toggle in the layer control), the free teams, and one line per
move from the team to its post with its travel time and gain. Offline pages load nothing remote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import folium

from maps import base
from maps.style import TYPE_CODES, TYPE_COLORS
from routing.units import format_eta

if TYPE_CHECKING:
    from routing.fleet import TeamState
    from routing.network import RoadNetwork
    from routing.places import Places

__all__ = ["moveup_map"]

_SHADES = ("#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15")
_EDGES = (10.0, 50.0, 150.0, 300.0)


def _shade(v: float) -> str:
    return _SHADES[sum(v > e for e in _EDGES)]


def moveup_map(plan: Mapping[str, Any], teams: Sequence[TeamState], *, network: RoadNetwork | None,
               places: Places | None, offline: bool = True) -> folium.Map:
    """Folium map of a move-up plan (``MoveUpPlan.to_dict()`` or a recorded proposal)."""
    if network is not None:
        lon_min, lat_min, lon_max, lat_max = network.bbox
    else:
        lats = [t.lat for t in teams] or [42.33]
        lons = [t.lon for t in teams] or [-71.06]
        lon_min, lat_min, lon_max, lat_max = min(lons), min(lats), max(lons), max(lats)
    before = sum(plan["coverage_before"].values())
    after = sum(plan["coverage_after"].values())
    m = base.new_map((lon_min, lat_min, lon_max, lat_max), offline=offline, title="Move-up",
                     subtitle=base.esc(f"expected coverage {before:.0f} -> {after:.0f} calls a year within "
                                       f"{plan['settings']['minutes']:g} min, {len(plan['moves'])} move(s)"))
    base.add_city_base(m, places, network, offline=offline)
    if places is not None:
        for label, key, show in (("uncovered before", "uncovered_before_by_neighborhood", False),
                                 ("uncovered after", "uncovered_after_by_neighborhood", True)):
            values = plan.get(key, {})
            group = folium.FeatureGroup(name=label, show=show)
            for name, geom in places.neighborhoods.items():
                v = float(values.get(name, 0.0))
                if v <= 0:
                    continue
                folium.GeoJson(base.geojson_of(geom), style_function=lambda _, c=_shade(v): {
                    "fillColor": c, "color": c, "weight": 1, "fillOpacity": 0.55},
                    tooltip=f"{name}: {v:.0f} calls a year uncovered ({label})").add_to(group)
            group.add_to(m)
    moved = {mv["team_id"] for mv in plan["moves"]}
    teams_layer = folium.FeatureGroup(name="free teams")
    for ts in teams:
        t = ts.team.team_type.value
        icon = base.badge_icon(TYPE_CODES.get(t, t[:2].upper()), TYPE_COLORS.get(t, "#555"))
        folium.Marker([ts.lat, ts.lon], icon=icon,
                      tooltip=f"{ts.team_id} ({ts.status.value})" + (" - moves" if ts.team_id in moved else "")
                      ).add_to(teams_layer)
    teams_layer.add_to(m)
    moves_layer = folium.FeatureGroup(name="moves")
    for mv in plan["moves"]:
        a = [mv["from"]["lat"], mv["from"]["lon"]]
        b = [mv["to"]["lat"], mv["to"]["lon"]]
        folium.PolyLine([a, b], color="#2166ac", weight=4, dash_array="8 6",
                        tooltip=f"{mv['team_id']} -> {mv['to']['name']}: {format_eta(mv['travel_s'])}, "
                                f"+{mv['coverage_gain_alone']:.0f} calls a year").add_to(moves_layer)
        folium.CircleMarker(b, radius=7, color="#2166ac", fill=True, tooltip=mv["to"]["name"]).add_to(moves_layer)
    moves_layer.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    if offline:
        from maps.assets import make_offline

        make_offline(m)
    return m
