"""A steering policy from an ONNX file: validated at load, run with onnxruntime.

The file carries its own preprocessing (metadata ``metasteer.preprocess``); a file without it, with
a wrong input shape, that does not load, or whose warm-up output is not finite is rejected with a
``PolicyError`` saying why, so a caller can keep its current model.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metasteer.preprocess import PreprocessSpec, camera_band, to_tensor

META_PREFIX = "metasteer."


class PolicyError(ValueError):
    """A model file that cannot drive; the message names the file and the reason."""


@dataclass
class OnnxPolicy:
    path: Path
    spec: PreprocessSpec
    model_id: str  # short SHA-256 of the file: every command can be traced to the model that made it
    metadata: dict[str, str] = field(repr=False)
    session: object = field(repr=False)
    input_name: str = field(repr=False)
    _frame: np.ndarray = field(init=False, repr=False)  # one frame's input, reused: ``steer`` allocates nothing per frame
    _frame_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._frame = np.empty((1, 3, self.spec.height, self.spec.width), np.float32)

    @classmethod
    def load(cls, path: str | Path, threads: int = 1) -> "OnnxPolicy":
        import onnxruntime as ort

        path = Path(path)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for broken files
            first = str(exc).splitlines()[0] if str(exc) else ""
            # onnxruntime puts its source location first and the reason last: keep the end
            raise PolicyError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {first if len(first) <= 300 else '...' + first[-300:]})") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        if META_PREFIX + "preprocess" not in meta:
            raise PolicyError(f"{path}: no '{META_PREFIX}preprocess' metadata; export it with `metasteer export`")
        try:
            spec = PreprocessSpec.from_json(meta[META_PREFIX + "preprocess"])
        except ValueError as exc:
            raise PolicyError(f"{path}: {exc}") from None
        inputs = session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or list(shape[1:]) != [3, spec.height, spec.width]:
            raise PolicyError(f"{path}: input shape {shape} does not match its preprocessing (N, 3, {spec.height}, {spec.width})")
        policy = cls(path, spec, hashlib.sha256(blob).hexdigest()[:12], meta, session, inputs[0].name)
        out = policy.predict_bands(np.zeros((1, spec.height, spec.width, 3), np.uint8))
        if out.shape != (1,) or not np.isfinite(out).all():
            raise PolicyError(f"{path}: warm-up run gave {out!r}; expected one finite steering value")
        return policy

    def predict_bands(self, bands_bgr: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 BGR road bands -> (N,) raw network outputs (not clamped)."""
        return self._run(to_tensor(bands_bgr))

    def steer(self, image: np.ndarray, encoding: str) -> float:
        """One camera frame -> steer (CARLA units, +1 right). May be non-finite: callers must check."""
        band = camera_band(image, encoding, self.spec)
        with self._frame_lock:
            return float(self._run(to_tensor(band, out=self._frame))[0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def describe(self) -> dict:
        info = {"path": str(self.path), "model_id": self.model_id}
        for key in ("loss", "dataset_sha256", "git_commit", "quantization"):
            if META_PREFIX + key in self.metadata:
                value = self.metadata[META_PREFIX + key]
                info[key] = json.loads(value) if value.startswith("{") else value
        return info
