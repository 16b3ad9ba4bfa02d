"""The ``metasteer`` command: one entry point, a subcommand per job.

Every command that reports numbers prints them as one JSON object on the last line with ``--json``;
long ones show a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from training.config import add_arguments, bounded, from_args

Handler = Callable[[argparse.Namespace], dict | None]
COUNT, SEED = bounded(int, 1), bounded(int, 0)
KINDS = {".onnx": "an ONNX model", ".md": "a markdown file", ".json": "a JSON file", ".png": "a PNG image", ".csv": "a CSV file", ".txt": "a text file",
         ".npy": "a NumPy array", ".yaml": "a YAML file", ".py": "a Python file", ".pt": "a torch file"}


def _kind(path: Path, missing: str | None = None) -> str:
    """What ``path`` is, in words, for naming a wrong file kind; a directory is named by the file it lacks."""
    if path.is_dir():
        return f"a directory without {missing}" if missing else "a directory"
    return KINDS.get(path.suffix.lower(), f"a {path.suffix} file" if path.suffix else "a file without a suffix")


def _existing(text: str, expected: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or directory (expected {expected})")
    return path


def _is_run(path: Path) -> bool:
    return (path / "model.pt").is_file() if path.is_dir() else path.name == "model.pt"


def onnx_model(text: str) -> str:
    """An argparse ``type``: an existing ``.onnx`` file."""
    path = _existing(text, "an ONNX model, .onnx")
    if path.is_file() and path.suffix == ".onnx":
        return text
    raise argparse.ArgumentTypeError(f"{text} is {_kind(path)}, not an ONNX model (.onnx)")


def run_model(text: str) -> str:
    """An argparse ``type``: a run directory (holding model.pt) or its model.pt."""
    path = _existing(text, "a run directory or its model.pt")
    if _is_run(path):
        return text
    raise argparse.ArgumentTypeError(f"{text} is {_kind(path, 'model.pt')}, neither a run directory nor its model.pt")


def any_model(text: str) -> str:
    """An argparse ``type``: an ONNX model, a run directory or its model.pt."""
    path = _existing(text, "an ONNX model (.onnx), a run directory or its model.pt")
    if (path.is_file() and path.suffix == ".onnx") or _is_run(path):
        return text
    raise argparse.ArgumentTypeError(f"{text} is {_kind(path, 'model.pt')}, neither an ONNX model (.onnx) nor a run directory (or its model.pt)")


def _dir_holding(text: str, marker: str, kind: str, not_what: str) -> str:
    """``text`` if it names a directory holding ``marker``; else an error naming what it is instead."""
    path = _existing(text, kind)
    if path.is_dir() and (path / marker).is_file():
        return text
    raise argparse.ArgumentTypeError(f"{text} is {_kind(path, marker)}, not {not_what}")


def dataset_dir(text: str) -> str:
    """An argparse ``type``: a recorded dataset (a directory with manifest.json)."""
    return _dir_holding(text, "manifest.json", "a dataset directory", "a dataset directory (written by `metasteer collect`)")


def new_file(suffix: str, what: str) -> Callable[[str], str]:
    """An argparse ``type``: a file to write, named with ``suffix``."""

    def parse(text: str) -> str:
        if Path(text).suffix != suffix or Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"{text}: expected {what} path ending in {suffix}")
        return text

    return parse


def out_dir(text: str) -> str:
    """An argparse ``type``: a directory to write into (made if missing, resumed if it holds a run), never a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is {_kind(Path(text))}; expected a directory to write into")
    return text


def rosbag_dir(text: str) -> str:
    """An argparse ``type``: a rosbag2 recording (a directory with metadata.yaml)."""
    return _dir_holding(text, "metadata.yaml", "a rosbag2 directory", "a rosbag2 recording")


def pipeline_run(text: str) -> str:
    """An argparse ``type``: a finished ``metasteer pipeline`` run (holding report.json)."""
    path = _existing(text, "a finished pipeline run")
    if (path / "report.json").is_file():
        return text
    raise argparse.ArgumentTypeError(f"{text} is {_kind(path, 'report.json')}, not a finished `metasteer pipeline` run")


def fractions(text: str) -> tuple[float, ...]:
    """An argparse ``type``: comma-separated shares in (0, 1]."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers") from None
    if not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text} is out of range: every share must be in (0, 1]")
    return values


def seed_list(text: str) -> list[int]:
    """An argparse ``type``: comma-separated distinct training seeds (a seed twice would count its scenes twice)."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers") from None
    if min(values) < 0 or len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"{text}: seeds must be distinct and >= 0")
    return values


def _emit(result: dict | None, as_json: bool) -> None:
    if result is None:
        return
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def _cmd_collect(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.data.collect import CollectConfig, collect

    manifest = collect(Path(args.out), from_args(WorldConfig, args), from_args(CollectConfig, args), progress=not args.no_progress)
    return {"out": args.out, "frames": manifest["frames"], "counts": manifest["counts"], "events": manifest["events"],
            "abnormal_share": manifest["abnormal_share"], "shards": len(manifest["shards"])}


def _cmd_show(args: argparse.Namespace) -> dict:
    from training.data.contact_sheet import contact_sheet
    from training.data.dataset import DrivingDataset

    dataset = DrivingDataset(args.dataset)
    path = contact_sheet(dataset, args.out, per_group=args.per_group, seed=args.seed)
    return {"sheet": str(path), "frames": len(dataset), "abnormal_share": dataset.manifest["abnormal_share"]}


def _cmd_pipeline(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.pipeline import PipelineConfig, run_pipeline

    return run_pipeline(Path(args.out), from_args(WorldConfig, args), from_args(PipelineConfig, args), progress=not args.no_progress,
                        keep=Path(args.keep) if args.keep else None)


def _cmd_study(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.pipeline import PipelineConfig
    from training.study import StudyConfig, run_study

    return run_study(Path(args.out), from_args(WorldConfig, args), from_args(PipelineConfig, args), from_args(StudyConfig, args),
                     progress=not args.no_progress, keep=Path(args.keep) if args.keep else None)


def _cmd_train(args: argparse.Namespace) -> dict:
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run = Run(Path(args.out), [Path(d) for d in args.data], Path(args.meta_data) if args.meta_data else None,
              from_args(LossSpec, args), from_args(MetaConfig, args), from_args(TrainConfig, args))
    result = run.run(resume=args.resume, progress=not args.no_progress)
    val = result["val"]
    return {"run": result["run"], "loss": result["loss"], "seed": result["seed"], "val_mae": val["overall"]["mae"],
            "val_mae_normal": val["normal"]["mae"], "val_mae_abnormal": val["abnormal"]["mae"], "val_mae_balanced": result["val_mae_balanced"],
            "best_step": result["best_step"], "device": result["device"], "plots": result["plots"]}


def _cmd_evaluate_offline(args: argparse.Namespace) -> dict:
    from metasteer.preprocess import PreprocessSpec
    from training.data.arrays import ArraySet
    from training.data.dataset import DrivingDataset
    from training.device import resolve_device
    from training.evaluate_offline import offline_metrics, plot_offline, predict
    from training.fit import input_spec
    from training.models.io import load_model

    device = resolve_device("auto")
    model, info = load_model(args.run)
    dataset = DrivingDataset(args.data)
    recorded = input_spec([dataset.manifest])
    if "preprocess" in info and recorded != PreprocessSpec.from_json(info["preprocess"]):
        raise ValueError(f"{args.data}: recorded with input contract {recorded}; "
                         f"{args.run} was trained on {PreprocessSpec.from_json(info['preprocess'])}")
    data = ArraySet.load(dataset)
    pred = predict(model.to(device), data, device=device)
    metrics = offline_metrics(pred, data)
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    plot = plot_offline(metrics, pred, data, run_dir / f"offline_{Path(args.data).name}.png",
                        f"{run_dir.name} on {Path(args.data).name}: loss {info['loss']['loss']}")
    (run_dir / f"offline_{Path(args.data).name}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics | {"plot": str(plot)}


def _cmd_bench_meta_step(args: argparse.Namespace) -> dict:
    from training.bench.meta_step import bench_meta_step

    return bench_meta_step(batch=args.batch, repeats=args.repeats, seed=args.seed)


def _cmd_bench_ml3_sine(args: argparse.Namespace) -> dict:
    import torch

    from training.bench.ml3_sine import bench_ml3_sine

    torch.set_num_threads(1)  # tiny MLPs: more threads only contend
    return bench_ml3_sine(seeds=tuple(range(args.seeds)))


def _cmd_bench_sample_efficiency(args: argparse.Namespace) -> dict:
    from training.bench.sample_efficiency import ENTRIES, bench_sample_efficiency

    losses = tuple(x for x in args.losses.split(",") if x)
    unknown = sorted(set(losses) - set(ENTRIES))
    if unknown or not losses:
        raise ValueError(f"--losses {args.losses!r}: unknown {unknown}; choose from {list(ENTRIES)}")
    return bench_sample_efficiency(Path(args.work), seeds=args.seeds, frames=args.frames, steps=args.steps,
                                   meta_steps=args.meta_steps, workers=args.workers, losses=losses, progress=not args.no_progress)


def _cmd_evaluate(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.evaluate import REPORTED, EvalConfig, evaluate

    out_dir = Path(args.out) if args.out else None
    if args.video and not out_dir:
        raise ValueError("--video writes the videos into --out: give an output directory")
    result = evaluate(args.model, from_args(WorldConfig, args), from_args(EvalConfig, args), out_dir, progress=not args.no_progress,
                      videos=args.video)
    shown = ("model_id", *REPORTED, *(("videos",) if args.video else ()))
    return {k: v for k, v in result.items() if k != "episodes"} if args.json else {k: result[k] for k in shown}


def _cmd_compare(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.compare import compare, table
    from training.evaluate import EvalConfig

    if args.video and not args.out:
        raise ValueError("--video writes the videos into --out: give an output directory")
    result = compare(args.models, from_args(WorldConfig, args), from_args(EvalConfig, args), Path(args.out) if args.out else None,
                     names=args.names.split(",") if args.names else None, progress=not args.no_progress, videos=args.video,
                     scenarios=args.scenarios)
    print(table(result))
    for v in result.get("videos", []):
        print(f"\n{v['video']}: route {v['route']}, {v['category']} #{v['index'] + 1}: "
              + ", ".join(f"{m} {o}" for m, o in v["outcomes"].items()))
    return result if args.json else None


def _cmd_dagger(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.dagger import DaggerConfig, dagger
    from training.fit import TrainConfig

    return dagger(Path(args.out), Path(args.run), [Path(d) for d in args.data], from_args(WorldConfig, args),
                  from_args(DaggerConfig, args), train_cfg=TrainConfig(precision=args.precision, labels=args.labels), progress=not args.no_progress,
                  meta_data=Path(args.meta_data) if args.meta_data else None)


def _cmd_bench_events_curve(args: argparse.Namespace) -> dict:
    from training.bench.events_curve import bench_events_curve

    return bench_events_curve(Path(args.work), Path(args.data) if args.data else None, args.fractions, steps=args.steps, episodes=args.episodes,
                              seed=args.seed, progress=not args.no_progress)


def _cmd_bench_dagger_curve(args: argparse.Namespace) -> dict:
    from training.bench.dagger_curve import bench_dagger_curve

    return bench_dagger_curve(Path(args.run), Path(args.work), episodes=args.episodes, progress=not args.no_progress)


def _cmd_bench_architecture(args: argparse.Namespace) -> dict:
    from training.bench.architecture import bench_architecture

    return bench_architecture(Path(args.work), args.archs.split(","), args.seeds, size=args.size,
                              episodes=args.episodes, progress=not args.no_progress, keep=Path(args.keep) if args.keep else None)


def _cmd_bench_closed_loop(args: argparse.Namespace) -> dict:
    from training.bench.closed_loop import bench_closed_loop

    return bench_closed_loop(routes=args.routes, max_time_s=args.max_time_s, seed=args.seed, workers=args.workers, repeats=args.repeats)


def _cmd_bench_train_step(args: argparse.Namespace) -> dict:
    from training.bench.train_step import bench_train_step

    return bench_train_step(frames=args.frames, batch=args.batch, repeats=args.repeats)


def _cmd_export(args: argparse.Namespace) -> dict:
    from training.export import export

    return export(args.run, args.out)


def _cmd_quantize(args: argparse.Namespace) -> dict:
    from training.quantize import quantize

    return quantize(args.model, args.out, calibration_frames=args.calibration_frames, seed=args.seed, data=args.data)


def _cmd_tune(args: argparse.Namespace) -> dict:
    from simulator.factory import WorldConfig
    from training.tune.objectives import TrialBudget
    from training.tune.tuner import TuneConfig, tune

    extra = {}
    if args.objective == "closed-loop":
        if not args.data:
            raise ValueError("--data is required for --objective closed-loop")
        extra = {"data": Path(args.data), "meta_data": Path(args.meta_data) if args.meta_data else None, "budget": from_args(TrialBudget, args),
                 "world_cfg": from_args(WorldConfig, args)}
    else:
        extra = {"delay_s": args.synthetic_delay_s}
    return tune(Path(args.out), from_args(TuneConfig, args), args.objective, baseline=args.baseline, progress=not args.no_progress, **extra)


def _cmd_drive(args: argparse.Namespace) -> dict:
    from training.drive import DriveConfig, drive

    if args.world != "embedded":
        raise ValueError("drive runs the embedded bridge; beside CARLA use launch/carla_bridge.launch.py with the ros-bridge")
    return drive(args.model, from_args(DriveConfig, args), log_dir=Path(args.logs) if args.logs else None)


def _cmd_ingest(args: argparse.Namespace) -> dict:
    from training.data.ingest import IngestConfig, ingest

    return ingest([Path(b) for b in args.bag], Path(args.out), from_args(IngestConfig, args))


def _cmd_bench_node_latency(args: argparse.Namespace) -> dict:
    import subprocess

    # runs in its own process: the benchmark is ROS code, and training never imports rclpy
    out = subprocess.run([sys.executable, "-m", "metasteer.nodes.bench_latency", "--model", args.model, "--frames", str(args.frames),
                          "--threads", str(args.threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cmd_bench_node_soak(args: argparse.Namespace) -> dict:
    import subprocess

    # its own process, as node-latency: ROS code stays out of training
    out = subprocess.run([sys.executable, "-m", "metasteer.nodes.bench_soak", "--model", args.model, "--minutes", str(args.minutes),
                          "--warmup-s", str(args.warmup_s), "--threads", str(args.threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cmd_bench_sim(args: argparse.Namespace) -> dict:
    from training.bench.sim import bench_sim

    return bench_sim(steps=args.steps, seed=args.seed, abnormal_rate=args.abnormal_rate, repeats=args.repeats)


def build_parser() -> argparse.ArgumentParser:
    from simulator.factory import WorldConfig
    from training.data.collect import CollectConfig

    parser = argparse.ArgumentParser(prog="metasteer", description="Meta-learned losses for steering: world, data, training, deployment.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, help_text: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print the result as one JSON object (last line)")
        p.set_defaults(handler=handler)
        return p

    p = command("collect", _cmd_collect, "record an imbalanced driving dataset (resumes if killed)")
    add_arguments(p, WorldConfig)
    add_arguments(p, CollectConfig)
    p.add_argument("--out", type=out_dir, required=True, help="dataset directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    from training.pipeline import PipelineConfig

    p = command("pipeline", _cmd_pipeline, "the main job: collect, MSE baseline, tune + train the learned loss, export, closed-loop comparison, report")
    add_arguments(p, WorldConfig)
    add_arguments(p, PipelineConfig)
    p.add_argument("--out", type=out_dir, default="runs/demo", help="run directory")
    p.add_argument("--keep", type=out_dir, default=None, help="small directory to commit: every finished search, the choice, the "
                   "comparisons, the exports and the report; a run whose --out was lost resumes from it (data, MSE and DAgger made again)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    from training.study import StudyConfig

    p = command("study", _cmd_study, "the pipeline over training seeds: tune once on the first, retrain every configuration on the "
                "others, pooled per-route statistics with two intervals")
    add_arguments(p, WorldConfig)
    add_arguments(p, PipelineConfig, skip=("seed",))
    add_arguments(p, StudyConfig)
    p.add_argument("--out", type=out_dir, default="runs/study", help="study directory (resumes when re-run)")
    p.add_argument("--keep", type=out_dir, default=None, help="small directory to commit: the tuning run's report, requests and "
                   "exports and every finished seed's results; a study whose --out was lost resumes from it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = command("show", _cmd_show, "write a contact sheet of a dataset's normal and abnormal frames")
    p.add_argument("dataset", type=dataset_dir, help="dataset directory")
    p.add_argument("--out", required=True, type=new_file(".png", "a PNG"), help="PNG to write")
    p.add_argument("--per-group", type=COUNT, default=12, help="frames shown per group")
    p.add_argument("--seed", type=SEED, default=0, help="which frames are picked")

    from training.fit import TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    p = command("train", _cmd_train, "behaviour cloning with a chosen loss (learned losses: meta-train, then meta-test)")
    p.add_argument("--data", required=True, nargs="+", type=dataset_dir, help="dataset directory (several: trained on together, e.g. DAgger rounds)")
    p.add_argument("--meta-data", default=None, type=dataset_dir, help="meta set (over-representing rare scenes); default: held-out episodes of --data")
    p.add_argument("--out", type=out_dir, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
    p.add_argument("--threads", type=SEED, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_arguments(p, LossSpec)
    add_arguments(p, MetaConfig)
    add_arguments(p, TrainConfig)

    p = command("evaluate-offline", _cmd_evaluate_offline, "steering error of a trained model on a dataset, overall / normal / abnormal / by category / by bin")
    p.add_argument("run", type=run_model, help="run directory or model.pt")
    p.add_argument("--data", required=True, type=dataset_dir, help="dataset directory")

    from training.evaluate import EvalConfig

    p = command("evaluate", _cmd_evaluate, "drive a model (ONNX file or run) in closed loop on held-out routes")
    p.add_argument("model", type=any_model, help="ONNX file, run directory or model.pt")
    p.add_argument("--out", type=out_dir, default=None, help="directory for closed_loop.json and trajectories.png")
    p.add_argument("--video", type=bounded(int, 0), default=0, metavar="N",
                   help="also write N encounter videos (H.264 MP4) to --out: the failed scenes first")
    p.add_argument("--no-progress", action="store_true")
    add_arguments(p, WorldConfig)
    add_arguments(p, EvalConfig)

    p = command("compare", _cmd_compare, "judge models per rare scene on the same held-out routes (paired): pass rates, "
                "on-policy error, paired differences with bootstrap CIs; table, JSON, PNG")
    p.add_argument("models", nargs="+", type=any_model, help="ONNX files or run directories; the first is the reference of the paired differences")
    p.add_argument("--names", default=None, help="comma-separated display names (default: file / run names)")
    p.add_argument("--out", type=out_dir, default=None, help="directory for compare.json and compare.png")
    p.add_argument("--video", type=bounded(int, 0), default=0, metavar="N",
                   help="also write N encounter videos (H.264 MP4) to --out: where the models disagree first")
    p.add_argument("--scenarios", action="store_true", help="also replay every rare scene of these routes from the "
                   "expert's state a few seconds before it, for every model (same scenes, same denominators)")
    p.add_argument("--no-progress", action="store_true")
    add_arguments(p, WorldConfig)
    add_arguments(p, EvalConfig)

    from training.dagger import DaggerConfig

    p = command("dagger", _cmd_dagger, "DAgger with the world's expert: the policy drives, the expert relabels, aggregate, fine-tune; N rounds, resumable")
    p.add_argument("--run", required=True, type=run_model, help="trained run to start from (its policy drives round 1)")
    p.add_argument("--data", required=True, nargs="+", type=dataset_dir, help="the data that run was trained on (aggregated with every round)")
    p.add_argument("--out", type=out_dir, required=True, help="directory of the rounds (round-K/{policy.onnx,data,run}) and dagger.json")
    p.add_argument("--meta-data", default=None, type=dataset_dir, help="labelled meta set every round trains with (required with --labels meta-only; "
                   "default: held-out episodes of the aggregate)")
    p.add_argument("--no-progress", action="store_true")
    add_arguments(p, WorldConfig)
    add_arguments(p, DaggerConfig)
    add_arguments(p, TrainConfig, only=("precision", "labels"))

    p = command("export", _cmd_export, "export a run to ONNX (opset 17, metadata, parity-checked against torch)")
    p.add_argument("run", type=run_model, help="run directory or model.pt")
    p.add_argument("--out", required=True, type=new_file(".onnx", "an ONNX"), help="ONNX file to write")

    p = command("quantize", _cmd_quantize, "int8 copy of an exported model (convolutions; calibrated on tuning routes, parity-checked)")
    p.add_argument("model", type=onnx_model, help="exported float ONNX file")
    p.add_argument("--out", required=True, type=new_file(".onnx", "an ONNX"), help="ONNX file to write")
    p.add_argument("--calibration-frames", type=COUNT, default=256, help="embedded-world frames (tuning routes) to calibrate on")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the calibration routes (or of the frames drawn from --data)")
    p.add_argument("--data", default=None, type=dataset_dir, help="dataset to calibrate on instead of the embedded world (frames of the car's own domain)")

    from training.tune.objectives import TrialBudget
    from training.tune.tuner import TuneConfig

    p = command("tune", _cmd_tune, "Bayesian optimisation (BoTorch) of the learned loss against a closed-loop metric")
    p.add_argument("--data", default=None, type=dataset_dir, help="training dataset (closed-loop objective)")
    p.add_argument("--meta-data", default=None, type=dataset_dir, help="meta set (default: held-out episodes of --data)")
    p.add_argument("--out", type=out_dir, default="runs/tune", help="tuning directory (trial log, plots, tune.json)")
    p.add_argument("--objective", default="closed-loop", choices=("closed-loop", "synthetic"), help="what a trial measures")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True, help="also run a same-budget Sobol search")
    p.add_argument("--synthetic-delay-s", type=bounded(float, 0.0), default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true")
    add_arguments(p, TuneConfig)
    add_arguments(p, TrialBudget)
    add_arguments(p, WorldConfig, skip=("abnormal_rate",))  # the trials' world; its rare-scene rate is the budget's

    from training.data.ingest import IngestConfig
    from training.drive import DriveConfig

    p = command("drive", _cmd_drive, "one closed-loop episode through ROS 2: embedded bridge + steering node, two processes")
    p.add_argument("--world", default="embedded", choices=("embedded",))
    p.add_argument("--model", required=True, type=onnx_model, help="ONNX model the steering node loads")
    p.add_argument("--logs", default=None, help="directory for node / bridge logs and the infraction log")
    add_arguments(p, DriveConfig)

    p = command("ingest", _cmd_ingest, "turn rosbag2 recordings (MCAP or SQLite3) of camera + control into one dataset")
    p.add_argument("bag", nargs="+", type=rosbag_dir, help="rosbag2 directories (each one episode, split where sim time jumps back)")
    p.add_argument("--out", type=out_dir, required=True, help="dataset directory")
    add_arguments(p, IngestConfig)

    bench = sub.add_parser("bench", help="benchmarks (print JSON)").add_subparsers(dest="bench", required=True)
    p = command("sim", _cmd_bench_sim, "embedded world + 200x66 camera steps/s in one process, one core", parent=bench)
    p.add_argument("--steps", type=COUNT, default=3000)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--abnormal-rate", type=bounded(float, 0.0, 1.0), default=0.1, help="rare-scene rate of the routes (closed loop's)")
    p.add_argument("--repeats", type=COUNT, default=3, help="runs per figure; the best is reported")
    p = command("node-latency", _cmd_bench_node_latency, "camera -> control through real DDS, 800x600 bgra8, 20 Hz and faster", parent=bench)
    p.add_argument("--model", default="models/learned.onnx", type=onnx_model, help="ONNX model the node loads")
    p.add_argument("--frames", type=COUNT, default=200)
    p.add_argument("--threads", type=COUNT, default=1, help="the node's onnxruntime intra-op threads")

    p = command("node-soak", _cmd_bench_node_soak, "the node fed 800x600 bgra8 at 20 Hz for minutes: answered share, RSS growth",
                parent=bench)
    p.add_argument("--model", default="models/learned.onnx", type=onnx_model, help="ONNX model the node loads")
    p.add_argument("--minutes", type=bounded(float, 0.05), default=10.0, help="minutes of frames")
    p.add_argument("--warmup-s", type=bounded(float, 0.0), default=60.0, help="seconds before RSS growth is counted")
    p.add_argument("--threads", type=COUNT, default=1, help="the node's onnxruntime intra-op threads")

    p = command("train-step", _cmd_bench_train_step, "training step time: compute vs input path (data_share), CPU and CUDA", parent=bench)
    p.add_argument("--frames", type=COUNT, default=8000)
    p.add_argument("--batch", type=COUNT, default=64)
    p.add_argument("--repeats", type=COUNT, default=30)
    p = command("events-curve", _cmd_bench_events_curve, "MSE on nested episode subsets: closed-loop pass rate per rare scene vs events",
                parent=bench)
    p.add_argument("--work", default="runs/bench_events_curve", help="runs, models and results go here (reused when re-run)")
    p.add_argument("--data", default=None, type=dataset_dir, help="dataset to subset (default: collect 80,000 frames at 5 %% rare frames)")
    p.add_argument("--fractions", default="0.125,0.25,0.5,1", type=fractions, help="comma-separated shares of the episodes")
    p.add_argument("--steps", type=COUNT, default=3000)
    p.add_argument("--episodes", type=COUNT, default=24, help="paired held-out routes")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--no-progress", action="store_true")
    p = command("dagger-curve", _cmd_bench_dagger_curve, "per loss (mse, oversample, learned): closed-loop pass rate vs DAgger rounds "
                "of a pipeline run", parent=bench)
    p.add_argument("--run", default="runs/models", type=pipeline_run, help="a finished `metasteer pipeline` run")
    p.add_argument("--work", default="runs/bench_dagger_curve", help="runs and results go here (reused when re-run)")
    p.add_argument("--episodes", type=COUNT, default=None, help="paired held-out routes (default: the pipeline's)")
    p.add_argument("--no-progress", action="store_true")
    p = command("closed-loop", _cmd_bench_closed_loop, "route steps/s of compare, split into world + camera, policy and judging, "
                "shipped architecture vs PilotNet (speedup)", parent=bench)
    p.add_argument("--routes", type=int, default=8)
    p.add_argument("--max-time-s", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes, as compare runs them")
    p.add_argument("--repeats", type=int, default=2)
    p = command("architecture", _cmd_bench_architecture, "cheaper PilotNets against the reference: MSE + DAgger per training seed, "
                "paired closed-loop comparison pooled over seeds, the cheapest accepted", parent=bench)
    p.add_argument("--archs", default="1.0:elu,0.5:relu", help="comma-separated width:activation[:precision] (precision fp32 or bf16, the training forward pass), the reference first")
    p.add_argument("--seeds", default="0,1,2,3", type=seed_list,
                   help="comma-separated distinct training seeds (the t-interval over 2 seeds has 1 degree of freedom: it almost never accepts)")
    p.add_argument("--size", default="demo", choices=("full", "demo", "quick"), help="the pipeline's stage sizes for stages 1-4")
    p.add_argument("--episodes", type=int, default=48, help="paired routes per seed (tuning namespace, not evaluation routes)")
    p.add_argument("--work", default="runs/bench_architecture", help="runs and results go here (reused when re-run)")
    p.add_argument("--keep", type=out_dir, default=None, help="small directory to commit: each finished seed's comparison and the timed ONNX files; "
                   "a seed kept there is read, not re-run (a bench longer than one machine's life resumes from it)")
    p.add_argument("--no-progress", action="store_true")
    p = command("meta-step", _cmd_bench_meta_step, "seconds per plain / meta step, per engine and unroll; head-only variant", parent=bench)
    p.add_argument("--batch", type=COUNT, default=32)
    p.add_argument("--repeats", type=COUNT, default=5)
    p.add_argument("--seed", type=SEED, default=0)
    p = command("ml3-sine", _cmd_bench_ml3_sine, "the ML3 paper's sine protocol: meta-trained loss vs MSE on unseen sines, "
                "1x and 10x the rate", parent=bench)
    p.add_argument("--seeds", type=COUNT, default=5)
    from training.bench.sample_efficiency import DEFAULT_ENTRIES

    p = command("sample-efficiency", _cmd_bench_sample_efficiency, "every loss x seeds at equal budget; abnormal / normal test MAE", parent=bench)
    p.add_argument("--work", default="runs/bench_sample_efficiency", help="datasets, runs and results go here (reused when re-run)")
    p.add_argument("--seeds", type=COUNT, default=3)
    p.add_argument("--frames", type=COUNT, default=40000)
    p.add_argument("--steps", type=COUNT, default=600)
    p.add_argument("--meta-steps", type=SEED, default=200)
    p.add_argument("--losses", default=",".join(DEFAULT_ENTRIES), help="comma-separated entries (also: weighted, ml3 by the meta-test protocol)")
    p.add_argument("--workers", type=COUNT, default=2)
    p.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "names", None) and len(args.names.split(",")) != len(args.models):
        print(f"metasteer {args.command}: error: argument --names: {args.names!r} names {len(args.names.split(','))} models, "
              f"{len(args.models)} were given", file=sys.stderr)
        return 2
    from training.data.format import DatasetError

    try:
        _emit(args.handler(args), args.json)
    except (DatasetError, ConnectionError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"metasteer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
