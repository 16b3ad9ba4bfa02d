"""Per-scene judging (`metasteer compare`), its statistics worked out by hand, and closed-loop
behaviour of models whose driving is known in advance."""

import json
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from simulator.encounters import Encounter, count_events, encounters
from simulator.factory import WorldConfig
from tests.conftest import METASTEER
from tests.onnx_models import constant_steer_model, nan_on_camera_model
from training.compare import bootstrap_ci, compare, judge_episode, paired_diff, table
from training.evaluate import EvalConfig, evaluate, mean_ci95


def test_encounters_bridge_short_gaps_and_keep_categories_apart():
    cats = ["normal"] * 3 + ["pedestrian"] * 4 + ["normal"] * 2 + ["pedestrian"] * 2 + ["normal"] * 5 + ["pedestrian"] + \
        ["sharp_bend"] * 3 + ["obstacle", "sharp_bend"]
    assert encounters(cats, max_gap=2) == [Encounter("pedestrian", 3, 10), Encounter("pedestrian", 16, 16),
                                           Encounter("sharp_bend", 17, 21), Encounter("obstacle", 20, 20)]
    assert len(encounters(cats, max_gap=1)) == 5  # the 2-frame gap now splits the first pedestrian
    assert count_events(cats + cats, [0] * len(cats) + [1] * len(cats), 2) == {"pedestrian": 4, "obstacle": 2, "sharp_bend": 2}


def _steps(n: int, spans: dict[str, tuple[int, int]], infractions: list[int]) -> dict:
    cats = ["normal"] * n
    for cat, (a, b) in spans.items():
        cats[a:b + 1] = [cat] * (b - a + 1)
    return {"category": cats, "infraction": [i in infractions for i in range(n)], "steer": [0.1] * n,
            "expert_steer": [0.1 if c == "normal" else -0.3 for c in cats], "distance_m": [0.4] * n}


def test_judge_episode_by_hand():
    # pedestrian 50-69 with a collision 10 steps after it (inside the 2 s = 40 steps after): failed;
    # bend 120-139, clean: passed; an infraction at step 10 is on the normal road
    j = judge_episode(_steps(250, {"pedestrian": (50, 69), "sharp_bend": (120, 139)}, [10, 79]), truncated=False)
    assert [(s["category"], s["passed"]) for s in j["scenes"]] == [("pedestrian", False), ("sharp_bend", True)]
    assert j["normal_infractions"] == 1
    in_windows = (69 + 40 - 50 + 1) + (139 + 40 - 120 + 1)
    assert j["normal_distance_m"] == pytest.approx(0.4 * (250 - in_windows))
    assert j["abs_error_sum"]["pedestrian"] == pytest.approx(20 * 0.4) and j["abs_error_n"]["normal"] == 250 - 40


def test_an_encounter_cut_off_by_the_time_limit_is_not_judged_unless_already_failed():
    clean = judge_episode(_steps(100, {"obstacle": (80, 95)}, []), truncated=True)
    assert clean["scenes"] == []
    failed = judge_episode(_steps(100, {"obstacle": (80, 95)}, [90]), truncated=True)
    assert [s["passed"] for s in failed["scenes"]] == [False]
    ended = judge_episode(_steps(100, {"obstacle": (80, 95)}, []), truncated=False)  # route completed during it
    assert [s["passed"] for s in ended["scenes"]] == [True]


def test_mean_ci95_by_hand():
    r = mean_ci95([1.0, 2.0, 3.0, 4.0])
    # t(0.975, 3) = 3.182446; sd = 1.290994; half = 3.182446 * 1.290994 / 2 = 2.054260
    assert r["mean"] == pytest.approx(2.5) and r["ci95"] == pytest.approx(2.054260, rel=1e-5) and r["n"] == 4
    assert mean_ci95([7.0]) == {"mean": 7.0, "ci95": None, "n": 1}


def test_bootstrap_intervals():
    n = 400
    passed = np.tile([1.0, 0.0], n // 2)  # one scene per route, half passed
    t = {"rare_passed": passed, "rare_n": np.ones(n)}
    lo, hi = bootstrap_ci(lambda idx: t["rare_passed"][idx].sum() / t["rare_n"][idx].sum(), n, seed=1)
    half = 1.96 * np.sqrt(0.25 / n)  # normal approximation: 0.049
    assert lo == pytest.approx(0.5 - half, abs=0.012) and hi == pytest.approx(0.5 + half, abs=0.012)

    def table(shift: float) -> dict:
        base = {f"{g}_{k}": np.ones(20) for g in ("pedestrian", "obstacle", "sharp_bend", "rare") for k in ("n", "passed")}
        return base | {"normal_infractions": np.zeros(20), "normal_km": np.ones(20),
                       "route_completion": np.linspace(0, 1, 20) + shift, "driving_score": np.full(20, 0.5 + shift),
                       "time_without_infractions_s": np.full(20, 10.0)}

    d = paired_diff(table(0.0), table(0.25))
    assert d["route_completion"]["diff"] == pytest.approx(0.25)
    assert d["route_completion"]["ci95"] == pytest.approx([0.25, 0.25])  # the same shift on every route: no spread
    assert d["pass_rate_rare"]["diff"] == 0.0


@pytest.fixture(scope="module")
def known_models(tmp_path_factory, small_dataset):
    from training.export import export
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    d = tmp_path_factory.mktemp("known")
    Run(d / "trained", small_dataset, None, LossSpec(), MetaConfig(),
        TrainConfig(steps=60, batch_size=16, width_mult=0.5, eval_every=30, warmup_steps=10)).run(progress=False)
    export(d / "trained", d / "trained.onnx")
    return {"right": constant_steer_model(d / "right.onnx", 1.0), "nan": nan_on_camera_model(d / "nan.onnx"), "trained": d / "trained.onnx"}


def test_full_right_leaves_the_road_within_seconds_and_scores_below_a_trained_model(known_models, tmp_path, cli_env):
    world, cfg = WorldConfig(abnormal_rate=0.1), EvalConfig(episodes=3, seed=2, workers=2, max_time_s=30.0)
    right = evaluate(known_models["right"], world, cfg, progress=False)
    trained = evaluate(known_models["trained"], world, cfg, progress=False)
    assert all(e["time_without_infractions_s"] < 4.0 for e in right["episodes"])
    assert right["driving_score"]["mean"] < trained["driving_score"]["mean"]
    assert right["route_completion"]["mean"] < trained["route_completion"]["mean"]

    res = subprocess.run(METASTEER + ["compare", str(known_models["trained"]), str(known_models["right"]), "--episodes", "3", "--seed", "2",
                                      "--max-time-s", "30", "--abnormal-rate", "0.1", "--out", str(tmp_path), "--json", "--no-progress"],
                         env=cli_env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| model |" in res.stdout
    out = json.loads(res.stdout.strip().splitlines()[-1])
    t, r = out["models"]["trained"], out["models"]["right"]
    assert r["driving_score"]["mean"] < t["driving_score"]["mean"]
    assert r["paired_diff"]["against"] == "trained" and r["paired_diff"]["route_completion"]["diff"] < 0
    assert r["route_completion"]["mean"] == pytest.approx(right["route_completion"]["mean"])  # compare and evaluate share the driving code
    assert (tmp_path / "compare.png").exists() and (tmp_path / "compare.json").exists()


def test_the_steering_core_runs_every_model_it_loads_with_its_thread_count(known_models):
    from metasteer.steering import SafetyConfig, SteeringCore

    for threads in (1, 2):
        core = SteeringCore(SafetyConfig(), threads=threads)
        ok, why = core.swap_model(str(known_models["nan"]))
        assert ok, why
        assert core.policy.session.get_session_options().intra_op_num_threads == threads


def test_a_model_that_outputs_nan_brakes_to_a_standstill_on_the_road(known_models):
    """Braking, not circling: a NaN read as full right steer would leave the road within ~10 m too."""
    from metasteer.policy import OnnxPolicy
    from simulator.base import FIXED_DELTA_S
    from training.evaluate import drive_episode, route_seed

    ep = drive_episode(OnnxPolicy.load(known_models["nan"]), WorldConfig(abnormal_rate=0.0), route_seed(0, 0), 10.0, trace=False)
    speed_mps = np.array(ep["steps"]["distance_m"]) / FIXED_DELTA_S
    assert ep["truncated"] and not any(ep["steps"]["infraction"])  # held on the road until the time limit
    assert set(ep["steps"]["steer"]) == {0.0}  # never steered
    assert speed_mps[-40:].max() < 0.05 and speed_mps.sum() * FIXED_DELTA_S < 15.0  # from 8 m/s to a standstill, held


def test_compare_pairs_routes_and_judges_every_model(known_models):
    res = compare([known_models["trained"], known_models["trained"]], WorldConfig(abnormal_rate=0.3),
                  EvalConfig(episodes=2, seed=4, workers=2, max_time_s=25.0), names=["a", "b"], progress=False)
    a, b = res["models"]["a"], res["models"]["b"]
    assert a["pass_rate"] == b["pass_rate"]  # the same model on the same routes: the same verdicts
    assert b["paired_diff"]["pass_rate_rare"]["diff"] in (0.0, None)
    assert set(a["onpolicy_mae"]) == {"normal", "pedestrian", "obstacle", "sharp_bend"}


def test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models(tmp_path, monkeypatch):
    """Two shipped models that reach rare scenes (their paired difference is a number), a copy of the
    first under a third name; a saved result is reused for the same request only: another model under
    a name, or one other setting of the routes at a time, drives again."""
    import shutil

    import training.compare as comparing
    from tests.conftest import ROOT

    world, cfg = WorldConfig(abnormal_rate=0.3), EvalConfig(episodes=2, seed=4, workers=1, max_time_s=20.0)
    models = [ROOT / "models" / "mse.onnx", ROOT / "models" / "oversample.onnx", tmp_path / "c.onnx"]
    shutil.copy(models[0], models[2])
    request = {"names": ["a", "b", "c"], "progress": False, "against": {"c": "b"}}
    first = compare(models, world, cfg, tmp_path / "out", **request)
    vs = first["models"]["c"]["paired_diff_vs"]["b"]["pass_rate_rare"]
    ab = first["models"]["b"]["paired_diff"]["pass_rate_rare"]
    assert ab["diff"] is not None and vs["diff"] == pytest.approx(-ab["diff"])  # c is a copy of a
    assert "c - b: rare-scene pass rate" in table(first)

    def no_driving(*args, **kwargs):
        raise AssertionError("drove again")

    monkeypatch.setattr(comparing, "drive_routes", no_driving)
    again = compare(models, world, cfg, tmp_path / "out", reuse=True, **request)
    assert again["models"]["c"]["paired_diff_vs"] == json.loads(json.dumps(first["models"]["c"]["paired_diff_vs"]))
    for other_world, other_cfg in ((world, replace(cfg, episodes=3)), (world, replace(cfg, seed=5)), (world, replace(cfg, max_time_s=21.0)),
                                   (world, replace(cfg, split="tune")), (world, replace(cfg, actuation_delay_ticks=1)),
                                   (replace(world, abnormal_rate=0.2), cfg), (replace(world, world="carla"), cfg),
                                   (replace(world, target_speed_mps=9.0), cfg)):
        with pytest.raises(AssertionError, match="drove again"):
            compare(models, other_world, other_cfg, tmp_path / "out", reuse=True, **request)
    with pytest.raises(AssertionError, match="drove again"):  # the same models, another extra pair
        compare(models, world, cfg, tmp_path / "out", reuse=True, **(request | {"against": {}}))
    with pytest.raises(AssertionError, match="drove again"):  # the same models under other names
        compare(models, world, cfg, tmp_path / "out", reuse=True, **(request | {"names": ["x", "b", "c"]}))
    shutil.copy(models[1], models[2])  # another model under the same name: judged anew
    with pytest.raises(AssertionError, match="drove again"):
        compare(models, world, cfg, tmp_path / "out", reuse=True, **request)
