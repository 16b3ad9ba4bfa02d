"""Inverse-frequency reweighting baseline: by steering-magnitude bins with label-distribution
smoothing (LDS, Yang et al. 2021) and by the abnormal flag. Weights are fixed from the training
labels and looked up per sample. The *product* of the two factors is capped at ``max_ratio`` times
the weight of the commonest frames (capping each factor alone let them multiply to 400x and left
an effective sample size of 2 % of the batch), then normalised to mean 1 over the training set.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def lds_weights(y: np.ndarray, abnormal: np.ndarray, bins: int = 40, sigma_bins: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin inverse frequencies over |y| in [0, 1] (smoothed with a Gaussian kernel), and per-flag ones."""
    hist, _ = np.histogram(np.abs(y), bins=bins, range=(0.0, 1.0))
    k = np.arange(-int(3 * sigma_bins), int(3 * sigma_bins) + 1)
    kernel = np.exp(-0.5 * (k / sigma_bins) ** 2)
    smoothed = np.convolve(hist.astype(float), kernel / kernel.sum(), mode="same")
    bin_w = 1.0 / np.maximum(smoothed, smoothed.max() * 1e-6)
    share = np.array([np.mean(~abnormal), np.mean(abnormal)])
    flag_w = 1.0 / np.maximum(share, 1e-6)
    return bin_w, flag_w


def effective_sample_share(w: np.ndarray) -> float:
    """Kish's effective sample size as a share of N: (sum w)^2 / (N sum w^2); 1 for equal weights."""
    return float(np.sum(w) ** 2 / (len(w) * np.sum(w ** 2)))


class InverseFrequencyMSE(nn.Module):
    """``abnormal_column``: index of the abnormal flag in ``extra``. Shapes as ``MSELoss``.

    ``effective_sample_share``: of the training set under these weights (reported by ``train``)."""

    def __init__(self, y_train: np.ndarray, abnormal_train: np.ndarray, abnormal_column: int, bins: int = 40,
                 max_ratio: float = 20.0) -> None:
        super().__init__()
        flags = abnormal_train.astype(bool)
        bin_w, flag_w = lds_weights(y_train, flags, bins)
        table = flag_w[:, None] * bin_w[None, :]  # (flag, bin)
        idx = np.minimum((np.abs(y_train) * bins).astype(int), bins - 1)
        commonest = np.bincount(flags.astype(int) * bins + idx, minlength=2 * bins).argmax()
        table = np.minimum(table, max_ratio * table.reshape(-1)[commonest])
        per_sample = table[flags.astype(int), idx]
        table = table / per_sample.mean()
        self.effective_sample_share = effective_sample_share(per_sample)
        self.bins, self.abnormal_column = bins, abnormal_column
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def weights(self, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        idx = torch.clamp((y.abs() * self.bins).long(), max=self.bins - 1)
        return self.table[(extra[:, self.abnormal_column] > 0.5).long(), idx]

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.weights(y, extra) * (y_hat - y) ** 2)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, effective_sample_share={self.effective_sample_share:.3f}"
