"""Loss-based emphasis (focal-style; the input Meta-Weight-Net reads, without the meta-learning): each frame's
squared error weighs (its error / the batch's mean error) ** ``gamma``, detached (no path for the model to shrink
its loss through the weight) and normalised to mean 1 over the batch. ``gamma`` = 0 is exactly MSE."""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-12  # a batch fitted exactly still gives finite weights


class LossEmphasisMSE(nn.Module):
    """Shapes as ``MSELoss``; ``extra`` is ignored."""

    def __init__(self, gamma: float = 1.0) -> None:
        super().__init__()
        self.gamma = float(gamma)

    def weights(self, sq_err: torch.Tensor) -> torch.Tensor:
        e = sq_err.detach()
        w = ((e + EPS) / (e.mean() + EPS)) ** self.gamma
        return w / w.mean()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        sq_err = (y_hat - y) ** 2
        return torch.mean(self.weights(sq_err) * sq_err)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
