"""Meta-gradients: the torch.func and higher engines agree; the head-only variant points the same
way; the engine is generic (not only the steering CNN)."""

import pytest
import torch
from torch import nn

from training.losses import ML3Loss
from training.losses.features import FeatureInput
from training.losses.weighted import WeightedMSE
from training.meta import ENGINES, MetaConfig, MetaTrainer, meta_gradient_head
from training.meta.lookahead import SGD, AdamLookahead
from training.meta.trainer import emphasised_mse
from training.models import PilotNet, PilotNetConfig


def _batch(n, g):
    extra = torch.randn(n, 4, generator=g)
    extra[:, 3] = (torch.rand(n, generator=g) < 0.3).float()
    return torch.randn(n, 3, 66, 200, generator=g), 0.2 * torch.randn(n, generator=g), extra


def _losses():
    feats = FeatureInput([0, 1, 2], torch.zeros(4), torch.ones(4))
    weighted = WeightedMSE(feats, tau=1.5)
    torch.nn.init.normal_(weighted.score[-1].weight, std=0.5)
    return [ML3Loss(feats), weighted]


@pytest.mark.parametrize("steps", [1, 5])
def test_func_and_higher_meta_gradients_agree(steps):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = PilotNet(PilotNetConfig(width_mult=0.5))
    inner, meta = [_batch(6, g) for _ in range(steps)], _batch(6, g)
    task = emphasised_mse(3, 1.0)
    for loss in _losses():
        a = ENGINES["func"](model, loss, task, inner, meta, SGD(0.05))
        b = ENGINES["higher"](model, loss, task, inner, meta, SGD(0.05))
        assert max(float((x - y).abs().max()) for x, y in zip(a.phi_grads, b.phi_grads)) <= 1e-6
        assert any(float(x.abs().max()) > 1e-6 for x in a.phi_grads)  # not trivially zero
        assert all(torch.allclose(a.params[n], b.params[n], atol=1e-6) for n in a.params)


def test_head_only_meta_gradient_points_the_same_way():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = PilotNet(PilotNetConfig(width_mult=0.5))
    inner, meta = [_batch(8, g)], _batch(8, g)
    for loss in _losses():
        full = ENGINES["func"](model, loss, emphasised_mse(3, 1.0), inner, meta, SGD(0.05))
        cheap = meta_gradient_head(model, loss, emphasised_mse(3, 1.0), inner, meta, SGD(0.05))
        a, b = (torch.cat([t.flatten() for t in r.phi_grads]) for r in (full, cheap))
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9


def test_engine_is_generic_learned_loss_for_sine_regression():
    """Beyond driving: ML3 on 1-D sine regression with a plain MLP; the frozen learned loss then
    trains a fresh MLP (meta-test) to a lower task error than where it started."""
    g = torch.Generator().manual_seed(0)

    def batch(n=32):
        x = torch.rand(n, 1, generator=g) * 6 - 3
        return x, torch.sin(x).squeeze(-1), torch.zeros(n, 0)

    def factory(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 1), nn.Flatten(0))

    loss = ML3Loss(None)
    mse = lambda y_hat, y, extra: torch.mean((y_hat - y) ** 2)  # noqa: E731
    trainer = MetaTrainer(factory, loss, mse, MetaConfig(inner_lr=0.05, meta_lr=3e-3, reset_every=50), seed=0)
    for _ in range(150):
        trainer.step([batch()], batch())
    model = factory(123)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y, e = batch(256)
    before = float(mse(model(x), y, e))
    for p in loss.parameters():
        p.requires_grad_(False)
    for _ in range(200):
        xb, yb, eb = batch()
        opt.zero_grad()
        loss(model(xb), yb, eb).backward()
        opt.step()
    assert float(mse(model(x), y, e)) < 0.5 * before


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_adam_lookahead_is_the_step_the_real_optimiser_takes(clip):
    """After a few real Adam steps (moments non-zero), the lookahead of the next step equals the real
    clipped Adam step on the same batch; with a tiny clip norm the clipping is what decides."""
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = PilotNet(PilotNetConfig(width_mult=0.5))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    mse = lambda y_hat, y, extra: torch.mean((y_hat - y) ** 2)  # noqa: E731
    for _ in range(3):
        x, y, e = _batch(8, g)
        opt.zero_grad()
        mse(model(x), y, e).backward()
        opt.step()
    batch = _batch(8, g)
    loss = _losses()[1]
    result = ENGINES["func"](model, loss, mse, [batch], _batch(8, g), AdamLookahead(model, opt, clip))
    opt.zero_grad()
    loss(model(batch[0]), batch[1], batch[2]).backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        assert torch.allclose(result.params[n], p.detach(), atol=1e-6, rtol=1e-5), n
    moved = max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters())
    assert moved > (1e-5 if clip else 1e-3)  # the step is real, not a no-op that trivially matches


def test_higher_engine_refuses_the_adam_lookahead():
    model = PilotNet(PilotNetConfig(width_mult=0.5))
    opt = torch.optim.Adam(model.parameters())
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="SGD lookahead only"):
        ENGINES["higher"](model, _losses()[1], emphasised_mse(3, 1.0), [_batch(4, g)], _batch(4, g), AdamLookahead(model, opt))


def test_meta_step_bench_runs_on_real_frames_with_the_training_features():
    """The benchmark builds its loss on the features training uses (category one-hots included) and
    times every engine; its cosine compares two real meta-gradients."""
    from training.bench.meta_step import bench_meta_step

    out = bench_meta_step(batch=8, repeats=1)
    assert set(out["meta_step_s"]) == {f"{e}_k{k}" for e in ENGINES for k in (1, 5)} | {"head_only_k1"}
    assert all(v > 0 for v in out["meta_step_s"].values()) and out["plain_step_s"] > 0
    assert out["cheap_grad_batches"] >= 1 and -1.0 <= out["cheap_grad_cosine_min"] <= out["cheap_grad_cosine"] <= 1.0
