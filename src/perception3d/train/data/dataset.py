"""`SweepDataset`: the samples of a sweep cache by index, as dicts of numpy arrays (torch-free; a torch
DataLoader takes it as a map-style dataset), and `collate` for batches.

A sample (frames: `lidar` = this sweep's LIDAR_TOP frame, `global` = nuScenes global = ROS `map`, `ego` =
`base_link` at this sweep's time; `T_a_b` maps points from frame b into frame a; C = len(cameras)):

- scene, sample_token, lidar_token (str): the sweep's scene, the sample it belongs to, its sample_data token.
- timestamp_us (int): sweep stamp [us]; is_key_frame (bool): an annotated keyframe (else boxes are interpolated).
- points (float32 (P, 5)): x, y, z [m] in `lidar`, intensity, time lag [s]; this sweep's points first, then those
  of up to `past_sweeps` earlier sweeps moved through the ego poses. num_points_current (int): this sweep's rows.
- lidarseg (uint8 (num_points_current,)): 0 = ignore, 1..16 = LIDARSEG_CLASSES; all 0 unless has_lidarseg (bool).
- T_global_lidar, T_ego_lidar (float64 (4, 4)): the sweep's pose and the LiDAR calibration.
- boxes_center (float32 (B, 3)) [m] in `lidar`; boxes_size_wlh (float32 (B, 3)) nuScenes (w, l, h) [m];
  boxes_yaw (float32 (B,)) heading about +z of `lidar` [rad]; boxes_velocity (float32 (B, 2)) global velocity
  rotated into `lidar` axes [m/s], NaN unknown; boxes_class (int16 (B,)) index into DETECTION_CLASSES;
  boxes_attribute (int16 (B,)) index into the cache's `attributes`, -1 none; boxes_instance (str (B,)) instance
  token; boxes_num_lidar_pts (int32 (B,)) of the nearest keyframe's annotation, -1 unknown; boxes_extrapolated
  (bool (B,)) moved at its velocity from one keyframe rather than interpolated between two.
- cameras (list of C str): the cache's camera channels, sorted; cam_valid (bool (C,)): the camera has an image
  within 0.1 s of the sweep (the rows of the others are NaN / 0); cam_timestamp_us (int64 (C,)) image stamps.
- cam_K (float64 (C, 3, 3)): intrinsics in the pixels of the stored image (full resolution with images 'none');
  cam_image_size (int32 (C, 2)): (width, height) of those pixels; cam_scale (float64 (C, 2)): those pixels per
  original pixel, per axis.
- cam_T_camera_ego (float64 (C, 4, 4)): ego -> camera calibration. cam_T_camera_lidar (float64 (C, 4, 4)):
  `lidar` at the sweep time -> camera at its image time, through the global frame (ego motion included).
- images (list of C RGB uint8 (H, W, 3) or None): only when the cache has images.
- boxes2d_xyxy (float32 (M, 4)) in the stored image's pixels; boxes2d_camera (int16 (M,)) camera index;
  boxes2d_class (int16 (M,)) index into DETECTION_CLASSES, -1 other; boxes2d_score (float32 (M,)).
- occupancy (uint8 (X, Y, Z): 0 free, 1..16, 255 unknown) and occupancy_observed (bool (X, Y, Z)) in `ego`,
  occupancy_range (float64 (6,): xmin, ymin, zmin, xmax, ymax, zmax [m]), occupancy_voxel_size (float [m]):
  only on keyframes of dataroots that have occupancy ground truth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.box_points import CameraBoxes
from ...core.geometry import invert_transform
from ...errors import DatasetError
from . import layout
from .sweeps import stack_sweeps

# fields of a sample with one row per point / 3D box / 2D box; collate concatenates them and adds `<group>_batch`
RAGGED_GROUPS = {"points": ("points",), "lidarseg": ("lidarseg",),
                 "boxes": ("boxes_center", "boxes_size_wlh", "boxes_yaw", "boxes_velocity", "boxes_class",
                           "boxes_attribute", "boxes_instance", "boxes_num_lidar_pts", "boxes_extrapolated"),
                 "boxes2d": ("boxes2d_xyxy", "boxes2d_camera", "boxes2d_class", "boxes2d_score")}


class SweepDataset:
    """The samples of a cache built by `perception3d dataset build`, one per LiDAR sweep, in scene and time order.

    Args:
        cache: the cache directory.
        past_sweeps: earlier sweeps stacked into each sample's points (default: the build's --past-sweeps).
        images: return the cached images (when the cache has them).
    """

    def __init__(self, cache: str | Path, past_sweeps: int | None = None, images: bool = True) -> None:
        self.cache = Path(cache)
        manifest = layout.read_manifest(self.cache)
        if manifest is None or manifest.get("format") != layout.FORMAT_VERSION:
            raise DatasetError(f"{self.cache / layout.MANIFEST}: missing, unreadable or of another format version; "
                               "build the cache with `perception3d dataset build`")
        self.manifest = manifest
        self.past_sweeps = manifest["options"]["past_sweeps"] if past_sweeps is None else past_sweeps
        self.images = images and manifest["options"]["images"] != "none"
        self.cameras: list[str] = manifest["cameras"]
        self.classes: list[str] = manifest["classes"]
        self.attributes: list[str] = manifest["attributes"]
        self.scenes: list[str] = manifest["scene_order"]
        counts = [manifest["scenes"][name]["stats"]["samples"] for name in self.scenes]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        self._open: dict[str, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict:
        """Without the open memory maps (DataLoader workers reopen them instead of copying their data)."""
        return {**self.__dict__, "_open": {}}

    def locate(self, index: int) -> tuple[str, int]:
        """(scene name, sample index within the scene) of a dataset index."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of a {len(self)}-sample cache")
        index %= len(self)
        s = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.scenes[s], index - int(self._starts[s])

    def indices_where(self, flag: str) -> np.ndarray:
        """Dataset indices (int64, in order) of the samples whose per-sweep flag is set ('has_lidarseg',
        'is_key_frame')."""
        return np.concatenate([np.zeros(0, np.int64)] + [
            np.flatnonzero(self._scene(name)[flag]) + self._starts[s] for s, name in enumerate(self.scenes)])

    def scene_arrays(self, name: str) -> dict[str, np.ndarray]:
        """The memory-mapped arrays of one scene of the cache (layout.py names them)."""
        return self._scene(name)

    def _scene(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._open:
            self._open[name] = layout.open_scene(self.cache, name)
        return self._open[name]

    def __getitem__(self, index: int) -> dict:
        name, i = self.locate(index)
        a = self._scene(name)
        first = max(0, i - self.past_sweeps)
        sweeps = range(i, first - 1, -1)
        po = a["point_offsets"]
        points = stack_sweeps([a["points"][po[k]:po[k + 1]] for k in sweeps], [a["T_global_lidar"][k] for k in sweeps],
                              [int(a["timestamp_us"][k]) for k in sweeps])
        bo = slice(a["box_offsets"][i], a["box_offsets"][i + 1])
        sample = {
            "scene": name, "sample_token": str(a["sample_token"][i]), "lidar_token": str(a["lidar_token"][i]),
            "timestamp_us": int(a["timestamp_us"][i]), "is_key_frame": bool(a["is_key_frame"][i]),
            "points": points, "num_points_current": int(po[i + 1] - po[i]),
            "lidarseg": np.array(a["lidarseg"][po[i]:po[i + 1]]), "has_lidarseg": bool(a["has_lidarseg"][i]),
            "T_global_lidar": np.array(a["T_global_lidar"][i]), "T_ego_lidar": np.array(a["T_ego_lidar"][i]),
            **{f"boxes_{f}": np.array(a[f"box_{f}"][bo]) for f in (
                "center", "size_wlh", "yaw", "velocity", "class", "attribute", "num_lidar_pts", "extrapolated")},
            "boxes_instance": np.array(a["box_instance"][bo]).astype(str),
        }
        sample.update(self._cameras(a, i, sample["T_global_lidar"]))
        k = int(a["occupancy_index"][i])
        if k >= 0:
            sample.update(occupancy=np.array(a["occupancy"][k]),
                          occupancy_observed=np.array(a["occupancy_observed"][k]),
                          occupancy_range=np.array(a["occupancy_range"]),
                          occupancy_voxel_size=a["occupancy_voxel_size"].item())
        return sample

    def _cameras(self, a: dict[str, np.ndarray], i: int, T_global_lidar: np.ndarray) -> dict:
        n = len(self.cameras)
        rows = a["image_index"][i]
        nan44 = np.full((4, 4), np.nan)
        out = {"cameras": list(self.cameras), "cam_valid": rows >= 0,
               "cam_timestamp_us": np.zeros(n, np.int64), "cam_K": np.full((n, 3, 3), np.nan),
               "cam_image_size": np.zeros((n, 2), np.int32), "cam_scale": np.full((n, 2), np.nan),
               "cam_T_camera_ego": np.stack([nan44] * n), "cam_T_camera_lidar": np.stack([nan44] * n)}
        images: list[np.ndarray | None] = [None] * n
        boxes, cams, classes, scores = [], [], [], []
        for c, r in enumerate(rows):
            if r < 0:
                continue
            out["cam_timestamp_us"][c] = a["image_timestamp_us"][r]
            out["cam_K"][c] = a["image_K"][r]
            out["cam_image_size"][c] = a["image_size"][r]
            out["cam_scale"][c] = a["image_scale"][r]
            out["cam_T_camera_ego"][c] = invert_transform(a["image_T_ego_camera"][r])
            out["cam_T_camera_lidar"][c] = invert_transform(a["image_T_global_camera"][r]) @ T_global_lidar
            b = slice(a["box2d_offsets"][r], a["box2d_offsets"][r + 1])
            boxes.append(np.array(a["box2d_xyxy"][b]))
            classes.append(np.array(a["box2d_class"][b]))
            scores.append(np.array(a["box2d_score"][b]))
            cams.append(np.full(b.stop - b.start, c, np.int16))
            if self.images:
                images[c] = np.array(a[f"pixels_{self.cameras[c]}"][a["image_pixel_row"][r]])
        out.update(boxes2d_xyxy=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
                   boxes2d_camera=np.concatenate(cams) if cams else np.zeros(0, np.int16),
                   boxes2d_class=np.concatenate(classes) if classes else np.zeros(0, np.int16),
                   boxes2d_score=np.concatenate(scores) if scores else np.zeros(0, np.float32))
        if self.images:
            out["images"] = images
        return out


def sample_camera_boxes(sample: dict, T_lidar_points: np.ndarray | None = None) -> list[CameraBoxes]:
    """The 2D boxes and calibration of a sample's cameras that have an image, as core.box_points.CameraBoxes for
    points in `lidar`, or in another frame given T_lidar_points (that frame -> `lidar`, e.g. inv(T_ego_lidar))."""
    cameras = []
    for c in np.flatnonzero(sample["cam_valid"]):
        mine = sample["boxes2d_camera"] == c
        width, height = (int(v) for v in sample["cam_image_size"][c])
        T = sample["cam_T_camera_lidar"][c] if T_lidar_points is None else sample["cam_T_camera_lidar"][c] @ \
            T_lidar_points
        cameras.append(CameraBoxes(sample["cam_K"][c], T, width, height, sample["boxes2d_xyxy"][mine],
                                   sample["boxes2d_class"][mine].astype(np.int64), sample["boxes2d_score"][mine]))
    return cameras


def collate(samples: list[dict]) -> dict:
    """A batch: per-point / per-box fields concatenated with `<group>_batch` (int64 sample index in the batch:
    points_batch, lidarseg_batch, boxes_batch, boxes2d_batch); arrays of equal shape stacked; everything else
    (strings, images, occupancy of a batch that mixes keyframes and sweeps) as lists."""
    batch: dict = {}
    ragged = {f: group for group, fields in RAGGED_GROUPS.items() for f in fields}
    for group, fields in RAGGED_GROUPS.items():
        batch[f"{group}_batch"] = np.concatenate(
            [np.full(len(s[fields[0]]), b, np.int64) for b, s in enumerate(samples)])
        for f in fields:
            batch[f] = np.concatenate([s[f] for s in samples])
    keys = [k for k in samples[0] if k not in ragged]
    for k in keys:
        values = [s.get(k) for s in samples]
        if all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1:
            batch[k] = np.stack(values)
        elif all(isinstance(v, (bool, int, float)) and not isinstance(v, str) for v in values):
            batch[k] = np.array(values)
        else:
            batch[k] = values
    return batch
