"""Losses: tau = 0 is exactly MSE, the learned ones cannot be gamed by the model, baselines by name."""

import numpy as np
import pytest
import torch

from training.losses import LOSSES, BalancedMSE, LossSpec, make_loss
from training.losses.features import FeatureInput
from training.losses.inverse_freq import InverseFrequencyMSE
from training.losses.mse import MSELoss
from training.losses.weighted import WeightedMSE
from training.models import PilotNet, PilotNetConfig

NAMES = ["ped_present", "ped_distance_m", "curvature_ahead_1pm", "abnormal", "is_pedestrian", "is_obstacle", "is_sharp_bend"]


def _data(n=64, seed=0):
    g = np.random.default_rng(seed)
    extra = g.normal(size=(n, len(NAMES))).astype(np.float32)
    extra[:, 3] = g.random(n) < 0.1
    extra[:, 4:] = 0.0
    extra[:, 4] = extra[:, 3]  # every rare frame here is a pedestrian scene
    y = (0.1 * g.normal(size=n) + 0.3 * extra[:, 3]).astype(np.float32)
    return torch.from_numpy(y), torch.from_numpy(extra)


def _grads(loss_fn, model, x, y, extra):
    model.zero_grad()
    loss = loss_fn(model(x), y, extra)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("batch", [16, 24, 7])
def test_weighted_with_tau_zero_is_exactly_mse_in_value_and_gradient(batch):
    y, extra = _data(batch)
    feats = FeatureInput([0, 1, 2, 3], extra.mean(0), extra.std(0))
    weighted = WeightedMSE(feats, tau=0.0)
    for p in weighted.parameters():  # a non-trivial scorer: only tau = 0 makes it MSE
        torch.nn.init.normal_(p, std=1.0)
    torch.manual_seed(0)
    model = PilotNet(PilotNetConfig(width_mult=0.25))
    x = torch.randn(batch, 3, 66, 200)
    l_w, g_w = _grads(weighted, model, x, y, extra)
    l_m, g_m = _grads(MSELoss(), model, x, y, extra)
    assert torch.equal(l_w, l_m)
    assert all(torch.equal(a, b) for a, b in zip(g_w, g_m))
    weighted.tau = 1.0
    assert not torch.equal(_grads(weighted, model, x, y, extra)[0], l_m)


def test_weights_read_features_only_and_average_one():
    y, extra = _data(32)
    loss = WeightedMSE(FeatureInput([0, 1, 2, 3], extra.mean(0), extra.std(0)), tau=2.0)
    torch.nn.init.normal_(loss.score[-1].weight)
    w = loss.weights(extra)
    assert w.mean().item() == pytest.approx(1.0, rel=1e-5) and (w > 0).all()
    y_hat = torch.zeros(32, requires_grad=True)
    loss(y_hat, y, extra).backward()
    # the gradient a prediction gets is 2 w (y_hat - y) / B: no path to shrink the weights through y_hat
    assert torch.allclose(y_hat.grad, 2 * w.detach() * (0 - y) / 32, atol=1e-6)


def test_inverse_frequency_upweights_rare_labels_and_abnormal_frames():
    g = np.random.default_rng(1)
    y = np.concatenate([0.02 * g.normal(size=950), 0.35 + 0.05 * g.normal(size=50)]).astype(np.float32)
    abnormal = np.r_[np.zeros(950), np.ones(50)].astype(np.float32)
    loss = InverseFrequencyMSE(y, abnormal, abnormal_column=0)
    w = loss.weights(torch.from_numpy(y), torch.from_numpy(abnormal[:, None]))
    assert w[950:].mean() > 10 * w[:950].mean()
    assert w.mean().item() == pytest.approx(1.0, rel=0.05)


def test_inverse_frequency_caps_the_product_of_its_factors():
    g = np.random.default_rng(2)
    y = np.concatenate([0.02 * g.normal(size=970), 0.5 + 0.05 * g.normal(size=30)]).astype(np.float32)
    abnormal = np.r_[np.zeros(970), np.ones(30)].astype(np.float32)
    loss = InverseFrequencyMSE(y, abnormal, abnormal_column=0, max_ratio=20.0)
    w = loss.weights(torch.from_numpy(y), torch.from_numpy(abnormal[:, None])).numpy()
    assert w.max() / np.median(w[:970]) <= 20.0 * 1.0001  # each factor alone is ~30x here: uncapped, 900x
    assert w.mean() == pytest.approx(1.0, rel=1e-4)
    assert 0.05 < loss.effective_sample_share <= 1.0
    assert loss.effective_sample_share == pytest.approx(float(w.sum() ** 2 / (len(w) * (w ** 2).sum())), rel=1e-4)


def test_balanced_mse_starts_at_the_labels_spread():
    y, extra = _data(64)
    loss = make_loss(LossSpec(loss="balanced-mse"), NAMES, y.numpy(), extra.numpy())
    assert float(loss.log_sigma.exp()) == pytest.approx(float(np.std(y.numpy())), rel=1e-5)


def test_category_weights_are_batch_normalised_and_all_ones_is_mse():
    y, extra = _data(40)
    y_hat = torch.zeros(40)
    ones = make_loss(LossSpec(loss="category-weights"), NAMES, y.numpy(), extra.numpy())
    assert torch.equal(ones(y_hat, y, extra), MSELoss()(y_hat, y))
    heavy = make_loss(LossSpec(loss="category-weights", category_weights="pedestrian=3"), NAMES, y.numpy(), extra.numpy())
    w = heavy.weights(extra)
    ped = extra[:, 4] > 0.5
    assert w.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(w[ped], 3 * w[~ped][0]) and torch.allclose(w[~ped], w[~ped][0])
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        make_loss(LossSpec(loss="category-weights", category_weights="cyclist=2"), NAMES, y.numpy(), extra.numpy())


def test_balanced_mse_learns_its_noise_scale():
    y, _ = _data(32)
    loss = BalancedMSE()
    y_hat = torch.zeros(32, requires_grad=True)
    value = loss(y_hat, y)
    value.backward()
    assert torch.isfinite(value) and loss.log_sigma.grad is not None and y_hat.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_is_selectable_by_name_and_trains(name):
    """Every loss on frames as ``--labels full`` shows them: scene features, then the log columns."""
    from training.data.label_view import LOG_COLUMNS, label_history

    y, extra = _data(64)
    g = np.random.default_rng(1)
    logged = np.column_stack([g.random(64) * 10, np.arange(64) * 0.2, g.random(64) * 60,
                              label_history(y.numpy(), np.zeros(64, dtype=np.int64)), np.arange(64)]).astype(np.float32)
    extra = torch.cat([extra, torch.from_numpy(logged)], dim=1)
    loss = make_loss(LossSpec(loss=name, features="ped_present,curvature_ahead_1pm,abnormal"), NAMES + list(LOG_COLUMNS), y.numpy(),
                     extra.numpy())
    torch.manual_seed(0)
    model = PilotNet(PilotNetConfig(width_mult=0.25))
    x = torch.randn(64, 3, 66, 200)
    opt = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=1e-3)
    first = None
    for _ in range(15):
        value = loss(model(x), y, extra)
        opt.zero_grad()
        value.backward()
        opt.step()
        first = first if first is not None else float(value.detach())
    assert torch.isfinite(value) and float(value) < first


def test_unknown_feature_is_a_clear_error():
    y, extra = _data(8)
    with pytest.raises(ValueError, match="unknown features \\['nope'\\]"):
        make_loss(LossSpec(loss="weighted", features="nope"), NAMES, y.numpy(), extra.numpy())


def test_ml3_loss_is_smallest_at_the_label_for_any_phi():
    """M_phi(y_hat, y) >= 0 and = 0 at y_hat = y, for random (not only initial) loss parameters;
    at initialisation it is exactly MSE."""
    from training.losses import ML3Loss

    y, extra = _data(64)
    feats = FeatureInput([0, 1, 2, 3], extra.mean(0), extra.std(0))
    loss = ML3Loss(feats)
    y_hat = y + 0.2 * torch.randn(64)
    assert torch.allclose(loss(y_hat, y, extra), torch.mean((y_hat - y) ** 2))
    for seed in range(5):
        torch.manual_seed(seed)
        for p in loss.parameters():
            torch.nn.init.normal_(p, std=2.0)
        at_label = loss.per_sample(y.clone(), y, extra)
        assert torch.equal(at_label, torch.zeros_like(at_label))
        for shift in (-0.5, -0.01, 0.01, 0.5):
            assert (loss.per_sample(y + shift, y, extra) > 0).all()
        y_var = y.clone().requires_grad_()
        loss(y_var, y, extra).backward()
        assert torch.equal(y_var.grad, torch.zeros_like(y))  # a stationary point at the label


def test_ml3_scales_the_squared_error_by_a_bounded_factor_read_on_the_labels_scale():
    """For random phi and labels far off any training range, M / (y_hat - y)^2 stays in [1/GAIN, GAIN];
    scaling labels and predictions by k scales M by exactly k^2 (the network reads them divided by the label scale)."""
    from training.losses.ml3 import GAIN, ML3Loss

    y, extra = _data(64)
    loss = ML3Loss(FeatureInput([0, 1, 2, 3], extra.mean(0), extra.std(0)))
    for seed in range(5):
        torch.manual_seed(seed)
        for p in loss.parameters():
            torch.nn.init.normal_(p, std=3.0)
        for k in (1e-3, 1.0, 1e3):
            y_hat = k * (y + torch.randn(64))
            factor = loss.per_sample(y_hat, k * y, extra) / (y_hat - k * y) ** 2
            assert (factor >= 1 / GAIN * (1 - 1e-5)).all() and (factor <= GAIN * (1 + 1e-5)).all()
        y_hat = y + torch.randn(64)
        assert torch.allclose(loss.per_sample(50 * y_hat, 50 * y, extra), 2500 * loss.per_sample(y_hat, y, extra), rtol=1e-4)


@pytest.mark.parametrize("batch", [16, 7])
def test_the_weighting_that_reads_the_loss_is_mse_at_tau_zero_and_reacts_to_the_error(batch):
    y, extra = _data(batch)
    loss = WeightedMSE(FeatureInput([0, 1, 2, 3], extra.mean(0), extra.std(0)), tau=0.0, reads_loss=True)
    for p in loss.parameters():
        torch.nn.init.normal_(p, std=1.0)
    y_hat = y + 0.1 * torch.randn(batch)
    assert torch.equal(loss(y_hat, y, extra), MSELoss()(y_hat, y, extra))
    loss.tau = 1.0
    sq = (y_hat - y) ** 2
    assert not torch.equal(loss.weights(extra, sq), loss.weights(extra, sq * 100))  # the error is an input
    y_var = y_hat.clone().requires_grad_()
    loss(y_var, y, extra).backward()
    w = loss.weights(extra, sq)
    assert torch.allclose(y_var.grad, 2 * w * (y_hat - y) / batch, atol=1e-7)  # no gradient through the weight


@pytest.mark.parametrize("batch", [16, 7])
def test_the_label_free_weighting_with_tau_zero_is_exactly_mse_in_value_and_gradient(batch):
    from training.data.label_view import LOG_COLUMNS
    from training.losses.label_free_weighted import LabelFreeWeightedMSE

    g = np.random.default_rng(1)
    extra_train = g.normal(size=(64, len(LOG_COLUMNS))).astype(np.float32)
    y_train = (0.2 * g.normal(size=64)).astype(np.float32)
    torch.manual_seed(0)
    model = PilotNet(PilotNetConfig(width_mult=0.25))
    width = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].in_features
    weighted = LabelFreeWeightedMSE(list(LOG_COLUMNS), y_train, extra_train, penultimate=width, tau=0.0)
    weighted.watch(model)
    for p in weighted.parameters():  # a non-trivial scorer reading the penultimate features: only tau = 0 makes it MSE
        torch.nn.init.normal_(p, std=1.0)
    x, y, extra = torch.randn(batch, 3, 66, 200), torch.from_numpy(y_train[:batch]), torch.from_numpy(extra_train[:batch])
    l_w, g_w = _grads(weighted, model, x, y, extra)
    l_m, g_m = _grads(MSELoss(), model, x, y, extra)
    assert torch.equal(l_w, l_m) and all(torch.equal(a, b) for a, b in zip(g_w, g_m))
    weighted.tau = 1.0
    assert not torch.equal(_grads(weighted, model, x, y, extra)[0], l_m)
