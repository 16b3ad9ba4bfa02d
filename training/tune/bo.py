"""One BoTorch step, written out: fit a GP to what was observed, build qLogNEI, optimise it.

Inputs live in the unit cube; ``Normalize`` and ``Standardize`` are explicit transforms of the GP.
The observation noise of every point is given (``train_Yvar``): the spread of its episodes.
"""

from __future__ import annotations

import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch.quasirandom import SobolEngine


def sobol_points(n: int, dim: int, seed: int, skip: int = 0) -> torch.Tensor:
    """Scrambled Sobol points ``skip .. skip + n`` of a seeded sequence, (n, dim) in [0, 1]."""
    engine = SobolEngine(dim, scramble=True, seed=seed)
    if skip:
        engine.fast_forward(skip)
    return engine.draw(n, dtype=torch.float64)


def fit_gp(x: torch.Tensor, y: torch.Tensor, yvar: torch.Tensor) -> SingleTaskGP:
    """GP on (n, d) inputs in [0, 1] and (n, 1) outcomes with known noise variances (n, 1)."""
    gp = SingleTaskGP(x, y, train_Yvar=yvar.clamp_min(1e-6), input_transform=Normalize(d=x.shape[-1]),
                      outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def suggest(x: torch.Tensor, y: torch.Tensor, yvar: torch.Tensor, q: int, seed: int,
            pending: torch.Tensor | None = None) -> tuple[torch.Tensor, SingleTaskGP]:
    """``q`` new points maximising qLogNoisyExpectedImprovement (objective is maximised), jointly with the
    ``pending`` points (proposed, not yet observed: the new points add to them instead of repeating them)."""
    torch.manual_seed(seed)
    gp = fit_gp(x, y, yvar)
    acq = qLogNoisyExpectedImprovement(gp, X_baseline=x, prune_baseline=True, X_pending=pending)
    bounds = torch.stack([torch.zeros(x.shape[-1]), torch.ones(x.shape[-1])]).to(x)
    candidates, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=8, raw_samples=256, options={"seed": seed})
    return candidates.detach(), gp
