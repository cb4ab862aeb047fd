"""Scenario sweeps: the grid file, the scenario policies, and a Dask run (a local cluster of two worker
processes) that gives exactly the serial results; the tidy output and the CLI."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from routing.cli import main
from routing.errors import InvalidInput
from routing.sweep import build_policy, load_grid, run_dask, run_serial

GRID = """
[sweep]
name = "tiny"
days = 0.125
replications = 2
seed = 7
start = "2024-01-02"

[axes]
policies = ["default", "community_expanded"]
fleet_sizes = [1, 2]
shifts = ["as_policy", "alt_24h"]
volumes = [1.0]

[shifts.alt_24h]
"EC-*" = "24h"
"COM-*" = "24h"
"""


@pytest.fixture()
def grid_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


def test_grid_file_and_scenario_policies(grid_file, places, tmp_path) -> None:
    grid = load_grid(grid_file)
    assert len(grid.scenarios) == 2 * 2 * 2 and grid.replications == 2
    assert grid.tasks()[:3] == [(0, 0), (0, 1), (1, 0)]
    base = build_policy(grid.scenarios[0], grid, places)
    doubled = next(s for s in grid.scenarios if s.fleet_size == 2 and s.shifts == "alt_24h"
                   and s.policy == "default")
    pol = build_policy(doubled, grid, places)
    alt = lambda p: [t for t in p.teams if t.team_type.value in ("emt_clinician", "community")]  # noqa: E731
    assert len(alt(pol)) == 2 * len(alt(base)) and len(pol.teams) - len(base.teams) == len(alt(base))
    assert all(t.shift is None for t in alt(pol))  # round the clock, copies included
    assert any(t.team_id.endswith("~2") for t in pol.teams)
    for body, match in [("[axes]\nvolumes = []\n", "non-empty"), ("[axes]\nshifts = [\"nope\"]\n", "no \\[shifts.nope"),
                        ("[sweep]\ndays = -1\n", "days"), ("[mix]\nscale = 2\n", "volumes"), ("[oops]\n", "unknown")]:
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(InvalidInput, match=match):
            load_grid(bad)


def test_dask_sweep_equals_serial_run(grid_file, data_dir, tmp_path) -> None:
    from distributed import Client, LocalCluster

    grid = load_grid(grid_file)
    grid.scenarios = grid.scenarios[::3]  # 3 scenarios x 2 replications keep the test short
    serial = run_serial(grid, data_dir)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = []
        dask = run_dask(grid, data_dir, client=client, progress=lambda k, n: seen.append((k, n)))
    assert seen[-1] == (6, 6)
    assert dask.workers == 2
    assert dask.rows() == serial.rows()
    assert [r["metrics"] for r in dask.results] == [r["metrics"] for r in serial.results]
    # Common random numbers: replication r meets the same calls in every scenario of one volume.
    calls = {(row["replication"], row["calls"]) for row in dask.rows()}
    assert len(calls) == 2
    written = dask.write(tmp_path / "out")
    frame = pd.read_parquet(written[0])
    assert len(frame) == 6 and {"scenario", "policy", "fleet_size", "shifts", "volume", "replication",
                                "eligible_reach", "late_share", "backlog_mean"} <= set(frame.columns)
    assert pd.read_csv(written[1]).shape == frame.shape
    summary = json.loads(written[2].read_text())
    entry = summary["scenarios"][grid.scenarios[-1].scenario_id]
    assert set(entry["metrics"]["eligible_reach"]) == {"mean", "ci95", "replications"}
    assert "run" in summary and "wall_s" in summary["run"]


def test_cli_sweep_serial(grid_file, data_dir, tmp_path) -> None:
    text = grid_file.read_text().replace('fleet_sizes = [1, 2]', 'fleet_sizes = [1]').replace(
        'policies = ["default", "community_expanded"]', 'policies = ["default"]')
    grid_file.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["sweep", str(grid_file), "--serial", "--out", str(tmp_path / "res")])
    assert code == 0, err.getvalue()
    assert "2 scenarios x 2 replications" in out.getvalue() and "rows.parquet" in out.getvalue()
    assert (tmp_path / "res" / "rows.csv").is_file()


def test_conflicting_run_options_are_refused_in_one_line(capsys, tmp_path) -> None:
    from routing.cli import main

    grid = Path(__file__).resolve().parents[1] / "examples" / "sweep_quick.toml"
    assert main(["sweep", str(grid), "--serial", "--workers", "2"]) == 2
    assert main(["simulate", "--days", "1", "--report", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--serial" in err[0] and "FILE.html" in err[1]
    assert not (tmp_path / "r.pdf").exists()
