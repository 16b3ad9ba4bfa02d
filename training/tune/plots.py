"""Tuning plots: convergence (BO vs Sobol) and the GP's view of the objective against tau."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.figures import pyplot
from training.tune.bo import fit_gp
from training.tune.space import LOSS_SPACE


def convergence(curves: dict[str, list[float]], metric: str, out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, best in curves.items():
        ax.plot(np.arange(1, len(best) + 1), best, "o-", ms=4, label=name)
    ax.set(xlabel="trial", ylabel=f"best {metric} so far", title="tuning convergence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def gp_over_tau(x: torch.Tensor, y: torch.Tensor, yvar: torch.Tensor, metric: str, out: Path) -> Path:
    """Posterior mean +- 2 sd of the objective along tau, other inputs held at the best trial's."""
    plt = pyplot()
    gp = fit_gp(x, y, yvar)
    best = x[int(torch.argmax(y))]
    grid = best.repeat(101, 1)
    grid[:, 0] = torch.linspace(0, 1, 101, dtype=x.dtype)
    with torch.no_grad():
        post = gp.posterior(grid)
        mean, sd = post.mean.squeeze(-1).numpy(), post.variance.clamp_min(0).sqrt().squeeze(-1).numpy()
    tau = np.array([LOSS_SPACE[0].decode(u) for u in grid[:, 0].tolist()])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(tau, mean, color="tab:blue", label="GP mean (others at best trial)")
    ax.fill_between(tau, mean - 2 * sd, mean + 2 * sd, color="tab:blue", alpha=0.2, label="+- 2 sd")
    ax.errorbar([LOSS_SPACE[0].decode(u) for u in x[:, 0].tolist()], y.squeeze(-1).numpy(),
                yerr=2 * yvar.sqrt().squeeze(-1).numpy(), fmt="k.", label="trials (+- 2 se)")
    ax.set(xlabel="tau", ylabel=metric, title="the GP's view of the objective against tau")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
