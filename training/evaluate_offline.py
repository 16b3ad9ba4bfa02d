"""Offline evaluation: steering error overall, on normal and abnormal frames, per scene category and
per steering-magnitude bin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from simulator.base import SCENE_CATEGORIES
from training.data.arrays import ArraySet

STEER_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 1.0)


@torch.no_grad()
def predict(model: nn.Module, data: ArraySet, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    model.eval()
    out = [model(data.batch(np.arange(i, min(i + batch_size, len(data))), device)[0]).cpu().numpy()
           for i in range(0, len(data), batch_size)]
    model.train()
    return np.concatenate(out).astype(np.float32)


def _errors(err: np.ndarray) -> dict:
    if len(err) == 0:
        return {"mae": None, "rmse": None, "n": 0}
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))), "n": int(len(err))}


def offline_metrics(pred: np.ndarray, data: ArraySet) -> dict:
    """MAE / RMSE (steer units) of ``pred`` against the labels of ``data``."""
    err = pred - data.y
    mag = np.abs(data.y)
    bins = []
    for lo, hi in zip(STEER_BINS, STEER_BINS[1:]):
        sel = (mag >= lo) & ((mag < hi) if hi < 1.0 else (mag <= hi))
        bins.append({"lo": lo, "hi": hi} | _errors(err[sel]))
    return {
        "overall": _errors(err),
        "normal": _errors(err[~data.abnormal]),
        "abnormal": _errors(err[data.abnormal]),
        "by_category": {c: _errors(err[data.category == c]) for c in SCENE_CATEGORIES},
        "by_steer_bin": bins,
    }


def plot_offline(metrics: dict, pred: np.ndarray, data: ArraySet, out: Path, title: str = "") -> Path:
    from training.figures import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for name, sel, colour in (("normal", ~data.abnormal, "tab:blue"), ("abnormal", data.abnormal, "tab:red")):
        ax.scatter(data.y[sel], pred[sel], s=3, alpha=0.4, label=name, color=colour)
    ax.plot([-1, 1], [-1, 1], "k--", lw=0.8)
    lim = max(0.1, float(np.abs(data.y).max()) * 1.1)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="expert steer", ylabel="predicted steer", title="prediction vs label")
    ax.legend()
    ax = axes[1]
    cats = [c for c in SCENE_CATEGORIES if metrics["by_category"][c]["n"]]
    ax.bar(cats, [metrics["by_category"][c]["mae"] for c in cats], color=["tab:blue"] + ["tab:red"] * (len(cats) - 1))
    ax.set(ylabel="MAE (steer units)", title="error by scene category")
    ax = axes[2]
    rows = [b for b in metrics["by_steer_bin"] if b["n"]]
    ax.bar([f"{b['lo']:.2f}-{b['hi']:.2f}\n(n={b['n']})" for b in rows], [b["mae"] for b in rows])
    ax.set(ylabel="MAE (steer units)", xlabel="|expert steer|", title="error by steering magnitude")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
