"""Plots a person would rather look at than read: learning curves and what a learned loss learned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.data.arrays import ArraySet
from training.figures import pyplot
from training.losses import ML3Loss, WeightedMSE


def learning_curve(rows: list[dict], out: Path, title: str) -> Path:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for phase, style in (("meta", "tab:purple"), ("fit", "tab:blue")):
        pts = [(r["global_step"], r["train_loss"]) for r in rows if r["phase"] == phase and r.get("train_loss") is not None]
        if pts:
            a.plot(*zip(*pts), color=style, lw=0.8, label=f"{phase}: training loss")
    a.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    a.legend()
    for key, colour in (("val_mae_normal", "tab:blue"), ("val_mae_abnormal", "tab:red"), ("val_mae", "k")):
        pts = [(r["global_step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            b.plot(*zip(*pts), "o-", color=colour, ms=3, label=key)
    b.set(xlabel="step", ylabel="MAE (steer units)", title="validation error")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


@torch.no_grad()
def learned_loss_plot(loss: torch.nn.Module, train: ArraySet, out: Path, title: str) -> Path | None:
    """Weighted: relative weight vs pedestrian distance / curvature / obstacle distance and mean weight per
    category. ML3: the loss landscape over y_hat for a few y, on a normal and a rare frame."""
    plt = pyplot()
    names = train.feature_names
    normal = train.extra[~train.abnormal] if (~train.abnormal).any() else train.extra
    base = np.median(normal, axis=0)
    extra = torch.from_numpy(train.extra)
    if isinstance(loss, WeightedMSE):
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))

        def rel_weight(rows: np.ndarray) -> np.ndarray:
            s = loss.scores(torch.from_numpy(rows.astype(np.float32)))
            s0 = loss.scores(torch.from_numpy(base[None].astype(np.float32)))
            return torch.exp(loss.tau * (s - s0)).numpy()

        sweeps = (("ped_distance_m", np.linspace(0, 50, 60), {"ped_present": 1.0, "is_pedestrian": 1.0, "abnormal": 1.0}, "pedestrian distance (m)"),
                  ("curvature_ahead_1pm", np.linspace(-0.07, 0.07, 60), {}, "curvature ahead (1/m)"),
                  ("obstacle_distance_m", np.linspace(0, 50, 60), {"obstacle_present": 1.0, "is_obstacle": 1.0, "abnormal": 1.0},
                   "obstacle distance (m)"))
        for ax, (name, values, fixed, label) in zip(axes, sweeps):
            if name not in names:
                ax.axis("off")
                continue
            rows = np.repeat(base[None], len(values), axis=0)
            for k, v in fixed.items():
                if k in names:
                    rows[:, names.index(k)] = v
            rows[:, names.index(name)] = values
            ax.plot(values, rel_weight(rows))
            ax.set(xlabel=label, ylabel="weight / weight of a typical normal frame")
        w = loss.weights(extra).numpy()
        cats = [c for c in ("normal", "pedestrian", "obstacle", "sharp_bend") if (train.category == c).any()]
        axes[3].bar(cats, [w[train.category == c].mean() for c in cats], color=["tab:blue"] + ["tab:red"] * (len(cats) - 1))
        axes[3].set(ylabel="mean weight (training set, mean 1)", title="weight by category")
    elif isinstance(loss, ML3Loss):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        y_hat = torch.linspace(-0.6, 0.6, 121)
        rare = train.extra[train.abnormal][0] if train.abnormal.any() else base
        for ax, row, label in ((axes[0], base, "typical normal frame"), (axes[1], rare, "a rare frame")):
            e = torch.from_numpy(np.repeat(row[None], len(y_hat), axis=0).astype(np.float32))
            scale = float(np.sqrt(np.mean(train.y ** 2)))  # a typical batch's label scale, not one label's
            for y in (-0.3, 0.0, 0.1, 0.3):
                ax.plot(y_hat, loss.per_sample(y_hat, torch.full_like(y_hat, y), e, scale), label=f"y = {y:+.1f}")
            ax.set(xlabel="prediction y_hat", ylabel="learned loss", title=label)
            ax.legend()
    else:
        return None
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
