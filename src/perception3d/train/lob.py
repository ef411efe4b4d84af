"""Which LiDAR points feed 2DDATA's Local Object Branch: the points inside 2D detection boxes (methods.md §3).

A point belongs to a box when its projection into the box's camera lies inside the box (in front of the camera,
inside the image). A point inside several boxes (overlapping boxes, or boxes of two cameras) takes the box whose
points are nearest to the camera (median depth of the box's points), as the occluding object is the one seen.
Points in no box skip the branch. Pure geometry, no weights.
"""
from __future__ import annotations

import numpy as np

from ..core.frustum import points_in_boxes_2d

MIN_DEPTH_M = 0.5


def lob_box_classes(points_lidar: np.ndarray, cam_K: np.ndarray, cam_T_camera_lidar: np.ndarray,
                    cam_image_size: np.ndarray, cam_valid: np.ndarray, boxes_xyxy: np.ndarray,
                    boxes_camera: np.ndarray, boxes_class: np.ndarray) -> np.ndarray:
    """(N,) int64 detection-class index of each point's box, -1 for points in no box.

    Args (a SweepDataset sample's fields): points_lidar (N, >=3) [m] in `lidar`; cam_K (C, 3, 3) intrinsics in the
    boxes' pixels; cam_T_camera_lidar (C, 4, 4); cam_image_size (C, 2) (width, height) [px]; cam_valid (C,);
    boxes_xyxy (M, 4) [px]; boxes_camera (M,) camera index; boxes_class (M,) DETECTION_CLASSES index, -1 other
    (such boxes are not used).
    """
    xyz = np.asarray(points_lidar, dtype=np.float64)[:, :3]
    box_class = np.full(len(xyz), -1, dtype=np.int64)
    best_depth = np.full(len(xyz), np.inf)
    homogeneous = np.concatenate([xyz, np.ones((len(xyz), 1))], axis=1)
    for cam in np.flatnonzero(cam_valid):
        mine = np.flatnonzero((boxes_camera == cam) & (boxes_class >= 0))
        if len(mine) == 0:
            continue
        p = homogeneous @ cam_T_camera_lidar[cam].T
        front = np.flatnonzero(p[:, 2] > MIN_DEPTH_M)
        uvw = p[front, :3] @ cam_K[cam].T
        uv = uvw[:, :2] / uvw[:, 2:3]
        width, height = cam_image_size[cam]
        seen = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        front, uv = front[seen], uv[seen]
        point, box = points_in_boxes_2d(uv, boxes_xyxy[mine])
        if len(point) == 0:
            continue
        depth = p[front[point], 2]
        median = np.array([np.median(depth[box == b]) if np.any(box == b) else np.inf for b in range(len(mine))])
        order = np.argsort(median[box], kind="stable")  # nearest box first, so np.unique keeps it
        point, box = point[order], box[order]
        first_point, first = np.unique(point, return_index=True)
        index, near = front[first_point], median[box[first]]
        closer = near < best_depth[index]
        best_depth[index[closer]] = near[closer]
        box_class[index[closer]] = boxes_class[mine[box[first[closer]]]]
    return box_class
