"""detection3d: 2D-detection-guided 3D object detection (QAF2D anchors, LiDAR frustum clusters, KM3D refinement).

Geometric mode needs no trained weights: every camera's 2D boxes are lifted to 3D anchors, the LiDAR points in
each box's frustum pick and fit the anchor, and duplicates seen by two cameras are merged (see core.lift3d).
Outputs a vision_msgs/Detection3DArray in base_frame stamped with the sweep, and RViz line-list markers.
"""
from __future__ import annotations

from ..core.classes import DETECTION_CLASSES
from ..core.lift3d import LiftParams, detect_3d
from ..msgs.detections import detections3d_to_msg
from ..msgs.markers import box_markers
from .base import Frame, NodeDefinition, OutputSpec, StageTimer, TransformLookup
from .params import Param
from .sweep import EGO_BOX_PARAM, GEOMETRIC_MODE_PARAM, WORLD_FRAME_PARAM, camera_views, lidar_sweep

_DEFAULTS = LiftParams()


class Detection3DNode(NodeDefinition):
    name = "detection3d"
    description = "2D-detection-guided 3D object detection (QAF2D + LiDAR + KM3D geometry)"
    parameters = (
        GEOMETRIC_MODE_PARAM,
        Param("score_threshold", "float", 0.05, "detections scoring below this are dropped", 0.0, 1.0,
              read_only=False),
        Param("qaf2d.iou_threshold", "float", _DEFAULTS.iou_threshold,
              "projected-box IoU an anchor must exceed (boxes without LiDAR support)", 0.0, 1.0),
        Param("qaf2d.lidar_iou_threshold", "float", _DEFAULTS.lidar_iou_threshold,
              "projected-box IoU an anchor must exceed when LiDAR points judge it", 0.0, 1.0),
        Param("qaf2d.top_k", "int", _DEFAULTS.top_k, "anchors kept per 2D box and heading", 1, 20),
        Param("min_support_points", "int", _DEFAULTS.min_support_points,
              "object points a box needs before LiDAR decides its depth", 1, 1000),
        Param("nms_iou", "float", _DEFAULTS.nms_iou,
              "BEV IoU above which two same-class boxes (e.g. seen by two cameras) are merged", 0.0, 1.0),
        Param("publish_markers", "bool", True, "also publish RViz box markers", read_only=False),
        EGO_BOX_PARAM,
        WORLD_FRAME_PARAM,
    )
    camera_streams = ("camera_info", "detections")
    merges_lidars = True
    outputs = (
        OutputSpec("~/output/objects", "vision_msgs/msg/Detection3DArray", label_classes=DETECTION_CLASSES,
                   description="3D boxes in base_frame, class_id = nuScenes detection class"),
        OutputSpec("~/output/markers", "visualization_msgs/msg/MarkerArray",
                   description="box outlines (LINE_LIST) coloured by class, for RViz"),
    )

    def __init__(self, params, factory=None) -> None:
        super().__init__(params, factory)
        p = self.params
        self.lift = LiftParams(iou_threshold=p["qaf2d.iou_threshold"],
                               lidar_iou_threshold=p["qaf2d.lidar_iou_threshold"], top_k=p["qaf2d.top_k"],
                               min_support_points=p["min_support_points"], nms_iou=p["nms_iou"])

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        with timer.stage("pre"):
            sweep = lidar_sweep(frame, tf, self.params["base_frame"], self.params["ego_box_m"],
                                self.params["world_frame"])
            views = camera_views(frame, tf, self.params["world_frame"])
        with timer.stage("infer"):
            dets = detect_3d(sweep.points[sweep.usable], views, sweep.T_base_lidar, self.params["base_frame"],
                             frame.stamp_ns, self.lift)
        with timer.stage("post"):
            dets = dets.select(dets.scores >= self.params["score_threshold"])
            out = [("~/output/objects", detections3d_to_msg(dets, self.factory))]
            if self.params["publish_markers"]:
                out.append(("~/output/markers", box_markers(dets, factory=self.factory)))
        return out
