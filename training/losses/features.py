"""Standardised side-information input shared by the learned losses."""

from __future__ import annotations

import torch
from torch import nn


class FeatureInput(nn.Module):
    """Selects columns of ``extra`` and standardises them with fixed (dataset) statistics.

    ``columns``: indices into ``extra``'s feature axis; ``mean`` / ``std``: (F,) statistics of the
    training set, stored as buffers so the loss file is self-contained.
    """

    def __init__(self, columns: list[int], mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32)[self.columns])
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32)[self.columns].clamp_min(1e-3))

    @property
    def size(self) -> int:
        return int(self.columns.numel())

    def forward(self, extra: torch.Tensor) -> torch.Tensor:
        return (extra[:, self.columns] - self.mean) / self.std
