"""The ROS 2 node for real: rclpy pub/sub across processes on a private loopback domain
(ROS_LOCALHOST_ONLY=1, a reserved ROS_DOMAIN_ID), real onnxruntime, real model files, and
carla-ros-bridge's message types (carla_msgs, built into the environment by the set-up); the
fallback message set (no carla_msgs) is tested on its own at the end."""

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from metasteer.nodes.launching import reserve_domain, ros_env, start, stop  # noqa: E402

DOMAIN = reserve_domain()  # the harness's; drives in this process get the process's own


@pytest.fixture(scope="module")
def models(small_dataset, tmp_path_factory):
    """Two valid exported models and one broken file."""
    from tests.onnx_models import constant_steer_model, nan_on_camera_model
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
    paths["steer3"] = str(constant_steer_model(out / "steer3.onnx", 3.0))
    paths["nan"] = str(nan_on_camera_model(out / "nan.onnx"))
    return paths


class Command(NamedTuple):
    throttle: float
    steer: float
    brake: float
    model_id: str
    stamp: tuple[int, int]
    received_s: float


@dataclass
class Harness:
    """The test process's side: publishers like the bridge's, and every command and diagnostic received."""

    node: Any
    iface: Any
    image_type: type
    image_pub: Any = None
    collision_pub: Any = None
    lane_pub: Any = None
    clock_pub: Any = None
    commands: list = field(default_factory=list)
    diagnostics: list = field(default_factory=list)

    def on_control(self, msg) -> None:
        throttle, steer, brake, model_id = self.iface.read_control(msg)
        self.commands.append(Command(throttle, steer, brake, model_id, (msg.header.stamp.sec, msg.header.stamp.nanosec), time.monotonic()))


@pytest.fixture(scope="module")
def harness():
    """An rclpy node in the test process, on the same private domain as the processes under test,
    speaking carla_msgs (a failure here means the set-up did not build carla_msgs)."""
    saved = dict(os.environ)
    os.environ.update(ros_env(DOMAIN))
    rclpy.init()
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from metasteer.nodes.interfaces import resolve

    node = rclpy.create_node("metasteer_test_harness")
    h = Harness(node, resolve("carla_msgs"), Image)
    h.image_pub = node.create_publisher(Image, "/carla/ego_vehicle/rgb_front/image", 10)
    h.collision_pub = node.create_publisher(h.iface.collision_type, "/carla/ego_vehicle/collision", 10)
    h.lane_pub = node.create_publisher(h.iface.lane_type, "/carla/ego_vehicle/lane_invasion", 10)
    h.clock_pub = node.create_publisher(Clock, "/clock", 10)
    node.create_subscription(h.iface.control_type, "/carla/ego_vehicle/vehicle_control_cmd", h.on_control, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", h.diagnostics.append, 10)
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
    msg = h.image_type(height=height, width=width, encoding=encoding, step=step if step is not None else width * 4)
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
        params = {"model_path": models["a"], "infraction_log": tmp_path / "infractions.jsonl", "interface": "carla_msgs", **params}
        proc = start("metasteer.nodes.steering_node", params, ros_env(DOMAIN), stdout=open(tmp_path / "node.log", "w"),
                     stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield launch
    for p in procs:
        stop(p)


def wait_for_node(h, proc, timeout=30.0, replies=None):
    """Until the node ``proc`` is matched both ways: its own /diagnostics (its pid: a stopped node's last reports
    can still be queued here, and passed for a new one's on a loaded machine) count a matched camera publisher
    (ours), and a command arrives after that (it brakes from start-up until it answers a frame: the reply path
    works). Graph discovery alone comes first, and a reliable volatile reader drops what was sent before it matched.
    ``replies``: the list its commands arrive in (default the harness's)."""
    replies = h.commands if replies is None else replies
    h.diagnostics.clear()
    end = time.monotonic() + timeout
    while not any(_values(d).get("pid") == str(proc.pid) and int(_values(d).get("camera_publishers", "0")) > 0 for d in h.diagnostics):
        assert time.monotonic() < end, "steering node did not come up (no diagnostics of its own, or its camera reader matched nothing)"
        spin(h, 0.05)
    replies.clear()
    while not replies:
        assert time.monotonic() < end, "steering node sent no command"
        spin(h, 0.05)


def _values(msg) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.status[0].values}


@pytest.mark.parametrize("interface", ["carla_msgs", "fallback"])
def test_bridge_and_node_drive_an_episode_across_processes(models, tmp_path, interface):
    """Bridge and node on carla-ros-bridge's types (and on the fallback set, for environments without
    carla_msgs): sim time on /clock, every step answered, time and distance agree with the world's."""
    from training.drive import DriveConfig, drive

    result = drive(models["a"], DriveConfig(seed=2, max_time_s=8.0, interface=interface), log_dir=tmp_path)
    steps = round(result["time_s"] / 0.05)  # a barely trained model may leave the road early: the episode then ends
    (mid, answered), = result["controls_by_model"].items()
    assert steps >= 10 and answered >= steps - 1 and result["control_timeouts"] <= 1  # every step answered by the model
    # the node integrates time and distance in the clock the frames are stamped in: they agree with the world's
    node = result["node_infraction_summary"][mid]
    assert node["time_s"] == pytest.approx(result["time_s"], rel=0.02, abs=0.1)
    assert node["distance_m"] == pytest.approx(result["distance_m"], rel=0.02, abs=1.0)
    assert "route_completion" in result and "collisions" in result


def test_the_bridge_takes_as_a_steps_command_only_the_answer_to_that_steps_frame(harness):
    """A command stamped otherwise (a late answer to the previous frame, a brake of another time) is not this
    step's: taken, it would put every later command one tick behind its frame for the rest of the episode."""
    from dataclasses import replace

    from builtin_interfaces.msg import Time

    from simulator.embedded_bridge import EmbeddedBridge

    bridge = EmbeddedBridge()
    try:
        bridge._publish(replace(bridge.world.reset(0), time_s=1.25))  # the frame of this step, stamped 1.25 s
        late = bridge.iface.make_control(Time(sec=1, nanosec=200_000_000), 0.5, 0.1, 0.0, "m")
        answer = bridge.iface.make_control(Time(sec=1, nanosec=250_000_000), 0.5, 0.2, 0.0, "m")
        bridge.on_control(late)
        assert bridge.control is None and bridge.unmatched == 1
        bridge.on_control(answer)
        assert bridge.control == pytest.approx((0.5, 0.2, 0.0, "m"))
    finally:
        bridge.destroy_node()


def test_malformed_images_are_dropped_and_the_node_lives(harness, steering_node):
    h = harness
    proc = steering_node(diagnostics_period_s=0.2)  # several reports in the 1.2 s read below, even on a loaded machine
    wait_for_node(h, proc)
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
    assert not [c for c in h.commands if c.brake < 1.0]  # nothing malformed was driven on
    h.image_pub.publish(frame(h))
    spin(h, 1.5)
    assert proc.poll() is None
    driven = [c for c in h.commands if c.brake < 1.0 or c.throttle > 0]
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
    wait_for_node(h, proc)
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
        assert time.monotonic() < t0 + 120, "the parameter swaps did not finish (a reply lost?)"
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
    answered = {c.stamp for c in h.commands}
    missing = [s for s in sent if s not in answered]
    assert len(missing) <= 10 + 1, f"{len(missing)} of {len(sent)} frames got no command across 10 swaps"
    # the commands' model ids follow the swaps: a, then b and a in turn, ten changes in all
    from metasteer.policy import OnnxPolicy

    ids = {name: OnnxPolicy.load(models[name]).model_id for name in ("a", "b")}
    driving = [c.model_id for c in sorted(h.commands, key=lambda c: c.received_s) if c.model_id in ids.values()]
    runs = [m for k, m in enumerate(driving) if k == 0 or m != driving[k - 1]]
    assert runs == [ids["a"], ids["b"]] * 5 + [ids["a"]]
    h.commands.clear()
    h.image_pub.publish(frame(h))
    spin(h, 1.0)
    assert h.commands and h.commands[0].model_id == ids["a"]  # the last good model kept driving after the rejection


def test_camera_loss_after_driving_brakes_within_the_timeout(harness, steering_node):
    h = harness
    proc = steering_node(camera_timeout_s=0.3)
    wait_for_node(h, proc)
    h.commands.clear()
    for _ in range(10):
        h.image_pub.publish(frame(h))
        spin(h, 0.05)
    last_frame = time.monotonic()
    spin(h, 1.0)
    driving = [c for c in h.commands if c.brake < 1.0 or c.throttle > 0]
    assert len(driving) >= 8  # it was driving on the frames
    braking = [c for c in h.commands if c.received_s > last_frame and c.brake == 1.0 and c.throttle == 0.0]
    assert braking, "no braking command after the camera went silent"
    # watchdog every 0.1 s: the first brake comes within the timeout plus one watchdog period (and DDS)
    assert braking[0].received_s - last_frame <= 0.3 + 0.1 + 0.1
    assert all(c.brake == 1.0 for c in h.commands if c.received_s > braking[0].received_s)


@pytest.mark.parametrize("model, expected", [("steer3", "clamped"), ("nan", "brake")])
def test_out_of_range_output_is_clamped_and_non_finite_output_brakes(harness, steering_node, models, model, expected):
    h = harness
    proc = steering_node(model_path=models[model], diagnostics_period_s=0.2)
    wait_for_node(h, proc)
    h.commands.clear()
    for _ in range(5):
        h.image_pub.publish(frame(h))
        spin(h, 0.1)
    spin(h, 0.5)
    driving = [c for c in h.commands if c.brake < 1.0]
    values = {kv.key: kv.value for kv in h.diagnostics[-1].status[0].values}
    if expected == "clamped":
        assert len(driving) >= 4 and all(c.steer == 1.0 for c in driving)  # the model says 3.0; CARLA's steer range is [-1, 1]
    else:
        assert not driving and int(values["non_finite"]) >= 4  # every frame answered by a brake, counted


def test_infraction_log_contents(harness, steering_node, tmp_path):
    h = harness
    proc = steering_node()
    wait_for_node(h, proc)
    h.image_pub.publish(frame(h))
    spin(h, 0.5)
    now = h.node.get_clock().now().to_msg()
    h.collision_pub.publish(h.iface.make_collision(now, 42, (100.0, 0.0, 0.0)))
    h.lane_pub.publish(h.iface.make_lane(now, [1, 8, 10]))
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
    proc = steering_node(diagnostics_period_s=0.2)
    wait_for_node(h, proc)
    h.commands.clear()
    for _ in range(5):
        h.image_pub.publish(frame(h, stamp_s=0))  # stamped at t = 0 (sim time / unstamped) while the node runs on wall time
        spin(h, 0.1)
    spin(h, 0.5)
    assert not [c for c in h.commands if c.brake != 1.0]  # no driving command answers a stale frame
    values = {kv.key: kv.value for kv in h.diagnostics[-1].status[0].values}
    assert int(values["stale"]) == 5 and float(values["last_stale_age_s"]) > 1e6  # wall clock minus a zero stamp
    assert "use_sim_time" in (tmp_path / "node.log").read_text()


def test_the_fallback_message_set_without_carla_msgs(harness, steering_node, models, tmp_path):
    """Joy control and String-JSON events (for environments without carla_msgs), on topics of their
    own: a frame is answered with Joy axes [throttle, steer, brake]; an unreadable event is skipped."""
    from sensor_msgs.msg import Joy
    from std_msgs.msg import String

    h = harness
    base = "/fallback/ego_vehicle"
    proc = steering_node(model_path=models["steer3"], interface="fallback", camera_topic=f"{base}/rgb_front/image",
                         control_topic=f"{base}/vehicle_control_cmd", collision_topic=f"{base}/collision")
    image_pub = h.node.create_publisher(h.image_type, f"{base}/rgb_front/image", 10)
    collision_pub = h.node.create_publisher(String, f"{base}/collision", 10)
    joys = []
    h.node.create_subscription(Joy, f"{base}/vehicle_control_cmd", joys.append, 10)
    wait_for_node(h, proc, replies=joys)
    collision_pub.publish(String(data="not json"))
    collision_pub.publish(String(data=json.dumps({"other_actor_id": 7, "normal_impulse": [50.0, 0.0, 0.0]})))
    for _ in range(3):
        image_pub.publish(frame(h))
        spin(h, 0.1)
    spin(h, 0.5)
    assert proc.poll() is None
    driving = [j for j in joys if j.axes[2] < 1.0]
    assert driving and all(len(j.axes) == 3 and j.axes[1] == 1.0 for j in driving)
    stop(proc)
    events = [json.loads(x) for x in (tmp_path / "infractions.jsonl").read_text().splitlines()]
    assert [e["details"]["other_actor_id"] for e in events if e.get("event") == "collision"] == [7]


def test_node_latency_bench_measures_the_node_against_an_echo_of_the_same_transport(models, cli_env):
    """The benchmark end to end (its own processes): the echo node and the steering node each answer every
    frame of the interleaved 20 Hz run, as the steering node's own counters confirm (every frame it was sent
    reached it and was answered, none dropped as stale); the node's onnxruntime session runs with the
    threads asked for, as the node reads them from its session. No timing threshold: a benchmark's job."""
    from metasteer.nodes.bench_latency import WARMUP_FRAMES
    from tests.conftest import METASTEER

    out = subprocess.run(METASTEER + ["bench", "node-latency", "--model", models["a"], "--frames", "20", "--threads", "2", "--json"], env=cli_env,
                         capture_output=True, text=True, timeout=300, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["transport"]["answered_fraction"] == 1.0 and r["answered_fraction"] == 1.0
    assert r["transport"]["frames"] == r["runs"][0]["frames"] == 20 and r["transport"]["rate_hz"] == r["runs"][0]["rate_hz"] == 20
    sent = WARMUP_FRAMES + 20
    assert r["node_at_20hz"] == {"frames": sent, "answered": sent, "stale": 0, "malformed": 0}
    assert r["node_inference_threads"] == 2  # the session's setting, not the argument echoed
    assert r["interface"] == "carla_msgs" and r["inference_p50_ms"] > 0 and r["inference_20hz_p50_ms"] > 0


def sim_time(t_s: float):
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(round(t_s * 1e9), 1_000_000_000)
    return Time(sec=int(sec), nanosec=int(nanosec))


def run_sim(h, t_s: float, wall_s: float, rate: float = 1.0, frames: bool = True) -> tuple[float, int]:
    """``wall_s`` of real time of a simulator from ``t_s``: /clock every 10 ms advancing at ``rate`` x real
    time and, if ``frames``, a camera frame per 0.05 s of simulation time stamped in it (as the bridge
    does). Returns the simulation time at the end and the frames sent."""
    from rosgraph_msgs.msg import Clock

    payload, start, next_frame, sent = frame(h).data, time.monotonic(), t_s, 0
    while (now := time.monotonic()) < start + wall_s:
        t = t_s + (now - start) * rate
        h.clock_pub.publish(Clock(clock=sim_time(t)))
        if frames and t >= next_frame:
            msg = frame(h, data=payload)
            msg.header.stamp = sim_time(t)
            h.image_pub.publish(msg)
            sent, next_frame = sent + 1, t + 0.05
        spin(h, 0.01)
    return t_s + wall_s * rate, sent


def is_brake(c: Command) -> bool:
    return c.brake == 1.0 and c.throttle == 0.0


@pytest.mark.parametrize("clock_does", ["runs_on", "jumps_back", "jumps_forward", "stops"])
def test_a_silent_camera_brakes_whatever_simulation_time_does(harness, steering_node, tmp_path, clock_does):
    """use_sim_time and a /clock like the bridge's: after driving on frames stamped in simulation time the
    camera goes silent while the clock runs on, jumps back (CARLA resets it on a world reload), jumps
    forward, or stops. The node brakes within camera_timeout_s + one watchdog period of the last frame (+ DDS: a
    generous 0.5 s), drives again on frames of the new time, logs the jump, and counts none of it as driving."""
    h = harness
    proc = steering_node(use_sim_time=True)
    wait_for_node(h, proc)
    t, sent = run_sim(h, 100.0, 1.5)
    assert [c for c in h.commands if not is_brake(c)], "no driving command on frames in simulation time"
    h.commands.clear()
    last_frame = time.monotonic()
    if clock_does == "stops":
        spin(h, 2.0)
    else:
        t, _ = run_sim(h, {"runs_on": t, "jumps_back": 1.0, "jumps_forward": 1000.0}[clock_does], 2.0, frames=False)
    braking = [c for c in h.commands if is_brake(c)]
    assert braking, f"no brake after the camera went silent and the clock {clock_does}"
    assert braking[0].received_s - last_frame <= 0.5 + 0.1 + 0.5
    h.commands.clear()
    run_sim(h, t, 1.5)
    assert [c for c in h.commands if not is_brake(c) and c.stamp[0] >= int(t)], "no driving on frames of the new time"
    reported = int({kv.key: kv.value for kv in h.diagnostics[-1].status[0].values}["clock_jumps"])
    stop(proc)
    lines = [json.loads(x) for x in (tmp_path / "infractions.jsonl").read_text().splitlines()]
    jumps = [x["details"]["delta_s"] for x in lines if x.get("event") == "clock_jump"]
    summary = lines[-1]
    assert summary["clock_jumps"] == reported == len(jumps)
    if clock_does in ("runs_on", "stops"):
        assert not jumps
    else:
        assert len(jumps) == 1 and (jumps[0] < -90.0 if clock_does == "jumps_back" else jumps[0] > 890.0)
    (driven,) = summary["per_model"].values()
    assert driven["time_s"] <= 3.0 + 0.05  # the 1.5 s of frames before and after; nothing of the jump or the silence


def test_a_simulator_slower_than_real_time_is_not_braked(harness, steering_node):
    """Simulation time at a quarter of real time, frames on time (one per 0.05 s of simulation time, so
    0.2 s of real time apart): the node drives on them, and no brake comes between them."""
    h = harness
    proc = steering_node(use_sim_time=True)
    wait_for_node(h, proc)
    t, _ = run_sim(h, 100.0, 1.0)
    h.commands.clear()
    _, sent = run_sim(h, t, 4.0, rate=0.25)
    spin(h, 0.3)
    assert sent >= 15 and h.commands and not [c for c in h.commands if is_brake(c)]


def test_stale_frames_do_not_hold_off_the_watchdog(harness, steering_node):
    """A camera that sends only stale frames (stamped before a forward jump of the clock, say) is driven
    on by nothing: the node brakes as for a silent camera."""
    h = harness
    proc = steering_node()
    wait_for_node(h, proc)
    for _ in range(10):
        h.image_pub.publish(frame(h))
        spin(h, 0.05)
    h.commands.clear()
    last_fresh = time.monotonic()
    stale = frame(h, stamp_s=0)
    while time.monotonic() < last_fresh + 1.5:
        h.image_pub.publish(stale)
        spin(h, 0.05)
    braking = [c for c in h.commands if is_brake(c)]
    assert braking and braking[0].received_s - last_fresh <= 0.5 + 0.1 + 0.5
