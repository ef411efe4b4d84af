"""vision_msgs Detection2DArray / Detection3DArray <-> core.detections box sets.

2D: `bbox.center.position.x/y` and `size_x/y` in pixels (vision_msgs 4.x). 3D: `bbox.center` pose, `bbox.size`
full extents (x=l, y=w, z=h), yaw about +z. Each detection carries one hypothesis (string class_id, score); when a
message has several, the highest-scoring one is read.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from ..core.detections import Detections2D, Detections3D
from ..core.geometry import quat_xyzw_to_yaw, yaw_to_quat_xyzw
from ..errors import DetectionError
from .factory import MessageFactory, default_factory, stamp_to_ns


def _hypothesis(factory: MessageFactory, class_id: str, score: float) -> Any:
    return factory("vision_msgs/msg/ObjectHypothesisWithPose",
                   hypothesis=factory("vision_msgs/msg/ObjectHypothesis", class_id=str(class_id),
                                      score=float(score)))


def _detection_array(factory: MessageFactory, kind: str, header: Any, bboxes: list,
                     dets: Detections2D | Detections3D) -> Any:
    """A Detection2DArray or Detection3DArray (kind '2D' / '3D') of the boxes' built bounding boxes, each detection
    with one hypothesis (class id, score) and its id, built in bulk (the hypotheses' default pose from one
    template)."""
    hypotheses = factory.many("vision_msgs/msg/ObjectHypothesis", class_id=[str(cls) for cls in dets.class_ids],
                              score=np.asarray(dets.scores, dtype=np.float64))
    results = factory.many("vision_msgs/msg/ObjectHypothesisWithPose", _hypothesis(factory, "", 0.0),
                           hypothesis=hypotheses)
    items = factory.many(f"vision_msgs/msg/Detection{kind}", factory(f"vision_msgs/msg/Detection{kind}", header=header),
                         results=[[result] for result in results], bbox=bboxes, id=[str(i) for i in dets.ids])
    return factory(f"vision_msgs/msg/Detection{kind}Array", header=header, detections=items)


def _top_hypothesis(det: Any, topic: str, index: int) -> tuple[str, float]:
    if len(det.results) == 0:
        raise DetectionError(topic, f"detections[{index}].results", "is empty",
                             "at least one hypothesis with a class_id and a score")
    best = max(det.results, key=lambda r: r.hypothesis.score)
    score = float(best.hypothesis.score)
    if not np.isfinite(score):
        raise DetectionError(topic, f"detections[{index}].results.hypothesis.score", f"is {score}",
                             "a finite score in [0, 1]")
    return str(best.hypothesis.class_id), score


def detections2d_to_msg(dets: Detections2D, factory: MessageFactory | None = None) -> Any:
    """A Detection2DArray with the set's stamp and frame (every part of every box in bulk, as detections3d_to_msg)."""
    factory = factory or default_factory()
    header = factory.header(dets.stamp_ns, dets.frame_id)
    boxes = np.asarray(dets.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centers = factory.many("vision_msgs/msg/Point2D", x=(boxes[:, 0] + boxes[:, 2]) / 2,
                           y=(boxes[:, 1] + boxes[:, 3]) / 2)
    poses = factory.many("vision_msgs/msg/Pose2D", factory("vision_msgs/msg/Pose2D"), position=centers)
    bboxes = factory.many("vision_msgs/msg/BoundingBox2D", factory("vision_msgs/msg/BoundingBox2D"), center=poses,
                          size_x=boxes[:, 2] - boxes[:, 0], size_y=boxes[:, 3] - boxes[:, 1])
    return _detection_array(factory, "2D", header, bboxes, dets)


def msg_to_detections2d(msg: Any, topic: str = "<unknown topic>") -> Detections2D:
    """A Detections2D from a Detection2DArray.

    Raises:
        DetectionError: a detection without hypotheses, or a negative / non-finite box size or centre.
    """
    n = len(msg.detections)
    boxes = np.zeros((n, 4))
    classes, scores, ids = [], np.zeros(n), []
    for i, det in enumerate(msg.detections):
        cx, cy = float(det.bbox.center.position.x), float(det.bbox.center.position.y)
        w, h = float(det.bbox.size_x), float(det.bbox.size_y)
        if not (np.isfinite([cx, cy, w, h]).all() and w >= 0 and h >= 0):
            raise DetectionError(topic, f"detections[{i}].bbox", f"is centre ({cx}, {cy}) size ({w}, {h})",
                                 "a finite centre and non-negative sizes in pixels")
        boxes[i] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        cls, scores[i] = _top_hypothesis(det, topic, i)
        classes.append(cls)
        ids.append(str(det.id))
    return Detections2D(boxes, classes, scores, str(msg.header.frame_id), stamp_to_ns(msg.header.stamp), ids)


def checked_detections2d(msg: Any, topic: str, image_size: tuple[int, int] | None, class_map: Mapping[str, str],
                         known_classes: Collection[str], max_boxes: int) -> tuple[Detections2D, Counter]:
    """The usable boxes of a Detection2DArray, each checked on its own, and {reason: boxes dropped}.

    One bad box costs only itself. A box is dropped (and counted) when it has no hypothesis, a non-finite centre or
    size, a score outside [0, 1] (or not finite), a class id unknown after `class_map` (counted per id), or no area
    left once clipped to the image (`image_size` = (width, height) px from the CameraInfo; None = not clipped).
    At most `max_boxes` boxes are kept, the highest scores (bounded work per message). Every node subscribed to
    the topic checks each message, so the per-box checks are scalar (math.isfinite, no max() over one hypothesis):
    numpy's per-call cost was most of the time on a message of ten boxes.
    """
    drops: Counter = Counter()
    boxes, classes, scores, ids = [], [], [], []
    for det in msg.detections:
        if len(det.results) == 0:
            drops["box without a hypothesis (results is empty)"] += 1
            continue
        best = det.results[0] if len(det.results) == 1 else max(
            det.results, key=lambda r: float(r.hypothesis.score) if math.isfinite(r.hypothesis.score) else -1)
        score = float(best.hypothesis.score)
        cx, cy = float(det.bbox.center.position.x), float(det.bbox.center.position.y)
        w, h = float(det.bbox.size_x), float(det.bbox.size_y)
        cls = class_map.get(str(best.hypothesis.class_id), str(best.hypothesis.class_id))
        if not (math.isfinite(cx) and math.isfinite(cy) and math.isfinite(w) and math.isfinite(h)):
            drops["box with a non-finite centre or size"] += 1
        elif not 0.0 <= score <= 1.0:
            drops["score outside [0, 1]"] += 1
        elif cls == "" and best.hypothesis.class_id != "":
            drops[f"class id {best.hypothesis.class_id!r} dropped by detections.class_map"] += 1
        elif cls not in known_classes:
            drops[f"unknown class id {cls!r}"] += 1
        else:
            boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            classes.append(cls)
            scores.append(score)
            ids.append(str(det.id))
    boxes_xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if image_size is not None:
        boxes_xyxy = np.clip(boxes_xyxy, 0.0, np.tile(np.asarray(image_size, dtype=np.float64), 2))
    dets = Detections2D(boxes_xyxy, classes, scores, str(msg.header.frame_id), stamp_to_ns(msg.header.stamp), ids)
    has_area = (dets.boxes_xyxy[:, 2] > dets.boxes_xyxy[:, 0]) & (dets.boxes_xyxy[:, 3] > dets.boxes_xyxy[:, 1])
    if not has_area.all():
        drops["box of zero or negative size (after clipping to the image)"] += int((~has_area).sum())
        dets = dets.select(has_area)
    if len(dets.scores) > max_boxes:
        drops[f"more than {max_boxes} boxes in one message (lowest scores dropped)"] += len(dets.scores) - max_boxes
        dets = dets.select(np.sort(np.argsort(-dets.scores, kind="stable")[:max_boxes]))
    return dets, drops


def detections3d_to_msg(dets: Detections3D, factory: MessageFactory | None = None) -> Any:
    """A Detection3DArray with the set's stamp and frame."""
    factory = factory or default_factory()
    header = factory.header(dets.stamp_ns, dets.frame_id)
    quats = yaw_to_quat_xyzw(dets.yaws)
    centers, sizes = np.asarray(dets.centers, dtype=np.float64), np.asarray(dets.sizes_lwh, dtype=np.float64)
    # every part of every box in bulk (MessageFactory.many), the parts the boxes share (header, the hypotheses'
    # default pose) from one template each
    positions = factory.many("geometry_msgs/msg/Point", x=centers[:, 0], y=centers[:, 1], z=centers[:, 2])
    orientations = factory.many("geometry_msgs/msg/Quaternion", x=quats[:, 0], y=quats[:, 1], z=quats[:, 2],
                                w=quats[:, 3])
    extents = factory.many("geometry_msgs/msg/Vector3", x=sizes[:, 0], y=sizes[:, 1], z=sizes[:, 2])
    poses = factory.many("geometry_msgs/msg/Pose", position=positions, orientation=orientations)
    boxes = factory.many("vision_msgs/msg/BoundingBox3D", center=poses, size=extents)
    return _detection_array(factory, "3D", header, boxes, dets)


def msg_to_detections3d(msg: Any, topic: str = "<unknown topic>") -> Detections3D:
    """A Detections3D from a Detection3DArray (yaw = heading of the box orientation).

    Raises:
        DetectionError: a detection without hypotheses, a zero quaternion, or a negative / non-finite size.
    """
    n = len(msg.detections)
    centers, sizes, quats = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 4))
    classes, scores, ids = [], np.zeros(n), []
    for i, det in enumerate(msg.detections):
        p, o, s = det.bbox.center.position, det.bbox.center.orientation, det.bbox.size
        centers[i] = (p.x, p.y, p.z)
        sizes[i] = (s.x, s.y, s.z)
        quats[i] = (o.x, o.y, o.z, o.w)
        if not (np.isfinite(sizes[i]).all() and (sizes[i] >= 0).all() and np.isfinite(centers[i]).all()):
            raise DetectionError(topic, f"detections[{i}].bbox", f"has centre {centers[i]} size {sizes[i]}",
                                 "a finite centre and non-negative sizes in metres")
        if not np.isfinite(quats[i]).all() or np.linalg.norm(quats[i]) < 1e-9:
            raise DetectionError(topic, f"detections[{i}].bbox.center.orientation", f"is {quats[i]}",
                                 "a unit quaternion (x, y, z, w)")
        cls, scores[i] = _top_hypothesis(det, topic, i)
        classes.append(cls)
        ids.append(str(det.id))
    yaws = quat_xyzw_to_yaw(quats) if n else np.zeros(0)
    return Detections3D(centers, sizes, yaws, classes, scores, str(msg.header.frame_id),
                        stamp_to_ns(msg.header.stamp), ids=ids)
