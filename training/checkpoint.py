"""Atomic checkpoints: write to a temporary file, fsync, rename; a kill never leaves half a file.

Loading is ``weights_only``: a checkpoint or ``model.pt`` holds tensors and plain data (dicts,
lists, numbers, strings) and nothing else, so a shared file cannot run code when it is opened.
"""

from __future__ import annotations

import io
import pickle
import re
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
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsafe:
            raise RuntimeError(f"{path}: refused: it holds {unsafe.group(1)}, not only tensors and plain data, and "
                               f"loading it could run code") from None
        # another pickle (protocol > 2) stops the weights-only unpickler before any global is read: refused all the same
        raise RuntimeError(f"{path}: refused: a pickle that is not tensors and plain data as torch.save writes them "
                           f"(loading it otherwise could run code)") from None
    except OSError as exc:
        raise RuntimeError(f"{path}: unreadable ({exc})") from None
    # other bytes fail deep in the unpickler with whatever error their first byte provokes
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError) as exc:
        raise RuntimeError(f"{path}: not a checkpoint torch.save wrote ({type(exc).__name__}: {exc})") from None
