"""Inverse-frequency reweighting baseline: by steering-magnitude bins with label-distribution
smoothing (LDS, Yang et al. 2021) and by the abnormal flag. Weights are fixed from the training
labels and looked up per sample; they are normalised to mean 1 over the training set."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def lds_weights(y: np.ndarray, abnormal: np.ndarray, bins: int = 40, sigma_bins: float = 2.0, max_ratio: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin weights over |y| in [0, 1] (smoothed with a Gaussian kernel), and per-flag weights."""
    hist, _ = np.histogram(np.abs(y), bins=bins, range=(0.0, 1.0))
    k = np.arange(-int(3 * sigma_bins), int(3 * sigma_bins) + 1)
    kernel = np.exp(-0.5 * (k / sigma_bins) ** 2)
    smoothed = np.convolve(hist.astype(float), kernel / kernel.sum(), mode="same")
    bin_w = 1.0 / np.maximum(smoothed, smoothed.max() / max_ratio)
    share = np.array([np.mean(~abnormal), np.mean(abnormal)])
    flag_w = 1.0 / np.maximum(share, share.max() / max_ratio)
    return bin_w.astype(np.float32), flag_w.astype(np.float32)


class InverseFrequencyMSE(nn.Module):
    """``abnormal_column``: index of the abnormal flag in ``extra``. Shapes as ``MSELoss``."""

    def __init__(self, y_train: np.ndarray, abnormal_train: np.ndarray, abnormal_column: int, bins: int = 40) -> None:
        super().__init__()
        bin_w, flag_w = lds_weights(y_train, abnormal_train.astype(bool), bins)
        idx = np.minimum((np.abs(y_train) * bins).astype(int), bins - 1)
        norm = float(np.mean(bin_w[idx] * flag_w[abnormal_train.astype(int)]))
        self.bins, self.abnormal_column = bins, abnormal_column
        self.register_buffer("bin_w", torch.as_tensor(bin_w / np.sqrt(norm)))
        self.register_buffer("flag_w", torch.as_tensor(flag_w / np.sqrt(norm)))

    def weights(self, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        idx = torch.clamp((y.abs() * self.bins).long(), max=self.bins - 1)
        return self.bin_w[idx] * self.flag_w[(extra[:, self.abnormal_column] > 0.5).long()]

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.weights(y, extra) * (y_hat - y) ** 2)
