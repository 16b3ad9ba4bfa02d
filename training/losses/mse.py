"""Plain mean squared error."""

import torch
from torch import nn


class MSELoss(nn.Module):
    """mean((y_hat - y)^2) over the batch; ``extra`` is ignored."""

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mean((y_hat - y) ** 2)
