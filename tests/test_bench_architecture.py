"""The architecture bench's acceptance rule: scenario-level lower bounds on rare scenes and pedestrians, the
route-level normal-road upper bound; every seed's scenes pooled."""

import pytest

from training.bench.architecture import MARGIN, _pooled, accepted, parse_arch, scene_diffs
from training.study_stats import scenario_table


def _scenes(verdicts: list[tuple[str, bool]]) -> dict:
    return {k: v.tolist() for k, v in scenario_table([{"category": c, "passed": p} for c, p in verdicts]).items()}


def _block(per_model: dict[str, list[tuple[str, bool]]]) -> dict:
    return {"scenarios": {"models": {name: {"per_scene": _scenes(v)} for name, v in per_model.items()}}}


SAFE_ROUTES = {"normal_infractions_per_km": {"diff": 0.0, "ci95": [-0.02, 0.03]}}


def test_every_seeds_scenes_are_pooled_in_order():
    blocks = [_block({"ref": [("pedestrian", True), ("obstacle", False)]}), _block({"ref": [("sharp_bend", True)]})]
    t = _pooled(blocks, "ref", "per_scene")
    assert t["rare_n"].tolist() == [1, 1, 1] and t["rare_passed"].tolist() == [1, 0, 1]
    assert t["pedestrian_n"].tolist() == [1, 0, 0] and t["sharp_bend_passed"].tolist() == [0, 0, 1]


def test_an_equal_candidate_is_accepted_and_one_that_fails_pedestrians_is_not():
    scenes = [("pedestrian", True)] * 30 + [("obstacle", True)] * 30 + [("sharp_bend", False)] * 30
    ref = _pooled([_block({"ref": scenes})], "ref", "per_scene")
    same = scene_diffs(ref, ref)
    assert same["pass_rate_rare"]["ci95"] == [0.0, 0.0] and accepted(same, SAFE_ROUTES)
    # the candidate loses 6 of 30 pedestrians: over all rare scenes only -0.067, but the pedestrians' bound is far below
    worse = [("pedestrian", k >= 6) for k in range(30)] + scenes[30:]
    diffs = scene_diffs(ref, _pooled([_block({"c": worse})], "c", "per_scene"))
    assert abs(diffs["pass_rate_pedestrian"]["diff"] + 0.2) < 1e-12 and diffs["pass_rate_pedestrian"]["ci95"][0] < -MARGIN
    assert not accepted(diffs, SAFE_ROUTES)


def test_normal_road_infractions_and_missing_intervals_refuse():
    scenes = [("pedestrian", True), ("obstacle", True)] * 20
    ref = _pooled([_block({"ref": scenes})], "ref", "per_scene")
    same = scene_diffs(ref, ref)
    assert not accepted(same, {"normal_infractions_per_km": {"diff": 0.1, "ci95": [0.01, 0.2]}})
    assert not accepted(same, {"normal_infractions_per_km": {"diff": None, "ci95": None}})
    no_pedestrians = _pooled([_block({"ref": [("obstacle", True)] * 20})], "ref", "per_scene")
    assert not accepted(scene_diffs(no_pedestrians, no_pedestrians), SAFE_ROUTES)


def test_an_architecture_names_width_activation_and_training_precision_and_a_typo_fails():
    assert parse_arch("0.75") == (0.75, "elu", "fp32")
    assert parse_arch("0.5:relu") == (0.5, "relu", "fp32")
    assert parse_arch("1.0:elu:bf16") == (1.0, "elu", "bf16")
    for bad in ("1.0:elu:bf61", "1.0:elu:bf16:x"):
        with pytest.raises(ValueError, match="architecture"):
            parse_arch(bad)
