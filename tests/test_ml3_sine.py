"""The ML3 paper's sine protocol through the project's engine: a loss meta-trained on one sine trains fresh
MLPs on unseen, larger and shifted sines better than MSE, and stays finite off its meta-training range."""

import math

import pytest
import torch

from training.bench.ml3_sine import SineProtocol, bench_ml3_sine, meta_test, meta_train
from training.losses.ml3 import ML3Loss


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny MLPs: a second torch thread only adds contention (over 10x the CPU time on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_meta_training_moves_phi_and_beats_a_fresh_ml3_loss():
    p = SineProtocol(meta_steps=60, tasks=3)
    trained = meta_train(p, seed=0)
    out_layer = trained.net[-1]  # zero in every fresh ML3 loss (that is what makes it start as MSE)
    assert float(out_layer.weight.abs().max()) > 1e-3 and float(out_layer.bias.abs().max()) > 1e-3
    result = meta_test(trained, p, seed=0, baseline=ML3Loss(None))
    assert result["finite"] and result["ratio"] < 0.95


@pytest.mark.slow
def test_sine_protocol_beats_mse_on_five_seeds_and_stays_finite_at_ten_times_the_rate():
    out = bench_ml3_sine(SineProtocol(), seeds=(0, 1, 2, 3, 4), lr_factors=(1.0, 10.0))
    base, fast = out["summary"]["lr_x1"], out["summary"]["lr_x10"]
    assert base["all_finite"] and base["mean_ratio"] <= 0.9 and base["wins"] >= 4
    assert fast["all_finite"]
    assert all(math.isfinite(s[k][m]) for s in out["seeds"] for k in ("lr_x1", "lr_x10") for m in ("learned", "baseline"))
