"""Learned per-sample weighting: w = normalise(exp(tau * s_phi(features))), loss = mean(w (y_hat - y)^2).

The weights read scene features and, with ``reads_loss`` (Meta-Weight-Net's input), the sample's own
squared error, detached: never a path from the weight back into the model. They are normalised over
the batch to mean 1, so the model cannot shrink its own loss through them (the failure of the
original "tau" loss, which weighted by exp(tau * y_hat)). tau = 0 gives w = 1: exactly MSE.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses.features import FeatureInput


def error_input(sq_err: torch.Tensor) -> torch.Tensor:
    """(B,) the squared error as a scoring input, detached: log10 centred on 1e-3 (a 0.03 steer error), about
    unit spread over the errors seen in training."""
    return (torch.log10(sq_err.detach() + 1e-8) + 3.0) / 2.0


def mean_one(z: torch.Tensor) -> torch.Tensor:
    """(B,) exp(z) / mean(exp(z)): B * softmax(z), written so that z = 0 gives exactly 1.0 for any batch size
    (B * (1 / B) is not 1 in floating point)."""
    e = torch.exp(z - z.max().detach())
    return e / e.mean()


class WeightedMSE(nn.Module):
    """Shapes: ``y_hat``, ``y`` (B,); ``extra`` (B, F). ``tau``: temperature (a hyperparameter,
    not learned); ``hidden``: width of the two-layer scoring MLP s_phi; ``reads_loss``: s_phi also
    reads log10 of the sample's squared error (steer units)."""

    def __init__(self, features: FeatureInput, tau: float = 1.0, hidden: int = 32, reads_loss: bool = False) -> None:
        super().__init__()
        self.inputs, self.tau, self.reads_loss = features, float(tau), bool(reads_loss)
        n_in = features.size + int(self.reads_loss)
        self.score = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[-1].weight)  # start at uniform weights: MSE
        nn.init.zeros_(self.score[-1].bias)

    def scores(self, extra: torch.Tensor, sq_err: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) scores s_phi; ``sq_err`` (B,) is read when ``reads_loss`` (None: a typical 1e-3)."""
        x = self.inputs(extra)
        if self.reads_loss:
            err = extra.new_full((len(extra),), 1e-3) if sq_err is None else sq_err
            x = torch.cat([x, error_input(err).unsqueeze(-1)], dim=-1)
        return self.score(x).squeeze(-1)

    def weights(self, extra: torch.Tensor, sq_err: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) weights, mean 1 over the batch (``mean_one``: tau = 0 gives exactly 1.0)."""
        return mean_one(self.tau * self.scores(extra, sq_err))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        sq_err = (y_hat - y) ** 2
        return torch.mean(self.weights(extra, sq_err) * sq_err)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, features={self.inputs.size}, reads_loss={self.reads_loss}"
