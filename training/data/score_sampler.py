"""Batches drawn from the whole training set in proportion to a score per frame: the label-free counterpart of
oversampling (which draws rare-scene frames by their category). Seeded and resumable; the scores are refreshed
every ``refresh_every`` batches by ``score_all`` (e.g. a learned weighting scoring every frame with the model)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class ScoreSampler:
    """``n`` frames, ``batch_size`` indices per batch drawn with replacement with probability ``p`` (uniform until
    the first refresh); ``score_all() -> (n,)`` non-negative scores, called every ``refresh_every`` batches
    (None: the scores set by ``set_scores`` stay)."""

    def __init__(self, n: int, batch_size: int, seed: int, refresh_every: int = 0,
                 score_all: Callable[[], np.ndarray] | None = None) -> None:
        self.n, self.batch_size, self.refresh_every, self.score_all = n, batch_size, refresh_every, score_all
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.set_scores(np.ones(n))

    def set_scores(self, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (self.n,) or not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.sum() <= 0:
            raise ValueError(f"scores must be {self.n} finite non-negative numbers, not all zero")
        self._use(scores / scores.sum())

    def _use(self, p: np.ndarray) -> None:
        self.p, self._cdf = p, np.cumsum(p)

    def next(self) -> np.ndarray:
        if self.score_all is not None and self.refresh_every and self.calls % self.refresh_every == 0:
            self.set_scores(self.score_all())
        self.calls += 1
        # inverse-CDF draws: O(batch log n) a batch, where rng.choice(p=...) rebuilds the CDF every call
        return np.minimum(np.searchsorted(self._cdf, self.rng.random(self.batch_size) * self._cdf[-1], side="right"), self.n - 1)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "calls": self.calls, "p": torch.from_numpy(self.p.copy())}  # checkpoints hold tensors

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state, self.calls = state["rng"], state["calls"]
        self._use(state["p"].numpy())  # as saved: renormalising could move the last bits
