"""`metasteer ingest`: rosbag2 recordings the tests write themselves -> dataset.

The "session" bags are shaped like ``ros2 bag record`` of a carla-ros-bridge session: MCAP with the
message definitions inside (``CarlaEgoVehicleStatus`` is known only from the bag), JPEG / PNG
``CompressedImage`` camera topics, stamps in sim time, recorder (log) times in wall time.
"""

import json
import subprocess

import cv2
import numpy as np
import pytest

from metasteer.preprocess import PreprocessSpec, camera_band
from tests.conftest import METASTEER
from training.data.dataset import DrivingDataset
from training.data.format import DatasetError
from training.data.ingest import IngestConfig, ingest, typestore

rosbag2 = pytest.importorskip("rosbags.rosbag2")
from rosbags.typesys import get_types_from_msg  # noqa: E402  (after the importorskip)

BASE = "/carla/ego_vehicle"
# carla_msgs/msg/CarlaEgoVehicleStatus as the ros-bridge defines it; the project ships no copy of it
STATUS_MSG = """std_msgs/Header header
float32 velocity
geometry_msgs/Accel acceleration
geometry_msgs/Quaternion orientation
CarlaEgoVehicleControl control
"""
WALL_NS = 1_764_000_000 * 10**9  # recorder times: wall clock
TICK_NS = 50_000_000  # 20 Hz sim time


def _write_bag(path, storage, frames=12):
    store = typestore()
    Image, Header, Time = store.types["sensor_msgs/msg/Image"], store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    Control = store.types["carla_msgs/msg/CarlaEgoVehicleControl"]
    Collision = store.types["carla_msgs/msg/CarlaCollisionEvent"]
    Vector3 = store.types["geometry_msgs/msg/Vector3"]
    rng = np.random.default_rng(0)
    with rosbag2.Writer(path, version=9, storage_plugin=storage) as writer:
        cam = writer.add_connection("/carla/ego_vehicle/rgb_front/image", Image.__msgtype__, typestore=store)
        ctl = writer.add_connection("/carla/ego_vehicle/vehicle_control_cmd", Control.__msgtype__, typestore=store)
        col = writer.add_connection("/carla/ego_vehicle/collision", Collision.__msgtype__, typestore=store)
        for k in range(frames):
            t = 100.0 + 0.5 * k  # 2 Hz: the bag spans 5.5 s, longer than the 2 s event window
            stamp = Time(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
            data = rng.integers(0, 255, size=600 * 800 * 4, dtype=np.uint8)
            encoding = "bgra8" if k != 3 else "mono16"  # one unsupported frame is skipped, not fatal
            img = Image(header=Header(stamp=stamp, frame_id="cam"), height=600, width=800, encoding=encoding, is_bigendian=0, step=3200, data=data)
            writer.write(cam, int(t * 1e9), store.serialize_cdr(img, Image.__msgtype__))
            if k < 9:  # the last three frames have no command after them: skipped
                c = Control(header=Header(stamp=stamp, frame_id="m"), throttle=0.5, steer=0.01 * k, brake=0.0, hand_brake=False,
                            reverse=False, gear=1, manual_gear_shift=False)
                writer.write(ctl, int(t * 1e9) + 1000, store.serialize_cdr(c, Control.__msgtype__))
        ev = Collision(header=Header(stamp=Time(sec=100, nanosec=500_000_000), frame_id=""), other_actor_id=5, normal_impulse=Vector3(x=1.0, y=0.0, z=0.0))
        writer.write(col, int(100.5e9), store.serialize_cdr(ev, Collision.__msgtype__))


@pytest.mark.parametrize("storage", ["MCAP", "SQLITE3"])
def test_ingest_a_recorded_bag(tmp_path, cli_env, storage):
    bag = tmp_path / "bag"
    _write_bag(bag, getattr(rosbag2.StoragePlugin, storage))
    out = subprocess.run(METASTEER + ["ingest", str(bag), "--out", str(tmp_path / "data"), "--json"], env=cli_env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frames"] == 8 and result["skipped"] == {"malformed_image": 1, "no_control": 3}
    ds = DrivingDataset(tmp_path / "data")
    assert ds.images(np.arange(8)).shape == (8, 66, 200, 3)
    assert np.allclose(ds.steer, [0.01 * k for k in range(9) if k != 3], atol=1e-6)
    # only frames within 2 s of the collision at 100.5 s (t = 100, 100.5, 101, 102, 102.5) are marked
    assert ds.abnormal.tolist() == [True, True, True, True, True, False, False, False]


def test_a_bag_without_the_topics_is_a_clear_error(tmp_path, cli_env):
    bag = tmp_path / "empty"
    with rosbag2.Writer(bag, version=9) as writer:
        writer.add_connection("/other", "std_msgs/msg/String", typestore=typestore())
    res = subprocess.run(METASTEER + ["ingest", str(bag), "--out", str(tmp_path / "d")], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and "needs /carla/ego_vehicle/rgb_front/image" in res.stderr


def _session_store():
    store = typestore()
    store.register(get_types_from_msg(STATUS_MSG, "carla_msgs/msg/CarlaEgoVehicleStatus"))
    return store


def _frame(k: int, rng) -> np.ndarray:
    """800x600 BGR: a uniform grey per frame (JPEG keeps it), noise in a corner (PNG keeps that too)."""
    img = np.full((600, 800, 3), 20 + 10 * k, np.uint8)
    img[500:, :100] = rng.integers(0, 255, size=(100, 100, 3), dtype=np.uint8)
    return img


def _record_session(path, episodes, camera="jpeg", label="status", seed=0):
    """A bridge session: ``episodes`` is a list of per-episode steer lists; episode e's tick k is stamped
    10 + k * 0.05 s (each episode restarts sim time: a world reload). ``label``: 'status' publishes
    ``vehicle_status`` (the control applied during the tick: the one chosen after the previous frame),
    'manual' the driver's ``vehicle_control_cmd_manual`` (the command answering the frame, same stamp)."""
    store, rng = _session_store(), np.random.default_rng(seed)
    T = store.types
    Header, Time, Control = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"], T["carla_msgs/msg/CarlaEgoVehicleControl"]
    V3 = T["geometry_msgs/msg/Vector3"]
    accel = T["geometry_msgs/msg/Accel"](linear=V3(x=0.0, y=0.0, z=0.0), angular=V3(x=0.0, y=0.0, z=0.0))
    quat = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    frames = []
    with rosbag2.Writer(path, version=9, storage_plugin=rosbag2.StoragePlugin.MCAP) as writer:
        cam_type = "sensor_msgs/msg/CompressedImage" if camera in ("jpeg", "png") else "sensor_msgs/msg/Image"
        cam = writer.add_connection(f"{BASE}/rgb_front/image" + ("/compressed" if camera != "raw" else ""), cam_type, typestore=store)
        lab_type = "carla_msgs/msg/CarlaEgoVehicleStatus" if label == "status" else "carla_msgs/msg/CarlaEgoVehicleControl"
        lab = writer.add_connection(f"{BASE}/vehicle_status" if label == "status" else f"{BASE}/vehicle_control_cmd_manual",
                                    lab_type, typestore=store)
        log = WALL_NS
        for steers in episodes:
            log += 5 * 10**9  # the reload takes wall time
            for k, steer in enumerate(steers):
                t = 10 * 10**9 + k * TICK_NS
                header = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="ego_vehicle")
                img = _frame(k, rng)
                frames.append(img)
                ok, buf = cv2.imencode(".jpg" if camera == "jpeg" else ".png", img)
                msg = T[cam_type](header=header, format=f"bgr8; {camera} compressed bgr8", data=buf.reshape(-1))
                applied = steers[k - 1] if k else -0.99  # status: the control applied during this tick
                ctl = Control(header=header, throttle=0.3, steer=applied if label == "status" else (steer or 0.0), brake=0.0,
                              hand_brake=False, reverse=False, gear=1, manual_gear_shift=False)
                if label == "status":
                    status = T[lab_type](header=header, velocity=5.0, acceleration=accel, orientation=quat, control=ctl)
                    # the bridge publishes status and frame of one tick together: status first, here
                    writer.write(lab, log + k * TICK_NS, store.serialize_cdr(status, lab_type))
                    writer.write(cam, log + k * TICK_NS + 1000, store.serialize_cdr(msg, cam_type))
                else:
                    if k == 0:  # a watchdog's brake, stamped like frame 0 but recorded before it: answers nothing
                        brake = Control(header=header, throttle=0.0, steer=0.77, brake=1.0, hand_brake=False, reverse=False,
                                        gear=1, manual_gear_shift=False)
                        writer.write(lab, log - 1000, store.serialize_cdr(brake, lab_type))
                    writer.write(cam, log + k * TICK_NS, store.serialize_cdr(msg, cam_type))
                    if steer is not None:  # None: the driver did not answer this frame
                        writer.write(lab, log + k * TICK_NS + 3_000_000, store.serialize_cdr(ctl, lab_type))
    return frames


def _cfg(label="status", camera="/compressed") -> IngestConfig:
    topic = f"{BASE}/vehicle_status" if label == "status" else f"{BASE}/vehicle_control_cmd_manual"
    return IngestConfig(camera_topic=f"{BASE}/rgb_front/image{camera}", control_topic=topic)


def test_autopilot_bag_jpeg_frames_labelled_by_the_next_vehicle_status(tmp_path):
    """The issue's two failing cases: a JPEG CompressedImage camera, and CarlaEgoVehicleStatus labels
    whose definition only the bag carries. Frame k gets the control chosen after it: status k + 1."""
    steers = [round(0.1 * k - 0.3, 2) for k in range(8)]
    _record_session(tmp_path / "bag", [steers], camera="jpeg", label="status")
    result = ingest(tmp_path / "bag", tmp_path / "data", _cfg("status"))
    assert result["frames"] == 7 and result["skipped"] == {"malformed_image": 0, "no_control": 1}  # the last has no next tick
    label = result["labels"][str(tmp_path / "bag")]
    assert label["field"] == "control.steer" and label["type"] == "carla_msgs/msg/CarlaEgoVehicleStatus"
    assert "strictly after" in label["pairing"]
    ds = DrivingDataset(tmp_path / "data")
    assert np.allclose(ds.steer, steers[:7], atol=1e-6)
    grey = ds.images(np.arange(7))[:, :10].reshape(7, -1).mean(axis=1)  # top rows of the band: the uniform grey
    assert np.allclose(grey, [20 + 10 * k for k in range(7)], atol=2)


def test_an_ingest_into_another_dataset_is_refused_and_leaves_it_whole(tmp_path, small_dataset):
    """--out naming a collected dataset: refused before a shard is written (it used to overwrite shard by shard)."""
    import shutil

    _record_session(tmp_path / "bag", [[0.1 * k for k in range(8)]], camera="jpeg", label="status")
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    def contents():
        return {p.name: p.read_bytes() for p in [*(data / "shards").iterdir(), data / "manifest.json"]}

    before = contents()
    with pytest.raises(DatasetError, match="different request"):
        ingest(tmp_path / "bag", data, _cfg("status"))
    assert contents() == before
    assert ingest(tmp_path / "bag", tmp_path / "again", _cfg("status"))["frames"] == ingest(tmp_path / "bag", tmp_path / "again", _cfg("status"))["frames"]  # the same ingest re-runs


def test_manual_control_bag_png_frames_are_exact(tmp_path):
    steers = [0.05 * k for k in range(6)]
    frames = _record_session(tmp_path / "bag", [steers], camera="png", label="manual")
    result = ingest(tmp_path / "bag", tmp_path / "data", _cfg("manual"))
    assert result["frames"] == 6 and result["labels"][str(tmp_path / "bag")]["field"] == "steer"
    ds = DrivingDataset(tmp_path / "data")
    assert np.allclose(ds.steer, steers, atol=1e-6)
    expect = np.stack([camera_band(f, "bgr8", PreprocessSpec()) for f in frames])
    assert np.array_equal(ds.images(np.arange(6)), expect)


def test_a_frame_gets_only_its_own_answer(tmp_path):
    """Not the brake recorded before it with its stamp, not the next frame's command when its own is missing."""
    steers = [0.1, 0.2, None, 0.4, 0.5]
    _record_session(tmp_path / "bag", [steers], camera="jpeg", label="manual")
    result = ingest(tmp_path / "bag", tmp_path / "data", _cfg("manual"))
    assert result["frames"] == 4 and result["skipped"]["no_control"] == 1
    ds = DrivingDataset(tmp_path / "data")
    assert np.allclose(ds.steer, [0.1, 0.2, 0.4, 0.5], atol=1e-6)
    assert np.allclose(ds.columns["time_s"], [10.0, 10.05, 10.15, 10.2])


def test_several_bags_and_a_world_reload_become_episodes(tmp_path):
    a, b1, b2 = [0.1, 0.2, 0.3, 0.4], [-0.1, -0.2, -0.3, -0.4, -0.5], [0.5, 0.6, 0.7]
    _record_session(tmp_path / "a", [a], label="status")
    _record_session(tmp_path / "b", [b1, b2], label="status")  # sim time restarts in the middle of bag b
    result = ingest([tmp_path / "a", tmp_path / "b"], tmp_path / "data", _cfg("status"))
    assert [(e["bag"][-1], e["part"], e["frames"]) for e in result["episodes"]] == [("a", 0, 3), ("b", 0, 4), ("b", 1, 2)]
    ds = DrivingDataset(tmp_path / "data")
    assert ds.columns["episode_seed"].tolist() == [0] * 3 + [1] * 4 + [2] * 2
    assert ds.columns["step"].tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1]
    assert np.allclose(ds.steer, a[:3] + b1[:4] + b2[:2], atol=1e-6)


def _bad_bag(path, case):
    store = _session_store()
    T = store.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=10, nanosec=0), frame_id="")
    cam_topic, lab_topic = f"{BASE}/rgb_front/image/compressed", f"{BASE}/vehicle_status"
    with rosbag2.Writer(path, version=9, storage_plugin=rosbag2.StoragePlugin.MCAP) as w:
        if case == "camera_type":
            w.add_connection(cam_topic, "std_msgs/msg/String", typestore=store)
            w.add_connection(lab_topic, "carla_msgs/msg/CarlaEgoVehicleStatus", typestore=store)
            return
        cam = w.add_connection(cam_topic, "sensor_msgs/msg/CompressedImage", typestore=store)
        ok, buf = cv2.imencode(".jpg", np.zeros((60, 80, 3), np.uint8))
        img = T["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=buf.reshape(-1))
        w.write(cam, WALL_NS, store.serialize_cdr(img, "sensor_msgs/msg/CompressedImage"))
        if case == "no_definition":  # an old recorder: no definition stored, a type metasteer does not know
            w.add_connection(lab_topic, "carla_msgs/msg/CarlaEgoVehicleStatus", msgdef="", rihs01="RIHS01_00")
        elif case == "no_steer":
            lab = w.add_connection(lab_topic, "geometry_msgs/msg/PoseStamped", typestore=store)
            P = T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0)
            pose = T["geometry_msgs/msg/PoseStamped"](header=header, pose=T["geometry_msgs/msg/Pose"](
                position=P, orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
            w.write(lab, WALL_NS + 1, store.serialize_cdr(pose, "geometry_msgs/msg/PoseStamped"))
        elif case == "truncated":
            lab = w.add_connection(lab_topic, "carla_msgs/msg/CarlaEgoVehicleStatus", typestore=store)
            w.write(lab, WALL_NS + 1, b"\x00\x01\x00\x00\x0a\x00")


@pytest.mark.parametrize("case, expect", [
    ("camera_type", f"camera topic {BASE}/rgb_front/image/compressed has type std_msgs/msg/String"),
    ("no_definition", f"topic {BASE}/vehicle_status has type carla_msgs/msg/CarlaEgoVehicleStatus, whose definition"),
    ("no_steer", f"label topic {BASE}/vehicle_status (geometry_msgs/msg/PoseStamped) has no steer field"),
    ("truncated", f"topic {BASE}/vehicle_status (carla_msgs/msg/CarlaEgoVehicleStatus): cannot decode"),
])
def test_an_unreadable_recording_names_the_topic_and_type(tmp_path, case, expect):
    _bad_bag(tmp_path / "bag", case)
    with pytest.raises(DatasetError) as err:
        ingest(tmp_path / "bag", tmp_path / "data", _cfg("status"))
    assert expect in str(err.value)
