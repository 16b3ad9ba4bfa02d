"""The ROS 2 node for real: rclpy pub/sub across processes on a private loopback domain
(ROS_LOCALHOST_ONLY=1, random ROS_DOMAIN_ID), real onnxruntime, real model files."""

import json
import os
import random
import subprocess
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from metasteer.nodes.launching import ros_env, start, stop  # noqa: E402

DOMAIN = random.randint(100, 200)


@pytest.fixture(scope="module")
def models(small_dataset, tmp_path_factory):
    """Two valid exported models and one broken file."""
    from training.export import export
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    out = tmp_path_factory.mktemp("models")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        Run(out / name, small_dataset, None, LossSpec(), MetaConfig(),
            TrainConfig(steps=8, batch_size=8, width_mult=0.25, seed=seed, eval_every=8)).run(progress=False)
        paths[name] = str(export(out / name, out / f"{name}.onnx")["onnx"])
    (out / "broken.onnx").write_bytes(b"\x08\x01garbage")
    paths["broken"] = str(out / "broken.onnx")
    return paths


@pytest.fixture(scope="module")
def harness():
    """An rclpy node in the test process, on the same private domain as the processes under test."""
    saved = dict(os.environ)
    os.environ.update(ros_env(DOMAIN))
    rclpy.init()
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, Joy
    from std_msgs.msg import String

    node = rclpy.create_node("metasteer_test_harness")
    h = type("Harness", (), {})()
    h.node, h.commands, h.diagnostics = node, [], []
    h.image_pub = node.create_publisher(Image, "/carla/ego_vehicle/rgb_front/image", 10)
    h.collision_pub = node.create_publisher(String, "/carla/ego_vehicle/collision", 10)
    h.lane_pub = node.create_publisher(String, "/carla/ego_vehicle/lane_invasion", 10)
    node.create_subscription(Joy, "/carla/ego_vehicle/vehicle_control_cmd", h.commands.append, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", h.diagnostics.append, 10)
    h.Image = Image
    yield h
    node.destroy_node()
    rclpy.shutdown()
    os.environ.clear()
    os.environ.update(saved)


def spin(h, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(h.node, timeout_sec=0.01)


def frame(h, stamp_s=None, width=800, height=600, encoding="bgra8", step=None, data=None):
    msg = h.Image(height=height, width=width, encoding=encoding, step=step if step is not None else width * 4)
    t = h.node.get_clock().now().to_msg() if stamp_s is None else None
    msg.header.stamp = t if t is not None else msg.header.stamp
    if data is None:
        data = np.random.default_rng(0).integers(0, 255, size=(height * msg.step,), dtype=np.uint8).tobytes()
    msg.data = data
    return msg


@pytest.fixture
def steering_node(models, tmp_path):
    procs = []

    def launch(**params):
        params = {"model_path": models["a"], "infraction_log": tmp_path / "infractions.jsonl", "interface": "fallback", **params}
        proc = start("metasteer.nodes.steering_node", params, ros_env(DOMAIN), stdout=open(tmp_path / "node.log", "w"),
                     stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield launch
    for p in procs:
        stop(p)


def wait_for_node(h, timeout=30.0):
    end = time.monotonic() + timeout
    while h.node.count_subscribers("/carla/ego_vehicle/rgb_front/image") == 0:
        assert time.monotonic() < end, "steering node did not come up"
        spin(h, 0.1)
    spin(h, 0.5)


def test_bridge_and_node_drive_an_episode_across_processes(models, tmp_path):
    from training.drive import drive

    result = drive(models["a"], seed=2, max_time_s=8.0, interface="fallback", log_dir=tmp_path, domain_id=DOMAIN + 1)
    steps = round(result["time_s"] / 0.05)  # a barely trained model may leave the road early: the episode then ends
    (mid, answered), = result["controls_by_model"].items()
    assert steps >= 10 and answered >= steps - 1 and result["control_timeouts"] <= 1  # every step answered by the model
    # the node integrates time and distance in the clock the frames are stamped in: they agree with the world's
    node = result["node_infraction_summary"][mid]
    assert node["time_s"] == pytest.approx(result["time_s"], rel=0.02, abs=0.1)
    assert node["distance_m"] == pytest.approx(result["distance_m"], rel=0.02, abs=1.0)
    assert "route_completion" in result and "collisions" in result


def test_malformed_images_are_dropped_and_the_node_lives(harness, steering_node):
    h = harness
    proc = steering_node()
    wait_for_node(h)
    good = frame(h)
    bad = [frame(h, encoding="mono8"), frame(h, encoding="rgba16"), frame(h, step=100),
           frame(h, data=good.data[: len(good.data) // 3]), frame(h, width=0, height=0, data=b""),
           frame(h, width=10, height=10, data=b"\x00")]
    h.commands.clear()
    for msg in bad:  # spaced out: with keep-last-1 a newer frame may replace one not yet taken
        msg.header.stamp = h.node.get_clock().now().to_msg()  # fresh, or it would count as stale
        h.image_pub.publish(msg)
        spin(h, 0.15)
    spin(h, 0.3)
    assert not [c for c in h.commands if c.axes[2] < 1.0]  # nothing malformed was driven on (axes: throttle, steer, brake)
    h.image_pub.publish(frame(h))
    spin(h, 1.5)
    assert proc.poll() is None
    driven = [c for c in h.commands if c.axes[2] < 1.0 or c.axes[0] > 0]
    assert driven, "a good frame after the fuzz got no command"
    h.diagnostics.clear()
    spin(h, 1.2)
    values = {kv.key: kv.value for kv in h.diagnostics[-1].status[0].values}
    assert int(values["malformed"]) == len(bad) and h.diagnostics[-1].status[0].level == b"\x01"  # WARN: frames dropped


def test_hot_swap_ten_times_while_streaming(harness, steering_node, models):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    h = harness
    proc = steering_node()
    wait_for_node(h)
    client = AsyncParameterClient(h.node, "metasteer_steering")
    assert client.wait_for_services(timeout_sec=10.0)
    h.commands.clear()
    sent, results = [], []
    next_swap = time.monotonic() + 0.5
    swaps = [models["b"], models["a"]] * 5
    period = 0.05
    t0 = time.monotonic()
    k = 0
    pending = None
    while swaps or pending is not None or time.monotonic() < next_swap + 0.5:
        msg = frame(h)
        msg.header.stamp.sec, msg.header.stamp.nanosec = h.node.get_clock().now().to_msg().sec, 1000 * k  # unique per frame
        stamp = h.node.get_clock().now().to_msg()
        msg.header.stamp = stamp
        h.image_pub.publish(msg)
        sent.append((stamp.sec, stamp.nanosec))
        k += 1
        if pending is None and swaps and time.monotonic() >= next_swap:
            pending = client.set_parameters([Parameter("model_path", Parameter.Type.STRING, swaps.pop(0))])
            next_swap = time.monotonic() + 0.3
        if pending is not None and pending.done():
            results.append(pending.result().results[0])
            pending = None
        end = t0 + k * period
        while time.monotonic() < end:
            rclpy.spin_once(h.node, timeout_sec=max(0.0, end - time.monotonic()))
    spin(h, 0.5)
    bad = client.set_parameters([Parameter("model_path", Parameter.Type.STRING, models["broken"])])
    rclpy.spin_until_future_complete(h.node, bad, timeout_sec=10.0)
    rejected = bad.result().results[0]

    assert proc.poll() is None
    assert len(results) == 10 and all(r.successful for r in results)
    assert not rejected.successful and "not a loadable ONNX model" in rejected.reason
    answered = {(c.header.stamp.sec, c.header.stamp.nanosec) for c in h.commands}
    missing = [s for s in sent if s not in answered]
    assert len(missing) <= 10 + 1, f"{len(missing)} of {len(sent)} frames got no command across 10 swaps"
    ids = {c.header.frame_id for c in h.commands}
    assert len(ids - {"none"}) == 2  # commands trace back to both models
    h.commands.clear()
    h.image_pub.publish(frame(h))
    spin(h, 1.0)
    assert h.commands and h.commands[0].header.frame_id != "none"  # the old model kept driving after the rejection


def test_camera_loss_brakes(harness, steering_node):
    h = harness
    steering_node(camera_timeout_s=0.3)
    wait_for_node(h)
    for _ in range(10):
        h.image_pub.publish(frame(h))
        spin(h, 0.05)
    spin(h, 0.1)
    h.commands.clear()
    spin(h, 1.0)
    assert h.commands and all(c.axes[2] == 1.0 and c.axes[0] == 0.0 for c in h.commands)


def test_infraction_log_contents(harness, steering_node, tmp_path):
    from std_msgs.msg import String

    h = harness
    proc = steering_node()
    wait_for_node(h)
    h.image_pub.publish(frame(h))
    spin(h, 0.5)
    h.collision_pub.publish(String(data=json.dumps({"other_actor_id": 42, "normal_impulse": [100.0, 0.0, 0.0]})))
    h.lane_pub.publish(String(data=json.dumps({"crossed_lane_markings": [1, 8, 10]})))
    h.lane_pub.publish(String(data="not json"))
    spin(h, 1.0)
    assert proc.poll() is None
    stop(proc)
    lines = [json.loads(x) for x in (tmp_path / "infractions.jsonl").read_text().splitlines()]
    events = [x for x in lines if x.get("event") in ("collision", "lane_invasion")]
    assert [e["event"] for e in events] == ["collision", "lane_invasion"]
    assert events[0]["details"]["other_actor_id"] == 42 and len(events[0]["model_id"]) == 12
    assert events[1]["details"]["names"] == ["Broken", "Grass", "NONE"]
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["per_model"][events[0]["model_id"]]["infractions"] == 2


def test_stale_frames_get_no_command_a_counter_and_a_warning_naming_use_sim_time(harness, steering_node, tmp_path):
    h = harness
    steering_node(diagnostics_period_s=0.2)
    wait_for_node(h)
    h.commands.clear()
    for _ in range(5):
        h.image_pub.publish(frame(h, stamp_s=0))  # stamped at t = 0 (sim time / unstamped) while the node runs on wall time
        spin(h, 0.1)
    spin(h, 0.5)
    assert not [c for c in h.commands if c.axes[2] != 1.0]  # no driving command answers a stale frame
    values = {kv.key: kv.value for kv in h.diagnostics[-1].status[0].values}
    assert int(values["stale"]) == 5 and float(values["last_stale_age_s"]) > 1e6  # wall clock minus a zero stamp
    assert "use_sim_time" in (tmp_path / "node.log").read_text()
