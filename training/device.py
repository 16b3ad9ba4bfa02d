"""Which torch device a job runs on: ``auto`` takes CUDA where present and never requires it."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; any other name is returned as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
