"""``metasteer evaluate``: drive a model in closed loop on held-out routes and score it.

The model steers through the runtime's ``OnnxPolicy`` (the node's code path: same preprocessing,
same onnxruntime); throttle and brake come from the runtime ``SpeedController`` on the measured
speed only. Routes are drawn from evaluation seeds in their own namespace (``route_seed``), apart
from the seeds any dataset or tuning run uses. Episodes run in parallel worker processes.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from metasteer.control import SpeedController
from metasteer.infractions import EventType
from metasteer.policy import OnnxPolicy
from simulator.base import FIXED_DELTA_S, Observation, VehicleControl
from simulator.factory import WorldConfig, make_world
from training.workers import pool as worker_pool

if TYPE_CHECKING:
    from training.data.collect import Driver

SPLITS = {"eval": 0xE7A1, "tune": 0x7C2E, "dagger": 0xDA66}
REPORTED = ("time_without_infractions_s", "distance_between_infractions_m", "route_completion", "driving_score",
            "collisions", "collisions_pedestrian", "collisions_vehicle", "collisions_static", "lane_invasions",
            "lane_invasions_justified", "off_road_time_s", "infractions_per_km")


def route_seed(seed: int, episode: int, split: str = "eval", *more: int) -> int:
    """Seed of route ``episode``; ``split`` keeps final-evaluation, tuning and DAgger routes apart;
    ``more`` (e.g. a DAgger round) draws further disjoint sets within a split."""
    return int(np.random.SeedSequence([seed, episode, SPLITS[split], *more]).generate_state(1)[0])


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = field(default=20, metadata={"range": (1, None), "help": "episodes (routes) to drive"})
    seed: int = field(default=0, metadata={"range": (0, None), "help": "seed of the evaluation routes"})
    workers: int = field(default=2, metadata={"range": (1, None), "help": "parallel worker processes"})
    split: str = field(default="eval", metadata={"help": "route namespace: eval (final) or tune", "choices": ("eval", "tune")})
    max_time_s: float = field(default=180.0, metadata={"range": (1.0, None), "help": "episode time limit, simulated seconds"})
    actuation_delay_ticks: int = field(default=0, metadata={"range": (0, None), "help": (
        "ticks (0.05 s) from computing a command to applying it, as with a bridge that ticks without waiting for it")})


class PolicyDriver:
    """A model drives as the car does: steering from the runtime ``OnnxPolicy`` (clamped to [-1, 1]),
    throttle and brake from the runtime speed controller on the measured speed, full brake when the
    model's output is not finite. ``control`` also returns the steering's offset from the expert."""

    sees_camera = True

    def __init__(self, policy: OnnxPolicy, target_speed_mps: float) -> None:
        self.policy, self.target_speed_mps = policy, target_speed_mps

    def start(self, ep_seed: int) -> None:
        self.speed = SpeedController(self.target_speed_mps, dt_s=FIXED_DELTA_S)

    def control(self, obs: Observation) -> tuple[VehicleControl, float]:
        steer = self.policy.steer(obs.image, "bgra8")
        throttle, brake = self.speed.run_step(obs.speed_mps)
        if not math.isfinite(steer):
            steer, throttle, brake = 0.0, 0.0, 1.0
        steer = max(-1.0, min(1.0, steer))
        return VehicleControl(throttle, steer, brake), steer - obs.expert_control.steer


class ActuationDelay:
    """Commands that reach the car ``ticks`` steps late: the command computed at tick t is applied at tick
    t + ticks, the one before it held meanwhile; before the first arrives the car gets no control (zeros)."""

    def __init__(self, ticks: int) -> None:
        if ticks < 0:
            raise ValueError(f"actuation delay must be >= 0 ticks, got {ticks}")
        self._in_flight = deque([VehicleControl()] * ticks)

    def __call__(self, computed: VehicleControl) -> VehicleControl:
        """The control applied this tick, given the one computed this tick."""
        self._in_flight.append(computed)
        return self._in_flight.popleft()


class StepTimer:
    """Process time (``time.process_time``: CPU seconds of this process) spent in named parts of a drive, and
    how often each ran. ``drive_episode`` times its world and its driver through it when given one; absent, its
    loop calls them directly. What runs between the timed calls (the per-step record) is not counted."""

    def __init__(self) -> None:
        self.spent_s: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def timed(self, fn: Callable, part: str) -> Callable:
        """``fn``, its process time and its calls added to ``part``."""
        self.spent_s.setdefault(part, 0.0)
        self.calls.setdefault(part, 0)

        def run(*args, **kwargs):
            start = time.process_time()
            out = fn(*args, **kwargs)
            self.spent_s[part] += time.process_time() - start
            self.calls[part] += 1
            return out
        return run


def drive_episode(policy: OnnxPolicy | None, world_cfg: WorldConfig, seed: int, max_time_s: float, trace: bool = True,
                  actuation_delay_ticks: int = 0, on_step: Callable | None = None, handover_step: int = 0,
                  driver: Driver | None = None, timer: StepTimer | None = None, render_every: int = 0,
                  until: Callable[[], bool] | None = None) -> dict:
    """One closed-loop episode, the driving loop of every command (evaluate, compare, tuning trials, scenarios,
    videos, and through ``collect.record_episodes`` collection and DAgger); returns the metrics summary, the
    per-step record ``steps`` (category, counted infraction onset and its time, policy, applied and expert
    steering, distance) and, if ``trace``, the trajectory.

    ``truncated``: the episode hit ``max_time_s`` before the world ended it. ``on_step(world, obs, control)``
    sees each step before the world moves (the encounter videos replay an episode with it; a recorder records with it).
    ``handover_step``: the world's expert drives that many steps first (a scenario's common state, not
    recorded), then the policy. ``driver``: drives instead of the policy (``training.data.collect.Driver``);
    the camera is rendered only for a driver that sees it, and every ``render_every`` steps (a recorder's
    frames). ``until``: the episode stops before a step once it returns True (a recorder's frame budget).
    ``timer``: accumulates the process time of the world (reset and every step after the handover, camera
    included) and of the driver's commands.
    """
    driver = driver or PolicyDriver(policy, world_cfg.target_speed_mps)
    driver.start(seed)
    command = driver.control if timer is None else timer.timed(driver.control, "policy_s")
    delay = ActuationDelay(actuation_delay_ticks)
    xs, ys, marks = [], [], []
    steps: dict[str, list] = {"category": [], "infraction": [], "time_s": [], "steer": [], "applied_steer": [], "expert_steer": [],
                              "distance_m": []}
    with make_world(world_cfg) as world:
        reset, step = world.reset, world.step
        if timer is not None:
            reset, step = timer.timed(reset, "world_camera_s"), timer.timed(step, "world_camera_s")
        obs = reset(seed)
        for k in range(handover_step):
            if obs.done:
                raise ValueError(f"route {seed}: the expert's episode ended before handover step {handover_step}")
            obs = world.step(obs.expert_control, render=driver.sees_camera and k == handover_step - 1)
        while not obs.done and obs.time_s < max_time_s and not (until is not None and until()):
            control, _ = command(obs)
            if on_step is not None:
                on_step(world, obs, control)
            steps["category"].append(obs.category)
            steps["steer"].append(control.steer)
            steps["expert_steer"].append(obs.expert_control.steer)
            applied = delay(control)
            steps["applied_steer"].append(applied.steer)
            obs = step(applied, render=driver.sees_camera or (render_every > 0 and len(steps["steer"]) % render_every == 0))
            steps["infraction"].append(any(e.counts_as_infraction for e in obs.events))
            steps["time_s"].append(obs.time_s)
            steps["distance_m"].append(obs.speed_mps * FIXED_DELTA_S)
            if trace and hasattr(world, "ego"):
                xs.append(world.ego.x)
                ys.append(world.ego.y)
                marks += [(world.ego.x, world.ego.y, e.type.value) for e in obs.events if e.counts_as_infraction]
        result = {"seed": seed, "metrics": world.metrics.summary(), "steps": steps, "truncated": not obs.done}
        if trace and hasattr(world, "road"):
            road = world.road
            result["trace"] = {"x": xs[::4], "y": ys[::4], "road_x": road.x[::8].tolist(), "road_y": road.y[::8].tolist(), "events": marks}
    return result


def _episode_job(args: tuple) -> dict:
    model, world_cfg, seed, max_time_s, delay_ticks = args
    return drive_episode(OnnxPolicy.load(model), world_cfg, seed, max_time_s, actuation_delay_ticks=delay_ticks)


def drive_routes(models: list[Path], world_cfg: WorldConfig, cfg: EvalConfig, progress: bool = True, desc: str = "evaluate") -> list[list[dict]]:
    """Every model drives the same ``cfg.episodes`` routes (paired); episodes per model, in route order.

    ``world_cfg``'s frame size is taken from the first model's preprocessing spec.
    """
    spec = OnnxPolicy.load(models[0]).spec
    cfg_world = replace(world_cfg, width=spec.width, height=spec.height)
    seeds = [route_seed(cfg.seed, i, cfg.split) for i in range(cfg.episodes)]
    jobs = [(str(m), cfg_world, s, cfg.max_time_s, cfg.actuation_delay_ticks) for m in models for s in seeds]
    done = run_jobs(_episode_job, jobs, cfg.workers, progress, desc)
    return [done[k * len(seeds):(k + 1) * len(seeds)] for k in range(len(models))]


def run_jobs(job: Callable, jobs: list, workers: int, progress: bool, desc: str) -> list:
    """``[job(j) for j in jobs]``, in ``workers`` spawned processes when more than one (``job`` at module level)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="episode", disable=not progress)
    done: list = []
    if workers > 1 and len(jobs) > 1:
        with worker_pool(min(workers, len(jobs))) as pool:
            for r in pool.imap(job, jobs):
                done.append(r)
                bar.update()
    else:
        for j in jobs:
            done.append(job(j))
            bar.update()
    bar.close()
    return done


def mean_ci95(values: list[float]) -> dict:
    """Mean and the half-width of a 95 % t confidence interval."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return {"mean": float(a.mean()) if len(a) else None, "ci95": None, "n": int(len(a))}
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return {"mean": float(a.mean()), "ci95": half, "n": int(len(a))}


def as_onnx(model: str | Path, workdir: Path) -> Path:
    """An ONNX file for ``model``: itself, or a run directory / model.pt exported on the fly."""
    model = Path(model)
    if model.suffix == ".onnx":
        return model
    from training.export import export

    out = workdir / "model.onnx"
    export(model, out)
    return out


def evaluate(model: str | Path, world_cfg: WorldConfig, cfg: EvalConfig, out_dir: Path | None = None, progress: bool = True,
             videos: int = 0) -> dict:
    """Drive ``model`` (an ONNX file, a run directory or its ``model.pt``) on ``cfg.episodes`` held-out
    routes; returns mean and 95 % CI per metric in ``REPORTED`` and the per-episode metrics. With
    ``out_dir``: ``closed_loop.json`` and ``trajectories.png`` there, and ``videos`` encounter videos
    (``training.video``: the failed scenes first)."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = as_onnx(model, Path(tmp))
        model_id = OnnxPolicy.load(onnx_path).model_id
        episodes = drive_routes([onnx_path], world_cfg, cfg, progress)[0]
        if videos and out_dir is not None:
            from training.video import encounter_videos  # it imports this module

            written = encounter_videos([Path(model).stem], [onnx_path], [episodes], world_cfg, cfg, Path(out_dir), videos)
    summary = {k: mean_ci95([e["metrics"][k] for e in episodes]) for k in REPORTED}
    result = {"model": str(model), "model_id": model_id, "world": world_cfg.world, "config": asdict(cfg),
              "abnormal_rate": world_cfg.abnormal_rate, **summary,
              "episodes": [{"seed": e["seed"], **e["metrics"]} for e in episodes]}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if videos:
            result["videos"] = written
        (out_dir / "closed_loop.json").write_text(json.dumps(result, indent=2) + "\n")
        if episodes and "trace" in episodes[0]:
            result["plot"] = str(plot_trajectories(episodes, out_dir / "trajectories.png", f"{Path(model).name}: closed loop"))
    return result


def plot_trajectories(episodes: list[dict], out: Path, title: str, max_panels: int = 6) -> Path:
    from training.figures import pyplot

    plt = pyplot()

    shown = episodes[:max_panels]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    markers = {EventType.COLLISION_PEDESTRIAN.value: ("X", "red"), EventType.COLLISION_VEHICLE.value: ("X", "purple"),
               EventType.COLLISION_STATIC.value: ("X", "orange"), EventType.LANE_INVASION.value: ("o", "gold"),
               EventType.OFF_ROAD.value: ("s", "brown")}
    for ax, ep in zip(axes.flat, shown):
        t = ep["trace"]
        ax.plot(t["road_x"], t["road_y"], color="0.7", lw=6, label="road")
        ax.plot(t["x"], t["y"], color="tab:blue", lw=1, label="ego")
        for kind, (m, c) in markers.items():
            pts = [(x, y) for x, y, k in t["events"] if k == kind]
            if pts:
                ax.scatter(*zip(*pts), marker=m, color=c, s=60, zorder=5, label=kind)
        m = ep["metrics"]
        ax.set_title(f"seed {ep['seed']}: {m['route_completion']:.0%} route, {m['infractions']} infractions", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
