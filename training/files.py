"""Writing a file so that a kill never leaves half of it: a temporary name, fsync, then rename.

The one helper behind datasets (shards, markers, manifests), checkpoints and model files, and ONNX export.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``path`` holds either its old content or all of ``data``, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
