"""The bilevel loop: each meta step computes phi's meta-gradient through virtual inner steps and
takes an Adam step on phi; then the model moves on, either by an Adam step on the updated learned
loss (``model_update="adam"``, Meta-Weight-Net style: phi is learned along a real training
trajectory) or by taking the inner steps themselves (``"inner"``, ML3 style). The model is
re-initialised every ``reset_every`` steps so phi sees every stage of training.

``schedule="pretrain"`` meta-trains phi on its own model first and then freezes it for a fresh model
(ML3's meta-test protocol); ``"online"`` learns phi along the very run that produces the shipped model,
every ``meta_every`` of its steps, with a lookahead through that run's own Adam state
(``PhiUpdater.update``).

Measured on this project's data (tuning seeds, not the benchmark's): with ``"inner"`` updates on a
freshly reset model, the one-step lookahead learned to *down*-weight the rare frames (an untrained
model is best served by fitting the majority first); along an Adam trajectory it up-weights them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from training.meta.engine_func import meta_gradient as meta_gradient_func
from training.meta.engine_func import meta_gradient_head
from training.meta.engine_higher import meta_gradient as meta_gradient_higher
from training.meta.lookahead import SGD, AdamLookahead
from training.meta.types import Batch, MetaResult, TaskLoss

ENGINES = {"func": meta_gradient_func, "higher": meta_gradient_higher}
ENGINE_NAMES = tuple(ENGINES)


@dataclass(frozen=True)
class MetaConfig:
    schedule: str = field(default="pretrain", metadata={"help": "pretrain: meta-train phi, then freeze it for a fresh model; online: learn phi "
                                                                "along the shipped model's own training run", "choices": ("pretrain", "online")})
    meta_every: int = field(default=1, metadata={"range": (1, None), "help": "online: one meta step every N training steps"})
    lookahead: str = field(default="sgd", metadata={"help": "virtual inner update: SGD at inner_lr, or the model optimiser's next Adam step",
                                                    "choices": ("sgd", "adam")})
    engine: str = field(default="func", metadata={"help": "meta-gradient engine", "choices": ENGINE_NAMES})
    inner_lr: float = field(default=0.01, metadata={"range": (0.0, None), "help": "SGD step size of the (virtual) inner update (lookahead sgd)"})
    meta_lr: float = field(default=1e-2, metadata={"range": (0.0, None), "help": "Adam step size of the loss parameters"})
    unroll: int = field(default=1, metadata={"range": (1, None), "help": "inner steps per meta step (K)"})
    reset_every: int = field(default=0, metadata={"range": (0, None), "help": "re-initialise the model every N meta steps (0: never)"})
    head_only: bool = field(default=False, metadata={"help": "cheap meta-gradient through the head only"})
    abnormal_emphasis: float = field(default=1.0, metadata={"range": (0.0, None), "help": "meta-train-only extra: task loss adds this x MSE on abnormal meta frames"})
    model_update: str = field(default="adam", metadata={"help": "how the model moves after a meta step", "choices": ("adam", "inner")})
    model_lr: float = field(default=1e-3, metadata={"range": (0.0, None), "help": "Adam step size of the model when model_update=adam"})


def emphasised_mse(abnormal_column: int | None, emphasis: float) -> TaskLoss:
    """Task loss: MSE, plus ``emphasis`` x MSE over the batch's abnormal frames (information that
    exists only at meta-train time, shaping what the loss learns)."""

    def task(y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        err = (y_hat - y) ** 2
        loss = err.mean()
        if emphasis and abnormal_column is not None:
            mask = (extra[:, abnormal_column] > 0.5).float()
            loss = loss + emphasis * (err * mask).sum() / mask.sum().clamp_min(1.0)
        return loss

    return task


class PhiUpdater:
    """The learned loss, the task loss and phi's Adam optimiser: ``update`` takes one meta step through
    any model's virtual update (the model itself is not changed)."""

    def __init__(self, learned_loss: nn.Module, task_loss: TaskLoss, cfg: MetaConfig) -> None:
        self.cfg, self.loss, self.task = cfg, learned_loss, task_loss
        self.engine = meta_gradient_head if cfg.head_only else ENGINES[cfg.engine]
        self.opt = torch.optim.Adam([p for p in learned_loss.parameters() if p.requires_grad], lr=cfg.meta_lr)

    def update(self, model: nn.Module, inner: list[Batch], meta: Batch, model_opt: torch.optim.Adam | None = None,
               clip: float = 0.0) -> MetaResult:
        """``model_opt`` and ``clip``: the real optimiser and gradient clipping the Adam lookahead mirrors."""
        if self.cfg.lookahead == "adam":
            if model_opt is None:
                raise ValueError("the Adam lookahead needs the model's optimiser")
            lookahead = AdamLookahead(model, model_opt, clip)
        else:
            lookahead = SGD(self.cfg.inner_lr)
        result = self.engine(model, self.loss, self.task, inner, meta, lookahead)
        self.opt.zero_grad(set_to_none=True)
        for p, g in zip((p for p in self.loss.parameters() if p.requires_grad), result.phi_grads):
            p.grad = g
        self.opt.step()
        return result


class MetaTrainer:
    """Owns the model under meta-training, the learned loss and phi's optimiser.

    ``model_factory(seed)`` builds a fresh model (used at every reset, seeded by the reset count).
    """

    def __init__(self, model_factory: Callable[[int], nn.Module], learned_loss: nn.Module, task_loss: TaskLoss,
                 cfg: MetaConfig, seed: int = 0) -> None:
        self.cfg, self.factory, self.seed = cfg, model_factory, seed
        self.loss = learned_loss
        self.phi = PhiUpdater(learned_loss, task_loss, cfg)
        self.steps = 0
        self._new_model(seed)

    def _new_model(self, seed: int) -> None:
        self.model = self.factory(seed)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.model_lr)

    def step(self, inner: list[Batch], meta: Batch) -> dict:
        """One meta step on ``len(inner) == cfg.unroll`` training batches and one meta batch."""
        if self.cfg.reset_every and self.steps and self.steps % self.cfg.reset_every == 0:
            self._new_model(self.seed + self.steps // self.cfg.reset_every)
        result = self.phi.update(self.model, inner, meta, self.model_opt)
        if self.cfg.model_update == "inner":
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    p.copy_(result.params[name])
        else:
            x, y, extra = inner[0]
            loss = self.loss(self.model(x), y, extra)
            self.model_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.model_opt.step()
            self.loss.zero_grad(set_to_none=True)  # phi learns from the meta-gradient only
        self.steps += 1
        return {"task_loss": result.task_loss, "inner_loss": result.inner_loss}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "model_opt": self.model_opt.state_dict(), "loss": self.loss.state_dict(),
                "opt": self.phi.opt.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self._new_model(self.seed + (self.steps // self.cfg.reset_every if self.cfg.reset_every else 0))
        self.model.load_state_dict(state["model"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.loss.load_state_dict(state["loss"])
        self.phi.opt.load_state_dict(state["opt"])
