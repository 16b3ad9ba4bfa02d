"""Learned per-sample weighting: w = normalise(exp(tau * s_phi(features))), loss = mean(w (y_hat - y)^2).

The weights read scene features only (never the model's prediction) and are normalised over the
batch to mean 1, so the model cannot shrink its own loss through them (the failure of the original
"tau" loss, which weighted by exp(tau * y_hat)). tau = 0 gives w = 1: exactly MSE.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses.features import FeatureInput


class WeightedMSE(nn.Module):
    """Shapes: ``y_hat``, ``y`` (B,); ``extra`` (B, F). ``tau``: temperature (a hyperparameter,
    not learned); ``hidden``: width of the two-layer scoring MLP s_phi."""

    def __init__(self, features: FeatureInput, tau: float = 1.0, hidden: int = 32) -> None:
        super().__init__()
        self.inputs, self.tau = features, float(tau)
        self.score = nn.Sequential(nn.Linear(features.size, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[-1].weight)  # start at uniform weights: MSE
        nn.init.zeros_(self.score[-1].bias)

    def weights(self, extra: torch.Tensor) -> torch.Tensor:
        """(B,) weights, mean 1 over the batch: B * softmax(tau * s), written as e / mean(e) so that
        tau = 0 gives exactly 1.0 for any batch size (B * (1 / B) is not 1 in floating point)."""
        z = self.tau * self.score(self.inputs(extra)).squeeze(-1)
        e = torch.exp(z - z.max().detach())
        return e / e.mean()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.weights(extra) * (y_hat - y) ** 2)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, features={self.inputs.size}"
