"""Meta-gradient with ``torch.func.functional_call`` and ``autograd.grad(create_graph=True)``.

Inner: K steps of the model on the learned loss (``lookahead``: SGD or the real optimiser's Adam
step), kept differentiable in phi. Outer: the task
loss of the updated model on the meta batch, differentiated w.r.t. phi. Buffers are cloned so the
inner and meta passes never touch the model's running statistics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from training.meta.types import Batch, Lookahead, MetaResult, TaskLoss


def _phi(loss: nn.Module) -> list[torch.Tensor]:
    return [p for p in loss.parameters() if p.requires_grad]


def meta_gradient(model: nn.Module, learned_loss: nn.Module, task_loss: TaskLoss, inner: list[Batch], meta: Batch,
                  lookahead: Lookahead) -> MetaResult:
    """Full meta-gradient through all model parameters and ``len(inner)`` unrolled steps."""
    params = dict(model.named_parameters())
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    inner_value = 0.0
    for x, y, extra in inner:
        loss = learned_loss(functional_call(model, (params, buffers), (x,)), y, extra)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = lookahead(params, list(grads))
        inner_value = float(loss.detach())
    x, y, extra = meta
    outer = task_loss(functional_call(model, (params, buffers), (x,)), y, extra)
    phi_grads = torch.autograd.grad(outer, _phi(learned_loss))
    return MetaResult(list(phi_grads), {n: p.detach() for n, p in params.items()}, float(outer.detach()), inner_value)


def meta_gradient_head(model: nn.Module, learned_loss: nn.Module, task_loss: TaskLoss, inner: list[Batch], meta: Batch,
                       lookahead: Lookahead, trunk: str = "features", head: str = "head") -> MetaResult:
    """Cheap meta-gradient through the head only (model(x) must equal head(trunk(x))).

    The trunk runs once per batch and is updated by an ordinary (first-order) step; only the head's
    update is kept differentiable in phi, and the meta batch goes through the trunk without a graph.
    """
    trunk_mod, head_mod = getattr(model, trunk), getattr(model, head)
    trunk_params = dict(trunk_mod.named_parameters())
    head_params = dict(head_mod.named_parameters())
    inner_value = 0.0
    for x, y, extra in inner:
        feats = functional_call(trunk_mod, trunk_params, (x,))
        feats_leaf = feats.detach().requires_grad_()
        loss = learned_loss(functional_call(head_mod, head_params, (feats_leaf,)), y, extra)
        *head_grads, feat_grad = torch.autograd.grad(loss, list(head_params.values()) + [feats_leaf], create_graph=True)
        trunk_grads = torch.autograd.grad(feats, list(trunk_params.values()), grad_outputs=feat_grad.detach())
        stepped = lookahead({f"{trunk}.{n}": p for n, p in trunk_params.items()} | {f"{head}.{n}": p for n, p in head_params.items()},
                            list(trunk_grads) + list(head_grads))
        trunk_params = {n: stepped[f"{trunk}.{n}"].detach() for n in trunk_params}
        head_params = {n: stepped[f"{head}.{n}"] for n in head_params}
        inner_value = float(loss.detach())
    x, y, extra = meta
    with torch.no_grad():
        meta_feats = functional_call(trunk_mod, trunk_params, (x,))
    outer = task_loss(functional_call(head_mod, head_params, (meta_feats,)), y, extra)
    phi_grads = torch.autograd.grad(outer, _phi(learned_loss))
    params = {f"{trunk}.{n}": p for n, p in trunk_params.items()} | {f"{head}.{n}": p.detach() for n, p in head_params.items()}
    return MetaResult(list(phi_grads), params, float(outer.detach()), inner_value)
