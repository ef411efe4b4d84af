"""Output layouts of the 2D detectors users export to ONNX, decoded with numpy into Detections2D.

Layouts (N = batch, C = classes, A = anchors / grid cells, Q = queries; boxes in network-input pixels unless the
box format says `_norm`, i.e. fractions of the input width / height):

- `centernet`: our own contract (core.models.onnx_backend): `heatmap`, `size`, `offset` grids; decoded by
  core.models.decode.
- `yolov8` (Ultralytics YOLOv8 / YOLO11 export): one output (N, 4 + C, A): rows cx, cy, w, h, then one score per
  class (already sigmoid). Score = best class score. No NMS in the model: per-class NMS here.
- `yolox` (YOLOX export with decoded outputs): one output (N, A, 5 + C): cx, cy, w, h, objectness, class scores.
  Score = objectness * best class score. Per-class NMS here.
- `detr` (DETR, RT-DETR, D-FINE...): outputs named `boxes` or `pred_boxes` (N, Q, 4) and one of
  `scores` (N, Q) with `labels` (N, Q) (already decided per query), `scores` (N, Q, C) probabilities, or
  `logits` / `pred_logits` (N, Q, C) (sigmoid) or (N, Q, C + 1) (softmax, the last column is "no object").
  Boxes default to cx, cy, w, h as fractions of the input (DETR's convention). No NMS (set prediction).

`detect_layout` picks the layout from the output names and shapes; `decode_outputs` turns raw outputs into
per-image candidates; `finish_detections` thresholds, keeps the top k, maps boxes to full-resolution pixels
(x_full = x_input / scale_x, y likewise), clips to the image and runs NMS. `prepare_batch` builds the input batch:
letterbox (aspect kept, image at the top-left, zero padding; core.models.preprocess) or stretch (resized to the
input size), RGB or BGR, then (x - mean) / std on values in [0, 1] (std = 1/255 feeds 0-255 pixel values).
"""
from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..detections import Detections2D
from .decode import DecodeParams, nms_per_class
from .preprocess import check_rgb, letterbox_batch

LAYOUTS = ("centernet", "yolov8", "yolox", "detr")
BOX_FORMATS = ("cxcywh", "xyxy", "cxcywh_norm", "xyxy_norm")
DEFAULT_BOX_FORMAT = {"yolov8": "cxcywh", "yolox": "cxcywh", "detr": "cxcywh_norm"}
CENTERNET_OUTPUTS = ("heatmap", "size", "offset")
DETR_BOX_NAMES = ("boxes", "pred_boxes")
DETR_SCORE_NAMES = ("scores", "logits", "pred_logits")
DETR_LABEL_NAMES = ("labels",)
RESIZE_MODES = ("letterbox", "stretch")


class LayoutError(ValueError):
    """Raw outputs that do not fit the layout (the backend turns it into a ModelError naming the file)."""


@dataclass(frozen=True)
class InputFormat:
    """How images become the network input: size [px], resize mode, channel order, per-channel mean and std
    (applied to values in [0, 1], in the model's channel order)."""

    width: int
    height: int
    resize: str = "letterbox"
    channel_order: str = "rgb"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES or self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"InputFormat: resize {self.resize!r} / channel_order {self.channel_order!r}; expected "
                             f"one of {RESIZE_MODES} / rgb, bgr")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"InputFormat: mean {self.mean} and std {self.std} need 3 values, std > 0")


@dataclass(frozen=True)
class Candidates:
    """Boxes of one image before thresholding: (K, 4) xyxy in input pixels, (K,) scores, (K,) class indices."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def prepare_batch(images: Sequence[np.ndarray], fmt: InputFormat,
                  sources: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, H, W) float32 network input and (N, 2) per-image scales (x_input = scale_x * x_full, y likewise)."""
    if fmt.resize == "letterbox":
        batch, scale = letterbox_batch(images, fmt.width, fmt.height, sources)
        scales = np.stack([scale, scale], axis=1)
    else:
        batch = np.zeros((len(images), 3, fmt.height, fmt.width), np.float32)
        scales = np.zeros((len(images), 2))
        for i, image in enumerate(images):
            image = check_rgb(image, sources[i] if sources is not None else f"image {i}")
            h, w = image.shape[:2]
            shrink = fmt.width < w or fmt.height < h
            resized = cv2.resize(image, (fmt.width, fmt.height),
                                 interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            batch[i] = resized.transpose(2, 0, 1) * np.float32(1.0 / 255.0)
            scales[i] = (fmt.width / w, fmt.height / h)
    if fmt.channel_order == "bgr":
        batch = batch[:, ::-1]
    mean = np.asarray(fmt.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(fmt.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((batch - mean) / std, dtype=np.float32), scales


def detect_layout(shapes: Mapping[str, tuple[int, ...]], num_classes: int | None = None) -> str:
    """The layout of a model from its output {name: shape} (actual shapes of one run).

    Names decide first (CenterNet heads; DETR boxes + scores/logits); a single rank-3 output is YOLOv8 when its
    middle dimension is 4 + C, YOLOX when its last is 5 + C (C unknown: the shorter axis holds the box + class
    values). Raises LayoutError when none fits.
    """
    names = set(shapes)
    if names & set(CENTERNET_OUTPUTS):
        return "centernet"
    if names & set(DETR_BOX_NAMES) and names & set(DETR_SCORE_NAMES):
        return "detr"
    if len(shapes) == 1:
        shape = next(iter(shapes.values()))
        if len(shape) == 3:
            _, rows, cols = shape
            if num_classes is not None:
                if rows == 4 + num_classes:
                    return "yolov8"
                if cols == 5 + num_classes:
                    return "yolox"
            elif rows != cols:
                return "yolov8" if rows < cols else "yolox"
    expected = (f"outputs {list(CENTERNET_OUTPUTS)} (centernet); one of {list(DETR_BOX_NAMES)} with one of "
                f"{list(DETR_SCORE_NAMES)} (detr); or one output (N, 4 + C, A) (yolov8) or (N, A, 5 + C) (yolox)"
                + (f" with C = {num_classes}" if num_classes is not None else ""))
    raise LayoutError(f"cannot tell the output layout from {dict(shapes)}; expected {expected}, or set onnx_layout")


def _first(outputs: Mapping[str, object], names: Sequence[str]) -> str:
    for name in names:
        if name in outputs:
            return name
    raise LayoutError(f"outputs {list(outputs)} lack any of {list(names)}")


def boxes_to_xyxy(boxes: np.ndarray, box_format: str, input_width: int, input_height: int) -> np.ndarray:
    """(..., 4) boxes in `box_format` -> xyxy in input pixels."""
    boxes = np.asarray(boxes, np.float64)
    if box_format.endswith("_norm"):
        boxes = boxes * np.array([input_width, input_height, input_width, input_height], np.float64)
    if box_format.startswith("cxcywh"):
        half = 0.5 * np.abs(boxes[..., 2:4])
        return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)
    return boxes


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode_outputs(layout: str, outputs: Mapping[str, np.ndarray], num_classes: int, box_format: str,
                   input_width: int, input_height: int) -> list[Candidates]:
    """Per-image candidates (boxes in input pixels) from raw outputs of a yolov8, yolox or detr model.

    Raises:
        LayoutError: outputs whose shapes do not fit the layout and C = num_classes.
    """
    if layout in ("yolov8", "yolox"):
        if len(outputs) != 1:
            raise LayoutError(f"{layout} models have one output; this one has {list(outputs)}")
        (raw,) = outputs.values()
        raw = np.asarray(raw, np.float64)
        if raw.ndim != 3:
            raise LayoutError(f"{layout} output has shape {raw.shape}; expected rank 3")
        if layout == "yolov8":
            if raw.shape[1] != 4 + num_classes:
                raise LayoutError(f"yolov8 output {raw.shape} has {raw.shape[1] - 4} class rows for {num_classes} "
                                  "class names; expected (N, 4 + C, A)")
            rows = raw.transpose(0, 2, 1)
            boxes, class_scores = rows[..., :4], rows[..., 4:]
            objectness = np.ones(rows.shape[:2])
        else:
            if raw.shape[2] != 5 + num_classes:
                raise LayoutError(f"yolox output {raw.shape} has {raw.shape[2] - 5} class columns for {num_classes} "
                                  "class names; expected (N, A, 5 + C)")
            boxes, objectness, class_scores = raw[..., :4], raw[..., 4], raw[..., 5:]
        classes = class_scores.argmax(axis=-1)
        scores = objectness * np.take_along_axis(class_scores, classes[..., None], axis=-1)[..., 0]
        xyxy = boxes_to_xyxy(boxes, box_format, input_width, input_height)
        return [Candidates(xyxy[i], scores[i], classes[i]) for i in range(len(raw))]
    if layout == "detr":
        boxes = np.asarray(outputs[_first(outputs, DETR_BOX_NAMES)], np.float64)
        score_name = _first(outputs, DETR_SCORE_NAMES)
        raw_scores = np.asarray(outputs[score_name], np.float64)
        if boxes.ndim != 3 or boxes.shape[2] != 4 or raw_scores.shape[:2] != boxes.shape[:2]:
            raise LayoutError(f"detr outputs boxes {boxes.shape} and {score_name} {raw_scores.shape}; expected "
                              "(N, Q, 4) and (N, Q) or (N, Q, C[+1])")
        label_name = next((n for n in DETR_LABEL_NAMES if n in outputs), None)
        if raw_scores.ndim == 2:
            if label_name is None:
                raise LayoutError(f"detr {score_name} {raw_scores.shape} has one score per query but no "
                                  f"{list(DETR_LABEL_NAMES)} output")
            classes, scores = np.asarray(outputs[label_name]).astype(np.int64), raw_scores
        else:
            columns = raw_scores.shape[2]
            if score_name == "scores":
                probabilities = raw_scores
            elif columns == num_classes + 1:
                probabilities = _softmax(raw_scores)[..., :num_classes]  # the last column is "no object"
            elif columns == num_classes:
                probabilities = _sigmoid(raw_scores)
            else:
                raise LayoutError(f"detr {score_name} has {columns} columns for {num_classes} class names; expected "
                                  "C (sigmoid) or C + 1 (softmax with no-object)")
            classes = probabilities.argmax(axis=-1)
            scores = np.take_along_axis(probabilities, classes[..., None], axis=-1)[..., 0]
        xyxy = boxes_to_xyxy(boxes, box_format, input_width, input_height)
        return [Candidates(xyxy[i], scores[i], classes[i]) for i in range(len(boxes))]
    raise LayoutError(f"layout {layout!r} has no raw-output decoder; expected one of yolov8, yolox, detr")


def finish_detections(candidates: Sequence[Candidates], scales: np.ndarray, image_sizes: Sequence[tuple[int, int]],
                      class_names: Sequence[str], params: DecodeParams, nms: bool,
                      frame_ids: Sequence[str] | None = None,
                      stamps_ns: Sequence[int] | None = None) -> list[Detections2D]:
    """Detections2D per image: score >= threshold, best top_k, boxes / (scale_x, scale_y) clipped to the image,
    per-class NMS when `nms`. A class index without a name becomes 'class_<k>'."""
    names = np.asarray([*class_names], dtype=object)
    results = []
    for i, cand in enumerate(candidates):
        keep = np.flatnonzero(cand.scores >= params.score_threshold)
        keep = keep[np.argsort(-cand.scores[keep], kind="stable")[:params.top_k]]
        sx, sy = scales[i]
        boxes = cand.boxes_xyxy[keep] / np.array([sx, sy, sx, sy])
        width, height = image_sizes[i]
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, classes, scores = boxes[valid], cand.classes[keep][valid], cand.scores[keep][valid]
        order = nms_per_class(boxes, scores, classes, params.nms_iou) if nms else np.argsort(-scores, kind="stable")
        labels = [names[k] if 0 <= k < len(names) else f"class_{k}" for k in classes[order]]
        results.append(Detections2D(boxes[order], labels, scores[order],
                                    frame_ids[i] if frame_ids is not None else "",
                                    int(stamps_ns[i]) if stamps_ns is not None else 0))
    return results


def metadata_class_names(metadata: Mapping[str, str]) -> tuple[str, ...] | None:
    """Class names from ONNX metadata: `class_names` (a JSON list) or Ultralytics' `names` (a dict literal
    {index: name}, read with ast.literal_eval: literals only, never code). None when neither is there.

    Raises:
        LayoutError: the entry is there but malformed.
    """
    if "class_names" in metadata:
        try:
            names = json.loads(metadata["class_names"])
        except ValueError as exc:
            raise LayoutError(f"metadata class_names is not JSON: {exc}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise LayoutError("metadata class_names is not a JSON list of strings")
        return tuple(names)
    if "names" in metadata:
        try:
            names = ast.literal_eval(metadata["names"])
        except (ValueError, SyntaxError) as exc:
            raise LayoutError(f"metadata names is not a literal {{index: name}}: {exc}") from exc
        if isinstance(names, dict) and sorted(names) == list(range(len(names))):
            return tuple(str(names[k]) for k in range(len(names)))
        if isinstance(names, list):
            return tuple(str(n) for n in names)
        raise LayoutError("metadata names is neither {0: name, 1: name, ...} nor a list")
    return None


def metadata_input_size(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """(width, height) from Ultralytics' `imgsz` metadata ([height, width]), or None."""
    if "imgsz" not in metadata:
        return None
    try:
        size = ast.literal_eval(metadata["imgsz"])
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    except (ValueError, SyntaxError, TypeError, IndexError) as exc:
        raise LayoutError(f"metadata imgsz {metadata['imgsz']!r} is not [height, width]") from exc
    return width, height
