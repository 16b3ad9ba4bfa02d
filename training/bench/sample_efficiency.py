"""``metasteer bench sample-efficiency``: every loss and baseline, several seeds, equal training
budget, on embedded data with ~3 % abnormal frames. Learned losses two ways: by the meta-test
protocol (``weighted``, ``ml3``: meta-trained with a 5-conv model, then frozen and used alone to
train a fresh 4-conv model), and online (``*-online``: learned along the 4-conv model's own run
through its next Adam step, on batches with a quarter of rare frames; ``mwn-online`` also reads each
sample's error). Baselines: ``oversample`` (MSE with a quarter of every batch drawn from rare-scene
frames), ``category-weights`` (rare categories weighted 3x, batch-normalised), ``inverse-freq``,
``balanced-mse``.

``events_curve``: the same runs on nested subsets of the training episodes (the same rare share,
fewer events), per loss: rare events in the subset -> abnormal MAE mean and std over seeds.

Judged on a separate test set (own collection seed, 30 % abnormal so every category has
thousands of frames); per-group MAE does not depend on that share. Nothing here is tuned on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from simulator.factory import WorldConfig
from training.data.collect import CollectConfig, collect
from training.figures import pyplot
from training.fit import Run, TrainConfig
from training.losses import LossSpec
from training.meta import MetaConfig
from training.workers import pool as worker_pool

TARGET_ABNORMAL_GAIN, TARGET_NORMAL_LOSS = 0.25, 0.05


def _datasets(work: Path, frames: int) -> dict[str, Path]:
    plan = {"train": (frames, 0.03, 1000), "meta": (max(1000, frames // 10), 0.3, 1001), "test": (max(2000, frames // 5), 0.3, 1002)}
    out = {}
    for name, (n, rate, seed) in plan.items():
        out[name] = work / "data" / name
        collect(out[name], WorldConfig(abnormal_rate=rate), CollectConfig(frames=n, seed=seed), progress=False)
    return out


ONLINE = MetaConfig(schedule="online", lookahead="adam", head_only=True)
# name -> (loss spec, training overrides, meta-learning settings): every entry is a named run of the same trainer
ENTRIES = {
    "mse": (LossSpec(loss="mse"), {}, MetaConfig()),
    "oversample": (LossSpec(loss="mse"), {"rare_fraction": 0.25}, MetaConfig()),
    "category-weights": (LossSpec(loss="category-weights", category_weights="pedestrian=3,obstacle=3,sharp_bend=3"), {}, MetaConfig()),
    "inverse-freq": (LossSpec(loss="inverse-freq"), {}, MetaConfig()),
    "balanced-mse": (LossSpec(loss="balanced-mse"), {}, MetaConfig()),
    "weighted": (LossSpec(loss="weighted"), {}, MetaConfig()),
    "ml3": (LossSpec(loss="ml3"), {}, MetaConfig()),
    "weighted-online": (LossSpec(loss="weighted"), {"rare_fraction": 0.25}, ONLINE),
    "mwn-online": (LossSpec(loss="weighted", weight_reads_loss=True), {"rare_fraction": 0.25}, ONLINE),
    "ml3-online": (LossSpec(loss="ml3"), {"rare_fraction": 0.25}, ONLINE),
}
BASELINES = ("oversample", "category-weights", "inverse-freq", "balanced-mse")
LEARNED_ENTRIES = ("weighted", "ml3", "weighted-online", "mwn-online", "ml3-online")
DEFAULT_ENTRIES = tuple(e for e in ENTRIES if e not in ("weighted", "ml3"))  # the pretrained (meta-test) variants on request
CURVE_FRACTIONS = (0.25, 0.5, 1.0)  # nested shares of the training episodes


def _job(args: tuple) -> dict:
    import torch

    torch.set_num_threads(1)
    work, data, loss, seed, cfg, fraction = args
    spec, overrides, meta = ENTRIES[loss]
    from simulator.encounters import count_events
    from training.data.arrays import ArraySet
    from training.data.collect import event_gap_frames
    from training.data.dataset import DrivingDataset
    from training.evaluate_offline import offline_metrics, predict
    from training.models.io import load_model

    name = f"{loss}-s{seed}" + ("" if fraction == 1.0 else f"-f{fraction:g}")
    run = Run(Path(work) / "runs" / name, data["train"], data["meta"], spec, meta, replace(cfg, seed=seed, episode_fraction=fraction, **overrides))
    run.run(resume=True, progress=False)
    gap = event_gap_frames(DrivingDataset(data["train"]).manifest["config"]["collect"]["record_every"])
    events = count_events(list(run.train.category), list(run.train.episode), gap)
    model, _ = load_model(run.out)
    test = ArraySet.load(DrivingDataset(data["test"]))
    return {"loss": loss, "seed": seed, "fraction": fraction, "events": events, "test": offline_metrics(predict(model, test), test)}


def bench_sample_efficiency(work: Path, seeds: int = 3, frames: int = 40000, steps: int = 600, meta_steps: int = 200,
                            workers: int = 2, losses: tuple[str, ...] = DEFAULT_ENTRIES,
                            curve_losses: tuple[str, ...] = ("mse", "oversample", "mwn-online"), progress: bool = True) -> dict:
    from tqdm import tqdm

    work = Path(work)
    data = _datasets(work, frames)
    cfg = TrainConfig(steps=steps, meta_steps=meta_steps, conv_layers=4, meta_conv_layers=5, eval_every=steps)
    jobs = [(str(work), data, loss, seed, cfg, 1.0) for loss in losses for seed in range(seeds)]
    jobs += [(str(work), data, loss, seed, cfg, f) for loss in curve_losses for f in CURVE_FRACTIONS[:-1] for seed in range(seeds)]
    results = []
    with worker_pool(workers) as pool:
        for r in tqdm(pool.imap_unordered(_job, jobs), total=len(jobs), desc="runs", disable=not progress):
            results.append(r)
    table = {}
    for loss in losses:
        rows = [r["test"] for r in results if r["loss"] == loss and r["fraction"] == 1.0]
        ab = np.array([m["abnormal"]["mae"] for m in rows])
        no = np.array([m["normal"]["mae"] for m in rows])
        cats = {c: float(np.mean([m["by_category"][c]["mae"] for m in rows])) for c in ("pedestrian", "obstacle", "sharp_bend")}
        cat_std = {c: float(np.std([m["by_category"][c]["mae"] for m in rows])) for c in ("pedestrian", "obstacle", "sharp_bend")}
        table[loss] = {"abnormal_mae": float(ab.mean()), "abnormal_mae_std": float(ab.std()), "normal_mae": float(no.mean()),
                       "normal_mae_std": float(no.std()), "by_category": cats, "by_category_std": cat_std, "seeds": len(rows)}
    base = table.get("mse")
    verdict = {}
    for loss in LEARNED_ENTRIES:
        if base and loss in table:
            gain = 1 - table[loss]["abnormal_mae"] / base["abnormal_mae"]
            normal_cost = table[loss]["normal_mae"] / base["normal_mae"] - 1
            others = [table[b]["abnormal_mae"] for b in BASELINES if b in table]
            verdict[loss] = {"abnormal_gain_vs_mse": gain, "normal_cost_vs_mse": normal_cost,
                             "target_met": bool(gain >= TARGET_ABNORMAL_GAIN and normal_cost <= TARGET_NORMAL_LOSS
                                                and all(table[loss]["abnormal_mae"] < o for o in others))}
    curve = events_curve(results, curve_losses)
    out = {"losses": table, "target": verdict, "events_curve": curve, "events_target": events_target(curve),
           "config": {"seeds": seeds, "frames": frames, **asdict(cfg)}, "test_set": {k: str(v) for k, v in data.items()}}
    _plot(table, work / "sample_efficiency.png")
    _plot_curve(curve, work / "events_curve_offline.png")
    out["plots"] = [str(work / "sample_efficiency.png"), str(work / "events_curve_offline.png")]
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


def events_curve(results: list[dict], losses: tuple[str, ...]) -> dict:
    """Per loss and data share: rare events in the training subset (all categories, mean over seeds)
    -> abnormal MAE mean and std over seeds."""
    curve = {}
    for loss in losses:
        points = []
        for f in CURVE_FRACTIONS:
            rows = [r for r in results if r["loss"] == loss and r["fraction"] == f]
            if rows:
                ab = np.array([r["test"]["abnormal"]["mae"] for r in rows])
                points.append({"fraction": f, "events": float(np.mean([sum(r["events"].values()) for r in rows])),
                               "events_by_category": rows[0]["events"], "abnormal_mae": float(ab.mean()), "abnormal_mae_std": float(ab.std()),
                               "seeds": len(rows)})
        curve[loss] = points
    return curve


def events_target(curve: dict) -> dict:
    """Per learned loss: the fewest events at which its abnormal MAE reaches MSE's at the largest size,
    as a share of that size (target <= 0.5: half the events or fewer)."""
    if not curve.get("mse"):
        return {}
    goal, full = curve["mse"][-1]["abnormal_mae"], curve["mse"][-1]["events"]
    out = {}
    for loss, points in curve.items():
        if loss == "mse" or not points:
            continue
        reached = [p["events"] for p in points if p["abnormal_mae"] <= goal]
        share = min(reached) / full if reached else None
        out[loss] = {"events_share_to_reach_mse": share, "target_met": share is not None and share <= 0.5}
    return out


def _plot_curve(curve: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for loss, points in curve.items():
        ax.errorbar([p["events"] for p in points], [p["abnormal_mae"] for p in points], yerr=[p["abnormal_mae_std"] for p in points],
                    marker="o", capsize=3, label=loss)
    ax.set(xscale="log", xlabel="rare events in the training data (all categories)", ylabel="abnormal test MAE, mean +- std over seeds",
           title="offline sample efficiency: events -> error on rare frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
