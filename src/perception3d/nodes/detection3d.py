"""detection3d: 2D-detection-guided 3D object detection, geometric (QAF2D anchors, LiDAR, KM3D) or learned.

Geometric mode needs no trained weights: every camera's 2D boxes are lifted to 3D anchors, the LiDAR points in
each box's frustum pick and fit the anchor, and duplicates seen by two cameras are merged (see core.lift3d). Then
standing objects are fused over the last `static_fusion.window_s` of sweeps in `world_frame` (core.static_fusion:
placed at their mean position, still classes scored by how many sweeps saw them, a standing object this sweep's 2D
boxes missed kept) and, while sweeps keep seeing them, placed by all their views, the nearest weighing most
(core.standing_memory: a parked car the ego has passed keeps the place its near views gave); with
`static_fusion.window_s: 0` each sweep stands alone (e.g. for a downstream tracker). Last, detections are followed
over the last `tracking.window_s` of sweeps (core.motion_tracks): a line fitted to each track's places gives the
velocity of those the fusion did not find standing (those have velocity 0), turns a moving box to face its travel
and sets its nuScenes attribute (moving or parked / standing / without rider) by its speed.

Learned mode (`mode: learned`): the query decoder of core.models.detr3d: BEV LiDAR features of this sweep and of the
one `history_lag_s` earlier (kept by the node, moved into this sweep's base frame through `world_frame`), queries
from the BEV heatmap's peaks plus QAF2D anchors lifted from the 2D boxes, LiDAR and camera RoI attention. It predicts
velocities (from the displacement between the two sweeps; unknown for the first sweep, after a gap, or without a
world frame) and nuScenes attributes. The model is the checkpoint shipped with the package (trained on the
synthetic world only) unless `model_path` names another checkpoint or an ONNX file (`perception3d export
detection3d`).

Outputs a vision_msgs/Detection3DArray in base_frame stamped with the sweep (Detection3D.id: the box's track id in
geometric mode, the same for one object from sweep to sweep while it is followed; otherwise '1', '2', ...), RViz
line-list box markers, and the motion MarkerArray (msgs.markers.motion_markers: per box with a known velocity one
ARROW from its centre to where it will be in 1 s, marker id = the box's Detection3D id, text = its attribute),
as vision_msgs has no velocity field.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..core.classes import DETECTION_CLASSES
from ..core.detections import Detections3D
from ..core.geometry import invert_transform, transform_points
from ..core.lift3d import LiftParams, detect_3d
from ..core.models.shipped import SHIPPED_DETECTION3D
from ..core.motion_tracks import MotionTrackParams, MotionTracks
from ..core.static_fusion import StaticFusion, StaticFusionParams
from ..errors import TransformError
from ..msgs.detections import detections3d_to_msg
from ..msgs.markers import box_markers, motion_markers
from .base import Frame, NodeDefinition, OutputSpec, StageTimer, TransformLookup
from .learned import LEARNED_MODEL_PARAMS, model_file, runner_options
from .params import Param
from .shared_sweep import SHARED_SWEEP
from .sweep import EGO_BOX_PARAM, LEARNED_MODE_PARAM, WORLD_FRAME_PARAM, Sweep, camera_boxes, camera_views, lidar_sweep

_DEFAULTS = LiftParams()
_FUSION = StaticFusionParams()
_TRACKS = MotionTrackParams()
HISTORY_S = 1.0  # sweeps older than this are forgotten


def message_ids(ids: np.ndarray) -> np.ndarray:
    """Detection3D ids (N,) for one message: a box's track id (geometric mode, core.motion_tracks) where it has one,
    else the next integer above every id of the message, so that each box's id is unique in it and an integer (the
    motion arrows' marker ids)."""
    out = ids.copy()
    missing = np.flatnonzero(out == "")
    first = max((int(i) for i in out if i != ""), default=0) + 1
    out[missing] = [str(first + k) for k in range(len(missing))]
    return out


class SweepHistory:
    """Recent sweeps of one node (stamp, T_world_base, usable points in base_frame, intensity), to find the sweep
    about `lag_s` before the current one and move it into the current base frame."""

    def __init__(self, lag_s: float) -> None:
        self.lag_s = lag_s
        self.sweeps: deque = deque()

    def add(self, stamp_ns: int, T_world_base: np.ndarray, points_base: np.ndarray, intensity: np.ndarray) -> None:
        if self.sweeps and stamp_ns <= self.sweeps[-1][0]:
            self.sweeps.clear()  # time went back (a replay restarted): the old sweeps are not this drive's past
        self.sweeps.append((stamp_ns, T_world_base, points_base, intensity))
        while self.sweeps[0][0] < stamp_ns - HISTORY_S * 1e9:
            self.sweeps.popleft()

    def earlier(self, stamp_ns: int, T_world_base: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                         float | None]:
        """(points (P, 3) in the base frame at stamp_ns, intensity, lag [s]) of the kept sweep whose age is nearest
        lag_s, if one is between half and twice lag_s old; (None, None, None) otherwise."""
        ages = [(stamp_ns - s[0]) * 1e-9 for s in self.sweeps]
        usable = [i for i, age in enumerate(ages) if 0.5 * self.lag_s <= age <= 2.0 * self.lag_s]
        if not usable:
            return None, None, None
        best = min(usable, key=lambda i: abs(ages[i] - self.lag_s))
        _, T_world_then, points, intensity = self.sweeps[best]
        return transform_points(invert_transform(T_world_base) @ T_world_then, points), intensity, ages[best]


class Detection3DNode(NodeDefinition):
    name = "detection3d"
    description = "2D-detection-guided 3D object detection (QAF2D + LiDAR + KM3D geometry, or the learned decoder)"
    parameters = (
        LEARNED_MODE_PARAM,
        Param("score_threshold", "float", 0.05, "detections scoring below this are dropped", 0.0, 1.0,
              read_only=False),
        Param("qaf2d.iou_threshold", "float", _DEFAULTS.iou_threshold,
              "projected-box IoU an anchor must exceed (boxes without LiDAR support)", 0.0, 1.0),
        Param("qaf2d.lidar_iou_threshold", "float", _DEFAULTS.lidar_iou_threshold,
              "projected-box IoU an anchor must exceed when LiDAR points judge it", 0.0, 1.0),
        Param("qaf2d.top_k", "int", _DEFAULTS.top_k, "anchors kept per 2D box and heading", 1, 20),
        Param("min_support_points", "int", _DEFAULTS.min_support_points,
              "object points a box needs before LiDAR decides its depth; a box placed by n points scores x n / "
              "(n + this) (pedestrians need 2 whatever this is: core.lift3d.LiftParams.min_support_by_class)", 1,
              1000),
        Param("nms_iou", "float", _DEFAULTS.nms_iou,
              "BEV IoU above which two same-class boxes (e.g. seen by two cameras) are merged", 0.0, 1.0),
        Param("history_lag_s", "float", 0.25,
              "learned mode: age of the earlier sweep the velocities come from (one between half and twice this old "
              "is used; the shipped model was trained with 0.2-0.3 s) [s]", 0.05, 1.0),
        Param("static_fusion.window_s", "float", _FUSION.window_s,
              "geometric mode: standing objects are fused over this much of the latest sweeps in world_frame (0: "
              "off, each sweep alone; core.static_fusion) [s]", 0.0, 5.0),
        Param("static_fusion.gate_m", "float", _FUSION.gate_m,
              "geometric mode: how far apart two sweeps' detections of one standing object may lie [m]", 0.1, 5.0),
        Param("static_fusion.static_age_s", "float", _FUSION.static_age_s,
              "geometric mode: an object matched within gate_m in a sweep this old or older stands still and is "
              "placed at its mean position [s]", 0.0, 5.0),
        Param("static_fusion.classes", "string_array", list(_FUSION.classes),
              "geometric mode: the classes fused over sweeps (pedestrians walk within the standing test's reach)",
              choices=DETECTION_CLASSES),
        Param("static_fusion.still_classes", "string_array", list(_FUSION.still_classes),
              "geometric mode: fused classes that never move: scored by the share of the window's sweeps that saw "
              "them", choices=DETECTION_CLASSES),
        Param("static_fusion.coast_min_share", "float", _FUSION.coast_min_share,
              "geometric mode: a standing object this sweep misses is kept when this share of the window's sweeps "
              "saw it", 0.0, 1.0),
        Param("static_fusion.remember_s", "float", _FUSION.remember_s,
              "geometric mode: a standing object is placed by all its views while sweeps keep seeing it, the nearest "
              "weighing most (1/range^2); unseen this long it is forgotten (0: the window's sweeps alone; "
              "core.standing_memory) [s]", 0.0, 60.0),
        Param("tracking.window_s", "float", _TRACKS.window_s,
              "geometric mode: detections are followed over this much of the latest sweeps in world_frame, and a "
              "line fitted to each track's places gives its velocity (0: off, no velocities; core.motion_tracks) "
              "[s]", 0.0, 5.0),
        Param("tracking.gate_m", "float", _TRACKS.gate_m,
              "geometric mode: how far from where its track's line puts it a detection may lie to join the track "
              "[m]", 0.1, 10.0),
        Param("tracking.classes", "string_array", list(_TRACKS.classes),
              "geometric mode: the classes followed: their boxes carry their track's id (barriers and cones get no "
              "velocity: they never move)", choices=DETECTION_CLASSES),
        Param("tracking.moving_speed_mps", "float", _TRACKS.moving_speed_mps,
              "geometric mode: from this speed on an object's attribute is vehicle.moving, cycle.with_rider or "
              "pedestrian.moving, below it vehicle.parked, cycle.without_rider or pedestrian.standing [m/s]",
              0.0, 10.0),
        Param("tracking.heading_speed_mps", "float", _TRACKS.heading_speed_mps,
              "geometric mode: from this speed on a box is turned to face its travel (a pedestrian's yaw becomes "
              "its direction of travel) [m/s]", 0.0, 10.0),
        Param("publish_markers", "bool", True, "also publish RViz box markers", read_only=False),
        EGO_BOX_PARAM,
        WORLD_FRAME_PARAM,
        *LEARNED_MODEL_PARAMS,
    )
    camera_streams = ("camera_info", "detections")
    merges_lidars = True
    outputs = (
        OutputSpec("~/output/objects", "vision_msgs/msg/Detection3DArray", label_classes=DETECTION_CLASSES,
                   description="3D boxes in base_frame, class_id = nuScenes detection class, id = the box's track id "
                               "(geometric mode: the same object keeps it from sweep to sweep), else '1', '2', ..."),
        OutputSpec("~/output/markers", "visualization_msgs/msg/MarkerArray",
                   description="box outlines (LINE_LIST) coloured by class, for RViz"),
        OutputSpec("~/output/motion", "visualization_msgs/msg/MarkerArray",
                   description="per box with a known velocity an ARROW from its centre to where it "
                               "is in 1 s [base_frame, m/s], marker id = Detection3D id, text = nuScenes attribute"),
    )

    def __init__(self, params, factory=None) -> None:
        super().__init__(params, factory)
        p = self.params
        self.lift = LiftParams(iou_threshold=p["qaf2d.iou_threshold"],
                               lidar_iou_threshold=p["qaf2d.lidar_iou_threshold"], top_k=p["qaf2d.top_k"],
                               min_support_points=p["min_support_points"], nms_iou=p["nms_iou"])
        self.network = None
        self.history = SweepHistory(p["history_lag_s"])
        self.static_fusion = StaticFusion(StaticFusionParams(
            p["static_fusion.window_s"], p["static_fusion.gate_m"], p["static_fusion.static_age_s"],
            tuple(p["static_fusion.classes"]), tuple(p["static_fusion.still_classes"]),
            p["static_fusion.coast_min_share"], p["static_fusion.remember_s"]), p["world_frame"])
        self.tracks = MotionTracks(MotionTrackParams(
            p["tracking.window_s"], p["tracking.gate_m"], tuple(p["tracking.classes"]),
            p["tracking.moving_speed_mps"], p["tracking.heading_speed_mps"]), p["world_frame"])
        if p["mode"] == "learned":  # the model modules (torch) load only here: a geometric node never needs them
            from ..core.models.detr3d import DETR3D_INPUTS, Detr3DInference
            from ..core.models.network_file import open_network

            self.network = open_network(p["backend"], model_file(p, SHIPPED_DETECTION3D), "detection3d",
                                        Detr3DInference, DETR3D_INPUTS, runner_options(p))
            if p["warm_up"]:
                self.detect_learned(np.zeros((1, 3)), np.zeros(1, np.float32), (None, None, None), [])

    def model_state(self) -> str:
        if self.network is None:
            return "geometric mode"
        return f"learned mode: {self.network.backend} model {self.params['model_path'] or 'shipped checkpoint'}"

    def detect_learned(self, points_base: np.ndarray, intensity: np.ndarray, earlier: tuple, cameras: list
                       ) -> Detections3D:
        """Detections in base_frame of the network for the usable points (N, 3) in base_frame [m], the earlier sweep
        (SweepHistory.earlier) and the cameras' boxes (core.box_points.CameraBoxes for base-frame points)."""
        from ..core.models.detr3d_inputs import anchor_rows, camera_inputs, decode, detr3d_bev

        config = self.network.config
        inputs = (detr3d_bev(points_base, intensity, earlier[0], earlier[1], config), anchor_rows(cameras, config),
                  *camera_inputs(cameras, config))
        outputs = self.network.run(*(x[None] for x in inputs))
        return decode(*(o[0] for o in outputs), config, self.params["score_threshold"], earlier[2],
                      self.params["base_frame"])

    def _world_pose(self, frame: Frame, tf: TransformLookup) -> np.ndarray | None:
        """T_world_base at the sweep's stamp; None without world_frame or a pose then."""
        p = self.params
        if not p["world_frame"]:
            return None
        try:
            return tf.lookup(p["world_frame"], p["base_frame"], frame.stamp_ns)
        except TransformError:
            return None

    def _learned(self, frame: Frame, tf: TransformLookup, sweep: Sweep) -> Detections3D:
        p = self.params
        points, intensity = sweep.usable_rows(sweep.points_base), sweep.usable_rows(sweep.intensity)
        # no pose for this sweep: no velocity now, and it cannot serve as a past sweep
        T_world_base = self._world_pose(frame, tf)
        earlier = (None, None, None) if T_world_base is None else self.history.earlier(frame.stamp_ns, T_world_base)
        if T_world_base is not None:
            self.history.add(frame.stamp_ns, T_world_base, points, intensity)
        cameras = camera_boxes(frame, tf, p["world_frame"], invert_transform(sweep.T_base_lidar))
        return self.detect_learned(points, intensity, earlier, cameras)

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        with timer.stage("pre"):
            sweep = lidar_sweep(frame, tf, self.params["base_frame"], self.params["ego_box_m"],
                                self.params["world_frame"])
            views = None if self.network is not None else camera_views(frame, tf, self.params["world_frame"])
        with timer.stage("infer"):
            if self.network is not None:
                dets = self._learned(frame, tf, sweep)
            else:
                points = sweep.usable_rows(sweep.points)
                context = SHARED_SWEEP.get(points, sweep.T_base_lidar, self.lift.ground, frame.lidar.frame_id,
                                           frame.stamp_ns)
                dets = detect_3d(points, views, sweep.T_base_lidar, self.params["base_frame"], frame.stamp_ns,
                                 self.lift, split=context.split, frustums=context.frustums(views, self.lift.cluster))
                T_world_base = self._world_pose(frame, tf)
                dets = self.static_fusion.fuse(dets, T_world_base, frame.stamp_ns)
                dets = self.tracks.follow(dets, T_world_base, frame.stamp_ns)
        with timer.stage("post"):
            dets = dets.select(dets.scores >= self.params["score_threshold"])
            dets.stamp_ns = frame.stamp_ns
            dets.ids = message_ids(dets.ids)
            out = [("~/output/objects", detections3d_to_msg(dets, self.factory)),
                   ("~/output/motion", motion_markers(dets, factory=self.factory))]
            if self.params["publish_markers"]:
                out.append(("~/output/markers", box_markers(dets, factory=self.factory)))
        return out
