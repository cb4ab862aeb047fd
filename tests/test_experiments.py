"""Replicated experiments and the published figures: agreement with Erlang C, intervals that shrink as
1/sqrt(N), figures checked by hand on a tiny line network, deterministic replays, the CLI and the report."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from routing.cli import main
from routing.errors import InvalidInput
from routing.experiments import ci95, replicate
from routing.fleet import Team, TeamType
from routing.metrics import demand_weighted_gap, is_eligible, load_time_standards, published_metrics
from routing.policy import Policy, ServiceTime, load_policy
from routing.simulation import simulate
from routing.triage import Call, load_rules
from tests._line import latlon, line_network

#   A --- B --- C --- D     two-way, every edge 100 m at 36 km/h = 10 s (tests/_line.py)
START = datetime(2024, 3, 5, 5, 0, tzinfo=UTC)  # local midnight in Boston (EST)


@pytest.fixture(scope="module")
def line():
    return line_network()


def _rules(tmp_path, body: str):
    path = tmp_path / "rules.toml"
    path.write_text(body)
    return load_rules(path)


ONE_TIER = '[tier.only]\ntypes = ["{t}"]\n\n[[rule]]\nname = "all"\ntier = "only"\n'
# Eligible mental-health calls: community first, then police; risk calls: police; the rest: EMS.
TWO_TIERS = ('[tier.alt]\ntypes = ["community"]\nfallback = "pol"\n\n[tier.pol]\ntypes = ["police"]\n\n'
             '[tier.ems]\ntypes = ["ems"]\n\n'
             '[[rule]]\nname = "risk"\nwhen = { mental_health = true, safety_risk = true }\ntier = "pol"\n\n'
             '[[rule]]\nname = "mh"\nwhen = { mental_health = true }\ntier = "alt"\n\n'
             '[[rule]]\nname = "rest"\ntier = "ems"\n')


def _team(team_id: str, team_type: TeamType, where: str = "A") -> Team:
    lat, lon = latlon(where)
    return Team(team_id, team_type, team_id, False, where, lat, lon)


def _call(call_id: str, at_s: float, where: str, neighborhood: str = "West", **flags) -> Call:
    lat, lon = latlon(where)
    flags.setdefault("mental_health", True)
    return Call(call_id, START + timedelta(seconds=at_s), lat, lon, neighborhood=neighborhood, **flags)


# ------------------------------------------------------------------------------------------ theory


def _erlang_c(c: int, lam: float, mu: float) -> tuple[float, float]:
    """Probability of waiting and mean wait in an M/M/c queue (written out independently of the code)."""
    a = lam / mu
    top = a ** c / math.factorial(c) * c / (c - a)
    p_wait = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
    return p_wait, p_wait / (c * mu - lam)


def test_mm_c_agrees_with_erlang_c(line, tmp_path) -> None:
    # Three identical teams and every call at their staging site (no travel), exponential on-scene
    # times, Poisson arrivals, nobody abandons: an M/M/3 queue at load 0.7.
    c, mean_service, rho = 3, 20 * 60.0, 0.7
    lam = rho * c / mean_service
    rules = _rules(tmp_path, ONE_TIER.format(t="community"))
    service = ServiceTime(mean_service * math.log(2), 0.0, "exponential")
    assert service.mean_s == pytest.approx(mean_service)
    policy = Policy("mmc", [_team(f"T{k}", TeamType.community) for k in range(c)], rules,
                    service={TeamType.community: service})
    days = 6.0

    def poisson_calls(seed: int) -> list[Call]:
        rng = np.random.default_rng(seed)
        t = np.cumsum(rng.exponential(1 / lam, int(lam * days * 86400 * 1.2)))
        return [_call(f"c{k:05d}", float(x), "A") for k, x in enumerate(t[t < days * 86400])]

    res = replicate([policy], network=line, calls=poisson_calls, start=START, days=days, replications=8, seed=1,
                    max_wait_s=None, hospitals=[])
    s = res.summary("mmc")["scalars"]
    p_wait, w_mean = _erlang_c(c, lam, 1 / mean_service)
    # By hand: a = 2.1, a^3/3! * 3/0.9 = 5.145, 1 + 2.1 + 2.205 = 5.305 -> C = 0.4923; W = C / (3/1200 - lam).
    assert p_wait == pytest.approx(0.4923, abs=1e-4) and w_mean == pytest.approx(656.5, abs=0.5)
    lo, hi = s["wait_probability"]["ci95"]
    assert lo <= p_wait <= hi, (p_wait, s["wait_probability"])
    assert hi - lo < 0.12
    lo, hi = s["wait_mean_s"]["ci95"]
    assert lo <= w_mean <= hi, (w_mean, s["wait_mean_s"])
    assert hi - lo < 0.6 * w_mean  # informative, not trivially wide (waits are strongly autocorrelated)
    assert s["served_share"]["mean"] == 1.0


def test_intervals_shrink_as_one_over_sqrt_n() -> None:
    rng = np.random.default_rng(0)
    draws = rng.normal(10.0, 2.0, 400).tolist()
    widths = {n: (lambda d: d["ci95"][1] - d["ci95"][0])(ci95(draws[:n])) for n in (10, 40, 160)}
    assert widths[10] / widths[40] == pytest.approx(2.0 * 1.10, rel=0.35)  # sqrt(4) x t-quantile ratio
    assert widths[40] / widths[160] == pytest.approx(2.0, rel=0.3)
    d = ci95([1.0, None, 3.0])
    assert d["mean"] == 2.0 and d["replications"] == [1.0, None, 3.0]
    assert ci95([5.0])["ci95"] == [None, None]


def test_simulated_intervals_shrink_with_replications(line, tmp_path) -> None:
    rules = _rules(tmp_path, ONE_TIER.format(t="community"))
    policy = Policy("two", [_team("T1", TeamType.community), _team("T2", TeamType.community)], rules,
                    service={TeamType.community: ServiceTime(900.0, 0.0, "exponential")})

    def calls(seed: int) -> list[Call]:
        rng = np.random.default_rng(seed)
        t = np.sort(rng.uniform(0, 86400, 60))
        return [_call(f"c{k:04d}", float(x), "BCD"[k % 3]) for k, x in enumerate(t)]

    res = replicate([policy], network=line, calls=calls, start=START, days=1, replications=24, seed=0,
                    max_wait_s=None, hospitals=[])
    vals = res.values("two", "wait_mean_s")
    # Four blocks of 6 against all 24: 4x the replications, half the width, times the ratio of the t
    # quantiles (2.07 / 2.57); averaging the four block widths steadies the small-sample sd.
    w6 = np.mean([np.diff(ci95(vals[k:k + 6])["ci95"])[0] for k in range(0, 24, 6)])
    w24 = np.diff(ci95(vals)["ci95"])[0]
    assert w24 / w6 == pytest.approx(0.5 * 2.069 / 2.571, rel=0.35)


# ------------------------------------------------------------------------------------------ by hand


def test_published_metrics_by_hand(line, tmp_path) -> None:
    rules = _rules(tmp_path, TWO_TIERS)
    policy = Policy("hand", [_team("COM", TeamType.community), _team("POL", TeamType.police),
                             _team("EMS", TeamType.ems)], rules,
                    service={TeamType.community: ServiceTime(1800.0), TeamType.police: ServiceTime(1200.0),
                             TeamType.ems: ServiceTime(600.0)})
    hour = 3600.0
    calls = [
        # 01:00 West: eligible, community free, at B: reached in 10 s.
        _call("e1", 1 * hour, "B"),
        # 01:10 West: eligible, community busy until 01:30 -> police (free) at C: fell back, 20 s.
        _call("e2", 1 * hour + 600, "C"),
        # 01:12 East: mental health with risk: police busy (e2 until 01:30:20) -> waits, dispatched
        # 01:30:20 when police clear e2 at C; drive C -> D 10 s: response 18 min 30 s.
        _call("r1", 1 * hour + 720, "D", neighborhood="East", safety_risk=True),
        # 05:00 East: medical (EMS), needs transport to H at D: 30 s there, on scene 10 min.
        _call("m1", 5 * hour, "D", neighborhood="East", mental_health=False, needs_transport=True, priority=1),
        # 05:01 East: eligible, community free at 05:01? yes (free since ~01:30) -> reached, 30 s.
        _call("e3", 5 * hour + 60, "D", neighborhood="East"),
    ]
    res = simulate(policy, calls, network=line, start=START, days=1, seed=0, hospitals=[("H", *latlon("D"))],
                   max_wait_s=None)
    out = {o.call_id: o for o in res.outcomes}
    assert out["e2"].team_type == "police" and out["r1"].queued
    assert out["r1"].response_s == pytest.approx(1800 + 20 - 720 + 10, abs=0.2)
    standards = load_time_standards()
    m = published_metrics(res, standards=standards)
    s = m.scalars
    assert s["calls"] == 5 and s["eligible_calls"] == 3
    assert s["eligible_reach"] == pytest.approx(2 / 3)
    assert s["eligible_fell_back_share"] == pytest.approx(1 / 3) and s["eligible_unserved_share"] == 0
    assert s["police_backup_rate"] == pytest.approx(2 / 4)  # e2 and r1 of the 4 mental-health calls
    assert s["transport_rate"] == pytest.approx(1 / 5)
    # Late: r1 (18.5 min > 10 min standard); everything else arrives within a minute (EMS standard 6 min).
    assert s["late_share"] == pytest.approx(1 / 5)
    assert s["late_share[mental health with risk]"] == 1.0 and s["late_share[medical]"] == 0.0
    assert s["wait_probability"] == pytest.approx(1 / 5)
    # Backlog: one call waiting from 01:12:00 to 01:30:20 (1100 s), all of it in the second hour.
    assert s["backlog_max"] == 1
    assert m.series["backlog_hourly"][1] == pytest.approx(1100 / 3600, abs=1e-3)
    assert s["backlog_mean"] == pytest.approx(1100 / 86400, abs=1e-6)
    assert m.by_hour["backlog_mean"][1] == pytest.approx(1100 / 3600, abs=1e-3)
    # Hour of day (local midnight start): e1, e2 at 01h, e3 at 05h; e2 fell back.
    assert m.by_hour["eligible_calls_per_day"][1] == 2 and m.by_hour["eligible_calls_per_day"][5] == 1
    assert m.by_hour["eligible_fell_back_per_day"][1] == 1
    assert m.by_hour["eligible_not_reached_share"][1] == 0.5 and m.by_hour["eligible_not_reached_share"][5] == 0
    assert m.by_hour["eligible_not_reached_share"][0] is None
    assert m.by_neighborhood["West"]["eligible_not_reached_share"] == 0.5
    assert m.by_neighborhood["East"]["eligible_fell_back"] == 0
    # Medians: West {10, 20} -> 15 s; East {1110, 30, 30} -> 30 s. With 2 and 3 calls a 20 % quintile
    # is 1 call from each end: the gap is 30 - 15 s.
    assert m.by_neighborhood["West"]["response_median_s"] == pytest.approx(15, abs=0.2)
    assert m.by_neighborhood["East"]["response_median_s"] == pytest.approx(30, abs=0.2)
    assert s["response_gap_s"] == pytest.approx(15, abs=0.3)
    assert sum(m.series["response_hist_min"]) == 5


def test_demand_weighted_gap() -> None:
    medians = {"a": 300.0, "b": 600.0, "c": 900.0, "tiny": 3000.0}
    demand = {"a": 50, "b": 30, "c": 19, "tiny": 1}
    # 20 % of 100 calls at each end: best = 20 calls of a (300 s); worst = tiny (1 call, 3000 s) and 19
    # of c (900 s) -> 1005 s.
    assert demand_weighted_gap(medians, demand) == pytest.approx((3000 + 19 * 900) / 20 - 300)
    assert demand_weighted_gap({}, {}) is None
    assert is_eligible("MH") and is_eligible("MH+transport")
    assert not is_eligible("MH+risk") and not is_eligible("MH+weapon+transport") and not is_eligible("non-MH")


def test_common_random_numbers_and_paired_differences(line, tmp_path) -> None:
    rules = _rules(tmp_path, ONE_TIER.format(t="community"))
    service = {TeamType.community: ServiceTime(1500.0, 0.5)}
    one = Policy("one", [_team("T1", TeamType.community)], rules, service=service)
    two = Policy("two", [_team("T1", TeamType.community), _team("T2", TeamType.community, "D")], rules,
                 service=service)

    def calls(seed: int) -> list[Call]:
        rng = np.random.default_rng(seed)
        t = np.sort(rng.uniform(0, 86400, 40))
        return [_call(f"c{k:03d}", float(x), "ABCD"[rng.integers(4)]) for k, x in enumerate(t)]

    res = replicate([one, two], network=line, calls=calls, start=START, days=1, replications=6, seed=3,
                    max_wait_s=1800, hospitals=[])
    d = res.to_dict()
    assert d["seeds"] == [3, 4, 5, 6, 7, 8]
    diff = d["differences"]["two - one"]["wait_mean_s"]
    a, b = res.values("one", "wait_mean_s"), res.values("two", "wait_mean_s")
    assert diff["replications"] == pytest.approx([y - x for x, y in zip(a, b, strict=True)])
    assert diff["ci95"][1] < 0  # a second team cuts waiting, beyond doubt
    assert set(d["policies"]["one"]["scalars"]["eligible_reach"]) == {"mean", "ci95", "replications"}
    assert "wall_s" in d["run"] and "wall_s" not in json.dumps(d["policies"])
    # Replication r is the single run with seed + r: same calls, same service-time draws.
    single = simulate(two, calls(5), network=line, start=START, days=1, seed=5, max_wait_s=1800, hospitals=[])
    assert published_metrics(single).scalars == res.runs["two"][2]["metrics"]["scalars"]
    with pytest.raises(InvalidInput, match="differ"):
        replicate([one, one], network=line, calls=calls, start=START, days=1)


def test_replayed_call_file_is_deterministic(line, tmp_path) -> None:
    path = tmp_path / "calls.jsonl"
    rng = np.random.default_rng(9)
    rows = []
    for k, t in enumerate(np.sort(rng.uniform(0, 86400, 30))):
        lat, lon = latlon("ABCD"[k % 4])
        rows.append(json.dumps({"call_id": f"x{k}", "received": (START + timedelta(seconds=float(t))).isoformat(),
                                "lat": lat, "lon": lon, "mental_health": True, "neighborhood": "West"}))
    path.write_text("\n".join(rows) + "\n")
    from routing.arrivals import read_calls_file

    rules = _rules(tmp_path, ONE_TIER.format(t="community"))
    policy = Policy("p", [_team("T1", TeamType.community)], rules, service={TeamType.community: ServiceTime(2400, .4)})
    runs = [replicate([policy], network=line, calls=read_calls_file(path).calls, start=START, days=1,
                      replications=3, seed=0, hospitals=[]).to_dict() for _ in range(2)]
    for r in runs:
        r.pop("run")
    assert json.dumps(runs[0], sort_keys=True) == json.dumps(runs[1], sort_keys=True)
    assert runs[0]["policies"]["p"]["scalars"]["calls"]["replications"] == [30.0, 30.0, 30.0]


def test_exponential_service_in_a_policy_file(tmp_path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('[service.community]\ndistribution = "exponential"\nmean_min = 30\n')
    pol = load_policy(p)
    st = pol.service_for(TeamType.community)
    assert st.distribution == "exponential" and st.mean_s == pytest.approx(1800)
    # z = 0 is the median; the quantile transform keeps the common random number's rank.
    assert st.quantile(0.0) == pytest.approx(1800 * math.log(2))
    assert st.quantile(1.0) > st.quantile(0.0) > st.quantile(-1.0) > 0
    p.write_text('[service.community]\ndistribution = "gamma"\n')
    with pytest.raises(InvalidInput, match="distribution"):
        load_policy(p)


# ------------------------------------------------------------------------------------------ CLI


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_replications_compare_and_report(data_dir, tmp_path) -> None:
    report = tmp_path / "report.html"
    code, out, err = _cli("simulate", "--days", "0.25", "--replications", "3", "--seed", "2", "--compare", "default",
                          "community_expanded", "--json", "--report", str(report))
    assert code == 0, err
    d = json.loads(out)
    assert d["replications"] == 3 and d["seeds"] == [2, 3, 4]
    m = d["policies"]["default"]["scalars"]["eligible_reach"]
    assert len(m["replications"]) == 3 and len(m["ci95"]) == 2
    assert "community_expanded - default" in d["differences"] and "run" in d
    html = report.read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    pngs = sorted(p.name for p in tmp_path.glob("report-*.png"))
    assert len(pngs) >= 3
    code, out, err = _cli("simulate", "--days", "0.25", "--replications", "2")
    assert code == 0, err
    assert "95 % CI" in out and "eligible-call reach" in out


def test_intervals_stay_within_what_a_figure_can_take() -> None:
    from routing.experiments import ci95
    from routing.metrics import feasible_range

    near_one = [1.0, 1.0, 0.5]  # a share: a Student t interval over 3 values reaches past 100 %
    raw = ci95(near_one)
    assert raw["ci95"][1] > 1.0 and raw["ci95"][0] < 0.5
    clipped = ci95(near_one, feasible_range("eligible_reach"))
    assert clipped["ci95"][1] == 1.0 and clipped["ci95"][0] == pytest.approx(raw["ci95"][0])
    assert clipped["mean"] == raw["mean"]
    assert feasible_range("late_share[medical]") == (0.0, 1.0)
    assert ci95([0.0, 0.0, 3.0], feasible_range("backlog_max"))["ci95"][0] == 0.0
    assert feasible_range("response_median_s") == (0.0, None)
