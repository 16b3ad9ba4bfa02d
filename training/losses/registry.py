"""Build a loss by name from the training set it will be used on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from simulator.encounters import RARE_CATEGORIES
from training.losses.balanced_mse import BalancedMSE
from training.losses.category_weights import CategoryWeightedMSE
from training.losses.features import FeatureInput
from training.losses.inverse_freq import InverseFrequencyMSE
from training.losses.ml3 import ML3Loss
from training.losses.mse import MSELoss
from training.losses.weighted import WeightedMSE

LOSSES = ("mse", "weighted", "ml3", "inverse-freq", "balanced-mse", "category-weights")
LEARNED = ("weighted", "ml3")
# what a learned weighting reads by default: which rare scene (one-hots), how near, how sharp the bend;
# not the ego's own lane offset / heading (with them it learned to ignore frames left of the lane
# centre, which hold the evasive manoeuvres)
DEFAULT_FEATURES = ("is_pedestrian", "is_obstacle", "is_sharp_bend", "ped_present", "ped_distance_m", "ped_lateral_m",
                    "obstacle_present", "obstacle_distance_m", "curvature_ahead_1pm", "abnormal")


@dataclass(frozen=True)
class LossSpec:
    """Which loss and its hyperparameters. ``features``: comma-separated scene features a learned
    loss reads (``weighted`` always, ``ml3`` when ``ml3_features``)."""

    loss: str = field(default="mse", metadata={"help": "loss family", "choices": LOSSES})
    tau: float = field(default=1.0, metadata={"range": (0.0, None), "help": "weighted: temperature; 0 = exactly MSE"})
    weight_hidden: int = field(default=32, metadata={"range": (1, None), "help": "weighted: width of the scoring MLP"})
    weight_reads_loss: bool = field(default=False, metadata={"help": "weighted: the weight also reads the sample's own error (Meta-Weight-Net)"})
    ml3_hidden: int = field(default=40, metadata={"range": (1, None), "help": "ml3: width of the loss network"})
    ml3_features: bool = field(default=True, metadata={"help": "ml3: feed scene features to the loss network"})
    features: str = field(default=",".join(DEFAULT_FEATURES), metadata={"help": "scene features a learned loss reads"})
    category_weights: str = field(default="pedestrian=1,obstacle=1,sharp_bend=1",
                                  metadata={"help": "category-weights: weight per rare category (normal = 1), normalised over each batch"})


def parse_category_weights(text: str) -> dict[str, float]:
    """``"pedestrian=3,obstacle=2"`` -> weight per rare category (missing ones: 1)."""
    weights = dict.fromkeys(RARE_CATEGORIES, 1.0)
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in weights or not value:
            raise ValueError(f"category weight {item!r}: expected NAME=WEIGHT with NAME in {list(weights)}")
        weights[name.strip()] = float(value)
    return weights


def make_loss(spec: LossSpec, feature_names: list[str], y_train: np.ndarray, extra_train: np.ndarray) -> nn.Module:
    """``feature_names``: the columns of ``extra``; ``y_train`` / ``extra_train``: the training set."""
    def inputs() -> FeatureInput:
        wanted = [f for f in spec.features.split(",") if f]
        unknown = sorted(set(wanted) - set(feature_names))
        if unknown:
            raise ValueError(f"unknown features {unknown}; the dataset has {feature_names}")
        columns = [feature_names.index(f) for f in wanted]
        return FeatureInput(columns, torch.as_tensor(extra_train.mean(0)), torch.as_tensor(extra_train.std(0)))

    if spec.loss == "mse":
        return MSELoss()
    if spec.loss == "weighted":
        return WeightedMSE(inputs(), tau=spec.tau, hidden=spec.weight_hidden, reads_loss=spec.weight_reads_loss)
    if spec.loss == "ml3":
        return ML3Loss(inputs() if spec.ml3_features else None, hidden=spec.ml3_hidden)
    if spec.loss == "inverse-freq":
        column = feature_names.index("abnormal")
        return InverseFrequencyMSE(y_train, extra_train[:, column], column)
    if spec.loss == "balanced-mse":
        return BalancedMSE(init_sigma=max(float(np.std(y_train)), 1e-3))  # start at the labels' spread, not a fixed 0.1
    if spec.loss == "category-weights":
        weights = parse_category_weights(spec.category_weights)
        return CategoryWeightedMSE([feature_names.index(f"is_{c}") for c in weights], list(weights.values()))
    raise ValueError(f"unknown loss {spec.loss!r}; choose one of {LOSSES}")
