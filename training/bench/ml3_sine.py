"""``metasteer bench ml3-sine``: the ML3 paper's sine-regression protocol through the project's engine.

Meta-train an ML3 loss (``training.losses.ml3``) with ``MetaTrainer`` on one sine (amplitude 1, phase 0,
x in [-2, 2]): the model takes the inner SGD steps itself and is re-initialised every ``reset_every``
meta steps, so phi learns what helps a fresh model's first steps. Then freeze it and train fresh MLPs
on unseen sines (amplitude 0.2-5, phase -pi..pi, x in [-5, 5]) for ``test_steps`` SGD steps with it and,
from the same initial weights and batches, with MSE. The score per seed is the ratio of their mean
test MSEs over the tasks (below 1: the learned loss wins); a non-finite error counts as a loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from training.losses.ml3 import ML3Loss
from training.meta import MetaConfig, MetaTrainer
from training.meta.types import Batch


@dataclass(frozen=True)
class SineProtocol:
    meta_steps: int = 300  # meta steps on the meta-training sine
    unroll: int = 5  # inner SGD steps per meta step
    reset_every: int = 20  # meta steps between fresh models: unroll x reset_every = test_steps
    meta_lr: float = 1e-3  # Adam step size of phi
    tasks: int = 20  # unseen sines per seed at meta-test
    test_steps: int = 100  # SGD steps of a fresh model at meta-test
    lr: float = 1e-3  # SGD step size, at meta-train (inner) and at meta-test
    batch: int = 64  # points per SGD step (drawn anew each step)
    test_points: int = 1000  # evenly spaced points the test error is measured on


def mlp(seed: int) -> nn.Module:
    """The paper's regressor: two hidden layers of 40 ReLU units."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1), nn.Flatten(0))


@dataclass(frozen=True)
class Sine:
    amplitude: float
    phase: float
    x_max: float

    def batch(self, n: int, g: torch.Generator) -> Batch:
        return self.at((torch.rand(n, 1, generator=g) * 2 - 1) * self.x_max)

    def grid(self, n: int) -> Batch:
        return self.at(torch.linspace(-self.x_max, self.x_max, n).unsqueeze(-1))

    def at(self, x: torch.Tensor) -> Batch:
        return x, self.amplitude * torch.sin(x + self.phase).squeeze(-1), torch.zeros(len(x), 0)


TRAIN_SINE = Sine(1.0, 0.0, 2.0)


def unseen_sine(g: torch.Generator) -> Sine:
    amplitude, phase = torch.rand(2, generator=g).tolist()
    return Sine(0.2 + 4.8 * amplitude, math.pi * (2 * phase - 1), 5.0)


def _mse(y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    return torch.mean((y_hat - y) ** 2)


def meta_train(p: SineProtocol, seed: int) -> ML3Loss:
    """An ML3 loss meta-trained on ``TRAIN_SINE``, returned frozen."""
    torch.manual_seed(seed)
    loss = ML3Loss(None)
    cfg = MetaConfig(model_update="inner", inner_lr=p.lr, meta_lr=p.meta_lr, unroll=p.unroll, reset_every=p.reset_every)
    trainer = MetaTrainer(mlp, loss, _mse, cfg, seed=seed * 100_003)
    g = torch.Generator().manual_seed(seed)
    for _ in range(p.meta_steps):
        trainer.step([TRAIN_SINE.batch(p.batch, g) for _ in range(p.unroll)], TRAIN_SINE.batch(p.batch, g))
    return loss.requires_grad_(False)


def fit(loss: nn.Module, sine: Sine, p: SineProtocol, seed: int, lr: float) -> float:
    """Test MSE of a fresh MLP (weights and batches fixed by ``seed``) after ``p.test_steps`` SGD steps on ``loss``."""
    model = mlp(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(p.test_steps):
        x, y, extra = sine.batch(p.batch, g)
        opt.zero_grad(set_to_none=True)
        loss(model(x), y, extra).backward()
        opt.step()
    x, y, extra = sine.grid(p.test_points)
    with torch.no_grad():
        return float(_mse(model(x), y))


def meta_test(loss: nn.Module, p: SineProtocol, seed: int, lr_factor: float = 1.0, baseline: nn.Module | None = None) -> dict:
    """Mean test MSE over ``p.tasks`` unseen sines, for ``loss`` and for ``baseline`` (MSE by default) from the
    same starts and batches."""
    g = torch.Generator().manual_seed(10_000 + seed)
    sines = [unseen_sine(g) for _ in range(p.tasks)]
    lr = p.lr * lr_factor
    learned = [fit(loss, s, p, 1000 * seed + i, lr) for i, s in enumerate(sines)]
    base = [fit(baseline or _mse, s, p, 1000 * seed + i, lr) for i, s in enumerate(sines)]
    mean_l, mean_b = sum(learned) / len(learned), sum(base) / len(base)
    finite = all(math.isfinite(v) for v in learned)
    return {"learned": mean_l, "baseline": mean_b, "ratio": mean_l / mean_b if finite else math.inf, "finite": finite}


def bench_ml3_sine(p: SineProtocol = SineProtocol(), seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
                   lr_factors: tuple[float, ...] = (1.0, 10.0)) -> dict:
    per_seed = []
    for seed in seeds:
        loss = meta_train(p, seed)
        per_seed.append({"seed": seed} | {f"lr_x{f:g}": meta_test(loss, p, seed, f) for f in lr_factors})
    summary = {}
    for f in lr_factors:
        rows = [s[f"lr_x{f:g}"] for s in per_seed]
        summary[f"lr_x{f:g}"] = {"mean_ratio": sum(r["ratio"] for r in rows) / len(rows),
                                 "wins": sum(r["ratio"] < 1 for r in rows), "all_finite": all(r["finite"] for r in rows)}
    return {"protocol": asdict(p), "seeds": per_seed, "summary": summary}
