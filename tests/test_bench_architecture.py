"""The architecture bench's acceptance rule: scenario-level lower bounds on rare scenes and pedestrians, the
route-level normal-road upper bound; every seed's scenes pooled."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from training.bench.architecture import (ARCH_ROUTES, MARGIN, _pooled, accepted, accepted_seed_aware, bench_architecture, parse_arch,
                                         scene_diffs, seed_aware)
from training.compare import GROUPS, _route_table
from training.evaluate import EvalConfig
from training.pipeline import PipelineConfig
from training.study_stats import scenario_table

ROOT = Path(__file__).resolve().parents[1]


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


def _route_block(infractions: list[int]) -> dict:
    km = [1.0] * len(infractions)
    return {"normal_infractions": infractions, "normal_km": km, **{f"{g}_{k}": [0.0] * len(km) for g in GROUPS for k in ("passed", "n")}}


def test_two_seeds_that_disagree_are_not_accepted_though_their_pooled_scenes_are():
    """Seed 1: the candidate passes 8 more of 200 scenes; seed 2: 8 fewer. Pooled as one sample the difference is 0
    with a narrow interval (the pre-registered rule accepts); with the seed spread counted the t-interval over two
    seeds is wide and the candidate is refused."""
    base = [("pedestrian", True)] * 100 + [("obstacle", True)] * 100
    lower = [("pedestrian", k >= 8) for k in range(100)] + base[100:]
    blocks = []
    for ref, cand in ((lower, base), (base, lower)):
        block = _block({"ref": ref, "c": cand})
        block["models"] = {name: {"per_route": _route_block([0] * 10)} for name in ("ref", "c")}
        blocks.append(block)
    pooled = scene_diffs(_pooled(blocks, "ref", "per_scene"), _pooled(blocks, "c", "per_scene"))
    assert accepted(pooled, SAFE_ROUTES)
    diffs = seed_aware(blocks, [1, 2], "ref", "c")
    assert diffs["pass_rate_rare"]["diff"] == 0.0 and diffs["pass_rate_rare"]["t_ci95"][0] < -MARGIN
    assert not accepted_seed_aware(diffs)
    same = seed_aware([blocks[0], blocks[0]], [1, 2], "ref", "ref")
    assert accepted_seed_aware(same) and not accepted_seed_aware(seed_aware(blocks[:1], [1], "ref", "ref"))  # one seed: no t


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


def _kept_seed(seed: int, episodes: int, ref_scenes: list, cand_scenes: list) -> dict:
    """A seed's record as ``--keep`` writes it, hand-made: every route alike, the scenes given."""
    cfg = PipelineConfig(seed=seed, size="quick")
    ecfg = EvalConfig(episodes=episodes, seed=ARCH_ROUTES + seed, workers=2, split="tune", max_time_s=cfg.sizes()["max_time_s"])
    routes = {k: [1.0] * episodes for k in _route_table([])}
    block = {"pass_rate": {"rare": {"rate": 1.0}}, "per_route": routes}
    return {"seed": seed, "archs": ["1.0:elu", "0.75:elu"], "size": "quick", "base_train_s": {"1.0-elu": 10.0 + seed, "0.75-elu": 5.0},
            "comparison": {"world": "embedded", "abnormal_rate": cfg.eval_abnormal_rate, "config": asdict(ecfg),
                           "models": {"1.0-elu": block, "0.75-elu": block},
                           "scenarios": {"models": {"1.0-elu": {"per_scene": _scenes(ref_scenes)},
                                                    "0.75-elu": {"per_scene": _scenes(cand_scenes)}}}}}


def test_kept_seeds_are_read_not_rerun_and_other_settings_are_refused(tmp_path):
    keep, work = tmp_path / "keep", tmp_path / "work"
    (keep / "onnx").mkdir(parents=True)
    for name in ("1.0-elu", "0.75-elu"):  # the timed files; any ONNX steering model will do for the bench's clock
        shutil.copy(ROOT / "models" / "mse.onnx", keep / "onnx" / f"{name}.onnx")
    scenes = [("pedestrian", True), ("obstacle", True), ("sharp_bend", False)] * 10
    (keep / "seed-1.json").write_text(json.dumps(_kept_seed(1, 4, scenes, scenes)))
    (keep / "seed-2.json").write_text(json.dumps(_kept_seed(2, 4, scenes, [("pedestrian", False), ("obstacle", True), ("sharp_bend", False)] * 10)))
    result = bench_architecture(work, ["1.0:elu", "0.75:elu"], [1, 2], size="quick", episodes=4, progress=False, keep=keep)
    assert not list(work.glob("seed-*"))  # nothing collected, trained or driven
    cand = result["models"]["0.75-elu"]
    assert cand["scenario_pass_rate"]["pedestrian"] == {"passed": 10, "n": 20}  # both seeds' scenes, pooled
    assert result["base_train_s_per_seed"] == {"1.0-elu": [11.0, 12.0], "0.75-elu": [5.0, 5.0]}
    assert not cand["accepted"] and result["cheapest_accepted"] == "1.0-elu"
    assert json.loads((keep / "architecture.json").read_text())["models"]["0.75-elu"]["accepted"] is False
    with pytest.raises(ValueError, match="seed-1.json: kept by a bench with other routes"):  # before seed 3 is collected
        bench_architecture(work, ["1.0:elu", "0.75:elu"], [3, 1], size="quick", episodes=5, progress=False, keep=keep)
    assert not list(work.glob("seed-*"))
    with pytest.raises(ValueError, match="a seed given twice"):
        bench_architecture(work, ["1.0:elu", "0.75:elu"], [1, 2, 1], size="quick", episodes=4, progress=False, keep=keep)
    (keep / "seed-2.json").write_text((keep / "seed-2.json").read_text()[:500])  # a copy cut short
    with pytest.raises(ValueError, match="seed-2.json: corrupt JSON"):
        bench_architecture(work, ["1.0:elu", "0.75:elu"], [1, 2], size="quick", episodes=4, progress=False, keep=keep)
    (keep / "onnx" / "0.75-elu.onnx").unlink()
    with pytest.raises(ValueError, match="every seed is kept but the timed ONNX files are not: .*0.75-elu.onnx"):
        bench_architecture(work, ["1.0:elu", "0.75:elu"], [1], size="quick", episodes=4, progress=False, keep=keep)
