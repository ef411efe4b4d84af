"""Camera images for the cache: `none`, `full` (decoded as they are) or `small` (JPEG DCT-domain downscaling,
PIL draft mode, to about 1/SMALL_FACTOR of each side: fast to decode and small to keep).

The scale actually reached is returned per axis (stored / original pixels): intrinsics and 2D boxes are scaled by
it, so they stay in the stored image's pixels.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DatasetError

IMAGE_MODES = ("none", "small", "full")
SMALL_FACTOR = 4


@contextlib.contextmanager
def _opened(mode: str, path: Path, width: int, height: int):
    """The PIL image of a camera file set up for `mode` (draft mode for `small`), its size checked."""
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                raise DatasetError(f"{path}: image is {image.size[0]}x{image.size[1]} px but sample_data says "
                                   f"{width}x{height}")
            if mode == "small":
                image.draft("RGB", (-(-width // SMALL_FACTOR), -(-height // SMALL_FACTOR)))
            yield image
    except OSError as exc:
        raise DatasetError(f"{path}: cannot decode camera image: {exc}") from exc


def image_scale(mode: str, path: Path | None, width: int, height: int) -> np.ndarray:
    """(sx, sy): stored pixels per original pixel of a camera image recorded as width x height (1 for `none`;
    reads only the JPEG header)."""
    if mode == "none":
        return np.ones(2)
    with _opened(mode, path, width, height) as image:
        return np.array([image.size[0] / width, image.size[1] / height])


def decode_image(mode: str, path: Path, width: int, height: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a camera image, at the size `image_scale` gives.

    Raises:
        DatasetError: the file is missing, is not an image, or its size differs from the table's.
    """
    with _opened(mode, path, width, height) as image:
        return np.asarray(image.convert("RGB"))


@dataclass
class PixelStack:
    """The images of one camera, decoded one at a time straight into a `.npy` file (N, H, W, 3) uint8, so a scene
    never holds its images in memory."""

    mode: str
    shape: tuple[int, int] = (0, 0)  # (H, W) of every image of the stack
    files: list[tuple[Path, int, int]] = field(default_factory=list)  # (path, recorded width, height)

    def write_npy(self, path: Path) -> None:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(self.files), *self.shape, 3))
        for i, (source, width, height) in enumerate(self.files):
            pixels = decode_image(self.mode, source, width, height)
            if pixels.shape[:2] != self.shape:
                raise DatasetError(f"{source}: decoded to {pixels.shape[:2]}, expected {self.shape} as the other "
                                   "images of its camera in the scene")
            out[i] = pixels
        out.flush()
        del out


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
