"""``metasteer ingest BAG --out DIR``: a rosbag2 recording (MCAP or SQLite3) of the bridge's camera
and control topics -> the dataset format, so recorded driving can be trained on.

Each camera frame is labelled with the first control command at or after its stamp (within
``max_gap_s``); frames without one are skipped and counted. Collision and lane-invasion events
within ``event_window_s`` mark a frame ``abnormal`` (category ``obstacle``), the only scene
information a recording has; the other scene features are not in a bag and are stored as 0.
carla_msgs types are read with the definitions in ``metasteer/msg`` (the bridge's fields).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from metasteer.image_msg import image_array
from metasteer.preprocess import ImageError, PreprocessSpec, camera_band
from simulator.base import SceneFeatures
from training.data.format import DatasetError
from training.data.writer import finish_manifest, write_shard

MSG_DIR = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "carla_msgs" / "msg"


@dataclass(frozen=True)
class IngestConfig:
    camera_topic: str = field(default="/carla/ego_vehicle/rgb_front/image", metadata={"help": "sensor_msgs/Image topic"})
    control_topic: str = field(default="/carla/ego_vehicle/vehicle_control_cmd", metadata={"help": "control topic (its steer is the label)"})
    collision_topic: str = field(default="/carla/ego_vehicle/collision", metadata={"help": "collision event topic"})
    lane_invasion_topic: str = field(default="/carla/ego_vehicle/lane_invasion", metadata={"help": "lane invasion event topic"})
    max_gap_s: float = field(default=0.2, metadata={"range": (0.0, None), "help": "a frame with no control message within this many seconds is dropped"})
    event_window_s: float = field(default=2.0, metadata={"range": (0.0, None), "help": "frames this close (s) before or after an infraction are marked abnormal"})
    frames_per_shard: int = field(default=2000, metadata={"range": (1, None), "help": "frames per dataset shard"})


def typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for path in sorted(MSG_DIR.glob("*.msg")):
        store.register(get_types_from_msg(path.read_text(), f"carla_msgs/msg/{path.stem}"))
    return store


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def ingest(bag: Path, out: Path, cfg: IngestConfig = IngestConfig(), spec: PreprocessSpec = PreprocessSpec()) -> dict:
    from rosbags.rosbag2 import Reader

    store = typestore()
    frames, controls, events = [], [], []
    skipped = {"malformed_image": 0, "no_control": 0}
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for a missing or broken bag
        raise DatasetError(f"{bag}: not a readable rosbag2 recording ({exc})") from None
    try:
        wanted = {cfg.camera_topic, cfg.control_topic, cfg.collision_topic, cfg.lane_invasion_topic}
        conns = [c for c in reader.connections if c.topic in wanted]
        if not any(c.topic == cfg.camera_topic for c in conns) or not any(c.topic == cfg.control_topic for c in conns):
            raise DatasetError(f"{bag}: needs {cfg.camera_topic} and {cfg.control_topic}; it has {sorted({c.topic for c in reader.connections})}")
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == cfg.camera_topic:
                try:
                    img = image_array(msg.encoding, msg.height, msg.width, msg.step, msg.data)
                    frames.append((_stamp(msg), np.ascontiguousarray(camera_band(img, msg.encoding, spec))))
                except ImageError:
                    skipped["malformed_image"] += 1
            elif conn.topic == cfg.control_topic:
                steer = msg.steer if hasattr(msg, "steer") else msg.axes[1]
                controls.append((_stamp(msg), float(np.clip(steer, -1, 1)),
                                 float(getattr(msg, "throttle", msg.axes[0] if hasattr(msg, "axes") else 0.0))))
            else:
                events.append(_stamp(msg))
    finally:
        reader.close()
    controls.sort()
    events.sort()
    control_t = [c[0] for c in controls]
    rows: dict[str, list] = {k: [] for k in ("episode_seed", "step", "time_s", "steer", "steer_executed", "throttle", "brake",
                                                "route_completion", "category", *SceneFeatures.names())}
    images = []
    for step, (t, band) in enumerate(sorted(frames, key=lambda f: f[0])):
        i = bisect.bisect_left(control_t, t)
        if i == len(controls) or controls[i][0] - t > cfg.max_gap_s:
            skipped["no_control"] += 1
            continue
        j = bisect.bisect_left(events, t - cfg.event_window_s)
        abnormal = j < len(events) and events[j] <= t + cfg.event_window_s
        _, steer, throttle = controls[i]
        f = SceneFeatures(abnormal=float(abnormal))
        values = {"episode_seed": 0, "step": step, "time_s": t, "steer": steer, "steer_executed": steer, "throttle": throttle,
                  "brake": 0.0, "route_completion": 0.0, "category": "obstacle" if abnormal else "normal", **vars(f)}
        for k, v in values.items():
            rows[k].append(v)
        images.append(band)
    if not images:
        raise DatasetError(f"{bag}: no camera frame with a control command within {cfg.max_gap_s} s ({skipped})")
    out.mkdir(parents=True, exist_ok=True)
    n = len(images)
    shards = range(0, n, cfg.frames_per_shard)
    frame_dt_s = float(np.median(np.diff(rows["time_s"]))) if n > 1 else 1.0
    gap = max(1, round(1.0 / max(frame_dt_s, 1e-3)))  # frames in one second: closer encounters are one event
    for k, start in enumerate(shards):
        sl = slice(start, start + cfg.frames_per_shard)
        table = pa.table({key: pa.array(v[sl], type=pa.string() if key == "category" else None) for key, v in rows.items()})
        write_shard(out, k, np.stack(images[sl]), table, gap)
    manifest = finish_manifest(out, len(shards), world="rosbag", seed=None,
                               config={"bag": str(bag), "ingest": vars(cfg)}, camera={"preprocess": spec.to_json()})
    return {"out": str(out), "frames": manifest["frames"], "skipped": skipped, "events": len(events), "counts": manifest["counts"]}
