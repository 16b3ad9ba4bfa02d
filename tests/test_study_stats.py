"""The study's pooled statistics (training/study_stats.py): worked out by hand on tiny tables, the two-level
bootstrap against a brute-force enumeration of its resamples, and coverage on synthetic data with known truth."""

import itertools
import json
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from training.study_stats import (beaten_on_both_axes, markdown, plot_study, pool, scenario_table, scenes_needed,
                                  to_json)

CATS = ["pedestrian", "pedestrian", "obstacle", "sharp_bend"]


def _scenes(passed: list[int], cats: list[str] = CATS) -> dict:
    return scenario_table([{"category": c, "passed": bool(p)} for c, p in zip(cats, passed)])


def _tiny() -> dict:
    """3 seeds x 4 scenes. Rare pass rates, mse: 0.5 0.5 0.5; learned: 0.75 0.5 1.0 (differences 0.25 0 0.5)."""
    return {1: {"mse": _scenes([1, 0, 0, 1]), "learned": _scenes([1, 1, 0, 1])},
            2: {"mse": _scenes([1, 1, 0, 0]), "learned": _scenes([1, 1, 0, 0])},
            3: {"mse": _scenes([0, 0, 1, 1]), "learned": _scenes([1, 1, 1, 1])}}


def test_pooled_rates_per_seed_values_and_t_interval_by_hand():
    lv = pool(_tiny(), [("learned", "mse")], "scenario", samples=500)
    assert set(lv.configs["mse"]) == {f"pass_rate_{g}" for g in ("pedestrian", "obstacle", "sharp_bend", "rare")}
    mse, learned = lv.configs["mse"]["pass_rate_rare"], lv.configs["learned"]["pass_rate_rare"]
    assert mse.per_seed == [0.5, 0.5, 0.5] and mse.value == 0.5 and mse.seed_sd == 0.0
    assert mse.t_ci95 == [0.5, 0.5]
    assert learned.value == pytest.approx(0.75) and learned.totals == [9.0, 12.0] and mse.totals == [6.0, 12.0]
    d = lv.difference("learned", "mse", "pass_rate_rare").estimate
    assert d.per_seed == [0.25, 0.0, 0.5] and d.value == pytest.approx(0.25) and d.seed_sd == pytest.approx(0.25)
    half = 4.302653 * 0.25 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(K) = 0.621033
    assert d.t_ci95 == pytest.approx([0.25 - half, 0.25 + half], rel=1e-6)
    assert not lv.difference("learned", "mse", "pass_rate_rare").supported
    ped = lv.difference("learned", "mse", "pass_rate_pedestrian").estimate  # mse 0.5 1 0, learned 1 1 1
    assert ped.per_seed == [0.5, 0.0, 1.0] and ped.value == pytest.approx(0.5)


def test_a_seed_without_a_category_is_left_out_of_that_category_only():
    t = _tiny()
    cats = ["pedestrian", "pedestrian", "sharp_bend", "sharp_bend"]  # seed 3 meets no obstacle
    t[3] = {"mse": _scenes([0, 0, 1, 1], cats), "learned": _scenes([1, 1, 1, 1], cats)}
    lv = pool(t, [("learned", "mse")], "scenario", samples=500)
    assert lv.configs["mse"]["pass_rate_obstacle"].per_seed == [0.0, 0.0, None]
    assert lv.difference("learned", "mse", "pass_rate_obstacle").estimate.value == 0.0
    assert lv.difference("learned", "mse", "pass_rate_rare").estimate.value == pytest.approx(0.25)


def _route_tables(shift: float, n_routes: int = 7) -> dict:
    """Two configurations on the same routes; ``better`` completes ``shift`` more of every route."""
    rc = np.linspace(0.2, 0.8, n_routes)
    return {"base": {"rare_n": np.ones(n_routes), "rare_passed": np.zeros(n_routes), "route_completion": rc},
            "better": {"rare_n": np.ones(n_routes), "rare_passed": np.ones(n_routes), "route_completion": rc + shift}}


def test_two_level_bootstrap_of_a_degenerate_table_is_exact():
    # within a seed every route has the same difference, so a resample is the mean of the K drawn seeds' shifts:
    # all three drawing 0.1 (or 0.3) has probability 1/27 > 2.5 %, so the interval is exactly [0.1, 0.3]
    lv = pool({s: _route_tables(0.1 * s) for s in (1, 2, 3)}, [("better", "base")], "route", rng_seed=7)
    rc = lv.difference("better", "base", "route_completion")
    assert rc.estimate.value == pytest.approx(0.2)
    assert rc.estimate.bootstrap_ci95 == pytest.approx([0.1, 0.3], abs=1e-12)
    rare = lv.difference("better", "base", "pass_rate_rare")  # passes every scene the other fails, on every seed
    assert rare.estimate.bootstrap_ci95 == [1.0, 1.0] and rare.estimate.t_ci95 == [1.0, 1.0] and rare.supported


def test_beaten_on_both_axes_needs_a_supported_gain_on_each():
    def level(other_per_km: list[float]) -> object:
        # 'other' passes every scene 'cfg' fails; cfg has 1 infraction per km on every route of every seed
        tables = {s: {"cfg": {"rare_n": np.ones(6), "rare_passed": np.zeros(6), "normal_infractions": np.ones(6),
                              "normal_km": np.ones(6)},
                      "other": {"rare_n": np.ones(6), "rare_passed": np.ones(6),
                                "normal_infractions": np.full(6, per_km), "normal_km": np.ones(6)}}
                  for s, per_km in enumerate(other_per_km)}
        return pool(tables, [("cfg", "other")], "route", samples=300)

    assert beaten_on_both_axes(level([0.0] * 3), level([0.0] * 3), "cfg", "other")
    assert not beaten_on_both_axes(level([2.0] * 3), level([2.0] * 3), "cfg", "other")  # cfg: better normal road
    mixed = level([0.5, 1.5, 0.8])  # other: better on average (+0.07 per km), not on every seed: not supported
    assert mixed.difference("cfg", "other", "normal_infractions_per_km").estimate.value > 0
    assert not beaten_on_both_axes(mixed, mixed, "cfg", "other")


def _exact_bootstrap_quantiles(seeds: list[tuple[list[int], list[int]]]) -> tuple[float, float]:
    """The two-level bootstrap of the rare pass-rate difference, enumerated: every seed draw, then every
    ordered draw of each drawn seed's scenes, each with its probability; its 2.5 % and 97.5 % quantiles."""
    slot = Counter()  # one slot: a seed, then its scenes
    for ref, cfg in seeds:
        n = len(ref)
        for idx in itertools.product(range(n), repeat=n):
            diff = Fraction(sum(cfg[i] for i in idx) - sum(ref[i] for i in idx), n)
            slot[diff] += Fraction(1, len(seeds) * n ** n)
    dist = Counter()
    for draw in itertools.product(slot.items(), repeat=len(seeds)):
        dist[sum(v for v, _ in draw) / len(seeds)] += np.prod([p for _, p in draw])
    cdf, lo, hi = Fraction(0), None, None
    for v in sorted(dist):
        cdf += dist[v]
        lo = v if lo is None and cdf >= Fraction(1, 40) else lo
        hi = v if hi is None and cdf >= Fraction(39, 40) else hi
    return float(lo), float(hi)


def test_two_level_bootstrap_matches_a_brute_force_enumeration():
    seeds = [([1, 0], [1, 1]), ([1, 1, 0], [0, 1, 1])]  # (mse, learned) per scene: 2 seeds, 2 and 3 scenes
    lo, hi = _exact_bootstrap_quantiles(seeds)
    # resampling seeds only gives [0, 0.5], scenes only [-1/3, 5/6], reusing a seed's draw [-2/3, 1]
    assert (lo, hi) == pytest.approx((-0.5, 5 / 6))
    tables = {s: {"mse": _scenes(ref, CATS[:len(ref)]), "learned": _scenes(cfg, CATS[:len(cfg)])}
              for s, (ref, cfg) in enumerate(seeds)}
    lv = pool(tables, [("learned", "mse")], "scenario", rng_seed=3, samples=40000)
    ci = lv.difference("learned", "mse", "pass_rate_rare").estimate.bootstrap_ci95
    assert ci == pytest.approx([lo, hi], abs=1e-12)


def test_the_same_rng_seed_gives_the_same_numbers_and_json_round_trips():
    a = pool(_tiny(), [("learned", "mse")], "scenario", rng_seed=5, samples=300)
    b = pool(_tiny(), [("learned", "mse")], "scenario", rng_seed=5, samples=300)
    c = pool(_tiny(), [("learned", "mse")], "scenario", rng_seed=6, samples=300)
    assert to_json({"scenario": a}) == to_json({"scenario": b}) != to_json({"scenario": c})
    held = json.loads(to_json({"scenario": a}))["scenario"]
    rare = next(d for d in held["differences"] if d["stat"] == "pass_rate_rare")
    assert held["seeds"] == [1, 2, 3] and rare["estimate"]["per_seed"] == [0.25, 0.0, 0.5]


def test_pooling_refuses_tables_that_cannot_be_paired():
    t = _tiny()
    with pytest.raises(ValueError, match="same scenes in the same order"):
        pool(t | {3: {"mse": _scenes([0, 0, 1, 1], CATS[::-1]), "learned": _scenes([1, 1, 1, 1])}},
             [("learned", "mse")], "scenario")
    with pytest.raises(ValueError, match="seed 2 has configurations"):
        pool(t | {2: {"mse": t[2]["mse"]}}, [("learned", "mse")], "scenario")
    with pytest.raises(ValueError, match="unknown configurations"):
        pool(t, [("learned", "oversample")], "scenario")
    with pytest.raises(ValueError, match="unit counts"):
        pool({1: _route_tables(0.1) | {"base": _route_tables(0.1, 5)["base"]}}, [], "route")
    with pytest.raises(ValueError, match="unknown scene categories"):
        scenario_table([{"category": "normal", "passed": True}])


def _synthetic_seed(rng, n: int, p_ref: float, d: float, tau: float) -> dict:
    """One seed's paired scenes with known truth: the reference passes with p_ref + a seed effect, the
    configuration with that + d + its own seed effect (both N(0, tau)); 70 % of scenes share one uniform draw
    (the two fail together), the rest are drawn apart. The mean over seeds of the expected difference is d."""
    p_a = p_ref + rng.normal(0, tau)
    p_b = p_a + d + rng.normal(0, tau)
    u, v, shared = rng.random(n), rng.random(n), rng.random(n) < 0.7
    return {"ref": {"rare_n": np.ones(n), "rare_passed": (u < p_a).astype(float)},
            "cfg": {"rare_n": np.ones(n), "rare_passed": (np.where(shared, u, v) < p_b).astype(float)}}


@pytest.fixture(scope="module")
def coverage() -> dict:
    """300 synthetic studies (5 seeds x 120 scenes, truth d = 0.04; seed-to-seed spread of the difference 0.03,
    scene noise in one seed's difference about 0.03): how often each interval holds the truth."""
    d, reps = 0.04, 300
    rng = np.random.default_rng(2024)
    held = Counter()
    for r in range(reps):
        tables = {s: _synthetic_seed(rng, 120, 0.8, d, 0.03) for s in range(5)}
        diff = pool(tables, [("cfg", "ref")], "scenario", rng_seed=r, samples=1000).differences[0]
        boot, t = diff.estimate.bootstrap_ci95, diff.estimate.t_ci95
        held["bootstrap"] += boot[0] <= d <= boot[1]
        held["t"] += t[0] <= d <= t[1]
    return {k: v / reps for k, v in held.items()}


def test_the_two_level_bootstrap_covers_the_truth_at_nominal_95(coverage):
    assert coverage["bootstrap"] >= 0.90


def test_the_t_interval_over_seeds_covers_the_truth_at_nominal_95(coverage):
    assert coverage["t"] >= 0.90


def test_scenes_needed_by_hand_and_by_simulation():
    # psi = 0.06, d = 0.03: (1.959964 * sqrt(0.06) + 0.841621 * sqrt(0.0591))^2 / 0.0009 = 520.1 -> 521
    assert scenes_needed(0.03, discordance=0.06) == 521
    # independent outcomes at 0.9 and 0.93: psi = 0.9 * 0.07 + 0.93 * 0.1 = 0.156 -> 1359
    assert scenes_needed(0.03, p=0.9) == 1359
    n = scenes_needed(0.05, discordance=0.1)
    rng = np.random.default_rng(0)
    # paired outcomes: config-only passes with (psi + d) / 2, reference-only with (psi - d) / 2
    b, c, _ = rng.multinomial(n, [0.075, 0.025, 0.9], size=4000).T
    z = (b - c) / np.sqrt(np.maximum(b + c, 1))
    assert np.mean(np.abs(z) > 1.959964) == pytest.approx(0.8, abs=0.03)  # McNemar's test: the asked-for power
    with pytest.raises(ValueError, match="discordance"):
        scenes_needed(0.1, discordance=0.05)


def test_markdown_and_plot(tmp_path):
    configs = ("mse", "learned", "over_0.1", "over_0.5")  # k normal-road infractions per km, k = 0 1 2 3
    normal = [{"normal_infractions": np.full(7, float(k)), "normal_km": np.ones(7)} for k in range(len(configs))]
    route = {s: {c: _route_tables(0.05 * s)["better" if c == "learned" else "base"] | road
                 for c, road in zip(configs, normal)} for s in (1, 2, 3)}
    scen = pool({s: {c: _scenes([1, k % 2, 0, 1]) for k, c in enumerate(configs)} for s in route},
                [("learned", "mse"), ("learned", "over_0.1")], "scenario", samples=300)
    lv = pool(route, [("learned", "mse"), ("learned", "over_0.5")], "route", samples=300)
    road = lv.difference("learned", "over_0.5", "normal_infractions_per_km").estimate
    assert road.value == pytest.approx(-2.0)
    text = markdown({"scenario": scen, "route": lv})
    assert "| learned - over_0.5 | normal_infractions_per_km | -2.000 |" in text
    assert "### scenario level: 3 seeds (1, 2, 3), 4-4 scenarios per seed" in text
    out = plot_study({"scenario": scen, "route": lv}, tmp_path / "study.png",
                     frontier={"over_0.1": 0.1, "over_0.5": 0.5})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="frontier configurations"):
        plot_study({"route": lv}, tmp_path / "x.png", frontier={"over_0.25": 0.25})
