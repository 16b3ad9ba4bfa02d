"""Build a loss by name from the training set it will be used on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from simulator.encounters import RARE_CATEGORIES
from training.data.label_view import HISTORY_COLUMNS
from training.losses.balanced_mse import BalancedMSE
from training.losses.category_weights import CategoryWeightedMSE
from training.losses.failure_proximity import FailureProximityMSE
from training.losses.features import FeatureInput
from training.losses.inverse_freq import InverseFrequencyMSE
from training.losses.keyframe import KeyframeMSE
from training.losses.label_free_weighted import LabelFreeWeightedMSE
from training.losses.loss_emphasis import LossEmphasisMSE
from training.losses.ml3 import ML3Loss
from training.losses.mse import MSELoss
from training.losses.steer_bins import SteerBinsMSE
from training.losses.weighted import WeightedMSE

# label-free: read only what a car's log has (``data.label_view``), so they run with --labels meta-only
LABEL_FREE = ("mse", "balanced-mse", "keyframe", "failure-proximity", "loss-emphasis", "steer-bins", "label-free-weighted")
LOSSES = ("mse", "weighted", "ml3", "inverse-freq", "balanced-mse", "category-weights", "keyframe", "failure-proximity",
          "loss-emphasis", "steer-bins", "label-free-weighted")
LEARNED = ("weighted", "ml3", "label-free-weighted")
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
    keyframe_share: float = field(default=0.1, metadata={"range": (0.0, 1.0), "help": "keyframe: share of frames with the largest "
                                                                                       "action-prediction error that weigh more"})
    keyframe_weight: float = field(default=5.0, metadata={"range": (1.0, None), "help": "keyframe: their weight (others 1)"})
    failure_window_s: float = field(default=3.0, metadata={"range": (0.0, None), "help": "failure-proximity: frames this close "
                                                                                           "before an infraction weigh more"})
    failure_weight: float = field(default=3.0, metadata={"range": (1.0, None), "help": "failure-proximity: their weight (others 1)"})
    emphasis_gamma: float = field(default=1.0, metadata={"range": (0.0, None), "help": "loss-emphasis: weight = (error / batch "
                                                                                         "mean) ** gamma; 0 = exactly MSE"})
    steer_bins: int = field(default=21, metadata={"range": (2, None), "help": "steer-bins: equal bins of the label over [-1, 1]"})
    steer_alpha: float = field(default=0.5, metadata={"range": (0.0, None), "help": "steer-bins: weight = 1 / bin share ** alpha"})
    score_sampling: float = field(default=0.0, metadata={"range": (0.0, None), "help": "label-free-weighted: draw frames with "
                                                                                       "probability ~ exp(this x score); 0: uniform"})
    score_refresh_every: int = field(default=100, metadata={"range": (1, None), "help": "label-free-weighted: re-score every "
                                                                                          "training frame every N batches"})
    score_importance: bool = field(default=False, metadata={"help": "label-free-weighted: weigh sampled frames by 1 / (N p)"})


def parse_category_weights(text: str) -> dict[str, float]:
    """``"pedestrian=3,obstacle=2"`` -> weight per rare category (missing ones: 1)."""
    weights = dict.fromkeys(RARE_CATEGORIES, 1.0)
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in weights or not value:
            raise ValueError(f"category weight {item!r}: expected NAME=WEIGHT with NAME in {list(weights)}")
        weights[name.strip()] = float(value)
    return weights


def make_loss(spec: LossSpec, feature_names: list[str], y_train: np.ndarray, extra_train: np.ndarray, penultimate: int = 0) -> nn.Module:
    """``feature_names``: the columns of ``extra``; ``y_train`` / ``extra_train``: the training set; ``penultimate``:
    width of the model's penultimate features (read by ``label-free-weighted``)."""
    def column(name: str) -> int:
        if name not in feature_names:
            raise ValueError(f"loss {spec.loss!r} reads {name!r}, which these training frames do not show ({feature_names})")
        return feature_names.index(name)

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
        return InverseFrequencyMSE(y_train, extra_train[:, column("abnormal")], column("abnormal"))
    if spec.loss == "balanced-mse":
        return BalancedMSE(init_sigma=max(float(np.std(y_train)), 1e-3))  # start at the labels' spread, not a fixed 0.1
    if spec.loss == "category-weights":
        weights = parse_category_weights(spec.category_weights)
        return CategoryWeightedMSE([column(f"is_{c}") for c in weights], list(weights.values()))
    if spec.loss == "keyframe":
        history = [column(c) for c in HISTORY_COLUMNS]
        return KeyframeMSE(history, y_train, extra_train[:, history], spec.keyframe_share, spec.keyframe_weight)
    if spec.loss == "failure-proximity":
        ttf = column("time_to_infraction_s")
        return FailureProximityMSE(ttf, extra_train[:, ttf], spec.failure_window_s, spec.failure_weight)
    if spec.loss == "loss-emphasis":
        return LossEmphasisMSE(spec.emphasis_gamma)
    if spec.loss == "steer-bins":
        return SteerBinsMSE(y_train, spec.steer_bins, spec.steer_alpha)
    if spec.loss == "label-free-weighted":
        return LabelFreeWeightedMSE(feature_names, y_train, extra_train, penultimate, tau=spec.tau, hidden=spec.weight_hidden,
                                    sample_tau=spec.score_sampling, refresh_every=spec.score_refresh_every,
                                    importance=spec.score_importance)
    raise ValueError(f"unknown loss {spec.loss!r}; choose one of {LOSSES}")
