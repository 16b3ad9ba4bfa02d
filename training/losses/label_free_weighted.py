"""Learned per-sample weighting for label-scarce training (``--labels meta-only``): Meta-Weight-Net's premise, a
small labelled meta set steering the weights of a large unlabelled training set.

w = mean_one(tau * s_phi(inputs)), loss = mean(w (y_hat - y)^2), learned online on the meta set exactly as
``weighted`` (``meta.trainer.PhiUpdater``, the Adam lookahead). s_phi reads only what a training frame has
(``data.label_view.LOG_COLUMNS``): the sample's own error (detached), the label and its change over the previous
frames, the speed, the time to the next infraction (DAgger rounds; a large constant where none), and the model's
penultimate features (detached, each frame's vector standardised over its own units so that a frame's input does
not depend on the batch it is in). tau = 0 gives w = 1: exactly MSE.

Weights of mean 1 inside a batch that holds ~3 rare frames cannot do what a half-rare batch does, so the same
scores can also drive sampling (``sampler``): frames drawn from the whole training set with probability
proportional to exp(``sample_tau`` * s_phi), mixed with ``UNIFORM_SHARE`` of uniform draws, refreshed every
``refresh_every`` batches; with ``importance`` the batch's weights are multiplied by 1 / (N p) (self-normalised),
so that sampling changes the variance and not the objective.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.data.arrays import ArraySet
from training.data.score_sampler import ScoreSampler
from training.losses.features import FeatureInput
from training.losses.weighted import error_input, mean_one

LOG_INPUTS = ("speed_mps", "time_to_infraction_s")  # the log columns s_phi reads as they are
CHANGES = 3  # label changes over the previous frames read: y - y_-1, y_-1 - y_-2, y_-2 - y_-3
UNIFORM_SHARE = 0.1  # of draws uniform: every frame keeps a chance, importance weights stay below 10 x
SCORE_CHUNK = 512  # frames scored per forward pass at a refresh


class PenultimateTap:
    """The input of a model's last linear layer as of its latest forward pass, detached."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def watch(self, model: nn.Module) -> None:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        last.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple) -> None:
        self.value = inputs[0].detach().float()  # bfloat16 under a reduced-precision forward


def label_changes(y: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """(B, 1 + CHANGES): the label and its changes over the previous frames (``history``: y_-1, y_-2, ...)."""
    seq = torch.cat([y.unsqueeze(-1), history[:, :CHANGES]], dim=-1)
    return torch.cat([y.unsqueeze(-1), seq[:, :-1] - seq[:, 1:]], dim=-1)


class LabelFreeWeightedMSE(nn.Module):
    """Shapes: ``y_hat``, ``y`` (B,); ``extra`` (B, F) with the log columns. ``feature_names``: the columns of
    ``extra``; ``y_train`` / ``extra_train``: the training set (input statistics); ``penultimate``: width of the
    model's penultimate features (0: not read); ``tau``: temperature of the weights; ``hidden``: width of s_phi;
    ``sample_tau``: temperature of score sampling (0: uniform batches); ``refresh_every``: batches between
    re-scorings of the training set; ``importance``: correct the sampled batches' weights by 1 / (N p)."""

    def __init__(self, feature_names: list[str], y_train: np.ndarray, extra_train: np.ndarray, penultimate: int = 0,
                 tau: float = 1.0, hidden: int = 32, sample_tau: float = 0.0, refresh_every: int = 100,
                 importance: bool = False) -> None:
        super().__init__()
        missing = sorted(set(LOG_INPUTS + ("row", "steer_prev_1")) - set(feature_names))
        if missing:
            raise ValueError(f"label-free-weighted reads the log columns {missing}, absent from {feature_names}")
        self.tau, self.sample_tau, self.refresh_every, self.importance = float(tau), float(sample_tau), int(refresh_every), bool(importance)
        self.inputs = FeatureInput([feature_names.index(c) for c in LOG_INPUTS], torch.as_tensor(extra_train.mean(0)),
                                   torch.as_tensor(extra_train.std(0)))
        self.history = [feature_names.index(f"steer_prev_{k}") for k in range(1, CHANGES + 1)]
        self.row = feature_names.index("row")
        changes = label_changes(torch.as_tensor(y_train, dtype=torch.float32), torch.as_tensor(extra_train[:, self.history]))
        self.register_buffer("change_mean", changes.mean(0))
        self.register_buffer("change_std", changes.std(0).clamp_min(1e-3))
        self.register_buffer("correction", torch.ones(len(y_train)))  # 1 / (N p) per training frame, when importance
        self.penultimate, self.tap = int(penultimate), PenultimateTap()
        n_in = self.inputs.size + 1 + CHANGES + 1 + self.penultimate
        self.score = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[-1].weight)  # start at uniform weights: MSE
        nn.init.zeros_(self.score[-1].bias)

    def watch(self, model: nn.Module) -> None:
        """Read ``model``'s penultimate features from now on (``fit.Run`` calls this for every model it builds)."""
        self.tap.watch(model)

    def scores(self, y: torch.Tensor, extra: torch.Tensor, sq_err: torch.Tensor) -> torch.Tensor:
        """(B,) s_phi, of the batch the watched model has just predicted."""
        changes = (label_changes(y, extra[:, self.history]) - self.change_mean) / self.change_std
        parts = [self.inputs(extra), changes, error_input(sq_err).unsqueeze(-1)]
        if self.penultimate:
            feats = self.tap.value
            if feats is None or feats.shape != (len(y), self.penultimate):
                raise RuntimeError(f"penultimate features {None if feats is None else tuple(feats.shape)}: "
                                   f"expected ({len(y)}, {self.penultimate}) from the model that predicted this batch")
            parts.append(F.layer_norm(feats, (self.penultimate,)))
        return self.score(torch.cat(parts, dim=-1)).squeeze(-1)

    def weights(self, y: torch.Tensor, extra: torch.Tensor, sq_err: torch.Tensor) -> torch.Tensor:
        w = mean_one(self.tau * self.scores(y, extra, sq_err))
        if self.importance and self.sample_tau:
            w = w * self.correction[extra[:, self.row].long()]
            w = w / w.mean()
        return w

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        sq_err = (y_hat - y) ** 2
        return torch.mean(self.weights(y, extra, sq_err) * sq_err)

    # ---- sampling by the learned scores ----------------------------------------------------------------

    @property
    def draws_batches(self) -> bool:
        return self.sample_tau > 0

    @torch.no_grad()
    def frame_scores(self, model: nn.Module, train: ArraySet, device: str) -> np.ndarray:
        """(N,) s_phi of every training frame under ``model`` as it is now."""
        out = []
        for start in range(0, len(train), SCORE_CHUNK):
            x, y, extra = train.batch(np.arange(start, min(start + SCORE_CHUNK, len(train))), device)
            out.append(self.scores(y, extra, (model(x) - y) ** 2).cpu())
        return torch.cat(out).double().numpy()

    def sampling_probabilities(self, scores: np.ndarray) -> np.ndarray:
        z = self.sample_tau * (scores - scores.max())
        p = np.exp(z) / np.exp(z).sum()
        return (1.0 - UNIFORM_SHARE) * p + UNIFORM_SHARE / len(p)

    def sampler(self, model: nn.Module, train: ArraySet, batch_size: int, seed: int, device: str) -> ScoreSampler:
        """Batches drawn in proportion to the learned scores of ``model``'s training frames (see the docstring)."""
        def refresh() -> np.ndarray:
            p = self.sampling_probabilities(self.frame_scores(model, train, device))
            if self.importance:
                self.correction.copy_(torch.as_tensor(1.0 / (len(p) * p), dtype=torch.float32))
            return p
        return ScoreSampler(len(train), batch_size, seed, self.refresh_every, refresh)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, penultimate={self.penultimate}, sample_tau={self.sample_tau}, "
                f"refresh_every={self.refresh_every}, importance={self.importance}")
