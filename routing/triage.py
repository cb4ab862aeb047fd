"""Calls and triage rules: call attributes → ordered tiers of eligible team types.

A rules file (``data/rules.toml``) has three parts:

``[settings]``
    dispatch parameters: ``stale_after_s`` (age after which a position report is stale),
    ``tier_penalty_s`` (cost of serving a call from one tier lower, in the joint assignment),
    ``unserved_penalty_s``, ``priority_weights`` (list, index 0 = priority 1) and
    ``dedicated_mental_health_only``.
``[tier.NAME]``
    ``types`` (team types that serve in this tier) and optional ``fallback`` (the next tier's name).
    Fallbacks form chains; a chain that loops is rejected at load.
``[[rule]]``
    ``name``, ``tier`` (first tier of the chain) and ``when`` (conditions, all must hold):
    ``mental_health``/``safety_risk``/``weapon``/``needs_transport`` = true/false, ``any`` = list of
    those flags of which at least one must be true, ``priority`` = list of priorities,
    ``neighborhood``/``district`` = list of names. The first matching rule wins; the last rule must have
    an empty ``when`` so every call matches something.

Service areas, service hours and the dedicated flag belong to the teams (``data/fleet.toml``); dispatch
applies them on top of the tiers.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing.config import project_data_path
from routing.errors import InvalidInput
from routing.fleet import TeamType, _read_toml, table_lines
from routing.validate import coordinate, timestamp

FLAGS = ("mental_health", "safety_risk", "weapon", "needs_transport")
MAX_PRIORITY = 5
DEFAULT_PRIORITY = 2
_CALL_ID = re.compile(r"^[A-Za-z0-9_.:#-]{1,80}$")
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}


# ---------------------------------------------------------------------------------------------- calls

@dataclass
class Call:
    """A call for service.

    Attributes
    ----------
    call_id
        Identifier (letters, digits, ``_ . : # -``).
    received
        When the call was received (tz-aware, UTC).
    lat, lon
        Location (WGS84).
    mental_health, safety_risk, weapon, needs_transport
        Triage flags.
    priority
        1 (highest) .. 5.
    neighborhood, district
        Derived from the location (``None`` until located, or outside every polygon).
    """

    call_id: str
    received: datetime
    lat: float
    lon: float
    mental_health: bool = False
    safety_risk: bool = False
    weapon: bool = False
    needs_transport: bool = False
    priority: int = DEFAULT_PRIORITY
    neighborhood: str | None = None
    district: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, default_id: str | None = None,
                  default_received: datetime | None = None) -> Call:
        """Build and validate a call from a JSON object or CSV row.

        Booleans accept ``true/false``, ``1/0``, ``yes/no`` (CSV strings); missing flags are false;
        ``priority`` defaults to 2; ``received`` (ISO 8601 with offset) defaults to now; ``call_id``
        defaults to ``default_id`` or a random id. Unknown keys are rejected so a typo such as
        ``mental_heath`` cannot silently change triage.

        Raises
        ------
        InvalidInput
            With ``field`` naming the offending key.
        """
        if not isinstance(d, Mapping):
            raise InvalidInput(f"a call must be an object, got {type(d).__name__}", field="call")
        known = {"call_id", "id", "received", "lat", "lon", "priority", "neighborhood", "district", *FLAGS}
        unknown = [k for k in d if k not in known]
        if unknown:
            raise InvalidInput(f"unknown call field(s): {', '.join(map(str, unknown))} "
                               f"(allowed: {', '.join(sorted(known))})", field=str(unknown[0]))
        raw_id = d.get("call_id", d.get("id"))
        if raw_id in (None, ""):
            call_id = default_id or f"call-{uuid.uuid4().hex[:12]}"
        else:
            call_id = str(raw_id).strip()
            if not _CALL_ID.match(call_id):
                raise InvalidInput(f"call_id must be 1-80 characters of letters, digits, '_.:#-': {raw_id!r}",
                                   field="call_id")
        received_raw = d.get("received")
        if received_raw in (None, ""):
            received = default_received or datetime.now(UTC)
        else:
            received = timestamp(received_raw, "received")
        lat = coordinate(d.get("lat"), "lat", 90)
        lon = coordinate(d.get("lon"), "lon", 180)
        flags = {f: _bool(d.get(f), f) for f in FLAGS}
        priority = _priority(d.get("priority"))
        names: dict[str, str | None] = {}
        for key in ("neighborhood", "district"):
            v = d.get(key)
            names[key] = None if v in (None, "") else str(v).strip()
        return cls(call_id, received, lat, lon, mental_health=flags["mental_health"],
                   safety_risk=flags["safety_risk"], weapon=flags["weapon"], needs_transport=flags["needs_transport"],
                   priority=priority, neighborhood=names["neighborhood"], district=names["district"])

    @property
    def klass(self) -> str:
        """Short description of the call's class, for tables (``MH+risk``, ``MH``, ``other``...)."""
        parts = ["MH" if self.mental_health else "non-MH"]
        if self.weapon:
            parts.append("weapon")
        elif self.safety_risk:
            parts.append("risk")
        if self.needs_transport:
            parts.append("transport")
        return "+".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``received`` as ISO 8601)."""
        return {
            "call_id": self.call_id,
            "received": self.received.isoformat(),
            "lat": self.lat,
            "lon": self.lon,
            "mental_health": self.mental_health,
            "safety_risk": self.safety_risk,
            "weapon": self.weapon,
            "needs_transport": self.needs_transport,
            "priority": self.priority,
            "neighborhood": self.neighborhood,
            "district": self.district,
        }




def _bool(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidInput(f"{name} must be true or false, got {value!r}", field=name)


def _priority(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_PRIORITY
    if isinstance(value, bool):
        raise InvalidInput(f"priority must be an integer 1-{MAX_PRIORITY}, got {value!r}", field="priority")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"priority must be an integer 1-{MAX_PRIORITY}, got {value!r}",
                           field="priority") from None
    if not f.is_integer() or not 1 <= f <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be an integer 1-{MAX_PRIORITY}, got {value!r}", field="priority")
    return int(f)


# ---------------------------------------------------------------------------------------------- rules

@dataclass(frozen=True)
class Tier:
    """One tier: the team types that may serve a call at this level."""

    name: str
    team_types: tuple[TeamType, ...]
    fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "team_types": [t.value for t in self.team_types]}


@dataclass(frozen=True)
class Rule:
    """A triage rule: conditions on the call → first tier of the chain.

    ``choice`` is how a team is chosen among the eligible ones of the tier: ``"closest"`` (default) or
    ``"coverage"`` (see :class:`ChoiceSettings` and :mod:`routing.mexclp`).
    """

    name: str
    tier: str
    when: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None
    choice: str = "closest"

    def matches(self, call: Call) -> bool:
        """Whether every condition holds for ``call``."""
        for key, want in self.when.items():
            if key in FLAGS:
                if bool(getattr(call, key)) != want:
                    return False
            elif key == "any":
                if not any(getattr(call, f) for f in want):
                    return False
            elif key == "priority":
                if call.priority not in want:
                    return False
            elif key in ("neighborhood", "district") and getattr(call, key) not in want:
                return False
        return True


CHOICES = ("closest", "coverage")


@dataclass(frozen=True)
class ChoiceSettings:
    """``[choice]`` of the rules file: how ``choice = "coverage"`` rules pick among close teams.

    Attributes
    ----------
    slack_s, slack_fraction
        A team may be preferred to the closest one only if its ETA is at most ``slack_s`` seconds AND
        ``slack_fraction`` later (both must hold): 180 s and 25 % by default, so a coverage choice never
        costs the caller more than 3 minutes.
    minutes
        Time standard of the coverage measure (minutes).
    busy_fraction
        MEXCLP's ``q``: probability that a team is busy when a call comes.
    priorities
        Call priorities for which a coverage rule applies; priority 1 never (always closest).
    """

    slack_s: float = 180.0
    slack_fraction: float = 0.25
    minutes: float = 8.0
    busy_fraction: float = 0.3
    priorities: tuple[int, ...] = (2, 3, 4, 5)

    def to_dict(self) -> dict[str, Any]:
        return {"slack_s": self.slack_s, "slack_fraction": self.slack_fraction, "minutes": self.minutes,
                "busy_fraction": self.busy_fraction, "priorities": list(self.priorities)}


@dataclass(frozen=True)
class RedispatchSettings:
    """``[redispatch]`` of the rules file.

    Attributes
    ----------
    threshold_s
        A team that becomes free is reported as a better choice for a call whose team is still en
        route when it would arrive sooner by more than this (seconds).
    divert
        Priority of a new call -> priorities of the calls whose en-route team it may take (empty: no
        diversion). E.g. ``{1: (3, 4, 5)}``: a priority-1 call may divert a team driving to a
        priority-3..5 call.
    """

    threshold_s: float = 120.0
    divert: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold_s": self.threshold_s, "divert": {str(k): list(v) for k, v in self.divert.items()}}


@dataclass
class Rules:
    """Triage rules and dispatch settings. Build with :func:`load_rules`."""

    rules: list[Rule]
    tiers: dict[str, Tier]
    stale_after_s: float = 900.0
    tier_penalty_s: float = 600.0
    unserved_penalty_s: float = 7200.0
    priority_weights: tuple[int, ...] = (4, 2, 1, 1, 1)
    dedicated_mental_health_only: bool = True
    source: str = ""
    choice_settings: ChoiceSettings = field(default_factory=ChoiceSettings)
    redispatch: RedispatchSettings = field(default_factory=RedispatchSettings)

    def choice_for(self, call: Call) -> str:
        """``"coverage"`` when the call's rule asks for it and its priority allows it, else ``"closest"``."""
        rule = self.match(call)
        if rule.choice == "coverage" and call.priority in self.choice_settings.priorities and call.priority != 1:
            return "coverage"
        return "closest"

    def with_choices(self, choices: Mapping[str, str]) -> Rules:
        """A copy with ``choice`` set per rule name (a policy's ``[dispatch] choice``)."""
        from dataclasses import replace as _replace

        known = {r.name for r in self.rules}
        for name, how in choices.items():
            if name not in known:
                raise InvalidInput(f"choice for unknown rule {name!r} (rules: {', '.join(sorted(known))})",
                                   field="choice")
            if how not in CHOICES:
                raise InvalidInput(f"choice must be one of {', '.join(CHOICES)}, got {how!r}", field="choice")
        return _replace(self, rules=[_replace(r, choice=choices.get(r.name, r.choice)) for r in self.rules])

    def match(self, call: Call) -> Rule:
        """The first rule whose conditions hold (the last rule matches everything)."""
        for rule in self.rules:
            if rule.matches(call):
                return rule
        raise InvalidInput(f"no triage rule matches call {call.call_id}")  # prevented at load

    def chain(self, start: str) -> list[Tier]:
        """The tier named ``start`` and its fallbacks, in order."""
        out: list[Tier] = []
        name: str | None = start
        while name is not None:
            tier = self.tiers[name]
            out.append(tier)
            name = tier.fallback
        return out

    def tiers_for(self, call: Call) -> list[Tier]:
        """Ordered tiers of eligible team types for ``call``."""
        return self.chain(self.match(call).tier)

    def type_tiers(self, call: Call) -> dict[TeamType, int]:
        """Team type → index of the first tier (for ``call``) that includes it."""
        out: dict[TeamType, int] = {}
        for i, tier in enumerate(self.tiers_for(call)):
            for t in tier.team_types:
                out.setdefault(t, i)
        return out

    def weight(self, priority: int) -> int:
        """Priority weight of a call in the joint assignment (priority 1 = index 0)."""
        return self.priority_weights[min(max(priority, 1), len(self.priority_weights)) - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "settings": {
                "stale_after_s": self.stale_after_s, "tier_penalty_s": self.tier_penalty_s,
                "unserved_penalty_s": self.unserved_penalty_s,
                "priority_weights": list(self.priority_weights),
                "dedicated_mental_health_only": self.dedicated_mental_health_only,
            },
            "tiers": {n: {"types": [t.value for t in tier.team_types], "fallback": tier.fallback}
                      for n, tier in self.tiers.items()},
            "rules": [{"name": r.name, "tier": r.tier, "when": dict(r.when),
                       **({"choice": r.choice} if r.choice != "closest" else {})} for r in self.rules],
            # Only when set, so the audit trail of a closest-only rule set is as it was.
            **({"choice": self.choice_settings.to_dict()} if self.choice_settings != ChoiceSettings() else {}),
            **({"redispatch": self.redispatch.to_dict()} if self.redispatch != RedispatchSettings() else {}),
        }


def _key_line(text: str, start: int | None, key: str) -> int | None:
    """Line of ``key =`` at or after ``start`` (before the next table header), for error messages."""
    if start is None:
        return None
    lines = text.splitlines()
    pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start - 1, len(lines)):
        if i > start - 1 and lines[i].lstrip().startswith("["):
            break
        if pat.match(lines[i]):
            return i + 1
    return start


def _tier_line(text: str, name: str) -> int | None:
    pat = re.compile(r"^\s*\[\s*tier\s*\.\s*(\"?)" + re.escape(name) + r"\1\s*\]")
    for i, line in enumerate(text.splitlines(), start=1):
        if pat.match(line):
            return i
    return None


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """Read and validate triage rules (default ``data/rules.toml``).

    Raises
    ------
    InvalidInput
        Naming the file and line for: an unknown team type, a fallback to an unknown tier, a fallback
        cycle, a missing field, an unknown condition, or no final catch-all rule.
    """
    p = Path(path) if path is not None else project_data_path("rules.toml")
    doc, text = _read_toml(p, "rules")

    def bad(line: int | None, msg: str) -> InvalidInput:
        return InvalidInput(f"{p}" + (f" line {line}" if line else "") + f": {msg}", field="rules")

    unknown_top = set(doc) - {"settings", "tier", "rule", "choice", "redispatch"}
    if unknown_top:
        raise bad(None, f"unknown section(s) {', '.join(sorted(unknown_top))}")
    settings = _settings(doc.get("settings", {}), text, bad)
    settings["choice_settings"] = _choice_settings(doc.get("choice", {}), bad)
    settings["redispatch"] = _redispatch_settings(doc.get("redispatch", {}), bad)

    raw_tiers = doc.get("tier")
    if not isinstance(raw_tiers, dict) or not raw_tiers:
        raise bad(None, "no [tier.NAME] tables")
    tiers: dict[str, Tier] = {}
    for name, body in raw_tiers.items():
        line = _tier_line(text, name)
        if not isinstance(body, dict):
            raise bad(line, f"tier {name!r} must be a table")
        extra = set(body) - {"types", "fallback", "note"}
        if extra:
            raise bad(line, f"tier {name!r}: unknown key(s) {', '.join(sorted(extra))}")
        if "types" not in body:
            raise bad(line, f"tier {name!r}: missing field 'types'")
        types = body["types"]
        tline = _key_line(text, line, "types")
        if not isinstance(types, list) or not types:
            raise bad(tline, f"tier {name!r}: 'types' must be a non-empty list of team types")
        parsed = []
        for t in types:
            try:
                parsed.append(TeamType(str(t)))
            except ValueError:
                allowed = ", ".join(x.value for x in TeamType)
                raise bad(tline, f"tier {name!r}: unknown team type {t!r} (one of: {allowed})") from None
        if len(set(parsed)) != len(parsed):
            raise bad(tline, f"tier {name!r}: a team type is listed twice")
        fallback = body.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            raise bad(_key_line(text, line, "fallback"), f"tier {name!r}: 'fallback' must be a tier name")
        tiers[name] = Tier(name, tuple(parsed), fallback)
    for name, tier in tiers.items():
        if tier.fallback is not None and tier.fallback not in tiers:
            raise bad(_key_line(text, _tier_line(text, name), "fallback"),
                      f"tier {name!r} falls back to unknown tier {tier.fallback!r}")
    for name in tiers:  # every chain must end
        seen: list[str] = []
        cur: str | None = name
        while cur is not None:
            if cur in seen:
                loop = " -> ".join([*seen[seen.index(cur):], cur])
                raise bad(_key_line(text, _tier_line(text, seen[-1]), "fallback"),
                          f"fallback cycle: {loop}")
            seen.append(cur)
            cur = tiers[cur].fallback

    raw_rules = doc.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise bad(None, "no [[rule]] entries")
    lines = table_lines(text, "rule")
    rules: list[Rule] = []
    names: set[str] = set()
    for k, body in enumerate(raw_rules):
        line = lines[k] if k < len(lines) else None
        if not isinstance(body, dict):
            raise bad(line, f"rule #{k + 1} must be a table")
        label = f"rule #{k + 1}" + (f" {body['name']!r}" if isinstance(body.get("name"), str) else "")
        extra = set(body) - {"name", "tier", "when", "note", "choice"}
        if extra:
            raise bad(line, f"{label}: unknown key(s) {', '.join(sorted(extra))}")
        for key in ("name", "tier"):
            if key not in body:
                raise bad(line, f"{label}: missing field '{key}'")
            if not isinstance(body[key], str) or not body[key].strip():
                raise bad(_key_line(text, line, key), f"{label}: '{key}' must be a non-empty string")
        if body["name"] in names:
            raise bad(line, f"{label}: duplicate rule name")
        names.add(body["name"])
        if body["tier"] not in tiers:
            raise bad(_key_line(text, line, "tier"), f"{label}: unknown tier {body['tier']!r}")
        when = body.get("when", {})
        if not isinstance(when, dict):
            raise bad(_key_line(text, line, "when"), f"{label}: 'when' must be a table")
        _check_when(when, label, _key_line(text, line, "when"), bad)
        choice = body.get("choice", "closest")
        if choice not in CHOICES:
            raise bad(_key_line(text, line, "choice"), f"{label}: choice must be one of {', '.join(CHOICES)}")
        rules.append(Rule(body["name"], body["tier"], when, line, choice))
    if rules[-1].when:
        raise bad(rules[-1].line, "the last rule must have an empty 'when' so that every call matches a rule")
    return Rules(rules, tiers, source=str(p), **settings)


def _check_when(when: dict[str, Any], label: str, line: int | None,
                bad: Callable[[int | None, str], InvalidInput]) -> None:
    for key, value in when.items():
        if key in FLAGS:
            if not isinstance(value, bool):
                raise bad(line, f"{label}: condition {key!r} must be true or false")
        elif key == "any":
            if (not isinstance(value, list) or not value
                    or not all(isinstance(v, str) and v in FLAGS for v in value)):
                raise bad(line, f"{label}: 'any' must be a list of flags among {', '.join(FLAGS)}")
        elif key == "priority":
            if (not isinstance(value, list) or not value
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_PRIORITY
                               for v in value)):
                raise bad(line, f"{label}: 'priority' must be a list of integers 1-{MAX_PRIORITY}")
        elif key in ("neighborhood", "district"):
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise bad(line, f"{label}: {key!r} must be a list of names")
        else:
            allowed = ", ".join([*FLAGS, "any", "priority", "neighborhood", "district"])
            raise bad(line, f"{label}: unknown condition {key!r} (allowed: {allowed})")


def _settings(raw: Any, text: str, bad: Callable[[int | None, str], InvalidInput]) -> dict[str, Any]:
    lines = text.splitlines()
    start = next((i + 1 for i, ln in enumerate(lines) if re.match(r"^\s*\[\s*settings\s*\]", ln)), None)
    if not isinstance(raw, dict):
        raise bad(start, "[settings] must be a table")
    out: dict[str, Any] = {}
    allowed = {"stale_after_s", "tier_penalty_s", "unserved_penalty_s", "priority_weights",
               "dedicated_mental_health_only"}
    extra = set(raw) - allowed
    if extra:
        raise bad(start, f"[settings]: unknown key(s) {', '.join(sorted(extra))}")
    for key in ("stale_after_s", "tier_penalty_s", "unserved_penalty_s"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(_key_line(text, start, key), f"[settings] {key} must be a non-negative number")
            out[key] = float(v)
    if "priority_weights" in raw:
        w = raw["priority_weights"]
        if (not isinstance(w, list) or len(w) != MAX_PRIORITY
                or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 1000 for x in w)):
            raise bad(_key_line(text, start, "priority_weights"),
                      f"[settings] priority_weights must list {MAX_PRIORITY} integers 1-1000 "
                      "(priority 1 first)")
        out["priority_weights"] = tuple(w)
    if "dedicated_mental_health_only" in raw:
        v = raw["dedicated_mental_health_only"]
        if not isinstance(v, bool):
            raise bad(_key_line(text, start, "dedicated_mental_health_only"),
                      "[settings] dedicated_mental_health_only must be true or false")
        out["dedicated_mental_health_only"] = v
    return out


def _number(raw: dict[str, Any], key: str, default: float, bad: Callable[[int | None, str], InvalidInput],
            section: str, low: float = 0.0, high: float = math.inf) -> float:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
        raise bad(None, f"[{section}] {key} must be a number in [{low:g}, {high:g}]")
    return float(v)


def _priorities(v: Any, what: str, bad: Callable[[int | None, str], InvalidInput]) -> tuple[int, ...]:
    if (not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                           and 1 <= x <= MAX_PRIORITY for x in v)):
        raise bad(None, f"{what} must be a list of integers 1-{MAX_PRIORITY}")
    return tuple(v)


def _choice_settings(raw: Any, bad: Callable[[int | None, str], InvalidInput]) -> ChoiceSettings:
    if not isinstance(raw, dict):
        raise bad(None, "[choice] must be a table")
    extra = set(raw) - {"slack_s", "slack_fraction", "minutes", "busy_fraction", "priorities", "note"}
    if extra:
        raise bad(None, f"[choice]: unknown key(s) {', '.join(sorted(extra))}")
    d = ChoiceSettings()
    prios = _priorities(raw.get("priorities", list(d.priorities)), "[choice] priorities", bad)
    if 1 in prios:
        raise bad(None, "[choice] priorities: priority 1 is always sent the closest team")
    return ChoiceSettings(_number(raw, "slack_s", d.slack_s, bad, "choice", 0, 3600),
                          _number(raw, "slack_fraction", d.slack_fraction, bad, "choice", 0, 10),
                          _number(raw, "minutes", d.minutes, bad, "choice", 0.5, 180),
                          _number(raw, "busy_fraction", d.busy_fraction, bad, "choice", 0, 0.99), prios)


def _redispatch_settings(raw: Any, bad: Callable[[int | None, str], InvalidInput]) -> RedispatchSettings:
    if not isinstance(raw, dict):
        raise bad(None, "[redispatch] must be a table")
    extra = set(raw) - {"threshold_s", "divert", "note"}
    if extra:
        raise bad(None, f"[redispatch]: unknown key(s) {', '.join(sorted(extra))}")
    divert_raw = raw.get("divert", {})
    if not isinstance(divert_raw, dict):
        raise bad(None, "[redispatch] divert must be a table: priority = [priorities it may divert from]")
    divert: dict[int, tuple[int, ...]] = {}
    for k, v in divert_raw.items():
        if not str(k).isdigit() or not 1 <= int(k) <= MAX_PRIORITY:
            raise bad(None, f"[redispatch] divert: key {k!r} must be a priority 1-{MAX_PRIORITY}")
        targets = _priorities(v, f"[redispatch] divert.{k}", bad)
        if any(t <= int(k) for t in targets):
            raise bad(None, f"[redispatch] divert.{k}: a call may divert only teams going to lower-priority calls")
        divert[int(k)] = targets
    return RedispatchSettings(_number(raw, "threshold_s", 120.0, bad, "redispatch", 0, 7200), divert)


def iter_call_records(numbered: Iterable[tuple[int, Any]], *, default_received: datetime | None = None
                      ) -> Iterator[tuple[Call, bool]]:
    """Validate ``(line, record)`` pairs one at a time: each :class:`Call` with whether its record gave
    ``received``. Errors are prefixed with the record's line; a repeated ``call_id`` is refused."""
    seen: set[str] = set()
    for line, rec in numbered:
        try:
            call = Call.from_dict(rec, default_id=f"line-{line}", default_received=default_received)
        except InvalidInput as exc:
            raise InvalidInput(f"line {line}: {exc.message}", field=exc.field) from None
        if call.call_id in seen:
            raise InvalidInput(f"line {line}: duplicate call_id {call.call_id!r}", field="call_id")
        seen.add(call.call_id)
        yield call, isinstance(rec, Mapping) and rec.get("received") not in (None, "")


def calls_from_records(records: Sequence[Mapping[str, Any]], *, first_line: int = 1,
                       default_received: datetime | None = None) -> list[Call]:
    """Validate many call records, prefixing errors with the record's line number."""
    return [c for c, _ in iter_call_records(enumerate(records, start=first_line),
                                            default_received=default_received)]
