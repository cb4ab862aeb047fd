"""Calls for the simulation: the arrival model (Poisson by hour x neighborhood) and replayed call files.

Arrival model (:func:`load_arrival_model`): :mod:`routing.demand`'s demand surfaces and hour-of-day
profiles, built from the citywide 2023 Q1 mental-health-proxy incident reports, give Poisson rates by
local hour of day and neighborhood, for three streams: ``mh`` (every proxy class: SOURCES.md notes the
proxy's neighbourhood ranking matches the city's statement on 2020 mental-health calls), ``medical``
(SICK ASSIST, drug-related SICK ASSIST, SICK/INJURED/MEDICAL) and ``other`` (INVESTIGATE PERSON). A
call is placed at a network node of its neighborhood drawn by demand weight. Weekday and season are not
modelled. Volumes and class shares are :class:`CallMix` parameters with their sources.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from routing.errors import InvalidInput, reason
from routing.fleet import DEFAULT_TIMEZONE
from routing.jsonlimits import check_depth
from routing.triage import Call, calls_from_records

if TYPE_CHECKING:
    from routing.network import RoadNetwork
    from routing.places import Places

TZ = ZoneInfo(DEFAULT_TIMEZONE)
DAY_S = 86_400.0
_MEDICAL_CLASSES = ("sick_assist", "sick_assist_drug", "medical_person")


# ------------------------------------------------------------------------------------------ demand


@dataclass(frozen=True)
class CallMix:
    """Volumes and class shares of simulated calls (defaults with sources).

    Attributes
    ----------
    mh_per_year
        Mental-health calls a year: ">10,000 mental-health calls placed to 911 in Boston" in 2020
        (City of Boston press release 2021-08-05, ``published_figures.csv``).
    mh_risk_share
        Share of mental-health calls with a safety risk (co-response first, then police). Assumption:
        Boston has published no split; a quarter to a third is the range reported by US alternative-
        response programmes that screen calls for risk.
    mh_weapon_share
        Share of mental-health calls with a weapon (counted inside ``mh_risk_share``). Assumption.
    mh_transport_share
        Share of mental-health calls without a safety risk that need transport. Assumption.
    medical_per_year
        Non-mental-health medical calls a year: SICK ASSIST 28,121 + SICK/INJURED/MEDICAL 8,161 + SICK
        ASSIST - DRUG RELATED 3,691 over 2020-01-01 .. 2025-01-11 (5.03 years,
        ``offense_description_counts_citywide_2020-2025.csv``) = 7,900 a year.
    medical_transport_share
        Share of medical calls transported: Boston EMS transported 85,697 patients (2018) of 126,562
        incidents (2017) = 0.68 (``published_figures.csv``).
    other_per_year
        Other police-led calls a year: INVESTIGATE PERSON 35,196 over the same 5.03 years = 7,000.
        They load the police fallback units that mental-health calls with a risk may fall back to.
    other_risk_share
        Share of the other calls flagged ``safety_risk`` (the default rules then send police first;
        without the flag, police or EMS, whichever is nearer).
    scale
        Multiplies every volume (``0.5`` = half the calls).
    """

    mh_per_year: float = 10_000.0
    mh_risk_share: float = 0.30
    mh_weapon_share: float = 0.05
    mh_transport_share: float = 0.15
    medical_per_year: float = 7_900.0
    medical_transport_share: float = 0.68
    other_per_year: float = 7_000.0
    other_risk_share: float = 1.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mh_per_year", "medical_per_year", "other_per_year", "scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidInput(f"{name} must be a non-negative number, got {v!r}", field=name)
        for name in ("mh_risk_share", "mh_weapon_share", "mh_transport_share", "medical_transport_share",
                     "other_risk_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InvalidInput(f"{name} must be a share between 0 and 1, got {v!r}", field=name)
        if self.mh_weapon_share > self.mh_risk_share:
            raise InvalidInput("mh_weapon_share must not exceed mh_risk_share (weapon calls are risk calls)",
                               field="mh_weapon_share")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_STREAM_CLASSES: dict[str, tuple[str, ...] | None] = {
    "mh": None,  # every proxy class (routing.demand.MH_CLASSES)
    "medical": _MEDICAL_CLASSES,
    "other": ("investigate_person",),
}


@dataclass
class ArrivalModel:
    """Where and when calls happen, per stream (``mh``, ``medical``, ``other``).

    Built by :func:`load_arrival_model` from :mod:`routing.demand`. For each stream:

    - ``neighborhoods`` (K names) and ``per_hour`` (24 x K): the share of a year's calls expected in
      each local hour of an average day in each neighborhood (``per_hour.sum() == 1 / 365``);
    - ``nodes`` and ``cum``: per neighborhood, the network nodes with demand and the cumulative
      probabilities of their demand weights, to place each call.
    """

    streams: dict[str, dict[str, Any]]
    node_lat: np.ndarray
    node_lon: np.ndarray
    node_district: dict[int, str | None]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source,
                "neighborhoods": {k: len(v["neighborhoods"]) for k, v in self.streams.items()},
                "hour_shares": {k: [round(float(x) * 365, 5) for x in v["per_hour"].sum(axis=1)]
                                for k, v in self.streams.items()}}


_MODEL_CACHE: dict[tuple[Any, ...], tuple[RoadNetwork, Places, ArrivalModel]] = {}


def load_arrival_model(data_dir: str | os.PathLike[str], *, network: RoadNetwork, places: Places,
                       bandwidth_m: float | None = None) -> ArrivalModel:
    """The arrival model: demand surfaces and hour-of-day profiles from :mod:`routing.demand`.

    Each stream uses the proxy classes of its kind (mental health: all of them; medical: SICK ASSIST,
    drug-related SICK ASSIST, SICK/INJURED/MEDICAL; other: INVESTIGATE PERSON) from the citywide 2023 Q1
    incident reports: :func:`routing.demand.load_demand` (spatial shares, kernel-smoothed over nearby
    nodes) and :func:`routing.demand.hourly_profile` (local hour, per neighborhood, date-only records
    left out), combined by :func:`routing.demand.arrival_rates` into rates per hour x neighborhood.

    Parameters
    ----------
    data_dir
        The real-data directory.
    network, places
        The road network and Boston's places.
    bandwidth_m
        Kernel bandwidth of the demand surfaces (default: :mod:`routing.demand`'s).

    Raises
    ------
    DataMissing
        If the incident file is missing.
    """
    from routing import demand

    key = (str(Path(data_dir).resolve()), id(network), id(places), bandwidth_m)
    hit = _MODEL_CACHE.get(key)
    if hit is not None and hit[0] is network and hit[1] is places:
        return hit[2]
    kw: dict[str, Any] = {} if bandwidth_m is None else {"bandwidth_m": bandwidth_m}
    streams: dict[str, dict[str, Any]] = {}
    used: set[int] = set()
    descriptions = []
    for name, classes in _STREAM_CLASSES.items():
        surface = demand.load_demand(network, places, data_dir=data_dir, annual_total=1.0, classes=classes, **kw)
        profile = demand.hourly_profile(data_dir, classes=classes)
        rates = demand.arrival_rates(surface, profile)
        labels = surface.node_neighborhood
        nodes, cums = [], []
        for nbhd in rates.neighborhoods:
            idx = np.flatnonzero((labels == nbhd) & (surface.weights > 0))
            w = surface.weights[idx]
            nodes.append(idx)
            cums.append(np.cumsum(w) / w.sum() if len(idx) else np.zeros(0))
            used.update(idx.tolist())
        per_hour = rates.per_hour.copy()
        per_hour[:, [len(n) == 0 for n in nodes]] = 0.0  # a neighborhood without nodes gets no calls
        streams[name] = {"neighborhoods": list(rates.neighborhoods), "per_hour": per_hour, "nodes": nodes,
                         "cum": cums}
        descriptions.append(f"{name}: {surface.description}")
    ordered = np.array(sorted(used), dtype=np.int64)
    _, districts = places.locate_many(network.lat[ordered], network.lon[ordered])
    node_district = {int(n): d for n, d in zip(ordered.tolist(), districts.tolist(), strict=True)}
    model = ArrivalModel(streams, network.lat, network.lon, node_district, "; ".join(descriptions))
    if len(_MODEL_CACHE) >= 4:
        _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
    _MODEL_CACHE[key] = (network, places, model)  # the model is read-only once built
    return model


def generate_calls(model: ArrivalModel, mix: CallMix | None = None, *, start: datetime, days: float,
                   seed: int = 0) -> list[Call]:
    """Draw calls over ``days`` from ``start``: Poisson by local hour of day, neighborhood and stream.

    Parameters
    ----------
    model
        From :func:`load_arrival_model`.
    mix
        Volumes and shares (default :class:`CallMix`).
    start
        Start of the period (tz-aware).
    days
        Length of the period.
    seed
        Random seed; the same seed gives the same calls.

    Returns
    -------
    list[Call]
        In time order, ids ``sim-000001``..., at network nodes, with neighborhood and district filled in.
    """
    mix = mix or CallMix()
    start = _aware(start, "start")
    _check_days(days)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    n_hours = int(math.ceil(days * 24))
    horizon = days * DAY_S
    starts = np.arange(n_hours) * 3600.0
    # Local hour of every simulated hour: daylight-saving days simply have 23 or 25 of them.
    local_hours = np.array([(start + timedelta(seconds=float(x))).astimezone(TZ).hour for x in starts])
    per_year = {"mh": mix.mh_per_year, "medical": mix.medical_per_year, "other": mix.other_per_year}
    names = tuple(_STREAM_CLASSES)
    times, stream_of, nodes_of = [], [], []
    nbhd_of: list[np.ndarray] = []
    for k, name in enumerate(names):
        stream = model.streams[name]
        volume = per_year[name] * mix.scale
        if volume <= 0:
            continue
        counts = rng.poisson(volume * stream["per_hour"][local_hours])  # (n_hours, K)
        hour_idx, nb_idx = np.nonzero(counts)
        reps = counts[hour_idx, nb_idx]
        slot = np.repeat(hour_idx, reps)
        nb = np.repeat(nb_idx, reps)
        t = starts[slot] + rng.uniform(0.0, 3600.0, len(slot))
        u = rng.uniform(size=len(slot))
        node = np.empty(len(slot), dtype=np.int64)
        for j in np.unique(nb).tolist():
            sel = nb == j
            cum = stream["cum"][j]
            node[sel] = stream["nodes"][j][np.minimum(np.searchsorted(cum, u[sel], side="right"), len(cum) - 1)]
        keep = t < horizon
        times.append(t[keep])
        stream_of.append(np.full(int(keep.sum()), k))
        nodes_of.append(node[keep])
        nbhd_of.append(nb[keep])
    if not times:
        return []
    t_all = np.concatenate(times)
    s_all = np.concatenate(stream_of)
    n_all = np.concatenate(nodes_of)
    b_all = np.concatenate(nbhd_of)
    order = np.lexsort((n_all, s_all, t_all))
    u = rng.uniform(size=(len(order), 3))
    calls = []
    for n, idx in enumerate(order.tolist(), start=1):
        name = names[s_all[idx]]
        at = int(n_all[idx])
        flags = _flags(name, mix, *u[n - 1])
        calls.append(Call(f"sim-{n:06d}", start + timedelta(seconds=float(t_all[idx])), float(model.node_lat[at]),
                          float(model.node_lon[at]), neighborhood=model.streams[name]["neighborhoods"][b_all[idx]],
                          district=model.node_district.get(at), **flags))
    return calls


def _flags(stream: str, mix: CallMix, u1: float, u2: float, u3: float) -> dict[str, Any]:
    """Triage flags of a drawn call, from three uniforms (priority 1 = lights and sirens)."""
    if stream == "mh":
        weapon = u1 < mix.mh_weapon_share
        risk = u1 < mix.mh_risk_share
        transport = (not risk) and u2 < mix.mh_transport_share
        return {"mental_health": True, "safety_risk": risk, "weapon": weapon, "needs_transport": transport,
                "priority": 1 if risk else 2}
    if stream == "medical":
        return {"needs_transport": u1 < mix.medical_transport_share, "priority": 1}
    return {"safety_risk": u1 < mix.other_risk_share, "priority": 3}


# ------------------------------------------------------------------------------------------ replay

_INCIDENT_CLASSES = (
    (re.compile(r"SUICIDE"), "suicide_attempt"),
    (re.compile(r"INVESTIGATE PERSON"), "investigate_person"),
    (re.compile(r"DRUG.*SICK|SICK.*DRUG"), "sick_assist_drug"),
    (re.compile(r"SICK ASSIST"), "sick_assist"),
    (re.compile(r"SICK/INJURED/MEDICAL"), "medical_person"),
)


@dataclass
class ReplayedCalls:
    """Calls read from a file, and what was left out."""

    calls: list[Call]
    source: str
    format: str
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "calls": len(self.calls), "skipped": self.skipped}


def read_calls_file(path: str | os.PathLike[str], *, places: Places | None = None, mix: CallMix | None = None,
                    seed: int = 0) -> ReplayedCalls:
    """Read timestamped calls to replay.

    Two formats:

    - calls as :meth:`routing.triage.Call.from_dict` reads them, in ``.json`` (a list, or
      ``{"calls": [...]}``), ``.jsonl`` or ``.csv`` (optionally ``.gz``); ``received`` needs a UTC offset;
    - BPD incident reports (columns ``OCCURRED_ON_DATE``, ``Lat``, ``Long``, ``OFFENSE_DESCRIPTION``;
      ``mh_class`` when present), such as the files in ``boston-context``. Their clock times are local
      Boston time (the export's ``+00`` suffix is not a real offset: the hourly counts peak in the local
      afternoon). INVESTIGATE PERSON and SUICIDE rows become mental-health calls, SICK ASSIST and
      SICK/INJURED/MEDICAL rows medical calls; other rows and rows without coordinates are skipped.
      Incident reports carry no triage flags, so risk, weapon and transport are drawn from ``mix``
      shares with ``seed`` (suicide attempts: risk and transport).

    Raises
    ------
    InvalidInput
        Unreadable file, unknown format, a bad record (with its line number).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"calls file not found: {p}", field="calls")
    name = p.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    stem = name[:-3] if name.endswith(".gz") else name
    try:
        with opener(p, "rt", encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InvalidInput(f"cannot read calls file {p}: {reason(exc)}", field="calls") from None
    if stem.endswith(".json"):
        check_depth(text, field="calls", where=str(p))  # before json.loads, which would hit RecursionError
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{p}: not JSON: {exc}", field="calls") from None
        records = doc.get("calls") if isinstance(doc, dict) else doc
        if not isinstance(records, list):
            raise InvalidInput(f"{p}: expected a list of calls or {{\"calls\": [...]}}", field="calls")
        calls = calls_from_records(records, first_line=1)
        return ReplayedCalls(_locate(calls, places), str(p), "calls-json")
    if stem.endswith(".jsonl"):
        records = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                check_depth(line, field="calls", where=f"{p} line {i}")
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{p} line {i}: not JSON: {exc}", field="calls") from None
        return ReplayedCalls(_locate(calls_from_records(records), places), str(p), "calls-jsonl")
    if not stem.endswith(".csv"):
        raise InvalidInput(f"{p}: calls file must be .json, .jsonl or .csv (optionally .gz)", field="calls")
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if {"OCCURRED_ON_DATE", "Lat", "Long"} <= set(header):
        return _read_incidents(list(reader), str(p), places, mix or CallMix(), seed)
    calls = calls_from_records(list(reader), first_line=2)
    return ReplayedCalls(_locate(calls, places), str(p), "calls-csv")


def _read_incidents(rows: list[dict[str, str]], source: str, places: Places | None, mix: CallMix,
                    seed: int) -> ReplayedCalls:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    u = rng.uniform(size=(len(rows), 3))
    calls: list[Call] = []
    skipped = 0
    seen: set[str] = set()
    for i, row in enumerate(rows):
        klass = (row.get("mh_class") or "").strip() or _incident_class(row.get("OFFENSE_DESCRIPTION", ""))
        try:
            lat, lon = float(row["Lat"]), float(row["Long"])
            local = datetime.strptime(row["OCCURRED_ON_DATE"][:19], "%Y-%m-%d %H:%M:%S")
        except (TypeError, ValueError):
            klass = None
        if klass is None or not (math.isfinite(lat) and math.isfinite(lon)):
            skipped += 1
            continue
        flags: dict[str, Any]
        if klass == "suicide_attempt":
            flags = {"mental_health": True, "safety_risk": True, "needs_transport": True, "priority": 1}
        elif klass == "investigate_person":
            flags = _flags("mh", mix, *u[i])
        else:
            flags = _flags("medical", mix, *u[i])
        base = f"inc-{row.get('INCIDENT_NUMBER') or i + 2}"
        call_id, k = base, 1
        while call_id in seen:  # one incident number can have several offence rows
            k += 1
            call_id = f"{base}-{k}"
        seen.add(call_id)
        calls.append(Call(call_id, local.replace(tzinfo=TZ).astimezone(UTC), lat, lon, **flags))
    calls.sort(key=lambda c: (c.received, c.call_id))
    return ReplayedCalls(_locate(calls, places), source, "incidents", skipped)


def _incident_class(description: str) -> str | None:
    text = " ".join(str(description).upper().split())
    for pattern, klass in _INCIDENT_CLASSES:
        if pattern.search(text):
            return klass
    return None


def _locate(calls: list[Call], places: Places | None) -> list[Call]:
    if places is None or not calls:
        return calls
    nb, di = places.locate_many(np.array([c.lat for c in calls]), np.array([c.lon for c in calls]))
    return [replace(c, neighborhood=c.neighborhood or n, district=c.district or d)
            for c, n, d in zip(calls, nb, di, strict=True)]


def _aware(when: datetime, name: str) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput(f"{name} must be a datetime with a UTC offset", field=name)
    return when.astimezone(UTC)


def _check_days(days: float) -> None:
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) \
            or not 0 < days <= 3660:
        raise InvalidInput(f"days must be a number in (0, 3660], got {days!r}", field="days")


__all__ = ["ArrivalModel", "CallMix", "ReplayedCalls", "generate_calls", "load_arrival_model", "read_calls_file"]
