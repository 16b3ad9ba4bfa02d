"""Bilevel meta-learning of a loss (ML3 / Meta-Weight-Net style) for any torch model.

Batches are ``(x, y, extra)`` tuples; a learned loss is any ``nn.Module`` called as
``loss(y_hat, y, extra)``. Two engines compute the same meta-gradient: ``engine_func``
(torch.func.functional_call, default) and ``engine_higher`` (the ``higher`` library).
"""

from training.meta.engine_func import meta_gradient as meta_gradient_func
from training.meta.engine_func import meta_gradient_head
from training.meta.engine_higher import meta_gradient as meta_gradient_higher
from training.meta.trainer import ENGINES, MetaConfig, MetaTrainer, PhiUpdater

__all__ = ["ENGINES", "MetaConfig", "MetaTrainer", "PhiUpdater", "meta_gradient_func", "meta_gradient_head", "meta_gradient_higher"]
