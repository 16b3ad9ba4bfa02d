"""``metasteer pipeline``: the main job, stage by stage, into one run directory.

collect (train + meta sets) -> MSE baseline -> tune the learned loss (BoTorch, small budget, tuning
routes) -> train the learned-loss model with the best hyperparameters -> export both to ONNX ->
closed-loop comparison on held-out evaluation routes -> report (markdown + PNGs) and model cards.

Every stage keeps its outputs under ``OUT/`` and resumes: re-running a killed pipeline continues.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.data.collect import CollectConfig, collect
from training.data.contact_sheet import contact_sheet
from training.data.dataset import DrivingDataset
from training.world.factory import WorldConfig


@dataclass(frozen=True)
class PipelineConfig:
    frames: int = field(default=20000, metadata={"help": "training frames to record"})
    seed: int = field(default=0, metadata={"help": "seed of the whole run"})
    quick: bool = field(default=False, metadata={"help": "small settings for a fast end-to-end pass (about 3 min)"})
    steps: int = field(default=600, metadata={"help": "training steps of each final model"})
    meta_steps: int = field(default=200, metadata={"help": "meta-training steps of the final learned loss"})
    tune_budget: int = field(default=4, metadata={"help": "tuning trials (closed loop)"})
    eval_episodes: int = field(default=20, metadata={"help": "held-out episodes per model"})
    eval_abnormal_rate: float = field(default=0.1, metadata={"help": "rare-scene rate of the evaluation and tuning routes"})

    def sizes(self) -> dict:
        if self.quick:
            return {"frames": min(self.frames, 3000), "meta_frames": 600, "steps": 120, "meta_steps": 30, "tune_budget": 2,
                    "trial_steps": 40, "trial_meta_steps": 15, "trial_episodes": 1, "episodes": 4, "max_time_s": 45.0}
        return {"frames": self.frames, "meta_frames": max(1000, self.frames // 10), "steps": self.steps, "meta_steps": self.meta_steps,
                "tune_budget": self.tune_budget, "trial_steps": self.steps // 2, "trial_meta_steps": self.meta_steps // 2,
                "trial_episodes": 4, "episodes": self.eval_episodes, "max_time_s": 150.0}


def _stage(name: str) -> float:
    print(f"\n== {name}", file=sys.stderr, flush=True)
    return time.perf_counter()


def run_pipeline(out: Path, world_cfg: WorldConfig, cfg: PipelineConfig, progress: bool = True) -> dict:
    from dataclasses import replace

    import torch

    from training.evaluate import EvalConfig, evaluate
    from training.export import export
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig
    from training.tune.objectives import TrialBudget
    from training.tune.space import loss_features
    from training.tune.tuner import TuneConfig, tune

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = cfg.sizes()
    timings: dict[str, float] = {}

    t = _stage("1/6 collect")
    data, meta_data = out / "data" / "train", out / "data" / "meta"
    collect(data, world_cfg, CollectConfig(frames=n["frames"], seed=cfg.seed), progress=progress)
    collect(meta_data, replace(world_cfg, abnormal_rate=0.3), CollectConfig(frames=n["meta_frames"], seed=cfg.seed + 1), progress=progress)
    dataset = DrivingDataset(data)
    sheet = contact_sheet(dataset, out / "contact_sheet.png", seed=cfg.seed)
    timings["collect_s"] = time.perf_counter() - t

    train_cfg = TrainConfig(steps=n["steps"], meta_steps=n["meta_steps"], seed=cfg.seed, eval_every=max(1, n["steps"] // 4))
    t = _stage("2/6 MSE baseline")
    Run(out / "runs" / "mse", data, meta_data, LossSpec(loss="mse"), MetaConfig(), train_cfg).run(resume=True, progress=progress)
    timings["mse_s"] = time.perf_counter() - t

    t = _stage("3/6 tune the learned loss (closed loop, tuning routes)")
    budget = TrialBudget(steps=n["trial_steps"], meta_steps=n["trial_meta_steps"], episodes=n["trial_episodes"],
                         abnormal_rate=cfg.eval_abnormal_rate)
    tuned = tune(out / "tune", TuneConfig(budget=n["tune_budget"], init=min(2, n["tune_budget"]), parallel=2, seed=cfg.seed),
                 "closed-loop", baseline=False, progress=progress, data=data, meta_data=meta_data, budget=budget)
    best = tuned["bo"]["best"]["params"]
    timings["tune_s"] = time.perf_counter() - t

    t = _stage(f"4/6 learned loss ({best['loss']}, tau {best['tau']:.2f}) with the best hyperparameters")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = LossSpec(loss=best["loss"], tau=best["tau"], weight_hidden=best["weight_hidden"], features=loss_features(best))
    Run(out / "runs" / "learned", data, meta_data, spec, MetaConfig(meta_lr=best["meta_lr"], inner_lr=best["inner_lr"]),
        train_cfg).run(resume=True, progress=progress)
    timings["learned_s"] = time.perf_counter() - t

    t = _stage("5/6 export to ONNX")
    exported = {name: export(out / "runs" / name, out / "export" / f"{name}.onnx") for name in ("mse", "learned")}
    timings["export_s"] = time.perf_counter() - t

    t = _stage("6/6 closed-loop comparison on held-out routes")
    eval_world = replace(world_cfg, abnormal_rate=cfg.eval_abnormal_rate)
    ecfg = EvalConfig(episodes=n["episodes"], seed=cfg.seed, workers=2, max_time_s=n["max_time_s"])
    closed = {name: evaluate(out / "export" / f"{name}.onnx", eval_world, ecfg, out / "closed_loop" / name, progress=progress)
              for name in ("mse", "learned")}
    timings["evaluate_s"] = time.perf_counter() - t

    report = {
        "run": str(out), "config": asdict(cfg), "sizes": n, "world": world_cfg.world,
        "dataset": {"frames": len(dataset), "counts": dataset.manifest["counts"], "abnormal_share": dataset.manifest["abnormal_share"]},
        "tuning": {"best": tuned["bo"]["best"], "trials": tuned["bo"]["trials"], "best_so_far": tuned["bo"]["best_so_far"]},
        "offline": {name: json.loads((out / "runs" / name / "result.json").read_text())["val"] for name in ("mse", "learned")},
        "closed_loop": {name: {k: v for k, v in r.items() if k != "episodes"} for name, r in closed.items()},
        "exported": exported, "timings_s": timings,
    }
    ratio = _ratio(report)
    report["time_without_infractions_ratio"] = ratio
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _comparison_plot(report, out / "comparison.png")
    (out / "report.md").write_text(_markdown(report, sheet))
    for name in ("mse", "learned"):
        (out / "export" / f"{name}.md").write_text(model_card(name, report))
    return {"run": str(out), "report": str(out / "report.md"), "time_without_infractions_ratio": ratio,
            "closed_loop": {name: {k: report["closed_loop"][name][k]["mean"] for k in ("time_without_infractions_s", "route_completion", "driving_score", "collisions")}
                            for name in ("mse", "learned")}, "timings_s": timings}


def _ratio(report: dict) -> float | None:
    a = report["closed_loop"]["learned"]["time_without_infractions_s"]["mean"]
    b = report["closed_loop"]["mse"]["time_without_infractions_s"]["mean"]
    return a / b if b else None


def _mae(m: dict) -> str:
    return "n/a (no frames)" if m["mae"] is None else f"{m['mae']:.4f}"


def _fmt(m: dict) -> str:
    return f"{m['mean']:.3g} ± {m['ci95']:.2g}" if m.get("ci95") is not None else f"{m['mean']:.3g}"


METRICS = ("time_without_infractions_s", "distance_between_infractions_m", "route_completion", "driving_score", "collisions",
           "collisions_pedestrian", "collisions_static", "collisions_vehicle", "lane_invasions", "off_road_time_s")


def _markdown(r: dict, sheet: Path) -> str:
    cl, off = r["closed_loop"], r["offline"]
    lines = [f"# metasteer pipeline report: `{r['run']}`", "",
             f"World `{r['world']}`, seed {r['config']['seed']}, {r['dataset']['frames']} training frames "
             f"({r['dataset']['abnormal_share']:.1%} abnormal: {r['dataset']['counts']}).", "",
             "## Closed loop (held-out evaluation routes, mean ± 95 % CI)", "",
             "| metric | MSE | learned loss |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(cl['mse'][k])} | {_fmt(cl['learned'][k])} |" for k in METRICS]
    ratio = r["time_without_infractions_ratio"]
    lines += ["", f"Time without infractions, learned / MSE: **{ratio:.2f}x**" if ratio else "", "",
              "## Offline (validation episodes of the training data, MAE in steer units)", "",
              "| | MSE | learned loss |", "|---|---|---|"]
    for key in ("overall", "normal", "abnormal"):
        lines.append(f"| {key} | {_mae(off['mse'][key])} | {_mae(off['learned'][key])} |")
    best = r["tuning"]["best"]
    lines += ["", "## Tuning", "", f"{r['tuning']['trials']} closed-loop trials on tuning routes; best trial {best['trial']} "
              f"({best['method']}): objective {best['y']:.3g}, hyperparameters `{json.dumps(best['params'])}`.", "",
              "## Figures", "", f"![contact sheet]({sheet.name})", "", "![comparison](comparison.png)", "",
              "![MSE trajectories](closed_loop/mse/trajectories.png)", "", "![learned trajectories](closed_loop/learned/trajectories.png)", "",
              "![learning curve, learned loss](runs/learned/learning_curve.png)", "", "![what was learned](runs/learned/learned_loss.png)", "",
              "![tuning convergence](tune/convergence.png)", "", "![GP over tau](tune/gp_tau.png)", "",
              f"Stage timings (s): `{json.dumps({k: round(v, 1) for k, v in r['timings_s'].items()})}`", ""]
    return "\n".join(lines)


def model_card(name: str, r: dict) -> str:
    e, cl, off = r["exported"][name], r["closed_loop"][name], r["offline"][name]
    lines = [f"# Model card: `{name}.onnx`", "",
             f"- model id (SHA-256 prefix): `{e['model_id']}`; ONNX opset {e['opset']}; parity with torch: max |diff| {e['parity_max_abs_diff']:.2g}",
             "- input: (N, 3, 66, 200) float32 RGB in [-1, 1], the road band of an 800x600 fov-90 frame (crop rows 45-89 %, resize); "
             "the preprocessing spec is in the file's metadata",
             "- output: steer in [-1, 1], CARLA convention (+1 = full right)",
             f"- loss: {'MSE' if name == 'mse' else 'learned (' + r['tuning']['best']['params']['loss'] + ')'}; "
             f"trained by `metasteer pipeline` (seed {r['config']['seed']}, {r['dataset']['frames']} embedded-world frames)", "",
             "## Offline (validation episodes, MAE in steer units)", "",
             f"overall {_mae(off['overall'])}, normal {_mae(off['normal'])}, abnormal {_mae(off['abnormal'])}", "",
             f"## Closed loop ({cl['config']['episodes']} held-out embedded routes, rare-scene rate {cl['abnormal_rate']}, mean ± 95 % CI)", ""]
    lines += [f"- {k}: {_fmt(cl[k])}" for k in METRICS]
    lines += ["", "Measured in the embedded world only; transfer to CARLA or a real car has not been measured.", ""]
    return "\n".join(lines)


def _comparison_plot(r: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("time_without_infractions_s", "route_completion", "driving_score", "collisions", "lane_invasions")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.5))
    for ax, k in zip(axes, keys):
        vals = [r["closed_loop"][n][k] for n in ("mse", "learned")]
        ax.bar(["MSE", "learned"], [v["mean"] for v in vals], yerr=[v["ci95"] or 0 for v in vals], capsize=4, color=["tab:gray", "tab:green"])
        ax.set_title(k, fontsize=9)
    fig.suptitle("closed loop on held-out routes (mean ± 95 % CI)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
