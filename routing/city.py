"""One object holding a city's loaded inputs: network, places, fleet, rules and (on first use) demand.

A notebook, a script, the CLI, the service and the simulation all need the same inputs built the same
way: :meth:`City.load` reads them once, and the methods call the engine with them, each a thin wrapper
over one engine function (:func:`routing.dispatch.suggest`, :func:`routing.coverage.fleet_coverage`,
:func:`routing.staging.plan_staging`, :func:`routing.simulation.simulate`, ...). Everything the wrappers
do can be done with the engine functions directly; the wrappers only fill in the city's own inputs and
apply the one-clock rule (the decision time chooses the hour-of-day speeds, as in the CLI).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routing.arrivals import ArrivalModel, CallMix
    from routing.coverage import CoverageResult
    from routing.demand import DemandSurface
    from routing.dispatch import AssignmentResult, SuggestionResult
    from routing.fleet import Team, TeamState
    from routing.network import RoadNetwork
    from routing.places import Places, Site
    from routing.policy import Policy
    from routing.simulation import ComparisonResult, SimulationResult
    from routing.speeds import SpeedModel
    from routing.staging import StagingPlan, StagingProblem
    from routing.store import Store
    from routing.triage import Call, Rules

#: Team types that answer mental-health calls: "today's staging" of a plan made for no one type.
CRISIS_TEAM_TYPES: tuple[str, ...] = ("co_response", "emt_clinician", "community")


@dataclass(eq=False)
class City:
    """A city's loaded inputs, and the engine called with them.

    Attributes
    ----------
    network
        The road network (default profile; the methods take the decision time's profile from it).
    places
        Neighborhoods, police districts, boundary and candidate sites.
    fleet
        Team definitions (static: type, base, service area, shift), in fleet-file order.
    rules
        Triage rules.
    data_dir
        The data directory the inputs came from (``None`` when built by hand); the demand and the
        arrival model are read from it.
    demand
        The default demand surface (calls a year per network node), built on first access (a second or
        so) and kept; assign another :class:`~routing.demand.DemandSurface` to use your own.
    """

    network: RoadNetwork
    places: Places
    fleet: list[Team]
    rules: Rules
    data_dir: Path | None = None

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str] | None = None, *, source: str | os.PathLike[str] | None = None,
             speeds: str | os.PathLike[str] | SpeedModel | None = None,
             fleet: str | os.PathLike[str] | Sequence[Team] | None = None,
             rules: str | os.PathLike[str] | Rules | None = None,
             boundary: str | os.PathLike[str] | None = None) -> City:
        """Load a city from a data directory, as the CLI does for ``--data --source --speeds --fleet --rules``.

        Parameters
        ----------
        data_dir
            Real-data directory (default ``$CRISIS_DISPATCH_DATA``): places, demand and, without
            ``source``, the road network.
        source, speeds, boundary
            As for :func:`routing.network.load_network`.
        fleet
            Fleet TOML file (default ``data/fleet.toml``) or a list of :class:`~routing.fleet.Team`.
        rules
            Rules TOML file (default ``data/rules.toml``) or loaded :class:`~routing.triage.Rules`.

        Returns
        -------
        City

        Raises
        ------
        DataMissing
            No data directory (argument or ``$CRISIS_DISPATCH_DATA``), or a file missing in it.
        InvalidInput
            A malformed fleet, rules, speeds or source file.
        """
        from routing.config import require_data_dir
        from routing.fleet import load_fleet
        from routing.network import load_network
        from routing.places import load_places
        from routing.triage import Rules, load_rules

        directory = require_data_dir(data_dir)
        network = load_network(directory, source=source, speeds=speeds, boundary=boundary)
        places = load_places(directory)
        teams = (list(fleet) if fleet is not None and not isinstance(fleet, (str, os.PathLike))
                 else load_fleet(fleet, places=places))
        loaded_rules = rules if isinstance(rules, Rules) else load_rules(rules)
        return cls(network, places, teams, loaded_rules, directory)

    @cached_property
    def demand(self) -> DemandSurface:
        """The default demand surface, shared with the CLI and the service (same cache)."""
        from routing.coverage import default_demand

        return default_demand(self.network, self.places, self.data_dir)

    def __repr__(self) -> str:
        return (f"<City {self.network.n_nodes:,} road nodes, {len(self.places.neighborhoods)} neighborhoods, "
                f"{len(self.fleet)} teams, rules {Path(str(self.rules.source)).name}>")

    # ----------------------------------------------------------------------------------------- clock

    def network_at(self, when: datetime | None = None, *, mode: str | None = None,
                   hour: int | None = None) -> RoadNetwork:
        """The network with the speeds of a decision time (:meth:`routing.network.RoadNetwork.for_time`)."""
        return self.network.for_time(when, mode=mode, hour=hour)

    def teams_at_base(self, now: datetime | None = None) -> list[TeamState]:
        """Every team ``available`` at its staging site, position reported at ``now`` (default: now)."""
        from routing.fleet import TeamState

        return [TeamState.at_base(t, now) for t in self.fleet]

    def store(self, path: str | os.PathLike[str] | None = None) -> Store:
        """The fleet database (:class:`routing.store.Store`), created from this fleet if it has no teams."""
        from routing.store import Store

        return Store(path, fleet=self.fleet, network=self.network)

    # -------------------------------------------------------------------------------------- dispatch

    def suggest(self, call: Call, teams: Sequence[TeamState] | None = None, now: datetime | None = None,
                **kwargs: Any) -> SuggestionResult:
        """:func:`routing.dispatch.suggest` with this city's network (speeds of ``now``), rules and places.

        Parameters
        ----------
        call
            The call.
        teams
            Live team states (default: :meth:`teams_at_base` at ``now``).
        now
            Decision time (tz-aware; default the wall clock): shifts, staleness and speeds.
        **kwargs
            ``top``, ``stale_after_s`` (see :func:`~routing.dispatch.suggest`).
        """
        from routing.dispatch import suggest

        now = now or datetime.now(UTC)
        teams = self.teams_at_base(now) if teams is None else teams
        return suggest(call, teams, network=self.network_at(now), rules=self.rules, places=self.places, now=now,
                       **kwargs)

    def assign(self, calls: Sequence[Call], teams: Sequence[TeamState] | None = None, now: datetime | None = None,
               **kwargs: Any) -> AssignmentResult:
        """:func:`routing.dispatch.assign` with this city's inputs (as :meth:`suggest`)."""
        from routing.dispatch import assign

        now = now or datetime.now(UTC)
        teams = self.teams_at_base(now) if teams is None else teams
        return assign(calls, teams, network=self.network_at(now), rules=self.rules, places=self.places, now=now,
                      **kwargs)

    # -------------------------------------------------------------------------------------- planning

    def coverage(self, minutes: float, *, team_types: Iterable[str] | str | None = None,
                 teams: Sequence[Team | TeamState] | None = None, from_staging: bool | None = None,
                 at: datetime | None = None, mental_health: bool = True) -> CoverageResult:
        """:func:`routing.coverage.fleet_coverage` of the demand with this city's inputs.

        Parameters
        ----------
        minutes
            Time standard.
        team_types
            Only these types (default: every team).
        teams
            Live :class:`~routing.fleet.TeamState` (where they are now) or :class:`~routing.fleet.Team`
            (at their bases). Default: this city's fleet at its staging sites.
        from_staging
            Count every team from its staging site, whatever its status (default: yes for this city's
            fleet, no for ``teams`` given); see :func:`~routing.coverage.fleet_coverage`.
        mental_health
            See :func:`~routing.coverage.fleet_coverage`.
        at
            Leave out teams off shift at this time; its local hour also sets the speeds.
        """
        from routing.coverage import fleet_coverage

        network = self.network_at(at) if at is not None else self.network
        if from_staging is None:
            from_staging = teams is None  # team definitions stand at their bases: say so in the label
        return fleet_coverage(self.fleet if teams is None else teams, network=network, places=self.places,
                              minutes=minutes, team_types=team_types, demand=self.demand,
                              from_staging=from_staging, at=at, mental_health=mental_health)

    def today_sites(self, team_types: Iterable[str] | str | None = CRISIS_TEAM_TYPES) -> list[Site]:
        """Today's staging: the distinct bases of the fleet's teams of these types (default: crisis teams)."""
        from routing.staging import today_sites

        return today_sites(self.fleet, team_types)

    def staging_problem(self, *, sites: Sequence[Any] | None = None, kinds: Sequence[str] | None = None,
                        candidates_csv: str | os.PathLike[str] | None = None) -> StagingProblem:
        """:func:`routing.staging.build_problem` on this city's demand (build once, plan many times)."""
        from routing.staging import build_problem

        return build_problem(self.network, self.places, demand=self.demand, sites=sites,
                             candidates_csv=candidates_csv, kinds=kinds)

    def plan_staging(self, model: str = "mclp", *, minutes: float, p: int | None = None,
                     team_type: str | None = None, problem: StagingProblem | None = None, compare: bool = True,
                     **kwargs: Any) -> StagingPlan:
        """:func:`routing.staging.plan_staging`, compared with today's staging of the fleet (as ``stage``).

        Parameters
        ----------
        model
            ``"mclp"`` (default), ``"pmedian"``, ``"lscp"`` or ``"backup"``.
        minutes
            Time standard.
        p
            Number of sites (default: today's number of sites for ``team_type``).
        team_type
            Plan for this team type (default: the crisis teams, :data:`CRISIS_TEAM_TYPES`).
        problem
            A problem from :meth:`staging_problem` (default: every real candidate site).
        compare
            Compare with today's staging.
        **kwargs
            ``fixed``, ``exclude``, ``busy_fraction``, ``allow_uncoverable``, ``time_limit_s`` ...
        """
        from routing.fleet import parse_team_type
        from routing.staging import plan_staging

        kind = parse_team_type(team_type).value if team_type is not None else None
        today = self.today_sites(kind or CRISIS_TEAM_TYPES)
        if p is None and model != "lscp":
            p = len(today) or None  # plan_staging then names the missing p
        return plan_staging(problem or self.staging_problem(), model, minutes=minutes, p=p,
                            today=today if compare else None, team_type=kind, **kwargs)

    # ------------------------------------------------------------------------------------ simulation

    def policy(self, name_or_path: str | os.PathLike[str] = "default", **kwargs: Any) -> Policy:
        """:func:`routing.policy.load_policy` with this city's places (the policy brings its own fleet)."""
        from routing.policy import load_policy

        return load_policy(name_or_path, places=self.places, **kwargs)

    def arrival_model(self) -> ArrivalModel:
        """:func:`routing.arrivals.load_arrival_model` from this city's data directory (cached)."""
        from routing.arrivals import load_arrival_model
        from routing.config import require_data_dir

        return load_arrival_model(require_data_dir(self.data_dir), network=self.network, places=self.places)

    def generate_calls(self, *, days: float = 7.0, start: datetime | None = None, seed: int = 0,
                       mix: CallMix | None = None) -> list[Call]:
        """Calls drawn from the arrival model (:func:`routing.arrivals.generate_calls`).

        ``start`` defaults to :func:`routing.simulation.default_start` (Monday 2024-01-01 in Boston).
        """
        from routing.arrivals import generate_calls
        from routing.simulation import default_start

        return generate_calls(self.arrival_model(), mix, start=start or default_start(), days=days, seed=seed)

    def simulate(self, policy: str | os.PathLike[str] | Policy = "default", calls: Sequence[Call] | None = None, *,
                 days: float | None = None, start: datetime | None = None, seed: int = 0,
                 mix: CallMix | None = None, **kwargs: Any) -> SimulationResult:
        """Run calls through a policy (:func:`routing.simulation.simulate`) on this city's network and places.

        Parameters
        ----------
        policy
            A shipped policy name, a policy file or a loaded :class:`~routing.policy.Policy`.
        calls
            The calls (default: :meth:`generate_calls` with ``days``, ``start``, ``seed``, ``mix``).
        days, start, seed, mix
            The simulated period (default 7 days from :func:`~routing.simulation.default_start`; with
            ``calls`` given, the calls' span) and the draws.
        **kwargs
            ``max_wait_s``, ``time_of_day``, ``progress`` ... (see :func:`~routing.simulation.simulate`).
        """
        return self._run([policy], calls, days=days, start=start, seed=seed, mix=mix, **kwargs).results[0]

    def compare(self, policies: Sequence[str | os.PathLike[str] | Policy], calls: Sequence[Call] | None = None, *,
                days: float | None = None, start: datetime | None = None, seed: int = 0,
                mix: CallMix | None = None, **kwargs: Any) -> ComparisonResult:
        """Several policies on the same calls and seed (:func:`routing.simulation.compare`); see :meth:`simulate`."""
        return self._run(policies, calls, days=days, start=start, seed=seed, mix=mix, **kwargs)

    def _run(self, policies: Sequence[Any], calls: Sequence[Call] | None, *, days: float | None, start: datetime | None,
             seed: int, mix: CallMix | None, **kwargs: Any) -> ComparisonResult:
        from routing.policy import Policy
        from routing.simulation import compare, default_start

        loaded = [p if isinstance(p, Policy) else self.policy(p) for p in policies]
        if calls is None:
            start = start or default_start()
            days = 7.0 if days is None else days
            calls = self.generate_calls(days=days, start=start, seed=seed, mix=mix)
        return compare(loaded, calls, network=self.network, places=self.places, start=start, days=days, seed=seed,
                       **kwargs)
