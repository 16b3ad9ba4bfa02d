"""ML3 learned loss network (Bechtle et al., "Meta Learning via Learned Loss", 2021).

M_phi(y_hat, y[, features]) = (y_hat - y)^2 * (c_phi(y_hat, y, y_hat - y[, features]) + FLOOR) / (c_0 +
FLOOR), with c_phi a network of two hidden layers (40 units as in the paper, ReLU) and a Softplus
output, c_0 = Softplus(0). Its only minimum is at y_hat = y by construction (0 there, > 0 elsewhere) for every phi:
the paper's free-form output diverged on driving data at meta-test (abnormal MAE 0.44: its minimum
drove predictions to the tanh limits). The output layer starts at zero, so M starts as exactly MSE.
Extra information that exists only at meta-train time shapes it through the task loss of the
meta-trainer, not through its inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses.features import FeatureInput

FLOOR = 0.01  # keeps the curvature positive where the Softplus underflows: the minimum stays strict


class ML3Loss(nn.Module):
    """Shapes: ``y_hat``, ``y`` (B,); ``extra`` (B, F), read only when ``features`` is given."""

    def __init__(self, features: FeatureInput | None = None, hidden: int = 40) -> None:
        super().__init__()
        self.inputs = features
        n_in = 3 + (features.size if features is not None else 0)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Softplus())
        nn.init.zeros_(self.net[-2].weight)  # c_phi = c_0 everywhere: exactly MSE at the start
        nn.init.zeros_(self.net[-2].bias)
        self.norm = float(nn.functional.softplus(torch.zeros(()))) + FLOOR

    def per_sample(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        err = y_hat - y
        parts = [y_hat.unsqueeze(-1), y.unsqueeze(-1), err.unsqueeze(-1)]
        if self.inputs is not None:
            parts.append(self.inputs(extra))
        return err ** 2 * (self.net(torch.cat(parts, dim=-1)).squeeze(-1) + FLOOR) / self.norm

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.per_sample(y_hat, y, extra).mean()
