"""Which torch device a job runs on: ``auto`` takes CUDA where present and never requires it."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; any other name is returned as given. A CUDA
    device is made deterministic first (see ``deterministic_cuda``)."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if device.startswith("cuda"):
        deterministic_cuda()
    return device


def deterministic_cuda() -> None:
    """Same seed, same numbers on CUDA as on the CPU (a resumed run equals an uninterrupted one, measured
    failing without this on an H100): cuBLAS with a fixed workspace (read when cuBLAS starts, so set
    before any CUDA work) and cuDNN's deterministic kernels, at some cost in speed."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
