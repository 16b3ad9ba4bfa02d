"""``metasteer bench node-latency``: camera publish -> control receive through real DDS.

The steering node runs as its own process; this process publishes 800x600 bgra8 frames with the
bridge's QoS (reliable, depth 10) at 20 Hz and then at rising rates, and matches each control
command to its frame by the header stamp the node copies. Reports latency percentiles, the share of
frames answered, the highest rate still answered at >= 99 %, and the node's own inference time.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from metasteer.nodes.launching import ros_env, start, stop


def _stream(h, rate_hz: float, frames: int, payload: bytes) -> dict:
    import rclpy

    h.received.clear()
    sent = {}
    period = 1.0 / rate_hz
    t0 = time.perf_counter()
    for k in range(frames):
        msg = h.Image(height=600, width=800, encoding="bgra8", step=3200)
        now = h.node.get_clock().now().to_msg()
        msg.header.stamp = now
        msg.data = payload
        sent[(now.sec, now.nanosec)] = time.perf_counter()
        h.pub.publish(msg)
        while time.perf_counter() < t0 + (k + 1) * period:
            rclpy.spin_once(h.node, timeout_sec=max(0.0, t0 + (k + 1) * period - time.perf_counter()))
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        rclpy.spin_once(h.node, timeout_sec=0.01)
    lat = [(t_recv - sent[key]) * 1000.0 for key, t_recv in h.received if key in sent]
    answered = len({key for key, _ in h.received if key in sent})
    return {"rate_hz": rate_hz, "frames": frames, "answered_fraction": answered / frames,
            "p50_ms": float(np.percentile(lat, 50)) if lat else None, "p99_ms": float(np.percentile(lat, 99)) if lat else None,
            "fps": answered / (time.perf_counter() - t0 - 1.0)}


def bench_node_latency(model: Path, frames: int = 200, rates: tuple[float, ...] = (20, 50, 100, 150, 200)) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, Joy

    env = ros_env()
    saved = dict(os.environ)
    os.environ.update(env)
    log = tempfile.NamedTemporaryFile(prefix="metasteer-node-", suffix=".log", delete=False)
    node_proc = start("metasteer.nodes.steering_node", {"model_path": Path(model).resolve(), "interface": "fallback",
                                                         "infraction_log": log.name + ".jsonl", "max_frame_age_s": 1.0},
                      env, stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    try:
        node = rclpy.create_node("metasteer_bench_node_latency")
        h = type("H", (), {})()
        h.node, h.Image, h.received, h.diag = node, Image, [], []
        h.pub = node.create_publisher(Image, "/carla/ego_vehicle/rgb_front/image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(Joy, "/carla/ego_vehicle/vehicle_control_cmd",
                                 lambda m: h.received.append(((m.header.stamp.sec, m.header.stamp.nanosec), time.perf_counter())), 100)
        node.create_subscription(DiagnosticArray, "/diagnostics", h.diag.append, 10)
        deadline = time.time() + 30
        while node.count_subscribers("/carla/ego_vehicle/rgb_front/image") == 0 and time.time() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        payload = np.random.default_rng(0).integers(0, 255, 800 * 600 * 4, dtype=np.uint8).tobytes()
        _stream(h, 20, 20, payload)  # warm-up
        runs = [_stream(h, r, frames, payload) for r in rates]
        end = time.time() + 2.5
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        values = {kv.key: kv.value for kv in h.diag[-1].status[0].values} if h.diag else {}
        node.destroy_node()
    finally:
        rclpy.shutdown()
        stop(node_proc)
        os.environ.clear()
        os.environ.update(saved)
    at20 = runs[0]
    sustained = [r["rate_hz"] for r in runs if r["answered_fraction"] >= 0.99]
    return {"p50_ms": at20["p50_ms"], "p99_ms": at20["p99_ms"], "answered_fraction": at20["answered_fraction"],
            "max_fps": max(sustained) if sustained else 0.0, "max_measured_fps": max(r["fps"] for r in runs),
            "inference_p50_ms": float(values.get("inference_p50_ms", "nan")), "inference_p99_ms": float(values.get("inference_p99_ms", "nan")),
            "runs": runs, "frame": "800x600 bgra8", "publisher_qos": "reliable, keep-last 10 (carla-ros-bridge)",
            "fastdds_profile": env.get("FASTRTPS_DEFAULT_PROFILES_FILE")}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/learned.onnx")
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(bench_node_latency(Path(args.model), frames=args.frames), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
