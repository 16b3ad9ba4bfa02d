"""``metasteer bench node-latency``: camera publish -> control receive through real DDS.

The steering node runs as its own process; this process publishes 800x600 bgra8 frames with the
bridge's QoS (reliable, depth 10) at 20 Hz and then at rising rates, and matches each control
command to its frame by the header stamp the node copies. Reports latency percentiles, the share of
frames answered, the highest rate still answered at >= 99 %, and the node's own inference time at 20 Hz
and over the rate sweep (the node's window: its last 500 frames), its own frame counters over the warm-up
and the 20 Hz run and the intra-op threads its onnxruntime session was built with (from its ``/diagnostics``).
An echo node (``echo_node``: same transport and QoS, replies at once) gets 20 Hz of the same frames
interleaved with the steering node's (the same conditions; back to back, the transport alone varied
2.8-5.3 ms p50 between runs), so ``overhead_p50_ms`` is what the steering node adds to the transport.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metasteer.nodes.launching import ros_env, start, stop

CAMERA_TOPIC, CONTROL_TOPIC = "/carla/ego_vehicle/rgb_front/image", "/carla/ego_vehicle/vehicle_control_cmd"
ECHO_IMAGE_TOPIC, ECHO_REPLY_TOPIC = "/metasteer_bench/echo/image", "/metasteer_bench/echo/reply"
WARMUP_FRAMES = 20  # to each node at 20 Hz before anything is measured


@dataclass
class _Probe:
    """This process's side: a frame publisher and the replies received for it (stamp, arrival time)."""

    node: Any
    image_type: type
    pub: Any
    received: list = field(default_factory=list)

    def frame(self, payload: bytes) -> tuple[Any, tuple[int, int]]:
        msg = self.image_type(height=600, width=800, encoding="bgra8", step=3200)
        now = self.node.get_clock().now().to_msg()
        msg.header.stamp, msg.data = now, payload
        return msg, (now.sec, now.nanosec)


def _prime(probes: list[_Probe], payload: bytes, timeout_s: float = 30.0) -> None:
    """A frame to each probe every 0.2 s until each has answered one. Only a reply proves both directions
    matched: graph discovery (``count_subscribers``) comes before the endpoints match, and a reliable volatile
    reader drops what was written before it matched the writer."""
    import rclpy

    node, deadline = probes[0].node, time.time() + timeout_s
    while any(not p.received for p in probes) and time.time() < deadline:
        for p in probes:
            if not p.received:
                p.pub.publish(p.frame(payload)[0])
        end = time.time() + 0.2
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.02)
    silent = [p.pub.topic_name for p in probes if not p.received]
    if silent:
        raise RuntimeError(f"no answer to frames on {silent} in {timeout_s:.0f} s")


def _settled_counters(node: Any, diag: list, answered: int) -> dict[str, str]:
    """The steering node's ``/diagnostics`` once two messages in a row count the same frames and at least
    ``answered`` answered: no priming frame is still queued when the run's counting starts."""
    last: dict[str, str] = {}
    for _ in range(10):
        values = _fresh_diagnostics(node, diag, answered=answered)
        if not values:
            break
        if values.get("frames") == last.get("frames"):
            return values
        last = values
    raise RuntimeError("the steering node's /diagnostics did not settle after priming: its frame counters are unknown")


def _fresh_diagnostics(node: Any, diag: list, wait_s: float = 3.5, answered: int = 0) -> dict[str, str]:
    """The steering node's next ``/diagnostics`` values (published once a second) that count at least
    ``answered`` frames answered (the replies this process has received: a message sent before the last of
    them describes an older window); the last fresh one if none does by ``wait_s``, ``{}`` if none came."""
    import rclpy

    seen, end = len(diag), time.time() + wait_s
    while time.time() < end:
        if len(diag) > seen and int(_values(diag[-1]).get("answered", "0")) >= answered:
            break
        rclpy.spin_once(node, timeout_sec=0.05)
    return _values(diag[-1]) if len(diag) > seen else {}


def _values(msg: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.status[0].values}


def _stream(probes: list[_Probe], rate_hz: float, frames: int, payload: bytes) -> list[dict]:
    """``frames`` frames to each probe at ``rate_hz`` each, interleaved (the probes see the same
    conditions); per probe: share answered, latency percentiles, answers per second."""
    import rclpy

    node = probes[0].node
    for p in probes:
        p.received.clear()
    sent: list[dict] = [{} for _ in probes]
    period = 1.0 / (rate_hz * len(probes))
    t0 = time.perf_counter()
    for k in range(frames * len(probes)):
        i = k % len(probes)
        msg, key = probes[i].frame(payload)
        sent[i][key] = time.perf_counter()
        probes[i].pub.publish(msg)
        while time.perf_counter() < t0 + (k + 1) * period:
            rclpy.spin_once(node, timeout_sec=max(0.0, t0 + (k + 1) * period - time.perf_counter()))
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        rclpy.spin_once(node, timeout_sec=0.01)
    out = []
    for p, s in zip(probes, sent):
        lat = [(t_recv - s[key]) * 1000.0 for key, t_recv in p.received if key in s]
        answered = len({key for key, _ in p.received if key in s})
        out.append({"rate_hz": rate_hz, "frames": frames, "answered_fraction": answered / frames,
                    "p50_ms": float(np.percentile(lat, 50)) if lat else None, "p99_ms": float(np.percentile(lat, 99)) if lat else None,
                    "fps": answered / (time.perf_counter() - t0 - 1.0)})
    return out


def bench_node_latency(model: Path, frames: int = 200, rates: tuple[float, ...] = (50, 100, 150, 200), threads: int = 1) -> dict:
    """20 Hz to the echo and the steering node interleaved, then the steering node alone at ``rates``."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, Joy

    from metasteer.nodes.interfaces import resolve

    env = ros_env()
    saved = dict(os.environ)
    os.environ.update(env)
    log = tempfile.NamedTemporaryFile(prefix="metasteer-node-", suffix=".log", delete=False)
    payload = np.random.default_rng(0).integers(0, 255, 800 * 600 * 4, dtype=np.uint8).tobytes()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    procs = []
    try:
        node = rclpy.create_node("metasteer_bench_node_latency")

        def probe(image_topic: str, reply_topic: str, reply_type: type) -> _Probe:
            p = _Probe(node, Image, node.create_publisher(Image, image_topic, qos))
            node.create_subscription(reply_type, reply_topic,
                                     lambda m: p.received.append(((m.header.stamp.sec, m.header.stamp.nanosec), time.perf_counter())), 100)
            return p

        iface = resolve("auto")  # carla_msgs where built (the set-up does), else the fallback set
        echo, steer = probe(ECHO_IMAGE_TOPIC, ECHO_REPLY_TOPIC, Joy), probe(CAMERA_TOPIC, CONTROL_TOPIC, iface.control_type)
        diag: list = []
        node.create_subscription(DiagnosticArray, "/diagnostics", diag.append, 10)
        procs.append(start("metasteer.nodes.echo_node", {"camera_topic": ECHO_IMAGE_TOPIC, "reply_topic": ECHO_REPLY_TOPIC}, env,
                           stdout=log, stderr=subprocess.STDOUT))
        procs.append(start("metasteer.nodes.steering_node", {"model_path": Path(model).resolve(), "interface": iface.name,
                                                             "infraction_log": log.name + ".jsonl", "max_frame_age_s": 1.0,
                                                             "inference_threads": threads},
                           env, stdout=log, stderr=subprocess.STDOUT))
        try:
            _prime([echo, steer], payload)
            base = _settled_counters(node, diag, answered=len(steer.received))  # the node's counters before the warm-up
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; the nodes' log: {log.name}") from None
        warm = _stream([echo, steer], 20, WARMUP_FRAMES, payload)[1]
        transport, at20 = _stream([echo, steer], 20, frames, payload)  # the same conditions for both
        replied = round(warm["answered_fraction"] * WARMUP_FRAMES + at20["answered_fraction"] * frames)
        # the node's window (its last 500 frames) holds the 20 Hz frames and the few priming ones here
        values20 = _fresh_diagnostics(node, diag, answered=int(base["answered"]) + replied)
        runs = [at20] + [_stream([steer], r, frames, payload)[0] for r in rates if r != 20]
        values = _fresh_diagnostics(node, diag)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        for proc in procs:
            stop(proc)
        os.environ.clear()
        os.environ.update(saved)
    sustained = [r["rate_hz"] for r in runs if r["answered_fraction"] >= 0.99]
    overhead = None if None in (at20["p50_ms"], transport["p50_ms"]) else at20["p50_ms"] - transport["p50_ms"]
    return {"p50_ms": at20["p50_ms"], "p99_ms": at20["p99_ms"], "answered_fraction": at20["answered_fraction"],
            "transport_p50_ms": transport["p50_ms"], "transport_p99_ms": transport["p99_ms"], "overhead_p50_ms": overhead,
            "max_fps": max(sustained) if sustained else 0.0, "max_measured_fps": max(r["fps"] for r in runs),
            "inference_p50_ms": float(values.get("inference_p50_ms", "nan")), "inference_p99_ms": float(values.get("inference_p99_ms", "nan")),
            "inference_20hz_p50_ms": float(values20.get("inference_p50_ms", "nan")), "inference_20hz_p99_ms": float(values20.get("inference_p99_ms", "nan")),
            "node_stamp_to_answer_p50_ms": float(values.get("end_to_end_p50_ms", "nan")),  # the node's own view: frame stamp -> command ready
            # the node's own counters over the warm-up and the 20 Hz run (priming excluded) and the threads its onnxruntime session runs with
            "node_at_20hz": {k: int(values20[k]) - int(base[k]) for k in ("frames", "answered", "stale", "malformed") if k in values20 and k in base},
            "node_inference_threads": int(values["inference_threads"]) if values.get("inference_threads", "none").isdigit() else None,
            "runs": runs, "transport": transport, "interface": iface.name, "inference_threads": threads, "frame": "800x600 bgra8", "publisher_qos": "reliable, keep-last 10 (carla-ros-bridge)",
            "fastdds_profile": env.get("FASTRTPS_DEFAULT_PROFILES_FILE")}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/learned.onnx")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="the node's onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    print(json.dumps(bench_node_latency(Path(args.model), frames=args.frames, threads=args.threads), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
