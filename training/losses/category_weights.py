"""Fixed category weights: a hand-set baseline for "these rare scenes count more".

w_i = weight of frame i's rare category (1 for the normal road), divided by the batch mean so the
weights average 1 (the step size stays that of MSE); all weights 1 is exactly MSE.
"""

from __future__ import annotations

import torch
from torch import nn


class CategoryWeightedMSE(nn.Module):
    """``columns``: indices in ``extra`` of the category one-hots; ``weights``: one per column.
    Shapes as ``MSELoss``."""

    def __init__(self, columns: list[int], weights: list[float]) -> None:
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.register_buffer("excess", torch.as_tensor(weights, dtype=torch.float32) - 1.0)

    def weights(self, extra: torch.Tensor) -> torch.Tensor:
        w = 1.0 + extra[:, self.columns] @ self.excess
        return w / w.mean()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.weights(extra) * (y_hat - y) ** 2)

    def extra_repr(self) -> str:
        return f"weights={[round(1.0 + float(e), 3) for e in self.excess]}"
