"""What a training frame shows the loss and the sampler: ``--labels full`` or ``--labels meta-only``.

A car's log (what ``ingest`` reads) holds the image, the steering label, the speed and the frame's place in
its episode; a DAgger round also knows when the policy failed. It holds no rare-scene category and no scene
description. ``meta-only`` trains on exactly that: the training frames' ``extra`` holds only ``LOG_COLUMNS``,
their category reads ``"unlabelled"`` and the sampler cannot oversample by it. Categories and scene features
stay on the meta set (the small curated set a learned loss is meta-trained on, which in this mode also picks
the kept snapshot) and on the validation set (judging only). ``full`` keeps today's columns and appends ``LOG_COLUMNS``, so every loss runs in either mode and
full-label numbers are unchanged (the appended columns sit after every column a full-label loss reads).

``LOG_COLUMNS``: ``speed_mps``; ``time_s`` in the episode; ``time_to_infraction_s`` (to the episode's next
infraction onset, ``NO_INFRACTION_S`` where none follows or none was recorded); the previous ``HISTORY``
labels of the episode (``steer_prev_1`` is the one before; the episode's first label where fewer precede);
``row``: the frame's index in the training set (a learned sampler's importance correction looks it up).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from training.data.arrays import ArraySet, Sampler

LABELS = ("full", "meta-only")
HISTORY = 9  # previous labels: Wen et al. predict the action from the previous 9
NO_INFRACTION_S = 60.0  # time to failure where the episode has none ahead: beyond any window searched
HISTORY_COLUMNS = tuple(f"steer_prev_{k}" for k in range(1, HISTORY + 1))
LOG_COLUMNS = ("speed_mps", "time_s", "time_to_infraction_s") + HISTORY_COLUMNS + ("row",)
UNLABELLED = "unlabelled"


def label_history(y: np.ndarray, episode: np.ndarray, k: int = HISTORY) -> np.ndarray:
    """(N, k): the k labels before each frame in its episode (frames of an episode are contiguous and in
    order, as recorded); the episode's first label stands in where fewer precede."""
    n = len(y)
    starts = np.r_[True, episode[1:] != episode[:-1]] if n else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else np.zeros(0, int)
    return np.stack([y[np.maximum(np.arange(n) - j, first)] for j in range(1, k + 1)], axis=1).astype(np.float32)


def time_to_infraction(time_s: np.ndarray, next_infraction_s: np.ndarray) -> np.ndarray:
    """Seconds from each frame to its episode's next infraction onset; ``NO_INFRACTION_S`` where none."""
    gap = np.asarray(next_infraction_s, np.float64) - np.asarray(time_s, np.float64)
    return np.where(np.isfinite(gap), np.clip(gap, 0.0, NO_INFRACTION_S), NO_INFRACTION_S).astype(np.float32)


def log_columns(frames: ArraySet) -> np.ndarray:
    """(N, len(LOG_COLUMNS)) float32: what a car's log says about each frame."""
    n = len(frames)
    speed = frames.extra[:, frames.feature_names.index("speed_mps")]
    time_s = frames.log.get("time_s", np.zeros(n))
    ttf = time_to_infraction(time_s, frames.log.get("next_infraction_s", np.full(n, np.nan)))
    return np.column_stack([speed, time_s, ttf, label_history(frames.y, frames.episode), np.arange(n)]).astype(np.float32)


@dataclass(frozen=True)
class LabelView:
    """``labels``: ``full`` or ``meta-only`` (see the module docstring)."""

    labels: str = "full"

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise ValueError(f"labels {self.labels!r}: choose one of {LABELS}")

    def training(self, frames: ArraySet) -> ArraySet:
        """The training set as the loss and the sampler see it."""
        logged = log_columns(frames)
        if self.labels == "full":
            return replace(frames, extra=np.concatenate([frames.extra, logged], axis=1),
                           feature_names=frames.feature_names + list(LOG_COLUMNS))
        return replace(frames, extra=logged, feature_names=list(LOG_COLUMNS), category=np.full(len(frames), UNLABELLED))

    def selection(self, val: ArraySet, meta: ArraySet) -> tuple[str, ArraySet]:
        """The frames whose category-balanced MAE picks the kept snapshot (a training decision, not judging): the
        validation split of the training logs (full), or the labelled meta set (meta-only: the logs have no categories)."""
        return ("val", val) if self.labels == "full" else ("meta", meta)

    def labelled_meta(self, meta_data):
        """The meta set a run is given: none needed with full labels (a run may carve its meta split from the training
        logs, as DAgger rounds always have); in meta-only mode the labelled one, required (the logs have no labels)."""
        if self.labels == "full":
            return None
        if meta_data is None:
            raise ValueError(f"--labels {self.labels}: the training logs have no labels, so a labelled meta set (--meta-data) "
                             "must pick the kept snapshot and teach any learned loss")
        return meta_data

    def sampler(self, train: ArraySet, batch_size: int, seed: int, rare_fraction: float) -> Sampler:
        """Uniform batches, or (full labels only) batches with ``rare_fraction`` rare-scene frames."""
        if rare_fraction and self.labels != "full":
            raise ValueError(f"oversampling rare scenes (rare fraction {rare_fraction}) reads every training frame's category; "
                             f"with --labels {self.labels} the training frames have none (use a label-free sampler)")
        return Sampler(train.abnormal, batch_size, seed, rare_fraction or None)
