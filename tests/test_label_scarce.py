"""Label-scarce training (issue 19): what a training frame shows with --labels meta-only, the label-free
baselines' weights on hand-made frames, and the learned sampler's draws."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from simulator.base import SceneFeatures
from training.data.collect import next_onset_s
from training.data.format import sha256_file, shard_paths
from training.data.label_view import HISTORY, NO_INFRACTION_S, label_history, time_to_infraction
from training.data.score_sampler import ScoreSampler
from training.losses.failure_proximity import FailureProximityMSE
from training.losses.keyframe import KeyframeMSE

HIDDEN = [n for n in SceneFeatures.names() if n != "speed_mps"] + ["category"]  # what a car's log does not have


def _tampered(src, dst, seed: int = 5):
    """A copy of dataset ``src`` whose categories and scene features (all but the speed) are shuffled over its
    frames, checksums updated: images, labels, speeds and places in episodes untouched."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    rng = np.random.default_rng(seed)
    for k, marker in enumerate(manifest["shards"]):
        paths = shard_paths(dst, k)
        table = pq.read_table(paths["labels"])
        order = rng.permutation(table.num_rows)
        for name in HIDDEN:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pa.array(table[name].to_numpy(zero_copy_only=False)[order]))
        pq.write_table(table, paths["labels"])
        marker["labels_sha256"] = sha256_file(paths["labels"])
        paths["marker"].write_text(json.dumps(marker))
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _train(data, meta, out, labels: str, loss: str, **spec):
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    meta_cfg = MetaConfig(schedule="online", lookahead="adam", head_only=True, meta_lr=0.05)
    run = Run(out, data, meta, LossSpec(loss=loss, **spec), meta_cfg,
              TrainConfig(steps=6, batch_size=16, meta_batch_size=8, width_mult=0.25, eval_every=1, warmup_steps=2,
                          labels=labels, checkpoint_every=6))  # a snapshot offered every step: the kept one is chosen
    run.run(progress=False)
    return run, torch.load(out / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def tampered(small_dataset, tmp_path_factory):
    return _tampered(small_dataset, tmp_path_factory.mktemp("tampered") / "small")


LABEL_FREE_RUNS = {
    "label-free-weighted": {"tau": 2.0, "score_sampling": 2.0, "score_refresh_every": 2, "score_importance": True},
    "keyframe": {}, "failure-proximity": {"failure_window_s": 10.0}, "loss-emphasis": {}, "steer-bins": {},
}


@pytest.mark.parametrize("loss", sorted(LABEL_FREE_RUNS))
def test_meta_only_training_is_bit_identical_when_the_training_sets_labels_are_shuffled(small_dataset, tampered, tmp_path, loss):
    """Meta-only: the training frames' categories and scene features shuffled -> what the loss and sampler see is
    equal and the trained parameters are bit-identical (the meta set, labelled, is the same file)."""
    a, pa_ = _train(small_dataset, small_dataset, tmp_path / "a", "meta-only", loss, **LABEL_FREE_RUNS[loss])
    b, pb = _train(tampered, small_dataset, tmp_path / "b", "meta-only", loss, **LABEL_FREE_RUNS[loss])
    assert a.train.feature_names == b.train.feature_names and "abnormal" not in a.train.feature_names
    assert np.array_equal(a.train.extra, b.train.extra) and np.array_equal(a.train.category, b.train.category)
    assert all(torch.equal(pa_[k], pb[k]) for k in pa_)
    # the scores that chose the kept snapshot were read off labelled frames only (the meta set)
    assert (tmp_path / "a" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()


def test_full_labels_training_changes_when_the_training_sets_labels_are_shuffled(small_dataset, tampered, tmp_path):
    """The same shuffle with --labels full and a loss that reads scene features changes training: the test above can fail."""
    _, pa_ = _train(small_dataset, small_dataset, tmp_path / "a", "full", "weighted", tau=2.0)
    _, pb = _train(tampered, small_dataset, tmp_path / "b", "full", "weighted", tau=2.0)
    assert any(not torch.equal(pa_[k], pb[k]) for k in pa_)


def test_meta_only_refuses_what_reads_training_labels(small_dataset, tmp_path):
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    with pytest.raises(ValueError, match="abnormal"):
        Run(tmp_path / "w", small_dataset, small_dataset, LossSpec(loss="inverse-freq"), MetaConfig(), TrainConfig(labels="meta-only"))
    with pytest.raises(ValueError, match="labelled meta set"):  # else the logs' own categories would pick the snapshot
        Run(tmp_path / "n", small_dataset, None, LossSpec(loss="mse"), MetaConfig(), TrainConfig(labels="meta-only"))
    run = Run(tmp_path / "o", small_dataset, small_dataset, LossSpec(loss="mse"), MetaConfig(), TrainConfig(labels="meta-only", rare_fraction=0.25))
    with pytest.raises(ValueError, match="category"):
        run.run(progress=False)


def test_keyframe_weights_the_frames_the_previous_labels_do_not_predict():
    """A hand-made episode: labels follow a straight line (predictable from the previous ones) but for one jump at
    frame 30; with share 1/40 exactly the jump frame weighs 5x the others."""
    y = np.linspace(-0.3, 0.3, 40).astype(np.float32)
    y[30:] += 0.4  # the jump: frame 30 breaks the line its history predicts
    episode = np.zeros(40, dtype=np.int64)
    history = label_history(y, episode)
    assert history.shape == (40, HISTORY) and history[0, 0] == y[0] and history[5, 0] == y[4] and history[5, 8] == y[0]
    loss = KeyframeMSE(list(range(HISTORY)), y, history, share=1 / 40, weight=5.0)
    w = loss.weights(torch.from_numpy(y), torch.from_numpy(history)).numpy()
    assert np.argmax(w) == 30
    assert np.allclose(w[30] / np.delete(w, 30), 5.0) and np.isclose(w.mean(), 1.0)


def test_failure_proximity_marks_exactly_the_frames_within_the_window_before_an_infraction():
    """Two episodes at 10 Hz; the first has infractions at 2.05 s and 4.0 s, the second none. With T = 1 s the frames
    at 1.1..2.0 s and 3.0..4.0 s weigh 3x (the onset's own frame too), nothing after the last onset, nothing in episode 2."""
    t = np.round(np.arange(0, 5.0, 0.1), 1)
    nxt = next_onset_s(list(t), [4.0, 2.05])
    assert np.isnan(nxt[t > 4.0]).all() and (nxt[(t > 2.05) & (t <= 4.0)] == 4.0).all() and (nxt[t <= 2.05] == 2.05).all()
    time_s, next_s = np.concatenate([t, t]), np.concatenate([nxt, np.full(len(t), np.nan)])
    ttf = time_to_infraction(time_s, next_s)
    assert ttf[len(t):].tolist() == [NO_INFRACTION_S] * len(t)
    loss = FailureProximityMSE(0, ttf, window_s=1.0, weight=3.0)
    w = loss.weights(torch.from_numpy(ttf[:, None])).numpy()
    marked = np.isclose(w / w.min(), 3.0)
    first = time_s[:len(t)]
    expected = ((first >= 1.05) & (first <= 2.05)) | ((first >= 3.0 - 1e-9) & (first <= 4.0))
    assert marked[:len(t)].tolist() == expected.tolist()
    assert not marked[len(t):].any() and np.isclose(w.mean(), 1.0)


def test_the_learned_sampler_draws_frames_in_proportion_to_their_scores():
    """A hand-made score vector: 40 000 draws land on each frame in proportion to its score (every count within 4.5
    binomial standard deviations; chi-square below its 0.999 quantile), and a resumed sampler draws the same."""
    scores = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 1.0, 0.5, 3.5])
    sampler = ScoreSampler(len(scores), 400, seed=3)
    sampler.set_scores(scores)
    draws = np.concatenate([sampler.next() for _ in range(100)])
    counts = np.bincount(draws, minlength=len(scores))
    p = scores / scores.sum()
    expected = p * len(draws)
    assert counts[0] == 0
    sd = np.sqrt(len(draws) * p * (1 - p))
    assert np.all(np.abs(counts - expected) <= 4.5 * sd + 1e-9)
    nz = p > 0
    assert float(np.sum((counts[nz] - expected[nz]) ** 2 / expected[nz])) < 24.3  # chi2(6 dof) 0.999 quantile
    state = sampler.state_dict()
    again = ScoreSampler(len(scores), 400, seed=99)
    again.load_state_dict(state)
    assert np.array_equal(sampler.next(), again.next())
