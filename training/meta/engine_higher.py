"""Meta-gradient with the ``higher`` library (as the original ML3 code), for cross-checking."""

from __future__ import annotations

import higher
import torch
from torch import nn

from training.meta.lookahead import SGD
from training.meta.types import Batch, Lookahead, MetaResult, TaskLoss


def meta_gradient(model: nn.Module, learned_loss: nn.Module, task_loss: TaskLoss, inner: list[Batch], meta: Batch,
                  lookahead: Lookahead) -> MetaResult:
    """Same contract as ``engine_func.meta_gradient``, for the SGD lookahead only."""
    if not isinstance(lookahead, SGD):
        raise ValueError("the higher engine cross-checks the SGD lookahead only; use engine 'func' for the Adam lookahead")
    opt = torch.optim.SGD(model.parameters(), lr=lookahead.lr)
    names = [n for n, _ in model.named_parameters()]
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True, track_higher_grads=True) as (fmodel, diffopt):
        inner_value = 0.0
        for x, y, extra in inner:
            loss = learned_loss(fmodel(x), y, extra)
            diffopt.step(loss)
            inner_value = float(loss.detach())
        x, y, extra = meta
        outer = task_loss(fmodel(x), y, extra)
        phi = [p for p in learned_loss.parameters() if p.requires_grad]
        phi_grads = torch.autograd.grad(outer, phi)
        params = {n: p.detach() for n, p in zip(names, fmodel.parameters())}
    return MetaResult(list(phi_grads), params, float(outer.detach()), inner_value)
