"""BoTorch tuning: suggestions in bounds, BO beats its Sobol start on a cheap objective, a killed
tuner resumes without re-running finished trials, the Ray executor on a local Ray instance."""

import json
import subprocess
import time

import numpy as np
import pytest
import torch

from tests.conftest import METASTEER
from training.tune.bo import suggest
from training.tune.tuner import Tuner, TuneConfig, make_objective, read_trials


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_bo_suggestions_stay_in_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, generator=g, dtype=torch.float64)
    y = -((x - 0.5) ** 2).sum(-1, keepdim=True)
    cand, _ = suggest(x, y, torch.full_like(y, 1e-3), q=3, seed=0)
    assert cand.shape == (3, 3) and (cand >= 0).all() and (cand <= 1).all()


def test_a_pending_point_moves_the_suggestion_off_it():
    """A point already proposed but not observed: BO proposes beside it, not the same trial twice."""
    x = torch.tensor([[0.1], [0.3], [0.45], [0.7], [0.9]], dtype=torch.float64)
    y = -10 * (x - 0.55) ** 2
    alone, _ = suggest(x, y, torch.full_like(y, 1e-4), q=1, seed=0)
    beside, _ = suggest(x, y, torch.full_like(y, 1e-4), q=1, seed=0, pending=alone)
    assert abs(alone - 0.55).item() < 0.05 and abs(beside - alone).item() > 0.02


def test_every_batch_runs_parallel_trials_when_the_initial_design_does_not_divide_into_them(tmp_path):
    """init 3 with 2 workers: BoTorch fills the design's second batch (the Sobol point pending) instead of one
    worker idling through it; the trial count by method stays as asked."""
    Tuner(tmp_path, TuneConfig(budget=6, init=3, parallel=2, seed=0), make_objective("synthetic", 0)).run(progress=False)
    batches, last = [], None
    for r in _log(tmp_path / "trials.jsonl"):
        if r["event"] == "proposed":
            if last != "proposed":
                batches.append([])
            batches[-1].append(r["method"])
        last = r["event"]
    assert batches == [["sobol", "sobol"], ["sobol", "bo"], ["bo", "bo"]]


def test_bo_improves_over_its_sobol_points(tmp_path):
    cfg = TuneConfig(budget=14, init=5, parallel=1, seed=3)
    result = Tuner(tmp_path, cfg, make_objective("synthetic", cfg.seed)).run(progress=False)
    log = [r for r in _log(tmp_path / "trials.jsonl") if r["event"] == "finished"]
    best_sobol = max(r["y"] for r in log if r["method"] == "sobol")
    assert len(log) == 14 and sum(r["method"] == "bo" for r in log) == 9
    assert result["best"]["y"] > best_sobol + 1.0 and result["best"]["method"] == "bo"


def test_killed_tuner_resumes_without_rerunning_finished_trials(tmp_path, cli_env):
    args = METASTEER + ["tune", "--objective", "synthetic", "--budget", "8", "--init", "3", "--parallel", "2", "--no-baseline",
                        "--synthetic-delay-s", "0.4", "--out", str(tmp_path), "--no-progress"]
    log = tmp_path / "bo" / "trials.jsonl"
    proc = subprocess.Popen(args, env=cli_env)
    deadline = time.time() + 120
    while not log.exists() or sum(r["event"] == "finished" for r in _log(log)) < 3:
        assert proc.poll() is None and time.time() < deadline, "tuner ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    before = {r["trial"] for r in _log(log) if r["event"] == "finished"}
    assert 3 <= len(before) < 8
    subprocess.run(args + ["--json"], env=cli_env, check=True, capture_output=True)
    finished = [r["trial"] for r in _log(log) if r["event"] == "finished"]
    assert sorted(finished) == list(range(8))  # each trial finished exactly once
    assert json.loads((tmp_path / "tune.json").read_text())["bo"]["trials"] == 8
    assert (tmp_path / "convergence.png").exists() and (tmp_path / "gp_tau.png").exists()


def test_ray_executor_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    import ray

    cfg = TuneConfig(budget=4, init=2, parallel=2, seed=1, executor="ray")
    try:
        result = Tuner(tmp_path, cfg, make_objective("synthetic", cfg.seed)).run(progress=False)
    finally:
        ray.shutdown()
    local = Tuner(tmp_path / "local", TuneConfig(budget=4, init=2, parallel=2, seed=1), make_objective("synthetic", 1)).run(progress=False)
    workers = [r["worker"] for r in read_trials(tmp_path / "trials.jsonl")[1].values()]
    assert len(workers) == 4 and all(w.startswith("ray:") for w in workers)  # Ray workers ran every trial
    assert all(r["worker"].startswith("pid:") for r in read_trials(tmp_path / "local" / "trials.jsonl")[1].values())
    assert result["trials"] == 4
    assert np.allclose(result["best_so_far"], local["best_so_far"])  # same trials, same numbers, other executor


def test_fixed_first_points_run_before_sobol_and_decode_to_mse(tmp_path):
    from training.tune.space import FIRST_POINTS, LEARNED_SPACE, decode, trial_setup

    first = FIRST_POINTS["learned"]
    cfg = TuneConfig(budget=5, init=3, parallel=2, seed=0)
    Tuner(tmp_path, cfg, make_objective("synthetic", 0), LEARNED_SPACE, first).run(progress=False)
    proposed, finished = read_trials(tmp_path / "trials.jsonl")
    assert [proposed[k]["method"] for k in sorted(proposed)] == ["fixed", "sobol", "sobol", "bo", "bo"]
    assert proposed[0]["x"] == first[0] and len(finished) == 5
    spec, _, rare_fraction = trial_setup(decode(np.array(first[0])))
    assert spec.loss == "mse" and rare_fraction == 0.0  # tau = 0, uniform batches: MSE itself


def test_the_sobol_baseline_runs_the_same_budget_from_the_same_first_points(tmp_path):
    from training.tune.tuner import tune

    result = tune(tmp_path, TuneConfig(budget=5, init=2, seed=1), "synthetic", baseline=True, progress=False)
    bo, sobol = (read_trials(tmp_path / name / "trials.jsonl")[0] for name in ("bo", "sobol"))
    assert [bo[k]["method"] for k in sorted(bo)] == ["sobol"] * 2 + ["bo"] * 3
    assert [sobol[k]["method"] for k in sorted(sobol)] == ["sobol"] * 5  # the same budget, no model
    assert [sobol[k]["x"] for k in (0, 1)] == [bo[k]["x"] for k in (0, 1)]  # the same start: a paired baseline
    assert len(result["sobol"]["best_so_far"]) == len(result["bo"]["best_so_far"]) == 5


@pytest.mark.parametrize("metric", ["rare_pass_rate", "route_completion"])
def test_the_closed_loop_objective_is_the_metric_of_its_model_on_the_tuning_routes(small_dataset, tmp_path, metric):
    """A trial's value and variance, worked out again from `compare` driving its exported model on the
    tuning routes (split tune, the trial's seed)."""
    from simulator.factory import WorldConfig
    from training.compare import compare
    from training.evaluate import EvalConfig, route_seed
    from training.tune.objectives import TrialBudget, closed_loop
    from training.tune.space import FIRST_POINTS

    precision = "bf16" if metric == "route_completion" else "fp32"  # one case trains as `pipeline --precision bf16` would
    budget = TrialBudget(space="learned", steps=10, episodes=2, abnormal_rate=0.3, max_time_s=20.0, metric=metric, precision=precision)
    value, var = closed_loop(np.array(FIRST_POINTS["learned"][0]), 0, 3, tmp_path, small_dataset, None, budget)
    trial = json.loads((tmp_path / "trial-000" / "trial.json").read_text())
    assert json.loads((tmp_path / "trial-000" / "request.json").read_text())["train"]["precision"] == precision
    assert trial["routes"] == [route_seed(3, k, "tune") for k in range(2)] and trial["value"] == value
    judged = compare([tmp_path / "trial-000" / "model.onnx"], WorldConfig(abnormal_rate=0.3),
                     EvalConfig(episodes=2, seed=3, workers=1, split="tune", max_time_s=20.0), progress=False)
    m = next(iter(judged["models"].values()))
    if metric == "rare_pass_rate":
        rare = m["pass_rate"]["rare"]
        rate = rare["rate"] or 0.0
        assert value == rate and var == pytest.approx(max(rate * (1 - rate), 0.05) / max(rare["n"], 1))
    else:
        per_route = np.array(m["per_route"]["route_completion"])
        assert value == pytest.approx(per_route.mean()) and var == pytest.approx(per_route.var(ddof=1) / 2)
        assert 0 < value <= 1
