"""``metasteer export``: a trained run -> one self-contained ONNX file (opset 17, dynamic batch) whose
metadata carries the preprocessing, the output's meaning, the loss and its hyperparameters, the
dataset hash, the git commit and the offline metrics; checked against torch with onnxruntime."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import torch

from metasteer.policy import META_PREFIX, OnnxPolicy
from metasteer.preprocess import PreprocessSpec, to_tensor
from training.files import atomic_write_bytes
from training.models.io import load_model

OPSET = 17
PARITY_TOLERANCE = 1e-4
OUTPUT_MEANING = "steer in [-1, 1], CARLA VehicleControl convention: +1 = full right, fraction of max wheel angle"


class ExportError(RuntimeError):
    pass


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parity_frames(spec: PreprocessSpec, n: int = 32, seed: int = 0) -> np.ndarray:
    """Real frames of the embedded world (expert driving, rare scenes on), as road bands."""
    from simulator.base import pilotnet_camera
    from simulator.embedded import embedded_world

    world = embedded_world(0.3, pilotnet_camera(spec.width, spec.height))
    obs, frames = world.reset(seed), []
    while len(frames) < n:
        for _ in range(7):
            obs = world.step(obs.expert_control, render=False) if not obs.done else world.reset(seed + len(frames) + 1)
        obs = world.step(obs.expert_control) if not obs.done else world.reset(seed + len(frames) + 1)
        frames.append(obs.image[:, :, :3])
    return np.stack(frames)


def to_onnx(model: torch.nn.Module, spec: PreprocessSpec, metadata: dict[str, str]):
    """``model`` as a checked ONNX proto (opset ``OPSET``, dynamic batch) with ``metadata`` under ``META_PREFIX``."""
    import onnx

    buf = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 3, spec.height, spec.width),), buf, opset_version=OPSET, input_names=["image"],
                      output_names=["steer"], dynamic_axes={"image": {0: "batch"}, "steer": {0: "batch"}}, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.checker.check_model(proto)
    return proto


def export(run: str | Path, out: str | Path, frames: np.ndarray | None = None) -> dict:
    """Export ``run`` to ``out``; raises ``ExportError`` if onnxruntime and torch disagree > 1e-4."""
    model, info = load_model(run)
    spec = PreprocessSpec.from_json(info["preprocess"])
    metadata = {
        "preprocess": spec.to_json(),
        "output": OUTPUT_MEANING,
        "arch": json.dumps(info["arch"], sort_keys=True),
        "loss": json.dumps({"family": info["loss"]["loss"], "hyperparameters": info["loss"], "meta": info.get("meta")}, sort_keys=True),
        "dataset_sha256": info["dataset_sha256"],
        "git_commit": git_commit(),
        "offline_metrics": json.dumps({k: info["val_metrics"][k] for k in ("overall", "normal", "abnormal", "by_category")}, sort_keys=True),
        "format_version": "1",
    }
    proto = to_onnx(model, spec, metadata)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = proto.SerializeToString()
    candidate = out.with_name(out.name + ".candidate")
    candidate.write_bytes(data)

    frames = parity_frames(spec) if frames is None else frames
    try:
        policy = OnnxPolicy.load(candidate)  # the session holds the model in memory from here on
    finally:
        candidate.unlink()
    with torch.no_grad():
        expected = model(torch.from_numpy(to_tensor(frames))).numpy()
    got = policy.predict_bands(frames)
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"onnxruntime and torch disagree on {len(frames)} frames: max |diff| = {diff:.3g} > {PARITY_TOLERANCE}")
    atomic_write_bytes(out, data)
    return {"onnx": str(out), "opset": OPSET, "model_id": OnnxPolicy.load(out).model_id, "parity_max_abs_diff": diff,
            "parity_frames": int(len(frames)), "bytes": out.stat().st_size}
