"""``metasteer ingest BAG [BAG ...] --out DIR``: rosbag2 recordings (MCAP or SQLite3) of a camera and a
control source -> one dataset, so recorded driving can be trained on.

- Camera: ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (JPEG / PNG; ``bag_camera``).
- Label: a command topic, ``vehicle_status`` (the CARLA autopilot) or any message with a steer field;
  which field and which frame a label belongs to are in ``bag_labels`` (and in the manifest).
- Episodes: each bag is one episode, split again wherever its camera's sim time jumps back (a world
  reload); label messages follow the camera episode they were recorded in. ``episode_seed`` is the
  episode's index over all bags, ``step`` the frame's index in it, ``time_s`` its stamp.
- Frames without a label within ``max_gap_s`` are skipped and counted. Collision and lane-invasion
  events within ``event_window_s`` mark a frame ``abnormal`` (category ``obstacle``), the only scene
  information a recording has; the other scene features are not in a bag and are stored as 0.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from metasteer.preprocess import ImageError, PreprocessSpec
from simulator.base import SceneFeatures
from training.data.bag_camera import CAMERA_TYPES, band
from training.data.bag_labels import LabelSource, label_source, read_path, sibling
from training.data.bag_reader import BagMessage, default_typestore, messages, topic_types
from training.data.format import DatasetError
from training.data.writer import finish_manifest, write_shard
from training.files import claim_request

typestore = default_typestore  # the types a bag without embedded definitions is read with


@dataclass(frozen=True)
class IngestConfig:
    camera_topic: str = field(default="/carla/ego_vehicle/rgb_front/image",
                              metadata={"help": "camera topic: sensor_msgs/Image or CompressedImage (e.g. .../image/compressed)"})
    control_topic: str = field(default="/carla/ego_vehicle/vehicle_control_cmd",
                               metadata={"help": "label topic: vehicle_control_cmd(_manual), vehicle_status (autopilot), "
                                                 "or any message with a steer field"})
    label_field: str = field(default="auto", metadata={"help": "path of the steer in the label message, e.g. control.steer; "
                                                               "auto: steer, <field>.steer or (Joy) axes[1]"})
    collision_topic: str = field(default="/carla/ego_vehicle/collision", metadata={"help": "collision event topic"})
    lane_invasion_topic: str = field(default="/carla/ego_vehicle/lane_invasion", metadata={"help": "lane invasion event topic"})
    max_gap_s: float = field(default=0.2, metadata={"range": (1e-3, None), "help": "a frame with no label message within this many seconds is dropped"})
    event_window_s: float = field(default=2.0, metadata={"range": (0.0, None), "help": "frames this close (s) before or after an infraction are marked abnormal"})
    frames_per_shard: int = field(default=2000, metadata={"range": (1, None), "help": "frames per dataset shard"})


@dataclass
class Episode:
    bag: Path
    frames: list[BagMessage] = field(default_factory=list)  # msg: the frame's road band
    labels: list[BagMessage] = field(default_factory=list)
    events: list[BagMessage] = field(default_factory=list)


def _segments(msgs: list[BagMessage]) -> list[list[BagMessage]]:
    """Runs of messages whose stamps never go back (a new run at every jump back in sim time)."""
    runs: list[list[BagMessage]] = []
    for m in msgs:
        if not runs or m.stamp_ns < runs[-1][-1].stamp_ns:
            runs.append([])
        runs[-1].append(m)
    return runs


def _check_topics(bag: Path, cfg: IngestConfig) -> dict[str, str]:
    types = topic_types(bag)
    for topic in (cfg.camera_topic, cfg.control_topic):
        if topic not in types:
            cams = {t: ty for t, ty in types.items() if ty in CAMERA_TYPES}
            raise DatasetError(f"{bag}: needs {cfg.camera_topic} and {cfg.control_topic}; it has no {topic} "
                               f"(its camera topics: {cams or 'none'}; all topics: {sorted(types)})")
    if types[cfg.camera_topic] not in CAMERA_TYPES:
        raise DatasetError(f"{bag}: camera topic {cfg.camera_topic} has type {types[cfg.camera_topic]}; "
                           f"expected one of {CAMERA_TYPES}")
    return types


def read_bag(bag: Path, cfg: IngestConfig, spec: PreprocessSpec, skipped: dict) -> tuple[list[Episode], LabelSource]:
    """One bag -> its episodes (frames as road bands) and the label source it was read with."""
    types = _check_topics(bag, cfg)
    events_topics = {cfg.collision_topic, cfg.lane_invasion_topic}
    frames, labels, events = [], [], []
    first_error = ""
    for topic, m in messages(bag, {cfg.camera_topic, cfg.control_topic} | events_topics):
        if topic == cfg.camera_topic:
            try:
                frames.append(BagMessage(m.log_ns, m.seq, m.stamp_ns, band(types[topic], m.msg, spec)))
            except ImageError as exc:
                skipped["malformed_image"] += 1
                first_error = first_error or str(exc)
        elif topic == cfg.control_topic:
            labels.append(m)
        else:
            events.append(m)
    if not frames:
        raise DatasetError(f"{bag}: no usable frame on {cfg.camera_topic} ({types[cfg.camera_topic]}): "
                           f"{first_error or 'the topic has no messages'}")
    if not labels:
        raise DatasetError(f"{bag}: no message on label topic {cfg.control_topic} ({types[cfg.control_topic]})")
    source = label_source(bag, cfg.control_topic, types[cfg.control_topic], labels[0].msg, cfg.label_field)
    episodes = [Episode(bag, frames=run) for run in _segments(frames)]
    starts = [e.frames[0].log_ns for e in episodes[1:]]  # recording time each later episode began

    def episode_at(log_ns: int) -> Episode:
        return episodes[bisect.bisect_right(starts, log_ns)]

    for run in _segments(labels):  # a run is placed by its middle message: its first may precede its first frame
        episode_at(run[len(run) // 2].log_ns).labels.extend(run)
    for m in events:
        episode_at(m.log_ns).events.append(m)
    return episodes, source


def label_frames(ep: Episode, source: LabelSource, cfg: IngestConfig, skipped: dict) -> list[dict]:
    """Per frame of ``ep`` that has a label: its stamp, band, steer, throttle, brake and abnormal flag."""
    labels = sorted(ep.labels, key=lambda m: (m.stamp_ns, m.seq))
    label_t = [m.stamp_ns for m in labels]
    event_t = sorted(m.stamp_ns for m in ep.events)
    max_gap_ns, window_ns = round(cfg.max_gap_s * 1e9), round(cfg.event_window_s * 1e9)
    rows = []
    frames = sorted(ep.frames, key=lambda m: m.stamp_ns)
    for k, f in enumerate(frames):
        i = (bisect.bisect_right if source.after_frame else bisect.bisect_left)(label_t, f.stamp_ns)
        while i < len(labels) and labels[i].seq < f.seq:  # recorded before the frame: not an answer to it
            i += 1
        # a command stamped at the next frame answers that one (a status: one tick later, so it may reach it)
        end_ns = frames[k + 1].stamp_ns if k + 1 < len(frames) else f.stamp_ns + max_gap_ns
        if i == len(labels) or label_t[i] - f.stamp_ns > max_gap_ns or label_t[i] > end_ns or (
                label_t[i] == end_ns and not source.after_frame):
            skipped["no_control"] += 1
            continue
        j = bisect.bisect_left(event_t, f.stamp_ns - window_ns)
        msg = labels[i].msg
        rows.append({"stamp_ns": f.stamp_ns, "band": f.msg, "steer": float(np.clip(read_path(msg, source.field), -1, 1)),
                     "throttle": sibling(msg, source.field, "throttle"), "brake": sibling(msg, source.field, "brake"),
                     "abnormal": j < len(event_t) and event_t[j] <= f.stamp_ns + window_ns})
    return rows


def _columns(episodes: list[list[dict]]) -> tuple[dict[str, list], list[np.ndarray]]:
    cols: dict[str, list] = {k: [] for k in ("episode_seed", "step", "time_s", "steer", "steer_executed", "throttle", "brake",
                                             "route_completion", "category", *SceneFeatures.names())}
    images = []
    for index, rows in enumerate(episodes):
        for step, r in enumerate(rows):
            values = {"episode_seed": index, "step": step, "time_s": r["stamp_ns"] * 1e-9, "steer": r["steer"],
                      "steer_executed": r["steer"], "throttle": r["throttle"], "brake": r["brake"], "route_completion": 0.0,
                      "category": "obstacle" if r["abnormal"] else "normal", **vars(SceneFeatures(abnormal=float(r["abnormal"])))}
            for k, v in values.items():
                cols[k].append(v)
            images.append(r["band"])
    return cols, images


def ingest(bags: Path | list[Path], out: Path, cfg: IngestConfig = IngestConfig(),
           spec: PreprocessSpec = PreprocessSpec()) -> dict:
    bags = [Path(bags)] if isinstance(bags, (str, Path)) else [Path(b) for b in bags]
    skipped = {"malformed_image": 0, "no_control": 0}
    labelled, summary, sources, n_events = [], [], {}, 0
    for bag in bags:
        episodes, source = read_bag(bag, cfg, spec, skipped)
        sources[str(bag)] = source.describe()
        for k, ep in enumerate(episodes):
            rows = label_frames(ep, source, cfg, skipped)
            n_events += len(ep.events)
            summary.append({"bag": str(bag), "part": k, "frames": len(rows), "start_s": ep.frames[0].stamp_ns * 1e-9,
                            "end_s": ep.frames[-1].stamp_ns * 1e-9})
            if rows:
                labelled.append(rows)
    if not labelled:
        raise DatasetError(f"{', '.join(map(str, bags))}: no camera frame with a label within {cfg.max_gap_s} s ({skipped})")
    cols, images = _columns(labelled)
    # another dataset there (a collection, another ingest) is refused, not overwritten shard by shard
    claim_request(out, {"ingest": vars(cfg), "bags": [str(b) for b in bags], "preprocess": spec.to_json()}, "dataset", DatasetError)
    n = len(images)
    shards = range(0, n, cfg.frames_per_shard)
    frame_dt_s = float(np.median(np.diff(cols["time_s"]))) if n > 1 else 1.0
    gap = max(1, round(1.0 / max(frame_dt_s, 1e-3)))  # frames in one second: closer encounters are one event
    for k, start in enumerate(shards):
        sl = slice(start, start + cfg.frames_per_shard)
        table = pa.table({key: pa.array(v[sl], type=pa.string() if key == "category" else None) for key, v in cols.items()})
        write_shard(out, k, np.stack(images[sl]), table, gap)
    manifest = finish_manifest(out, len(shards), world="rosbag", seed=None,
                               config={"bags": [str(b) for b in bags], "ingest": vars(cfg), "labels": sources,
                                       "episodes": summary},
                               camera={"preprocess": spec.to_json()})
    return {"out": str(out), "frames": manifest["frames"], "episodes": summary, "labels": sources, "skipped": skipped,
            "events": n_events, "counts": manifest["counts"]}
