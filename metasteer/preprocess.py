"""The one preprocessing function: camera frame -> network input, shared by training, evaluation,
export and the ROS node. Its parameters travel inside every model file as JSON (``PreprocessSpec``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np

ENCODINGS = {"bgra8": 4, "bgr8": 3, "rgb8": 3}


class ImageError(ValueError):
    """A frame that cannot be preprocessed; the message says what is wrong with it."""


SOURCE_SIZE_PX = (800, 600)  # the bridge camera frame the band is cut from (carla-ros-bridge's default RGB camera)
CROP_TOP = 0.45  # top of the road band, fraction of the source height: keeps a strip of horizon
INPUT_SIZE_PX = (200, 66)  # PilotNet's input (width, height)


def band_bottom(width: int, height: int, crop_top: float = CROP_TOP, source: tuple[int, int] = SOURCE_SIZE_PX) -> float:
    """Bottom of the band (fraction of the source height) whose aspect equals ``width / height``."""
    return crop_top + source[0] * height / width / source[1]


@dataclass(frozen=True)
class PreprocessSpec:
    """Crop a horizontal band of the full frame, resize it, RGB, scale to [-1, 1], NCHW float32.

    ``crop_top`` / ``crop_bottom``: band as fractions of the source height. A frame that already
    has the output size is taken as that band (recorded datasets store it so).
    """

    crop_top: float = CROP_TOP
    crop_bottom: float = band_bottom(*INPUT_SIZE_PX)
    width: int = INPUT_SIZE_PX[0]
    height: int = INPUT_SIZE_PX[1]
    version: int = 1

    @classmethod
    def for_size(cls, width: int, height: int) -> "PreprocessSpec":
        """The band of the source frame with the aspect of a ``width`` x ``height`` input."""
        return cls(crop_top=CROP_TOP, crop_bottom=band_bottom(width, height), width=width, height=height)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PreprocessSpec":
        try:
            return cls(**json.loads(text))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"invalid preprocessing spec {text!r}: {exc}") from None


def check_image(image: np.ndarray, encoding: str) -> None:
    """Raise ``ImageError`` unless ``image`` is a non-empty (H, W, C) uint8 frame in ``encoding``."""
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r}; expected one of {sorted(ENCODINGS)}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != ENCODINGS[encoding] or 0 in image.shape:
        raise ImageError(f"{encoding} image must be (H, W, {ENCODINGS[encoding]}) uint8 and non-empty, got {image.shape} {image.dtype}")


def to_bgr(image: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) uint8 in ``encoding`` -> (H, W, 3) uint8 BGR (a view where possible)."""
    check_image(image, encoding)
    return _bgr_view(image, encoding)


def _bgr_view(image: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "bgra8":
        return image[:, :, :3]
    if encoding == "rgb8":
        return image[:, :, ::-1]
    return image


def crop_band(frame: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(H, W, C) frame -> (spec.height, spec.width, C) road band, any channel order: the area average
    (box filter) of the band's rows. Where the band is an even integer multiple of the output size it is
    halved in exact 2x2 steps, which rounds between steps: within 1 level of one area resize (tested)."""
    h = frame.shape[0]
    if frame.shape[:2] == (spec.height, spec.width):
        return frame
    top, bottom = int(round(spec.crop_top * h)), int(round(spec.crop_bottom * h))
    band = frame[top:bottom]
    # an even integer factor is halved first: OpenCV vectorises only the 2x area average (800x600: 0.05 ms, not 0.28)
    while band.shape[0] % (2 * spec.height) == 0 and band.shape[1] % (2 * spec.width) == 0:
        band = cv2.resize(band, (band.shape[1] // 2, band.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if band.shape[:2] == (spec.height, spec.width):
        return band
    return cv2.resize(band, (spec.width, spec.height), interpolation=cv2.INTER_AREA)


def camera_band(image: np.ndarray, encoding: str, spec: PreprocessSpec) -> np.ndarray:
    """A camera frame -> its (spec.height, spec.width, 3) uint8 BGR road band. Crops and resizes the
    raw frame first (whole rows of it are contiguous) and converts the colours of the small band:
    the same pixels as converting first (tested); at 800x600 bgra8 0.05 ms with ``crop_band``'s halving,
    1.14 ms converting first."""
    check_image(image, encoding)
    return _bgr_view(crop_band(image, spec), encoding)


def to_tensor(band_bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8 BGR band(s) -> (N, 3, H, W) float32 RGB in [-1, 1], written
    into ``out`` when given (the node reuses one buffer: fresh 160 KB arrays cost page faults per frame)."""
    batch = (band_bgr[None] if band_bgr.ndim == 3 else band_bgr)[..., ::-1].transpose(0, 3, 1, 2)
    out = np.empty(batch.shape, np.float32) if out is None else out
    np.multiply(batch, np.float32(1.0 / 127.5), out=out)
    return np.subtract(out, np.float32(1.0), out=out)
