"""segmentation: point cloud segmentation, geometric (2DDATA's box prior) or learned (2DDATA's network).

Learned mode (`mode: learned`): the SegNet of core.models.segnet (a BEV U-Net with a per-point head, trained with
2DDATA's Local Object Branch, which inference does not need) labels every usable point with one of the 16 lidarseg
classes and scores it with that class's probability; it reads the LiDAR only (the camera subscriptions stay, so the
graph's wiring does not change with the mode, but their messages are not used), unless the model was trained with a
box prior (`train segmentation --box-prior`): then each point's 2D box class and score (core.box_points) is an
input too. The model is the checkpoint shipped with the package (trained on the synthetic world only) unless
`model_path` names another checkpoint or an ONNX file (`perception3d export segmentation`).

Geometric mode: points that project into a 2D box and lie on that object's depth cluster take the box's class; the
ground surface (core.ground: local ground heights that follow grade, crown and kerbs) labels the road
(driveable_surface) and the ground raised beyond a kerb (sidewalk); everything else stays 0 ('ignore': the other
stuff classes need the learned mode). Outputs the input cloud with `label` (uint8, lidarseg evaluation index) and
`score` (float32) fields appended, with the input header; with several `lidar_names`, the merged cloud (all LiDARs'
points in the trigger LiDAR's frame, nodes.sweep) in place of the input cloud.
"""
from __future__ import annotations

import numpy as np

from ..core.box_points import point_boxes
from ..core.classes import IGNORE_LABEL, LIDARSEG_CLASSES
from ..core.frustum import ClusterParams
from ..core.ground import GroundParams
from ..core.models.shipped import SHIPPED_SEGMENTATION
from ..core.segmentation import segment_points
from ..msgs.pointcloud import array_to_pointcloud2, labelled_pointcloud2
from .base import Frame, NodeDefinition, OutputSpec, StageTimer, TransformLookup
from .learned import LEARNED_MODEL_PARAMS, model_file, runner_options
from .params import Param
from .shared_sweep import SHARED_SWEEP
from .sweep import (
    EGO_BOX_PARAM,
    LEARNED_MODE_PARAM,
    WORLD_FRAME_PARAM,
    Sweep,
    camera_boxes,
    camera_views,
    lidar_sweep,
)

_GROUND = GroundParams()
_CLUSTER = ClusterParams()


class SegmentationNode(NodeDefinition):
    name = "segmentation"
    description = "point cloud segmentation, 2D-box prior or learned (input points + label + score)"
    parameters = (
        LEARNED_MODE_PARAM,
        Param("ground.threshold_m", "float", _GROUND.threshold_m,
              "points this close to the ground surface are ground (driveable_surface or sidewalk) [m]", 0.01, 1.0),
        Param("ground.max_tilt_deg", "float", _GROUND.max_tilt_deg,
              "largest slope of the ground from the base frame's xy-plane [deg]", 0.0, 45.0),
        Param("ground.kerb_step_m", "float", _GROUND.kerb_step_m,
              "a sharper rise of the ground than this is a kerb: the level beyond it is sidewalk [m]", 0.02, 0.5),
        Param("cluster.gap_m", "float", _CLUSTER.gap_m,
              "a depth jump larger than this separates an object from what is behind it [m]", 0.1, 10.0),
        Param("min_object_height_m", "float", 0.05,
              "near-ground points higher than this above the ground surface can belong to an object in a box [m]",
              0.0, 1.0),
        EGO_BOX_PARAM,
        WORLD_FRAME_PARAM,
        *LEARNED_MODEL_PARAMS,
    )
    camera_streams = ("camera_info", "detections")
    merges_lidars = True
    outputs = (
        OutputSpec("~/output/pointcloud", "sensor_msgs/msg/PointCloud2", label_classes=LIDARSEG_CLASSES,
                   description="input points (with lidar_names merged: all LiDARs in the trigger frame) + label "
                               "(uint8, 0 = ignore, 1..16 lidarseg classes) + score"),
    )

    def __init__(self, params, factory=None) -> None:
        super().__init__(params, factory)
        p = self.params
        self.ground = GroundParams(threshold_m=p["ground.threshold_m"], max_tilt_deg=p["ground.max_tilt_deg"],
                                   kerb_step_m=p["ground.kerb_step_m"])
        self.cluster = ClusterParams(gap_m=p["cluster.gap_m"])
        self.network = None
        if p["mode"] == "learned":  # the model modules (torch) load only here: a geometric node never needs them
            from ..core.models.network_file import open_network
            from ..core.models.segnet import SEGNET_INPUTS, SegNetInference

            self.network = open_network(p["backend"], model_file(p, SHIPPED_SEGMENTATION), "segmentation",
                                        SegNetInference, SEGNET_INPUTS, runner_options(p))
            if p["warm_up"]:
                self.segment_learned(np.zeros((1, 3)), np.zeros(1, np.float32), (np.full(1, -1), np.zeros(1)))

    def model_state(self) -> str:
        if self.network is None:
            return "geometric mode"
        return f"learned mode: {self.network.backend} model {self.params['model_path'] or 'shipped checkpoint'}"

    def segment_learned(self, points_base: np.ndarray, intensity: np.ndarray,
                        boxes: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels (N,) uint8 1..16, scores (N,) float32) of the network for points (N, 3) in base_frame [m];
        boxes: each point's 2D box (class, score), for a model with a box prior."""
        from ..core.models.segnet import labels_from_probabilities, segnet_inputs

        inputs = segnet_inputs(points_base, intensity, self.network.config, boxes)
        (probabilities,) = self.network.run(*(x[None] for x in inputs))
        return labels_from_probabilities(probabilities[0])

    def _labels(self, frame: Frame, tf: TransformLookup, sweep: Sweep) -> tuple[np.ndarray, np.ndarray]:
        if self.network is not None:
            boxes = None
            if self.network.config.box_prior:
                boxes = point_boxes(sweep.usable_rows(sweep.points),
                                    camera_boxes(frame, tf, self.params["world_frame"]))
            return self.segment_learned(sweep.usable_rows(sweep.points_base), sweep.usable_rows(sweep.intensity), boxes)
        views = camera_views(frame, tf, self.params["world_frame"])
        points = sweep.usable_rows(sweep.points)
        context = SHARED_SWEEP.get(points, sweep.T_base_lidar, self.ground, frame.lidar.frame_id, frame.stamp_ns)
        return segment_points(points, views, sweep.T_base_lidar, self.ground, self.cluster,
                              self.params["min_object_height_m"], split=context.split,
                              frustums=context.frustums(views, self.cluster))

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        with timer.stage("pre"):
            sweep = lidar_sweep(frame, tf, self.params["base_frame"], self.params["ego_box_m"],
                                self.params["world_frame"])
        with timer.stage("infer"):
            labels, scores = self._labels(frame, tf, sweep)
        with timer.stage("post"):
            all_labels = np.full(len(sweep.points), IGNORE_LABEL, dtype=np.uint8)
            all_scores = np.zeros(len(sweep.points), dtype=np.float32)
            all_labels[sweep.usable], all_scores[sweep.usable] = labels, scores
            cloud = frame.lidar.msg if sweep.merged_cloud is None else array_to_pointcloud2(
                sweep.merged_cloud, frame.stamp_ns, frame.lidar.frame_id, self.factory)
            msg = labelled_pointcloud2(cloud, all_labels, all_scores, self.factory)
        return [("~/output/pointcloud", msg)]
