"""sensor_msgs/Image fields -> a numpy frame, with every malformed kind named (plain Python)."""

from __future__ import annotations

import numpy as np

from metasteer.preprocess import ENCODINGS, ImageError


def image_array(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """(height, width, channels) uint8 view of an Image message's buffer.

    Raises ``ImageError`` for an unsupported encoding, zero size, a wrong step or truncated data.
    """
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r} (accepted: {', '.join(sorted(ENCODINGS))})")
    if height <= 0 or width <= 0:
        raise ImageError(f"zero-size image {width}x{height}")
    channels = ENCODINGS[encoding]
    if step < width * channels:
        raise ImageError(f"step {step} < width x channels = {width * channels}")
    buf = np.frombuffer(memoryview(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size < step * height:
        raise ImageError(f"truncated data: {buf.size} bytes for {height} rows of {step}")
    rows = buf[: step * height].reshape(height, step)
    return rows[:, : width * channels].reshape(height, width, channels)
