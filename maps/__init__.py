"""Folium maps of crisis-dispatch results: dispatch, fleet, coverage and staging.

Each ``*_map`` function takes the engine's result objects and returns a finished ``folium.Map``;
:func:`maps.base.save_map` writes it as one HTML file. With ``offline=True`` the page is
self-contained (Leaflet inlined from locally installed packages, no tiles, the city's outlines and
streets as the base); otherwise it uses the usual CDN assets and OpenStreetMap tiles. No engine logic
lives here: the maps only draw what ``routing`` computed.
"""

from __future__ import annotations

from maps.base import save_map

__all__ = ["save_map"]
