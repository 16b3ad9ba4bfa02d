"""Losses, all with one call signature: ``loss(y_hat, y, extra) -> scalar``.

``y_hat``, ``y``: (B,) predictions and targets; ``extra``: (B, F) float32 side information (scene
features in the manifest's order; the label-based baselines ignore it). Select by name with
``make_loss``; ``LEARNED`` names the ones with meta-learned parameters.
"""

from training.losses.balanced_mse import BalancedMSE
from training.losses.category_weights import CategoryWeightedMSE
from training.losses.inverse_freq import InverseFrequencyMSE
from training.losses.ml3 import ML3Loss
from training.losses.mse import MSELoss
from training.losses.registry import LABEL_FREE, LEARNED, LOSSES, LossSpec, make_loss
from training.losses.weighted import WeightedMSE

__all__ = ["BalancedMSE", "CategoryWeightedMSE", "InverseFrequencyMSE", "ML3Loss", "MSELoss", "WeightedMSE", "LABEL_FREE", "LEARNED", "LOSSES", "LossSpec", "make_loss"]
