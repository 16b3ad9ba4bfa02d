"""DAgger: the policy drives, the expert labels; rounds are datasets that name their policy; resumable."""

import json
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from metasteer.control import SpeedController
from metasteer.policy import OnnxPolicy
from simulator.base import FIXED_DELTA_S, VehicleControl
from simulator.factory import WorldConfig, make_world
from tests.conftest import METASTEER, file_stamps
from tests.onnx_models import constant_steer_model
from training.dagger import DaggerConfig, record_round
from training.data.collect import next_onset_s
from training.data.dataset import DrivingDataset
from training.data.format import shard_paths


def test_states_the_policy_visits_are_labelled_with_the_expert_steering(tmp_path):
    policy_path = constant_steer_model(tmp_path / "steady.onnx", 0.3)
    cfg = DaggerConfig(routes=2, routes_per_shard=1, record_every=1, dagger_abnormal_rate=0.2, workers=1)
    manifest = record_round(tmp_path / "round", policy_path, WorldConfig(), cfg, 1, progress=False)
    assert manifest["policy"]["model_id"] == OnnxPolicy.load(policy_path).model_id and manifest["policy"]["round"] == 1
    data = DrivingDataset(tmp_path / "round")
    assert np.allclose(data.columns["steer_executed"], 0.3)  # the policy drove
    assert not np.allclose(data.steer, 0.3)  # ... and the labels are not its commands

    # replay the first route with the same commands: the labels are the expert's steering in those states
    seed = int(data.columns["episode_seed"][0])
    frames = data.columns["episode_seed"] == seed
    world_cfg = replace(WorldConfig(), abnormal_rate=cfg.dagger_abnormal_rate)
    speed, expert, times, onsets = SpeedController(world_cfg.target_speed_mps, dt_s=FIXED_DELTA_S), [], [], []
    with make_world(world_cfg) as world:
        obs = world.reset(seed)
        while not obs.done:
            expert.append(obs.expert_control.steer)
            times.append(obs.time_s)
            throttle, brake = speed.run_step(obs.speed_mps)
            obs = world.step(VehicleControl(throttle, 0.3, brake), render=False)
            onsets += [obs.time_s] if any(e.counts_as_infraction for e in obs.events) else []
    assert len(expert) == frames.sum()
    assert np.allclose(data.steer[frames], expert, atol=1e-6)
    assert np.allclose(data.columns["steer_noise"][frames], 0.3 - np.asarray(expert), atol=1e-6)
    # the round records when the policy failed: each frame's next infraction onset (the last one ends the route)
    assert onsets and np.array_equal(data.columns["next_infraction_s"][frames], next_onset_s(times, onsets), equal_nan=True)


def test_a_finished_round_is_not_recorded_again(tmp_path):
    policy_path = constant_steer_model(tmp_path / "steady.onnx", -0.2)
    cfg = DaggerConfig(routes=2, routes_per_shard=1, workers=1)
    first = record_round(tmp_path / "round", policy_path, WorldConfig(), cfg, 1, progress=False)
    stamps = file_stamps(tmp_path / "round")
    assert all(shard_paths(tmp_path / "round", k)["images"].relative_to(tmp_path / "round").as_posix() in stamps for k in range(2))
    assert record_round(tmp_path / "round", policy_path, WorldConfig(), cfg, 1, progress=False) == first
    assert file_stamps(tmp_path / "round") == stamps  # no file rewritten, not even atomically (mtime and inode)
    with pytest.raises(Exception, match="different request"):
        record_round(tmp_path / "round", policy_path, WorldConfig(), replace(cfg, record_every=3), 1, progress=False)


def test_dagger_command_runs_rounds_and_fine_tunes_from_the_policy(small_dataset, tmp_path, cli_env):
    run = tmp_path / "start"
    subprocess.run(METASTEER + ["train", "--data", str(small_dataset), "--out", str(run), "--steps", "20", "--batch-size", "16",
                                "--width-mult", "0.5", "--eval-every", "10", "--warmup-steps", "5", "--no-progress"], env=cli_env, check=True,
                   capture_output=True)
    args = ["dagger", "--run", str(run), "--data", str(small_dataset), "--out", str(tmp_path / "dagger"), "--rounds", "2",
            "--routes", "2", "--routes-per-shard", "1", "--dagger-steps", "10", "--workers", "1", "--precision", "bf16", "--json", "--no-progress",
            "--labels", "meta-only"]
    res = subprocess.run(METASTEER + args, env=cli_env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "a labelled meta set (--meta-data) must pick the kept snapshot" in res.stderr  # before any round
    assert not (tmp_path / "dagger" / "round-1").exists()
    args += ["--meta-data", str(small_dataset)]
    res = subprocess.run(METASTEER + args, env=cli_env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["round"] for r in out["rounds"]] == [1, 2]
    first, second = out["rounds"]
    assert first["policy_model_id"] != second["policy_model_id"]  # round 2 is driven by round 1's fine-tuned model
    request = json.loads((tmp_path / "dagger" / "round-2" / "run" / "request.json").read_text())
    assert request["train"]["init_from"].endswith("round-1/run")
    assert len(request["data"]) == 3  # original + both rounds
    assert request["train"]["precision"] == "bf16"  # the command's precision reaches every round's training
    for r in (1, 2):  # ... and its label mode: each round picks its snapshot on the labelled meta set it was handed
        run_dir = tmp_path / "dagger" / f"round-{r}" / "run"
        assert json.loads((run_dir / "request.json").read_text())["meta_data"] == str(small_dataset)
        assert json.loads((run_dir / "result.json").read_text())["best_step_chosen_on"] == "meta"
    done = file_stamps(tmp_path / "dagger", skip=("dagger.json",))
    again = subprocess.run(METASTEER + args, env=cli_env, capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout.strip().splitlines()[-1])["rounds"] == out["rounds"]
    assert file_stamps(tmp_path / "dagger", skip=("dagger.json",)) == done  # resumed: no file of a finished round rewritten
    shutil.rmtree(tmp_path / "dagger" / "round-2" / "run")  # round 2 killed before its training finished
    resumed = subprocess.run(METASTEER + args, env=cli_env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    kept = {k: v for k, v in done.items() if not k.startswith("round-2/run/")}
    assert {k: v for k, v in file_stamps(tmp_path / "dagger", skip=("dagger.json",)).items() if k in kept} == kept
    assert (tmp_path / "dagger" / "round-2" / "run" / "result.json").exists()  # only the missing training ran
