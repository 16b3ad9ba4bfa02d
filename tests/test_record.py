"""`metasteer drive --record`: the run as a rosbag2 MCAP, read back independently (rosbags) and by `ingest`.

Real processes: the embedded bridge, the steering node (the shipped model) and the recorder on a
private loopback domain; the bag is checked against what the bridge says it published.
"""

import json
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
rosbag2 = pytest.importorskip("rosbags.rosbag2")

from metasteer.preprocess import PreprocessSpec, camera_band  # noqa: E402
from training.data.bag_reader import messages, topic_types  # noqa: E402
from training.data.dataset import DrivingDataset  # noqa: E402
from training.data.ingest import ingest  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "models" / "learned.onnx"
BASE = "/carla/ego_vehicle"
WIDTH, HEIGHT = 400, 300  # a smaller camera keeps the bag small; the band is cut the same way


def _types(interface: str) -> dict[str, str]:
    carla = interface == "carla_msgs"
    return {"/clock": "rosgraph_msgs/msg/Clock", f"{BASE}/rgb_front/image": "sensor_msgs/msg/Image",
            f"{BASE}/vehicle_control_cmd": "carla_msgs/msg/CarlaEgoVehicleControl" if carla else "sensor_msgs/msg/Joy",
            f"{BASE}/speedometer": "std_msgs/msg/Float32",
            f"{BASE}/collision": "carla_msgs/msg/CarlaCollisionEvent" if carla else "std_msgs/msg/String",
            f"{BASE}/lane_invasion": "carla_msgs/msg/CarlaLaneInvasionEvent" if carla else "std_msgs/msg/String",
            "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}


@pytest.fixture(scope="module", params=["carla_msgs", "fallback"])
def recorded(request, tmp_path_factory):
    from training.drive import DriveConfig, drive

    out = tmp_path_factory.mktemp(f"record-{request.param}")
    cfg = DriveConfig(seed=3, max_time_s=2.0, interface=request.param, camera_width=WIDTH, camera_height=HEIGHT,
                      record=str(out / "bag"))
    result = drive(MODEL, cfg, log_dir=out / "logs")
    return request.param, out, result


def test_the_bag_holds_every_published_message_with_its_type_and_sim_time_stamp(recorded):
    interface, out, result = recorded
    bag = out / "bag"
    assert topic_types(bag) == _types(interface)
    with rosbag2.Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert all(c.msgdef.data for c in reader.connections)  # definitions inside: Foxglove / ros2 bag play read it
    assert next(bag.glob("*.mcap")).read_bytes()[:8] == b"\x89MCAP0\r\n"  # the MCAP magic
    published = result["published"]
    for topic in ("/clock", f"{BASE}/rgb_front/image", f"{BASE}/speedometer", f"{BASE}/collision", f"{BASE}/lane_invasion"):
        assert counts[topic] == published.get(topic, 0), topic
    assert counts[f"{BASE}/vehicle_control_cmd"] >= sum(result["controls_by_model"].values())
    got = {t: [] for t in ("/clock", f"{BASE}/rgb_front/image")}
    for topic, m in messages(bag, set(got)):
        got[topic].append(m.msg.clock.sec * 10**9 + m.msg.clock.nanosec if topic == "/clock" else m.stamp_ns)
    n = published["/clock"]
    assert got["/clock"] == got[f"{BASE}/rgb_front/image"] == [k * 50_000_000 for k in range(n)]  # sim time, 20 Hz


def test_ingest_reads_the_recording_back(recorded, tmp_path):
    interface, out, result = recorded
    bag, control = out / "bag", f"{BASE}/vehicle_control_cmd"
    frames = result["published"][f"{BASE}/rgb_front/image"]
    got = ingest(bag, tmp_path / "data")
    assert got["frames"] + got["skipped"]["no_control"] == frames and got["skipped"]["malformed_image"] == 0
    assert got["labels"][str(bag)]["field"] == ("steer" if interface == "carla_msgs" else "axes[1]")
    ds = DrivingDataset(tmp_path / "data")
    # the steer of each frame is the node's answer to it: the command stamped with the frame's stamp
    answers: dict[int, float] = {}
    bands: dict[int, np.ndarray] = {}
    for topic, m in messages(bag, {control, f"{BASE}/rgb_front/image"}):
        if topic != control:
            img = np.frombuffer(m.msg.data, np.uint8).reshape(m.msg.height, m.msg.width, 4)
            bands[m.stamp_ns] = camera_band(img, m.msg.encoding, PreprocessSpec())
        elif m.stamp_ns in bands:  # recorded after its frame
            answers.setdefault(m.stamp_ns, float(m.msg.steer if interface == "carla_msgs" else m.msg.axes[1]))
    stamps = np.round(ds.columns["time_s"] * 1e9).astype(np.int64)
    assert stamps.tolist() == sorted(answers)  # exactly the answered frames (an unanswered one borrows no label)
    assert np.allclose(ds.steer, [answers[t] for t in stamps], atol=1e-6)
    assert len(set(np.round(ds.steer, 6))) > 3  # the model's steering, not a constant
    assert np.array_equal(ds.images(np.arange(len(ds))), np.stack([bands[t] for t in stamps]))


def test_the_first_recorded_frame_is_the_worlds_first_frame(recorded):
    """The pixels in the bag are the ones the bridge rendered (the world is deterministic per seed)."""
    from simulator.base import CameraSpec
    from simulator.embedded import embedded_world

    _, out, _ = recorded
    world = embedded_world(0.1, CameraSpec(image_size_x=WIDTH, image_size_y=HEIGHT), target_speed_mps=8.0, max_time_s=2.0)
    _, first = next(messages(out / "bag", {f"{BASE}/rgb_front/image"}))
    assert (first.msg.encoding, first.msg.width, first.msg.height) == ("bgra8", WIDTH, HEIGHT)
    assert np.array_equal(np.frombuffer(first.msg.data, np.uint8), world.reset(3).image.reshape(-1))


def test_the_foxglove_layout_shows_recorded_topics(recorded):
    _, out, _ = recorded
    cfg = json.loads((Path(__file__).resolve().parents[1] / "config" / "foxglove_drive.json").read_text())["configById"]
    shown = {cfg["Image!camera"]["imageMode"]["imageTopic"], cfg["DiagnosticSummary!node"]["topicToRender"],
             *(c["topicPath"] for k, c in cfg.items() if k.startswith("RawMessages")),
             *(p["value"].split(".")[0] for k, c in cfg.items() if k.startswith("Plot") for p in c["paths"])}
    assert shown <= set(topic_types(out / "bag"))
