"""``metasteer bench sim``: what one embedded-world step costs on one core, with and without its camera.

The headline, ``world_camera_steps_per_s_200x66``, is a closed-loop route step without the policy:
physics, actors, the expert, infractions, scene features and the 200x66 training camera, driven by the
expert in this one process (OpenCV on one thread). Steps are counted per CPU second of the process
(``time.process_time``), what one core gives whatever share of the machine other processes take; each
figure is the best of ``repeats`` runs, since contention only ever slows a run down.
"""

from __future__ import annotations

import time

from simulator.base import CameraSpec, pilotnet_camera
from simulator.embedded import embedded_world

TARGET_STEPS_PER_S = 5000.0  # world + 200x66 camera on one core: 0.2 ms a step, a fraction of the policy's


def steps_per_second(camera: CameraSpec, steps: int, seed: int, abnormal_rate: float,
                     render: bool = True) -> float:
    """Expert-driven steps per CPU second (physics, actors, expert, infractions and, if asked, camera);
    a finished route is followed by the next seed's, its reset included."""
    world = embedded_world(abnormal_rate, camera)
    obs = world.reset(seed)
    done, episode = 0, 0
    start = time.process_time()
    while done < steps:
        if obs.done:
            episode += 1
            obs = world.reset(seed + episode)
        obs = world.step(obs.expert_control, render=render)
        done += 1
    return steps / (time.process_time() - start)


def bench_sim(steps: int = 3000, seed: int = 0, abnormal_rate: float = 0.1, repeats: int = 3) -> dict:
    import cv2

    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be >= 1, got {steps} and {repeats}")
    cv2.setNumThreads(1)  # the figures are per core

    def best(camera: CameraSpec, n: int, render: bool = True) -> float:
        return max(steps_per_second(camera, n, seed, abnormal_rate, render) for _ in range(repeats))

    with_camera = best(pilotnet_camera(), steps)
    world_only = best(pilotnet_camera(), steps, render=False)
    return {
        "world_camera_steps_per_s_200x66": with_camera,
        "world_steps_per_s": world_only,
        "camera_ms_per_frame_200x66": 1e3 / with_camera - 1e3 / world_only,
        "world_camera_steps_per_s_800x600": best(CameraSpec(), max(steps // 5, 200)),  # the bridge's whole frame
        "target_steps_per_s_200x66": TARGET_STEPS_PER_S,
        "meets_target": with_camera >= TARGET_STEPS_PER_S,
        "abnormal_rate": abnormal_rate,
        "steps": steps,
        "repeats": repeats,
        "clock": "process_time",
        "processes": 1,
        "threads": 1,
    }
