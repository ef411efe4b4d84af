"""2DDATA box prior without a network: LiDAR point labels from 2D boxes and a ground plane.

1. Ground: a RANSAC plane (core.ground) with gravity-up taken from T_base_lidar; its inliers are
   `driveable_surface` (11) with score 1 - |distance| / threshold.
2. Objects: the remaining points are projected into every camera; a point inside a 2D box and on the box's object
   depth cluster (core.frustum: depth gating keeps the background behind the object out) takes the box's class
   (detection class -> lidarseg index, core.classes.DETECTION_TO_LIDARSEG) and the box's 2D score. A point in
   several boxes (overlapping boxes, or two cameras) takes the box whose object is nearest (median cluster
   depth), as the occluding object is the one seen.
3. Everything else is 0 = ignore/unlabelled with score 0: stuff classes (sidewalk, terrain, manmade,
   vegetation, other_flat) are beyond a box prior and need the learned mode.
Boxes with class names outside the 10 detection classes are skipped.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classes import DETECTION_TO_LIDARSEG, IGNORE_LABEL, LIDARSEG_CLASSES
from .frustum import (
    CameraView,
    ClusterParams,
    check_points,
    class_depth_extent,
    expected_depths,
    object_points_in_boxes,
    project_cloud,
)
from .ground import GroundParams, fit_ground_plane

GROUND_LABEL = LIDARSEG_CLASSES.index("driveable_surface")


def segment_points(points_lidar: np.ndarray, views: Sequence[CameraView], T_base_lidar: np.ndarray,
                   ground: GroundParams | None = None,
                   cluster: ClusterParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-point lidarseg labels and scores of one sweep.

    Args:
        points_lidar: (N, >=3) points in the LiDAR frame [m] (non-finite rows stay unlabelled).
        views: per camera: 2D detections, camera model and T_cam_lidar.
        T_base_lidar: 4x4 LiDAR -> base_link transform (gives the up direction for the ground fit).
        ground: ground plane fit parameters; cluster: object depth cluster parameters (defaults when None).
    Returns:
        labels (N,) uint8 in 0..16 (core.classes.LIDARSEG_CLASSES) and scores (N,) float32 in [0, 1].
    """
    ground = ground or GroundParams()
    cluster = cluster or ClusterParams()
    xyz, finite = check_points(points_lidar, "segment_points")
    labels = np.full(len(xyz), IGNORE_LABEL, dtype=np.uint8)
    scores = np.zeros(len(xyz), dtype=np.float32)
    if not np.all(finite):  # non-finite returns stay unlabelled
        labels[finite], scores[finite] = segment_points(xyz[finite], views, T_base_lidar, ground, cluster)
        return labels, scores
    pts = xyz
    up = np.asarray(T_base_lidar, dtype=np.float64)[2, :3]
    plane, is_ground = fit_ground_plane(pts, up, ground.threshold_m, ground.max_tilt_deg, seed=ground.seed)
    if plane is not None:
        labels[is_ground] = GROUND_LABEL
        scores[is_ground] = 1.0 - np.abs(plane.distance(pts[is_ground])) / ground.threshold_m
    candidates = np.flatnonzero(~is_ground)
    hit_point, hit_label, hit_score, hit_depth = [], [], [], []
    for view in views:
        dets = view.detections
        known = np.array([c in DETECTION_TO_LIDARSEG for c in dets.class_ids], dtype=bool)
        if not np.any(known) or len(candidates) == 0:
            continue
        dets = dets.select(known)
        cloud = project_cloud(pts[candidates], view.camera, view.T_cam_lidar)
        extent = np.array([class_depth_extent(c) for c in dets.class_ids])
        bp = object_points_in_boxes(cloud.uv, cloud.points_cam[:, 2], dets.boxes_xyxy, extent,
                                    expected_depths(dets.boxes_xyxy, dets.class_ids, view.camera), cluster)
        box_label = np.array([DETECTION_TO_LIDARSEG[c] for c in dets.class_ids], dtype=np.uint8)
        on = bp.on_object
        hit_point.append(candidates[cloud.index[bp.point[on]]])
        hit_label.append(box_label[bp.box[on]])
        hit_score.append(dets.scores[bp.box[on]])
        hit_depth.append(bp.depth_median[bp.box[on]])
    if hit_point:
        point = np.concatenate(hit_point)
        depth = np.concatenate(hit_depth)
        order = np.lexsort((depth, point))
        point, first = np.unique(point[order], return_index=True)
        pick = order[first]
        labels[point] = np.concatenate(hit_label)[pick]
        scores[point] = np.concatenate(hit_score)[pick]
    return labels, scores
