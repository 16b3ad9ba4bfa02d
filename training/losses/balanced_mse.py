"""Balanced MSE (Ren et al., CVPR 2022), batch Monte-Carlo form (BMC).

Treats the batch's targets as samples of the training label distribution and scores each
prediction against all of them: CE over -(y_hat_i - y_j)^2 / (2 sigma^2) with target j = i, scaled by
2 sigma^2 (detached). ``sigma`` (label noise) is learned with the model, as in the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BalancedMSE(nn.Module):
    """Shapes as ``MSELoss``. ``init_sigma``: initial noise scale, in label units."""

    def __init__(self, init_sigma: float = 0.1) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(init_sigma)))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        noise_var = torch.exp(2 * self.log_sigma)
        logits = -((y_hat.unsqueeze(1) - y.unsqueeze(0)) ** 2) / (2 * noise_var)
        loss = F.cross_entropy(logits, torch.arange(y.shape[0], device=y.device))
        return loss * (2 * noise_var).detach()
