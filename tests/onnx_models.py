"""Hand-built ONNX policies with known behaviour (real onnxruntime models, not mocks): a constant
steering value, or one that is finite on the warm-up frame and NaN on real camera frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from metasteer.policy import META_PREFIX
from metasteer.preprocess import PreprocessSpec


def _save(path: Path, nodes: list, consts: dict[str, float], tag: str) -> Path:
    spec = PreprocessSpec()
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, spec.height, spec.width])
    steer = helper.make_tensor_value_info("steer", TensorProto.FLOAT, ["N"])
    inits = [numpy_helper.from_array(np.array(v, np.float32), name) for name, v in consts.items()]
    graph = helper.make_graph(nodes, tag, [image], [steer], inits)
    # IR 8, as `metasteer export` writes: the newest onnx would write an IR that older onnxruntimes refuse
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (("preprocess", spec.to_json()), ("output", "steer, +1 = full right"), ("loss", '{"family": "' + tag + '"}')):
        model.metadata_props.add(key=META_PREFIX + key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def constant_steer_model(path: Path, steer: float) -> Path:
    """Steers ``steer`` whatever it sees."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]), helper.make_node("Add", ["z", "value"], ["steer"])]
    return _save(path, nodes, {"zero": 0.0, "value": steer}, "constant")


def nan_on_camera_model(path: Path) -> Path:
    """sqrt(-mean(x) - 0.5): finite on the all-black warm-up frame (mean -1), NaN on road frames."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Neg", ["m"], ["n"]), helper.make_node("Sub", ["n", "half"], ["d"]),
             helper.make_node("Sqrt", ["d"], ["steer"])]
    return _save(path, nodes, {"half": 0.5}, "nan")


def error_on_camera_model(path: Path) -> Path:
    """Loads and passes the warm-up (all-black frame: index 0), then fails in onnxruntime on road frames:
    a Gather whose index, (mean(x) + 1) * 10, is out of its two-element table."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Add", ["m", "one"], ["s"]), helper.make_node("Mul", ["s", "ten"], ["f"]),
             helper.make_node("Cast", ["f"], ["index"], to=TensorProto.INT64), helper.make_node("Gather", ["table", "index"], ["steer"])]
    return _save(path, nodes, {"one": 1.0, "ten": 10.0, "table": [0.0, 0.0]}, "error")
