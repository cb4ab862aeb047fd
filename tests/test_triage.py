"""Calls and triage rules: validation, every default rule path, rejection of bad rules files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from routing.errors import InvalidInput
from routing.fleet import TeamType
from routing.triage import Call, load_rules

T = TeamType


def _call(**flags) -> Call:
    return Call.from_dict({"call_id": "c", "lat": 42.33, "lon": -71.08, **flags})


# Every path through data/rules.toml, against DESIGN.md's defaults (plus the two documented refinements).
@pytest.mark.parametrize(("flags", "rule", "expected"), [
    ({"mental_health": True, "safety_risk": True}, "mental_health_with_risk", [[T.co_response], [T.police]]),
    ({"mental_health": True, "weapon": True}, "mental_health_with_risk", [[T.co_response], [T.police]]),
    ({"mental_health": True, "safety_risk": True, "needs_transport": True}, "mental_health_with_risk",
     [[T.co_response], [T.police]]),
    ({"mental_health": True}, "mental_health", [[T.emt_clinician], [T.community], [T.co_response]]),
    ({"mental_health": True, "needs_transport": True}, "mental_health_transport", [[T.emt_clinician], [T.ems]]),
    ({"safety_risk": True}, "safety_risk", [[T.police], [T.co_response]]),
    ({"weapon": True, "needs_transport": True}, "safety_risk", [[T.police], [T.co_response]]),
    ({"needs_transport": True}, "medical_transport", [[T.ems], [T.police]]),
    ({}, "other", [[T.police, T.ems]]),
])
def test_default_rules_every_path(flags: dict, rule: str, expected: list[list[TeamType]]) -> None:
    rules = load_rules()
    call = _call(**flags)
    assert rules.match(call).name == rule
    assert [list(t.team_types) for t in rules.tiers_for(call)] == expected


def test_default_settings() -> None:
    rules = load_rules()
    assert rules.dedicated_mental_health_only is True
    assert rules.weight(1) > rules.weight(2) >= rules.weight(5) >= 1
    assert rules.stale_after_s > 0 and rules.tier_penalty_s > 0


def test_call_from_dict_accepts_csv_strings() -> None:
    call = Call.from_dict({"call_id": "x1", "lat": "42.33", "lon": "-71.08", "mental_health": "yes",
                           "weapon": "0", "priority": "1", "received": "2025-05-06T14:00:00-04:00",
                           "needs_transport": ""})
    assert call.mental_health and not call.weapon and not call.needs_transport
    assert call.priority == 1
    assert call.received == datetime(2025, 5, 6, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(("record", "field"), [
    ({"lon": -71.0}, "lat"),
    ({"lat": "nan", "lon": -71.0}, "lat"),
    ({"lat": 42.3, "lon": 200}, "lon"),
    ({"lat": 42.3, "lon": -71.0, "priority": 0}, "priority"),
    ({"lat": 42.3, "lon": -71.0, "priority": 1.5}, "priority"),
    ({"lat": 42.3, "lon": -71.0, "mental_health": "maybe"}, "mental_health"),
    ({"lat": 42.3, "lon": -71.0, "mental_heath": True}, "mental_heath"),
    ({"lat": 42.3, "lon": -71.0, "received": "2025-05-06T14:00:00"}, "received"),
    ({"lat": 42.3, "lon": -71.0, "received": "yesterday"}, "received"),
    ({"lat": 42.3, "lon": -71.0, "call_id": "has space"}, "call_id"),
])
def test_call_validation_names_the_field(record: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        Call.from_dict(record)
    assert err.value.field == field


_RULES = """\
[settings]
stale_after_s = 600

[tier.first]
types = ["co_response"]
fallback = "second"

[tier.second]
types = ["police"]

[[rule]]
name = "mh_in_a1"
when = { mental_health = true, district = ["A1"] }
tier = "first"

[[rule]]
name = "everything"
when = {}
tier = "second"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.toml"
    p.write_text(text)
    return p


def test_custom_rules_with_location_condition(tmp_path: Path) -> None:
    rules = load_rules(_write(tmp_path, _RULES))
    inside = Call.from_dict({"lat": 42.36, "lon": -71.06, "mental_health": True, "district": "A1"})
    outside = Call.from_dict({"lat": 42.33, "lon": -71.08, "mental_health": True, "district": "B2"})
    assert [t.name for t in rules.tiers_for(inside)] == ["first", "second"]
    assert [t.name for t in rules.tiers_for(outside)] == ["second"]
    assert rules.stale_after_s == 600


@pytest.mark.parametrize(("edit", "pattern"), [
    # unknown team type: the line of its `types =`
    (lambda s: s.replace('types = ["police"]', 'types = ["cops"]'), r"line 9: tier 'second': unknown team type 'cops'"),
    # a cycle: second falls back to first
    (lambda s: s.replace('types = ["police"]', 'types = ["police"]\nfallback = "first"'),
     r"line 1\d: fallback cycle: (first -> second -> first|second -> first -> second)"),
    (lambda s: s.replace('fallback = "second"', 'fallback = "third"'), r"line 6: .*unknown tier 'third'"),
    # missing fields
    (lambda s: s.replace('tier = "first"\n', ""), r"line 11: rule #1 'mh_in_a1': missing field 'tier'"),
    (lambda s: s.replace('types = ["co_response"]\n', ""), r"line 4: tier 'first': missing field 'types'"),
    (lambda s: s.replace('name = "everything"\n', ""), r"line 16: rule #2: missing field 'name'"),
    # bad conditions and settings
    (lambda s: s.replace("mental_health = true,", "mental_health = true, colour = 1,"),
     r"line 13: .*unknown condition 'colour'"),
    (lambda s: s.replace("stale_after_s = 600", "stale_after_s = -5"), r"line 2: .*stale_after_s"),
    (lambda s: s.replace('when = {}\n', 'when = { weapon = true }\n'), r"line 16: the last rule must"),
    (lambda s: s.replace("[[rule]]\nname = \"mh", "[[rule]\nname = \"mh"), r"rules.toml"),
])
def test_bad_rules_are_rejected_naming_the_line(tmp_path: Path, edit, pattern: str) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        load_rules(_write(tmp_path, edit(_RULES)))


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        load_rules(tmp_path / "none.toml")
