"""``metasteer bench sim``: embedded-world steps per second with its camera, on one core."""

from __future__ import annotations

import time

from simulator.base import CameraSpec, pilotnet_camera
from simulator.embedded import embedded_world


def steps_per_second(camera: CameraSpec, steps: int, seed: int, render: bool = True) -> float:
    """Expert-driven steps per second (physics, actors, expert, infractions and, if asked, camera)."""
    world = embedded_world(0.03, camera)
    obs = world.reset(seed)
    done, episode = 0, 0
    start = time.perf_counter()
    while done < steps:
        if obs.done:
            episode += 1
            obs = world.reset(seed + episode)
        obs = world.step(obs.expert_control, render=render)
        done += 1
    return steps / (time.perf_counter() - start)


def bench_sim(steps: int = 3000, seed: int = 0) -> dict:
    import cv2

    cv2.setNumThreads(1)  # the figure is per core
    full = CameraSpec()  # the bridge's 800x600 fov-90 camera, whole frame
    return {
        "steps_per_s_200x66": steps_per_second(pilotnet_camera(), steps, seed),
        "steps_per_s_800x600": steps_per_second(full, max(steps // 5, 200), seed),
        "steps_per_s_no_camera": steps_per_second(pilotnet_camera(), steps, seed, render=False),
        "steps": steps,
        "threads": 1,
    }
