"""detector2d: a learned 2D detector over all cameras, one batched forward pass per camera firing cycle.

Backends (parameter `backend`, one of the learned-model parameters every learned node shares, nodes.learned):
`torch`, a CenterNet checkpoint (`model_path` empty = the one shipped in core/models/weights, trained on synthetic
renders only; else any checkpoint `perception3d train detector2d` wrote), and `onnx`, any ONNX detector of a
supported layout (our CenterNet contract, YOLOv8/11, YOLOX, DETR / RT-DETR; core/models/onnx_layouts.py) through
onnxruntime. Outputs one vision_msgs/Detection2DArray per camera, stamped with that image's stamp, boxes in
full-resolution pixels, lower-case nuScenes class ids: the model's class names go through `class_map` (default
COCO -> nuScenes); names that are no nuScenes detection class after it are dropped and counted (model_state).
A model that does not load, has the wrong classes or breaks the ONNX contract stops the node at start (ModelError);
an image that does not decode, has a pixel format other than 8-bit colour or grey, or whose size differs from its
CameraInfo removes only that camera from its firing cycle's batch (the host checks it and counts it: nodes.runner).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..core.classes import COCO_TO_DETECTION, DETECTION_CLASSES, parse_class_map
from ..core.detections import Detections2D
from ..core.models.backends import open_detector2d
from ..core.models.decode import DecodeParams
from ..core.models.onnx_layouts import BOX_FORMATS, LAYOUTS, RESIZE_MODES
from ..core.models.shipped import SHIPPED_CHECKPOINT
from ..errors import ConfigError
from ..msgs.detections import detections2d_to_msg
from .base import Frame, NodeDefinition, OutputSpec, StageTimer, TransformLookup
from .learned import LEARNED_MODEL_PARAMS, model_file, runner_options
from .params import Param

_DECODE = DecodeParams()
# Chosen on a seed-99 synthetic scene with the shipped checkpoint, full graph (thresholds 0.3 / 0.2 / 0.1):
# car AP@2m 0.44 / 0.50 / 0.55, segmentation car IoU 0.48 / 0.60 / 0.77, segmentation mIoU 0.38 / 0.40 / 0.37.
DEFAULT_SCORE_THRESHOLD = 0.1
SYNTHETIC_CHECKPOINT_WARNING = (
    "detector2d: running the shipped checkpoint, trained on synthetic renders only; for real cameras set model_path "
    "to your detector's ONNX file (backend: onnx)")
_LOG = logging.getLogger("perception3d")


class Detector2DNode(NodeDefinition):
    name = "detector2d"
    description = "learned multi-camera 2D detector (CenterNet checkpoint, or any ONNX detector: YOLO, YOLOX, DETR)"
    trigger = "camera"
    camera_streams = ("image", "camera_info")
    images_as_rgb = True
    parameters = (
        *LEARNED_MODEL_PARAMS,
        Param("score_threshold", "float", DEFAULT_SCORE_THRESHOLD,
              "detections scoring below this are dropped (low: near objects cut by the image border score low)",
              0.0, 1.0),
        Param("nms_iou", "float", _DECODE.nms_iou, "per-class NMS IoU", 0.0, 1.0),
        Param("top_k", "int", _DECODE.top_k, "peaks kept per image before NMS", 1, 1000),
        Param("onnx_layout", "string", "auto",
              "output layout of an onnx model: auto (from output names and shapes), centernet, yolov8 ((1, 4+C, N) "
              "cx cy w h + class scores; also YOLO11), yolox ((1, N, 5+C) with objectness), detr (boxes + "
              "scores/logits [+ labels])", choices=("auto", *LAYOUTS)),
        Param("onnx_box_format", "string", "auto",
              "box coordinates of an onnx model: auto (yolo: cxcywh in input pixels; detr: cxcywh_norm, fractions of "
              "the input), or cxcywh, xyxy, cxcywh_norm, xyxy_norm", choices=("auto", *BOX_FORMATS)),
        Param("onnx_input_size", "float_array", [],
              "[width, height] of an onnx model's input [px] when it is dynamic; [] = the model's (or its imgsz "
              "metadata)", 1.0, 8192.0),
        Param("onnx_mean", "float_array", [],
              "per-channel mean subtracted from 0-1 pixel values, in the model's channel order; [] = the model's "
              "`mean` metadata, else 0", -10.0, 10.0),
        Param("onnx_std", "float_array", [],
              "per-channel std dividing (value - mean); [] = the model's `std` metadata, else 1 (0.00392 = 1/255 feeds "
              "0-255 pixel values)", 1e-6, 1000.0),
        Param("onnx_channel_order", "string", "rgb", "channel order an onnx model expects", choices=("rgb", "bgr")),
        Param("onnx_resize", "string", "letterbox",
              "letterbox: aspect kept, image top-left, zero padding; stretch: resized to the input size",
              choices=RESIZE_MODES),
        Param("class_names", "string", "",
              "the model's class names in output order: comma-separated, or a text file with one name per line; "
              "'' = the model's metadata (class_names, or Ultralytics names), else COCO's 80 for onnx models"),
        Param("class_map", "string_array", [f"{k}:{v}" for k, v in COCO_TO_DETECTION.items()],
              "model class -> nuScenes detection class, 'from:to'; nuScenes class names pass unchanged, every other "
              "class is dropped (counted in the node's model state)"),
    )
    outputs = (OutputSpec("~/output/{camera}/detections", "vision_msgs/msg/Detection2DArray",
                          label_classes=DETECTION_CLASSES,
                          description="2D boxes per camera (bbox.center.position.x/y, full-resolution pixels)"),)

    def __init__(self, params, factory=None) -> None:
        super().__init__(params, factory)
        p = self.params
        path = model_file(p, SHIPPED_CHECKPOINT)
        if p["backend"] == "torch" and path.resolve() == SHIPPED_CHECKPOINT.resolve():
            _LOG.warning(SYNTHETIC_CHECKPOINT_WARNING)
        decode = DecodeParams(score_threshold=p["score_threshold"], top_k=p["top_k"], nms_iou=p["nms_iou"])
        try:
            self.class_map = parse_class_map(p["class_map"])
        except ValueError as exc:
            raise ConfigError(f"detector2d: class_map: {exc}") from exc
        size = p["onnx_input_size"]
        if size and len(size) != 2:
            raise ConfigError(f"detector2d: onnx_input_size has {len(size)} values; expected [width, height] or []")
        for key in ("onnx_mean", "onnx_std"):
            if p[key] and len(p[key]) != 3:
                raise ConfigError(f"detector2d: {key} has {len(p[key])} values; expected 3 (one per channel) or []")
        onnx_options = {"layout": p["onnx_layout"], "box_format": p["onnx_box_format"], "mean": p["onnx_mean"],
                        "std": p["onnx_std"], "channel_order": p["onnx_channel_order"], "resize": p["onnx_resize"]}
        self.detector = open_detector2d(p["backend"], path, runner_options(p), decode, _class_names(p["class_names"]),
                                        (int(size[0]), int(size[1])) if size else None,
                                        onnx_options if p["backend"] == "onnx" else None)
        self.dropped_classes: Counter = Counter()
        if p["warm_up"]:
            self.detector.warm_up(len(p["camera_names"]))

    def model_state(self) -> str:
        layout = getattr(self.detector, "layout", "centernet")
        state = f"{self.params['backend']} {layout} model, {len(self.detector.class_names)} classes"
        if self.dropped_classes:
            state += f"; dropped detections of classes without a nuScenes class: {dict(self.dropped_classes)}"
        return state

    def to_detection_classes(self, dets: Detections2D) -> Detections2D:
        """Class names through class_map; detections of no nuScenes detection class are dropped and counted."""
        mapped = dets.with_class_map(self.class_map)
        self.dropped_classes.update(c for c in dets.class_ids if self.class_map.get(c, c) not in DETECTION_CLASSES)
        return mapped.select(np.isin(mapped.class_ids, DETECTION_CLASSES))

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        cameras = list(frame.cameras.items())  # images checked against their CameraInfo by the host
        with timer.stage("infer"):
            detections = self.detector.detect([cam.image for _, cam in cameras],
                                              [cam.frame_id for _, cam in cameras],
                                              [cam.stamp_ns for _, cam in cameras])
        with timer.stage("post"):
            return [(f"~/output/{name}/detections", detections2d_to_msg(self.to_detection_classes(dets), self.factory))
                    for (name, _), dets in zip(cameras, detections)]


def _class_names(value: str) -> list[str] | None:
    """The class_names parameter: '' = None (the model's own), a text file (one name per line) or 'a,b,c'."""
    if not value.strip():
        return None
    path = Path(value)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [name.strip() for name in value.split(",")]
