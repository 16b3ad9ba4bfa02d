"""``metasteer quantize``: an exported ONNX policy -> an int8 copy for a CPU-bound car.

Static quantisation (onnxruntime, QDQ format): the convolutions' weights per output channel and
their activations in int8, calibrated on real frames: of the embedded world on tuning routes
(calibration is fitting: never evaluation routes), or of a dataset of the car's own domain (``data``:
e.g. CARLA frames from ``collect --world carla`` or ``ingest``). The linear layers stay float: quantising
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
from metasteer.preprocess import PreprocessSpec, to_tensor
from training.evaluate import route_seed
from training.export import ExportError, parity_frames
from training.files import atomic_write_bytes

PARITY_TOLERANCE = 0.05  # steer units (full lock = 1); the shipped learned model measured 0.01
CALIBRATION_FRAMES = 256
PARITY_FRAMES = 64


def elu_as_exp(proto) -> int:
    """Rewrite every ``Elu`` (alpha 1) after a ``Conv`` of ``proto`` in place as ``Max(x, Exp(Min(x, 0)) - 1)``,
    the same function (exp(x) - 1 >= x): onnxruntime's Elu kernel is scalar (139 us on conv1's output
    here), its Exp vectorised (the four ops: 49 us). An Elu after a Gemm stays: it fuses into the Gemm.
    Returns how many it rewrote."""
    from onnx import TensorProto, helper

    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    nodes, count = [], 0
    for node in proto.graph.node:
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
        if node.op_type != "Elu" or alpha != 1.0 or producer.get(node.input[0]) != "Conv":
            nodes.append(node)
            continue
        x, y, tag = node.input[0], node.output[0], f"{node.name or 'elu'}_{count}"
        nodes += [helper.make_node("Min", [x, "elu_as_exp_zero"], [f"{tag}_neg"], name=f"{tag}_min"),
                  helper.make_node("Exp", [f"{tag}_neg"], [f"{tag}_exp"], name=f"{tag}_exp"),
                  helper.make_node("Sub", [f"{tag}_exp", "elu_as_exp_one"], [f"{tag}_expm1"], name=f"{tag}_sub"),
                  helper.make_node("Max", [x, f"{tag}_expm1"], [y], name=f"{tag}_max")]
        count += 1
    if count:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        proto.graph.initializer.extend([helper.make_tensor("elu_as_exp_zero", TensorProto.FLOAT, [], [0.0]),
                                        helper.make_tensor("elu_as_exp_one", TensorProto.FLOAT, [], [1.0])])
    return count


def dataset_frames(data: str | Path, spec: PreprocessSpec, counts: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of ``counts`` frames of the dataset ``data`` (road bands of ``spec``'s size)."""
    from training.data.dataset import DrivingDataset

    ds = DrivingDataset(data)
    shape = tuple(ds.manifest["image_shape"])
    if shape[:2] != (spec.height, spec.width):
        raise ExportError(f"{data}: frames are {shape[1]}x{shape[0]}, the model's input is {spec.width}x{spec.height}")
    if len(ds) < sum(counts):
        raise ExportError(f"{data}: {len(ds)} frames, {sum(counts)} needed ({counts[0]} to calibrate, {counts[1]} to check)")
    pick = np.random.default_rng(seed).choice(len(ds), sum(counts), replace=False)
    return ds.images(np.sort(pick[:counts[0]])), ds.images(np.sort(pick[counts[0]:]))


def quantize(model: str | Path, out: str | Path, calibration_frames: int = CALIBRATION_FRAMES, seed: int = 0,
             data: str | Path | None = None) -> dict:
    """Quantise the exported policy ``model`` to ``out``, calibrated on the embedded world or on the
    dataset ``data``; raises ``ExportError`` if it steers differently from ``model``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = OnnxPolicy.load(model)
    if META_PREFIX + "quantization" in source.metadata:
        raise ExportError(f"{model}: already quantised; quantise the float export it came from")
    if data is None:
        calibration = parity_frames(source.spec, n=calibration_frames, seed=route_seed(seed, 0, "tune"))
        check = parity_frames(source.spec, n=PARITY_FRAMES, seed=route_seed(seed, 1, "tune"))
    else:
        calibration, check = dataset_frames(data, source.spec, (calibration_frames, PARITY_FRAMES), seed)

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{source.input_name: to_tensor(f)} for f in calibration])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        rewritten, candidate = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        proto = onnx.load(source.path)
        elus = elu_as_exp(proto)
        onnx.save(proto, rewritten)
        quantize_static(str(rewritten), str(candidate), Frames(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(candidate)
        quantized = OnnxPolicy.load(candidate)
    diff = np.abs(quantized.predict_bands(check) - source.predict_bands(check))
    origin = {"dataset": str(data)} if data else {"world": "embedded", "routes": "tune"}
    info = {"scheme": "int8 static QDQ: conv weights per channel (int8), conv activations (uint8), linear layers float",
            "elu_as_exp": elus, "source_model_id": source.model_id,
            "calibration": {"frames": int(len(calibration)), "seed": seed, **origin},
            "parity_frames": int(len(check)), "parity_max_abs_diff": float(diff.max()), "parity_mean_abs_diff": float(diff.mean())}
    if not info["parity_max_abs_diff"] <= PARITY_TOLERANCE:
        raise ExportError(f"{model}: the int8 copy steers up to {diff.max():.3g} away from the float model on {len(check)} frames "
                          f"(> {PARITY_TOLERANCE}); not written")
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_PREFIX + "quantization", json.dumps(info, sort_keys=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out), proto.SerializeToString())
    return {"onnx": str(out), "model_id": OnnxPolicy.load(out).model_id, **info, "bytes": Path(out).stat().st_size}
