"""2D training boxes from a nuScenes-schema dataroot: every keyframe camera image of a split, with the
sample_annotation boxes of the 10 detection classes projected into it.

A box is kept when its visibility level (sample_annotation.visibility_token: 1 = 0-40 %, 2 = 40-60 %, 3 = 60-80 %,
4 = 80-100 % visible over the six cameras) is at least `min_visibility`, it has at least one LiDAR or radar point,
and its projection covers at least 2x2 pixels of the image. The 2D box is the extent of the projected 3D box
clipped at the near plane (depth 0.1 m) and then to the image [0, width] x [0, height].

Boxes come from nuscenes-devkit (`NuScenes.get_sample_data`: annotation boxes moved into the camera frame at the
image's ego pose); projection uses core.camera. Splits are resolved with the devkit's `get_scenes_of_split`:
predefined names (train, val, mini_train, ...) or names from `<dataroot>/<version>/splits.json`.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np

from ..core.camera import MIN_DEPTH_M, CameraModel, project_points
from ..core.detections import Detections2D
from ..data.category_map import CategoryCounts, category_map_for
from ..data.nuscenes_io import timestamp_ns
from ..errors import DatasetError
from ..eval.keyframes import split_scenes

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
# Lowest nuScenes visibility level kept for training (2: 40-60 % visible).
MIN_VISIBILITY = 2
# Smallest kept box side after clipping [px].
MIN_BOX_SIDE_PX = 2.0
_CORNER_PAIRS = np.array(list(itertools.combinations(range(8), 2)))


def projected_box(corners_cam: np.ndarray, camera: CameraModel) -> np.ndarray | None:
    """Image box (x0, y0, x1, y1) of a 3D box given by its 8 corners in the camera frame, or None if not visible.

    The part of the box in front of the near plane is the convex hull of the corners in front and of the points
    where segments between corners cross the plane; its projection's extent, clipped to the image, is the box.
    """
    corners = np.asarray(corners_cam, np.float64).reshape(8, 3)
    a, b = corners[_CORNER_PAIRS[:, 0]], corners[_CORNER_PAIRS[:, 1]]
    crossing = (a[:, 2] - MIN_DEPTH_M) * (b[:, 2] - MIN_DEPTH_M) < 0
    t = (MIN_DEPTH_M - a[crossing, 2]) / (b[crossing, 2] - a[crossing, 2])
    on_plane = a[crossing] + t[:, None] * (b[crossing] - a[crossing])
    on_plane[:, 2] = MIN_DEPTH_M + 1e-9
    points = np.vstack([corners[corners[:, 2] > MIN_DEPTH_M], on_plane])
    if len(points) == 0:
        return None
    uv = project_points(camera, points).uv
    box = np.concatenate([uv.min(0), uv.max(0)])
    box = np.clip(box, 0.0, [camera.width, camera.height, camera.width, camera.height])
    if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE_PX:
        return None
    return box


class NuScenesCameraBoxes:
    """Dataset of (RGB image, Detections2D ground truth) over the keyframe camera images of one split."""

    def __init__(self, dataroot: Path, version: str, split: str, cameras: tuple[str, ...] = CAMERAS,
                 min_visibility: int = MIN_VISIBILITY, verbose: bool = False) -> None:
        from nuscenes.nuscenes import NuScenes

        self.dataroot = Path(dataroot)
        table_dir = self.dataroot / version
        if not table_dir.is_dir():
            raise DatasetError(f"{table_dir}: no table directory for version {version!r} in dataroot {dataroot}")
        try:
            self.nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)
        except (AssertionError, FileNotFoundError, KeyError, ValueError) as exc:
            raise DatasetError(f"{table_dir}: nuscenes-devkit cannot load the dataroot ({exc})") from exc
        scene_names = set(split_scenes(self.nusc, split))
        self.min_visibility = min_visibility
        self.category_map = category_map_for(c["name"] for c in self.nusc.category)  # nuScenes or Lyft names
        self.category_counts = CategoryCounts()
        self.source = f"dataroot {self.dataroot} ({version}), split {split}, keyframe images, visibility >= " \
                      f"{min_visibility}"
        self.sample_data_tokens = [
            sample["data"][camera]
            for scene in self.nusc.scene if scene["name"] in scene_names
            for sample in self._samples(scene) for camera in cameras if camera in sample["data"]]
        if not self.sample_data_tokens:
            raise DatasetError(f"{table_dir}: split {split!r} names no scene with {'/'.join(cameras)} images in this "
                               f"dataroot (split scenes: {sorted(scene_names)[:5]}...)")

    def _samples(self, scene: dict):
        token = scene["first_sample_token"]
        while token:
            sample = self.nusc.get("sample", token)
            yield sample
            token = sample["next"]

    def __len__(self) -> int:
        return len(self.sample_data_tokens)

    def describe(self) -> str:
        return f"{self.source}: {len(self)} images"

    def __getitem__(self, index: int) -> tuple[np.ndarray, Detections2D]:
        token = self.sample_data_tokens[index]
        record = self.nusc.get("sample_data", token)
        path, boxes, K = self.nusc.get_sample_data(token)
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{path}: missing or unreadable camera image")
        camera = CameraModel(K, record["width"], record["height"], frame_id=record["channel"])
        boxes_xyxy, names = [], []
        for box in boxes:
            name = self.category_map.detection_class(box.name, self.category_counts)
            ann = self.nusc.get("sample_annotation", box.token)
            visibility = ann.get("visibility_token")  # Lyft's tables have no visibility and no point counts
            if name is None or (visibility is not None and int(visibility or 0) < self.min_visibility):
                continue
            if ann.get("num_lidar_pts", 1) + ann.get("num_radar_pts", 0) <= 0:
                continue
            xyxy = projected_box(box.corners().T, camera)
            if xyxy is not None:
                boxes_xyxy.append(xyxy)
                names.append(name)
        gt = Detections2D(np.array(boxes_xyxy).reshape(-1, 4), names, np.ones(len(names)), record["channel"],
                          timestamp_ns(record))
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), gt
