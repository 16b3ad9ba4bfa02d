"""Record a driving dataset: the expert drives (with injected steering noise, so the data holds
recovery states), each kept frame is stored with the expert's steering as its label."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import pyarrow as pa

from simulator.base import FIXED_DELTA_S, Observation, SceneFeatures, VehicleControl, pilotnet_camera
from simulator.factory import WorldConfig
from training.data.format import DatasetError, shard_paths
from training.data.writer import finish_manifest, write_shard
from training.files import claim_request
from training.workers import pool as worker_pool


@dataclass(frozen=True)
class NoiseConfig:
    """Triangular steering perturbations on top of the expert (Codevilla et al. style).

    Bursts start at ``bursts_per_s``, last ``duration_s`` and peak at up to ``amplitude``
    (steer units); the label stays the expert's command.
    """

    bursts_per_s: float = 0.08
    duration_s: tuple[float, float] = (0.5, 1.5)
    amplitude: float = 0.25


@dataclass(frozen=True)
class CollectConfig:
    """A collection request; two runs with equal requests write identical datasets."""

    frames: int = field(default=20000, metadata={"range": (1, None), "help": "frames to record"})
    seed: int = field(default=0, metadata={"range": (0, None), "help": "seed of every route, scene and perturbation"})
    frames_per_shard: int = field(default=2000, metadata={"range": (1, None), "help": "frames per shard file"})
    record_every: int = field(default=2, metadata={"range": (1, None), "help": "keep one frame every N 20 Hz steps"})
    noise: bool = field(default=True, metadata={"help": "inject steering perturbations (recovery data)"})
    workers: int = field(default=2, metadata={"range": (1, None), "help": "parallel processes, one shard each"})


class _Perturbation:
    def __init__(self, cfg: NoiseConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.t, self.length, self.peak = 0.0, 0.0, 0.0

    def step(self, dt: float) -> float:
        if self.t >= self.length and self.rng.random() < self.cfg.bursts_per_s * dt:
            self.t, self.length = 0.0, self.rng.uniform(*self.cfg.duration_s)
            self.peak = self.rng.uniform(-self.cfg.amplitude, self.cfg.amplitude)
        if self.t >= self.length:
            return 0.0
        self.t += dt
        return self.peak * (1.0 - abs(2.0 * self.t / self.length - 1.0))


def episode_seed(seed: int, shard: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, shard, episode]).generate_state(1)[0])


class Driver(Protocol):
    """Who drives while a dataset is recorded; the label is always the expert's steering."""

    sees_camera: bool  # needs a frame every step (a policy), not only on recorded steps

    def start(self, ep_seed: int) -> None: ...

    def control(self, obs: Observation) -> tuple[VehicleControl, float]:
        """The executed control and its steering offset from the expert (the ``steer_noise`` feature)."""


class NoisyExpert:
    """The world's expert with ``NoiseConfig`` perturbations, seeded per episode."""

    sees_camera = False

    def __init__(self, noise: bool = True) -> None:
        self.noise = noise

    def start(self, ep_seed: int) -> None:
        self.perturbation = _Perturbation(NoiseConfig(), np.random.default_rng(ep_seed ^ 0x5EED))

    def control(self, obs: Observation) -> tuple[VehicleControl, float]:
        expert = obs.expert_control
        offset = self.perturbation.step(FIXED_DELTA_S) if self.noise else 0.0
        return VehicleControl(expert.throttle, float(np.clip(expert.steer + offset, -1, 1)), expert.brake), offset


def event_gap_frames(record_every: int) -> int:
    """Frames in one second of recording: encounters split by a shorter gap are one event."""
    return max(1, round(1.0 / (FIXED_DELTA_S * record_every)))


def next_onset_s(times_s: list[float], onsets_s: list[float]) -> np.ndarray:
    """For each frame time, the first infraction onset at or after it in the same episode (NaN where none):
    a fleet log's record of when the car failed, from which a frame's time to failure follows."""
    onsets = np.sort(np.asarray(onsets_s, dtype=np.float64))
    at = np.searchsorted(onsets, np.asarray(times_s, dtype=np.float64), side="left")
    return np.where(at < len(onsets), onsets[np.minimum(at, len(onsets) - 1)] if len(onsets) else np.nan, np.nan)


class _Offsets:
    """``driver``, remembering its last command's steering offset from the expert (the ``steer_noise`` recorded)."""

    def __init__(self, driver: Driver) -> None:
        self.driver, self.sees_camera, self.offset = driver, driver.sees_camera, 0.0

    def start(self, ep_seed: int) -> None:
        self.driver.start(ep_seed)

    def control(self, obs: Observation) -> tuple[VehicleControl, float]:
        control, self.offset = self.driver.control(obs)
        return control, self.offset


def record_episodes(world_cfg: WorldConfig, driver: Driver, seeds: Iterable[int], record_every: int,
                    n_frames: int | None = None) -> tuple[np.ndarray, pa.Table]:
    """Drive one episode per seed through ``evaluate.drive_episode`` (stopping once ``n_frames`` frames are kept,
    if given); one frame every ``record_every`` steps, labelled with the expert's command for that state, with
    the time of the episode's next infraction onset (``next_infraction_s``, NaN where none follows)."""
    from training.evaluate import drive_episode  # evaluate reads this module's Driver

    images: list[np.ndarray] = []
    rows: dict[str, list] = {k: [] for k in ("episode_seed", "step", "time_s", "steer", "steer_executed",
                                               "throttle", "brake", "route_completion", "category")}
    for name in SceneFeatures.names():
        rows[name] = []
    rows["next_infraction_s"] = []
    step = 0

    def record(world, obs: Observation, executed: VehicleControl) -> None:
        nonlocal step
        if step % record_every == 0:
            expert, obs.features.steer_noise = obs.expert_control, driving.offset
            images.append(obs.image[:, :, :3])
            for k, v in (("episode_seed", ep_seed), ("step", step), ("time_s", obs.time_s), ("steer", expert.steer),
                         ("steer_executed", executed.steer), ("throttle", expert.throttle), ("brake", expert.brake),
                         ("route_completion", obs.route_completion), ("category", obs.category)):
                rows[k].append(v)
            for name, v in asdict(obs.features).items():
                rows[name].append(v)
        step += 1

    driving = _Offsets(driver)
    full = (lambda: len(images) >= n_frames) if n_frames is not None else None
    for ep_seed in seeds:
        if full is not None and full():
            break
        step, first = 0, len(images)
        steps = drive_episode(None, world_cfg, ep_seed, math.inf, trace=False, on_step=record, driver=driving,
                              render_every=record_every, until=full)["steps"]
        onsets_s = [t for t, hit in zip(steps["time_s"], steps["infraction"]) if hit]  # every step's, not only recorded ones
        rows["next_infraction_s"] += next_onset_s(rows["time_s"][first:], onsets_s).tolist()
    if not images:
        raise DatasetError("no frame recorded: every episode ended before its first step")
    table = pa.table({k: pa.array(v, type=pa.string() if k == "category" else None) for k, v in rows.items()})
    return np.stack(images).astype(np.uint8), table


def record_shard(world_cfg: WorldConfig, cfg: CollectConfig, shard: int, n_frames: int) -> tuple[np.ndarray, pa.Table]:
    """Drive episodes drawn from ``(seed, shard)`` until ``n_frames`` frames are kept."""
    seeds = (episode_seed(cfg.seed, shard, k) for k in itertools.count())
    return record_episodes(world_cfg, NoisyExpert(cfg.noise), seeds, cfg.record_every, n_frames)


def _shard_job(job: tuple) -> dict:
    root, world_cfg, cfg, shard, n = job
    images, table = record_shard(world_cfg, cfg, shard, n)
    return write_shard(Path(root), shard, images, table, event_gap_frames(cfg.record_every))


def _shard_sizes(cfg: CollectConfig) -> list[int]:
    n_shards = math.ceil(cfg.frames / cfg.frames_per_shard)
    return [min(cfg.frames_per_shard, cfg.frames - k * cfg.frames_per_shard) for k in range(n_shards)]


def run_shard_jobs(job: Callable[[tuple], dict], todo: list[tuple], workers: int, bar) -> None:
    """Run shard jobs (each writes one shard and returns its marker), in parallel processes if asked."""
    if workers > 1 and len(todo) > 1:
        with worker_pool(min(workers, len(todo))) as pool:
            for marker in pool.imap_unordered(job, todo):
                bar.update(marker["frames"])
    else:
        for args in todo:
            bar.update(job(args)["frames"])
    bar.close()


def collect(out: Path, world_cfg: WorldConfig, cfg: CollectConfig, progress: bool = True) -> dict:
    """Record (or resume recording) a dataset into ``out``; returns its manifest."""
    from tqdm import tqdm

    out = Path(out)
    claim_request(out, {"world": asdict(world_cfg), "collect": {k: v for k, v in asdict(cfg).items() if k != "workers"}}, "collection", DatasetError)
    (out / "shards").mkdir(exist_ok=True)
    sizes = _shard_sizes(cfg)
    done = {k for k in range(len(sizes)) if shard_paths(out, k)["marker"].exists()}
    todo = [(str(out), world_cfg, cfg, k, n) for k, n in enumerate(sizes) if k not in done]
    bar = tqdm(total=cfg.frames, initial=sum(sizes[k] for k in done), unit="frame", desc="collect", disable=not progress)
    run_shard_jobs(_shard_job, todo, cfg.workers, bar)
    return finish_manifest(out, len(sizes), world=world_cfg.world, seed=cfg.seed,
                           config={"world": asdict(world_cfg), "collect": asdict(cfg)},
                           camera=asdict(pilotnet_camera(world_cfg.width, world_cfg.height)))
