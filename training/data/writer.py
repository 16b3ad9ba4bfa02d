"""Writing the dataset format (see ``format``): one shard at a time, then the manifest."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.base import SCENE_CATEGORIES, SceneFeatures
from simulator.encounters import RARE_CATEGORIES, count_events
from training.data.format import (
    COLOUR_ORDER,
    FORMAT_NAME,
    FORMAT_VERSION,
    read_json,
    sha256_file,
    shard_name,
    shard_paths,
)
from training.files import atomic_write_bytes, atomic_write_json, write_json_if_changed


def write_shard(root: Path, shard: int, images: np.ndarray, table: pa.Table, event_gap_frames: int) -> dict:
    """Write frames and labels atomically, then the shard's commit marker; returns the marker.

    The marker counts frames per category and *events* (rare-scene encounters, see
    ``simulator.encounters``; frames closer than ``event_gap_frames`` are one event).
    """
    paths = shard_paths(root, shard)
    paths["images"].parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, images, allow_pickle=False)
    atomic_write_bytes(paths["images"], buf.getvalue())
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(paths["labels"], buf.getvalue())
    cats, counts = np.unique(table["category"].to_numpy(zero_copy_only=False), return_counts=True)
    events = count_events(table["category"].to_pylist(), table["episode_seed"].to_pylist(), event_gap_frames)
    marker = {"name": shard_name(shard), "frames": int(len(images)), "images_sha256": sha256_file(paths["images"]),
              "labels_sha256": sha256_file(paths["labels"]), "counts": {str(c): int(n) for c, n in zip(cats, counts)},
              "events": events}
    atomic_write_json(paths["marker"], marker)
    return marker


def finish_manifest(out: Path, n_shards: int, **fields) -> dict:
    """The manifest over shards 0..n_shards-1 (all committed); ``fields``: world, seed, config, camera."""
    markers = [read_json(shard_paths(out, k)["marker"]) for k in range(n_shards)]
    counts = {c: sum(m["counts"].get(c, 0) for m in markers) for c in SCENE_CATEGORIES}
    events = {c: sum(m.get("events", {}).get(c, 0) for m in markers) for c in RARE_CATEGORIES}
    frames = sum(m["frames"] for m in markers)
    images = np.load(shard_paths(out, 0)["images"], mmap_mode="r")
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, **fields,
        "image_shape": list(images.shape[1:]), "colour_order": COLOUR_ORDER, "frames": frames, "counts": counts, "events": events,
        "abnormal_share": 1.0 - counts["normal"] / max(frames, 1),
        "label": {"name": "steer", "range": [-1, 1], "meaning": "CARLA steer, +1 = full right, expert command"},
        "features": SceneFeatures.names(), "shards": markers,
    }
    write_json_if_changed(out / "manifest.json", manifest)
    return manifest
