"""Issue 18's and issue 19's targets on pooled statistics (training/study_targets.py): each target met on synthetic
seeds built to meet it, and each one missed when only the thing it guards is changed."""

import numpy as np

from training import study_targets
from training.study import label_scarce, pairs
from training.study_card import section
from training.study_stats import gap_ratio, pool

SEEDS = (1, 2, 3, 4)


def _levels(scenes: dict[str, list[int]], per_km: dict[str, float], seed_scenes: dict[int, dict] | None = None,
            clear_per_km: dict[str, float] | None = None, seeds: tuple[int, ...] = SEEDS) -> dict:
    """4 seeds x 20 scenes and 48 routes: a configuration passes ``scenes[c][s]`` of seed s's scenes (the first ones), and has
    ``per_km[c]`` normal-road infractions per km on every route (with a seed-to-seed wobble of 0.02), on the
    routes without rare scenes ``clear_per_km[c]`` (the same unless given)."""
    def route(rate: float, s: int) -> dict:
        return {"rare_n": np.zeros(48), "rare_passed": np.zeros(48), "normal_km": np.ones(48),
                "normal_infractions": np.full(48, rate + 0.02 * s), "route_completion": np.ones(48)}

    names = list(scenes)
    return {"scenario": pool(_scenario_tables(scenes, seed_scenes, seeds), pairs(names), "scenario", samples=400),
            **{level: pool({s: {c: route(km[c], s) for c in names} for s in seeds}, pairs(names), "route", samples=400)
               for level, km in (("route", per_km), ("clear_route", clear_per_km or per_km))}}


def _scenario_tables(scenes: dict[str, list[int]], seed_scenes: dict[int, dict] | None = None, seeds: tuple[int, ...] = SEEDS) -> dict:
    def scenario(c: str, s: int) -> dict:
        passed = np.zeros(20)
        passed[:(seed_scenes or {}).get(s, {}).get(c, scenes[c][s - 1])] = 1
        return {"rare_n": np.ones(20), "rare_passed": passed}

    return {s: {c: scenario(c, s) for c in scenes} for s in seeds}


SCENES = {"mse": [10, 11, 10, 9], "oversample": [17, 18, 17, 18], "oversample-0.5": [18, 17, 18, 17], "learned": [19, 18, 19, 19]}
PER_KM = {"mse": 0.3, "oversample": 0.5, "oversample-0.5": 0.8, "learned": 0.1}


def _met(levels: dict) -> dict[str, bool]:
    return {t.name: t.met for t in study_targets.judge(levels)}


def test_every_target_is_met_where_learned_dominates():
    assert _met(_levels(SCENES, PER_KM)) == dict.fromkeys(
        ("frontier", "pareto_tuned", "failure_halved", "every_seed", "protocol"), True)


def test_the_edges_of_each_target():
    # a share better on the road but worse on rare scenes does not beat learned; the tuned share is a share too
    assert _met(_levels(SCENES, {**PER_KM, "oversample-0.5": 0.0}))["frontier"]
    assert not _met(_levels({**SCENES, "oversample": [20, 20, 20, 20]}, {**PER_KM, "oversample": 0.0}))["frontier"]
    # the Pareto gain needs both normal-road measures: worse on the routes without rare scenes only is enough to miss it
    assert not _met(_levels(SCENES, PER_KM, clear_per_km={**PER_KM, "learned": 0.7}))["pareto_tuned"]
    # failure at exactly half of MSE's meets the guard, a little above does not; a tie on a seed is not a loss
    assert _met(_levels({**SCENES, "mse": [10] * 4, "learned": [15] * 4}, PER_KM))["failure_halved"]
    assert not _met(_levels({**SCENES, "mse": [10] * 4, "learned": [14] * 4}, PER_KM))["failure_halved"]
    assert _met(_levels({**SCENES, "mse": [20] * 4, "learned": [20] * 4}, PER_KM))["failure_halved"]  # both perfect
    assert _met(_levels(SCENES, PER_KM, seed_scenes={3: {"learned": 10}}))["every_seed"]
    # fewer than 4 evaluation seeds: the study is too small for the targets as stated
    assert not _met(_levels(SCENES, PER_KM, seeds=(1, 2, 3)))["protocol"]


def test_each_target_misses_when_its_own_condition_breaks():
    # a share better on both axes on every seed: the frontier breaks (and with it nothing else about the tuned share)
    met = _met(_levels({**SCENES, "oversample-0.5": [20, 20, 20, 20]}, {**PER_KM, "oversample-0.5": 0.0}))
    assert not met["frontier"] and met["pareto_tuned"]
    # ... also when it is better on the routes without rare scenes only: the normal road is judged on both measures
    met = _met(_levels({**SCENES, "oversample-0.5": [20, 20, 20, 20]}, PER_KM, clear_per_km={**PER_KM, "oversample-0.5": 0.0}))
    assert not met["frontier"]
    # learned a little behind the tuned share on rare scenes (lower bound below -0.02), still better on the road
    met = _met(_levels({**SCENES, "learned": [16, 17, 16, 17]}, PER_KM))
    assert not met["pareto_tuned"] and met["frontier"] and met["every_seed"]
    # learned worse than the tuned share on the normal road: the Pareto gain is gone, the frontier holds
    met = _met(_levels(SCENES, {**PER_KM, "learned": 0.7}))
    assert not met["pareto_tuned"] and met["failure_halved"]
    # learned fails 40 % of what mse fails 50 %: above half
    met = _met(_levels({**SCENES, "learned": [12, 12, 12, 12]}, PER_KM))
    assert not met["failure_halved"] and met["every_seed"]
    # one seed where learned passes one scene fewer than mse
    met = _met(_levels(SCENES, PER_KM, seed_scenes={3: {"learned": 9}}))
    assert not met["every_seed"] and met["frontier"]


def test_targets_apply_only_to_a_full_label_study():
    levels = _levels(SCENES, PER_KM)
    assert study_targets.applies(levels)
    levels["scenario"].configs.pop("oversample")
    assert not study_targets.applies(levels)


SCARCE = {"mse": [10, 11, 10, 9], "oversample": [17, 18, 17, 18], "learned": [16, 17, 16, 17], "steer-bins": [11, 12, 11, 10]}
SCARCE_KM = {"mse": 0.3, "oversample": 0.5, "learned": 0.2, "steer-bins": 0.3}


def _met_scarce(scenes: dict, per_km: dict, clear_per_km: dict | None = None) -> dict[str, bool]:
    ratio = gap_ratio(_scenario_tables(scenes), "learned", "mse", "oversample", "scenario", samples=400)
    return {t.name: t.met for t in study_targets.judge_scarce(_levels(scenes, per_km, clear_per_km=clear_per_km), ratio, "steer-bins")}


def test_a_label_scarce_study_is_judged_on_issue_19s_targets_not_issue_18s():
    """By the study's label mode, through what study.run_study calls: the report's label-scarce block, the targets,
    their table and the learned model's card; a full-label study given a baseline's name as a further loss is not one."""
    report = {"choice": {"best": {"steer-bins": "steer-bins-1", "keyframe": "keyframe-2"},
                         "finalists": {"steer-bins-1": {"pooled": 0.7}, "keyframe-2": {"pooled": 0.6}}}}
    tables = {"scenario": _scenario_tables(SCARCE)}
    assert label_scarce(report, tables, "full") is None
    levels = _levels(SCARCE, SCARCE_KM)
    scarce = study_targets.for_study(levels, label_scarce(report, tables, "meta-only"))
    assert [t.name for t in scarce] == ["gap_closed", "beats_best_baseline", "normal_road", "protocol"]
    assert "learned - steer-bins" in scarce[1].asks and all(t.met for t in scarce)
    assert study_targets.markdown(scarce, list(SEEDS)).startswith("## Issue 19's targets (label-scarce) (4 evaluation seeds")
    assert "Issue 19's targets (label-scarce) (`s/study.md` has the table): gap_closed met" in section("learned", levels, "s/study.md", scarce)
    assert [t.name for t in study_targets.for_study(_levels(SCENES, PER_KM), None)][0] == "frontier"
    # no baseline search had a finalist: the target is not met, and the rest is still judged
    none = study_targets.for_study(levels, label_scarce({"choice": {"best": {}, "finalists": {}}}, tables, "meta-only"))
    assert [t.met for t in none] == [True, False, True, True] and none[1].measured == "no baseline search had a finalist"


def test_label_scarce_targets_each_miss_when_their_own_condition_breaks():
    assert _met_scarce(SCARCE, SCARCE_KM) == dict.fromkeys(("gap_closed", "beats_best_baseline", "normal_road", "protocol"), True)
    # learned closes 5.5 of oversampling's 7.5 scenes a seed over mse (0.73 < 0.75); still beats the baseline
    met = _met_scarce({**SCARCE, "learned": [15, 16, 15, 16]}, SCARCE_KM)
    assert not met["gap_closed"] and met["beats_best_baseline"]
    # no supported gain of oversampling over mse: the ratio is undefined, so not met, though learned is far above mse
    met = _met_scarce({**SCARCE, "oversample": [10, 11, 10, 9]}, SCARCE_KM)
    assert not met["gap_closed"] and met["beats_best_baseline"]
    # the best baseline as good as learned on 2 of 4 seeds: the lower bound is no longer above 0
    met = _met_scarce({**SCARCE, "steer-bins": [16, 17, 11, 10]}, SCARCE_KM)
    assert not met["beats_best_baseline"] and met["gap_closed"]
    # more normal-road infractions than mse on the routes without rare scenes only, then on the routes with them only
    met = _met_scarce(SCARCE, SCARCE_KM, clear_per_km={**SCARCE_KM, "learned": 0.35})
    assert not met["normal_road"] and met["gap_closed"] and met["beats_best_baseline"]
    assert not _met_scarce(SCARCE, {**SCARCE_KM, "learned": 0.35}, clear_per_km=SCARCE_KM)["normal_road"]
