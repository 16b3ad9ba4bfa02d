"""ML3 learned loss network (Bechtle et al., "Meta Learning via Learned Loss", 2021).

M_phi(y_hat, y[, features]) = (y_hat - y)^2 * c, with the curvature factor
c = GAIN ** tanh(h_phi(y_hat / s, y / s, (y_hat - y) / s[, features])), h_phi a network of two hidden
layers (40 units as in the paper, ReLU) and s the batch's label scale (root mean square of y, detached).

- Its only minimum is at y_hat = y for every phi (c > 0): the paper's free-form output diverged on
  driving data at meta-test (its minimum drove predictions to the tanh limits).
- c stays within [1 / GAIN, GAIN]: an unbounded factor (the earlier Softplus) scaled steps by orders of
  magnitude off the range it was meta-trained on, and SGD diverged (NaN on 4 of 5 seeds of the sine
  protocol, ``training.bench.ml3_sine``). Inputs divided by s keep a larger or smaller label range
  inside the range h_phi saw.
- h_phi's output layer starts at zero, so c = 1: M starts as exactly MSE.

Extra information that exists only at meta-train time shapes it through the task loss of the
meta-trainer, not through its inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.losses.features import FeatureInput

GAIN = 4.0  # the learned loss scales a sample's squared error by at most this factor, up or down
MIN_SCALE = 1e-3  # label scale floor: a batch of zero labels still gives finite inputs


class ML3Loss(nn.Module):
    """Shapes: ``y_hat``, ``y`` (B,); ``extra`` (B, F), read only when ``features`` is given;
    ``scale``: the label scale s (default: the root mean square of this batch's ``y``)."""

    def __init__(self, features: FeatureInput | None = None, hidden: int = 40) -> None:
        super().__init__()
        self.inputs = features
        n_in = 3 + (features.size if features is not None else 0)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)  # h_phi = 0 everywhere: c = 1, exactly MSE at the start
        nn.init.zeros_(self.net[-1].bias)

    def curvature(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None,
                  scale: torch.Tensor | float | None = None) -> torch.Tensor:
        """c per sample, in [1 / GAIN, GAIN]."""
        if scale is None:
            scale = y.detach().pow(2).mean().sqrt().clamp_min(MIN_SCALE)
        parts = [(y_hat / scale).unsqueeze(-1), (y / scale).unsqueeze(-1), ((y_hat - y) / scale).unsqueeze(-1)]
        if self.inputs is not None:
            parts.append(self.inputs(extra))
        h = self.net(torch.cat(parts, dim=-1)).squeeze(-1)
        return torch.exp(math.log(GAIN) * torch.tanh(h))

    def per_sample(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None,
                   scale: torch.Tensor | float | None = None) -> torch.Tensor:
        return (y_hat - y) ** 2 * self.curvature(y_hat, y, extra, scale)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.per_sample(y_hat, y, extra).mean()
