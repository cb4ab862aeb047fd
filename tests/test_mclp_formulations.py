"""MCLP and MEXCLP: every formulation (compact, Benders, auto) reaches the brute-force optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from routing import locate as lm
from routing.errors import InvalidInput
from routing.locate import coverage as cov_mod

FORMULATIONS = ("auto", "compact", "benders")


def _lattice(k: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    pts = np.array([(i, j) for i in range(k) for j in range(k)], dtype=float)
    dist = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2))
    return dist <= radius + 1e-9, np.ones(len(pts))


def _random(seed: int, n: int = 40, m: int = 9, radius: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    demand, sites = rng.random((n, 2)), rng.random((m, 2))
    dist = np.sqrt(((demand[:, None, :] - sites[None, :, :]) ** 2).sum(axis=2))
    return dist <= radius, rng.integers(0, 20, n).astype(float)  # some weights 0


def _brute(cover: np.ndarray, w: np.ndarray, p: int, q: float = 0.0, fixed_in: tuple[int, ...] = (),
           fixed_out: tuple[int, ...] = ()) -> float:
    """Best (expected) covered weight over every p-subset of the allowed columns holding fixed_in."""
    allowed = [j for j in range(cover.shape[1]) if j not in fixed_out and j not in fixed_in]
    best = -1.0
    for extra in itertools.combinations(allowed, p - len(fixed_in)):
        counts = cover[:, list(fixed_in) + list(extra)].sum(axis=1)
        best = max(best, float((w * (1 - q ** counts)).sum()))
    return best


CASES = [("lattice 4x4 r1", *_lattice(4, 1.0), 3), ("lattice 4x4 r1.5", *_lattice(4, 1.5), 2),
         ("lattice 5x5 r2", *_lattice(5, 2.0), 3), ("random 0", *_random(0), 3), ("random 1", *_random(1), 2),
         ("random 2", *_random(2, n=60, m=10, radius=0.25), 4)]


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("name, cover, w, p", CASES, ids=[c[0] for c in CASES])
def test_mclp_every_formulation_is_optimal(name: str, cover: np.ndarray, w: np.ndarray, p: int,
                                           formulation: str) -> None:
    r = lm.mclp(cover, w, p, formulation=formulation)
    assert r.optimal and r.p == p == len(r.chosen)
    assert r.objective == pytest.approx(_brute(cover, w, p), abs=1e-9)
    assert r.objective == pytest.approx(w[cover[:, r.chosen].any(axis=1)].sum())  # recomputed from chosen
    assert r.bound == pytest.approx(r.objective, rel=1e-7)
    expected = "benders" if formulation == "benders" else "compact"
    assert r.stats["formulation"] == expected and r.stats["merged_rows"] <= cover.shape[0]


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_fixed_sites_hold_in_every_formulation(formulation: str) -> None:
    cover, w = _random(5, n=50, m=10)
    r = lm.mclp(cover, w, 4, fixed_in=[1, 7], fixed_out=[0, 3], formulation=formulation)
    assert {1, 7} <= set(r.chosen) and not {0, 3} & set(r.chosen) and len(r.chosen) == 4
    assert r.objective == pytest.approx(_brute(cover, w, 4, fixed_in=(1, 7), fixed_out=(0, 3)))


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("q", [0.0, 0.3, 0.6])
def test_backup_every_formulation_is_optimal(formulation: str, q: float) -> None:
    for cover, w, p in ((*_lattice(4, 1.5), 3), (*_random(3), 3)):
        r = lm.backup_coverage(cover, w, p, busy_fraction=q, formulation=formulation)
        assert r.optimal and r.objective == pytest.approx(_brute(cover, w, p, q), abs=1e-9)
        assert r.stats["formulation"] == ("benders" if formulation == "benders" else "compact")


def test_backup_several_teams_per_site_compact_matches_benders() -> None:
    cover, w = _random(4, n=30, m=5)
    a = lm.backup_coverage(cover, w, 4, busy_fraction=0.4, max_per_site=2, formulation="compact")
    b = lm.backup_coverage(cover, w, 4, busy_fraction=0.4, max_per_site=2, formulation="benders")
    assert a.optimal and b.optimal and a.objective == pytest.approx(b.objective, rel=1e-9)
    assert sum(a.teams_per_site) == 4 and max(a.teams_per_site) <= 2


def test_auto_falls_back_to_benders_on_large_models(monkeypatch: pytest.MonkeyPatch) -> None:
    cover, w = _lattice(4, 1.5)
    monkeypatch.setattr(cov_mod, "COMPACT_MAX_NONZEROS", 10)
    r = lm.mclp(cover, w, 3)
    assert r.stats["formulation"] == "benders" and r.stats["compact_nonzeros"] > 10
    assert r.objective == pytest.approx(_brute(cover, w, 3))


def test_trivial_instances_need_no_solver() -> None:
    cover, w = _lattice(3, 1.0)
    for formulation in FORMULATIONS:
        r = lm.mclp(cover, w, 9, formulation=formulation)  # every site
        assert r.stats["formulation"] == "trivial" and r.optimal and r.objective == w.sum()


def test_unknown_formulation_is_a_clear_error() -> None:
    cover, w = _lattice(3, 1.0)
    with pytest.raises(InvalidInput, match="formulation must be one of"):
        lm.mclp(cover, w, 2, formulation="textbook")
    with pytest.raises(InvalidInput, match="formulation must be one of"):
        lm.backup_coverage(cover, w, 2, formulation="")
