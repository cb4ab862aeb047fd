"""Fleet file, team types and statuses, lifecycle, shifts."""

from __future__ import annotations

import csv
import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from routing.config import project_data_path
from routing.errors import Conflict, InvalidInput
from routing.fleet import (
    DISPATCHABLE,
    Shift,
    TeamState,
    TeamStatus,
    TeamType,
    check_transition,
    load_fleet,
    team_from_dict,
)

S = TeamStatus


def test_enums_are_the_design_vocabulary() -> None:
    assert {t.value for t in TeamType} == {"co_response", "emt_clinician", "community", "police", "ems"}
    assert {s.value for s in TeamStatus} == {"available", "en_route", "on_scene", "transporting", "returning",
                                             "out_of_service", "off_shift"}
    assert {S.available, S.returning} == DISPATCHABLE
    assert TeamType("police") == "police"  # str enum: JSON and SQL see plain strings


def test_default_fleet_models_the_pilot() -> None:
    teams = load_fleet()
    by_type: dict[TeamType, list] = {}
    for t in teams:
        by_type.setdefault(t.team_type, []).append(t)
    assert set(by_type) == set(TeamType)
    dedicated = [t for t in teams if t.dedicated]
    # Pilot (published_figures.csv): dedicated co-response cars in districts A1 and B2 only.
    assert sorted(t.team_id for t in dedicated) == ["CR-A1", "CR-B2"]
    assert all(t.team_type is TeamType.co_response for t in dedicated)
    assert {a for t in dedicated for a in t.service_area} == {"A1", "A15", "B2"}
    # EMT + clinician response is citywide (no service area).
    assert by_type[TeamType.emt_clinician] and all(not t.service_area for t in by_type[TeamType.emt_clinician])
    # Community teams have service hours and areas.
    assert all(t.shift is not None and t.service_area for t in by_type[TeamType.community])
    ids = [t.team_id for t in teams]
    assert len(ids) == len(set(ids))


def test_default_fleet_names_known_areas_and_sites_in_the_city(places, boston) -> None:
    teams = load_fleet(places=places)  # raises on an unknown district/neighbourhood name
    for t in teams:
        boston.check_point(t.base_lat, t.base_lon)  # every staging site is on Boston's road network
        hood, district = places.locate(t.base_lat, t.base_lon)
        assert district is not None, t.team_id


def _source_points(data_dir: Path) -> dict[str, tuple[float, float]]:
    ctx = data_dir / "boston-context"
    out: dict[str, tuple[float, float]] = {}
    for f in json.loads((ctx / "bpd_police_stations.geojson").read_text())["features"]:
        lon, lat = f["geometry"]["coordinates"][:2]
        out[f"bpd_police_stations.geojson BPD_ID {f['properties']['BPD_ID']}"] = (lat, lon)
    for f in json.loads((ctx / "hospitals.geojson").read_text())["features"]:
        lon, lat = f["geometry"]["coordinates"][:2]
        out[f"hospitals.geojson '{f['properties']['Name'].strip()}'"] = (lat, lon)
    for f in json.loads((ctx / "bcyf_community_centers.geojson").read_text())["features"]:
        lon, lat = f["geometry"]["coordinates"][:2]
        out[f"bcyf_community_centers.geojson SITE '{f['properties']['SITE']}'"] = (lat, lon)
    with open(ctx / "bfd_fire_stations.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out[f"bfd_fire_stations.csv '{row['name']}'"] = (float(row["lat"]), float(row["lon"]))
    return out


def test_fleet_coordinates_are_the_facts_of_the_named_source(data_dir: Path) -> None:
    raw = tomllib.loads(project_data_path("fleet.toml").read_text())
    points = _source_points(data_dir)
    for entry in raw["team"]:
        source = re.sub(r"\s*\(.*\)$", "", entry["source"])  # drop a trailing "(Albany St)" note
        assert source in points, f"{entry['id']}: source {source!r} not found in the data files"
        lat, lon = points[source]
        # Rounded to 6 decimals in the TOML: within 1e-6 degrees (~0.1 m).
        assert abs(entry["lat"] - lat) < 1e-6 and abs(entry["lon"] - lon) < 1e-6, entry["id"]


def test_lifecycle_allows_the_normal_cycle() -> None:
    for old, new in [(S.available, S.en_route), (S.en_route, S.on_scene), (S.on_scene, S.transporting),
                     (S.transporting, S.returning), (S.returning, S.available), (S.returning, S.en_route),
                     (S.en_route, S.available), (S.available, S.off_shift), (S.off_shift, S.available),
                     (S.on_scene, S.out_of_service), (S.available, S.available)]:
        check_transition(old, new)


@pytest.mark.parametrize(("old", "new"), [
    (S.available, S.on_scene), (S.available, S.transporting), (S.off_shift, S.en_route),
    (S.transporting, S.en_route), (S.on_scene, S.off_shift), (S.en_route, S.transporting),
    (S.out_of_service, S.en_route), (S.en_route, S.off_shift),
])
def test_lifecycle_rejects_impossible_transitions(old: TeamStatus, new: TeamStatus) -> None:
    with pytest.raises(Conflict, match=f"cannot go from {old.value} to {new.value}"):
        check_transition(old, new)


def test_unknown_status_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as err:
        check_transition("available", "napping")
    assert err.value.field == "status"


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_shift_wrapping_midnight_in_local_time() -> None:
    night = Shift.parse("19:00-07:00")
    assert night.covers(_at("2025-01-15T23:00:00-05:00"))
    assert night.covers(_at("2025-01-15T06:59:00-05:00"))
    assert not night.covers(_at("2025-01-15T07:00:00-05:00"))
    assert not night.covers(_at("2025-01-15T12:00:00-05:00"))
    # 23:30 UTC is 19:30 in July (EDT, UTC-4) but 18:30 in January (EST, UTC-5).
    assert night.covers(datetime(2025, 7, 1, 23, 30, tzinfo=UTC))
    assert not night.covers(datetime(2025, 1, 1, 23, 30, tzinfo=UTC))


def test_shift_days_count_from_the_start_of_the_shift() -> None:
    weekdays = Shift.parse("08:00-20:00", days=["mon", "tue", "wed", "thu", "fri"])
    assert weekdays.covers(_at("2025-05-09T12:00:00-04:00"))  # Friday
    assert not weekdays.covers(_at("2025-05-10T12:00:00-04:00"))  # Saturday
    friday_night = Shift.parse("22:00-06:00", days=["fri"])
    assert friday_night.covers(_at("2025-05-10T02:00:00-04:00"))  # Saturday 02:00 is Friday's shift
    assert not friday_night.covers(_at("2025-05-09T02:00:00-04:00"))  # Friday 02:00 is Thursday's


def test_shift_to_24h_and_bad_shifts() -> None:
    assert Shift.parse("08:00-24:00").covers(_at("2025-05-09T23:59:00-04:00"))
    for bad in ("8-20", "25:00-03:00", "08:00-08:00", "08:61-09:00"):
        with pytest.raises(InvalidInput):
            Shift.parse(bad)


def test_team_roundtrip_and_state_age() -> None:
    team = load_fleet()[0]
    assert team_from_dict(team.to_dict()) == team
    t0 = datetime(2025, 5, 9, 12, tzinfo=UTC)
    state = TeamState.at_base(team, t0)
    assert (state.lat, state.lon) == (team.base_lat, team.base_lon)
    assert state.position_age_s(datetime(2025, 5, 9, 12, 10, tzinfo=UTC)) == 600.0
    with pytest.raises(InvalidInput):
        TeamState.at_base(team, datetime(2025, 5, 9, 12))  # naive: ambiguous


_GOOD = """\
[fleet]
timezone = "America/New_York"

[[team]]
id = "T1"
type = "police"
name = "Unit 1"
base = "Somewhere"
lat = 42.36
lon = -71.06

[[team]]
id = "T2"
type = "community"
name = "Unit 2"
base = "Elsewhere"
lat = 42.33
lon = -71.08
service_area = ["Roxbury"]
shift = "10:00-22:00"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(text)
    return p


def test_small_fleet_file_loads(tmp_path: Path) -> None:
    teams = load_fleet(_write(tmp_path, _GOOD))
    assert [t.team_id for t in teams] == ["T1", "T2"]
    assert teams[1].shift is not None and teams[1].service_area == ("Roxbury",)
    counted = load_fleet(_write(tmp_path, _GOOD.replace('id = "T1"', 'id = "T1"\ncount = 3')))
    assert [t.team_id for t in counted] == ["T1-1", "T1-2", "T1-3", "T2"]


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda s: s.replace("lon = -71.08\n", ""), r"line 12 \(team #2 'T2'\): missing field 'lon'"),
    (lambda s: s.replace('type = "community"', 'type = "firefighter"'), r"line 12 .*unknown team type"),
    (lambda s: s.replace('id = "T2"', 'id = "T1"'), r"line 12 .*duplicate team id 'T1'"),
    (lambda s: s.replace('"10:00-22:00"', '"10-22"'), r"line 12 .*shift must look like"),
    (lambda s: s.replace("lat = 42.36", "lat = 142.36"), r"line 4 .*'lat' must be a number"),
    (lambda s: s.replace("lat = 42.36", 'lat = "north"'), r"line 4 .*'lat' must be a number"),
    (lambda s: s.replace('name = "Unit 1"', 'name = "Unit 1"\ncolour = "red"'), r"line 4 .*unknown key"),
    (lambda s: s.replace("[[team]]\nid", "[[team]\nid", 1), r"fleet.toml"),
])
def test_bad_fleet_files_are_rejected_naming_the_line(tmp_path: Path, edit, pattern: str) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        load_fleet(_write(tmp_path, edit(_GOOD)))


def test_unknown_service_area_is_rejected_with_places(tmp_path: Path, places) -> None:
    text = _GOOD.replace('["Roxbury"]', '["Roxbery"]')
    load_fleet(_write(tmp_path, text))  # without places the names cannot be checked
    with pytest.raises(InvalidInput, match=r"line 12 .*unknown district/neighborhood 'Roxbery'"):
        load_fleet(_write(tmp_path, text), places=places)


def test_missing_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        load_fleet(tmp_path / "nope.toml")
