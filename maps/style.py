"""Colours, codes and labels shared by the maps, so a team looks the same on every map."""

from __future__ import annotations

from typing import Any

# Short codes printed inside team badges (no icon font offline).
TYPE_CODES: dict[str, str] = {
    "co_response": "CR",
    "emt_clinician": "EC",
    "community": "CM",
    "police": "PD",
    "ems": "EMS",
}
TYPE_LABELS: dict[str, str] = {
    "co_response": "Co-response (officer + clinician)",
    "emt_clinician": "EMT + clinician",
    "community": "Community responders",
    "police": "Police patrol",
    "ems": "EMS ambulance",
}
# Categorical colours (Okabe-Ito, distinguishable with colour-vision deficiency).
TYPE_COLORS: dict[str, str] = {
    "co_response": "#0072B2",
    "emt_clinician": "#009E73",
    "community": "#CC79A7",
    "police": "#3b3b98",
    "ems": "#D55E00",
}

# Status: green = can be sent now, warm = busy, grey = not working.
STATUS_COLORS: dict[str, str] = {
    "available": "#1a9641",
    "returning": "#7fbf3f",
    "en_route": "#f39c12",
    "on_scene": "#d7301f",
    "transporting": "#99000d",
    "out_of_service": "#6b6b6b",
    "off_shift": "#b3b3b3",
}
STATUS_LABELS: dict[str, str] = {
    "available": "Available",
    "returning": "Returning (dispatchable)",
    "en_route": "En route to a call",
    "on_scene": "On scene",
    "transporting": "Transporting",
    "out_of_service": "Out of service",
    "off_shift": "Off shift",
}
DISPATCHABLE_STATUSES = ("available", "returning")

# Suggestion ranks: the first choice stands out, later ones fade.
# Categorical rather than a light-to-dark ramp: routes of the first three must be told apart at a glance.
RANK_COLORS = ("#1b7837", "#2166ac", "#762a83", "#b35806", "#4d4d4d")
STALE_COLOR = "#f0a30a"
INELIGIBLE_COLOR = "#9e9e9e"
CALL_COLOR = "#c51b7d"

SITE_KIND_COLORS: dict[str, str] = {
    "police": "#3b3b98",
    "fire": "#b2182b",
    "hospital": "#1f78b4",
    "community": "#CC79A7",
    "current": "#555555",
    "chosen": "#e08214",
}


def value_of(x: Any) -> str:
    """The plain string of an enum member or string (``TeamType.police`` -> ``"police"``)."""
    return str(getattr(x, "value", x))


def rank_color(rank: int) -> str:
    """Colour of the suggestion ranked ``rank`` (1 = best)."""
    return RANK_COLORS[min(max(rank, 1), len(RANK_COLORS)) - 1]


def sequential(value: float, lo: float, hi: float, stops: tuple[str, ...]) -> str:
    """Colour of ``value`` on a stepped scale from ``lo`` to ``hi`` (clamped)."""
    if hi <= lo:
        return stops[-1]
    t = min(max((value - lo) / (hi - lo), 0.0), 1.0)
    return stops[min(int(t * len(stops)), len(stops) - 1)]


# Travel time bands (minutes) for isochrones and ETA surfaces: green is quick, purple is slow.
ETA_BANDS_MIN: tuple[float, ...] = (4, 8, 12, 16)
ETA_BAND_COLORS: tuple[str, ...] = ("#1a9850", "#a6d96a", "#fee08b", "#f46d43", "#762a83")
# Coverage share (0-1): red = poorly covered, blue = well covered.
SHARE_COLORS: tuple[str, ...] = ("#b2182b", "#ef8a62", "#fddbc7", "#d1e5f0", "#67a9cf", "#2166ac")
# Uncovered demand: light to dark red.
GAP_COLORS: tuple[str, ...] = ("#fff5f0", "#fcbba1", "#fb6a4a", "#cb181d", "#67000d")
# Demand heat: one hue (purple), light to dark.
HEAT_COLORS: tuple[str, ...] = ("#e7d4e8", "#c2a5cf", "#9970ab", "#40004b")
