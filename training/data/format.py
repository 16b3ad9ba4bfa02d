"""The on-disk dataset format, built for training throughput and for surviving a killed run.

::

    DIR/
      request.json            what was asked (world, seed, config): a resume must ask the same
      manifest.json           written last: counts, checksums, units; its presence = complete
      shards/
        shard-00000.npy       uint8 (N, H, W, 3) BGR frames, memory-mappable (np.load(mmap_mode="r"))
        shard-00000.parquet   one row per frame: label, executed control, scene features, category
        shard-00000.json      commit marker, written after both files: frame count and SHA-256s

A shard is complete exactly when its marker exists; files are written to a temporary name and
renamed, so a kill leaves at most an unfinished temporary that a resume overwrites. Shard ``k``
is drawn from ``(seed, k)`` alone, so it is the same whether written in one run or after a resume.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from training import files

FORMAT_NAME = "metasteer-dataset"
FORMAT_VERSION = 1
COLOUR_ORDER = "BGR"


class DatasetError(RuntimeError):
    """A dataset that cannot be used as it is; the message names the file and what is wrong."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def shard_paths(root: Path, index: int) -> dict[str, Path]:
    base = root / "shards" / shard_name(index)
    return {"images": base.with_suffix(".npy"), "labels": base.with_suffix(".parquet"), "marker": base.with_suffix(".json")}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    return files.read_json(path, DatasetError)
