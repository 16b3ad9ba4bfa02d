"""``metasteer quantize``: an exported ONNX policy -> an int8 copy for a CPU-bound car.

Static quantisation (onnxruntime, QDQ format): the convolutions' weights per output channel and
their activations in int8, calibrated on real frames of the embedded world drawn from tuning
routes (calibration is fitting: never evaluation routes). The linear layers stay float: quantising
them too was measured to move steering by up to 0.22 on real frames (conv only: 0.01), and they
cost little. The file keeps the source's metadata (preprocessing, loss, provenance) and adds
``metasteer.quantization``; it is written only when it steers within ``PARITY_TOLERANCE`` of the
source on frames apart from the calibration ones.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from metasteer.policy import META_PREFIX, OnnxPolicy
from metasteer.preprocess import to_tensor
from training.evaluate import route_seed
from training.export import ExportError, parity_frames
from training.files import atomic_write_bytes

PARITY_TOLERANCE = 0.05  # steer units (full lock = 1); the shipped learned model measured 0.01
CALIBRATION_FRAMES = 256
PARITY_FRAMES = 64


def quantize(model: str | Path, out: str | Path, calibration_frames: int = CALIBRATION_FRAMES, seed: int = 0) -> dict:
    """Quantise the exported policy ``model`` to ``out``; raises ``ExportError`` if it steers differently."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = OnnxPolicy.load(model)
    if META_PREFIX + "quantization" in source.metadata:
        raise ExportError(f"{model}: already quantised; quantise the float export it came from")
    calibration = parity_frames(source.spec, n=calibration_frames, seed=route_seed(seed, 0, "tune"))
    check = parity_frames(source.spec, n=PARITY_FRAMES, seed=route_seed(seed, 1, "tune"))

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{source.input_name: to_tensor(f)} for f in calibration])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "int8.onnx"
        quantize_static(str(source.path), str(candidate), Frames(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(candidate)
        quantized = OnnxPolicy.load(candidate)
    diff = np.abs(quantized.predict_bands(check) - source.predict_bands(check))
    info = {"scheme": "int8 static QDQ: conv weights per channel (int8), conv activations (uint8), linear layers float",
            "source_model_id": source.model_id, "calibration": {"frames": int(len(calibration)), "routes": "tune", "seed": seed},
            "parity_frames": int(len(check)), "parity_max_abs_diff": float(diff.max()), "parity_mean_abs_diff": float(diff.mean())}
    if not info["parity_max_abs_diff"] <= PARITY_TOLERANCE:
        raise ExportError(f"{model}: the int8 copy steers up to {diff.max():.3g} away from the float model on {len(check)} frames "
                          f"(> {PARITY_TOLERANCE}); not written")
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_PREFIX + "quantization", json.dumps(info, sort_keys=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out), proto.SerializeToString())
    return {"onnx": str(out), "model_id": OnnxPolicy.load(out).model_id, **info, "bytes": Path(out).stat().st_size}
