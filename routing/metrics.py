"""The figures cities publish about alternative crisis response, computed from one simulated run.

Every figure is named and defined in ``docs/METRICS.md``; this module is the definition in code. They
are computed from :class:`routing.simulation.SimulationResult` outcomes alone (no re-simulation), so a
replayed call file and a generated one are measured the same way.

:func:`published_metrics` returns a :class:`RunMetrics`: ``scalars`` (one number per figure, the
columns of a sweep's tidy table), ``by_hour`` (24 local hours), ``by_neighborhood`` and ``series``
(the backlog hour by hour, response-time histograms). :mod:`routing.experiments` puts confidence
intervals on them over replications.
"""

from __future__ import annotations

import fnmatch
import math
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from routing.config import project_data_path
from routing.errors import InvalidInput, reason
from routing.fleet import DEFAULT_TIMEZONE

TZ = ZoneInfo(DEFAULT_TIMEZONE)
#: Team types of the alternative (non-police) response: an eligible call answered by one is "reached".
ALTERNATIVE_TYPES: frozenset[str] = frozenset({"emt_clinician", "community"})
POLICE_TYPES: frozenset[str] = frozenset({"police"})
#: Share of demand at each end of the neighborhood ranking for the response gap (a quintile).
GAP_SHARE = 0.2
#: Response-time histograms: one-minute bins up to this, the last bin holds everything longer.
HIST_MAX_MIN = 120
STANDARDS_PATH = project_data_path("time_standards.toml")


# ------------------------------------------------------------------------------------------ standards


@dataclass(frozen=True)
class TimeStandard:
    """A response-time standard: the calls whose class matches one of ``classes`` should be reached
    within ``minutes``."""

    name: str
    classes: tuple[str, ...]
    minutes: float
    source: str = ""

    def matches(self, klass: str) -> bool:
        return any(fnmatch.fnmatchcase(klass, p) for p in self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes), "minutes": self.minutes, "source": self.source}


def load_time_standards(path: str | os.PathLike[str] | None = None) -> list[TimeStandard]:
    """Read response-time standards (default ``data/time_standards.toml``).

    Raises
    ------
    InvalidInput
        Unreadable file, a standard without name/classes/minutes, or no catch-all ``"*"`` at the end.
    """
    p = Path(path) if path is not None else STANDARDS_PATH
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read time standards {p}: {reason(exc)}", field="standards") from None
    raw = doc.get("standard")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"{p}: expected [[standard]] entries", field="standards")
    out = []
    for k, s in enumerate(raw, start=1):
        if not isinstance(s, dict) or set(s) - {"name", "classes", "minutes", "source"}:
            raise InvalidInput(f"{p}: standard {k}: keys are name, classes, minutes, source", field="standards")
        minutes = s.get("minutes")
        classes = s.get("classes")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes < 1440:
            raise InvalidInput(f"{p}: standard {k}: minutes must be a number in (0, 1440)", field="standards")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise InvalidInput(f"{p}: standard {k}: classes must be a list of patterns", field="standards")
        out.append(TimeStandard(str(s.get("name", f"standard {k}")), tuple(classes), float(minutes),
                                str(s.get("source", ""))))
    if "*" not in out[-1].classes:
        raise InvalidInput(f"{p}: the last standard must match every class (\"*\")", field="standards")
    return out


def standard_for(klass: str, standards: Sequence[TimeStandard]) -> TimeStandard:
    """The first standard whose patterns match ``klass``."""
    for s in standards:
        if s.matches(klass):
            return s
    return standards[-1]


def is_eligible(klass: str) -> bool:
    """An eligible call: mental health with neither a safety risk nor a weapon (``MH``, ``MH+transport``).

    These are the calls the programme means the alternative teams to answer; the class string is
    :attr:`routing.triage.Call.klass`.
    """
    parts = klass.split("+")
    return parts[0] == "MH" and "risk" not in parts and "weapon" not in parts


# ------------------------------------------------------------------------------------------ metrics


@dataclass
class RunMetrics:
    """The published figures of one run (see ``docs/METRICS.md``)."""

    scalars: dict[str, float | None]
    by_hour: dict[str, list[float | None]]
    by_neighborhood: dict[str, dict[str, float | None]]
    series: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scalars": self.scalars, "by_hour": self.by_hour, "by_neighborhood": self.by_neighborhood,
                "series": self.series}


def _share(num: float, den: float) -> float | None:
    return float(num) / den if den else None


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def published_metrics(result: Any, *, standards: Sequence[TimeStandard] | None = None) -> RunMetrics:
    """Compute every figure of ``docs/METRICS.md`` from a run's outcomes.

    Parameters
    ----------
    result
        A :class:`routing.simulation.SimulationResult`.
    standards
        Response-time standards (default :func:`load_time_standards`).

    Returns
    -------
    RunMetrics
    """
    standards = list(standards) if standards is not None else load_time_standards()
    outs = result.outcomes
    horizon = result.days * 86_400.0
    n_hours = max(1, int(math.ceil(horizon / 3600)))
    # Local hour of each simulated hour (DST days have 23 or 25): offsets are whole hours in Boston.
    local_hour = np.array([(result.start + timedelta(hours=k)).astimezone(TZ).hour for k in range(n_hours)])
    n = len(outs)
    received = np.array([o.received_s for o in outs], dtype=float)
    hour_of = local_hour[np.clip((received // 3600).astype(int), 0, n_hours - 1)] if n else np.zeros(0, int)
    served = np.array([o.served for o in outs], dtype=bool)
    response = np.array([o.response_s if o.response_s is not None else np.nan for o in outs], dtype=float)
    mh = np.array([o.mental_health for o in outs], dtype=bool)
    eligible = np.array([is_eligible(o.klass) for o in outs], dtype=bool)
    team_type = [o.team_type for o in outs]
    alt = np.array([t in ALTERNATIVE_TYPES for t in team_type], dtype=bool)
    police = np.array([t in POLICE_TYPES for t in team_type], dtype=bool)
    reached = eligible & served & alt
    fell_back = eligible & served & ~alt
    unserved = ~served
    transported = np.array([o.transported_to is not None for o in outs], dtype=bool)
    queued = np.array([o.queued for o in outs], dtype=bool)
    wait = np.array([o.wait_s if o.wait_s is not None else np.nan for o in outs], dtype=float)
    std_of = np.array([standards.index(standard_for(o.klass, standards)) for o in outs], dtype=int)
    limit = np.array([st.minutes * 60 for st in standards])[std_of] if n else np.zeros(0)
    late = unserved | (np.nan_to_num(response, nan=np.inf) > limit)
    nbhd = np.array([o.neighborhood or "(unknown)" for o in outs], dtype=object)

    s: dict[str, float | None] = {}
    s["calls"] = float(n)
    s["served_share"] = _share(served.sum(), n)
    ok = ~np.isnan(response)
    s["response_median_s"] = _median(response[ok])
    s["response_p90_s"] = float(np.percentile(response[ok], 90)) if ok.any() else None
    s["mh_response_median_s"] = _median(response[ok & mh])
    # Means and the mental-health tail and late share: the figures of the dispatch-policy comparisons
    # (bench/bench_coverage_policies.py); late counts unserved calls, as everywhere here.
    s["response_mean_s"] = float(np.mean(response[ok])) if ok.any() else None
    s["mh_response_mean_s"] = float(np.mean(response[ok & mh])) if (ok & mh).any() else None
    s["mh_response_p90_s"] = float(np.percentile(response[ok & mh], 90)) if (ok & mh).any() else None
    s["mh_late_share"] = _share((late & mh).sum(), mh.sum())
    s["eligible_calls"] = float(eligible.sum())
    s["eligible_reach"] = _share(reached.sum(), eligible.sum())
    s["eligible_fell_back_share"] = _share(fell_back.sum(), eligible.sum())
    s["eligible_unserved_share"] = _share((eligible & unserved).sum(), eligible.sum())
    s["police_backup_rate"] = _share((mh & served & police).sum(), mh.sum())
    s["transport_rate"] = _share(transported.sum(), n)
    s["late_share"] = _share(late.sum(), n)
    for k, st in enumerate(standards):
        sel = std_of == k
        s[f"late_share[{st.name}]"] = _share((late & sel).sum(), sel.sum())
    # Probability of waiting and mean wait over served calls (a call served at once waits 0 s).
    s["wait_probability"] = _share(queued.sum(), n)
    s["wait_mean_s"] = float(np.nanmean(wait)) if (~np.isnan(wait)).any() else None

    backlog_hourly, backlog_max = _backlog(outs, horizon, n_hours, result.scenario.get("max_wait_s"))
    s["backlog_mean"] = float(np.sum(backlog_hourly * _hour_lengths(horizon, n_hours)) / horizon) if horizon else None
    s["backlog_max"] = float(backlog_max)

    medians: dict[str, float | None] = {}
    demand: dict[str, int] = {}
    names = sorted(set(nbhd.tolist()))
    by_nb: dict[str, dict[str, float | None]] = {}
    for name in names:
        sel = nbhd == name
        demand[name] = int(sel.sum())
        medians[name] = _median(response[sel & ok])
        e = eligible & sel
        by_nb[name] = {"calls": float(sel.sum()), "response_median_s": medians[name],
                       "eligible_calls": float(e.sum()),
                       "eligible_not_reached_share": _share((e & ~reached).sum(), e.sum()),
                       "eligible_fell_back": float((fell_back & sel).sum()),
                       "eligible_unserved": float((e & unserved).sum()),
                       "late_share": _share((late & sel).sum(), sel.sum())}
    s["response_gap_s"] = demand_weighted_gap(medians, demand)

    for u in sorted({u.team_type for u in result.usage}):
        busy = sum(x.busy_s for x in result.usage if x.team_type == u)
        shift = sum(x.on_shift_s for x in result.usage if x.team_type == u)
        s[f"utilisation[{u}]"] = _share(busy, shift)

    by_hour: dict[str, list[float | None]] = {}
    e_h = np.bincount(hour_of[eligible], minlength=24)
    fb_h = np.bincount(hour_of[fell_back], minlength=24)
    un_h = np.bincount(hour_of[eligible & unserved], minlength=24)
    days = result.days
    by_hour["eligible_calls_per_day"] = (e_h / days).tolist()
    by_hour["eligible_fell_back_per_day"] = (fb_h / days).tolist()
    by_hour["eligible_unserved_per_day"] = (un_h / days).tolist()
    by_hour["eligible_not_reached_share"] = [_share(fb_h[h] + un_h[h], e_h[h]) for h in range(24)]
    counts = np.bincount(local_hour, minlength=24).astype(float)
    sums = np.bincount(local_hour, weights=backlog_hourly, minlength=24)
    by_hour["backlog_mean"] = [float(sums[h] / counts[h]) if counts[h] else None for h in range(24)]

    bins = np.arange(HIST_MAX_MIN + 1) * 60.0
    clipped = np.minimum(response[ok], HIST_MAX_MIN * 60 - 1e-6)
    series = {"backlog_hourly": backlog_hourly.tolist(),
              "response_hist_min": np.histogram(clipped, bins=bins)[0].astype(float).tolist(),
              "mh_response_hist_min": np.histogram(clipped[mh[ok]], bins=bins)[0].astype(float).tolist()}
    return RunMetrics(s, by_hour, by_nb, series)


def demand_weighted_gap(medians: dict[str, float | None], demand: dict[str, int],
                        share: float = GAP_SHARE) -> float | None:
    """Demand-weighted gap in median response between the worst- and best-served neighborhoods.

    Neighborhoods (with at least one served call) are ranked by median response; the best-served end is
    the fastest neighborhoods holding ``share`` of the calls, the worst-served end the slowest holding
    ``share`` (the neighborhood on the boundary counts with the part of its calls needed). The gap is
    the call-weighted mean median of the worst end minus that of the best end, so a handful of calls
    on the Harbor Islands cannot decide it.
    """
    items = sorted(((m, demand.get(k, 0), k) for k, m in medians.items() if m is not None and demand.get(k, 0) > 0))
    total = sum(w for _, w, _ in items)
    if not items or total <= 0:
        return None
    want = share * total

    def end(seq: list[tuple[float, int, str]]) -> float:
        acc, val = 0.0, 0.0
        for m, w, _ in seq:
            take = min(float(w), want - acc)
            if take <= 0:
                break
            acc += take
            val += take * m
        return val / acc

    return end(items[::-1]) - end(items)


def _hour_lengths(horizon: float, n_hours: int) -> np.ndarray:
    lengths = np.full(n_hours, 3600.0)
    lengths[-1] = horizon - 3600.0 * (n_hours - 1)
    return lengths


def _backlog(outs: Sequence[Any], horizon: float, n_hours: int,
             max_wait_s: float | None) -> tuple[np.ndarray, int]:
    """Mean number of calls waiting for a team in each simulated hour, and the largest backlog.

    A queued call waits from ``received`` until it is dispatched; an abandoned one until ``max_wait_s``
    after it came in; one still waiting at the end, until the end.
    """
    starts, ends = [], []
    for o in outs:
        if not o.queued:
            continue
        if o.dispatched_s is not None:
            e = o.dispatched_s
        elif max_wait_s is not None and (o.unserved_reason or "").startswith("no eligible team free"):
            e = o.received_s + max_wait_s
        else:
            e = horizon
        starts.append(o.received_s)
        ends.append(min(e, horizon))
    if not starts:
        return np.zeros(n_hours), 0
    a, b = np.sort(np.asarray(starts)), np.sort(np.asarray(ends))
    edges = np.minimum(np.arange(n_hours + 1) * 3600.0, horizon)

    def integral(t: np.ndarray) -> np.ndarray:
        # Waiting call-seconds before t: sum over started calls of (t - start) minus over ended ones.
        ka = np.searchsorted(a, t, side="right")
        kb = np.searchsorted(b, t, side="right")
        ca = np.concatenate([[0.0], np.cumsum(a)])
        cb = np.concatenate([[0.0], np.cumsum(b)])
        return (ka * t - ca[ka]) - (kb * t - cb[kb])

    area = np.diff(integral(edges))
    hourly = area / np.maximum(np.diff(edges), 1e-9)
    # Largest backlog: ends before starts at the same instant (a call dispatched as another arrives).
    ev = sorted([(x, 1) for x in starts] + [(x, -1) for x in ends], key=lambda p: (p[0], p[1]))
    level = peak = 0
    for _, d in ev:
        level += d
        peak = max(peak, level)
    return hourly, peak


__all__ = ["ALTERNATIVE_TYPES", "RunMetrics", "TimeStandard", "demand_weighted_gap", "is_eligible",
           "load_time_standards", "published_metrics", "standard_for"]


def feasible_range(name: str) -> tuple[float, float | None]:
    """The values a figure can take: ``(0, 1)`` for shares, rates, reach, probabilities and utilisation,
    ``(0, None)`` for everything else (counts, times, backlogs): every level figure here is non-negative.

    Intervals (:func:`routing.experiments.ci95`) are clipped to it: a Student t interval over a few
    replications of a share near 0 or 1 otherwise reaches past what is possible.
    """
    base = name.split("[", 1)[0]
    if any(word in base for word in ("share", "rate", "reach", "probability", "utilisation")):
        return 0.0, 1.0
    return 0.0, None
