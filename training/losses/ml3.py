"""ML3 learned loss network (Bechtle et al., "Meta Learning via Learned Loss", 2021).

M_phi(y_hat, y[, features]): two hidden layers (40 units as in the paper), ReLU, no biases,
Softplus output (non-negative), mean over the batch. Beyond the paper's inputs (y_hat, y) it also
reads the error y_hat - y: a loss that is smallest at y_hat = y is then one ReLU away instead of a
function to discover (measured: with few meta steps, the paper's inputs gave a loss whose minimum
drove predictions to the tanh limits). Extra information that exists only at meta-train time shapes
it through the task loss of the meta-trainer, not through its inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses.features import FeatureInput


class ML3Loss(nn.Module):
    """Shapes: ``y_hat``, ``y`` (B,); ``extra`` (B, F), read only when ``features`` is given."""

    def __init__(self, features: FeatureInput | None = None, hidden: int = 40) -> None:
        super().__init__()
        self.inputs = features
        n_in = 3 + (features.size if features is not None else 0)
        self.net = nn.Sequential(nn.Linear(n_in, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, hidden, bias=False), nn.ReLU(),
                                 nn.Linear(hidden, 1, bias=False), nn.Softplus())

    def per_sample(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        parts = [y_hat.unsqueeze(-1), y.unsqueeze(-1), (y_hat - y).unsqueeze(-1)]
        if self.inputs is not None:
            parts.append(self.inputs(extra))
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.per_sample(y_hat, y, extra).mean()
