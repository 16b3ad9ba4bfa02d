"""Output directories that survive kills: atomic writes (a temporary name, fsync, then rename) and
the request guard that lets a resumed job continue only what it started.

The one helper behind datasets (shards, markers, manifests), checkpoints and model files, and ONNX
export; the one guard behind collection, DAgger rounds and training runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``path`` holds either its old content or all of ``data``, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path, error: type[Exception] = ValueError) -> Any:
    """``path``'s JSON; a missing or corrupt file raises ``error`` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: corrupt JSON ({exc})") from None


def atomic_copy(src: Path, dst: Path) -> None:
    """``dst`` holds either its old content or all of ``src``'s (a kept file is never half-copied)."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, Path(src).read_bytes())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def holds_json(path: Path, obj: Any) -> bool:
    """``path`` exists and holds ``obj`` as JSON (a corrupt file holds nothing)."""
    try:
        return Path(path).exists() and json.loads(Path(path).read_text()) == json.loads(json.dumps(obj))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def write_json_if_changed(path: Path, obj: Any) -> bool:
    """Write ``obj`` atomically unless ``path`` already holds it: a resumed job leaves finished files untouched
    (mtime and inode). True when it wrote."""
    if holds_json(path, obj):
        return False
    atomic_write_json(path, obj)
    return True


def claim_request(out: Path, request: dict, what: str, error: type[Exception] = ValueError, name: str = "request.json",
                  hint: str = "use another --out or the same arguments to resume") -> bool:
    """Start directory ``out`` for ``request`` (kept in ``out/name``), or check that a resume asks for the same;
    raises ``error`` (ending in ``hint``) if ``out`` holds another request. True when ``out`` already held it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path, wanted = out / name, json.loads(json.dumps(request))
    if path.exists():
        try:
            held = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise error(f"{path}: corrupt JSON ({exc})") from None
        if held != wanted:
            raise error(f"{out}: holds a {what} with a different request ({path}); {hint}")
        return True
    atomic_write_json(path, wanted)
    return False
