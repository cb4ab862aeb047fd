"""Replicated simulation experiments: every figure as a mean with a 95 % confidence interval.

One simulated run is one draw: its response median or its reach of eligible calls would come out
different with another seed. :func:`replicate` runs ``replications`` independent replications of every
policy and summarises each figure of :mod:`routing.metrics` over them:

- replication ``r`` uses seed ``seed + r`` both to draw the calls (:func:`routing.arrivals.generate_calls`)
  and for the service-time streams of :func:`routing.simulation.simulate`; every policy meets exactly the
  same calls with the same on-scene "difficulty" in replication ``r`` (common random numbers), so
  replication 0 is the single run ``crisis-dispatch simulate --seed SEED`` prints;
- a figure's interval is the Student t interval over replications, ``mean +- t(0.975, N-1) * sd / sqrt(N)``
  (replications are independent, so it needs no further assumption than approximate normality of the
  mean);
- a policy difference is summarised on the paired differences ``B_r - A_r``: with common random numbers
  most of the call-to-call noise cancels, so the interval of the difference is much narrower than the
  intervals of A and B would suggest.

Replayed calls (a fixed call file) are the same in every replication; only the service times change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats

from routing.arrivals import CallMix, generate_calls
from routing.errors import InvalidInput
from routing.metrics import TimeStandard, feasible_range, load_time_standards, published_metrics
from routing.policy import Policy
from routing.simulation import DEFAULT_MAX_WAIT_S, TZ, default_start, simulate
from routing.triage import Call

CallSource = Sequence[Call] | Callable[[int], Sequence[Call]]


def ci95(values: Sequence[float | None], bounds: tuple[float | None, float | None] | None = None
         ) -> dict[str, Any]:
    """``{"mean", "ci95": [low, high], "replications": [...]}`` of per-replication values.

    Values that are ``None`` (a figure undefined in that replication, e.g. a share of zero calls) are
    kept in ``replications`` and left out of the mean and interval. With fewer than two values the
    interval is ``[None, None]``. ``bounds`` (e.g. ``(0, 1)`` for a share, from
    :func:`routing.metrics.feasible_range`) clips the Student t interval to what the figure can take;
    differences are never clipped.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    mean = float(np.mean(vals)) if n else None
    lo: float | None = None
    hi: float | None = None
    if n >= 2 and mean is not None:  # n >= 2: the mean is set
        half = float(stats.t.ppf(0.975, n - 1) * np.std(vals, ddof=1) / math.sqrt(n))
        lo, hi = mean - half, mean + half
        if bounds is not None:
            lo = lo if bounds[0] is None else max(lo, bounds[0])
            hi = hi if bounds[1] is None else min(hi, bounds[1])
    return {"mean": mean, "ci95": [lo, hi],
            "replications": [None if v is None or not math.isfinite(v) else float(v) for v in values]}


def run_replication(policy: Policy, calls: Sequence[Call], *, network: Any, places: Any = None,
                    start: datetime, days: float, seed: int, max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
                    time_of_day: bool = True, hospitals: Sequence[tuple[str, float, float]] | None = None,
                    standards: Sequence[TimeStandard] | None = None) -> dict[str, Any]:
    """One simulated replication and its published figures (:func:`routing.metrics.published_metrics`).

    Returns
    -------
    dict
        ``{"seed", "metrics": RunMetrics.to_dict(), "wall_s", "events"}``; everything but ``wall_s`` is
        a pure function of the inputs.
    """
    # simulate() starts from ETA caches that depend only on its inputs (routing.eta.reset_caches), so
    # a replication's figures are bit-for-bit the same in a Dask worker, a serial loop or a fresh command.
    res = simulate(policy, calls, network=network, places=places, start=start, days=days, seed=seed,
                   max_wait_s=max_wait_s, hospitals=hospitals, time_of_day=time_of_day)
    metrics = published_metrics(res, standards=standards)
    return {"seed": int(seed), "metrics": metrics.to_dict(), "wall_s": res.wall_s, "events": res.events}


@dataclass
class ExperimentResult:
    """Replications of several policies on common random numbers.

    ``runs[policy][r]`` is :func:`run_replication`'s record of replication ``r``. ``to_dict()`` gives
    every figure as ``{"mean", "ci95", "replications"}``; wall-clock figures live only under ``run``.
    """

    policies: list[str]
    runs: dict[str, list[dict[str, Any]]]
    scenario: dict[str, Any]
    wall_s: float
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def replications(self) -> int:
        return len(next(iter(self.runs.values()))) if self.runs else 0

    def values(self, policy: str, metric: str) -> list[float | None]:
        """Per-replication values of a scalar figure."""
        return [r["metrics"]["scalars"].get(metric) for r in self.runs[policy]]

    def summary(self, policy: str) -> dict[str, Any]:
        """Every figure of one policy with its interval."""
        recs = [r["metrics"] for r in self.runs[policy]]
        names = _ordered_keys(m["scalars"] for m in recs)
        scalars = {k: ci95([m["scalars"].get(k) for m in recs], feasible_range(k)) for k in names}
        by_hour = {k: [ci95([m["by_hour"][k][h] for m in recs], feasible_range(k)) for h in range(24)]
                   for k in _ordered_keys(m["by_hour"] for m in recs)}
        nbs = sorted({nb for m in recs for nb in m["by_neighborhood"]})
        by_nb = {}
        for nb in nbs:
            fields_ = _ordered_keys(m["by_neighborhood"].get(nb, {}) for m in recs)
            by_nb[nb] = {f: ci95([m["by_neighborhood"].get(nb, {}).get(f) for m in recs], feasible_range(f))
                         for f in fields_}
        series = {}
        for k in _ordered_keys(m["series"] for m in recs):
            arrs = [np.asarray(m["series"][k], dtype=float) for m in recs]
            n = min(len(a) for a in arrs)
            series[k] = np.mean([a[:n] for a in arrs], axis=0).round(6).tolist()
        return {"scalars": scalars, "by_hour": by_hour, "by_neighborhood": by_nb, "series_mean": series}

    def differences(self, baseline: str | None = None) -> dict[str, dict[str, Any]]:
        """Paired differences ``policy - baseline`` of every scalar figure, per replication, with intervals."""
        base = baseline or self.policies[0]
        out: dict[str, dict[str, Any]] = {}
        for p in self.policies:
            if p == base:
                continue
            names = _ordered_keys(r["metrics"]["scalars"] for r in self.runs[p] + self.runs[base])
            diff = {}
            for k in names:
                a, b = self.values(base, k), self.values(p, k)
                diff[k] = ci95([None if x is None or y is None else y - x for x, y in zip(a, b, strict=True)])
            out[f"{p} - {base}"] = diff
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scenario": self.scenario, "replications": self.replications,
                             "seeds": [r["seed"] for r in self.runs[self.policies[0]]],
                             "policies": {p: {"description": self.descriptions.get(p, ""), **self.summary(p)}
                                          for p in self.policies}}
        if len(self.policies) > 1:
            d["differences"] = self.differences()
        d["run"] = {"wall_s": round(self.wall_s, 3),
                    "replication_wall_s": {p: [round(r["wall_s"], 3) for r in self.runs[p]] for p in self.policies}}
        return d


def _ordered_keys(dicts: Any) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for k in d:
            seen.setdefault(k, None)
    return list(seen)


def replicate(policies: Sequence[Policy], *, network: Any, places: Any = None, arrival_model: Any = None,
              mix: CallMix | None = None, calls: CallSource | None = None, start: datetime | None = None,
              days: float = 7.0, replications: int = 10, seed: int = 0,
              max_wait_s: float | None = DEFAULT_MAX_WAIT_S, time_of_day: bool = True,
              hospitals: Sequence[tuple[str, float, float]] | None = None,
              standards: Sequence[TimeStandard] | None = None, scenario: dict[str, Any] | None = None,
              progress: Callable[[float], None] | None = None) -> ExperimentResult:
    """Run ``replications`` replications of every policy on common random numbers.

    Parameters
    ----------
    policies
        One or more policies (names must differ); the first is the baseline of the differences.
    network, places
        Road network and places (as for :func:`routing.simulation.simulate`).
    arrival_model, mix
        Draw replication ``r``'s calls with :func:`routing.arrivals.generate_calls` (seed ``seed + r``).
    calls
        Instead of the arrival model: a fixed sequence of calls (a replay, the same in every
        replication) or a function ``seed -> calls``.
    start, days
        The simulated period (default start: :func:`routing.simulation.default_start`).
    replications
        Number of replications ``N >= 1``.
    seed
        Replication ``r`` uses ``seed + r``.
    max_wait_s, time_of_day, hospitals
        As for :func:`routing.simulation.simulate`.
    standards
        Response-time standards (default ``data/time_standards.toml``).
    scenario
        Extra facts for the report.
    progress
        Called with the fraction of replications done.

    Raises
    ------
    InvalidInput
        No policy, duplicate policy names, ``replications < 1``, no call source.
    """
    if not policies:
        raise InvalidInput("no policy to simulate", field="policy")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise InvalidInput(f"policy names must differ to be compared, got {names}", field="compare")
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise InvalidInput(f"replications must be a positive integer, got {replications!r}", field="replications")
    if calls is None and arrival_model is None:
        raise InvalidInput("replicate needs an arrival_model or calls", field="calls")
    standards = list(standards) if standards is not None else load_time_standards()
    start = start or default_start()
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(replications):
        rep_seed = int(seed) + r
        if calls is None:
            rep_calls: Sequence[Call] = generate_calls(arrival_model, mix, start=start, days=days, seed=rep_seed)
        elif callable(calls):
            rep_calls = calls(rep_seed)
        else:
            rep_calls = calls
        for k, policy in enumerate(policies):
            runs[policy.name].append(run_replication(
                policy, rep_calls, network=network, places=places, start=start, days=days, seed=rep_seed,
                max_wait_s=max_wait_s, time_of_day=time_of_day, hospitals=hospitals, standards=standards))
            if progress is not None:
                progress((r * len(policies) + k + 1) / (replications * len(policies)))
    # Boston time, as every other report of a run states its period.
    info = {"start": start.astimezone(TZ).isoformat(), "days": days, "seed": int(seed), "max_wait_s": max_wait_s,
            "time_of_day": time_of_day, "common_random_numbers": True,
            "standards": [s.to_dict() for s in standards], **(scenario or {})}
    if mix is not None:
        info.setdefault("mix", mix.to_dict())
    return ExperimentResult(names, runs, info, time.perf_counter() - started,
                            {p.name: p.description for p in policies})


__all__ = ["ExperimentResult", "ci95", "replicate", "run_replication"]
