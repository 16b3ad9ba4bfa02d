"""What the meta-gradient engines take and return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
TaskLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# the virtual inner update: (parameters by name, their gradients) -> updated parameters (training.meta.lookahead)
Lookahead = Callable[[dict[str, torch.Tensor], list[torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class MetaResult:
    """``phi_grads``: d task_loss / d phi, one tensor per trainable loss parameter; ``params``: the
    model's parameters after the inner steps (detached), by name; ``task_loss``: outer loss value;
    ``inner_loss``: learned loss of the last inner step."""

    phi_grads: list[torch.Tensor]
    params: dict[str, torch.Tensor]
    task_loss: float
    inner_loss: float
