"""``metasteer bench closed-loop``: what a route step of ``compare`` costs, and where it goes.

A route step of ``compare`` is: the policy's command (``PolicyDriver``: runtime band cut, onnxruntime, speed
controller), one world step with its camera, and the step's share of judging the episode
(``judge_episode``). Each architecture drives the same routes with an untrained network of its shape: the
car follows the expert's command while the network's runs every step, so both networks see the same
frames and the same routes, and only the network's cost differs (a trained network would end its routes
at different times).

Per core: CPU seconds of one process (``time.process_time``), one onnxruntime and OpenCV thread, best of
``repeats``, split into world + camera, policy and judging. Per machine: route steps per wall second of
``workers`` processes, as ``compare`` runs them. ``speedup``: shipped architecture over today's PilotNet.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from simulator.base import FIXED_DELTA_S
from simulator.factory import WorldConfig

REFERENCE = (1.0, "elu")  # PilotNet as published, the shipped models' architecture before this bench


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


def _route(job: tuple) -> dict:
    """One route: CPU seconds spent in world + camera, policy and judging, and the steps driven."""
    import cv2

    from metasteer.policy import OnnxPolicy
    from simulator.factory import make_world
    from training.compare import judge_episode
    from training.evaluate import PolicyDriver

    model, world_cfg, seed, max_time_s = job
    cv2.setNumThreads(1)
    driver = PolicyDriver(OnnxPolicy.load(model), world_cfg.target_speed_mps)
    driver.start(seed)
    steps: dict[str, list] = {"category": [], "infraction": [], "steer": [], "expert_steer": [], "distance_m": []}
    clock = time.process_time
    spent = {"world_camera_s": 0.0, "policy_s": 0.0, "judging_s": 0.0}
    with make_world(world_cfg) as world:
        t = clock()
        obs = world.reset(seed)
        spent["world_camera_s"] += clock() - t
        while not obs.done and obs.time_s < max_time_s:
            t = clock()
            control, _ = driver.control(obs)
            spent["policy_s"] += clock() - t
            steps["category"].append(obs.category)
            steps["steer"].append(control.steer)
            steps["expert_steer"].append(obs.expert_control.steer)
            t = clock()
            obs = world.step(obs.expert_control)
            spent["world_camera_s"] += clock() - t
            steps["infraction"].append(any(e.counts_as_infraction for e in obs.events))
            steps["distance_m"].append(obs.speed_mps * FIXED_DELTA_S)
        t = clock()
        judge_episode(steps, not obs.done)
        spent["judging_s"] += clock() - t
    return {"steps": len(steps["category"]), **spent}


def _per_core(model: Path, world_cfg: WorldConfig, seeds: list[int], max_time_s: float) -> dict:
    parts = [_route((str(model), world_cfg, s, max_time_s)) for s in seeds]
    steps = sum(p["steps"] for p in parts)
    ms = {k.replace("_s", "_ms_per_step"): 1e3 * sum(p[k] for p in parts) / steps for k in ("world_camera_s", "policy_s", "judging_s")}
    total = sum(ms.values())
    return {"route_steps": steps, **ms, "ms_per_step": total, "route_steps_per_s_per_core": 1e3 / total}


def _machine(model: Path, world_cfg: WorldConfig, seeds: list[int], max_time_s: float, workers: int) -> float:
    start = time.perf_counter()
    with get_context("spawn").Pool(workers) as pool:
        steps = sum(r["steps"] for r in pool.map(_route, [(str(model), world_cfg, s, max_time_s) for s in seeds]))
    return steps / (time.perf_counter() - start)


def bench_closed_loop(routes: int = 8, max_time_s: float = 60.0, seed: int = 0, abnormal_rate: float = 0.1, workers: int = 2,
                      repeats: int = 2) -> dict:
    from training.evaluate import route_seed
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
