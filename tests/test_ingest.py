"""`metasteer ingest`: a rosbag2 recording the test writes itself (MCAP and SQLite3) -> dataset."""

import json
import subprocess

import numpy as np
import pytest

from tests.conftest import METASTEER
from training.data.dataset import DrivingDataset
from training.data.ingest import typestore

rosbag2 = pytest.importorskip("rosbags.rosbag2")


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
