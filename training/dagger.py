"""``metasteer dagger``: DAgger (Ross, Gordon & Bagnell 2011) with the world's expert.

Each round: the current policy (exported to ONNX and driven through the runtime ``OnnxPolicy``
and speed controller, as in ``evaluate``) drives routes of its own; every recorded state is
labelled with the expert's steering for that state; the round is written as a dataset (its
manifest names the policy that drove it); then a model is fine-tuned from the current policy on
the original data plus every round so far. Each round resumes where it stopped: a finished
dataset is not re-recorded (shard markers) and a started fine-tune continues from its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from metasteer.policy import OnnxPolicy
from simulator.base import pilotnet_camera
from simulator.factory import WorldConfig
from training.data.collect import event_gap_frames, record_episodes, run_shard_jobs
from training.data.dataset import DrivingDataset
from training.data.format import DatasetError, shard_paths
from training.data.writer import finish_manifest, write_shard
from training.evaluate import PolicyDriver, route_seed
from training.files import claim_request, write_json_if_changed


@dataclass(frozen=True)
class DaggerConfig:
    rounds: int = field(default=3, metadata={"range": (1, None), "help": "DAgger rounds (drive, relabel, aggregate, fine-tune)"})
    routes: int = field(default=30, metadata={"range": (1, None), "help": "routes the policy drives per round"})
    routes_per_shard: int = field(default=5, metadata={"range": (1, None), "help": "routes per dataset shard (the unit of resume)"})
    record_every: int = field(default=2, metadata={"range": (1, None), "help": "keep one frame every N 20 Hz steps"})
    dagger_abnormal_rate: float = field(default=0.1, metadata={"range": (0.0, 1.0), "help": "rare-scene rate of the routes the policy drives"})
    dagger_steps: int = field(default=1500, metadata={"range": (1, None), "help": "fine-tuning steps per round"})
    dagger_lr: float = field(default=5e-4, metadata={"range": (0.0, None), "help": "fine-tuning peak learning rate"})
    seed: int = field(default=0, metadata={"range": (0, None), "help": "seed of the DAgger routes (their own namespace) and of training"})
    workers: int = field(default=2, metadata={"range": (1, None), "help": "parallel driving processes"})


def _policy_shard_job(job: tuple) -> dict:
    root, onnx_path, world_cfg, seeds, record_every, shard = job
    driver = PolicyDriver(OnnxPolicy.load(onnx_path), world_cfg.target_speed_mps)
    images, table = record_episodes(world_cfg, driver, seeds, record_every)
    return write_shard(Path(root), shard, images, table, event_gap_frames(record_every))


def record_round(out: Path, policy_path: Path, world_cfg: WorldConfig, cfg: DaggerConfig, round_index: int, progress: bool = True) -> dict:
    """Drive ``policy_path`` on this round's routes, label with the expert, write a dataset to ``out``."""
    from tqdm import tqdm

    out = Path(out)
    policy = OnnxPolicy.load(policy_path)
    world_cfg = replace(world_cfg, width=policy.spec.width, height=policy.spec.height, abnormal_rate=cfg.dagger_abnormal_rate)
    seeds = [route_seed(cfg.seed, i, "dagger", round_index) for i in range(cfg.routes)]
    chunks = [seeds[k:k + cfg.routes_per_shard] for k in range(0, len(seeds), cfg.routes_per_shard)]
    claim_request(out, {"world": asdict(world_cfg), "policy_model_id": policy.model_id, "round": round_index,
                        "routes": seeds, "record_every": cfg.record_every}, "DAgger round", DatasetError)
    (out / "shards").mkdir(exist_ok=True)
    todo = [(str(out), str(policy_path), world_cfg, chunk, cfg.record_every, k) for k, chunk in enumerate(chunks)
            if not shard_paths(out, k)["marker"].exists()]
    bar = tqdm(total=None, unit="frame", desc=f"DAgger round {round_index}: policy drives", disable=not progress)
    run_shard_jobs(_policy_shard_job, todo, cfg.workers, bar)
    return finish_manifest(out, len(chunks), world=world_cfg.world, seed=cfg.seed,
                           config={"world": asdict(world_cfg), "dagger": asdict(cfg)},
                           camera=asdict(pilotnet_camera(world_cfg.width, world_cfg.height)),
                           policy={"model_id": policy.model_id, "path": str(policy_path), "round": round_index,
                                   "drove": "policy", "label": "expert steering for the visited state"})


def dagger(out: Path, start: Path, data: list[Path], world_cfg: WorldConfig, cfg: DaggerConfig, loss_spec=None, meta_cfg=None,
           train_cfg=None, progress: bool = True, meta_data: Path | None = None) -> dict:
    """``cfg.rounds`` rounds from the trained run ``start`` (trained on ``data``); returns per-round
    dataset sizes, events and validation numbers, and ``final``: the last round's run directory.
    ``meta_data``: the labelled meta set each round's training run is given (``LabelView.labelled_meta``)."""
    from training.data.label_view import LabelView
    from training.export import export
    from training.fit import TrainConfig, train_once, warm_start
    from training.losses import LossSpec
    from training.meta import MetaConfig

    out = Path(out)
    LabelView((train_cfg or TrainConfig()).labels).labelled_meta(meta_data)  # refused now, not after a round is recorded
    train_cfg = warm_start(replace(train_cfg or TrainConfig(), steps=cfg.dagger_steps, lr=cfg.dagger_lr, seed=cfg.seed,
                                   eval_every=max(1, cfg.dagger_steps // 5)), start)
    current, rounds, aggregate = Path(start), [], [Path(d) for d in data]
    for r in range(1, cfg.rounds + 1):
        rd = out / f"round-{r}"
        rd.mkdir(parents=True, exist_ok=True)
        if not (rd / "policy.onnx").exists():  # written atomically; kept, so a resumed round asks for the same policy
            export(current, rd / "policy.onnx")
        manifest = DrivingDataset(rd / "data", verify=False).manifest if (rd / "data" / "manifest.json").exists() else \
            record_round(rd / "data", rd / "policy.onnx", world_cfg, cfg, r, progress)
        aggregate.append(rd / "data")
        result = train_once(rd / "run", aggregate, meta_data, loss_spec or LossSpec(), meta_cfg or MetaConfig(),
                            replace(train_cfg, init_from=str(current)), progress=progress)
        rounds.append({"round": r, "policy_model_id": manifest["policy"]["model_id"], "frames": manifest["frames"],
                       "events": manifest["events"], "counts": manifest["counts"], "run": str(rd / "run"),
                       "best_step": result["best_step"], "val_mae_balanced": result["val_mae_balanced"]})
        current = rd / "run"
    summary = {"out": str(out), "start": str(start), "rounds": rounds, "final": str(current),
               "dagger_frames": int(sum(r["frames"] for r in rounds)), "config": asdict(cfg)}
    write_json_if_changed(out / "dagger.json", summary)
    return summary
