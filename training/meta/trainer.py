"""The bilevel loop: each meta step computes phi's meta-gradient through virtual inner steps and
takes an Adam step on phi; then the model moves on, either by an Adam step on the updated learned
loss (``model_update="adam"``, Meta-Weight-Net style: phi is learned along a real training
trajectory) or by taking the inner steps themselves (``"inner"``, ML3 style). The model is
re-initialised every ``reset_every`` steps so phi sees every stage of training.

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
from training.meta.types import Batch, TaskLoss

ENGINES = {"func": meta_gradient_func, "higher": meta_gradient_higher}

ENGINE_NAMES = ("func", "higher")


@dataclass(frozen=True)
class MetaConfig:
    engine: str = field(default="func", metadata={"help": "meta-gradient engine", "choices": ENGINE_NAMES})
    inner_lr: float = field(default=0.01, metadata={"help": "SGD step size of the (virtual) inner update"})
    meta_lr: float = field(default=1e-2, metadata={"help": "Adam step size of the loss parameters"})
    unroll: int = field(default=1, metadata={"help": "inner steps per meta step (K)"})
    reset_every: int = field(default=0, metadata={"help": "re-initialise the model every N meta steps (0: never)"})
    head_only: bool = field(default=False, metadata={"help": "cheap meta-gradient through the head only"})
    abnormal_emphasis: float = field(default=1.0, metadata={"help": "meta-train-only extra: task loss adds this x MSE on abnormal meta frames"})
    model_update: str = field(default="adam", metadata={"help": "how the model moves after a meta step", "choices": ("adam", "inner")})
    model_lr: float = field(default=1e-3, metadata={"help": "Adam step size of the model when model_update=adam"})


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


class MetaTrainer:
    """Owns the model under meta-training, the learned loss and phi's optimiser.

    ``model_factory(seed)`` builds a fresh model (used at every reset, seeded by the reset count).
    """

    def __init__(self, model_factory: Callable[[int], nn.Module], learned_loss: nn.Module, task_loss: TaskLoss,
                 cfg: MetaConfig, seed: int = 0) -> None:
        self.cfg, self.factory, self.seed = cfg, model_factory, seed
        self.loss, self.task = learned_loss, task_loss
        self.engine = meta_gradient_head if cfg.head_only else ENGINES[cfg.engine]
        self.opt = torch.optim.Adam([p for p in learned_loss.parameters() if p.requires_grad], lr=cfg.meta_lr)
        self.steps = 0
        self._new_model(seed)

    def _new_model(self, seed: int) -> None:
        self.model = self.factory(seed)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.model_lr)

    def step(self, inner: list[Batch], meta: Batch) -> dict:
        """One meta step on ``len(inner) == cfg.unroll`` training batches and one meta batch."""
        if self.cfg.reset_every and self.steps and self.steps % self.cfg.reset_every == 0:
            self._new_model(self.seed + self.steps // self.cfg.reset_every)
        result = self.engine(self.model, self.loss, self.task, inner, meta, self.cfg.inner_lr)
        self.opt.zero_grad(set_to_none=True)
        for p, g in zip((p for p in self.loss.parameters() if p.requires_grad), result.phi_grads):
            p.grad = g
        self.opt.step()
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
                "opt": self.opt.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self._new_model(self.seed + (self.steps // self.cfg.reset_every if self.cfg.reset_every else 0))
        self.model.load_state_dict(state["model"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.loss.load_state_dict(state["loss"])
        self.opt.load_state_dict(state["opt"])
