"""In-memory training arrays, splits by episode and seeded batch samplers (state can be saved)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from simulator.encounters import RARE_CATEGORIES
from training.data.dataset import DrivingDataset

CATEGORY_FEATURES = tuple(f"is_{c}" for c in RARE_CATEGORIES)  # one-hot of the frame's rare category, appended to the features


def to_tensor_torch(band_bgr: torch.Tensor) -> torch.Tensor:
    """``metasteer.preprocess.to_tensor`` in torch, on whatever device the uint8 batch lives:
    (N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32 RGB in [-1, 1] (equal values, tested)."""
    # channels-first on uint8 before the flip and the cast: ~4x faster than flipping the strided last axis
    return band_bgr.permute(0, 3, 1, 2).contiguous().flip(1).float().mul_(1.0 / 127.5).sub_(1.0)


PAGE_BYTES = 4096
GATHER_CHUNK = 4096  # frames read per step when a whole frame set is materialised (about 160 MB at 66x200)


class Frames:
    """Frames of several datasets taken as one, read from their memory-mapped shards when indexed: parallel
    trials on the same data share the page cache instead of each holding a copy. Indexing with an integer
    array returns (len(index), H, W, 3) uint8; ``np.asarray`` reads them all (a GPU copy)."""

    def __init__(self, datasets: list[DrivingDataset], index: np.ndarray) -> None:
        offsets = np.cumsum([0] + [len(d) for d in datasets])
        self.datasets, self.index = datasets, np.asarray(index, dtype=np.int64)
        self.source = np.searchsorted(offsets, self.index, side="right") - 1  # dataset of each frame
        self.local = self.index - offsets[self.source]
        self.shape = (len(self.index),) + tuple(datasets[0].manifest["image_shape"])
        self.dtype, self.nbytes = np.dtype(np.uint8), int(np.prod(self.shape))
        for d in datasets:  # map every page in once, in order: random first touches cost ~1 ms a frame here
            for shard in d.shards:
                int(shard.images.reshape(-1)[::PAGE_BYTES].sum())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index),) + self.shape[1:], dtype=np.uint8)
        source = self.source[index]
        for k in np.unique(source):
            sel = source == k
            out[sel] = self.datasets[k].images(self.local[index[sel]])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.concatenate([self[np.arange(a, min(a + GATHER_CHUNK, len(self)))] for a in range(0, len(self), GATHER_CHUNK)])



@dataclass
class ArraySet:
    """Frames (N, H, W, 3) uint8 BGR bands (an array, or ``Frames`` read from the shards), labels (N,), extra =
    scene features (N, F; the dataset's, then ``CATEGORY_FEATURES``), categories, the episode of each frame, and
    ``log``: what a car's log also holds (``time_s``; ``next_infraction_s``, NaN where none follows or none was
    recorded). Frames stay uint8 (on disk, in RAM or on the GPU) until a batch is drawn."""

    images: np.ndarray | Frames
    y: np.ndarray
    extra: np.ndarray
    category: np.ndarray
    feature_names: list[str]
    episode: np.ndarray
    log: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._resident: dict[str, dict[str, torch.Tensor]] = {}  # device -> tensors there

    def __len__(self) -> int:
        return len(self.y)

    @property
    def abnormal(self) -> np.ndarray:
        return self.category != "normal"

    def _on(self, device: str) -> dict[str, torch.Tensor]:
        """The arrays as tensors on ``device`` (uint8 frames; copied there once), or pinned on the host
        when the frames would take more than half of the GPU's free memory."""
        if device not in self._resident:
            images = self.images
            if device.startswith("cuda"):
                free, _ = torch.cuda.mem_get_info(torch.device(device))
                images = torch.from_numpy(np.asarray(images))
                images = images.to(device) if images.nbytes < free // 2 else images.pin_memory()
            self._resident[device] = {"images": images, "y": torch.from_numpy(self.y).to(device),
                                      "extra": torch.from_numpy(self.extra).to(device)}
        return self._resident[device]

    def batch(self, index: np.ndarray, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, extra) tensors on ``device``: x is the runtime preprocessing of the frames (N, 3, H, W) float32."""
        t = self._on(device)
        idx = torch.from_numpy(np.asarray(index, dtype=np.int64))
        images = t["images"]
        if isinstance(images, torch.Tensor):
            frames = images[idx.to(images.device)].to(device, non_blocking=True)
        else:  # host frames (an array or the shards): read only this batch
            frames = torch.from_numpy(images[np.asarray(index, dtype=np.int64)])
        idx = idx.to(device)
        return to_tensor_torch(frames), t["y"][idx], t["extra"][idx]

    @classmethod
    def load(cls, dataset: DrivingDataset) -> "ArraySet":
        return cls.gather([dataset])

    @classmethod
    def gather(cls, datasets: list[DrivingDataset], index: np.ndarray | None = None) -> "ArraySet":
        """Frames ``index`` (default: all) of several datasets taken as one, numbered in order; the frames
        stay in the memory-mapped shards (``Frames``), labels and features are read into arrays."""
        names = list(datasets[0].manifest["features"])
        shape = tuple(datasets[0].manifest["image_shape"])
        if any(list(d.manifest["features"]) != names or tuple(d.manifest["image_shape"]) != shape for d in datasets):
            raise ValueError("datasets disagree on frame shape or scene features; they cannot be trained on together")
        offsets = np.cumsum([0] + [len(d) for d in datasets])
        index = np.arange(offsets[-1]) if index is None else np.asarray(index, dtype=np.int64)
        images = Frames(datasets, index)
        parts = []
        for k, d in enumerate(datasets):
            sel = (index >= offsets[k]) & (index < offsets[k + 1])
            parts.append((sel, index[sel] - offsets[k], d))

        def column(get) -> np.ndarray:
            first = get(datasets[0])
            out = np.empty((len(index),) + first.shape[1:], dtype=first.dtype)
            for sel, local, d in parts:
                out[sel] = get(d)[local]
            return out
        category = column(lambda d: d.columns["category"].astype(object)).astype(str)
        onehots = np.stack([category == c for c in RARE_CATEGORIES], axis=1).astype(np.float32)
        log = {"time_s": column(lambda d: d.columns["time_s"].astype(np.float64)),
               "next_infraction_s": column(lambda d: d.columns.get("next_infraction_s", np.full(len(d), np.nan)).astype(np.float64))}
        return cls(images, column(lambda d: d.steer), np.concatenate([column(lambda d: d.features()), onehots], axis=1), category,
                   names + list(CATEGORY_FEATURES), column(lambda d: d.columns["episode_seed"].astype(np.int64)), log)


def episode_subset(episode: np.ndarray, fraction: float) -> np.ndarray:
    """Frame indices of the first ``fraction`` of the episodes in a fixed order: smaller fractions
    are nested in larger ones, whatever the training seed (a data-budget sweep)."""
    episodes = np.random.default_rng(0).permutation(np.unique(episode))
    keep = episodes[:max(1, int(np.ceil(fraction * len(episodes))))]
    return np.flatnonzero(np.isin(episode, keep))


def split_by_episode(episode: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Frame indices per split name; whole episodes go to one split (frames of an episode are alike).

    ``episode``: the episode id of each frame. The split named ``"train"`` takes what the others leave.
    """
    episodes = np.unique(episode)
    order = np.random.default_rng(seed).permutation(episodes)
    out, start = {}, 0
    for name, frac in fractions.items():
        n = max(1, int(round(frac * len(episodes))))
        out[name] = np.flatnonzero(np.isin(episode, order[start:start + n]))
        start += n
    out["train"] = np.flatnonzero(np.isin(episode, order[start:]))
    if len(out["train"]) == 0:
        raise ValueError(f"too few episodes ({len(episodes)}) to split off {sorted(fractions)} and keep one to train on: each "
                         f"split takes whole episodes, so at least {len(fractions) + 1} are needed (record more frames, "
                         f"or train on a larger share of the data's episodes)")
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
