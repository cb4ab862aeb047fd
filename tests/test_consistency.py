"""What a person reads is consistent: every option's help gives its default (or says it is required)
and its unit; one ETA format in the CLI, the maps and the engine's messages; map legends explain every
badge drawn; exports carry ISO times and the parameters they were computed with; long ids keep text
tables aligned; ``demo --at`` and generated call ids follow the decision time."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from routing.cli import build_parser, main
from routing.units import format_eta, iso_at, truncate

AT = "2026-06-01T17:30:00-04:00"
AT_UTC = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)
CITY_HALL = "42.3603,-71.0580"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ help texts

def _options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command path, action) of every option of every (sub)command, found by walking the parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*prefix, name))
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prefix, action


def _numeric(action: argparse.Action) -> bool:
    return action.type in (int, float) or "number_arg" in getattr(action.type, "__qualname__", "") \
        or action.dest == "port"


#: A numeric option's help names what it counts or measures.
_UNIT = re.compile(r"\b(seconds?|minutes?|hours?|hour of day|days?|metres|meters|degrees|bytes|calls?|teams?|"
                   r"sites|reports|replications|processes|writes|events|rank|fraction|multiplier|seed|"
                   r"integer|port number)\b", re.I)
_DEFAULT = re.compile(r"\b(default|required|repeatable)\b", re.I)


def test_every_option_help_names_its_default_and_unit() -> None:
    problems = []
    seen = 0
    for path, action in _options(build_parser()):
        name = f"crisis-dispatch {' '.join(path)} {action.option_strings[-1]}"
        text = action.help or ""
        if action.nargs == 0:  # a switch: it needs a help text, but its default is "off"
            if not text.strip():
                problems.append(f"{name}: no help")
            continue
        seen += 1
        if not _DEFAULT.search(text):
            problems.append(f"{name}: help names no default (nor 'required' / 'repeatable'): {text!r}")
        if action.required and "required" not in text:
            problems.append(f"{name}: required, but the help does not say so")
        if _numeric(action) and not _UNIT.search(text):
            problems.append(f"{name}: numeric, but the help names no unit: {text!r}")
    assert seen > 100
    assert not problems, "\n".join(problems)


def test_help_of_the_options_the_issue_names() -> None:
    parser = build_parser()
    helps = {(path, a.option_strings[-1]): a.help or "" for path, a in _options(parser)}
    assert "hour of day 0-23" in helps[(("route",), "--hour")] and "default" in helps[(("route",), "--hour")]
    assert "default" in helps[(("route",), "--mode")]
    assert "minutes" in helps[(("isochrone",), "--minutes")] and "required" in helps[(("isochrone",), "--minutes")]
    for opt in ("--from", "--to"):
        assert "degrees" in helps[(("route",), opt)] and "required" in helps[(("route",), opt)]
    for opt in ("--tier-penalty", "--unserved-penalty"):
        assert "seconds" in helps[(("assign",), opt)] and "default" in helps[(("assign",), opt)]


# ------------------------------------------------------------------------------------------ one ETA format

@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (42.4, "42 s"), (59.6, "1 min 00 s"), (94, "1 min 34 s"), (252, "4 min 12 s"),
    (3599.4, "59 min 59 s"), (3600, "1 h 00 min"), (3725, "1 h 02 min"), (float("inf"), "unreachable"),
    (None, "unreachable"), (float("nan"), "unreachable"),
])
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text


def test_maps_and_reprs_use_the_one_eta_format() -> None:
    from maps import base
    from routing._frames import minutes

    for s in (0, 94, 252, 3725):
        assert base.fmt_duration(s) == base.fmt_clock(s) == minutes(s) == format_eta(s)
    assert base.fmt_clock(None) == minutes(None) == "-"


def _suggestion(team_id: str, rank: int, eta_s: float) -> SimpleNamespace:
    from routing.fleet import TeamStatus, TeamType

    return SimpleNamespace(rank=rank, team_id=team_id, team_type=TeamType.co_response, eta_s=eta_s,
                           distance_m=1234.0, stale=False, status=TeamStatus.available, dedicated=False,
                           position_age_s=30.0)


def test_cli_table_uses_format_eta_and_long_ids_keep_columns() -> None:
    from routing.cli.dispatch import _suggestion_text
    from routing.triage import Call

    call = Call.from_dict({"call_id": "CAD-2026-06-01-000123456789", "lat": 42.36, "lon": -71.06,
                           "mental_health": True, "received": AT})
    long_id = "CR-DOWNTOWN-OVERNIGHT-RELIEF-7"
    r = SimpleNamespace(call=call, rule="mental_health", tiers=[SimpleNamespace(name="alternative")],
                        message="m", suggestions=[_suggestion("CR-A1", 1, 94.0), _suggestion(long_id, 2, 252.0)],
                        omitted=0, ineligible=[])
    text = _suggestion_text(r)  # type: ignore[arg-type]
    rows = [line for line in text.splitlines() if re.match(r"\s+(#|\d+)\s", line)]
    assert len(rows) == 3
    assert "1 min 34 s" in rows[1] and "4 min 12 s" in rows[2] and long_id in rows[2]
    # The ETA and km columns end at the same place in every row, however long the team id.
    ends = {line.index("km") + 2 for line in rows[:1]} | {line.index("1.23") + 4 for line in rows[1:]}
    assert len(ends) == 1, text
    assert truncate("abcdefgh", 5) == "abcd…" and truncate("abc", 5) == "abc"


# ------------------------------------------------------------------------------------------ map legends

def test_dispatch_map_legend_explains_every_rank_badge(boston, places) -> None:
    from maps.dispatch import dispatch_map, rank_legend
    from maps.style import RANK_COLORS
    from routing.dispatch import suggest
    from routing.fleet import TeamState, load_fleet
    from routing.triage import Call, load_rules

    # Beyond the last colour, the legend gives one item for the rest; up to it, one item per rank.
    for n in range(1, 9):
        items = rank_legend(n)
        labels = [i.label for i in items]
        assert len(items) == min(n, len(RANK_COLORS))
        if n > len(RANK_COLORS):
            assert labels[-1].startswith(f"#{len(RANK_COLORS)} to #{n}")
    teams = [TeamState.at_base(t, AT_UTC) for t in load_fleet(places=places)]
    call = Call.from_dict({"call_id": "c-other", "lat": 42.3603, "lon": -71.0580, "received": AT})  # police or EMS
    result = suggest(call, teams, network=boston, rules=load_rules(), places=places, now=AT_UTC)
    n = len(result.suggestions)
    assert n > len(RANK_COLORS)
    for res in (result, [result, result]):
        html = dispatch_map(res, network=boston, places=places, teams=teams, offline=True, routes=1,
                            now=AT_UTC).get_root().render()
        for k in range(1, len(RANK_COLORS)):
            assert f"#{k} " in html
        assert f"#{len(RANK_COLORS)} to #{n}" in html
        assert "min:s" not in html and "minutes:seconds" not in html


# ------------------------------------------------------------------------------------------ exports

def test_geojson_exports_carry_their_parameters(data_dir, tmp_path: Path) -> None:
    out = tmp_path / "coverage.geojson"
    code, _, err = _run("coverage", "--team-type", "co_response", "--minutes", "8", "--from-staging",
                        "--at", AT, "--hour", "17", "--mode", "emergent", "--geojson", str(out), "--json")
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and doc["features"]
    p = doc["parameters"]
    assert p["command"] == "coverage" and p["team_type"] == ["co_response"] and p["minutes"] == 8
    assert datetime.fromisoformat(p["at"]) == AT_UTC and p["hour"] == 17 and p["mode"] == "emergent"
    assert p["profile"]["hour"] == 17 and p["profile"]["mode"] == "emergent" and p["from_staging"] is True
    assert datetime.fromisoformat(p["written_at"]).tzinfo is not None

    out = tmp_path / "route.geojson"
    code, _, err = _run("route", "--from", CITY_HALL, "--to", "42.2557,-71.1246", "--at", AT, "--geojson", str(out))
    assert code == 0, err
    p = json.loads(out.read_text())["parameters"]
    assert p["origin"] == [42.3603, -71.058] and p["profile"]["hour"] == 17 and p["at"] == AT_UTC.isoformat()

    out = tmp_path / "demand.geojson"
    code, _, err = _run("demand", "--geojson", str(out), "--json")
    assert code == 0, err
    assert json.loads(out.read_text())["parameters"]["command"] == "demand"


def test_simulation_records_carry_iso_times_and_the_run(data_dir, tmp_path: Path) -> None:
    records, geo = tmp_path / "records.csv", tmp_path / "sim.geojson"
    code, _, err = _run("simulate", "--days", "0.25", "--scale", "0.3", "--seed", "3", "--start", "2024-03-05",
                        "--records", str(records), "--geojson", str(geo), "--json")
    assert code == 0, err
    rows = list(csv.DictReader(records.open()))
    assert rows
    start = datetime.fromisoformat(rows[0]["run_start"])
    assert start.utcoffset() == timedelta(hours=-5) and start.hour == 0  # Boston midnight, with its offset
    for row in rows:
        assert row["run_seed"] == "3" and row["run_days"] == "0.25" and row["run_volume_scale"] == "0.3"
        received = datetime.fromisoformat(row["received_at"])
        assert received.utcoffset() is not None
        assert abs((received - start).total_seconds() - float(row["received_s"])) <= 0.5
        if row["on_scene_s"]:
            assert datetime.fromisoformat(row["on_scene_at"]) >= received
        else:
            assert row["on_scene_at"] == ""
    p = json.loads(geo.read_text())["parameters"]
    assert p["seed"] == 3 and p["policy"] == "default" and p["start"].startswith("2024-03-05T00:00:00-05:00")
    assert iso_at(start, None) is None and iso_at(start, 61.4) == "2024-03-05T00:01:01-05:00"


# ------------------------------------------------------------------------------------------ clock and ids

def test_demo_takes_at_and_its_call_ids_follow_it(data_dir, tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    ids = []
    for at in (AT, "2026-06-01T18:30:00-04:00"):  # two demos in one database: different calls
        code, out, err = _run("demo", "--at", at, "--no-map", "--db", db, "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert datetime.fromisoformat(doc["now"]) == datetime.fromisoformat(at)
        ids.append([r["call"]["call_id"] for r in doc["results"]])
        assert all(datetime.fromisoformat(r["call"]["received"]) == datetime.fromisoformat(at)
                   for r in doc["results"])
    assert ids[0][0] == "demo-1-20260601T173000" and ids[1][0] == "demo-1-20260601T183000"


def test_generated_call_id_follows_the_decision_time(data_dir, tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    code, out, err = _run("suggest", "--lat", "42.3296", "--lon", "-71.0840", "--mental-health", "--at", AT,
                          "--db", db, "--json")
    assert code == 0, err
    call = json.loads(out)["call"]
    assert call["call_id"].startswith("cli-20260601T213000-")
    code, out, err = _run("suggest", "--lat", "42.3296", "--lon", "-71.0840", "--mental-health", "--at", AT,
                          "--db", db, "--json")  # the same call at the same time: the same id
    assert code == 0, err
    assert json.loads(out)["call"]["call_id"] == call["call_id"]
