"""``metasteer bench node-soak``: the steering node fed 800x600 bgra8 frames at 20 Hz for minutes.

The node runs as its own process; this process publishes frames with the bridge's QoS (reliable,
depth 10) on a fixed 20 Hz schedule and matches each control command to its frame by the header stamp
the node copies. Reports the share of frames answered, how many never were, watchdog brakes (commands
for no frame), the node's own counters, and its resident memory (VmRSS from /proc) every ``sample_s``:
growth after ``warmup_s`` (onnxruntime's arenas and DDS buffers fill first) as last minus first sample
and as a least-squares slope in MB per 10 min, which one late sample cannot decide alone.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from metasteer.nodes.launching import ros_env, start, stop

CAMERA_TOPIC, CONTROL_TOPIC = "/carla/ego_vehicle/rgb_front/image", "/carla/ego_vehicle/vehicle_control_cmd"
PERIOD_S = 0.05  # 20 Hz, CARLA's synchronous tick


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def growth(samples: list[tuple[float, float]], warmup_s: float) -> dict:
    """RSS growth of ``(seconds, MB)`` samples taken after ``warmup_s``: last minus first, and the slope."""
    after = [(t, mb) for t, mb in samples if t >= warmup_s]
    if len(after) < 2:
        return {"rss_growth_mb": None, "rss_slope_mb_per_10min": None, "samples_after_warmup": len(after)}
    t, mb = np.array(after).T
    return {"rss_growth_mb": float(mb[-1] - mb[0]), "rss_slope_mb_per_10min": float(np.polyfit(t, mb, 1)[0] * 600.0),
            "samples_after_warmup": len(after)}


def bench_node_soak(model: Path, minutes: float, warmup_s: float = 60.0, sample_s: float = 2.0, threads: int = 1) -> dict:
    """``minutes`` of 20 Hz frames to a steering node process; see the module docstring."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from metasteer.nodes.interfaces import resolve

    env, saved = ros_env(), dict(os.environ)
    os.environ.update(env)
    log = tempfile.NamedTemporaryFile(prefix="metasteer-soak-", suffix=".log", delete=False)
    payload = np.random.default_rng(0).integers(0, 255, 800 * 600 * 4, dtype=np.uint8).tobytes()
    iface = resolve("auto")
    sent, answered, other, diag, rss = set(), set(), [0], [], []
    rclpy.init()
    proc = None
    try:
        node = rclpy.create_node("metasteer_bench_node_soak")
        pub = node.create_publisher(Image, CAMERA_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

        def on_control(msg) -> None:
            key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            if key in sent:
                answered.add(key)
            else:
                other[0] += 1

        node.create_subscription(iface.control_type, CONTROL_TOPIC, on_control, 100)
        node.create_subscription(DiagnosticArray, "/diagnostics", diag.append, 10)
        proc = start("metasteer.nodes.steering_node", {"model_path": Path(model).resolve(), "interface": iface.name,
                                                       "infraction_log": log.name + ".jsonl", "inference_threads": threads},
                     env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30.0
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        other[0] = 0  # watchdog brakes before the first frame are expected
        frames = round(minutes * 60.0 / PERIOD_S)
        t0 = next_sample = time.monotonic()
        for k in range(frames):
            msg = Image(height=600, width=800, encoding="bgra8", step=3200)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.data = payload
            sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            pub.publish(msg)
            if time.monotonic() >= next_sample:
                rss.append((time.monotonic() - t0, rss_mb(proc.pid)))
                next_sample += sample_s
            while (left := t0 + (k + 1) * PERIOD_S - time.monotonic()) > 0:
                rclpy.spin_once(node, timeout_sec=left)
        end = time.monotonic() + 1.5  # the last answers, and one more diagnostics message
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        if proc is not None:
            stop(proc)
        os.environ.clear()
        os.environ.update(saved)
    values = {kv.key: kv.value for kv in diag[-1].status[0].values} if diag else {}
    return {"minutes": minutes, "frames": len(sent), "answered": len(answered), "answered_fraction": len(answered) / max(len(sent), 1),
            "unanswered": len(sent) - len(answered), "watchdog_brakes": other[0], "warmup_s": warmup_s,
            **growth(rss, warmup_s), "rss_first_mb": rss[0][1] if rss else None, "rss_last_mb": rss[-1][1] if rss else None,
            "rss_samples": [[round(t, 1), round(mb, 2)] for t, mb in rss], "node_counters": values,
            "interface": iface.name, "inference_threads": threads, "model": str(model), "frame": "800x600 bgra8 at 20 Hz"}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/learned.onnx")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1, help="the node's onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    print(json.dumps(bench_node_soak(Path(args.model), args.minutes, warmup_s=args.warmup_s, threads=args.threads), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
