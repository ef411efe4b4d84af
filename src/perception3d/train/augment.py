"""Training augmentation: random scale and shift around the letterbox, horizontal mirror, colour jitter.

Geometry is one similarity per sample, x_input = a * x_full + tx, y_input = s * y_full + ty with s = letterbox
scale * random factor and a = -s when mirrored, applied to the image by core.models.preprocess.warp_image and to
the boxes by `transform_boxes`, so boxes and pixels move together. With a crop size smaller than the input, a
random crop_width x crop_height window of the augmented input is kept (objects keep their inference-time scale,
and a training step costs crop area / input area of a full one). Boxes are clipped to the output; a box keeps its
label only when at least `min_visible_fraction` of its area and 2 px in each direction remain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.models.preprocess import letterbox_scale, warp_image


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (all uniform).

    Attributes:
        mirror_probability: chance of a horizontal flip.
        scale_range: factor applied on top of the letterbox scale.
        shift_fraction: max shift of the image as a fraction of the input size, each axis.
        brightness, contrast, saturation: max relative change of each (0 = off).
        min_visible_fraction: area fraction of a box that must stay inside the input to keep it.
    """

    mirror_probability: float = 0.5
    scale_range: tuple[float, float] = (0.8, 1.25)
    shift_fraction: float = 0.1
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    min_visible_fraction: float = 0.3


@dataclass(frozen=True)
class Similarity:
    """x' = a * x + tx, y' = scale * y + ty with a = -scale when mirrored (pixel-edge coordinates)."""

    scale: float
    shift_xy: tuple[float, float]
    mirror: bool


def transform_boxes(boxes_xyxy: np.ndarray, sim: Similarity) -> np.ndarray:
    """Boxes (N, 4) mapped by the similarity, re-ordered so that x0 <= x1."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    a = -sim.scale if sim.mirror else sim.scale
    x = a * b[:, [0, 2]] + sim.shift_xy[0]
    y = sim.scale * b[:, [1, 3]] + sim.shift_xy[1]
    return np.stack([x.min(1), y[:, 0], x.max(1), y[:, 1]], axis=1)


def clip_boxes(boxes_xyxy: np.ndarray, width: int, height: int, min_visible_fraction: float) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """Boxes clipped to [0, width] x [0, height], and the mask of those that keep enough of their area."""
    area = np.prod(boxes_xyxy[:, 2:] - boxes_xyxy[:, :2], axis=1)
    clipped = np.clip(boxes_xyxy, 0.0, [width, height, width, height])
    wh = clipped[:, 2:] - clipped[:, :2]
    keep = (wh.min(axis=1) >= 2.0) & (wh.prod(axis=1) >= min_visible_fraction * np.maximum(area, 1e-9))
    return clipped, keep


def random_similarity(rng: np.random.Generator, image_width: int, image_height: int, input_width: int,
                      input_height: int, config: AugmentConfig,
                      crop_size: tuple[int, int] | None = None) -> Similarity:
    """A random scale/shift/mirror around the letterbox of an image_width x image_height image into the input,
    followed by a random crop of crop_size (width, height) when given."""
    scale = letterbox_scale(image_width, image_height, input_width, input_height) * rng.uniform(*config.scale_range)
    tx = rng.uniform(-1, 1) * config.shift_fraction * input_width
    ty = rng.uniform(-1, 1) * config.shift_fraction * input_height
    mirror = bool(rng.random() < config.mirror_probability)
    if mirror:
        # mirror about the centre of the scaled image, so the image stays where the unmirrored one would be
        tx += scale * image_width
    crop_width, crop_height = crop_size or (input_width, input_height)
    tx -= rng.uniform(0, input_width - crop_width)
    ty -= rng.uniform(0, input_height - crop_height)
    return Similarity(scale, (tx, ty), mirror)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Random brightness, contrast and saturation of an RGB uint8 image (each a blend, as uint8)."""
    x = image.astype(np.float32)
    x *= 1.0 + rng.uniform(-config.brightness, config.brightness)
    mean = x.mean()
    x = mean + (x - mean) * (1.0 + rng.uniform(-config.contrast, config.contrast))
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = gray[..., None] + (x - gray[..., None]) * (1.0 + rng.uniform(-config.saturation, config.saturation))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def augment_sample(image: np.ndarray, boxes_xyxy: np.ndarray, input_width: int, input_height: int,
                   rng: np.random.Generator, config: AugmentConfig,
                   crop_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augmented image (crop or input height, width, 3) uint8, its boxes in its pixels, and the mask of the
    original boxes that were kept."""
    out_width, out_height = crop_size or (input_width, input_height)
    sim = random_similarity(rng, image.shape[1], image.shape[0], input_width, input_height, config, crop_size)
    warped = warp_image(image, sim.scale, sim.shift_xy, sim.mirror, out_width, out_height)
    boxes, keep = clip_boxes(transform_boxes(boxes_xyxy, sim), out_width, out_height, config.min_visible_fraction)
    return colour_jitter(warped, rng, config), boxes[keep], keep
