"""The virtual inner update of a meta step, differentiable in phi through the gradient ``g``.

``SGD``: theta - lr * g (the ML3 paper). ``AdamLookahead``: the step the model's *real* Adam
optimiser would take next, from its current moments and learning rate and with the same gradient-norm
clipping, so phi is judged by the update the model will actually get (a one-step SGD lookahead at
another step size favours what helps SGD, not Adam: short-horizon bias).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SGD:
    def __init__(self, lr: float) -> None:
        self.lr = float(lr)

    def __call__(self, params: dict[str, torch.Tensor], grads: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: p - self.lr * g for (n, p), g in zip(params.items(), grads)}


class AdamLookahead:
    """Reads (never writes) ``opt``'s state for ``model``'s parameters (by name). The first moment
    carries phi's gradient; the second moment and the clipping factor enter as constants (detached),
    as a preconditioner. Over K unrolled steps the virtual moments evolve as the real ones would."""

    def __init__(self, model: nn.Module, opt: torch.optim.Adam, clip: float = 0.0) -> None:
        group = opt.param_groups[0]
        if group.get("weight_decay", 0.0) or group.get("amsgrad", False):
            raise ValueError("AdamLookahead models plain Adam (no weight decay, no AMSGrad)")
        self.lr, (self.b1, self.b2), self.eps, self.clip = float(group["lr"]), group["betas"], group["eps"], clip
        self.moments: dict[str, tuple[torch.Tensor | float, torch.Tensor | float, float]] = {}
        for name, p in model.named_parameters():
            st = opt.state.get(p, {})
            self.moments[name] = (st["exp_avg"], st["exp_avg_sq"], float(st["step"])) if st else (0.0, 0.0, 0.0)

    def __call__(self, params: dict[str, torch.Tensor], grads: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        scale = 1.0
        if self.clip > 0:  # torch.nn.utils.clip_grad_norm_'s factor, from the same gradients
            norm = math.sqrt(sum(float(g.detach().pow(2).sum()) for g in grads))
            scale = min(1.0, self.clip / (norm + 1e-6))
        out = {}
        for (name, p), g in zip(params.items(), grads):
            g = g * scale
            m, v, t = self.moments[name]
            m = self.b1 * m + (1 - self.b1) * g
            v = self.b2 * v + (1 - self.b2) * g.detach() ** 2
            t += 1
            self.moments[name] = (m, v, t)
            denom = (v.sqrt() / math.sqrt(1 - self.b2 ** t)) + self.eps
            out[name] = p - (self.lr / (1 - self.b1 ** t)) * m / denom
        return out
