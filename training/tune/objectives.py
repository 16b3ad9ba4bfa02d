"""What a trial measures. ``closed_loop``: train a model with the trial's loss (warm-started from a
given model when the budget names one), export it, drive it on tuning routes (never the final
evaluation routes; the same routes for every trial, so trials are paired) and score it by
``compare``'s rare-scene pass rate or a route metric. ``synthetic``: a cheap analytic function with
episode-like noise, to check the optimiser itself (tests, smoke runs)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.label_view import LABELS
from training.precision import PRECISIONS
from training.tune.space import SPACES, decode, trial_setup

METRICS = ("rare_pass_rate", "time_without_infractions_s", "route_completion", "driving_score")


@dataclass(frozen=True)
class TrialBudget:
    space: str = field(default="learned", metadata={"help": "what is searched: the learned loss, or the oversampling baseline's share",
                                                    "choices": tuple(SPACES)})
    steps: int = field(default=600, metadata={"range": (1, None), "help": "model training steps per trial"})
    lr: float = field(default=5e-4, metadata={"range": (0.0, None), "help": "peak learning rate of a trial's training"})
    init_from: str = field(default="", metadata={"help": "warm start every trial from this run / model.pt (default: a fresh model)"})
    episodes: int = field(default=24, metadata={"range": (1, None), "help": "tuning routes per trial (the same routes for every trial)"})
    metric: str = field(default="rare_pass_rate", metadata={"help": "closed-loop metric to maximise", "choices": METRICS})
    abnormal_rate: float = field(default=0.1, metadata={"range": (0.0, 1.0), "help": "rare-scene rate of the tuning routes"})
    max_time_s: float = field(default=150.0, metadata={"range": (1.0, None), "help": "episode time limit of the tuning routes, simulated seconds"})
    labels: str = field(default="full", metadata={"help": "what a trial's training frames show its loss and sampler (train --labels)",
                                                  "choices": LABELS})
    precision: str = field(default="fp32", metadata={"help": "forward pass of a trial's training steps (train --precision)",
                                                     "choices": PRECISIONS})


def synthetic(x: np.ndarray, trial: int, seed: int) -> tuple[float, float]:
    """Smooth bump with its maximum 10 at x = 0.3 (all dims), plus seeded noise (sd 0.2)."""
    rng = np.random.default_rng([seed, trial])
    value = 10.0 * math.exp(-4.0 * float(np.sum((np.asarray(x) - 0.3) ** 2)))
    return value + float(rng.normal(0, 0.2)), 0.04


def score(episodes: list[dict], metric: str) -> tuple[float, float, dict]:
    """(value, variance of the value, compare's per-model block) of driven episodes. The pass rate's
    variance is binomial over the encounters, floored at p(1-p) = 0.05 so that 0/n or n/n is not certain."""
    from training.compare import summarise

    block, _ = summarise(episodes)
    if metric == "rare_pass_rate":
        rare = block["pass_rate"]["rare"]
        rate = rare["rate"] or 0.0
        return rate, max(rate * (1 - rate), 0.05) / max(rare["n"], 1), block
    values = np.array([e["metrics"][metric] for e in episodes], dtype=float)
    return float(values.mean()), float(values.var(ddof=1) / len(values)) if len(values) > 1 else 1.0, block


def closed_loop(x: np.ndarray, trial: int, seed: int, work: Path, data: Path | list[Path], meta_data: Path | None, budget: TrialBudget,
                world_cfg=None) -> tuple[float, float]:
    """Train -> export -> drive in ``world_cfg`` (default: the embedded world) at the budget's rare-scene
    rate; returns the metric and its variance, and leaves ``trial.json`` beside the trial's model."""
    from dataclasses import replace

    import torch

    from simulator.factory import WorldConfig
    from training.evaluate import EvalConfig, drive_routes
    from training.export import export
    from training.fit import Run, TrainConfig, warm_start

    torch.set_num_threads(1)
    params = decode(x, SPACES[budget.space])
    spec, meta, rare_fraction = trial_setup(params, budget.space)
    train = TrainConfig(steps=budget.steps, lr=budget.lr, seed=seed, eval_every=max(1, budget.steps // 5), warmup_steps=min(100, budget.steps // 10),
                        rare_fraction=rare_fraction, labels=budget.labels, precision=budget.precision)
    if budget.init_from:
        train = warm_start(train, budget.init_from)
    run_dir = Path(work) / f"trial-{trial:03d}"
    Run(run_dir, data, meta_data, spec, meta, train).run(resume=True, progress=False)
    export(run_dir, run_dir / "model.onnx")
    world = replace(world_cfg or WorldConfig(), abnormal_rate=budget.abnormal_rate)
    episodes = drive_routes([run_dir / "model.onnx"], world, EvalConfig(episodes=budget.episodes, seed=seed, workers=1, split="tune",
                                                                  max_time_s=budget.max_time_s),
                            progress=False)[0]
    value, var, block = score(episodes, budget.metric)
    (run_dir / "trial.json").write_text(json.dumps({"trial": trial, "params": params, "metric": budget.metric, "value": value,
                                                    "routes": [e["seed"] for e in episodes], **block}, indent=2) + "\n")
    return value, var
