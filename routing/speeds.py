"""The travel-time model: posted speeds, class defaults, response mode and hour of day.

The model is read from a TOML file (``data/speeds.toml`` by default) that a planner can edit; every
number in it is documented there with its source or stated as an assumption.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import overload
from zoneinfo import ZoneInfo

import numpy as np

from routing.config import project_data_path
from routing.errors import InvalidInput

MPH_TO_MPS = 0.44704
KPH_TO_MPH = 0.621371
KNOT_TO_MPH = 1.150779
MODES = ("emergent", "non_emergent")
#: Boston's time zone: hour-of-day factors and shifts are read in local time.
LOCAL_TZ = ZoneInfo("America/New_York")


def local_hour(when: datetime | None = None) -> int:
    """Local (America/New_York) hour 0-23 of a tz-aware time; ``None`` is now."""
    when = when or datetime.now(UTC)
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput(f"time {when.isoformat()} has no UTC offset", field="at")
    return when.astimezone(LOCAL_TZ).hour


@dataclass(frozen=True)
class SpeedModel:
    """Parameters of the travel-time model. Build with :func:`load_speeds`."""

    class_default_mph: dict[str, float]
    class_factor: dict[str, float]
    mode_factor: dict[str, float]
    #: ``{group: {hour: factor}}`` per group of road classes (``hour_group``); a flat ``{hour: factor}``
    #: applies to every class.
    hour_factor: dict
    default_mode: str = "non_emergent"
    csv_maxspeed_unit: str = "mph"
    off_network_speed_mph: float = 10.0
    off_network_detour: float = 1.3
    boundary_tolerance_m: float = 250.0
    max_snap_m: float = 400.0
    hour_group: dict[str, str] = field(default_factory=dict)
    call_excluded_classes: tuple[str, ...] = ("motorway", "motorway_link", "trunk_link")
    exclude_tunnels: bool = True
    digest: str = field(default="", compare=False)

    def road_class(self, highway: object) -> str:
        """The known class of an OSM ``highway`` value (``other`` when unknown)."""
        return _normalise_class(highway, self.class_default_mph)

    def hour_factors(self, classes: np.ndarray | list[str], hour: int | None) -> np.ndarray:
        """Speed factor of each road class at a local hour (1.0 for every class when ``hour`` is None)."""
        classes = list(classes)
        if hour is None:
            return np.ones(len(classes))
        _check_hour(hour)
        flat = all(isinstance(v, (int, float)) for v in self.hour_factor.values())
        if flat:
            return np.full(len(classes), float(self.hour_factor[int(hour)]))
        out = np.empty(len(classes))
        for k, c in enumerate(classes):
            group = self.hour_group.get(c, self.hour_group.get("other", "local"))
            out[k] = self.hour_factor[group][int(hour)]
        return out

    def base_speed_mps(self, highway: np.ndarray, maxspeed_mph: np.ndarray) -> np.ndarray:
        """Speed (m/s) per edge before mode and hour factors: posted (or class default) x class factor."""
        classes = np.asarray([_normalise_class(h, self.class_default_mph) for h in highway], dtype=object)
        default = np.array([self.class_default_mph[c] for c in classes], dtype=float)
        factor = np.array([self.class_factor.get(c, self.class_factor["other"]) for c in classes])
        posted = np.asarray(maxspeed_mph, dtype=float)
        mph = np.where(np.isfinite(posted) & (posted > 0), posted, default)
        return mph * factor * MPH_TO_MPS

    def mode_speed_factor(self, mode: str | None = None) -> float:
        """Speed multiplier of a response mode (``None``: the default mode)."""
        mode = mode or self.default_mode
        if mode not in self.mode_factor:
            raise InvalidInput(f"unknown response mode {mode!r}; expected one of {sorted(self.mode_factor)}",
                               field="mode")
        return self.mode_factor[mode]

    @overload
    def off_network_time_s(self, distance_m: float) -> float: ...
    @overload
    def off_network_time_s(self, distance_m: np.ndarray) -> np.ndarray: ...

    def off_network_time_s(self, distance_m: np.ndarray | float) -> np.ndarray | float:
        """Time (s) to cover a straight-line off-network distance."""
        return distance_m * self.off_network_detour / (self.off_network_speed_mph * MPH_TO_MPS)


def _check_hour(hour: object) -> None:
    if isinstance(hour, bool) or not isinstance(hour, (int, np.integer)) or not 0 <= hour <= 23:
        raise InvalidInput(f"hour must be an integer 0-23, got {hour!r}", field="hour")


def _normalise_class(highway: object, known: dict[str, float]) -> str:
    """Known class of an OSM ``highway`` value (a tag, a list, or a list printed as text), else ``other``.

    A merged edge's list takes its most important known class, by the rule every source shares
    (:func:`routing.osm.most_important_class`), never simply the first listed.
    """
    if isinstance(highway, (list, tuple)):
        candidates = [str(h) for h in highway]
    else:
        candidates = re.findall(r"[a-z_]+", str(highway)) or [""]
    candidates = [c for c in candidates if c in known]
    if not candidates:
        return "other"
    if len(candidates) == 1:
        return candidates[0]
    from routing.osm import most_important_class  # lazy: routing.osm imports this module

    return most_important_class(candidates)


def parse_maxspeed(value: object, bare_unit: str = "kph") -> float:
    """Parse an OSM ``maxspeed`` value into mph (NaN when absent or unparseable).

    ``"25 mph"`` is mph, ``"50 km/h"`` km/h, ``"10 knots"`` knots; a bare number is in ``bare_unit`` (OSM's
    convention is km/h, but the osmnx CSV export of Boston stores the mph number alone). Words such as
    ``"signals"``, ``"walk"``, ``"none"`` or ``"US:urban"`` give NaN (the class default applies). A list,
    or several values separated by ``;``, takes the lowest speed.
    """
    if value is None:
        return math.nan
    if isinstance(value, (list, tuple)):
        speeds = [parse_maxspeed(v, bare_unit) for v in value]
        speeds = [s for s in speeds if math.isfinite(s)]
        return min(speeds) if speeds else math.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            return math.nan
        return number if bare_unit == "mph" else number * KPH_TO_MPH
    text = str(value).strip().lower()
    if text.startswith("["):
        return parse_maxspeed(re.findall(r"'([^']*)'", text), bare_unit)
    if ";" in text or "|" in text:
        return parse_maxspeed(re.split(r"[;|]", text), bare_unit)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(mph|knots?|kn|km/h|kmh|kph)?", text)
    if not match:
        return math.nan
    number = float(match.group(1))
    if number <= 0:
        return math.nan
    unit = match.group(2) or bare_unit
    if unit == "mph":
        return number
    if unit.startswith("kn"):
        return number * KNOT_TO_MPH
    return number * KPH_TO_MPH


def load_speeds(path: str | os.PathLike[str] | None = None) -> SpeedModel:
    """Read the travel-time model from TOML (default ``data/speeds.toml``).

    Raises
    ------
    InvalidInput
        If the file is missing, malformed, or has a non-positive or missing value.
    """
    path = Path(path) if path else project_data_path("speeds.toml")
    try:
        raw_bytes = path.read_bytes()
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"speeds file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid TOML: {exc}") from None
    try:
        model = SpeedModel(
            class_default_mph=_positive_table(raw, "class_default_mph", path),
            class_factor=_positive_table(raw, "class_factor", path),
            mode_factor=_positive_table(raw, "mode_factor", path),
            hour_factor=_hour_tables(raw, path),
            hour_group={str(k): str(v) for k, v in raw.get("hour_group", {}).items()},
            call_excluded_classes=tuple(str(c) for c in raw.get("snapping", {}).get(
                "call_excluded_classes", ("motorway", "motorway_link", "trunk_link"))),
            exclude_tunnels=bool(raw.get("snapping", {}).get("exclude_tunnels", True)),
            default_mode=str(raw.get("default_mode", "non_emergent")),
            csv_maxspeed_unit=str(raw.get("csv_maxspeed_unit", "mph")),
            off_network_speed_mph=float(raw["off_network"]["speed_mph"]),
            off_network_detour=float(raw["off_network"]["detour_factor"]),
            boundary_tolerance_m=float(raw["service_area"]["boundary_tolerance_m"]),
            max_snap_m=float(raw["service_area"]["max_snap_m"]),
            digest=hashlib.sha256(raw_bytes).hexdigest()[:16],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{path}: missing or invalid setting {exc}") from None
    groups = set(model.hour_factor) if model.hour_group else set()
    unknown = sorted(set(model.hour_group.values()) - groups)
    if unknown:
        raise InvalidInput(f"{path}: [hour_group] names groups without an [hour_factor.<group>] table: "
                           f"{', '.join(unknown)}")
    if model.hour_group and "other" not in model.hour_group:
        raise InvalidInput(f"{path}: [hour_group] needs an 'other' entry for unknown road classes")
    for table in ("class_default_mph", "class_factor"):
        if "other" not in getattr(model, table):
            raise InvalidInput(f"{path}: [{table}] needs an 'other' entry for unknown road classes")
    if model.default_mode not in model.mode_factor:
        raise InvalidInput(f"{path}: default_mode {model.default_mode!r} is not in [mode_factor]")
    if model.csv_maxspeed_unit not in ("mph", "kph"):
        raise InvalidInput(f"{path}: csv_maxspeed_unit must be 'mph' or 'kph'")
    if min(model.off_network_speed_mph, model.off_network_detour, model.max_snap_m) <= 0:
        raise InvalidInput(f"{path}: [off_network] and [service_area] values must be positive")
    return model


def _hour_tables(raw: dict, path: Path) -> dict:
    """``[hour_factor]`` as ``{group: {hour: factor}}`` (or a flat ``{hour: factor}``), every hour given."""
    table = raw.get("hour_factor")
    if not isinstance(table, dict) or not table:
        raise InvalidInput(f"{path}: missing table [hour_factor]")
    nested = all(isinstance(v, dict) for v in table.values())
    groups = {name: _positive_table(table, name, path) for name in table} if nested else {"": table}
    out: dict = {}
    for name, values in groups.items():
        label = f"[hour_factor.{name}]" if name else "[hour_factor]"
        try:
            hours = {int(k): float(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise InvalidInput(f"{path}: {label} keys must be hours 0-23 and values numbers") from None
        if set(hours) != set(range(24)) or any(not math.isfinite(v) or v <= 0 for v in hours.values()):
            raise InvalidInput(f"{path}: {label} must give every hour 0-23 a positive number")
        out[name] = hours
    return out if nested else out[""]


def _positive_table(raw: dict, name: str, path: Path) -> dict[str, float]:
    table = raw.get(name)
    if not isinstance(table, dict) or not table:
        raise InvalidInput(f"{path}: missing table [{name}]")
    out: dict[str, float] = {}
    for key, value in table.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{path}: [{name}] {key} must be a positive number, got {value!r}")
        out[str(key)] = float(value)
    return out
