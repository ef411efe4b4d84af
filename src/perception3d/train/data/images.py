"""Camera images for the cache: `none`, `full` (decoded as they are) or `small` (JPEG DCT-domain downscaling,
PIL draft mode, to about 1/SMALL_FACTOR of each side: fast to decode and small to keep).

The scale actually reached is returned per axis (stored / original pixels): intrinsics and 2D boxes are scaled by
it, so they stay in the stored image's pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DatasetError

IMAGE_MODES = ("none", "small", "full")
SMALL_FACTOR = 4


def decode_image(mode: str, path: Path | None, width: int, height: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(RGB uint8 (H, W, 3) or None for `none`, scale (sx, sy)) of a camera image recorded as width x height.

    Raises:
        DatasetError: the file is missing, is not an image, or its size differs from the table's.
    """
    if mode == "none":
        return None, np.ones(2)
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                raise DatasetError(f"{path}: image is {image.size[0]}x{image.size[1]} px but sample_data says "
                                   f"{width}x{height}")
            if mode == "small":
                image.draft("RGB", (-(-width // SMALL_FACTOR), -(-height // SMALL_FACTOR)))
            pixels = np.asarray(image.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot decode camera image: {exc}") from exc
    return pixels, np.array([pixels.shape[1] / width, pixels.shape[0] / height])


def scaled_intrinsics(K: np.ndarray, scale_xy: np.ndarray) -> np.ndarray:
    """K of the same camera after its image is resized by (sx, sy), pixel centres kept as integer coordinates:
    u' = sx * u + (sx - 1) / 2 (exact for JPEG draft decoding and area resizing)."""
    sx, sy = scale_xy
    out = np.array(K, dtype=np.float64)
    out[0] *= sx
    out[1] *= sy
    out[0, 2] += (sx - 1) / 2
    out[1, 2] += (sy - 1) / 2
    return out


def scaled_boxes(boxes_xyxy: np.ndarray, scale_xy: np.ndarray) -> np.ndarray:
    """Pixel boxes (N, 4) moved as `scaled_intrinsics` moves the projections that made them."""
    sx, sy = scale_xy
    s = np.array([sx, sy, sx, sy])
    return np.asarray(boxes_xyxy, np.float64).reshape(-1, 4) * s + (s - 1) / 2
