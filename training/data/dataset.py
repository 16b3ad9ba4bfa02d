"""Open a recorded dataset: verified shards, memory-mapped frames, labels and features as arrays."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.data.format import FORMAT_NAME, FORMAT_VERSION, DatasetError, read_json, sha256_file, shard_paths


@dataclass
class Shard:
    images: np.ndarray  # (N, H, W, 3) uint8 BGR, memory-mapped
    labels: pa.Table


REQUIRED_COLUMNS = ("episode_seed", "time_s", "steer", "category", "abnormal")  # what training and judging read by name
_MAPPED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # (device, inode, mtime, size) -> live mapping


def _mapped(path: Path) -> np.ndarray:
    """One read-only mapping per version of a file while anything uses it: a dataset opened again (every DAgger
    round, trial and stage does) reuses it, so its pages count once in RSS; unmapped when its last user lets go."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    images = _MAPPED.get(key)
    if images is None:
        images = _MAPPED[key] = np.load(path, mmap_mode="r", allow_pickle=False)
    return images


def _check_manifest(manifest, path: Path) -> dict:
    """The manifest's structure, before anything reads it: a valid JSON file of the wrong shape (hand-edited, another
    tool's) is named with what is missing instead of failing later with a KeyError deep in training."""
    def bad(what: str):
        return DatasetError(f"{path}: {what}; not a {FORMAT_NAME} v{FORMAT_VERSION} manifest")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise bad("wrong format or version")
    shape = manifest.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape) and shape[2] == 3):
        raise bad(f"image_shape {shape!r} is not [height, width, 3]")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise bad("no shards listed")
    for k, m in enumerate(shards):
        missing = [key for key in ("frames", "images_sha256", "labels_sha256") if not isinstance(m, dict) or key not in m]
        if missing or not isinstance(m["frames"], int) or m["frames"] < 1:
            raise bad(f"shard {k} lacks {missing or 'a positive frame count'}")
    if not isinstance(manifest.get("features"), list):
        raise bad("no feature list")
    # the totals reports and the abnormal share read must be the shards' (a hand-edited total would mislead silently)
    totals = {"frames": sum(m["frames"] for m in shards)}
    if all(isinstance(m.get("counts"), dict) for m in shards):
        totals["counts"] = {c: sum(m["counts"].get(c, 0) for m in shards) for c in manifest.get("counts", {})}
    for key, total in totals.items():
        if key in manifest and manifest[key] != total:
            raise bad(f"its {key} {manifest[key]!r} are not its shards' total {total!r}")
    return manifest


def _open_shard(root: Path, index: int, expected: dict, shape: list[int], verify: bool) -> Shard:
    paths = shard_paths(root, index)
    for kind in ("images", "labels"):
        path = paths[kind]
        if not path.exists():
            raise DatasetError(f"{path}: missing {kind} shard listed in the manifest")
        if verify and sha256_file(path) != expected[f"{kind}_sha256"]:
            raise DatasetError(f"{path}: checksum mismatch (corrupt or modified {kind} shard)")
    try:
        images = _mapped(paths["images"])
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{paths['images']}: truncated or corrupt image shard ({exc})") from None
    try:
        labels = pq.read_table(paths["labels"])
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{paths['labels']}: truncated or corrupt label shard ({exc})") from None
    if (images.ndim != 4 or images.dtype != np.uint8 or list(images.shape[1:]) != shape or len(images) != expected["frames"]
            or labels.num_rows != expected["frames"]):
        raise DatasetError(f"{paths['images']}: holds {images.shape} {images.dtype} and {labels.num_rows} label rows; "
                           f"the manifest says {expected['frames']} uint8 frames of {shape}")
    return Shard(images, labels)


class DrivingDataset:
    """Frames and labels of a dataset directory (see ``training.data.format``).

    ``verify=True`` checks every shard's SHA-256 against the manifest before use, so a corrupt file
    is reported by name instead of being trained on.
    """

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        if not (self.root / "manifest.json").exists():
            hint = " (collection unfinished: run the same collect command to resume)" if (self.root / "request.json").exists() else ""
            raise DatasetError(f"{self.root / 'manifest.json'}: missing; not a complete metasteer dataset{hint}")
        self.manifest = _check_manifest(read_json(self.root / "manifest.json"), self.root / "manifest.json")
        self.shards = [_open_shard(self.root, k, m, self.manifest["image_shape"], verify) for k, m in enumerate(self.manifest["shards"])]
        self._offsets = np.cumsum([0] + [len(s.images) for s in self.shards])
        # columns every shard holds: shards of a collection resumed by a newer version may hold more
        names = [n for n in self.shards[0].labels.column_names if all(n in s.labels.column_names for s in self.shards)]
        missing = [n for n in REQUIRED_COLUMNS if n not in names]
        if missing:
            raise DatasetError(f"{self.root / 'shards'}: label columns {missing} missing from a shard (every dataset has {list(REQUIRED_COLUMNS)})")
        unlisted = [n for n in self.manifest["features"] if n not in names]
        if unlisted:
            raise DatasetError(f"{self.root / 'manifest.json'}: lists features {unlisted} that no shard holds")
        self.columns = {name: np.concatenate([s.labels[name].to_numpy(zero_copy_only=False) for s in self.shards]) for name in names}

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def steer(self) -> np.ndarray:
        return self.columns["steer"].astype(np.float32)

    @property
    def abnormal(self) -> np.ndarray:
        return self.columns["abnormal"].astype(bool)

    def features(self, names: list[str] | None = None) -> np.ndarray:
        """(N, F) float32 scene features, in manifest order unless ``names`` picks some."""
        names = names or self.manifest["features"]
        return np.stack([self.columns[n] for n in names], axis=1).astype(np.float32)

    def images(self, index: np.ndarray | list[int]) -> np.ndarray:
        """(len(index), H, W, 3) uint8 BGR frames, gathered shard by shard."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"frame index out of range [0, {len(self)})")
        shard = np.searchsorted(self._offsets, index, side="right") - 1
        out = np.empty((len(index),) + tuple(self.manifest["image_shape"]), dtype=np.uint8)
        for k in np.unique(shard):
            sel = shard == k
            out[sel] = self.shards[k].images[index[sel] - self._offsets[k]]
        return out
