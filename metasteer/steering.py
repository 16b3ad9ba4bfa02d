"""The steering node's logic without ROS: model hot-swap, frame -> command, safety, statistics.

Two clocks, in seconds: frame stamps and ``now_s`` on the clock the frames are stamped in (the node's
ROS clock: simulation time under ``use_sim_time``), for staleness; ``steady_s`` on a monotonic clock, for
the camera watchdog and the frame rate, because simulation time jumps back on a world reload, jumps
forward, or stops, and a silent camera must brake whatever it does. Steering follows
CARLA (+1 = full right) and is clamped to [-1, 1] here, because the ros-bridge forwards commands
unclamped.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from metasteer.control import SpeedController
from metasteer.image_msg import image_array
from metasteer.policy import OnnxPolicy, PolicyError
from metasteer.preprocess import ImageError


@dataclass(frozen=True)
class Command:
    """What to send to the vehicle, and why. ``model_id`` traces the command to its model."""

    throttle: float
    steer: float
    brake: float
    model_id: str
    reason: str = "ok"  # ok | no_model | camera_timeout | non_finite_output


@dataclass
class SafetyConfig:
    camera_timeout_s: float = 0.5  # no frame answered for this long (steady clock): brake
    max_frame_age_s: float = 0.2  # older frames are dropped, not queued
    target_speed_mps: float = 8.0


@dataclass
class Stats:
    frames: int = 0
    answered: int = 0
    malformed: int = 0
    stale: int = 0
    last_stale_age_s: float = float("nan")  # how old the last dropped frame was, in the node's clock
    non_finite: int = 0
    swaps: int = 0
    rejected_swaps: int = 0
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=500))
    end_to_end_ms: deque = field(default_factory=lambda: deque(maxlen=500))
    answer_times: deque = field(default_factory=lambda: deque(maxlen=200))  # steady clock

    def percentiles(self, which: deque) -> tuple[float, float]:
        if not which:
            return float("nan"), float("nan")
        a = np.fromiter(which, dtype=float)
        return float(np.percentile(a, 50)), float(np.percentile(a, 99))

    @property
    def fps(self) -> float:
        t = self.answer_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


class SteeringCore:
    """Holds the current policy and turns frames into commands. Thread-safe model swaps."""

    def __init__(self, safety: SafetyConfig, dt_s: float = 0.05, threads: int = 1) -> None:
        """``threads``: onnxruntime's intra-op threads for every model this core loads."""
        self.safety = safety
        self.threads = threads
        self.policy: OnnxPolicy | None = None
        self.speed = SpeedController(safety.target_speed_mps, dt_s=dt_s)
        self.speed_mps = 0.0
        self.stats = Stats()
        self.last_answer_steady_s: float | None = None  # when a frame was last answered, steady clock
        self._lock = threading.Lock()

    # ---- models ---------------------------------------------------------------------------------

    def swap_model(self, path: str) -> tuple[bool, str]:
        """Load and validate ``path``; on success it drives from the next frame on. Never raises."""
        try:
            policy = OnnxPolicy.load(path, threads=self.threads)
        except PolicyError as exc:
            self.stats.rejected_swaps += 1
            return False, str(exc)
        with self._lock:
            self.policy = policy
        self.stats.swaps += 1
        return True, f"now driving with {policy.model_id} ({path})"

    @property
    def model_id(self) -> str:
        policy = self.policy
        return policy.model_id if policy else "none"

    # ---- frames ---------------------------------------------------------------------------------

    def brake(self, reason: str) -> Command:
        return Command(0.0, 0.0, 1.0, self.model_id, reason)

    def on_speed(self, speed_mps: float) -> None:
        self.speed_mps = float(speed_mps) if math.isfinite(speed_mps) else self.speed_mps

    def on_frame(self, encoding: str, height: int, width: int, step: int, data, stamp_s: float, now_s: float,
                 steady_s: float) -> Command | None:
        """A camera frame -> a command, or ``None`` when the frame is stale (dropped, not queued).

        A malformed frame is counted and raises ``ImageError`` with the reason, for the caller to log.
        Only a frame answered with a command holds the watchdog off: stale or malformed ones do not.
        """
        self.stats.frames += 1
        if now_s - stamp_s > self.safety.max_frame_age_s:
            self.stats.stale += 1
            self.stats.last_stale_age_s = now_s - stamp_s
            return None
        try:
            frame = image_array(encoding, height, width, step, data)
        except ImageError:
            self.stats.malformed += 1
            raise
        self.last_answer_steady_s = steady_s
        with self._lock:
            policy = self.policy
        if policy is None:
            return self.brake("no_model")
        start = time.perf_counter()
        steer = policy.steer(frame, encoding)
        self.stats.inference_ms.append((time.perf_counter() - start) * 1000.0)
        if not math.isfinite(steer):
            self.stats.non_finite += 1
            return Command(0.0, 0.0, 1.0, policy.model_id, "non_finite_output")
        throttle, brake = self.speed.run_step(self.speed_mps)
        self.stats.answered += 1
        self.stats.answer_times.append(steady_s)
        self.stats.end_to_end_ms.append((now_s - stamp_s) * 1000.0 + self.stats.inference_ms[-1])
        return Command(throttle, max(-1.0, min(1.0, steer)), brake, policy.model_id)

    def watchdog(self, steady_s: float) -> Command | None:
        """A braking command when no frame was answered for ``camera_timeout_s`` of the steady clock."""
        last = self.last_answer_steady_s
        if last is None or steady_s - last > self.safety.camera_timeout_s:
            return self.brake("camera_timeout")
        return None

    def diagnostics(self) -> dict[str, str]:
        """Counters, percentiles (ms) and the model's onnxruntime intra-op threads, read from its session."""
        s, policy = self.stats, self.policy
        inf50, inf99 = s.percentiles(s.inference_ms)
        e50, e99 = s.percentiles(s.end_to_end_ms)
        return {"model_id": self.model_id, "frames": str(s.frames), "answered": str(s.answered), "malformed": str(s.malformed),
                "stale": str(s.stale), "last_stale_age_s": f"{s.last_stale_age_s:.3f}", "non_finite": str(s.non_finite), "swaps": str(s.swaps), "rejected_swaps": str(s.rejected_swaps),
                "speed_mps": f"{self.speed_mps:.2f}", "fps": f"{s.fps:.1f}", "inference_p50_ms": f"{inf50:.2f}", "inference_p99_ms": f"{inf99:.2f}",
                "end_to_end_p50_ms": f"{e50:.2f}", "end_to_end_p99_ms": f"{e99:.2f}",
                "inference_threads": str(policy.session.get_session_options().intra_op_num_threads) if policy else "none"}
