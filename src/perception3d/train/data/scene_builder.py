"""One scene of a nuScenes-schema dataroot -> the arrays of its cache directory (layout.py).

A sample is one LIDAR_TOP sweep (keyframe or not), in time order. Per sample: the sweep's points (its own LiDAR
frame), T_global_lidar and T_ego_lidar, the 3D boxes in that LiDAR frame (keyframes: as annotated; other sweeps:
interpolated between the neighbouring keyframes by `nuscenes_io.interpolate_annotations`), and for every camera
the image nearest in time (within MAX_IMAGE_GAP_S). Images are stored once each, with their calibration, ego pose,
intrinsics and 2D boxes in the stored image's pixels. Keyframes add lidarseg labels (16 evaluation classes, 0 =
ignore) and the occupancy ground truth when the dataroot has them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.boxes import lwh_to_wlh
from ...core.classes import DETECTION_CLASSES, FINE_TO_COARSE
from ...core.detections import Detections3D
from ...core.geometry import invert_transform
from ...data.category_map import CategoryCounts, category_map_for
from ...data.nuscenes_io import (
    annotation_attributes,
    camera_model,
    data_path,
    ego_pose,
    interpolate_annotations,
    read_lidar_points,
    read_lidarseg,
    sample_annotations,
    scene_sample_data,
    sensor_extrinsics,
)
from ...data.occupancy_gt import load_occupancy, occupancy_relpath
from ...data.visibility2d import RenderedVisibility, visibility_relpath
from ...errors import DatasetError
from .images import PixelStack, image_scale, scaled_boxes, scaled_intrinsics

LIDAR_CHANNEL = "LIDAR_TOP"
MAX_IMAGE_GAP_S = 0.1  # an image further than this from a sweep is not that sweep's image


@dataclass
class AnnotatedKeyframe:
    """One annotated sample: LiDAR stamp [us], global boxes, their LiDAR point counts and attributes."""

    stamp_us: int
    boxes: Detections3D
    num_lidar_pts: np.ndarray
    attributes: dict[str, str]


@dataclass
class SceneStats:
    """Counts of one scene (the summary adds them up)."""

    samples: int = 0
    keyframes: int = 0
    boxes_per_class: Counter = field(default_factory=Counter)
    skipped_categories: Counter = field(default_factory=Counter)
    extrapolated_boxes: int = 0
    points_per_sweep: list[int] = field(default_factory=list)
    images: int = 0
    boxes2d: int = 0
    images_without_boxes2d: int = 0

    def to_json(self) -> dict:
        pts = self.points_per_sweep
        return {"samples": self.samples, "keyframes": self.keyframes,
                "boxes_per_class": dict(sorted(self.boxes_per_class.items())),
                "skipped_categories": dict(sorted(self.skipped_categories.items())),
                "extrapolated_boxes": self.extrapolated_boxes,
                "points": {"sum": int(sum(pts)), "min": int(min(pts)), "max": int(max(pts))},
                "images": self.images, "boxes2d": self.boxes2d, "images_without_boxes2d": self.images_without_boxes2d}


class SceneBuilder:
    """Builds the cache arrays of one scene; `sources()` lists the files they are made from."""

    def __init__(self, nusc: Any, scene: dict, cameras: list[str], attributes: list[str], images: str,
                 boxes2d, on_sample=None) -> None:
        self.on_sample = on_sample or (lambda: None)
        self.nusc, self.scene, self.cameras, self.images, self.boxes2d = nusc, scene, cameras, images, boxes2d
        self.attribute_index = {name: i for i, name in enumerate(attributes)}
        records = scene_sample_data(nusc, scene)
        self.lidar = [r for r in records if r["channel"] == LIDAR_CHANNEL]
        if not self.lidar:
            raise DatasetError(f"{Path(nusc.dataroot) / nusc.version}: scene {scene['name']} has no {LIDAR_CHANNEL} "
                               "sample_data")
        self.camera_records = {ch: [r for r in records if r["channel"] == ch] for ch in cameras}
        self.lidarseg_files = {r["sample_data_token"]: r["filename"] for r in getattr(nusc, "lidarseg", [])}
        self.visibility = RenderedVisibility.load(nusc.dataroot, nusc.version, scene["token"])  # None: rectangles
        self.stats = SceneStats()

    def _occupancy_path(self, sd: dict) -> Path:
        return Path(self.nusc.dataroot) / occupancy_relpath(self.nusc.version, sd["token"])

    def sources(self) -> list[Path]:
        """The data files the scene's arrays are made from."""
        files = [data_path(self.nusc, sd) for sd in self.lidar]
        for sd in self.lidar:
            if sd["is_key_frame"]:
                occupancy = self._occupancy_path(sd)
                files += [occupancy] if occupancy.is_file() else []
                if sd["token"] in self.lidarseg_files:
                    files.append(Path(self.nusc.dataroot) / self.lidarseg_files[sd["token"]])
        if self.images != "none":
            files += [data_path(self.nusc, sd) for records in self.camera_records.values() for sd in records]
        if self.visibility is not None:
            files.append(Path(self.nusc.dataroot) / visibility_relpath(self.nusc.version, self.scene["token"]))
        return files

    def _keyframes(self) -> list[AnnotatedKeyframe]:
        out = []
        category_map = category_map_for(c["name"] for c in self.nusc.category)  # nuScenes or Lyft names
        counts = CategoryCounts()
        token = self.scene["first_sample_token"]
        while token:
            sample = self.nusc.get("sample", token)
            if LIDAR_CHANNEL not in sample["data"]:
                raise DatasetError(f"{Path(self.nusc.dataroot) / self.nusc.version}/sample.json: sample {token} has "
                                   f"no {LIDAR_CHANNEL} keyframe")
            lidar = self.nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
            boxes, n_pts = sample_annotations(self.nusc, token, category_map, counts)
            out.append(AnnotatedKeyframe(int(round(lidar["timestamp"])), boxes, n_pts,
                                annotation_attributes(self.nusc, token)))
            token = sample["next"]
        self.stats.skipped_categories.update(counts.unmapped + counts.not_a_class)
        return out

    def build(self) -> dict[str, np.ndarray]:
        """All arrays of the scene (field names as in dataset.py's description)."""
        keyframes = self._keyframes()
        track = [(k.stamp_us * 1000, k.boxes) for k in keyframes]  # interpolate_annotations works in [ns]
        arrays: dict[str, list] = {name: [] for name in (
            "sample_token", "lidar_token", "timestamp_us", "is_key_frame", "T_global_lidar", "T_ego_lidar",
            "points", "lidarseg", "has_lidarseg", "occupancy", "occupancy_observed", "occupancy_index",
            "box_center", "box_size_wlh", "box_yaw", "box_velocity", "box_class", "box_attribute", "box_instance",
            "box_num_lidar_pts", "box_extrapolated", "image_index")}
        point_counts, box_counts, grid = [], [], None
        image_rows: dict[tuple[int, int], int] = {}
        for sd in self.lidar:
            stamp = int(round(sd["timestamp"]))
            T_ego_lidar = sensor_extrinsics(self.nusc, sd)
            T_global_lidar = ego_pose(self.nusc, sd) @ T_ego_lidar
            points = read_lidar_points(data_path(self.nusc, sd))[:, :4]
            key = bool(sd["is_key_frame"])
            has_seg = key and sd["token"] in self.lidarseg_files
            seg = (FINE_TO_COARSE[read_lidarseg(self.nusc, sd["token"], len(points))] if has_seg
                   else np.zeros(len(points), np.uint8))
            occupancy_index = -1
            if key and self._occupancy_path(sd).is_file():
                labels, sd_grid, meta = load_occupancy(self._occupancy_path(sd))
                if grid is not None and sd_grid != grid:
                    raise DatasetError(f"{self._occupancy_path(sd)}: occupancy grid {sd_grid} differs from the "
                                       f"scene's other keyframes ({grid})")
                grid = sd_grid
                occupancy_index = len(arrays["occupancy"])
                arrays["occupancy"].append(labels)
                arrays["occupancy_observed"].append(meta["observed"])
            self._add_boxes(arrays, keyframes, track, stamp, T_global_lidar)
            box_counts.append(len(arrays["box_class"][-1]))
            rows = []
            for c, channel in enumerate(self.cameras):
                j = self._nearest_image(channel, stamp)
                rows.append(-1 if j is None else image_rows.setdefault((c, j), len(image_rows)))
            for name, value in (("sample_token", sd["sample_token"]), ("lidar_token", sd["token"]),
                                ("timestamp_us", stamp), ("is_key_frame", key), ("T_global_lidar", T_global_lidar),
                                ("T_ego_lidar", T_ego_lidar), ("points", points), ("lidarseg", seg),
                                ("has_lidarseg", has_seg), ("occupancy_index", occupancy_index),
                                ("image_index", rows)):
                arrays[name].append(value)
            point_counts.append(len(points))
            self.stats.samples += 1
            self.stats.keyframes += key
            self.stats.points_per_sweep.append(len(points))
            self.on_sample()
        out = self._sample_arrays(arrays, point_counts, box_counts, grid)
        out.update(self._images(sorted(image_rows, key=image_rows.get), track))
        return out

    def _add_boxes(self, arrays: dict, keyframes: list[AnnotatedKeyframe], track: list, stamp: int,
                   T_global_lidar: np.ndarray) -> None:
        if track:
            boxes, extrapolated = interpolate_annotations(track, stamp * 1000)
        else:
            boxes, extrapolated = Detections3D.empty("map"), np.zeros(0, bool)
        boxes = boxes.transformed(invert_transform(T_global_lidar), LIDAR_CHANNEL)
        by_time = sorted(keyframes, key=lambda k: abs(k.stamp_us - stamp))
        attributes, n_pts = [], []
        for ident in boxes.ids:  # attribute and point count of the nearest keyframe annotating the instance
            k = next(k for k in by_time if ident in k.attributes)
            attributes.append(self.attribute_index.get(k.attributes[ident], -1))
            n_pts.append(k.num_lidar_pts[list(k.boxes.ids).index(ident)])
        arrays["box_center"].append(boxes.centers)
        arrays["box_size_wlh"].append(lwh_to_wlh(boxes.sizes_lwh))
        arrays["box_yaw"].append(boxes.yaws)
        arrays["box_velocity"].append(boxes.velocities)
        arrays["box_class"].append([DETECTION_CLASSES.index(c) for c in boxes.class_ids])
        arrays["box_attribute"].append(attributes)
        arrays["box_instance"].append(list(boxes.ids))
        arrays["box_num_lidar_pts"].append(n_pts)
        arrays["box_extrapolated"].append(extrapolated)
        self.stats.boxes_per_class.update(boxes.class_ids)
        self.stats.extrapolated_boxes += int(np.sum(extrapolated))

    def _nearest_image(self, channel: str, stamp_us: int) -> int | None:
        records = self.camera_records[channel]
        if not records:
            return None
        gaps = np.abs(np.array([r["timestamp"] for r in records], np.float64) - stamp_us)
        j = int(np.argmin(gaps))
        return j if gaps[j] <= MAX_IMAGE_GAP_S * 1e6 else None

    def _sample_arrays(self, arrays: dict, point_counts: list[int], box_counts: list[int], grid) -> dict:
        def ragged(name, dtype, width=None):
            parts = [np.asarray(a, dtype).reshape((-1, width) if width else -1) for a in arrays[name]]
            return np.concatenate(parts) if parts else np.zeros((0, width) if width else 0, dtype)

        out = {
            "sample_token": np.array(arrays["sample_token"], "U"), "lidar_token": np.array(arrays["lidar_token"], "U"),
            "timestamp_us": np.array(arrays["timestamp_us"], np.int64),
            "is_key_frame": np.array(arrays["is_key_frame"], bool),
            "T_global_lidar": np.array(arrays["T_global_lidar"], np.float64),
            "T_ego_lidar": np.array(arrays["T_ego_lidar"], np.float64),
            "point_offsets": np.concatenate([[0], np.cumsum(point_counts)]).astype(np.int64),
            "points": ragged("points", np.float32, 4), "lidarseg": ragged("lidarseg", np.uint8),
            "has_lidarseg": np.array(arrays["has_lidarseg"], bool),
            "occupancy_index": np.array(arrays["occupancy_index"], np.int32),
            "box_offsets": np.concatenate([[0], np.cumsum(box_counts)]).astype(np.int64),
            "box_center": ragged("box_center", np.float32, 3), "box_size_wlh": ragged("box_size_wlh", np.float32, 3),
            "box_yaw": ragged("box_yaw", np.float32), "box_velocity": ragged("box_velocity", np.float32, 2),
            "box_class": ragged("box_class", np.int16), "box_attribute": ragged("box_attribute", np.int16),
            "box_instance": np.array([i for ids in arrays["box_instance"] for i in ids], "U"),
            "box_num_lidar_pts": ragged("box_num_lidar_pts", np.int32),
            "box_extrapolated": ragged("box_extrapolated", bool),
            "image_index": np.array(arrays["image_index"], np.int32).reshape(len(point_counts), len(self.cameras)),
        }
        if grid is not None:
            out["occupancy"] = np.stack(arrays["occupancy"])
            out["occupancy_observed"] = np.stack(arrays["occupancy_observed"])
            out["occupancy_range"] = np.concatenate([grid.origin, np.asarray(grid.origin)
                                                     + np.asarray(grid.shape) * grid.resolution])
            out["occupancy_voxel_size"] = np.float64(grid.resolution)
        return out

    def _images(self, order: list[tuple[int, int]], track: list) -> dict[str, np.ndarray]:
        """The images table (one row per stored image) with its 2D boxes and pixels per camera."""
        rows: dict[str, list] = {name: [] for name in (
            "image_token", "image_camera", "image_timestamp_us", "image_T_global_camera", "image_T_ego_camera",
            "image_K", "image_size", "image_scale", "image_has_boxes2d", "image_pixel_row")}
        boxes, classes, scores, counts = [], [], [], []
        pixels: dict[str, PixelStack] = {}
        for c, j in order:
            sd = self.camera_records[self.cameras[c]][j]
            stamp = int(round(sd["timestamp"]))
            camera = camera_model(self.nusc, sd)
            T_ego_camera = sensor_extrinsics(self.nusc, sd)
            T_global_camera = ego_pose(self.nusc, sd) @ T_ego_camera
            path = data_path(self.nusc, sd) if self.images != "none" else None
            scale = image_scale(self.images, path, camera.width, camera.height)
            gt = interpolate_annotations(track, stamp * 1000)[0] if track else Detections3D.empty("map")
            visible = self.visibility.fractions(sd["token"], gt.ids) if self.visibility is not None else None
            dets = self.boxes2d.boxes(sd["token"], stamp * 1000, camera, invert_transform(T_global_camera), gt,
                                      visible)
            n = 0 if dets is None else len(dets)
            if dets is not None:
                boxes.append(scaled_boxes(dets.boxes_xyxy, scale))
                classes += [DETECTION_CLASSES.index(k) if k in DETECTION_CLASSES else -1 for k in dets.class_ids]
                scores.append(dets.scores)
            counts.append(n)
            self.stats.images += 1
            self.stats.boxes2d += n
            self.stats.images_without_boxes2d += dets is None
            size = np.round(np.array([camera.width, camera.height]) * scale).astype(np.int32)
            pixel_row = -1
            if path is not None:
                stack = pixels.setdefault(self.cameras[c], PixelStack(self.images, (int(size[1]), int(size[0]))))
                if stack.shape != (size[1], size[0]):
                    raise DatasetError(f"{path}: {size[0]}x{size[1]} px differs from the other {self.cameras[c]} "
                                       f"images of the scene ({stack.shape[1]}x{stack.shape[0]})")
                pixel_row = len(stack.files)
                stack.files.append((path, camera.width, camera.height))
            for name, value in (("image_token", sd["token"]), ("image_camera", c), ("image_timestamp_us", stamp),
                                ("image_T_global_camera", T_global_camera), ("image_T_ego_camera", T_ego_camera),
                                ("image_K", scaled_intrinsics(camera.K, scale)), ("image_size", size),
                                ("image_scale", scale), ("image_has_boxes2d", dets is not None),
                                ("image_pixel_row", pixel_row)):
                rows[name].append(value)
        out = {
            "image_token": np.array(rows["image_token"], "U"),
            "image_camera": np.array(rows["image_camera"], np.int16),
            "image_timestamp_us": np.array(rows["image_timestamp_us"], np.int64),
            "image_T_global_camera": np.array(rows["image_T_global_camera"], np.float64).reshape(-1, 4, 4),
            "image_T_ego_camera": np.array(rows["image_T_ego_camera"], np.float64).reshape(-1, 4, 4),
            "image_K": np.array(rows["image_K"], np.float64).reshape(-1, 3, 3),
            "image_size": np.array(rows["image_size"], np.int32).reshape(-1, 2),
            "image_scale": np.array(rows["image_scale"], np.float64).reshape(-1, 2),
            "image_has_boxes2d": np.array(rows["image_has_boxes2d"], bool),
            "image_pixel_row": np.array(rows["image_pixel_row"], np.int32),
            "box2d_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "box2d_xyxy": (np.concatenate(boxes) if boxes else np.zeros((0, 4))).astype(np.float32),
            "box2d_class": np.array(classes, np.int16),
            "box2d_score": (np.concatenate(scores) if scores else np.zeros(0)).astype(np.float32),
        }
        for channel, stack in pixels.items():
            out[f"pixels_{channel}"] = stack
        return out
