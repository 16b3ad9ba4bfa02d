"""In-memory training arrays, splits by episode and seeded batch samplers (state can be saved)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metasteer.preprocess import to_tensor
from training.data.dataset import DrivingDataset


@dataclass
class ArraySet:
    """Frames (N, H, W, 3) uint8 BGR bands, labels (N,), extra = scene features (N, F), categories."""

    images: np.ndarray
    y: np.ndarray
    extra: np.ndarray
    category: np.ndarray
    feature_names: list[str]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def abnormal(self) -> np.ndarray:
        return self.category != "normal"

    def subset(self, index: np.ndarray) -> "ArraySet":
        return ArraySet(self.images[index], self.y[index], self.extra[index], self.category[index], self.feature_names)

    def batch(self, index: np.ndarray, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, extra) tensors: x is the runtime preprocessing of the frames (N, 3, H, W) float32."""
        x = torch.from_numpy(to_tensor(self.images[index]))
        return x.to(device), torch.from_numpy(self.y[index]).to(device), torch.from_numpy(self.extra[index]).to(device)

    @classmethod
    def load(cls, dataset: DrivingDataset) -> "ArraySet":
        return cls(dataset.images(np.arange(len(dataset))), dataset.steer, dataset.features(),
                   dataset.columns["category"].astype(str), list(dataset.manifest["features"]))


def split_by_episode(dataset: DrivingDataset, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Frame indices per split name; whole episodes go to one split (frames of an episode are alike).

    The split named ``"train"`` takes what the others leave.
    """
    episodes = np.unique(dataset.columns["episode_seed"])
    order = np.random.default_rng(seed).permutation(episodes)
    out, start = {}, 0
    for name, frac in fractions.items():
        n = max(1, int(round(frac * len(episodes))))
        out[name] = np.flatnonzero(np.isin(dataset.columns["episode_seed"], order[start:start + n]))
        start += n
    out["train"] = np.flatnonzero(np.isin(dataset.columns["episode_seed"], order[start:]))
    if len(out["train"]) == 0:
        raise ValueError(f"{dataset.root}: too few episodes ({len(episodes)}) to split off {sorted(fractions)}")
    return out


class Sampler:
    """Uniform batches of indices, or with a fixed share of abnormal frames; seeded, resumable."""

    def __init__(self, abnormal: np.ndarray, batch_size: int, seed: int, abnormal_fraction: float | None = None) -> None:
        self.batch_size, self.abnormal_fraction = batch_size, abnormal_fraction
        self.rng = np.random.default_rng(seed)
        self.normal_idx, self.abnormal_idx = np.flatnonzero(~abnormal), np.flatnonzero(abnormal)
        self.n = len(abnormal)

    def next(self) -> np.ndarray:
        if self.abnormal_fraction is None or len(self.abnormal_idx) == 0:
            return self.rng.integers(0, self.n, size=self.batch_size)
        k = int(round(self.abnormal_fraction * self.batch_size))
        return np.concatenate([self.rng.choice(self.abnormal_idx, k), self.rng.choice(self.normal_idx, self.batch_size - k)])

    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state
