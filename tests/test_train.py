"""`metasteer train` end to end on a small dataset: meta-train then meta-test, checkpoints, resume,
outputs; `metasteer evaluate-offline`."""

import csv
import json
import os
import subprocess
import time

import numpy as np
import pytest
import torch

from tests.conftest import METASTEER
from training.checkpoint import load
from training.fit import Run, TrainConfig

TINY = ["--width-mult", "0.25", "--batch-size", "16", "--meta-batch-size", "8", "--eval-every", "20", "--threads", "1", "--no-progress"]


def _train(data, out, env, *extra, check=True):
    return subprocess.run(METASTEER + ["train", "--data", str(data), "--out", str(out), "--json", *TINY, *extra],
                          env=env, capture_output=True, text=True, check=check)


def test_learned_loss_run_meta_trains_then_freezes_the_loss_for_a_fresh_model(small_dataset, tmp_path, cli_env):
    out = tmp_path / "run"
    result = json.loads(_train(small_dataset, out, cli_env, "--loss", "weighted", "--meta-steps", "12", "--steps", "20",
                               "--checkpoint-every", "6").stdout.strip().splitlines()[-1])
    assert result["val_mae"] is not None and result["val_mae_abnormal"] is not None
    for name in ("model.pt", "loss.pt", "log.csv", "learning_curve.png", "learned_loss.png", "result.json"):
        assert (out / name).stat().st_size > 0, name
    learned = load(out / "loss.pt")["state_dict"]
    initial_last_layer = torch.zeros_like(learned["score.4.weight"])
    assert not torch.equal(learned["score.4.weight"], initial_last_layer)  # phi moved during meta-training
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["phase"] for r in rows] == ["meta"] * 12 + ["fit"] * 20
    ckpt = load(out / "checkpoint.pt")
    assert ckpt["phase"] == "fit" and all(torch.equal(ckpt["loss"][k], learned[k]) for k in learned)  # frozen in fit


@pytest.fixture
def steps_taken(monkeypatch):
    """Optimiser steps taken in this process from now on: meta steps (phi's) and the model's own Adam steps."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from training.meta.trainer import MetaTrainer, PhiUpdater

    counts, inside = {"meta": 0, "model": 0}, []
    for cls, name in ((MetaTrainer, "step"), (PhiUpdater, "update")):
        def counted(self, *args, _real=getattr(cls, name), **kwargs):
            counts["meta"] += not inside  # a meta step of the meta phase runs one phi update inside it
            inside.append(True)  # the optimiser steps inside a meta step are not the model's
            try:
                return _real(self, *args, **kwargs)
            finally:
                inside.pop()
        monkeypatch.setattr(cls, name, counted)
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: counts.update(model=counts["model"] + (not inside)))
    yield counts
    handle.remove()


KILLED = ["--loss", "ml3", "--meta-steps", "20", "--steps", "30", "--checkpoint-every", "5"]


@pytest.fixture(scope="module")
def uninterrupted(small_dataset, tmp_path_factory):
    from tests.conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    whole = tmp_path_factory.mktemp("whole") / "run"
    _train(small_dataset, whole, env, *KILLED)
    return whole


@pytest.mark.parametrize("phase", ["meta", "fit"])
def test_killed_training_resumes_where_it_stopped_to_the_same_numbers(small_dataset, tmp_path, cli_env, uninterrupted, steps_taken, phase):
    """SIGKILL in the meta phase or in the fit phase; the resumed run takes only the steps that were left
    (a restart from scratch would reach the same numbers: the step counts tell them apart)."""
    from training.cli import main

    killed = tmp_path / "killed"
    proc = subprocess.Popen(METASTEER + ["train", "--data", str(small_dataset), "--out", str(killed), *TINY, *KILLED], env=cli_env)
    deadline = time.time() + 300
    while True:
        ckpt = killed / "checkpoint.pt"
        if ckpt.exists():
            try:
                state = load(ckpt)
                if state["phase"] == phase and state["step"] >= 5:
                    break
            except RuntimeError:
                pass
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (killed / "result.json").exists()
    at = load(killed / "checkpoint.pt")
    assert at["phase"] == phase, "the kill came too late for this phase"
    refused = _train(small_dataset, killed, cli_env, *KILLED, check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--data", str(small_dataset), "--out", str(killed), *TINY, *KILLED, "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    left = {"meta": 20 - at["step"], "model": 30} if phase == "meta" else {"meta": 0, "model": 30 - at["step"]}
    assert steps_taken == left
    assert json.loads((killed / "result.json").read_text())["val"] == json.loads((uninterrupted / "result.json").read_text())["val"]
    a, b = load(uninterrupted / "model.pt")["state_dict"], load(killed / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("loss", ["mse", "inverse-freq", "balanced-mse"])
def test_baselines_train_and_evaluate_offline(small_dataset, tmp_path, cli_env, loss):
    out = tmp_path / loss
    _train(small_dataset, out, cli_env, "--loss", loss, "--steps", "10")
    res = subprocess.run(METASTEER + ["evaluate-offline", str(out), "--data", str(small_dataset), "--json"], env=cli_env,
                         capture_output=True, text=True, check=True)
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["overall"]["n"] == 600
    assert metrics["normal"]["n"] + metrics["abnormal"]["n"] == 600
    assert set(metrics["by_category"]) == {"normal", "pedestrian", "obstacle", "sharp_bend"}
    assert sum(b["n"] for b in metrics["by_steer_bin"]) == 600
    assert (out / f"offline_{small_dataset.name}.png").exists()


def test_evaluate_offline_names_a_dataset_of_another_input_and_a_file_that_is_no_model(small_dataset, tmp_path, capsys):
    from simulator.factory import WorldConfig
    from training.checkpoint import save_atomic
    from training.cli import main
    from training.data.collect import CollectConfig, collect

    threads = torch.get_num_threads()
    try:
        assert main(["train", "--data", str(small_dataset), "--out", str(tmp_path / "run"), "--steps", "2", *TINY]) == 0
        small = tmp_path / "small"
        collect(small, WorldConfig(width=100, height=33), CollectConfig(frames=40, seed=3, frames_per_shard=40, workers=1), progress=False)
        assert main(["evaluate-offline", str(tmp_path / "run"), "--data", str(small)]) == 2
        assert "recorded with input contract" in capsys.readouterr().err  # not a convolution's size error
        (tmp_path / "other").mkdir()
        save_atomic({"step": 3, "weights": {}}, tmp_path / "other" / "model.pt")
        assert main(["evaluate-offline", str(tmp_path / "other"), "--data", str(small_dataset)]) == 2
        assert "model.pt: not a metasteer model file" in capsys.readouterr().err  # not a KeyError
    finally:
        torch.set_num_threads(threads)


def test_batches_from_resident_uint8_frames_equal_the_runtime_preprocessing():
    import numpy as np

    from metasteer.preprocess import to_tensor
    from training.data.arrays import ArraySet, to_tensor_torch

    frames = np.random.default_rng(0).integers(0, 256, (6, 66, 200, 3), dtype=np.uint8)
    assert torch.equal(to_tensor_torch(torch.from_numpy(frames)), torch.from_numpy(to_tensor(frames)))
    data = ArraySet(frames, np.arange(6, dtype=np.float32), np.zeros((6, 2), np.float32), np.array(["normal"] * 6), ["a", "b"], np.arange(6))
    x, y, _ = data.batch(np.array([4, 1]))
    assert torch.equal(x, torch.from_numpy(to_tensor(frames[[4, 1]]))) and y.tolist() == [4.0, 1.0]


def test_learning_rate_warms_up_then_decays_by_cosine():
    from training.fit import lr_at

    cfg = TrainConfig(steps=1100, lr=1e-3, warmup_steps=100, min_lr_ratio=0.05)
    assert lr_at(0, cfg) == pytest.approx(1e-5) and lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(600, cfg) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half way through the decay
    assert lr_at(1100, cfg) == pytest.approx(5e-5)
    assert lr_at(500, TrainConfig(lr_schedule="constant", lr=3e-4)) == 3e-4


def test_best_snapshot_keeps_the_better_of_two():
    from training.fit import BestSnapshot

    best, model = BestSnapshot(), torch.nn.Linear(2, 1)
    torch.nn.init.constant_(model.weight, 1.0)
    assert best.offer(10, 0.05, model)
    torch.nn.init.constant_(model.weight, 2.0)
    assert not best.offer(20, 0.07, model)  # worse: ignored
    assert best.step == 10 and torch.equal(best.state["weight"], torch.ones(1, 2))


def test_the_run_keeps_the_snapshot_best_on_balanced_validation(small_dataset, tmp_path, cli_env):
    out = tmp_path / "run"
    # a constant, too high learning rate makes the validation error wander: the last step is rarely the best
    result = json.loads(_train(small_dataset, out, cli_env, "--steps", "60", "--eval-every", "10", "--lr", "0.01",
                               "--lr-schedule", "constant").stdout.strip().splitlines()[-1])
    rows = [r for r in csv.DictReader((out / "log.csv").open()) if r.get("val_mae_balanced")]
    best = min(rows, key=lambda r: float(r["val_mae_balanced"]))
    assert result["best_step"] == int(best["step"])
    assert result["val_mae_balanced"] == pytest.approx(float(best["val_mae_balanced"]), rel=1e-5)  # model.pt is that snapshot
    assert load(out / "model.pt")["step"] == result["best_step"]


def test_a_crafted_pickle_is_refused_not_run(tmp_path):
    import pickle

    from training.models.io import load_model

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(tmp_path / "model.pt", "wb") as fh:
        pickle.dump({"state_dict": Payload()}, fh)
    with pytest.raises(RuntimeError, match="refused"):
        load_model(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("contents", [b"hello, not a model", b"", "truncated"])
def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path, contents):
    from training.checkpoint import save_atomic
    from training.models.io import load_model

    if contents == "truncated":  # a real checkpoint cut short, as a copy interrupted mid-file leaves it
        save_atomic({"step": 1, "weights": torch.zeros(64)}, tmp_path / "whole.pt")
        contents = (tmp_path / "whole.pt").read_bytes()[:200]
    (tmp_path / "model.pt").write_bytes(contents)
    with pytest.raises(RuntimeError, match="model.pt: not a checkpoint torch.save wrote"):  # not a KeyError from the unpickler
        load_model(tmp_path)


def test_the_learned_loss_does_not_move_while_the_fresh_model_trains(small_dataset, tmp_path, monkeypatch):
    from training.losses import LossSpec
    from training.meta import MetaConfig

    seen = {}
    fit_phase = Run._fit_phase

    def recording(self, *args, **kwargs):  # the real fit phase, with the loss's state noted as it starts
        seen["after_meta"] = {k: v.detach().cpu().clone() for k, v in self.loss.state_dict().items()}
        return fit_phase(self, *args, **kwargs)

    monkeypatch.setattr(Run, "_fit_phase", recording)
    run = Run(tmp_path / "run", small_dataset, None, LossSpec(loss="weighted"), MetaConfig(),
              TrainConfig(steps=15, meta_steps=8, batch_size=16, meta_batch_size=8, width_mult=0.25, eval_every=15, warmup_steps=2))
    initial = {k: v.detach().cpu().clone() for k, v in run.loss.state_dict().items()}  # the saved state is on the CPU
    run.run(progress=False)
    final = load(tmp_path / "run" / "loss.pt")["state_dict"]
    assert any(not torch.equal(initial[k], seen["after_meta"][k]) for k in initial)  # meta-training moved phi
    assert all(torch.equal(seen["after_meta"][k], final[k]) for k in final)  # fitting the fresh model did not


def _online(small_dataset, out, tau):
    from training.losses import LossSpec
    from training.meta import MetaConfig

    return Run(out, small_dataset, None, LossSpec(loss="weighted", tau=tau), MetaConfig(schedule="online", lookahead="adam", meta_lr=0.05),
               TrainConfig(steps=12, batch_size=16, meta_batch_size=8, width_mult=0.25, eval_every=12, warmup_steps=2, rare_fraction=0.25,
                           checkpoint_every=5))


def test_an_online_learned_loss_moves_along_the_run_and_is_mse_at_tau_zero(small_dataset, tmp_path):
    """Online: no meta phase, phi changes during the shipped model's own run; with tau = 0 the run's
    model is bit-identical to the MSE run's (the meta steps read the model and its optimiser only)."""
    from training.losses import LossSpec
    from training.meta import MetaConfig

    run = _online(small_dataset, tmp_path / "online", 2.0)
    assert run.phases == ["fit"]
    initial = {k: v.detach().cpu().clone() for k, v in run.loss.state_dict().items()}  # the saved state is on the CPU
    run.run(progress=False)
    final = load(tmp_path / "online" / "loss.pt")["state_dict"]
    assert any(not torch.equal(initial[k], final[k]) for k in initial)
    rows = list(csv.DictReader(open(tmp_path / "online" / "log.csv")))
    assert sum(1 for r in rows if r["task_loss"]) == 12  # a meta step at every step

    _online(small_dataset, tmp_path / "tau0", 0.0).run(progress=False)
    Run(tmp_path / "mse", small_dataset, None, LossSpec(loss="mse"), MetaConfig(),
        TrainConfig(steps=12, batch_size=16, meta_batch_size=8, width_mult=0.25, eval_every=12, warmup_steps=2, rare_fraction=0.25,
                    checkpoint_every=5)).run(progress=False)
    a, b = (load(tmp_path / d / "model.pt")["state_dict"] for d in ("tau0", "mse"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_online_run_resumes_where_it_stopped_to_the_same_numbers(small_dataset, tmp_path, monkeypatch, steps_taken):
    _online(small_dataset, tmp_path / "whole", 2.0).run(progress=False)
    run = _online(small_dataset, tmp_path / "cut", 2.0)
    save = run._save
    calls = {"n": 0}

    def kill_after_first_checkpoint(*args, **kwargs):
        save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(run, "_save", kill_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run.run(progress=False)
    assert load(tmp_path / "cut" / "checkpoint.pt")["step"] == 5
    resumed = _online(small_dataset, tmp_path / "cut", 2.0)
    steps_taken.update(meta=0, model=0)
    resumed.run(resume=True, progress=False)
    assert steps_taken == {"meta": 7, "model": 7}  # steps 6-12 only, a meta step at each
    for name in ("model.pt", "loss.pt"):
        a, b = (load(tmp_path / d / name)["state_dict"] for d in ("whole", "cut"))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_bf16_run_computes_its_convolutions_in_bfloat16_and_keeps_float32_weights(small_dataset, tmp_path, monkeypatch):
    """``--precision bf16``: the training step's convolutions see bfloat16 inputs (autocast), the loss gets float32,
    the saved weights are float32, and the run is a different run from fp32 (so the setting is not ignored); with
    the label-free loss, whose scores read the model's penultimate features, it trains too."""
    from training.losses import LossSpec
    from training.meta import MetaConfig

    seen = []
    conv_forward = torch.nn.Conv2d.forward

    def recording(self, x):  # the real convolution, its output's dtype noted
        out = conv_forward(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording)
    cfg = TrainConfig(steps=6, batch_size=16, width_mult=0.25, eval_every=6, warmup_steps=2)
    for precision in ("fp32", "bf16"):
        seen.clear()
        run = Run(tmp_path / precision, small_dataset, None, LossSpec(loss="mse"), MetaConfig(),
                  TrainConfig(**{**cfg.__dict__, "precision": precision}))
        loss_forward, given = run.loss.forward, []
        run.loss.forward = lambda y_hat, *rest: given.append(y_hat.dtype) or loss_forward(y_hat, *rest)
        run.run(progress=False)
        assert (torch.bfloat16 in seen) == (precision == "bf16") and set(given) == {torch.float32}
    a, b = (load(tmp_path / d / "model.pt")["state_dict"] for d in ("fp32", "bf16"))
    assert all(v.dtype == torch.float32 for v in b.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)
    run = Run(tmp_path / "label-free", small_dataset, small_dataset, LossSpec(loss="label-free-weighted"), MetaConfig(schedule="online"),
              TrainConfig(**{**cfg.__dict__, "precision": "bf16", "labels": "meta-only"}))
    scores, read = run.loss.scores, []
    run.loss.scores = lambda *args: read.append(run.loss.tap.value.dtype) or scores(*args)
    run.run(progress=False)
    assert read and set(read) == {torch.float32}  # the penultimate features its scores read, from bf16 steps too


def test_too_few_episodes_to_split_says_how_many_are_needed():
    from training.data.arrays import split_by_episode

    episode = np.repeat([7, 9], 5)  # two episodes: validation and meta take one each, none is left to train on
    with pytest.raises(ValueError, match=r"too few episodes \(2\).*at least 3 are needed"):
        split_by_episode(episode, {"val": 0.1, "meta": 0.15}, seed=0)
    assert {k: len(v) for k, v in split_by_episode(np.repeat([5, 7, 9], 4), {"val": 0.1, "meta": 0.15}, seed=0).items()} == \
        {"val": 4, "meta": 4, "train": 4}


def test_a_finished_run_is_read_only_for_the_request_it_finished(small_dataset, tmp_path):
    from dataclasses import replace

    from training.fit import train_once
    from training.losses import LossSpec
    from training.meta import MetaConfig

    cfg = TrainConfig(steps=4, batch_size=16, meta_batch_size=8, width_mult=0.25, eval_every=4, warmup_steps=1, checkpoint_every=4)
    first = train_once(tmp_path / "run", small_dataset, None, LossSpec(loss="mse"), MetaConfig(), cfg, progress=False)
    model = (tmp_path / "run" / "model.pt").read_bytes()
    assert train_once(tmp_path / "run", small_dataset, None, LossSpec(loss="mse"), MetaConfig(), cfg, progress=False) == first
    wider = replace(cfg, width_mult=0.5)  # e.g. a pipeline re-run into the same --out with another width
    with pytest.raises(ValueError, match="different request"):
        train_once(tmp_path / "run", small_dataset, None, LossSpec(loss="mse"), MetaConfig(), wider, progress=False)
    assert (tmp_path / "run" / "model.pt").read_bytes() == model
