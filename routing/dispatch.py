"""Nearest-eligible-team suggestions and joint assignment of waiting calls.

Both entry points are pure functions of in-memory state (a call or calls, a list of
:class:`~routing.fleet.TeamState`, a road network, triage rules, a time), so the CLI, the HTTP service
and the simulation run exactly the same code; persistence is the caller's business
(:mod:`routing.store`).

Eligibility of a team for a call, in the order the reasons are reported:

1. its type appears in one of the call's tiers (``wrong_type``);
2. it is ``available`` or ``returning`` (``busy``, ``out_of_service``, ``off_shift``);
3. it is within its service hours (``outside_hours``);
4. a ``dedicated`` team takes mental-health calls only (``dedicated_mh_only``);
5. the call lies in its service area (``outside_area``; unknown call location counts as outside);
6. its position can be placed on the road network (``unreachable``).

The tier used is the first one with an eligible team; eligible teams of lower tiers are reported as
``lower_tier``. Suggestions are ranked by ETA (rounded to the millisecond), ties by ``team_id``.

ETA = team's off-network leg + its partial road segment + network travel time + the call's partial
segment + its off-network leg (street-level snapping, see :meth:`routing.network.RoadNetwork.snap`).
Travel times come from the ETA engine (:mod:`routing.eta`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from routing.errors import CrisisDispatchError, InvalidInput
from routing.eta import eta_engine
from routing.fleet import DISPATCHABLE, TeamState, TeamStatus, TeamType
from routing.triage import Call, Rules, Tier
from routing.units import format_eta

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from routing.mexclp import CoverageModel
    from routing.network import RoadNetwork, Snap
    from routing.places import Places

# ------------------------------------------------------------------------------------------ results


@dataclass
class Suggestion:
    """One ranked team for a call."""

    rank: int
    team_id: str
    team_type: TeamType
    name: str
    status: TeamStatus
    eta_s: float
    distance_m: float
    stale: bool
    position_age_s: float
    lat: float
    lon: float
    dedicated: bool
    tier: str
    #: Coverage-aware choice only (``choice = "coverage"`` rules): why this team is where it is, and the
    #: expected coverage its departure leaves (:class:`routing.mexclp.Departure`).
    note: str | None = None
    coverage: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "rank": self.rank, "team_id": self.team_id, "team_type": self.team_type.value, "name": self.name,
            "status": self.status.value, "eta_s": round(self.eta_s, 1), "distance_m": round(self.distance_m, 1),
            "stale": self.stale, "position_age_s": round(self.position_age_s, 1), "lat": self.lat,
            "lon": self.lon, "dedicated": self.dedicated, "tier": self.tier,
        }
        if self.note is not None:  # closest-choice output stays exactly as it was
            d["note"] = self.note
        if self.coverage is not None:
            d["coverage"] = self.coverage
        return d


@dataclass
class Ineligible:
    """A team that is not suggested, and why (``code`` is machine-readable, ``reason`` is for people)."""

    team_id: str
    team_type: TeamType
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"team_id": self.team_id, "team_type": self.team_type.value, "code": self.code,
                "reason": self.reason}


@dataclass
class SuggestionResult:
    """Answer to one call: the tier used, ranked teams, and why the others are not suggested."""

    call: Call
    rule: str
    tiers: list[Tier]
    tier: Tier | None
    tier_index: int | None
    fell_back: bool
    suggestions: list[Suggestion]
    ineligible: list[Ineligible]
    message: str
    now: datetime
    stale_after_s: float
    omitted: int = 0
    location: CallLocation | None = None
    profile: dict[str, Any] | None = None  # the network's speed profile: mode, hour and where the hour came from
    _teams: dict[str, TeamState] = field(default_factory=dict, repr=False)
    #: How the first team was chosen when the call's rule asks for ``choice = "coverage"`` (else None).
    choice: dict[str, Any] | None = None

    @property
    def best(self) -> Suggestion | None:
        """The first-ranked suggestion, if any."""
        return self.suggestions[0] if self.suggestions else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form. ``tier_index`` counts from 0 (the first tier)."""
        return {
            "call": self.call.to_dict(),
            "rule": self.rule,
            "tiers": [t.to_dict() for t in self.tiers],
            "tier": self.tier.to_dict() if self.tier else None,
            "tier_index": self.tier_index,
            "fell_back": self.fell_back,
            "suggestions": [s.to_dict() for s in self.suggestions],
            "omitted": self.omitted,
            "ineligible": [i.to_dict() for i in self.ineligible],
            "message": self.message,
            "now": self.now.isoformat(),
            "stale_after_s": self.stale_after_s,
            "location": self.location.to_dict() if self.location else None,
            "profile": self.profile,
            **({"choice": self.choice} if self.choice is not None else {}),
        }

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection: the call, the suggested teams (with rank and ETA) and the others."""
        feats = [_point(self.call.lon, self.call.lat, "call", self.call.to_dict())]
        for s in self.suggestions:
            feats.append(_point(s.lon, s.lat, "suggested", s.to_dict()))
        for i in self.ineligible:
            ts = self._teams.get(i.team_id)
            if ts is not None:
                feats.append(_point(ts.lon, ts.lat, "ineligible", i.to_dict()))
        return {"type": "FeatureCollection", "features": feats}

    def to_frame(self, *, ineligible: bool = False) -> pd.DataFrame:
        """One row per suggested team, best first: ``call_id`` then the columns of ``to_dict()["suggestions"]``.

        Parameters
        ----------
        ineligible
            Also one row per team not suggested, after the suggestions, with its ``code`` and ``reason``
            (``rank``, ``eta_s`` ... empty). The suggested rows then have ``code="suggested"``.

        Returns
        -------
        pandas.DataFrame
            Shape ``(len(suggestions), 14)``; ``eta_s`` in seconds, ``distance_m`` in metres.
        """
        from routing._frames import frame

        rows = [{"call_id": self.call.call_id, **s.to_dict()} for s in self.suggestions]
        columns = ["call_id", *_SUGGESTION_COLUMNS]
        if ineligible:
            rows = [{**r, "code": "suggested", "reason": None} for r in rows]
            for i in self.ineligible:
                ts = self._teams.get(i.team_id)
                rows.append({"call_id": self.call.call_id, **i.to_dict(),
                             "lat": ts.lat if ts is not None else None, "lon": ts.lon if ts is not None else None})
            columns += ["code", "reason"]
        return frame(rows, columns)

    def to_gdf(self) -> gpd.GeoDataFrame:
        """The features of :meth:`to_geojson` (call, suggested and ineligible teams) as points, EPSG:4326.

        Returns
        -------
        geopandas.GeoDataFrame
            One row per feature; ``role`` is ``call``, ``suggested`` or ``ineligible``.
        """
        from routing._frames import geo_frame

        return geo_frame(self.to_geojson())

    def __repr__(self) -> str:
        from routing._frames import minutes

        if self.tier is None or self.best is None:
            return f"<SuggestionResult call {self.call.call_id}: no eligible team>"
        n = len(self.suggestions) + self.omitted
        return (f"<SuggestionResult call {self.call.call_id}: tier {self.tier_index + 1} ({self.tier.name}), "  # type: ignore[operator]
                f"{n} eligible, best {self.best.team_id} ETA {minutes(self.best.eta_s)}>")


@dataclass
class Assignment:
    """One call given to one team."""

    call_id: str
    team_id: str
    team_type: TeamType
    eta_s: float
    distance_m: float
    tier: str
    tier_index: int
    stale: bool
    lat: float
    lon: float

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "team_id": self.team_id, "team_type": self.team_type.value,
                "eta_s": round(self.eta_s, 1), "distance_m": round(self.distance_m, 1), "tier": self.tier,
                "tier_index": self.tier_index, "stale": self.stale, "team_lat": self.lat, "team_lon": self.lon}


@dataclass
class Unserved:
    """A call left without a team, and why."""

    call_id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "reason": self.reason}


@dataclass
class AssignmentResult:
    """Joint assignment of waiting calls to teams."""

    calls: list[Call]
    assignments: list[Assignment]
    unserved: list[Unserved]
    objective: float
    optimal: bool
    status: str
    solve_time_s: float
    tier_penalty_s: float
    unserved_penalty_s: float
    now: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``objective`` is in weighted seconds (see :func:`assign`)."""
        return {
            "assignments": [a.to_dict() for a in self.assignments],
            "unserved": [u.to_dict() for u in self.unserved],
            "objective": round(self.objective, 3),
            "optimal": self.optimal,
            "status": self.status,
            "solve_time_s": round(self.solve_time_s, 4),
            "tier_penalty_s": self.tier_penalty_s,
            "unserved_penalty_s": self.unserved_penalty_s,
            "now": self.now.isoformat(),
            "calls": [c.to_dict() for c in self.calls],
        }

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection: calls, assigned teams, and a straight line from each team to its call."""
        by_id = {c.call_id: c for c in self.calls}
        served = {a.call_id for a in self.assignments}
        feats = [_point(c.lon, c.lat, "call", {**c.to_dict(), "served": c.call_id in served}) for c in self.calls]
        for a in self.assignments:
            c = by_id[a.call_id]
            feats.append(_point(a.lon, a.lat, "team", a.to_dict()))
            feats.append({"type": "Feature", "properties": {"role": "assignment", **a.to_dict()},
                          "geometry": {"type": "LineString", "coordinates": [[a.lon, a.lat], [c.lon, c.lat]]}})
        return {"type": "FeatureCollection", "features": feats}

    def to_frame(self) -> pd.DataFrame:
        """One row per assignment: the columns of ``to_dict()["assignments"]`` (unserved calls: ``unserved``).

        Returns
        -------
        pandas.DataFrame
            Shape ``(len(assignments), 10)``; ``eta_s`` in seconds, ``team_lat``/``team_lon`` where the team is.
        """
        from routing._frames import frame

        return frame((a.to_dict() for a in self.assignments), _ASSIGNMENT_COLUMNS)

    def to_gdf(self) -> gpd.GeoDataFrame:
        """The features of :meth:`to_geojson` (calls, teams, team-to-call lines), EPSG:4326.

        Returns
        -------
        geopandas.GeoDataFrame
            One row per feature; ``role`` is ``call``, ``team`` or ``assignment`` (a LineString).
        """
        from routing._frames import geo_frame

        return geo_frame(self.to_geojson())

    def __repr__(self) -> str:
        from routing._frames import minutes

        total = sum(a.eta_s for a in self.assignments)
        mean = total / len(self.assignments) if self.assignments else None
        return (f"<AssignmentResult {len(self.calls)} calls: {len(self.assignments)} assigned, "
                f"{len(self.unserved)} unserved, mean ETA {minutes(mean)}, {self.status}>")


_SUGGESTION_COLUMNS = ("rank", "team_id", "team_type", "name", "status", "eta_s", "distance_m", "stale",
                       "position_age_s", "lat", "lon", "dedicated", "tier")
_ASSIGNMENT_COLUMNS = ("call_id", "team_id", "team_type", "eta_s", "distance_m", "tier", "tier_index", "stale",
                       "team_lat", "team_lon")


def _point(lon: float, lat: float, role: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"role": role, **props}}


# ------------------------------------------------------------------------------------ eligibility


def _as_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput(f"now={now.isoformat()} has no UTC offset", field="now")
    return now.astimezone(UTC)


@dataclass
class CallLocation:
    """Where a call is, as the engine judged it (the location wins over what the caller said).

    Attributes
    ----------
    neighborhood, district
        From the call's coordinates; for a call outside the city line, from the point of the road it
        is attached to.
    outside_city
        The point lies outside the city boundary (served because it is within the tolerance).
    attached
        The road point the call attaches to: ``lat``, ``lon``, ``road_class``, ``distance_m`` and its
        ``neighborhood`` / ``district`` (``None`` outside every polygon).
    notes
        Sentences for people: the call is outside Boston; a caller-supplied district or neighborhood
        that disagrees with the location (and is ignored).
    """

    neighborhood: str | None
    district: str | None
    outside_city: bool = False
    attached: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"neighborhood": self.neighborhood, "district": self.district, "outside_city": self.outside_city,
                "attached": self.attached, "notes": list(self.notes)}


def locate_call(call: Call, places: Places | None, network: RoadNetwork | None = None, snap: Snap | None = None
                ) -> Call:
    """The call with ``neighborhood`` and ``district`` taken from its location (see :func:`place_call`)."""
    return place_call(call, places, network, snap)[0]


def place_call(call: Call, places: Places | None, network: RoadNetwork | None = None, snap: Snap | None = None
               ) -> tuple[Call, CallLocation]:
    """Locate a call: neighborhood and district from its coordinates, which win over the caller's.

    A caller-supplied ``neighborhood`` / ``district`` that disagrees with the location does not change
    eligibility (service areas follow the location) and is reported in ``notes``. A call outside the
    city line but within the tolerance is served, marked ``outside_city``, and placed by the road point
    it attaches to (``network`` and ``snap``, the call's :class:`routing.network.Snap`, when given).
    Without ``places`` the caller's values are kept.
    """
    if places is None:
        return call, CallLocation(call.neighborhood, call.district)
    if snap is None and network is not None:
        snap = network.snap(call.lat, call.lon, field="location")
    neighborhood, district = places.locate(call.lat, call.lon)
    road = None
    if snap is not None:
        road_nb, road_district = places.locate(snap.road_lat, snap.road_lon)
        road_inside = network.inside_boundary(snap.road_lat, snap.road_lon) if network is not None else None
        road = (road_nb, road_district, road_inside)
    return _placed(call, neighborhood, district, snap, road)


@dataclass(frozen=True)
class PlacedCall:
    """A call with its road attachment and location worked out in advance (see :func:`place_calls`).

    ``snap`` is the call's :class:`routing.network.Snap`; ``call`` and ``location`` are what
    :func:`place_call` returns for it. Pass it to :func:`suggest` as ``placed``.
    """

    snap: Snap
    call: Call
    location: CallLocation


def place_calls(calls: Sequence[Call], places: Places | None, network: RoadNetwork) -> list[PlacedCall | None]:
    """:func:`place_call` for many calls at once (snapping and polygon tests vectorised).

    Returns, per call, a :class:`PlacedCall` identical to snapping and placing it alone, or ``None``
    where its location does not snap (:meth:`routing.network.RoadNetwork.snap` raises for it). A
    simulation knows all its calls in advance: this takes their placement out of the per-call work.
    """
    if not calls:
        return []
    lats = np.array([c.lat for c in calls], dtype=float)
    lons = np.array([c.lon for c in calls], dtype=float)
    snaps = network.snaps(lats, lons)
    out: list[PlacedCall | None] = [None] * len(calls)
    if places is None:
        for k, (c, s) in enumerate(zip(calls, snaps, strict=True)):
            if s is not None:
                out[k] = PlacedCall(s, c, CallLocation(c.neighborhood, c.district))
        return out
    ok = [k for k, s in enumerate(snaps) if s is not None]
    if not ok:
        return out
    nbs, dists = places.locate_many(lats[ok], lons[ok])
    road_lat = np.array([snaps[k].road_lat for k in ok])  # type: ignore[union-attr]
    road_lon = np.array([snaps[k].road_lon for k in ok])  # type: ignore[union-attr]
    road_nbs, road_dists = places.locate_many(road_lat, road_lon)
    road_inside = network.inside_many(road_lat, road_lon)
    for m, k in enumerate(ok):
        road = (road_nbs[m], road_dists[m], None if road_inside is None else bool(road_inside[m]))
        call, location = _placed(calls[k], nbs[m], dists[m], snaps[k], road)
        out[k] = PlacedCall(snaps[k], call, location)  # type: ignore[arg-type]
    return out


def _placed(call: Call, neighborhood: str | None, district: str | None, snap: Snap | None,
            road: tuple[str | None, str | None, bool | None] | None) -> tuple[Call, CallLocation]:
    """:func:`place_call` once the polygons are known: ``road`` = (neighborhood, district, inside the
    city line) of the snap's road point."""
    notes: list[str] = []
    attached = None
    outside = False
    if snap is not None and road is not None:
        road_nb, road_district, road_inside = road
        attached = {"lat": snap.road_lat, "lon": snap.road_lon, "road_class": snap.road_class,
                    "distance_m": round(snap.distance_m, 1), "inside_city": road_inside,
                    "neighborhood": road_nb, "district": road_district}
        outside = snap.inside_boundary is False or (neighborhood is None and district is None)
        if outside:
            if road_nb or road_district:
                side = f"on the Boston side, in {road_nb or road_district}, which decides eligibility"
            elif road_inside:
                side = "on the Boston side of the city line (in no neighborhood polygon)"
            else:
                side = "outside the city line too"
            notes.append(f"the call is outside the City of Boston; it is attached to a {snap.road_class} road "
                         f"{snap.distance_m:.0f} m away, {side}")
            neighborhood = neighborhood or road_nb
            district = district or road_district
    for name, said, found in (("neighborhood", call.neighborhood, neighborhood),
                              ("district", call.district, district)):
        if said is not None and found is not None and said != found:
            notes.append(f"caller-supplied {name} {said!r} disagrees with the location ({found!r}); "
                         "the location decides eligibility")
    neighborhood = neighborhood if neighborhood is not None else call.neighborhood
    district = district if district is not None else call.district
    same = neighborhood == call.neighborhood and district == call.district
    located = call if same else replace(call, neighborhood=neighborhood, district=district)
    return located, CallLocation(located.neighborhood, located.district, outside, attached, notes)


def _blocked(call: Call, ts: TeamState, type_tier: dict[TeamType, int], tiers: list[Tier], now: datetime,
             rules: Rules) -> tuple[str, str] | None:
    """(code, reason) when ``ts`` cannot serve ``call`` whatever the tier; None when it can."""
    team = ts.team
    if team.team_type not in type_tier:
        names = " → ".join(t.name for t in tiers)
        return "wrong_type", f"{team.team_type.value} is not in this call's tiers ({names})"
    if ts.status not in DISPATCHABLE:
        code = ts.status.value if ts.status in (TeamStatus.out_of_service, TeamStatus.off_shift) else "busy"
        return code, f"status {ts.status.value}"
    if not team.on_shift(now):
        return "outside_hours", f"outside service hours ({team.shift.label() if team.shift else ''})"
    if team.dedicated and rules.dedicated_mental_health_only and not call.mental_health:
        return "dedicated_mh_only", "dedicated car: takes mental-health calls only"
    if team.service_area and not team.serves(call.neighborhood, call.district):
        where = ", ".join(x for x in (call.neighborhood, call.district) if x) or "unknown location"
        return "outside_area", f"call ({where}) is outside its service area ({', '.join(team.service_area)})"
    return None


@dataclass
class _Candidates:
    """Per-call eligibility and ETAs, shared by suggest and assign."""

    call: Call
    rule: str
    tiers: list[Tier]
    eligible: list[tuple[TeamState, int, float, int, float]]  # (state, tier index, eta, leg, age)
    ineligible: list[Ineligible]
    #: ``distance(legs)``: road metres, team position to call, for the ``leg`` entries of ``eligible``.
    distance: Callable[[Sequence[int]], list[float]]
    #: ``leg`` entries whose ETA is only a lower bound (``ranking``: teams that cannot rank, see
    #: :func:`_candidates`); every other ETA is exact.
    inexact: frozenset[int] = frozenset()


def _candidates(call: Call, teams: Sequence[TeamState], *, network: RoadNetwork, rules: Rules, now: datetime,
                call_snap: Snap | None = None, ranking: bool = False, top: int | None = None) -> _Candidates:
    """Eligibility and ETAs of every team for one call.

    By default every eligible team's ETA is exact (``assign`` needs them all). With ``ranking`` (what
    :func:`suggest` returns) only the teams of the best tier with an eligible team need one, and with
    ``top`` only its first ``top`` by rank key: the engine's searches are then bounded by the farthest
    team that could still rank (:mod:`routing.eta`), and the other teams get a lower bound of their ETA
    that ranks them after those, listed in ``inexact``.
    """
    rule = rules.match(call)
    tiers = rules.chain(rule.tier)
    type_tier: dict[TeamType, int] = {}
    for i, tier in enumerate(tiers):
        for t in tier.team_types:
            type_tier.setdefault(t, i)
    engine = eta_engine(network)
    if call_snap is None:
        call_snap = network.snap(call.lat, call.lon, field="location")
    ineligible: list[Ineligible] = []
    passing: list[TeamState] = []
    for ts in teams:
        blocked = _blocked(call, ts, type_tier, tiers, now, rules)
        if blocked is None:
            passing.append(ts)
        else:
            ineligible.append(Ineligible(ts.team_id, ts.team.team_type, *blocked))
    ok: list[tuple[TeamState, Snap]] = []
    for ts, snap in zip(passing, engine.snap_teams(network, [(ts.lat, ts.lon) for ts in passing]), strict=True):
        if isinstance(snap, InvalidInput):
            ineligible.append(Ineligible(ts.team_id, ts.team.team_type, "unreachable",
                                         f"position ({ts.lat:.5f}, {ts.lon:.5f}) is off the road network: "
                                         f"{snap.message}"))
        else:
            ok.append((ts, snap))
    later: list[tuple[TeamState, Snap]] = []
    if ranking and ok:
        # Only the best tier with an eligible team is ranked: a lower tier's teams are listed as such,
        # and their ETAs would be wasted work (a third of a simulated call's). A tier whose teams all
        # turn out unreachable gives way to the next one.
        levels = sorted({type_tier[ts.team.team_type] for ts, _ in ok})
        for level in levels:
            here = [(ts, snap) for ts, snap in ok if type_tier[ts.team.team_type] == level]
            later = [(ts, snap) for ts, snap in ok if type_tier[ts.team.team_type] > level]
            eligible, inexact, distance = _etas(here, call_snap, type_tier, ineligible, network=network,
                                                engine=engine, now=now, ranking=True, top=top)
            if eligible:
                break
    else:
        eligible, inexact, distance = _etas(ok, call_snap, type_tier, ineligible, network=network, engine=engine,
                                            now=now, ranking=ranking, top=top)
    for ts, _ in later:  # reported as lower-tier teams; never ranked, so no ETA
        eligible.append((ts, type_tier[ts.team.team_type], math.inf, -1, ts.position_age_s(now)))
    return _Candidates(call, rule.name, tiers, eligible, ineligible, distance, frozenset(inexact))


def _etas(ok: list[tuple[TeamState, Snap]], call_snap: Snap, type_tier: dict[TeamType, int],
          ineligible: list[Ineligible], *, network: RoadNetwork, engine: Any, now: datetime, ranking: bool,
          top: int | None) -> tuple[list[tuple[TeamState, int, float, int, float]], set[int],
                                    Callable[[Sequence[int]], list[float]]]:
    """ETAs of snapped teams to one call (see :func:`_candidates`): (eligible, inexact legs, distance).

    Unreachable teams are appended to ``ineligible``.
    """
    # Phantom nodes: a team joins the network at the end(s) of its segment it may drive to, the call is
    # reached from the end(s) of its segment that lead to it; the best combination is the ETA.
    y_nodes, y_time, y_dist = network.snap_entries(call_snap)
    sources: list[int] = []
    keys: list[str] = []
    offsets: list[float] = []
    exits = []
    for ts, snap in ok:
        x_nodes, x_time, x_dist = engine.exits(network, snap)
        exits.append((len(sources), x_time, x_dist))
        sources.extend(int(x) for x in x_nodes)
        keys.extend(f"{ts.team_id}\x00{i}" for i in range(len(x_nodes)))
        offsets.extend(float(d) + snap.distance_m for d in x_dist)
    same = [network.same_segment(snap, call_snap) for _, snap in ok]
    bound = _RankBound(ok, exits, same, y_time, call_snap.time_s, type_tier, top) if ranking and ok else None
    if bound is None:
        times, legs = engine.lazy_legs(network, sources, y_nodes.tolist(), keys, offsets=offsets)
    else:
        entries = y_nodes.tolist()

        def start() -> float:  # only when a bounded search is needed (most calls read cached rows)
            return bound.start_s(engine.straight_line_s(sources, entries))

        times, legs = engine.lazy_legs(network, sources, entries, keys, enough=bound, start_s=start,
                                       offsets=offsets, target_legs=y_time, target_dists=y_dist)
    eligible = []
    inexact: set[int] = set()
    chosen: list[tuple[int, int] | None] = []  # per ok-team: (source, target) used, None = same segment
    direct: list[float] = []
    # Per team, the best (exit, entry) pair in row-major order of its block, as np.argmin over the block
    # would pick it: per exit its first best entry, then the first exit with the team's best total.
    n_exits = np.diff(np.append(np.array([e[0] for e in exits], dtype=np.int64), len(sources)))
    if sources and len(y_time):
        total = times + np.concatenate([x for _, x, _ in exits])[:, None] + np.asarray(y_time)[None, :]
        per_exit, entry = total.min(axis=1), total.argmin(axis=1)
    else:
        per_exit, entry = np.full(len(sources), math.inf), np.zeros(len(sources), dtype=np.int64)
    for k, ((ts, snap), (first, _, _)) in enumerate(zip(ok, exits, strict=True)):
        if bound is not None and bound.exact is not None and not bound.exact[k]:
            # Beyond the bounded search: a lower bound that ranks it after every team returned.
            chosen.append(None)
            direct.append(math.nan)
            inexact.add(k)
            eligible.append((ts, type_tier[ts.team.team_type], float(bound.eta_low[k]), k, ts.position_age_s(now)))
            continue
        s_best, network_time = first, math.inf
        for s_k in range(first, first + int(n_exits[k])):
            if per_exit[s_k] < network_time:
                s_best, network_time = s_k, float(per_exit[s_k])
        same_time, same_dist = same[k]
        if same_time <= network_time:
            network_time = same_time
            chosen.append(None)
        else:
            chosen.append((s_best, int(entry[s_best])))
        direct.append(same_dist)
        eta = snap.time_s + network_time + call_snap.time_s
        if not math.isfinite(eta):
            ineligible.append(Ineligible(ts.team_id, ts.team.team_type, "unreachable", "no road path to the call"))
            continue
        eligible.append((ts, type_tier[ts.team.team_type], eta, k, ts.position_age_s(now)))

    def distance(ks: Sequence[int]) -> list[float]:
        # Road distances cost more than times: only the teams a caller returns need them.
        ks = list(ks)
        if inexact.intersection(ks):
            raise RuntimeError("road distance asked for a team whose ETA was only bounded")
        pairs = [p for p in (chosen[k] for k in ks) if p is not None]
        road = iter(legs(pairs).tolist())
        out = []
        for k in ks:
            ts, snap = ok[k]
            pair = chosen[k]
            if pair is None:
                along = direct[k]
            else:
                source, target = pair
                first, _, x_dist = exits[k]
                along = float(x_dist[source - first]) + next(road) + float(y_dist[target])
            out.append(snap.distance_m + along + call_snap.distance_m)
        return out

    return eligible, inexact, distance


class _RankBound:
    """When a bounded search settled enough for a ranking: the ``enough`` test of the ETA engine.

    Per ok-team ``k``, after a search whose unsettled entries lie beyond ``bounds``: the best exact
    network time among its settled (exit, entry) pairs and its shared segment, and a strict lower
    bound for the others (bound + exit leg + entry leg). The team's time is exact when the first is no
    larger; ``eta_low`` is its exact ETA or a lower bound. Enough when every team of the best tier is
    exact, or (with ``top``) when the ``top`` best exact ones rank, at millisecond resolution and by
    team id as :func:`suggest` ranks, before every inexact team's lower bound.
    """

    def __init__(self, ok: list[tuple[TeamState, Snap]], exits: list[tuple[int, np.ndarray, np.ndarray]],
                 same: list[tuple[float, float]], y_time: np.ndarray, call_time: float,
                 type_tier: dict[TeamType, int], top: int | None) -> None:
        # The arrays are built on first use: most calls read cached rows and never need a bound.
        self._inputs = (ok, exits, same, y_time, call_time, type_tier)
        self.top = top
        self.exact: np.ndarray | None = None  # after the last test
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        ok, exits, same, y_time, call_time, type_tier = self._inputs
        self.starts = np.array([first for first, _, _ in exits], dtype=np.int64)
        self.x = np.concatenate([x_time for _, x_time, _ in exits])
        self.y = np.asarray(y_time, dtype=float)
        self.same = np.array([t for t, _ in same], dtype=float)
        self.snap_t = np.array([snap.time_s for _, snap in ok], dtype=float)
        self.call_t = float(call_time)
        tier = np.array([type_tier[ts.team.team_type] for ts, _ in ok])
        self.ranked = np.flatnonzero(tier == tier.min())  # the tier suggest will use: every team reachable
        self.ids = [ts.team_id for ts, _ in ok]
        self.eta_low = np.full(len(ok), math.inf)
        self._ready = True

    def start_s(self, straight: np.ndarray) -> float:
        """First limit: straight-line time to the farthest team that must rank, times a detour factor."""
        self._prepare()
        from routing.eta import _START_DETOUR

        per_team = np.minimum.reduceat(straight.min(axis=1), self.starts)[self.ranked]
        if self.top is None or self.top >= len(per_team):
            far = float(per_team.max())
        else:
            far = float(np.partition(per_team, self.top - 1)[self.top - 1])
        return _START_DETOUR * far + 30.0  # + the phantom and entry legs, roughly

    def reach_s(self, straight: np.ndarray, have: np.ndarray) -> float:
        """A first limit that should settle every ranked team without a forward row (``have`` False):
        its straight-line time at top speed times the detour factor; inf when there is none."""
        self._prepare()
        from routing.eta import _START_DETOUR

        open_team = np.logical_or.reduceat(~have, self.starts)[self.ranked]
        if not open_team.any():
            return math.inf
        per_team = np.minimum.reduceat(straight.min(axis=1), self.starts)[self.ranked]
        return _START_DETOUR * float(per_team[open_team].max()) + 30.0

    def cap_s(self, times: np.ndarray, have: np.ndarray) -> float:
        """A search limit (s) that decides the ranking, from the sources whose times are known (``have``).

        A team's best known (exit, entry) combination bounds its network time from above; the ``top``-th
        smallest total over the ranked teams bounds the ETA of every team that ranks, so a team whose
        network time exceeds it cannot rank (its ETA adds non-negative legs). One second more keeps teams
        that tie at millisecond resolution inside. ``inf`` without ``top`` (every ETA must be exact).
        """
        self._prepare()
        if self.top is None:
            return math.inf
        known = np.where(have[:, None], times + self.x[:, None] + self.y[None, :], math.inf)
        upper = self.snap_t + np.minimum(np.minimum.reduceat(known.min(axis=1), self.starts), self.same) + self.call_t
        upper = upper[self.ranked]
        if self.top > len(upper):
            return math.inf
        return float(np.partition(upper, self.top - 1)[self.top - 1]) + 1.0

    def __call__(self, times: np.ndarray, bounds: np.ndarray) -> bool:
        self._prepare()
        legs = self.x[:, None] + self.y[None, :]
        open_ = np.isinf(times) & np.isfinite(bounds)
        got = np.where(open_, math.inf, times + self.x[:, None] + self.y[None, :])
        low = np.where(open_, bounds + legs, math.inf)
        best = np.minimum(np.minimum.reduceat(got.min(axis=1), self.starts), self.same)
        floor = np.minimum.reduceat(low.min(axis=1), self.starts)
        self.exact = best <= floor
        self.eta_low = self.snap_t + np.minimum(best, floor) + self.call_t
        sure = self.exact[self.ranked]
        if sure.all():
            return True
        if self.top is None or int(sure.sum()) < self.top:
            return False
        key = [(_ms(self.eta_low[k]), self.ids[k]) for k in self.ranked]
        kth = sorted(kk for kk, s in zip(key, sure, strict=True) if s)[self.top - 1]
        return all(kk > kth for kk, s in zip(key, sure, strict=True) if not s)


def _ms(eta_s: float) -> int | float:
    # _rank_key's first part; inf (no path) sorts last.
    return int(round(eta_s * 1000)) if math.isfinite(eta_s) else math.inf


def _rank_key(eta_s: float, team_id: str) -> tuple[int, str]:
    # Millisecond resolution: the same key orders suggest and breaks ties in assign.
    return (int(round(eta_s * 1000)), team_id)


def _tier_label(tiers: list[Tier], i: int) -> str:
    return f"tier {i + 1} ({tiers[i].name}: {', '.join(t.value for t in tiers[i].team_types)})"


# ------------------------------------------------------------------------------------ suggest


def suggest(call: Call, teams: Sequence[TeamState], *, network: RoadNetwork, rules: Rules, places: Places | None = None,
            now: datetime | None = None, top: int | None = None, stale_after_s: float | None = None,
            coverage: CoverageModel | None = None, placed: PlacedCall | None = None,
            distances: bool = True) -> SuggestionResult:
    """Rank the eligible teams for one call by ETA.

    Parameters
    ----------
    call
        The call; ``neighborhood``/``district`` are filled from ``places`` when missing.
    teams
        Live team states (from the store or the simulation).
    network
        :class:`routing.network.RoadNetwork` in the wanted speed profile.
    rules
        Triage rules (:func:`routing.triage.load_rules`).
    places
        :class:`routing.places.Places`, to locate the call for service areas.
    now
        Decision time (tz-aware); default the wall clock. Shifts and staleness are judged at ``now``.
    top
        Return at most this many suggestions (the count left out is in ``omitted``).
    stale_after_s
        A position older than this is flagged ``stale`` (default ``rules.stale_after_s``).
    coverage
        Demand and coverage cache for rules with ``choice = "coverage"`` (default: built from ``places``
        and the default demand surface on first use). Unused by closest-choice rules.
    placed
        This call's :class:`PlacedCall` from :func:`place_calls`, when the caller placed its calls in
        advance (the simulation does); the answer is the same, without snapping and locating again.
    distances
        ``False`` leaves every ``distance_m`` NaN: road distances are walked along each returned team's
        path, work a caller that ranks by time alone (the simulation) does not need.

    Returns
    -------
    SuggestionResult
        With a coverage rule (never for priority 1): the team whose departure keeps the most expected
        coverage among those within the slack of the closest comes first, every suggestion states the
        coverage it leaves, and the closest team is always listed with the reason it is not first.

    Raises
    ------
    InvalidInput, OutsideServiceArea
        A call location that is invalid or off the network; ``top`` < 1.
    """
    now = _as_now(now)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InvalidInput(f"top must be a positive integer, got {top!r}", field="top")
    stale_after = rules.stale_after_s if stale_after_s is None else float(stale_after_s)
    if not math.isfinite(stale_after) or stale_after < 0:
        raise InvalidInput(f"stale_after_s must be a non-negative number, got {stale_after_s!r}",
                           field="stale_after_s")
    if placed is None:
        call_snap = network.snap(call.lat, call.lon, field="location")
        call, location = place_call(call, places, network, call_snap)
    else:
        call_snap, call, location = placed.snap, placed.call, placed.location
    by_coverage = rules.choice_for(call) == "coverage"
    # A coverage choice compares every team of the tier, so all their ETAs must be exact.
    cand = _candidates(call, teams, network=network, rules=rules, now=now, call_snap=call_snap, ranking=True,
                       top=None if by_coverage else top)
    tiers = cand.tiers
    ineligible = list(cand.ineligible)
    chosen = min((k for _, k, *_ in cand.eligible), default=None)
    ranked = []
    labels = [_tier_label(tiers, i) for i in range(len(tiers))]
    for ts, k, eta, leg, age in cand.eligible:
        if k != chosen:
            ineligible.append(Ineligible(ts.team_id, ts.team.team_type, "lower_tier",
                                         f"{ts.team.team_type.value} serves in {labels[k]}; "
                                         f"{labels[chosen]} has an eligible team"))  # type: ignore[index]
            continue
        ranked.append((_rank_key(eta, ts.team_id), ts, eta, leg, age))
    ranked.sort(key=lambda r: r[0])
    notes: dict[str, tuple[str, dict[str, Any]]] = {}
    choice_info = None
    if by_coverage and chosen is not None and ranked:
        ranked, notes, choice_info = _coverage_rank(ranked, teams, tiers[chosen].team_types, network=network,
                                                    places=places, rules=rules, now=now, coverage=coverage)
    omitted = 0
    if top is not None and len(ranked) > top:
        keep = ranked[:top]
        closest = choice_info["closest"] if choice_info else None
        if closest is not None and all(ts.team_id != closest for _, ts, *_ in keep):
            # The closest team always appears, with the reason it is not first.
            keep.append(next(r for r in ranked if r[1].team_id == closest))
        omitted = len(ranked) - len(keep)
        ranked = keep
    dists = cand.distance([leg for _, _, _, leg, _ in ranked]) if distances else [math.nan] * len(ranked)
    chosen_tier = tiers[chosen].name if chosen is not None else ""  # ranked is empty when chosen is None
    suggestions = [
        Suggestion(rank=i + 1, team_id=ts.team_id, team_type=ts.team.team_type, name=ts.team.name,
                   status=ts.status, eta_s=eta, distance_m=dist, stale=age > stale_after, position_age_s=age,
                   lat=ts.lat, lon=ts.lon, dedicated=ts.team.dedicated, tier=chosen_tier,
                   note=notes[ts.team_id][0] if ts.team_id in notes else None,
                   coverage=notes[ts.team_id][1] if ts.team_id in notes else None)
        for i, ((_, ts, eta, _, age), dist) in enumerate(zip(ranked, dists, strict=True))
    ]
    order = {ts.team_id: i for i, ts in enumerate(teams)}
    ineligible.sort(key=lambda x: order.get(x.team_id, 0))
    if chosen is None:
        message = ("no eligible team in any tier (" + " → ".join(t.name for t in tiers)
                   + "); every team's reason is listed (JSON: 'ineligible')")
        tier = None
    else:
        tier = tiers[chosen]
        best = suggestions[0]
        stale_note = " (position stale)" if best.stale else ""
        n_ok = len(suggestions) + omitted
        message = (f"{_tier_label(tiers, chosen)}: {n_ok} eligible team{'s' if n_ok != 1 else ''}; nearest "
                   f"{best.team_id}, ETA {format_eta(best.eta_s)}{stale_note}")
        if choice_info is not None and choice_info["closest"] != best.team_id:
            message = (f"{_tier_label(tiers, chosen)}: {n_ok} eligible team{'s' if n_ok != 1 else ''}; "
                       f"{best.team_id} (ETA {format_eta(best.eta_s)}{stale_note}) keeps more coverage than the "
                       f"closest, {choice_info['closest']}")
        if chosen > 0:
            skipped = ", ".join(_tier_label(tiers, i) for i in range(chosen))
            message = f"fell back: no team of {skipped} can come; " + message
    if location.outside_city:
        message = "OUTSIDE BOSTON: " + message
    return SuggestionResult(call=call, rule=cand.rule, tiers=tiers, tier=tier, tier_index=chosen,
                            fell_back=bool(chosen), suggestions=suggestions, ineligible=ineligible,
                            message=message, now=now, stale_after_s=stale_after, omitted=omitted,
                            location=location, profile=dict(getattr(network, "profile", {}) or {}) or None,
                            _teams={ts.team_id: ts for ts in teams}, choice=choice_info)


_R = tuple[tuple[int, str], TeamState, float, int, float]  # (rank key, state, eta, leg, age) as ranked


def _coverage_rank(ranked: list[_R], teams: Sequence[TeamState], types: Sequence[TeamType], *,
                   network: RoadNetwork, places: Places | None, rules: Rules, now: datetime,
                   coverage: CoverageModel | None) -> tuple[list[_R], dict[str, tuple[str, dict[str, Any]]],
                                                            dict[str, Any] | None]:
    """Reorder ETA-ranked teams by the coverage their departure keeps (see :mod:`routing.mexclp`)."""
    from routing.mexclp import CoverageModel, coverage_order, departures

    cs = rules.choice_settings
    if coverage is None:
        try:
            coverage = CoverageModel.build(network, places, minutes=cs.minutes, busy_fraction=cs.busy_fraction)
        except CrisisDispatchError as exc:  # no demand data: closest, and say why
            return ranked, {}, {"rule": "coverage", "applied": False, "closest": ranked[0][1].team_id,
                                "reason": f"coverage unavailable ({exc}); closest team first"}
    model = coverage.with_settings(cs.minutes, cs.busy_fraction)
    deps = departures([(ts, eta) for _, ts, eta, _, _ in ranked], teams, types=types, model=model,
                      network=network, now=now, settings=cs)
    order = coverage_order(deps)
    first = deps[order[0]]
    closest = deps[0]
    notes: dict[str, tuple[str, dict[str, Any]]] = {}
    for k, d in enumerate(deps):
        text = d.sentence(types, model.minutes)
        if k == 0 and order[0] != 0:
            text = (f"closest (ETA {format_eta(d.eta_s)}) but not first: {text}; {first.team_id} keeps "
                    f"{first.expected_after - d.expected_after:.0f} more expected calls a year covered "
                    f"for {format_eta(first.eta_s - d.eta_s)} more")
        elif k == order[0] and k != 0:
            text = f"preferred to the closest ({closest.team_id}): {text}"
        elif not d.within_slack:
            text = f"{text} (beyond the slack of the closest: not considered for coverage)"
        notes[d.team_id] = (text, d.to_dict())
    info = {"rule": "coverage", "applied": True, "closest": closest.team_id, "chosen": first.team_id,
            "minutes": model.minutes, "busy_fraction": model.busy_fraction, "slack_s": cs.slack_s,
            "slack_fraction": cs.slack_fraction, "team_types": [t.value for t in types],
            "expected_coverage_before": round(closest.expected_before, 1)}
    return [ranked[k] for k in order], notes, info


def decision_inputs(teams: Sequence[TeamState], *, network: RoadNetwork | None, rules: Rules, now: datetime | None,
                    **extra: Any) -> dict[str, Any]:
    """The inputs of a decision, for the audit trail: fleet snapshot, rules, network profile, time."""
    return {
        "now": _as_now(now).isoformat(),
        "teams": [ts.to_dict() for ts in teams],
        "rules": rules.to_dict(),
        "network": {"source": getattr(network, "source", None), "profile": getattr(network, "profile", None)},
        **extra,
    }


# ------------------------------------------------------------------------------------ assignment


@dataclass
class MatrixAssignment:
    """Solution of :func:`solve_assignment`: ``team_of_call[i]`` is a column index or None."""

    team_of_call: list[int | None]
    objective: float
    optimal: bool
    status: str
    solve_time_s: float
    rounds: int = 0
    method: str = "cp-sat"  # or "enumerate" (see solve_assignment)


def solve_assignment(eta_s: np.ndarray, tier: np.ndarray, weights: Sequence[int], *,
                     tier_penalty_s: float, unserved_penalty_s: float,
                     tiebreak: Sequence[int] | None = None, time_limit_s: float = 10.0,
                     num_workers: int = 1, random_seed: int = 0, method: str = "auto") -> MatrixAssignment:
    """Assign calls (rows) to teams (columns) at minimum priority-weighted cost, with CP-SAT.

    Cost of giving call ``i`` to team ``j``: ``w_i * (eta_ij + tier_penalty_s * tier_ij)``; leaving call
    ``i`` unserved costs ``w_i * unserved_penalty_s``. Each team takes at most one call, each call at
    most one team, and **a call may be served from tier t (or left unserved) only if every team eligible
    for it in a better tier is busy with another call**. That rule makes a single call get exactly the
    team :func:`suggest` ranks first, and never leaves a preferred team idle while a call falls back.

    Why CP-SAT and not ``linear_sum_assignment`` or ``min_cost_flow`` (``ortools.graph.python``): the
    fallback rule couples the choice for one call to the use of teams by other calls, which is not a
    network-flow constraint; CP-SAT takes it as clauses over 0/1 variables and proves optimality. The rule
    is added lazily: solve the plain assignment, and only for calls whose answer breaks the rule add
    their clauses and solve again (an optimum of the relaxation that obeys the rule is optimal for the
    full problem); with ``linearization_level = 2`` this proves 20 calls x 60 teams optimal in about
    0.1 s, several times faster than posting every clause up front. Costs are integers at millisecond
    resolution, multiplied by ``K = n_calls * n_teams + 1``; a ``tiebreak`` rank per team (smaller first)
    is added so ties resolve like :func:`suggest` (by ``team_id``) without changing the optimal primary
    cost. ``num_workers`` and ``random_seed`` are fixed for reproducible answers. If the time limit
    ends the search, the answer is the best one that obeys the rule (at worst the greedy one:
    heaviest calls first, best free team each) with ``optimal=False``.

    Parameters
    ----------
    eta_s
        (n_calls, n_teams) seconds; ``nan``/``inf`` where the pair is ineligible.
    tier
        (n_calls, n_teams) int tier index of the team for the call, ``-1`` where ineligible.
    weights
        Positive integer weight per call.
    tier_penalty_s, unserved_penalty_s
        Penalties in seconds (before weighting).
    tiebreak
        Integer rank per team (default: column order).
    time_limit_s, num_workers, random_seed
        CP-SAT parameters.
    method
        ``"cp-sat"``; ``"enumerate"``: every assignment, for small instances (a simulation's waiting
        calls: two or three calls and a few teams each), where building a CP-SAT model costs more than
        the whole search; ``"auto"`` (default): enumerate when there are at most 4,096 assignments.
        Both give an optimal answer; among answers equal in cost and tiebreak they may pick differently.

    Returns
    -------
    MatrixAssignment
        ``objective`` in weighted seconds (millisecond-rounded ETAs); ``optimal`` when proven.
    """
    from ortools.sat.python import cp_model

    eta = np.asarray(eta_s, dtype=float)
    tiers = np.asarray(tier, dtype=int)
    n_calls, n_teams = eta.shape if eta.ndim == 2 else (0, 0)
    if tiers.shape != eta.shape or len(weights) != n_calls:
        raise InvalidInput("eta, tier and weights must agree in shape")
    if any(int(w) != w or w < 1 for w in weights):
        raise InvalidInput("weights must be positive integers", field="weights")
    rank = list(range(n_teams)) if tiebreak is None else [int(r) for r in tiebreak]
    ok = (tiers >= 0) & np.isfinite(eta)
    pen_ms = int(round(tier_penalty_s * 1000))
    uns_ms = int(round(unserved_penalty_s * 1000))
    eta_ms = np.where(ok, np.round(np.where(ok, eta, 0) * 1000), 0).astype(np.int64)
    big_k = n_calls * max(n_teams, 1) + 1

    def primary(i: int, j: int | None) -> int:
        if j is None:
            return int(weights[i]) * uns_ms
        return int(weights[i]) * (int(eta_ms[i, j]) + pen_ms * int(tiers[i, j]))

    started = time.perf_counter()
    pairs = [(i, j) for i in range(n_calls) for j in range(n_teams) if ok[i, j]]
    if not pairs:
        total = sum(primary(i, None) for i in range(n_calls))
        return MatrixAssignment([None] * n_calls, total / 1000, True, "OPTIMAL", time.perf_counter() - started, 0)

    by_call: dict[int, list[int]] = {i: [] for i in range(n_calls)}
    by_team: dict[int, list[int]] = {j: [] for j in range(n_teams)}
    for i, j in pairs:
        by_call[i].append(j)
        by_team[j].append(i)
    if method not in ("auto", "cp-sat", "enumerate"):
        raise InvalidInput(f"method must be 'auto', 'cp-sat' or 'enumerate', got {method!r}", field="method")
    size = math.prod(len(js) + 1 for js in by_call.values())
    if method == "enumerate" or (method == "auto" and size <= _ENUMERATE_MAX):
        chosen_e = _enumerate_assignments(by_call, tiers, rank, lambda i, j: primary(i, j) * big_k)
        total = sum(primary(i, j) for i, j in enumerate(chosen_e))
        return MatrixAssignment(chosen_e, total / 1000, True, "OPTIMAL", time.perf_counter() - started, 0,
                                method="enumerate")
    model = cp_model.CpModel()
    x = {(i, j): model.new_bool_var(f"x_{i}_{j}") for i, j in pairs}
    for i, js in by_call.items():
        if len(js) > 1:
            model.add_at_most_one(x[i, j] for j in js)
    for j, is_ in by_team.items():
        if len(is_) > 1:
            model.add_at_most_one(x[i, j] for i in is_)
    objective = []
    constant = 0
    for i in range(n_calls):
        constant += primary(i, None) * big_k
        for j in by_call[i]:
            objective.append((primary(i, j) - primary(i, None)) * big_k + rank[j])
    model.minimize(sum(c * x[p] for c, p in zip(objective, [(i, j) for i in range(n_calls) for j in by_call[i]],
                                                strict=True)) + constant)

    def violations(chosen: list[int | None]) -> list[int]:
        """Calls served from a worse tier (or not at all) while a better-tier team of theirs is idle."""
        used = {j for j in chosen if j is not None}
        bad = []
        for i, j in enumerate(chosen):
            level = math.inf if j is None else tiers[i, j]
            if any(tiers[i, jp] < level and jp not in used for jp in by_call[i]):
                bad.append(i)
        return bad

    greedy: list[int | None] = [None] * n_calls
    for i, j in _greedy(eta_ms, tiers, ok, weights, rank):
        greedy[i] = j
    hint = greedy
    constrained: set[int] = set()
    deadline = started + float(time_limit_s)
    chosen, optimal, name, rounds = greedy, False, "FEASIBLE (greedy)", 0
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            name = "TIME_LIMIT (greedy)"
            break
        model.clear_hints()
        for i, hinted in enumerate(hint):
            if hinted is not None:
                model.add_hint(x[i, hinted], 1)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = remaining
        solver.parameters.num_workers = int(num_workers)
        solver.parameters.random_seed = int(random_seed)
        solver.parameters.linearization_level = 2  # the fallback rows tighten the LP bound a lot
        status = solver.solve(model)
        rounds += 1
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            name = f"{solver.status_name(status)} (greedy)"
            break
        found: list[int | None] = [None] * n_calls
        for (i, j), var in x.items():
            if solver.value(var):
                found[i] = j
        bad = violations(found)
        if not bad:
            chosen, optimal, name = found, status == cp_model.OPTIMAL, solver.status_name(status)
            break
        if status != cp_model.OPTIMAL:  # out of time on a relaxation: its answer breaks the rule
            name = "TIME_LIMIT (greedy)"
            break
        # Lazy constraints: add the fallback rule for every call that broke it, then solve again.
        for i in bad:
            if i in constrained:
                continue
            constrained.add(i)
            for jp in by_call[i]:
                t = tiers[i, jp]
                model.add_bool_or([x[i, j] for j in by_call[i] if tiers[i, j] <= t]
                                + [x[k, jp] for k in by_team[jp] if k != i])
        hint = found
    total = sum(primary(i, j) for i, j in enumerate(chosen))
    return MatrixAssignment(chosen, total / 1000, optimal, name, time.perf_counter() - started, rounds)


_ENUMERATE_MAX = 4096  # assignments up to which solve_assignment enumerates them instead of calling CP-SAT


def _enumerate_assignments(by_call: dict[int, list[int]], tiers: np.ndarray, rank: Sequence[int],
                           cost: Callable[[int, int | None], int]) -> list[int | None]:
    """The best assignment by (sum of ``cost`` + tiebreak ranks) that obeys the fallback rule, by
    depth-first enumeration (calls in order, each its teams in column order, then unserved)."""
    n = len(by_call)
    best: list[int | None] = [None] * n
    best_key: float = math.inf
    chosen: list[int | None] = [None] * n
    used: set[int] = set()

    def obeys() -> bool:
        for i, j in enumerate(chosen):
            level = math.inf if j is None else tiers[i, j]
            if any(tiers[i, jp] < level and jp not in used for jp in by_call[i]):
                return False
        return True

    def visit(i: int, key: int) -> None:
        nonlocal best, best_key
        if i == n:
            if key < best_key and obeys():
                best, best_key = list(chosen), key
            return
        for j in [*by_call[i], None]:
            if j is not None and j in used:
                continue
            chosen[i] = j
            if j is not None:
                used.add(j)
            visit(i + 1, key + cost(i, j) + (rank[j] if j is not None else 0))
            if j is not None:
                used.discard(j)
        chosen[i] = None

    visit(0, 0)
    return best


def _greedy(eta_ms: np.ndarray, tiers: np.ndarray, ok: np.ndarray, weights: Sequence[int],
            rank: Sequence[int]) -> list[tuple[int, int]]:
    """Heaviest calls first, each takes its best free team by (tier, ETA, rank): always feasible."""
    taken: set[int] = set()
    out = []
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        options = [(int(tiers[i, j]), int(eta_ms[i, j]), rank[j], j) for j in np.flatnonzero(ok[i]).tolist()
                   if j not in taken]
        if options:
            j = min(options)[3]
            taken.add(j)
            out.append((i, j))
    return out


def assign(calls: Sequence[Call], teams: Sequence[TeamState], *, network: RoadNetwork, rules: Rules,
           places: Places | None = None, now: datetime | None = None, tier_penalty_s: float | None = None,
           unserved_penalty_s: float | None = None, stale_after_s: float | None = None,
           time_limit_s: float = 10.0, num_workers: int = 1, random_seed: int = 0,
           coverage: CoverageModel | None = None, placed: Sequence[PlacedCall | None] | None = None
           ) -> AssignmentResult:
    """Jointly assign waiting calls to teams (OR-Tools CP-SAT; see :func:`solve_assignment`).

    Minimises ``sum w_i * (eta_i + tier_penalty_s * tier_index_i)`` over served calls plus
    ``w_i * unserved_penalty_s`` per unserved call, where ``w_i = rules.weight(priority_i)``, subject to
    the eligibility of :func:`suggest` and the fallback rule. A single call gets the same team as
    :func:`suggest`.

    Parameters
    ----------
    calls
        Waiting calls (distinct ``call_id``).
    teams
        Live team states.
    network, rules, places, now, stale_after_s
        As for :func:`suggest`.
    tier_penalty_s, unserved_penalty_s
        Default from ``rules`` (``[settings]``).
    time_limit_s, num_workers, random_seed
        Solver limits; with the defaults the answer is reproducible.
    coverage
        As for :func:`suggest`: for calls whose rule asks for ``choice = "coverage"``, the teams within
        the slack of the closest are costed in :func:`suggest`'s coverage order (the closest ETA plus a
        millisecond per place), so a single call gets the team :func:`suggest` puts first; reported
        ETAs stay the real ones.
    placed
        Parallel to ``calls``: each call's :class:`PlacedCall` when the caller placed it in advance
        (:func:`place_calls`), else ``None``; the answer is the same.

    Returns
    -------
    AssignmentResult

    Raises
    ------
    InvalidInput
        Duplicate call ids, bad penalties, a call off the network.
    """
    now = _as_now(now)
    # The time limit covers the whole call (road searches and model included), not only CP-SAT's search.
    started = time.perf_counter()
    ids = [c.call_id for c in calls]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInput(f"duplicate call_id {dup!r}", field="call_id")
    pen = rules.tier_penalty_s if tier_penalty_s is None else tier_penalty_s
    uns = rules.unserved_penalty_s if unserved_penalty_s is None else unserved_penalty_s
    for name, v in (("tier_penalty_s", pen), ("unserved_penalty_s", uns), ("time_limit_s", time_limit_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InvalidInput(f"{name} must be a non-negative number, got {v!r}", field=name)
    stale_after = rules.stale_after_s if stale_after_s is None else float(stale_after_s)
    if placed is not None and len(placed) != len(calls):
        raise InvalidInput(f"placed has {len(placed)} entries for {len(calls)} calls", field="placed")
    located: list[Call] = []
    call_snaps: list[Snap] = []
    for k, c in enumerate(calls):
        pc = placed[k] if placed is not None else None
        if pc is None:
            snap = network.snap(c.lat, c.lon, field=f"location of {c.call_id}")
            located.append(place_call(c, places, network, snap)[0])
            call_snaps.append(snap)
        else:
            located.append(pc.call)
            call_snaps.append(pc.snap)
    engine = eta_engine(network)
    ready = [(ts.lat, ts.lon) for ts in teams if ts.status in DISPATCHABLE]
    team_nodes = [int(x) for snap in engine.snap_teams(network, ready) if not isinstance(snap, InvalidInput)
                  for x in network.snap_exits(snap)[0]]
    call_nodes = [int(y) for snap in call_snaps for y in network.snap_entries(snap)[0]]
    engine.prime(network, team_nodes, call_nodes)
    team_index = {ts.team_id: j for j, ts in enumerate(teams)}
    n, m = len(located), len(teams)
    eta = np.full((n, m), np.inf)
    leg = np.full((n, m), -1, dtype=int)
    tier = np.full((n, m), -1, dtype=int)
    age = np.zeros(m)
    cands = []
    for i, call in enumerate(located):
        cand = _candidates(call, teams, network=network, rules=rules, now=now, call_snap=call_snaps[i])
        cands.append(cand)
        for ts, k, e, g, a in cand.eligible:
            j = team_index[ts.team_id]
            eta[i, j], leg[i, j], tier[i, j], age[j] = e, g, k, a
    order = sorted(range(m), key=lambda j: teams[j].team_id)
    rank = [0] * m
    for r, j in enumerate(order):
        rank[j] = r
    weights = [rules.weight(c.priority) for c in located]
    cost = eta
    for i, call in enumerate(located):
        if rules.choice_for(call) != "coverage" or not cands[i].eligible:
            continue
        best_tier = min(k for _, k, *_ in cands[i].eligible)
        ranked = sorted([(_rank_key(e, ts.team_id), ts, e, g, a) for ts, k, e, g, a in cands[i].eligible
                         if k == best_tier], key=lambda r: r[0])
        reordered, _, info = _coverage_rank(ranked, teams, cands[i].tiers[best_tier].team_types, network=network,
                                            places=places, rules=rules, now=now, coverage=coverage)
        if info is None or not info.get("applied") or reordered[0][1].team_id == ranked[0][1].team_id:
            continue
        if cost is eta:
            cost = eta.copy()
        base = ranked[0][2]
        for place, (_, ts, e, _, _) in enumerate(reordered):
            j = team_index[ts.team_id]
            # Only the preferred team moves ahead; the others keep their ETA order after it.
            cost[i, j] = base + 0.001 * place if place == 0 else max(e, base + 0.001 * place)
    sol = solve_assignment(cost, tier, weights, tier_penalty_s=pen, unserved_penalty_s=uns, tiebreak=rank,
                           time_limit_s=max(0.0, time_limit_s - (time.perf_counter() - started)),
                           num_workers=num_workers, random_seed=random_seed)
    assignments: list[Assignment] = []
    unserved: list[Unserved] = []
    taken = {j for j in sol.team_of_call if j is not None}
    for i, (call, col) in enumerate(zip(located, sol.team_of_call, strict=True)):
        if col is None:
            eligible = [team_index[ts.team_id] for ts, *_ in cands[i].eligible]
            if not eligible:
                reason = ("no eligible team in any tier (" + " → ".join(t.name for t in cands[i].tiers) + ")")
            else:
                busy = sum(1 for jj in eligible if jj in taken)
                reason = ("its only eligible team is assigned to another call" if busy == 1
                          else f"all {busy} eligible teams are assigned to other calls")
            unserved.append(Unserved(call.call_id, reason))
            continue
        j = col
        ts = teams[j]
        k = int(tier[i, j])
        dist = cands[i].distance([int(leg[i, j])])[0]
        assignments.append(Assignment(call.call_id, ts.team_id, ts.team.team_type, float(eta[i, j]),
                                      float(dist), cands[i].tiers[k].name, k, bool(age[j] > stale_after),
                                      ts.lat, ts.lon))
    return AssignmentResult(located, assignments, unserved, sol.objective, sol.optimal, sol.status,
                            sol.solve_time_s, float(pen), float(uns), now)

