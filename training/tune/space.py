"""The search space: each trial is a point of the unit cube, decoded into named hyperparameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.losses.registry import DEFAULT_FEATURES

FEATURE_GROUPS = {
    "pedestrian": ("is_pedestrian", "ped_present", "ped_distance_m", "ped_lateral_m"),
    "obstacle": ("is_obstacle", "obstacle_present", "obstacle_distance_m"),
    "geometry": ("is_sharp_bend", "curvature_ahead_1pm"),
}


@dataclass(frozen=True)
class Dim:
    name: str
    low: float
    high: float
    kind: str = "linear"  # linear | log | int | bool | choice
    choices: tuple = ()

    def decode(self, u: float):
        u = min(max(float(u), 0.0), 1.0)
        if self.kind == "log":
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        if self.kind == "int":
            return int(round(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))))
        if self.kind == "bool":
            return u >= 0.5
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        return self.low + u * (self.high - self.low)


LOSS_SPACE = (
    Dim("tau", 0.0, 5.0),
    Dim("meta_lr", 1e-3, 3e-2, "log"),
    Dim("inner_lr", 1e-3, 1e-1, "log"),
    Dim("weight_hidden", 8, 64, "int"),
    Dim("use_pedestrian", 0, 1, "bool"),
    Dim("use_obstacle", 0, 1, "bool"),
    Dim("use_geometry", 0, 1, "bool"),
    Dim("loss", 0, 1, "choice", ("weighted", "ml3")),
)


def decode(x: np.ndarray, space: tuple[Dim, ...] = LOSS_SPACE) -> dict:
    return {d.name: d.decode(u) for d, u in zip(space, x)}


def loss_features(params: dict) -> str:
    """The comma-separated feature list a decoded point selects (the abnormal flag always)."""
    chosen = [f for group, names in FEATURE_GROUPS.items() if params.get(f"use_{group}", True) for f in names]
    return ",".join([f for f in DEFAULT_FEATURES if f in chosen] + ["abnormal"])
