"""Atomic checkpoints: write to a temporary file, fsync, rename; a kill never leaves half a file.

Loading is ``weights_only``: a checkpoint or ``model.pt`` holds tensors and plain data (dicts,
lists, numbers, strings) and nothing else, so a shared file cannot run code when it is opened.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from training.files import atomic_write_bytes


def save_atomic(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RuntimeError(f"{path}: refused: it holds more than tensors and plain data, and loading it could run code "
                           f"({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise RuntimeError(f"{path}: unreadable checkpoint ({exc})") from None
