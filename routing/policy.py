"""Response policies for the simulation: a fleet, triage rules, staging, hours and service times.

A policy file (TOML, see ``data/policies/*.toml``) names a fleet file and a rules file and may change
them without copying them:

``[policy]``
    ``name``, ``description``, ``fleet`` and ``rules`` (paths relative to the policy file; default the
    project's ``data/fleet.toml`` and ``data/rules.toml``), ``remove`` (team ids or ``fnmatch``
    patterns such as ``"COM-*"`` to drop from the fleet).
``[[team]]``
    Extra teams, in exactly the fleet-file format (:func:`routing.fleet.load_fleet` reads them).
``[staging]``
    Team id (or pattern) → new staging site: a site id of :meth:`routing.places.Places.sites`
    (``"police:B3"``, ``"community:..."``) or an inline table ``{ name = "...", lat = .., lon = .. }``.
``[hours]``
    Team id (or pattern) → ``"HH:MM-HH:MM"`` (local time), ``"24h"`` for round-the-clock service, or an
    inline table ``{ shift = "HH:MM-HH:MM", days = ["mon", ...] }``.
``[service.TEAM_TYPE]``
    On-scene time of a team type: ``median_min`` and ``sigma`` of a log-normal (``sigma = 0``: fixed),
    or ``distribution = "exponential"`` with ``mean_min`` (or ``median_min``).
``[transport]``
    ``team_types`` that may transport a patient, ``hospitals`` (site ids of acute-care emergency
    departments), ``handoff_median_min`` and ``handoff_sigma`` (time at the hospital).

Changes apply in that order: remove, add, staging, hours. Patterns match in sorted id order, and a
pattern that matches no team is an error (a typo must not silently leave the fleet unchanged).

Default service-time parameters (:data:`DEFAULT_SERVICE`) are stated assumptions, not measurements:
Boston has published no on-scene times for its pilot teams (``boston-context/SOURCES.md``, "Not found").
"""

from __future__ import annotations

import fnmatch
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routing.config import project_data_path
from routing.errors import InvalidInput, NotFound, reason
from routing.fleet import DEFAULT_TIMEZONE, Shift, Team, TeamType, load_fleet, parse_team_type
from routing.triage import Rules, load_rules

if TYPE_CHECKING:
    from routing.places import Places

#: Builds the error for a message about the policy file being read.
_Bad = Callable[[str], InvalidInput]

POLICY_DIR = project_data_path("policies")


@dataclass(frozen=True)
class ServiceTime:
    """A duration given by its median: log-normal with shape ``sigma`` (``sigma = 0`` is a fixed time), or
    exponential (``distribution = "exponential"``; ``sigma`` is then ignored).

    A log-normal is the usual model of on-scene and hospital times (right-skewed, never negative); the
    median is the number a planner can check against a dispatch log. The exponential is there for
    validation against queueing theory (Erlang C assumes exponential service).
    """

    median_s: float
    sigma: float = 0.0
    distribution: str = "lognormal"

    @property
    def mean_s(self) -> float:
        """Expected value: ``median * exp(sigma**2 / 2)``, or ``median / ln 2`` for an exponential."""
        if self.distribution == "exponential":
            return self.median_s / math.log(2)
        return self.median_s * math.exp(self.sigma ** 2 / 2)

    def quantile(self, z: float) -> float:
        """Duration at the standard-normal score ``z`` (common random numbers across team types)."""
        if self.distribution == "exponential":
            # Same uniform u = Phi(z) for every distribution, so a call stays equally "hard" whichever
            # team type (and distribution) serves it; erfc keeps precision in the upper tail.
            return -self.mean_s * math.log(0.5 * math.erfc(z / math.sqrt(2)))
        return self.median_s * math.exp(self.sigma * z)

    def to_dict(self) -> dict[str, Any]:
        return {"median_min": round(self.median_s / 60, 3), "sigma": self.sigma,
                "mean_min": round(self.mean_s / 60, 3), "distribution": self.distribution}


#: On-scene time by team type (assumptions, documented in ``data/policies/README.md``):
#: crisis teams spend longer on scene than police or EMS because de-escalation and a warm hand-off to
#: services are the point of the model; EMS on-scene medians of 15-20 min are typical of US urban
#: systems; a shape of 0.5 gives a 90th percentile about 1.9 x the median.
DEFAULT_SERVICE: dict[TeamType, ServiceTime] = {
    TeamType.co_response: ServiceTime(45 * 60, 0.5),
    TeamType.emt_clinician: ServiceTime(40 * 60, 0.5),
    TeamType.community: ServiceTime(40 * 60, 0.5),
    TeamType.police: ServiceTime(30 * 60, 0.5),
    TeamType.ems: ServiceTime(18 * 60, 0.5),
}

#: Time at the emergency department before the team is free again (ambulance offload; assumption).
DEFAULT_HANDOFF = ServiceTime(20 * 60, 0.4)

#: Team types that can carry a patient: ambulances, the EMT-staffed crisis van, and police/co-response
#: cars (a Section 12 transport). Community responders cannot (rules route such calls elsewhere).
DEFAULT_TRANSPORT_TYPES: frozenset[TeamType] = frozenset(
    {TeamType.ems, TeamType.emt_clinician, TeamType.co_response, TeamType.police})

#: Adult acute-care emergency departments in the hospitals layer. The layer has no ED flag
#: (SOURCES.md); this list keeps the acute-care hospitals SOURCES.md names, minus Children's (paediatric)
#: and Carney (closed in 2024).
DEFAULT_HOSPITALS: tuple[str, ...] = (
    "hospital:mass-general-hospital",
    "hospital:boston-medical-center-menino-campus",
    "hospital:beth-isreal-deaconess-medical-center-east-campus",
    "hospital:beth-israel-deaconess-medical-center-west-campus",
    "hospital:brigham-and-women-s-hospital",
    "hospital:tufts-medical-center",
    "hospital:st-elizabeth-s-hospital",
    "hospital:faulkner-hospital",
)

_POLICY_KEYS = {"policy", "team", "staging", "hours", "service", "transport", "dispatch"}
#: ``[dispatch]`` of a policy file (coverage-aware choice and move-up in the simulation):
#: ``choice`` = { rule name = "closest" | "coverage" } overrides the rules file's ``choice``;
#: ``return_to`` = "base" (default) | "coverage": where a team goes when it clears a call (its base, or
#: the post where it adds the most expected coverage, DMEXCLP); ``moveup`` = true moves free teams
#: (at most ``moveup_max_moves``) when a team is dispatched, at most once per ``moveup_interval_s``;
#: ``moveup_max_travel_s`` bounds a relocation drive and ``travel_penalty`` (expected calls a year per
#: hour of driving) keeps them short.
DISPATCH_DEFAULTS: dict[str, Any] = {"choice": {}, "return_to": "base", "moveup": False, "moveup_max_moves": 1,
                                     "moveup_interval_s": 600.0, "moveup_max_travel_s": 900.0,
                                     "travel_penalty": 60.0}


@dataclass
class Policy:
    """A response policy: who responds (teams, staging, hours), how calls are triaged, and for how long.

    Attributes
    ----------
    name, description
        For reports.
    teams
        The fleet after the policy's changes.
    rules
        Triage rules.
    service
        On-scene time per team type.
    handoff
        Time at the hospital after a transport.
    transport_types
        Team types that can transport a patient.
    hospitals
        Site ids of the destination hospitals (resolved against ``places`` by the simulation).
    source, fleet_source, rules_source
        Where the policy, fleet and rules came from.
    changes
        Human-readable list of the changes applied to the base fleet.
    """

    name: str
    teams: list[Team]
    rules: Rules
    description: str = ""
    service: dict[TeamType, ServiceTime] = field(default_factory=lambda: dict(DEFAULT_SERVICE))
    handoff: ServiceTime = DEFAULT_HANDOFF
    transport_types: frozenset[TeamType] = DEFAULT_TRANSPORT_TYPES
    hospitals: tuple[str, ...] = DEFAULT_HOSPITALS
    source: str = ""
    fleet_source: str = ""
    rules_source: str = ""
    changes: list[str] = field(default_factory=list)
    #: ``[dispatch]`` options (:data:`DISPATCH_DEFAULTS`): coverage-aware choice and move-up.
    dispatch: dict[str, Any] = field(default_factory=lambda: dict(DISPATCH_DEFAULTS))

    def service_for(self, team_type: TeamType) -> ServiceTime:
        """On-scene time of a team type (the default when the policy does not set it)."""
        return self.service.get(team_type, DEFAULT_SERVICE[team_type])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (team counts, sources, service times; not every team)."""
        by_type: dict[str, int] = {}
        for t in self.teams:
            by_type[t.team_type.value] = by_type.get(t.team_type.value, 0) + 1
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "fleet": self.fleet_source,
            "rules": self.rules_source,
            "teams": len(self.teams),
            "teams_by_type": dict(sorted(by_type.items())),
            "changes": list(self.changes),
            "service": {t.value: self.service_for(t).to_dict() for t in TeamType},
            "handoff": self.handoff.to_dict(),
            "transport_types": sorted(t.value for t in self.transport_types),
            "hospitals": list(self.hospitals),
        }


def available_policies() -> list[str]:
    """Names of the policies shipped in ``data/policies``."""
    if not POLICY_DIR.is_dir():
        return []
    return sorted(p.stem for p in POLICY_DIR.glob("*.toml"))


def resolve_policy_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A policy file from a shipped policy name (``default``) or a path.

    Raises
    ------
    NotFound
        Neither an existing file nor a shipped policy name.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = POLICY_DIR / f"{text}.toml"
    if "/" not in text and shipped.is_file():
        return shipped
    names = ", ".join(available_policies()) or "none"
    raise NotFound(f"unknown policy {text!r}: not a file, nor one of the shipped policies ({names})")


def load_policy(name_or_path: str | os.PathLike[str] | None = None, *, places: Places | None = None,
                fleet: str | os.PathLike[str] | None = None,
                rules: str | os.PathLike[str] | None = None) -> Policy:
    """Read a policy by shipped name or path (default: the ``default`` policy).

    Parameters
    ----------
    name_or_path
        ``"default"``, ``"more_co_response"``, ... or a path to a policy TOML file.
    places
        :class:`routing.places.Places`, needed when ``[staging]`` names sites by id; also used to check
        service-area names.
    fleet, rules
        Override the policy's fleet or rules file (the CLI's ``--fleet`` / ``--rules``).

    Returns
    -------
    Policy

    Raises
    ------
    NotFound
        Unknown policy name, or an unknown site id in ``[staging]``.
    InvalidInput
        A malformed file, an unknown key, a pattern that matches no team, a bad shift.
    """
    path = resolve_policy_path(name_or_path if name_or_path is not None else "default")
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read policy file {path}: {reason(exc)}", field="policy") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: {exc}", field="policy") from None

    def bad(msg: str) -> InvalidInput:
        return InvalidInput(f"{path}: {msg}", field="policy")

    unknown = set(doc) - _POLICY_KEYS
    if unknown:
        raise bad(f"unknown section(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_POLICY_KEYS))})")
    meta = _table(doc.get("policy", {}), "[policy]", bad)
    extra = set(meta) - {"name", "description", "fleet", "rules", "remove"}
    if extra:
        raise bad(f"[policy]: unknown key(s) {', '.join(sorted(extra))}")
    name = str(meta.get("name", path.stem))
    fleet_path = Path(fleet) if fleet is not None else _relative(path, meta.get("fleet"), "fleet.toml", bad)
    rules_path = Path(rules) if rules is not None else _relative(path, meta.get("rules"), "rules.toml", bad)
    teams = load_fleet(fleet_path, places=places)
    changes: list[str] = []

    remove = meta.get("remove", [])
    if not isinstance(remove, list) or not all(isinstance(r, str) for r in remove):
        raise bad("[policy] remove must be a list of team ids or patterns")
    for pattern in remove:
        hit = _match(teams, pattern, "[policy] remove", bad)
        teams = [t for t in teams if t.team_id not in hit]
        changes.append(f"removed {', '.join(sorted(hit))}")

    if "team" in doc:
        added = load_fleet(path, places=places)
        clash = sorted({t.team_id for t in added} & {t.team_id for t in teams})
        if clash:
            raise bad(f"[[team]] id(s) already in the fleet: {', '.join(clash)}")
        teams = teams + added
        changes.append(f"added {', '.join(t.team_id for t in added)}")

    staging = _table(doc.get("staging", {}), "[staging]", bad)
    for pattern, where in staging.items():
        hit = _match(teams, pattern, "[staging]", bad)
        base_name, lat, lon = _site(where, pattern, places, bad)
        teams = [replace(t, base_name=base_name, base_lat=lat, base_lon=lon) if t.team_id in hit else t
                 for t in teams]
        changes.append(f"staged {', '.join(sorted(hit))} at {base_name}")

    hours = _table(doc.get("hours", {}), "[hours]", bad)
    timezone = _fleet_timezone(fleet_path)
    for pattern, spec in hours.items():
        hit = _match(teams, pattern, "[hours]", bad)
        shift = _shift(spec, pattern, timezone, bad)
        teams = [replace(t, shift=shift) if t.team_id in hit else t for t in teams]
        changes.append(f"hours of {', '.join(sorted(hit))}: {shift.label() if shift else '24 h'}")

    service = dict(DEFAULT_SERVICE)
    for type_name, body in _table(doc.get("service", {}), "[service]", bad).items():
        try:
            team_type = parse_team_type(type_name)
        except InvalidInput as exc:
            raise bad(f"[service.{type_name}]: {exc.message}") from None
        service[team_type] = _service_time(body, f"[service.{type_name}]", service[team_type], bad)

    transport = _table(doc.get("transport", {}), "[transport]", bad)
    extra = set(transport) - {"team_types", "hospitals", "handoff_median_min", "handoff_sigma"}
    if extra:
        raise bad(f"[transport]: unknown key(s) {', '.join(sorted(extra))}")
    transport_types = DEFAULT_TRANSPORT_TYPES
    if "team_types" in transport:
        raw = transport["team_types"]
        if not isinstance(raw, list):
            raise bad("[transport] team_types must be a list of team types")
        try:
            transport_types = frozenset(parse_team_type(t) for t in raw)
        except InvalidInput as exc:
            raise bad(f"[transport] {exc.message}") from None
    hospitals = DEFAULT_HOSPITALS
    if "hospitals" in transport:
        raw = transport["hospitals"]
        if not isinstance(raw, list) or not raw or not all(isinstance(h, str) for h in raw):
            raise bad("[transport] hospitals must be a non-empty list of site ids")
        hospitals = tuple(raw)
    if places is not None:
        for site_id in hospitals:
            try:
                places.site(site_id)
            except NotFound:
                raise NotFound(f"{path}: [transport] unknown hospital site {site_id!r}") from None
    handoff = _service_time({"median_min": transport.get("handoff_median_min", DEFAULT_HANDOFF.median_s / 60),
                             "sigma": transport.get("handoff_sigma", DEFAULT_HANDOFF.sigma)},
                            "[transport]", DEFAULT_HANDOFF, bad)

    dispatch = _dispatch(doc.get("dispatch", {}), bad)
    rule_set = load_rules(rules_path)
    if dispatch["choice"]:
        try:
            rule_set = rule_set.with_choices(dispatch["choice"])
        except InvalidInput as exc:
            raise bad(f"[dispatch] {exc.message}") from None
        changes.append("choice " + ", ".join(f"{k}={v}" for k, v in dispatch["choice"].items()))
    if dispatch["return_to"] != "base" or dispatch["moveup"]:
        changes.append(f"return to {dispatch['return_to']}" + (", move-up" if dispatch["moveup"] else ""))
    return Policy(name=name, teams=teams, rules=rule_set, description=str(meta.get("description", "")),
                  service=service, handoff=handoff, transport_types=transport_types, hospitals=hospitals,
                  source=str(path), fleet_source=str(fleet_path), rules_source=str(rules_path), changes=changes,
                  dispatch=dispatch)


def _dispatch(raw: Any, bad: _Bad) -> dict[str, Any]:
    body = _table(raw, "[dispatch]", bad)
    extra = set(body) - set(DISPATCH_DEFAULTS)
    if extra:
        raise bad(f"[dispatch]: unknown key(s) {', '.join(sorted(extra))}")
    out = dict(DISPATCH_DEFAULTS)
    out.update(body)
    if not isinstance(out["choice"], dict) or not all(isinstance(v, str) for v in out["choice"].values()):
        raise bad("[dispatch] choice must be a table: rule name = \"closest\" | \"coverage\"")
    if out["return_to"] not in ("base", "coverage"):
        raise bad("[dispatch] return_to must be \"base\" or \"coverage\"")
    if not isinstance(out["moveup"], bool):
        raise bad("[dispatch] moveup must be true or false")
    k = out["moveup_max_moves"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise bad("[dispatch] moveup_max_moves must be a non-negative integer")
    for key in ("moveup_interval_s", "moveup_max_travel_s", "travel_penalty"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise bad(f"[dispatch] {key} must be a non-negative number")
        out[key] = float(v)
    return out


# ---------------------------------------------------------------------------------------------- helpers

def _table(value: Any, label: str, bad: _Bad) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(f"{label} must be a table")
    return value


def _relative(policy_path: Path, value: Any, default: str, bad: _Bad) -> Path:
    if value is None:
        return project_data_path(default)
    if not isinstance(value, str) or not value.strip():
        raise bad(f"[policy] {default.split('.')[0]} must be a path")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (policy_path.parent / p).resolve()


def _match(teams: list[Team], pattern: str, label: str, bad: _Bad) -> set[str]:
    ids = sorted(t.team_id for t in teams)
    hit = {i for i in ids if fnmatch.fnmatchcase(i, pattern)}
    if not hit:
        raise bad(f"{label}: {pattern!r} matches no team (teams: {', '.join(ids)})")
    return hit


def _site(where: Any, pattern: str, places: Places | None, bad: _Bad) -> tuple[str, float, float]:
    if isinstance(where, str):
        if places is None:
            raise bad(f"[staging] {pattern!r}: a site id ({where!r}) needs the data directory (places)")
        try:
            site = places.site(where)
        except NotFound:
            raise NotFound(f"[staging] {pattern!r}: unknown site {where!r}") from None
        return site.name, float(site.lat), float(site.lon)
    if isinstance(where, Mapping):
        extra = set(where) - {"name", "lat", "lon"}
        if extra or not {"lat", "lon"} <= set(where):
            raise bad(f"[staging] {pattern!r}: an inline site needs lat and lon (and optionally name)")
        lat, lon = where["lat"], where["lon"]
        for key, v, lim in (("lat", lat, 90), ("lon", lon, 180)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > lim:
                raise bad(f"[staging] {pattern!r}: {key} must be a number within ±{lim}")
        return str(where.get("name", f"({lat:.5f}, {lon:.5f})")), float(lat), float(lon)
    raise bad(f"[staging] {pattern!r}: expected a site id or {{ name, lat, lon }}")


def _fleet_timezone(fleet_path: Path) -> str:
    try:
        doc = tomllib.loads(fleet_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return DEFAULT_TIMEZONE  # load_fleet already read it, so this does not happen in practice
    meta = doc.get("fleet", {})
    return str(meta.get("timezone", DEFAULT_TIMEZONE)) if isinstance(meta, dict) else DEFAULT_TIMEZONE


def _shift(spec: Any, pattern: str, timezone: str, bad: _Bad) -> Shift | None:
    days = None
    if isinstance(spec, Mapping):
        extra = set(spec) - {"shift", "days"}
        if extra or "shift" not in spec:
            raise bad(f"[hours] {pattern!r}: expected {{ shift = \"HH:MM-HH:MM\", days = [...] }}")
        days, spec = spec.get("days"), spec["shift"]
        if days is not None and not isinstance(days, list):
            raise bad(f"[hours] {pattern!r}: days must be a list like ['mon', 'tue']")
    if not isinstance(spec, str):
        raise bad(f"[hours] {pattern!r}: expected \"HH:MM-HH:MM\" or \"24h\"")
    if spec.strip().lower() in ("24h", "24/7", "always"):
        return None
    try:
        return Shift.parse(spec, days=days, timezone=timezone)
    except InvalidInput as exc:
        raise bad(f"[hours] {pattern!r}: {exc.message}") from None


def _service_time(body: Any, label: str, default: ServiceTime, bad: _Bad) -> ServiceTime:
    if not isinstance(body, Mapping):
        raise bad(f"{label} must be a table with median_min and sigma")
    extra = set(body) - {"median_min", "sigma", "distribution", "mean_min"}
    if extra:
        raise bad(f"{label}: unknown key(s) {', '.join(sorted(extra))}")
    distribution = body.get("distribution", "lognormal")
    if distribution not in ("lognormal", "exponential"):
        raise bad(f"{label}: distribution must be \"lognormal\" or \"exponential\", got {distribution!r}")
    if "mean_min" in body:
        if distribution != "exponential" or "median_min" in body:
            raise bad(f"{label}: mean_min is for distribution = \"exponential\", instead of median_min")
        mean = body["mean_min"]
        if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean) \
                or not 0 < mean <= 24 * 60:
            raise bad(f"{label}: mean_min must be a number in 0..1440, got {mean!r}")
        return ServiceTime(float(mean) * 60 * math.log(2), 0.0, "exponential")
    median = body.get("median_min", default.median_s / 60)
    sigma = body.get("sigma", default.sigma)
    for key, v, lo, hi in (("median_min", median, 0.0, 24 * 60), ("sigma", sigma, 0.0, 3.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise bad(f"{label}: {key} must be a number in {lo:g}..{hi:g}, got {v!r}")
    if median <= 0:
        raise bad(f"{label}: median_min must be positive")
    if distribution == "exponential":
        return ServiceTime(float(median) * 60, 0.0, "exponential")
    return ServiceTime(float(median) * 60, float(sigma))
