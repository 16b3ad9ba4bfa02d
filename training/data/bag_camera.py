"""Camera messages of a bag -> road bands: ``sensor_msgs/Image`` (raw) and ``sensor_msgs/CompressedImage``
(JPEG / PNG, as image_transport's ``.../image/compressed`` records them)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from metasteer.image_msg import image_array
from metasteer.preprocess import ImageError, PreprocessSpec, camera_band

CAMERA_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def decode_compressed(fmt: str, data) -> np.ndarray:
    """A CompressedImage's bytes -> (H, W, 3) uint8 BGR. ``fmt`` is image_transport's format string
    ("jpeg", "png", "bgr8; jpeg compressed bgr8"); depth images (compressedDepth) are refused."""
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageError(f"format {fmt!r} is a compressed depth image, not a camera frame")
    img = cv2.imdecode(np.frombuffer(memoryview(data), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"format {fmt!r}: {len(data)} bytes that OpenCV cannot decode as JPEG or PNG")
    return img  # image_transport converts to bgr8 before encoding ("rgb8; jpeg compressed bgr8"): colours as decoded


def band(msgtype: str, msg: Any, spec: PreprocessSpec) -> np.ndarray:
    """The (spec.height, spec.width, 3) BGR road band of one camera message; ImageError if unusable."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return np.ascontiguousarray(camera_band(decode_compressed(msg.format, msg.data), "bgr8", spec))
    img = image_array(msg.encoding, msg.height, msg.width, msg.step, msg.data)
    return np.ascontiguousarray(camera_band(img, msg.encoding, spec))
