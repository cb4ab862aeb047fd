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
