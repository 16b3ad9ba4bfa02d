"""Inverse frequency of steering bins: ``bins`` equal bins of the label over [-1, 1]; a frame weighs
1 / (its bin's share) ** ``alpha``, capped at ``MAX_RATIO`` x the commonest bin's weight (a bin of a few frames
would otherwise dominate), normalised to mean 1 over the training set. Label-free: it reads the steering label
only (``inverse-freq`` also reads the rare-scene flag). ``alpha`` = 0 is exactly MSE."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.losses.inverse_freq import effective_sample_share

MAX_RATIO = 20.0  # as inverse-freq's cap


def bin_of(y: np.ndarray | torch.Tensor, bins: int):
    """Bin index of each label in [-1, 1] (labels outside fall in the end bins)."""
    scaled = (y + 1.0) * 0.5 * bins
    return (scaled.long() if isinstance(scaled, torch.Tensor) else scaled.astype(np.int64)).clip(0, bins - 1)


class SteerBinsMSE(nn.Module):
    """``y_train``: the training labels. Shapes as ``MSELoss``; ``extra`` is ignored."""

    def __init__(self, y_train: np.ndarray, bins: int = 21, alpha: float = 0.5) -> None:
        super().__init__()
        self.bins, self.alpha = int(bins), float(alpha)
        idx = bin_of(np.asarray(y_train, np.float64), self.bins)
        share = np.bincount(idx, minlength=self.bins) / len(idx)
        table = np.where(share > 0, 1.0 / np.maximum(share, 1e-12) ** self.alpha, 0.0)
        table = np.minimum(table, MAX_RATIO * table[share.argmax()])
        table = table / table[idx].mean()
        self.effective_sample_share = effective_sample_share(table[idx])
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def weights(self, y: torch.Tensor) -> torch.Tensor:
        return self.table[bin_of(y, self.bins)]

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mean(self.weights(y) * (y_hat - y) ** 2)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, alpha={self.alpha}, effective_sample_share={self.effective_sample_share:.3f}"
