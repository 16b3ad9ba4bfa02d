"""What a trial measures. ``closed_loop``: train a model with the trial's loss, export it, drive it
on tuning routes (never the final evaluation routes). ``synthetic``: a cheap analytic function with
episode-like noise, to check the optimiser itself (tests, smoke runs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.tune.space import decode, loss_features


@dataclass(frozen=True)
class TrialBudget:
    steps: int = field(default=400, metadata={"help": "model training steps per trial"})
    meta_steps: int = field(default=150, metadata={"help": "meta-training steps per trial"})
    episodes: int = field(default=6, metadata={"help": "tuning episodes per trial"})
    metric: str = field(default="time_without_infractions_s", metadata={"help": "closed-loop metric to maximise"})
    abnormal_rate: float = field(default=0.1, metadata={"help": "rare-scene rate of the tuning routes"})


def synthetic(x: np.ndarray, trial: int, seed: int) -> tuple[float, float]:
    """Smooth bump with its maximum 10 at x = 0.3 (all dims), plus seeded noise (sd 0.2)."""
    rng = np.random.default_rng([seed, trial])
    value = 10.0 * math.exp(-4.0 * float(np.sum((np.asarray(x) - 0.3) ** 2)))
    return value + float(rng.normal(0, 0.2)), 0.04


def closed_loop(x: np.ndarray, trial: int, seed: int, work: Path, data: Path | list[Path], meta_data: Path | None, budget: TrialBudget,
                world_cfg=None) -> tuple[float, float]:
    """Train -> export -> drive in ``world_cfg`` (default: the embedded world) at the budget's rare-scene
    rate; returns the metric's mean over episodes and its variance of the mean."""
    from dataclasses import replace

    import torch

    from simulator.factory import WorldConfig
    from training.evaluate import EvalConfig, evaluate
    from training.export import export
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    torch.set_num_threads(1)
    p = decode(x)
    spec = LossSpec(loss=p["loss"], tau=p["tau"], weight_hidden=p["weight_hidden"], features=loss_features(p))
    meta = MetaConfig(meta_lr=p["meta_lr"], inner_lr=p["inner_lr"])
    run_dir = Path(work) / f"trial-{trial:03d}"
    Run(run_dir, data, meta_data, spec, meta, TrainConfig(steps=budget.steps, meta_steps=budget.meta_steps, seed=seed,
                                                         eval_every=budget.steps)).run(resume=True, progress=False)
    export(run_dir, run_dir / "model.onnx")
    result = evaluate(run_dir / "model.onnx", replace(world_cfg or WorldConfig(), abnormal_rate=budget.abnormal_rate),
                      EvalConfig(episodes=budget.episodes, seed=seed, workers=1, split="tune"), progress=False)
    values = np.array([e[budget.metric] for e in result["episodes"]], dtype=float)
    return float(values.mean()), float(values.var(ddof=1) / len(values)) if len(values) > 1 else 1.0

