"""Failure proximity (CW-ERM, Kumar et al. 2022): frames within ``window_s`` seconds before an infraction of the
policy that drove them (DAgger rounds record when each happened) weigh ``weight`` x, the others 1. Label-free: a
fleet log knows when the car failed, not what the scene was. Weights are divided by their mean over the training
set, so the average step size is that of MSE."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def near_failure(time_to_infraction_s: torch.Tensor, window_s: float) -> torch.Tensor:
    """(B,) bool: the frame is at most ``window_s`` before its episode's next infraction onset (onset included)."""
    return (time_to_infraction_s >= 0) & (time_to_infraction_s <= window_s)


class FailureProximityMSE(nn.Module):
    """``column``: index of ``time_to_infraction_s`` in ``extra``; ``ttf_train``: that column on the training set.
    Shapes as ``MSELoss``."""

    def __init__(self, column: int, ttf_train: np.ndarray, window_s: float = 3.0, weight: float = 3.0) -> None:
        super().__init__()
        self.column, self.window_s, self.weight = column, float(window_s), float(weight)
        self.register_buffer("norm", torch.tensor(1.0))
        self.norm.fill_(float(self.raw_weights(torch.as_tensor(ttf_train, dtype=torch.float32)).mean()))

    def raw_weights(self, ttf: torch.Tensor) -> torch.Tensor:
        return torch.where(near_failure(ttf, self.window_s), torch.full_like(ttf, self.weight), torch.ones_like(ttf))

    def weights(self, extra: torch.Tensor) -> torch.Tensor:
        return self.raw_weights(extra[:, self.column]) / self.norm

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.weights(extra) * (y_hat - y) ** 2)

    def extra_repr(self) -> str:
        return f"window_s={self.window_s}, weight={self.weight}"
