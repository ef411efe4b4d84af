"""Tiny synthetic detection images shared by the detector2d tests: filled rectangles on a noisy background."""
from __future__ import annotations

import numpy as np

from perception3d.core.detections import Detections2D
from perception3d.core.models.centernet import CenterNetConfig

# Full-resolution test images are 256x128; the tiny model input is 128x64 (letterbox scale 0.5).
IMAGE_WIDTH, IMAGE_HEIGHT = 256, 128
TINY = CenterNetConfig(width=8, neck_channels=16, head_channels=16, input_width=128, input_height=64)
COLOURS = {"car": (220, 40, 40), "pedestrian": (40, 200, 60), "traffic_cone": (40, 60, 230)}


def rectangle_image(rng: np.random.Generator, count: int = 3) -> tuple[np.ndarray, Detections2D]:
    """An RGB image with `count` non-overlapping filled rectangles and their boxes (pixel-edge xyxy)."""
    image = rng.integers(90, 140, (IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8)
    names = list(COLOURS)
    boxes, classes = [], []
    slot_width = IMAGE_WIDTH // count
    for k in range(count):
        w, h = rng.integers(24, slot_width - 8), rng.integers(24, 90)
        x0 = k * slot_width + rng.integers(0, slot_width - w)
        y0 = rng.integers(0, IMAGE_HEIGHT - h)
        name = names[k % len(names)]
        image[y0:y0 + h, x0:x0 + w] = COLOURS[name]
        boxes.append([x0, y0, x0 + w, y0 + h])
        classes.append(name)
    return image, Detections2D(np.array(boxes, float), classes, np.ones(count))
