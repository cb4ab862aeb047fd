"""Scenario sweeps: a grid of policies x fleet sizes x shift patterns x call volumes x replications,
run on ``dask.distributed`` (or serially, with identical results).

Grid file (TOML; ``examples/sweep_grid.toml`` is a complete example)::

    [sweep]
    name = "alternative-fleet"      # for reports
    days = 28                       # simulated days of every run
    replications = 5                # replication r uses seed + r for every scenario (common random numbers)
    seed = 0
    start = "2024-01-01"            # first day (Boston time), default 2024-01-01
    max_wait_min = 120              # 0 = calls wait as long as it takes
    time_of_day = true              # hour-of-day speed factors

    [axes]
    policies = ["default", "community_expanded"]   # shipped names or policy files (relative to the grid)
    fleet_sizes = [1, 2]            # multiplier of the teams of `fleet_types` (0 = none of them)
    fleet_types = ["emt_clinician", "community"]
    shifts = ["as_policy", "alt_24h"]  # "as_policy" or the name of a [shifts.NAME] table
    volumes = [1.0, 1.5]            # multiplier of every call volume (CallMix.scale)

    [shifts.alt_24h]                # exactly the [hours] table of a policy file
    "EC-*" = "24h"
    "COM-*" = "08:00-24:00"

    [mix]                           # optional CallMix fields (routing.arrivals.CallMix)
    mh_per_year = 10000

Every axis is optional (a missing one has the single value shown first). A scenario is one point of the
grid; a task is one scenario and one replication. Extra copies of a team (``fleet_sizes`` above 1) are
staged where it is, with ids ``ID~2``, ``ID~3``...; a shift pattern is applied after copying, so
``"EC-*"`` covers the copies too.

Results: one tidy row per scenario and replication (the scalar figures of :mod:`routing.metrics`), and
a summary per scenario with 95 % intervals and paired differences against the first policy of the
grid at the same fleet, shifts and volume.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.errors import InvalidInput, reason

_SWEEP_KEYS = {"name", "days", "replications", "seed", "start", "max_wait_min", "time_of_day"}
_AXES = {"policies", "fleet_sizes", "fleet_types", "shifts", "volumes"}


@dataclass(frozen=True)
class Scenario:
    """One point of the grid."""

    policy: str
    fleet_size: int = 1
    shifts: str = "as_policy"
    volume: float = 1.0

    @property
    def scenario_id(self) -> str:
        return f"{Path(self.policy).stem}|fleet={self.fleet_size}|shifts={self.shifts}|volume={self.volume:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario_id, "policy": Path(self.policy).stem, "fleet_size": self.fleet_size,
                "shifts": self.shifts, "volume": self.volume}


@dataclass
class Grid:
    """A parsed grid file (see the module docstring)."""

    name: str
    scenarios: list[Scenario]
    days: float = 28.0
    replications: int = 5
    seed: int = 0
    start: str = "2024-01-01"
    max_wait_min: float = 120.0
    time_of_day: bool = True
    fleet_types: tuple[str, ...] = ("emt_clinician", "community")
    shift_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    mix: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def tasks(self) -> list[tuple[int, int]]:
        """``(scenario index, replication)`` of every task, in the order of the serial run."""
        return [(i, r) for i in range(len(self.scenarios)) for r in range(self.replications)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "days": self.days, "replications": self.replications,
                "seed": self.seed, "start": self.start, "max_wait_min": self.max_wait_min,
                "time_of_day": self.time_of_day, "fleet_types": list(self.fleet_types),
                "shifts": self.shift_tables, "mix": self.mix, "scenarios": [s.scenario_id for s in self.scenarios]}


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read and check a grid file.

    Raises
    ------
    InvalidInput
        Unreadable TOML, unknown keys, bad numbers, a shift pattern name without its table.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read grid file {p}: {reason(exc)}", field="grid") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{p}: {exc}", field="grid") from None

    def bad(msg: str) -> InvalidInput:
        return InvalidInput(f"{p}: {msg}", field="grid")

    unknown = set(doc) - {"sweep", "axes", "shifts", "mix"}
    if unknown:
        raise bad(f"unknown section(s) {', '.join(sorted(unknown))} (allowed: sweep, axes, shifts, mix)")
    sweep, axes = doc.get("sweep", {}), doc.get("axes", {})
    if set(sweep) - _SWEEP_KEYS:
        raise bad(f"[sweep]: unknown key(s) {', '.join(sorted(set(sweep) - _SWEEP_KEYS))}")
    if set(axes) - _AXES:
        raise bad(f"[axes]: unknown key(s) {', '.join(sorted(set(axes) - _AXES))}")

    def num(table: dict[str, Any], key: str, default: float, lo: float, hi: float, kind: type = float) -> Any:
        v = table.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi \
                or (kind is int and int(v) != v):
            raise bad(f"{key} must be {'an integer' if kind is int else 'a number'} in {lo:g}..{hi:g}, got {v!r}")
        return kind(v)

    def listed(key: str, default: list[Any]) -> list[Any]:
        v = axes.get(key, default)
        if not isinstance(v, list) or not v:
            raise bad(f"[axes] {key} must be a non-empty list")
        return v

    policies = []
    for name in listed("policies", ["default"]):
        if not isinstance(name, str):
            raise bad("[axes] policies must be policy names or files")
        rel = (p.parent / name)
        policies.append(str(rel.resolve()) if ("/" in name or name.endswith(".toml")) and rel.is_file() else name)
    sizes = [num({"fleet_sizes": v}, "fleet_sizes", 1, 0, 20, int) for v in listed("fleet_sizes", [1])]
    volumes = [num({"volumes": v}, "volumes", 1.0, 0.0, 100.0) for v in listed("volumes", [1.0])]
    shift_tables = doc.get("shifts", {})
    if not isinstance(shift_tables, dict) or not all(isinstance(v, dict) for v in shift_tables.values()):
        raise bad("[shifts.NAME] must be tables of team pattern = \"HH:MM-HH:MM\" | \"24h\"")
    shifts = listed("shifts", ["as_policy"])
    for s in shifts:
        if s != "as_policy" and s not in shift_tables:
            raise bad(f"[axes] shifts: no [shifts.{s}] table")
    types = tuple(listed("fleet_types", ["emt_clinician", "community"]))
    mix = doc.get("mix", {})
    from routing.arrivals import CallMix

    try:
        CallMix(**mix)
    except TypeError as exc:
        raise bad(f"[mix]: {exc}") from None
    if "scale" in mix:
        raise bad("[mix] scale: use [axes] volumes")
    scenarios = [Scenario(pol, size, sh, vol)
                 for pol, size, sh, vol in itertools.product(policies, sizes, shifts, volumes)]
    return Grid(str(sweep.get("name", p.stem)), scenarios, days=num(sweep, "days", 28.0, 0.001, 3660),
                replications=num(sweep, "replications", 5, 1, 10_000, int), seed=num(sweep, "seed", 0, 0, 2**31, int),
                start=str(sweep.get("start", "2024-01-01")),
                max_wait_min=num(sweep, "max_wait_min", 120.0, 0, 10_000),
                time_of_day=bool(sweep.get("time_of_day", True)), fleet_types=types,
                shift_tables=shift_tables, mix=dict(mix), source=str(p))


# ------------------------------------------------------------------------------------------ workers

#: Per-process cache of the loaded world: a Dask worker loads the network (from the prepared-network
#: cache), places and arrival model once and keeps them for every later task.
_WORLD: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
_POLICIES: dict[tuple[Any, ...], Any] = {}


def _world(data_dir: str, source: str | None, speeds: str | None, boundary: str | None) -> tuple[Any, Any, Any]:
    key = (data_dir, source, speeds, boundary)
    hit = _WORLD.get(key)
    if hit is None:
        from routing.arrivals import load_arrival_model
        from routing.network import load_network
        from routing.places import load_places

        network = load_network(data_dir, source=source, speeds=speeds, boundary=boundary)
        places = load_places(data_dir)
        model = load_arrival_model(data_dir, network=network, places=places)
        hit = _WORLD[key] = (network, places, model)
    return hit


def build_policy(scenario: Scenario, grid: Grid, places: Any) -> Any:
    """The scenario's policy: the named policy, its alternative teams multiplied, the shift pattern applied."""
    from routing.fleet import parse_team_type
    from routing.policy import _match, _shift, load_policy

    key = (scenario.policy, scenario.fleet_size, scenario.shifts, grid.source, tuple(grid.fleet_types), id(places))
    hit = _POLICIES.get(key)
    if hit is not None:
        return hit
    policy = load_policy(scenario.policy, places=places)
    types = {parse_team_type(t) for t in grid.fleet_types}
    teams = []
    for t in policy.teams:
        if t.team_type not in types:
            teams.append(t)
            continue
        if scenario.fleet_size >= 1:
            teams.append(t)
        teams.extend(dataclasses.replace(t, team_id=f"{t.team_id}~{k}") for k in range(2, scenario.fleet_size + 1))
    changes = [f"fleet size x{scenario.fleet_size} for {', '.join(sorted(grid.fleet_types))}"]
    if scenario.shifts != "as_policy":

        table = f"[shifts.{scenario.shifts}]"

        def bad(msg: str) -> InvalidInput:
            # The policy format's messages name their own table ([hours]) or the label they were given.
            msg = msg.replace("[hours]", table, 1) if msg.startswith("[hours]") else msg
            return InvalidInput(f"{grid.source}: {msg if msg.startswith(table) else f'{table} {msg}'}",
                                field="grid")

        for pattern, spec in grid.shift_tables[scenario.shifts].items():
            hit_ids = _match(teams, pattern, f"[shifts.{scenario.shifts}]", bad)
            shift = _shift(spec, pattern, "America/New_York", bad)
            teams = [dataclasses.replace(t, shift=shift) if t.team_id in hit_ids else t for t in teams]
        changes.append(f"shift pattern {scenario.shifts}")
    policy = dataclasses.replace(policy, name=scenario.scenario_id, teams=teams,
                                 changes=list(policy.changes) + changes)
    _POLICIES[key] = policy
    return policy


def run_task(grid: Grid, index: int, replication: int, data_dir: str, source: str | None = None,
             speeds: str | None = None, boundary: str | None = None) -> dict[str, Any]:
    """One scenario x replication: ``{"row": tidy row, "metrics": RunMetrics.to_dict(), "wall_s"}``.

    A pure function of its arguments (except ``wall_s``): it runs the same in a Dask worker and here.
    """
    from routing.arrivals import CallMix, generate_calls
    from routing.experiments import run_replication
    from routing.metrics import load_time_standards
    from routing.simulation import parse_start

    network, places, model = _world(data_dir, source, speeds, boundary)
    scenario = grid.scenarios[index]
    policy = build_policy(scenario, grid, places)
    seed = grid.seed + replication
    start = parse_start(grid.start)
    mix = CallMix(**grid.mix, scale=scenario.volume)
    calls = generate_calls(model, mix, start=start, days=grid.days, seed=seed)
    rec = run_replication(policy, calls, network=network, places=places, start=start, days=grid.days, seed=seed,
                          max_wait_s=grid.max_wait_min * 60 if grid.max_wait_min > 0 else None,
                          time_of_day=grid.time_of_day, standards=load_time_standards())
    row = {**scenario.to_dict(), "replication": replication, "seed": seed, **rec["metrics"]["scalars"]}
    return {"index": index, "replication": replication, "row": row, "metrics": rec["metrics"], "wall_s": rec["wall_s"]}


# ------------------------------------------------------------------------------------------ results


@dataclass
class SweepResult:
    """Every task's result, in grid order (scenario, then replication), whatever order they finished in."""

    grid: Grid
    results: list[dict[str, Any]]
    wall_s: float
    workers: int = 1

    def rows(self) -> list[dict[str, Any]]:
        """One tidy row per scenario and replication."""
        return [r["row"] for r in self.results]

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows())

    def experiment(self, index: int) -> Any:
        """The replications of one scenario as an :class:`routing.experiments.ExperimentResult`."""
        from routing.experiments import ExperimentResult

        sc = self.grid.scenarios[index]
        runs = [{"seed": r["row"]["seed"], "metrics": r["metrics"], "wall_s": r["wall_s"]}
                for r in self.results if r["index"] == index]
        return ExperimentResult([sc.scenario_id], {sc.scenario_id: runs}, {"start": self.grid.start,
                                "days": self.grid.days, "seed": self.grid.seed}, 0.0)

    def summary(self) -> dict[str, Any]:
        """Per scenario: every scalar figure with its interval; paired differences against the grid's
        first policy at the same fleet size, shifts and volume."""
        from routing.experiments import ci95
        from routing.metrics import feasible_range

        by_index: dict[int, list[dict[str, Any]]] = {}
        for r in self.results:
            by_index.setdefault(r["index"], []).append(r["row"])
        base_policy = Path(self.grid.scenarios[0].policy).stem
        out = {}
        for i, sc in enumerate(self.grid.scenarios):
            rows = by_index.get(i, [])
            metrics = [k for k in rows[0] if k not in ("scenario", "policy", "fleet_size", "shifts", "volume",
                                                       "replication", "seed")] if rows else []
            entry: dict[str, Any] = {**sc.to_dict(), "metrics": {k: ci95([row.get(k) for row in rows],
                                                                      feasible_range(k)) for k in metrics}}
            if Path(sc.policy).stem != base_policy:
                j = next((k for k, o in enumerate(self.grid.scenarios) if Path(o.policy).stem == base_policy
                          and (o.fleet_size, o.shifts, o.volume) == (sc.fleet_size, sc.shifts, sc.volume)), None)
                if j is not None:
                    base_rows = by_index.get(j, [])
                    entry["difference_vs"] = self.grid.scenarios[j].scenario_id
                    entry["differences"] = {k: ci95([None if a.get(k) is None or b.get(k) is None
                                                     else b[k] - a[k] for a, b in zip(base_rows, rows, strict=True)])
                                            for k in metrics}
            out[sc.scenario_id] = entry
        return {"grid": self.grid.to_dict(), "scenarios": out,
                "run": {"wall_s": round(self.wall_s, 3), "workers": self.workers,
                        "task_wall_s": [round(r["wall_s"], 3) for r in self.results]}}

    def write(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """``rows.parquet``, ``rows.csv`` and ``summary.json`` in ``out_dir``."""
        import json

        d = Path(out_dir)
        try:
            d.mkdir(parents=True, exist_ok=True)
            frame = self.to_frame()
            frame.to_parquet(d / "rows.parquet", index=False)
            frame.to_csv(d / "rows.csv", index=False)
            from routing._json import to_jsonable

            (d / "summary.json").write_text(json.dumps(to_jsonable(self.summary()), indent=1, allow_nan=False))
        except OSError as exc:
            raise InvalidInput(f"cannot write sweep results to {d}: {reason(exc)}", field="out") from None
        return [d / "rows.parquet", d / "rows.csv", d / "summary.json"]


def run_serial(grid: Grid, data_dir: str | os.PathLike[str], *, source: str | None = None,
               speeds: str | None = None, boundary: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run every task one after another in this process (the reference the Dask run must equal)."""
    started = time.perf_counter()
    tasks = grid.tasks()
    results = []
    for k, (i, r) in enumerate(tasks, start=1):
        results.append(run_task(grid, i, r, str(data_dir), source, speeds, boundary))
        if progress is not None:
            progress(k, len(tasks))
    return SweepResult(grid, results, time.perf_counter() - started)


def run_dask(grid: Grid, data_dir: str | os.PathLike[str], *, client: Any = None, scheduler: str | None = None,
             workers: int | None = None, source: str | None = None, speeds: str | None = None,
             boundary: str | None = None, progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run every task on ``dask.distributed``.

    Parameters
    ----------
    client
        An existing ``distributed.Client``; else one to ``scheduler`` (an address such as
        ``tcp://host:8786``); else a ``LocalCluster`` of ``workers`` processes (default: every core), one
        thread each (the simulation is pure Python: threads would share one GIL).
    progress
        Called with ``(done, total)`` as tasks finish.

    Results are sorted back into grid order, so they equal :func:`run_serial`'s whatever the finishing
    order; each worker process loads the world (network from the prepared cache, places, arrival
    model) once, on its first task.
    """
    from distributed import Client, LocalCluster, as_completed

    started = time.perf_counter()
    own: list[Any] = []
    if client is None:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            own.append(cluster)
            client = Client(cluster)
        own.insert(0, client)
    try:
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
        grid_f = client.scatter(grid, broadcast=True)
        tasks = grid.tasks()
        # Unique keys: a second sweep on the same cluster must not be served the first one's results.
        futures = [client.submit(run_task, grid_f, i, r, str(data_dir), source, speeds, boundary, pure=False,
                                 key=f"sweep-{i}-{r}-{time.time_ns()}") for i, r in tasks]
        results = []
        for k, fut in enumerate(as_completed(futures), start=1):
            results.append(fut.result())
            if progress is not None:
                progress(k, len(tasks))
    finally:
        for obj in own:
            obj.close()
    results.sort(key=lambda r: (r["index"], r["replication"]))
    return SweepResult(grid, results, time.perf_counter() - started, n_workers)


__all__ = ["Grid", "Scenario", "SweepResult", "build_policy", "load_grid", "run_dask", "run_serial", "run_task"]
