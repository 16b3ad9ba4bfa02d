"""Keyframe-focused imitation (Wen et al., ICML 2021), with labels only: a linear regressor predicts each frame's
label from the previous ``HISTORY`` labels of its episode (fitted once, least squares, on the training set); frames
whose prediction error is in the top ``share`` weigh ``weight`` x, the others 1 (the paper's released config: top
10 %, 5x). Label-free: it reads the label and its history, never a scene label. Weights are divided by their mean
over the training set, so the average step size is that of MSE."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.data.label_view import HISTORY_COLUMNS


def fit_predictor(history: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares (coefficients, bias) of y on the label history (a small ridge keeps it defined)."""
    a = np.column_stack([history, np.ones(len(y))]).astype(np.float64)
    coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]), a.T @ np.asarray(y, np.float64))
    return coef[:-1], float(coef[-1])


class KeyframeMSE(nn.Module):
    """``columns``: indices of ``HISTORY_COLUMNS`` in ``extra``; ``y_train`` / ``history_train``: the training set.
    Shapes as ``MSELoss``."""

    def __init__(self, columns: list[int], y_train: np.ndarray, history_train: np.ndarray, share: float = 0.1,
                 weight: float = 5.0) -> None:
        super().__init__()
        coef, bias = fit_predictor(history_train, y_train)
        self.share, self.weight = float(share), float(weight)
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.register_buffer("coef", torch.as_tensor(coef, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor(float("inf")))
        self.register_buffer("norm", torch.tensor(1.0))
        err = self.errors(torch.as_tensor(y_train, dtype=torch.float32), torch.as_tensor(history_train, dtype=torch.float32))
        top = max(1, int(np.ceil(self.share * len(err)))) if self.share > 0 else 0
        if top:  # the error of the top-th largest: computed by the same float32 path the batches take
            self.threshold.fill_(float(torch.topk(err, top).values[-1]))
        self.norm.fill_(float(self.raw_weights(err).mean()))

    def errors(self, y: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """(B,) |y - prediction from the previous labels|: the action-prediction error."""
        return (y - (history @ self.coef + self.bias)).abs()

    def raw_weights(self, err: torch.Tensor) -> torch.Tensor:
        return torch.where(err >= self.threshold, torch.full_like(err, self.weight), torch.ones_like(err))

    def weights(self, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.raw_weights(self.errors(y, extra[:, self.columns])) / self.norm

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.weights(y, extra) * (y_hat - y) ** 2)

    def extra_repr(self) -> str:
        return f"share={self.share}, weight={self.weight}, history={len(HISTORY_COLUMNS)}"
