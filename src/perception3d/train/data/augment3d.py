"""Augmentation of SweepDataset samples that keeps every modality consistent.

Global (all of a sample at once): A = scale * R_z(angle) * F, F a mirror of y (flip across the x axis) and/or of
x, applied in the sweep's LiDAR frame: points p -> A p; boxes: centre -> A c, heading vector -> A h (so a mirror
turns yaw into -yaw or pi - yaw), size * scale, velocity -> A v; and every transform out of the LiDAR frame
(T_global_lidar, T_ego_lidar, cam_T_camera_lidar) becomes T @ inv(A). Projecting an augmented point with the
augmented transforms therefore lands on the same pixel as before, and taking augmented boxes back to the global
frame gives the original boxes; these transforms are no longer rigid (scale, and a mirror's determinant -1).
`T_augment` accumulates A. Occupancy and lidarseg are per voxel / per point of the un-augmented frames and stay
as they are (occupancy is in `ego`, reached through the augmented T_ego_lidar).

Per camera (samples with images): the image is resized by a random factor (intrinsics and that camera's 2D boxes
follow, images.scaled_intrinsics / scaled_boxes) and its colours jittered (train/augment.colour_jitter).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..augment import AugmentConfig, colour_jitter
from .images import scaled_boxes, scaled_intrinsics

_LIDAR_TRANSFORMS = ("T_global_lidar", "T_ego_lidar")


@dataclass(frozen=True)
class Augment3DConfig:
    """Ranges of the random augmentation (uniform).

    Attributes:
        rotation_range: max |angle| of the rotation about z [rad].
        flip_y_probability: chance of mirroring y (y -> -y); flip_x_probability: of mirroring x.
        scale_range: global scale factor of the scene.
        image_scale_range: per-camera image resize factor.
        colour: brightness / contrast / saturation ranges (train/augment.AugmentConfig).
    """

    rotation_range: float = np.pi / 4
    flip_y_probability: float = 0.5
    flip_x_probability: float = 0.5
    scale_range: tuple[float, float] = (0.95, 1.05)
    image_scale_range: tuple[float, float] = (0.9, 1.1)
    colour: AugmentConfig = field(default_factory=AugmentConfig)


def random_global_transform(rng: np.random.Generator, config: Augment3DConfig) -> np.ndarray:
    """A (4x4) = scale * R_z * F drawn from the config."""
    angle = rng.uniform(-config.rotation_range, config.rotation_range)
    c, s = np.cos(angle), np.sin(angle)
    flip = np.diag([-1.0 if rng.random() < config.flip_x_probability else 1.0,
                    -1.0 if rng.random() < config.flip_y_probability else 1.0, 1.0])
    A = np.eye(4)
    A[:3, :3] = rng.uniform(*config.scale_range) * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ flip
    return A


def apply_global_transform(sample: dict, A: np.ndarray) -> dict:
    """A copy of the sample with A (4x4: rotation about z, mirrors, uniform scale) applied as the module says."""
    out = dict(sample)
    L = A[:3, :3]
    points = sample["points"].copy()
    points[:, :3] = (points[:, :3].astype(np.float64) @ L.T).astype(np.float32)
    out["points"] = points
    out["boxes_center"] = (sample["boxes_center"].astype(np.float64) @ L.T).astype(np.float32)
    yaw = sample["boxes_yaw"].astype(np.float64)
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=1) @ L[:2, :2].T
    out["boxes_yaw"] = np.arctan2(heading[:, 1], heading[:, 0]).astype(np.float32)
    scale = abs(np.linalg.det(L)) ** (1 / 3)
    out["boxes_size_wlh"] = (sample["boxes_size_wlh"] * scale).astype(np.float32)
    out["boxes_velocity"] = (sample["boxes_velocity"].astype(np.float64) @ L[:2, :2].T).astype(np.float32)
    A_inv = np.linalg.inv(A)
    for name in _LIDAR_TRANSFORMS:
        out[name] = sample[name] @ A_inv
    out["cam_T_camera_lidar"] = sample["cam_T_camera_lidar"] @ A_inv
    out["T_augment"] = A @ sample.get("T_augment", np.eye(4))
    return out


def augment_images(sample: dict, rng: np.random.Generator, config: Augment3DConfig) -> dict:
    """A copy of the sample with each camera's image resized and colour-jittered (no-op without images)."""
    if "images" not in sample:
        return sample
    out = dict(sample)
    out["images"] = list(sample["images"])
    for name in ("cam_K", "cam_image_size", "cam_scale", "boxes2d_xyxy"):
        out[name] = sample[name].copy()
    for c, image in enumerate(sample["images"]):
        if image is None:
            continue
        factor = rng.uniform(*config.image_scale_range)
        height, width = image.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        scale = np.array([size[0] / width, size[1] / height])
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        out["images"][c] = colour_jitter(resized, rng, config.colour)
        out["cam_K"][c] = scaled_intrinsics(sample["cam_K"][c], scale)
        out["cam_image_size"][c] = size
        out["cam_scale"][c] = sample["cam_scale"][c] * scale
        mine = sample["boxes2d_camera"] == c
        out["boxes2d_xyxy"][mine] = scaled_boxes(sample["boxes2d_xyxy"][mine], scale)
    return out


def augment_sample(sample: dict, rng: np.random.Generator, config: Augment3DConfig = Augment3DConfig()) -> dict:
    """Global 3D augmentation, then per-camera image augmentation."""
    return augment_images(apply_global_transform(sample, random_global_transform(rng, config)), rng, config)
