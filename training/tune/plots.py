"""Tuning plots: convergence (BO vs Sobol) and the GP's view of the objective along one input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.figures import pyplot
from training.tune.bo import fit_gp


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


def gp_slice(x: torch.Tensor, y: torch.Tensor, yvar: torch.Tensor, metric: str, space: tuple, out: Path) -> Path:
    """Posterior mean +- 2 sd of the objective along the space's first input (tau for the learned
    loss), the other inputs held at the best trial's."""
    plt = pyplot()
    gp = fit_gp(x, y, yvar)
    best = x[int(torch.argmax(y))]
    grid = best.repeat(101, 1)
    grid[:, 0] = torch.linspace(0, 1, 101, dtype=x.dtype)
    with torch.no_grad():
        post = gp.posterior(grid)
        mean, sd = post.mean.squeeze(-1).numpy(), post.variance.clamp_min(0).sqrt().squeeze(-1).numpy()
    dim = space[0]
    values = np.array([dim.decode(u) for u in grid[:, 0].tolist()])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(values, mean, color="tab:blue", label="GP mean (others at best trial)")
    ax.fill_between(values, mean - 2 * sd, mean + 2 * sd, color="tab:blue", alpha=0.2, label="+- 2 sd")
    ax.errorbar([dim.decode(u) for u in x[:, 0].tolist()], y.squeeze(-1).numpy(),
                yerr=2 * yvar.sqrt().squeeze(-1).numpy(), fmt="k.", label="trials (+- 2 se)")
    ax.set(xlabel=dim.name, ylabel=metric, title=f"the GP's view of the objective against {dim.name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
