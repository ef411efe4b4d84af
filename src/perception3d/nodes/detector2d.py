"""detector2d: a learned 2D detector over all cameras, one batched forward pass per camera firing cycle.

Backends (parameter `backend`): `builtin`, the package's CenterNet checkpoint (`model_path` empty = the one shipped
in core/models/weights, else any checkpoint `perception3d train detector2d` wrote), and `onnx`, any model of the
ONNX contract (core/models/onnx_backend.py) through onnxruntime. Outputs one vision_msgs/Detection2DArray per
camera, stamped with that image's stamp, boxes in full-resolution pixels, lower-case nuScenes class ids.
A model that does not load, has the wrong classes or breaks the ONNX contract stops the node at start (ModelError);
an image whose size differs from its CameraInfo, or that does not decode, drops that frame (counted).
"""
from __future__ import annotations

from pathlib import Path

from ..core.classes import DETECTION_CLASSES
from ..core.models.backends import BACKENDS, open_detector2d
from ..core.models.checkpoint import SHIPPED_CHECKPOINT
from ..core.models.decode import DecodeParams
from ..errors import ImageError
from ..msgs.detections import detections2d_to_msg
from .base import Frame, NodeDefinition, OutputSpec, StageTimer, TransformLookup
from .params import Param

_DECODE = DecodeParams()
# Chosen on a seed-99 synthetic scene with the shipped checkpoint, full graph (thresholds 0.3 / 0.2 / 0.1):
# car AP@2m 0.44 / 0.50 / 0.55, segmentation car IoU 0.48 / 0.60 / 0.77, segmentation mIoU 0.38 / 0.40 / 0.37.
DEFAULT_SCORE_THRESHOLD = 0.1
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"  # what core.models.inference.resolve_device takes


class Detector2DNode(NodeDefinition):
    name = "detector2d"
    description = "learned multi-camera 2D detector (CenterNet; torch checkpoint or ONNX)"
    trigger = "camera"
    camera_streams = ("image", "camera_info")
    parameters = (
        Param("backend", "string", "builtin", "builtin: a CenterNet checkpoint; onnx: a model of the ONNX contract",
              choices=BACKENDS),
        Param("model_path", "string", "",
              "checkpoint (builtin) or .onnx file; empty = the checkpoint shipped with the package (builtin only)"),
        Param("device", "string", "auto", "auto (CUDA when available), cpu, cuda or cuda:N (GPU number N)",
              pattern=DEVICE_PATTERN),
        Param("score_threshold", "float", DEFAULT_SCORE_THRESHOLD,
              "detections scoring below this are dropped (low: near objects cut by the image border score low)",
              0.0, 1.0),
        Param("nms_iou", "float", _DECODE.nms_iou, "per-class NMS IoU", 0.0, 1.0),
        Param("top_k", "int", _DECODE.top_k, "peaks kept per image before NMS", 1, 1000),
        Param("threads", "int", 0, "CPU threads for torch inference (0 = torch's default)", 0, 64),
        Param("warm_up", "bool", True, "run one batch at start so the first frame pays no allocation"),
    )
    outputs = (OutputSpec("~/output/{camera}/detections", "vision_msgs/msg/Detection2DArray",
                          label_classes=DETECTION_CLASSES,
                          description="2D boxes per camera (bbox.center.position.x/y, full-resolution pixels)"),)

    def __init__(self, params, factory=None) -> None:
        super().__init__(params, factory)
        p = self.params
        if p["threads"]:
            import torch

            torch.set_num_threads(p["threads"])
        path = Path(p["model_path"]) if p["model_path"] else SHIPPED_CHECKPOINT
        decode = DecodeParams(score_threshold=p["score_threshold"], top_k=p["top_k"], nms_iou=p["nms_iou"])
        self.detector = open_detector2d(p["backend"], path, p["device"], decode)
        if p["warm_up"]:
            self.detector.warm_up(len(p["camera_names"]))

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        with timer.stage("pre"):
            cameras = list(frame.cameras.items())
            for name, cam in cameras:
                height, width = cam.image.shape[:2]
                if cam.camera is not None and (width, height) != (cam.camera.width, cam.camera.height):
                    raise ImageError(f"/{name}/image", "width/height", f"is {width}x{height}",
                                     f"the CameraInfo size {cam.camera.width}x{cam.camera.height}")
        with timer.stage("infer"):
            detections = self.detector.detect([cam.image for _, cam in cameras],
                                              [cam.frame_id for _, cam in cameras],
                                              [cam.stamp_ns for _, cam in cameras])
        with timer.stage("post"):
            return [(f"~/output/{name}/detections", detections2d_to_msg(dets, self.factory))
                    for (name, _), dets in zip(cameras, detections)]
