"""Call files nested 100k deep are one-line CLI errors (exit 2), never a RecursionError traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.cli import main
from routing.jsonlimits import MAX_DEPTH

DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_LINE = '{"a":' * 50_000 + "1" + "}" * 50_000 + "\n"


@pytest.mark.parametrize(("name", "text", "where"), [
    ("deep.json", DEEP_ARRAY, ""),
    ("deep.jsonl", DEEP_LINE, "line 1: "),
])
@pytest.mark.parametrize("command", [["suggest", "--db", "{db}"], ["assign", "--dry-run", "--db", "{db}"],
                                     ["simulate", "--days", "1"]])
def test_deep_call_files_are_one_line_errors(data_dir: Path, tmp_path: Path, capsys, name: str, text: str,
                                             where: str, command: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text)
    argv = [a.format(db=tmp_path / "d.db") for a in command] + ["--calls", str(path), "--data", str(data_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and f"nested deeper than {MAX_DEPTH} levels" in err
    assert where in err


@pytest.mark.parametrize(("argv", "unknown", "near"), [
    (["route", "--form", "42.36,-71.05", "--to", "42.35,-71.06"], "--form", "--from"),
    (["suggest", "--lat", "42.33", "--lon", "-71.08", "--mental-heath"], "--mental-heath", "--mental-health"),
    (["simulate", "--replicatons", "3"], "--replicatons", "--replications"),
])
def test_a_mistyped_option_is_named_before_any_missing_one(capsys, argv: list[str], unknown: str, near: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert err == f"error: unrecognized option {unknown} (did you mean {near}?)"
