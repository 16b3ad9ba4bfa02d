"""Read a trained model file (``RUN/model.pt``) back into a ``PilotNet`` and its provenance."""

from __future__ import annotations

from pathlib import Path

from training.checkpoint import load
from training.models.pilotnet import PilotNet, PilotNetConfig


def load_model(path: str | Path) -> tuple[PilotNet, dict]:
    """``path``: a run directory or its ``model.pt``; returns the model (eval mode) and its metadata."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained model (run `metasteer train` first)")
    blob = load(path)
    model = PilotNet(PilotNetConfig(**blob["arch"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}
