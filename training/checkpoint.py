"""Atomic checkpoints: write to a temporary file, fsync, rename; a kill never leaves half a file.

Loading is ``weights_only``: a checkpoint or ``model.pt`` holds tensors and plain data (dicts,
lists, numbers, strings) and nothing else, so a shared file cannot run code when it is opened.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RuntimeError(f"{path}: refused: it holds more than tensors and plain data, and loading it could run code "
                           f"({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise RuntimeError(f"{path}: unreadable checkpoint ({exc})") from None
