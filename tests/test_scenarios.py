"""Scenario evaluation (`compare --scenarios`): the judging rule by hand, every model started from the expert's
exact state, the expert passing and a full-right model failing every scene, equal denominators."""

import json
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from simulator.factory import WorldConfig, make_world
from tests.conftest import METASTEER, ROOT
from tests.onnx_models import constant_steer_model
from training.evaluate import EvalConfig, route_seed
from training.scenarios import ScenarioSpec, find_scenarios, judge_scenario, replay, route_scenarios, scenario_compare
from training.study_stats import pool, scenario_table

WORLD = WorldConfig(abnormal_rate=0.1)
ROUTES = EvalConfig(episodes=2, seed=0, workers=1, max_time_s=180.0)


def _steps(n: int, spans: list[tuple[str, int, int]], infractions: list[int]) -> dict:
    cats = ["normal"] * n
    for cat, a, b in spans:
        cats[a:b + 1] = [cat] * (b - a + 1)
    return {"category": cats, "infraction": [i in infractions for i in range(n)]}


# handed over at step 1000; the expert met the pedestrian at steps 1060-1100: 60-100 in the replay; the window
# closes 2 s (40 steps) after its last frame
SPEC = ScenarioSpec(route=0, route_seed=1, category="pedestrian", handover_step=1000, onset_step=1060, end_step=1100)


def test_judge_scenario_by_hand():
    def verdict(spans, infractions, n=200, truncated=True, completed=False):
        return judge_scenario(_steps(n, spans, infractions), SPEC, truncated, completed)

    assert verdict([("pedestrian", 60, 100)], []) == {"category": "pedestrian", "passed": True, "met": True,
                                                        "cut_off": False}
    assert not verdict([("pedestrian", 60, 100)], [140])["passed"]  # the last step of the window
    assert verdict([("pedestrian", 60, 100)], [141, 20])["passed"]  # after it, and in the lead-in: normal road
    # the model met it later than the expert: its own encounter widens the window
    assert not verdict([("pedestrian", 70, 130)], [160])["passed"]
    assert verdict([("pedestrian", 70, 130)], [171])["passed"]
    # never met as a pedestrian (drove elsewhere): judged on the expert's window
    assert verdict([], [])["met"] is False and not verdict([], [100])["passed"]
    # the world ended it in the lead-in (a collision at step 30): no verdict "not reached", a failure
    ended = verdict([], [30], n=31, truncated=False)
    assert ended["passed"] is False and ended["cut_off"] is False
    # the route's end came first: judged on what was driven
    assert verdict([("pedestrian", 60, 100)], [], n=120, truncated=False, completed=True)["passed"]
    # the replay's time limit came first: flagged
    assert verdict([("pedestrian", 60, 180)], [], n=200)["cut_off"] is True


def test_route_scenarios_hand_over_three_seconds_before_onset():
    steps = _steps(500, [("sharp_bend", 30, 80), ("obstacle", 200, 260), ("pedestrian", 470, 490)], [])
    specs = route_scenarios(4, 77, steps, truncated=True)
    assert [(s.category, s.handover_step, s.onset_step, s.end_step) for s in specs] == [
        ("sharp_bend", 0, 30, 80), ("obstacle", 140, 200, 260)]  # the pedestrian: cut off by the time limit
    assert all((s.route, s.route_seed) == (4, 77) for s in specs)
    assert len(route_scenarios(4, 77, steps, truncated=False)) == 3  # the route ended: judged


@pytest.fixture(scope="module")
def scenes() -> list[ScenarioSpec]:
    found = find_scenarios(WORLD, ROUTES, progress=False)
    assert {s.category for s in found} == {"pedestrian", "obstacle", "sharp_bend"}, found
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("scenario_models")
    return {name: constant_steer_model(d / f"{name}.onnx", v) for name, v in (("straight", 0.0), ("right", 1.0),
                                                                               ("left_a_bit", -0.1))}


def _expert_state(spec: ScenarioSpec) -> tuple:
    """The expert's own drive of the route, the camera rendered every step, at the handover step."""
    with make_world(WORLD) as world:
        obs = world.reset(spec.route_seed)
        for _ in range(spec.handover_step):
            obs = world.step(obs.expert_control)
        return obs, (world.ego.x, world.ego.y, world.ego.yaw), [(a.s, a.d, a.triggered) for a in world.actors]


def test_a_replay_starts_every_model_from_the_experts_state_bit_equal(scenes, models):
    from metasteer.policy import OnnxPolicy

    spec = next(s for s in scenes if s.category == "pedestrian" and s.handover_step > 0)
    seen = {}

    def first(name):
        def hook(world, obs, control):
            if name not in seen:
                seen[name] = (obs, (world.ego.x, world.ego.y, world.ego.yaw),
                              [(a.s, a.d, a.triggered) for a in world.actors])
        return hook

    for name, path in models.items():
        replay(spec, WORLD, OnnxPolicy.load(path), on_step=first(name))
    replay(spec, WORLD, None, on_step=first("expert"))
    obs, pose, actors = _expert_state(spec)
    assert obs.time_s > 0 and obs.image is not None
    for name, (o, p, a) in seen.items():
        assert (p, a) == (pose, actors), name
        assert (o.time_s, o.speed_mps, o.category, o.features, o.expert_control) == \
            (obs.time_s, obs.speed_mps, obs.category, obs.features, obs.expert_control), name
        if name != "expert":  # the expert does not look at the camera: its frames are not drawn
            assert o.image.dtype == obs.image.dtype and np.array_equal(o.image, obs.image), name


def test_the_expert_passes_every_scenario_and_full_right_fails_every_one(scenes, models):
    from metasteer.policy import OnnxPolicy

    expert = [replay(s, WORLD) for s in scenes]
    assert all(v["passed"] and v["met"] for v in expert), [(s, v) for s, v in zip(scenes, expert) if not v["passed"]]
    right = [replay(s, WORLD, OnnxPolicy.load(models["right"])) for s in scenes]
    assert not any(v["passed"] for v in right), [(s, v) for s, v in zip(scenes, right) if v["passed"]]


def test_every_model_is_judged_on_every_scene_where_route_level_counts_differ(scenes, models, cli_env):
    names = ["shipped_mse", "right"]  # a model that reaches scenes on its own drive, and one that reaches none
    paths = [ROOT / "models" / "mse.onnx", models["right"]]
    out = subprocess.run([*METASTEER, "compare", *map(str, paths), "--names", ",".join(names),
                          "--scenarios", "--abnormal-rate", "0.1", "--episodes", str(ROUTES.episodes),
                          "--seed", str(ROUTES.seed), "--workers", "2", "--no-progress", "--json"],
                         capture_output=True, text=True, env=cli_env, check=True).stdout
    result = json.loads(out[out.index("\n{") + 1:])
    route_n = {n: result["models"][n]["pass_rate"]["rare"]["n"] for n in names}
    assert route_n["shipped_mse"] > route_n["right"], route_n  # on their own drives they met different scenes
    block = result["scenarios"]
    assert [ScenarioSpec(**s) for s in block["scenes"]] == scenes
    for n in names:
        m = block["models"][n]
        assert [o["category"] for o in m["outcomes"]] == [s.category for s in scenes]
        assert m["per_scene"] == {k: v.tolist() for k, v in scenario_table(m["outcomes"]).items()}
        assert m["pass_rate"]["rare"]["n"] == len(scenes)
        for g in ("pedestrian", "obstacle", "sharp_bend"):
            assert m["pass_rate"][g]["n"] == sum(s.category == g for s in scenes)
    assert block["expert"]["pass_rate"]["rare"]["passed"] == len(scenes)
    assert block["models"]["right"]["pass_rate"]["rare"]["passed"] == 0
    # the tables pool at the scenario level (which refuses tables of different scenes)
    tables = {0: {n: {k: np.array(v) for k, v in block["models"][n]["per_scene"].items()} for n in names}}
    pool(tables, [("right", "shipped_mse")], "scenario")
    assert "Scenario level" in out and f"(0/{len(scenes)})" in out


def test_scenarios_need_a_deterministic_world(models):
    with pytest.raises(ValueError, match="deterministic per seed"):
        scenario_compare([models["straight"]], ["straight"], replace(WORLD, world="carla"), ROUTES, progress=False)


def test_a_handover_past_the_experts_episode_is_refused(models):
    from training.evaluate import drive_episode
    from metasteer.policy import OnnxPolicy

    with pytest.raises(ValueError, match="ended before handover step 100000"):
        drive_episode(OnnxPolicy.load(models["straight"]), WORLD, route_seed(0, 0), 10.0, handover_step=100000)
