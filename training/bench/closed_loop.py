"""``metasteer bench closed-loop``: what a route step of ``compare`` costs, and where it goes.

A route step of ``compare`` is: the policy's command (``PolicyDriver``: runtime band cut, onnxruntime, speed
controller), one world step with its camera, and the step's share of judging the episode
(``judge_episode``). Each architecture drives the same routes with an untrained network of its shape: the
car follows the expert's command while the network's runs every step, so both networks see the same
frames and the same routes, and only the network's cost differs (a trained network would end its routes
at different times). Every route runs through ``drive_episode``, the driving loop of evaluate, compare, tuning
trials, scenarios, collection and DAgger, which a ``StepTimer`` times (``timed_route``): the bench has no loop of its own.

Per core: CPU seconds of one process (``time.process_time``), one onnxruntime and OpenCV thread, best of
``repeats``, split into world + camera, policy and judging. Per machine: route steps per wall second of
``workers`` processes, as ``compare`` runs them. ``speedup``: shipped architecture over today's PilotNet.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

from metasteer.policy import OnnxPolicy
from simulator.base import Observation, VehicleControl
from simulator.factory import WorldConfig
from training.compare import judge_episode
from training.evaluate import PolicyDriver, StepTimer, drive_episode, route_seed, run_jobs

REFERENCE = (1.0, "elu")  # PilotNet as published, the shipped models' architecture before this bench
PARTS = ("world_camera_s", "policy_s", "judging_s")


def untrained_onnx(width_mult: float, activation: str, out: Path, seed: int = 0) -> Path:
    """A fresh PilotNet of this shape as an ONNX file the runtime loads (preprocessing in its metadata)."""
    import json

    import torch

    from metasteer.preprocess import PreprocessSpec
    from training.export import to_onnx
    from training.models import PilotNet, PilotNetConfig

    torch.manual_seed(seed)
    spec = PreprocessSpec()
    arch = PilotNetConfig(width_mult=width_mult, activation=activation, input_height=spec.height, input_width=spec.width)
    proto = to_onnx(PilotNet(arch).eval(), spec, {"preprocess": spec.to_json(), "arch": json.dumps(arch.to_dict(), sort_keys=True),
                                                  "loss": '{"family": "untrained (bench closed-loop)"}'})
    out.write_bytes(proto.SerializeToString())
    return out


class ShadowDriver:
    """The network computes its command every step, as ``PolicyDriver`` does in ``compare`` (its whole
    cost), and the car gets the expert's: an untrained network would end its routes within seconds, at
    different times for each architecture."""

    sees_camera = True

    def __init__(self, model: str, target_speed_mps: float) -> None:
        self.network = PolicyDriver(OnnxPolicy.load(model), target_speed_mps)

    def start(self, ep_seed: int) -> None:
        self.network.start(ep_seed)

    def control(self, obs: Observation) -> tuple[VehicleControl, float]:
        self.network.control(obs)
        return obs.expert_control, 0.0


def timed_route(model: str, world_cfg: WorldConfig, seed: int, max_time_s: float, timer: StepTimer) -> int:
    """One route of ``compare``'s through ``drive_episode`` and ``judge_episode``, the network in the shadow;
    ``timer`` gets world + camera, policy and judging. Returns the route steps driven."""
    import cv2

    cv2.setNumThreads(1)
    driver = ShadowDriver(model, world_cfg.target_speed_mps)
    episode = drive_episode(None, world_cfg, seed, max_time_s, driver=driver, timer=timer)
    timer.timed(judge_episode, "judging_s")(episode["steps"], episode["truncated"])
    return len(episode["steps"]["category"])


def _route_job(job: tuple) -> int:
    return timed_route(*job, StepTimer())


def _per_core(model: Path, world_cfg: WorldConfig, seeds: list[int], max_time_s: float) -> dict:
    timer = StepTimer()
    steps = sum(timed_route(str(model), world_cfg, s, max_time_s, timer) for s in seeds)
    ms = {k.replace("_s", "_ms_per_step"): 1e3 * timer.spent_s[k] / steps for k in PARTS}
    total = sum(ms.values())
    return {"route_steps": steps, **ms, "ms_per_step": total, "route_steps_per_s_per_core": 1e3 / total}


def _machine(model: Path, world_cfg: WorldConfig, seeds: list[int], max_time_s: float, workers: int) -> float:
    start = time.perf_counter()
    jobs = [(str(model), world_cfg, s, max_time_s) for s in seeds]
    steps = sum(run_jobs(_route_job, jobs, workers, progress=False, desc="bench closed-loop"))
    return steps / (time.perf_counter() - start)


def bench_closed_loop(routes: int = 8, max_time_s: float = 60.0, seed: int = 0, abnormal_rate: float = 0.1, workers: int = 2,
                      repeats: int = 2) -> dict:
    from training.pipeline import PipelineConfig

    if routes < 1 or repeats < 1 or workers < 1 or max_time_s <= 0:
        raise ValueError(f"routes, repeats and workers must be >= 1 and max_time_s > 0, got {routes}, {repeats}, {workers}, {max_time_s}")
    shipped = (PipelineConfig.width_mult, PipelineConfig.activation)
    world_cfg = replace(WorldConfig(), abnormal_rate=abnormal_rate)
    seeds = [route_seed(seed, i, "tune") for i in range(routes)]
    result: dict = {"routes": routes, "max_time_s": max_time_s, "abnormal_rate": abnormal_rate, "workers": workers, "repeats": repeats,
                    "clock_per_core": "process_time, best of repeats", "architectures": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (width, activation) in (("shipped", shipped), ("pilotnet", REFERENCE)):
            model = untrained_onnx(width, activation, Path(tmp) / f"{name}.onnx")
            core = min((_per_core(model, world_cfg, seeds, max_time_s) for _ in range(repeats)), key=lambda r: r["ms_per_step"])
            wall = max(_machine(model, world_cfg, seeds, max_time_s, workers) for _ in range(repeats))
            result["architectures"][name] = {"width_mult": width, "activation": activation, **core,
                                             f"route_steps_per_s_{workers}_workers_wall": wall}
    a = result["architectures"]
    result["speedup_per_core"] = a["shipped"]["route_steps_per_s_per_core"] / a["pilotnet"]["route_steps_per_s_per_core"]
    key = f"route_steps_per_s_{workers}_workers_wall"
    result["speedup"] = a["shipped"][key] / a["pilotnet"][key]
    result["target_speedup"], result["meets_target"] = 3.0, result["speedup"] >= 3.0
    return result
