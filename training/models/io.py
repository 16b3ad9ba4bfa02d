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
    if not isinstance(blob, dict) or not isinstance(blob.get("arch"), dict) or not isinstance(blob.get("state_dict"), dict):
        raise ValueError(f"{path}: not a metasteer model file (no architecture or weights; written by `metasteer train`?)")
    try:
        model = PilotNet(PilotNetConfig(**blob["arch"]))
        model.load_state_dict(blob["state_dict"])
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: its weights do not fit its recorded architecture ({str(exc)[:300]})") from None
    model.eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}
