"""`CachedCameraImages`: every distinct camera image of a sweep cache with its 2D boxes, as (image, Detections2D)
pairs, so that `perception3d train detector2d --cache` trains from a cache instead of decoding the dataroot's JPEGs.

The cache must hold images (`dataset build --images small|full`); its 2D boxes are what `--boxes2d` made them
(build with `perfect` for training targets: the annotations' 3D boxes projected into the image). Images and boxes
are in the stored image's pixels; boxes of classes outside the detection classes are left out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.classes import DETECTION_CLASSES
from ...core.detections import Detections2D
from ...errors import DatasetError
from .dataset import SweepDataset


class CachedCameraImages:
    """(RGB uint8 (H, W, 3) image, Detections2D in its pixels) per distinct camera image of a sweep cache."""

    def __init__(self, cache: str | Path) -> None:
        self.sweeps = SweepDataset(cache, past_sweeps=0)
        if not self.sweeps.images:
            raise DatasetError(f"{cache}: the cache holds no images; build it with `perception3d dataset build "
                               "--images small` (or full) to train detector2d from it")
        self.items: list[tuple[str, int, int]] = []  # (scene, image row, camera index)
        for scene in self.sweeps.scenes:
            rows = self.sweeps.scene_arrays(scene)["image_index"]
            first_camera: dict[int, int] = {}
            for sweep, camera in np.argwhere(rows >= 0):
                first_camera.setdefault(int(rows[sweep, camera]), int(camera))
            self.items += [(scene, row, camera) for row, camera in sorted(first_camera.items())]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Detections2D]:
        scene, row, camera = self.items[index]
        a = self.sweeps.scene_arrays(scene)
        image = np.array(a[f"pixels_{self.sweeps.cameras[camera]}"][a["image_pixel_row"][row]])
        boxes = slice(a["box2d_offsets"][row], a["box2d_offsets"][row + 1])
        classes = np.array(a["box2d_class"][boxes])
        known = classes >= 0
        return image, Detections2D(np.array(a["box2d_xyxy"][boxes], float)[known],
                                   [DETECTION_CLASSES[c] for c in classes[known]],
                                   np.array(a["box2d_score"][boxes], float)[known])

    def describe(self) -> str:
        options = self.sweeps.manifest["options"]
        return (f"sweep cache {self.sweeps.cache} ({self.sweeps.manifest.get('dataroot', '?')}, split "
                f"{self.sweeps.manifest.get('split', '?')}): {len(self)} images ({options['images']}), 2D boxes "
                f"{options['boxes2d']}")
