"""``metasteer bench sample-efficiency``: every loss and baseline, several seeds, equal training
budget, on embedded data with ~3 % abnormal frames; learned losses by the meta-test protocol
(meta-trained with a 5-conv model, then frozen and used alone to train a fresh 4-conv model).
Baselines: ``oversample`` (MSE with a quarter of every batch drawn from rare-scene frames),
``category-weights`` (rare categories weighted 3x, batch-normalised), ``inverse-freq``,
``balanced-mse``.

Judged on a separate test set (own collection seed, 30 % abnormal so every category has
thousands of frames); per-group MAE does not depend on that share. Nothing here is tuned on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from simulator.factory import WorldConfig
from training.data.collect import CollectConfig, collect
from training.figures import pyplot
from training.fit import Run, TrainConfig
from training.losses import LEARNED, LossSpec
from training.meta import MetaConfig

TARGET_ABNORMAL_GAIN, TARGET_NORMAL_LOSS = 0.25, 0.05


def _datasets(work: Path, frames: int) -> dict[str, Path]:
    plan = {"train": (frames, 0.03, 1000), "meta": (max(1000, frames // 10), 0.3, 1001), "test": (max(2000, frames // 5), 0.3, 1002)}
    out = {}
    for name, (n, rate, seed) in plan.items():
        out[name] = work / "data" / name
        collect(out[name], WorldConfig(abnormal_rate=rate), CollectConfig(frames=n, seed=seed), progress=False)
    return out


# name -> (loss spec, training overrides): the baselines are named runs of the same trainer
ENTRIES = {
    "mse": (LossSpec(loss="mse"), {}),
    "oversample": (LossSpec(loss="mse"), {"rare_fraction": 0.25}),
    "category-weights": (LossSpec(loss="category-weights", category_weights="pedestrian=3,obstacle=3,sharp_bend=3"), {}),
    "inverse-freq": (LossSpec(loss="inverse-freq"), {}),
    "balanced-mse": (LossSpec(loss="balanced-mse"), {}),
    "weighted": (LossSpec(loss="weighted"), {}),
    "ml3": (LossSpec(loss="ml3"), {}),
}
BASELINES = ("oversample", "category-weights", "inverse-freq", "balanced-mse")


def _job(args: tuple) -> dict:
    import torch

    torch.set_num_threads(1)
    work, data, loss, seed, cfg = args
    spec, overrides = ENTRIES[loss]
    from training.data.arrays import ArraySet
    from training.data.dataset import DrivingDataset
    from training.evaluate_offline import offline_metrics, predict

    run = Run(Path(work) / "runs" / f"{loss}-s{seed}", data["train"], data["meta"], spec, MetaConfig(),
              replace(cfg, seed=seed, **overrides))
    run.run(resume=True, progress=False)
    from training.models.io import load_model

    model, _ = load_model(run.out)
    test = ArraySet.load(DrivingDataset(data["test"]))
    return {"loss": loss, "seed": seed, "test": offline_metrics(predict(model, test), test)}


def bench_sample_efficiency(work: Path, seeds: int = 5, frames: int = 20000, steps: int = 600, meta_steps: int = 200,
                            workers: int = 2, losses: tuple[str, ...] = tuple(ENTRIES), progress: bool = True) -> dict:
    from tqdm import tqdm

    work = Path(work)
    data = _datasets(work, frames)
    cfg = TrainConfig(steps=steps, meta_steps=meta_steps, conv_layers=4, meta_conv_layers=5, eval_every=steps)
    jobs = [(str(work), data, loss, seed, cfg) for loss in losses for seed in range(seeds)]
    results = []
    with get_context("spawn").Pool(workers) as pool:
        for r in tqdm(pool.imap_unordered(_job, jobs), total=len(jobs), desc="runs", disable=not progress):
            results.append(r)
    table = {}
    for loss in losses:
        rows = [r["test"] for r in results if r["loss"] == loss]
        ab = np.array([m["abnormal"]["mae"] for m in rows])
        no = np.array([m["normal"]["mae"] for m in rows])
        cats = {c: float(np.mean([m["by_category"][c]["mae"] for m in rows])) for c in ("pedestrian", "obstacle", "sharp_bend")}
        cat_std = {c: float(np.std([m["by_category"][c]["mae"] for m in rows])) for c in ("pedestrian", "obstacle", "sharp_bend")}
        table[loss] = {"abnormal_mae": float(ab.mean()), "abnormal_mae_std": float(ab.std()), "normal_mae": float(no.mean()),
                       "normal_mae_std": float(no.std()), "by_category": cats, "by_category_std": cat_std, "seeds": len(rows)}
    base = table.get("mse")
    verdict = {}
    for loss in LEARNED:
        if base and loss in table:
            gain = 1 - table[loss]["abnormal_mae"] / base["abnormal_mae"]
            normal_cost = table[loss]["normal_mae"] / base["normal_mae"] - 1
            others = [table[b]["abnormal_mae"] for b in BASELINES if b in table]
            verdict[loss] = {"abnormal_gain_vs_mse": gain, "normal_cost_vs_mse": normal_cost,
                             "target_met": bool(gain >= TARGET_ABNORMAL_GAIN and normal_cost <= TARGET_NORMAL_LOSS
                                                and all(table[loss]["abnormal_mae"] < o for o in others))}
    out = {"losses": table, "target": verdict, "config": {"seeds": seeds, "frames": frames, **asdict(cfg)},
           "test_set": {k: str(v) for k, v in data.items()}}
    _plot(table, work / "sample_efficiency.png")
    out["plot"] = str(work / "sample_efficiency.png")
    (work / "sample_efficiency.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _plot(table: dict, path: Path) -> None:
    plt = pyplot()
    names = list(table)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    for off, key, colour in ((-0.2, "normal", "tab:blue"), (0.2, "abnormal", "tab:red")):
        ax.bar(x + off, [table[n][f"{key}_mae"] for n in names], 0.4, yerr=[table[n][f"{key}_mae_std"] for n in names],
               color=colour, capsize=3, label=f"{key} frames")
    ax.set_xticks(x, names)
    ax.set(ylabel="test MAE (steer units), mean +- std over seeds", title="sample efficiency at ~3 % abnormal training frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
