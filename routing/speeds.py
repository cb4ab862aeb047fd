"""The travel-time model: posted speeds, class defaults, response mode and hour of day.

The model is read from a TOML file (``data/speeds.toml`` by default) that a planner can edit; every
number in it is documented there with its source or stated as an assumption.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routing.config import project_data_path
from routing.errors import InvalidInput

MPH_TO_MPS = 0.44704
KPH_TO_MPH = 0.621371
MODES = ("emergent", "non_emergent")


@dataclass(frozen=True)
class SpeedModel:
    """Parameters of the travel-time model. Build with :func:`load_speeds`."""

    class_default_mph: dict[str, float]
    class_factor: dict[str, float]
    mode_factor: dict[str, float]
    hour_factor: dict[int, float]
    default_mode: str = "non_emergent"
    csv_maxspeed_unit: str = "mph"
    off_network_speed_mph: float = 10.0
    off_network_detour: float = 1.3
    boundary_tolerance_m: float = 250.0
    max_snap_m: float = 400.0
    digest: str = field(default="", compare=False)

    def base_speed_mps(self, highway: np.ndarray, maxspeed_mph: np.ndarray) -> np.ndarray:
        """Speed (m/s) per edge before mode and hour factors: posted (or class default) x class factor."""
        classes = np.asarray([_normalise_class(h, self.class_default_mph) for h in highway], dtype=object)
        default = np.array([self.class_default_mph[c] for c in classes], dtype=float)
        factor = np.array([self.class_factor.get(c, self.class_factor["other"]) for c in classes])
        posted = np.asarray(maxspeed_mph, dtype=float)
        mph = np.where(np.isfinite(posted) & (posted > 0), posted, default)
        return mph * factor * MPH_TO_MPS

    def profile_factor(self, mode: str | None = None, hour: int | None = None) -> float:
        """Scalar speed multiplier for a response mode and an hour of day (``None``: baseline)."""
        mode = mode or self.default_mode
        if mode not in self.mode_factor:
            raise InvalidInput(f"unknown response mode {mode!r}; expected one of {sorted(self.mode_factor)}",
                               field="mode")
        factor = self.mode_factor[mode]
        if hour is not None:
            if not isinstance(hour, (int, np.integer)) or not 0 <= hour <= 23:
                raise InvalidInput(f"hour must be an integer 0-23, got {hour!r}", field="hour")
            factor *= self.hour_factor[int(hour)]
        return factor

    def off_network_time_s(self, distance_m: np.ndarray | float) -> np.ndarray | float:
        """Time (s) to cover a straight-line off-network distance."""
        return distance_m * self.off_network_detour / (self.off_network_speed_mph * MPH_TO_MPS)


def _normalise_class(highway: object, known: dict[str, float]) -> str:
    """First known class of an OSM ``highway`` value (a tag, a list, or a list printed as text)."""
    if isinstance(highway, (list, tuple)):
        candidates = [str(h) for h in highway]
    else:
        candidates = re.findall(r"[a-z_]+", str(highway)) or [""]
    for candidate in candidates:
        if candidate in known:
            return candidate
    return "other"


def parse_maxspeed(value: object, bare_unit: str = "kph") -> float:
    """Parse an OSM ``maxspeed`` value into mph (NaN when absent or unparseable).

    ``"25 mph"`` is mph; a bare number is in ``bare_unit`` (OSM's convention is km/h, but the osmnx CSV
    export of Boston stores the mph number alone). A list takes its lowest speed.
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
    match = re.search(r"(\d+(?:\.\d+)?)", text)
    if not match:
        return math.nan
    number = float(match.group(1))
    if number <= 0:
        return math.nan
    if "mph" in text or bare_unit == "mph":
        return number
    return number * KPH_TO_MPH


def load_speeds(path: str | Path | None = None) -> SpeedModel:
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
            hour_factor={int(k): v for k, v in _positive_table(raw, "hour_factor", path).items()},
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
    if set(model.hour_factor) != set(range(24)):
        raise InvalidInput(f"{path}: [hour_factor] must give every hour 0-23")
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
