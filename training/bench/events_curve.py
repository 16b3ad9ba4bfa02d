"""``metasteer bench events-curve``: how closed-loop rare-scene passing grows with the number of rare
events in the training data.

MSE models are trained on nested subsets of one dataset's episodes (the same rare share, fewer
or more events), exported, and judged by ``compare`` on the same paired held-out routes. Events
are counted on each subset (training and validation episodes together).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from simulator.encounters import RARE_CATEGORIES, count_events
from simulator.factory import WorldConfig
from training.compare import compare
from training.data.arrays import episode_subset
from training.data.collect import CollectConfig, collect, event_gap_frames
from training.data.dataset import DrivingDataset
from training.evaluate import EvalConfig
from training.export import export
from training.figures import pyplot
from training.fit import Run, TrainConfig
from training.losses import LossSpec
from training.meta import MetaConfig
from training.pipeline import RECORD_EVERY


def bench_events_curve(work: Path, data: Path | None = None, fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0), steps: int = 3000,
                       episodes: int = 24, frames: int = 80000, rare_share: float = 0.05, abnormal_rate: float = 0.1, seed: int = 0,
                       progress: bool = True) -> dict:
    work = Path(work)
    if data is None:
        data = work / "data"
        collect(data, WorldConfig(abnormal_rate=rare_share), CollectConfig(frames=frames, seed=1000, record_every=RECORD_EVERY), progress=progress)
    dataset = DrivingDataset(data)
    episode, category = dataset.columns["episode_seed"], dataset.columns["category"].astype(str)
    gap = event_gap_frames(dataset.manifest["config"]["collect"]["record_every"])
    points, models = [], []
    for f in fractions:
        idx = episode_subset(episode, f)
        run = work / "runs" / f"mse-{f:g}"
        cfg = TrainConfig(steps=steps, seed=seed, eval_every=max(1, steps // 10), episode_fraction=f)
        if not (run / "result.json").exists():
            Run(run, data, None, LossSpec(), MetaConfig(), cfg).run(resume=True, progress=progress)
        models.append(work / "export" / f"mse-{f:g}.onnx")
        export(run, models[-1])
        points.append({"fraction": f, "frames": int(len(idx)), "events": count_events(list(category[idx]), list(episode[idx]), gap)})
    judged = compare(models, replace(WorldConfig(), abnormal_rate=abnormal_rate), EvalConfig(episodes=episodes, seed=seed),
                     work / "compare", names=[f"{p['fraction']:g}" for p in points], progress=progress)
    for p in points:
        m = judged["models"][f"{p['fraction']:g}"]
        p["pass_rate"] = {g: m["pass_rate"][g] for g in (*RARE_CATEGORIES, "rare")}
        p["route_completion"] = m["route_completion"]
        p["normal_infractions_per_km"] = m["normal_infractions_per_km"]
    out = {"dataset": str(data), "routes": episodes, "abnormal_rate": abnormal_rate, "steps": steps, "points": points}
    out["plot"] = str(_plot(points, work / "events_curve.png", episodes, abnormal_rate))
    (work / "events_curve.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _plot(points: list[dict], path: Path, routes: int, rate: float) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for cat in RARE_CATEGORIES:
        xs = [p["events"][cat] for p in points]
        ys = [p["pass_rate"][cat]["rate"] or 0.0 for p in points]
        err = [[y - (p["pass_rate"][cat]["ci95"] or [y, y])[0] for p, y in zip(points, ys)],
               [(p["pass_rate"][cat]["ci95"] or [y, y])[1] - y for p, y in zip(points, ys)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=cat)
    ax.set(xscale="log", xlabel="events of that category in the training data", ylabel="scenes passed", ylim=(0, 1.05),
           title=f"MSE: closed-loop pass rate vs rare events ({routes} paired routes, rate {rate})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
