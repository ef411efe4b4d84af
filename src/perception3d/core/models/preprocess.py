"""Letterboxing camera images into the detector input, and the mapping of boxes between the two.

Box coordinates are continuous pixel-edge coordinates: the full image spans [0, width] x [0, height] and pixel
(i, j) covers [i, i+1) x [j, j+1). The letterbox is the similarity x_input = scale * x_full (same for y) with
scale = min(input_width / width, input_height / height): the resized image sits at the top-left of the input and
the rest is zero (black). For 1600x900 cameras and the default 704x416 input, scale = 0.44 and the image fills
704x396, with 20 rows of padding below. Boxes map back to full resolution by x_full = x_input / scale.

Training augmentation (train.augment) uses the same warp with an extra scale, shift and mirror, so the network
sees training and inference images resampled in the same way (area averaging when shrinking, then bilinear).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ...errors import ImageError


def letterbox_scale(width: int, height: int, input_width: int, input_height: int) -> float:
    """Scale that fits a width x height image into input_width x input_height, keeping the aspect ratio."""
    return min(input_width / width, input_height / height)


def warp_image(image: np.ndarray, scale: float, shift_xy: tuple[float, float], mirror: bool, input_width: int,
               input_height: int) -> np.ndarray:
    """Resample an (H, W, 3) uint8 image to (input_height, input_width, 3) under x' = a*x + tx, y' = scale*y + ty
    (pixel-edge coordinates), a = -scale when mirrored (then tx includes the input width); zero fill outside.

    Shrinking goes through an area-averaging resize first (no aliasing), then a bilinear warp applies what is left
    of the scale (rounding of the resized size), the shift and the mirror.
    """
    h, w = image.shape[:2]
    if scale < 1.0:
        rw, rh = area_resized_size(w, h, scale)
        image = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)
        sx, sy = scale * w / rw, scale * h / rh
    else:
        sx = sy = scale
    tx, ty = shift_xy
    if not mirror and sx == 1.0 and sy == 1.0 and tx == 0.0 and ty == 0.0:
        out = np.zeros((input_height, input_width, 3), np.uint8)
        out[: min(image.shape[0], input_height), : min(image.shape[1], input_width)] = \
            image[:input_height, :input_width]
        return out
    ax = -sx if mirror else sx
    # cv2 works in pixel-centre coordinates: x_centre = x_edge - 0.5 on both sides of the map.
    matrix = np.array([[ax, 0.0, tx + 0.5 * ax - 0.5], [0.0, sy, ty + 0.5 * sy - 0.5]])
    return cv2.warpAffine(image, matrix, (input_width, input_height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def area_resized_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) [px] that `warp_image`'s area-averaging resize shrinks a width x height image to at a
    scale < 1 (its bilinear step applies what the rounding leaves of the scale)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def area_shrink_size(width: int, height: int, scale: float) -> tuple[int, int] | None:
    """The resized size when `warp_image` letterboxes a width x height image at `scale` (no shift, no mirror) by the
    area-averaging resize alone (it shrinks, and the resized size is the scaled size exactly: no bilinear step after
    it), else None. (704, 396) for 1600x900 cameras into the default 704x416 input."""
    if scale >= 1.0:
        return None
    rw, rh = area_resized_size(width, height, scale)
    return (rw, rh) if scale * width / rw == 1.0 and scale * height / rh == 1.0 else None


def area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-averaging shrink of n_in pixels to n_out <= n_in along one axis, as cv2.INTER_AREA: output pixel j is
    the mean of the input over its extent [j, j + 1) in output pixel units, where input pixel i spans
    [i, i + 1) * n_out / n_in. Returns (index, weight), both (T, n_out), T = the most input pixels one output pixel
    overlaps: output j = sum over t of weight[t, j] * input[index[t, j]] (weights float32, summing to 1; a tap past
    the last pixel repeats its index with weight 0)."""
    s = n_out / n_in  # output pixels per input pixel
    out = np.arange(n_out)
    first = out * n_in // n_out
    taps = int(np.ceil(n_in / n_out)) + 1
    index = first[None, :] + np.arange(taps)[:, None]
    overlap = np.minimum((index + 1) * s, out + 1) - np.maximum(index * s, out)
    weight = np.where(index < n_in, np.maximum(overlap, 0.0), 0.0)
    return np.minimum(index, n_in - 1), weight.astype(np.float32)


def check_rgb(image: np.ndarray, source: str = "image") -> np.ndarray:
    """The image as a contiguous (H, W, 3) uint8 array, or ImageError naming the source."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ImageError(source, "pixels", f"array of dtype {image.dtype} and shape {image.shape}",
                         "an (H, W, 3) uint8 RGB image")
    return np.ascontiguousarray(image)


def letterbox_batch(images: Sequence[np.ndarray], input_width: int, input_height: int,
                    sources: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox RGB uint8 images into one (N, 3, input_height, input_width) float32 batch in [0, 1].

    Returns the batch and the per-image scales (N,) (x_input = scale * x_full).
    """
    batch = np.zeros((len(images), 3, input_height, input_width), np.float32)
    scales = np.zeros(len(images))
    for i, image in enumerate(images):
        image = check_rgb(image, sources[i] if sources is not None else f"image {i}")
        scales[i] = letterbox_scale(image.shape[1], image.shape[0], input_width, input_height)
        warped = warp_image(image, scales[i], (0.0, 0.0), False, input_width, input_height)
        batch[i] = warped.transpose(2, 0, 1) * np.float32(1.0 / 255.0)
    return batch, scales
