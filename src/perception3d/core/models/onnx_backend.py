"""The onnxruntime backend: our CenterNet contract and the layouts users export (core.models.onnx_layouts).

Any ONNX 2D detector with one float image input (N, 3, H, W) runs here. Its output layout is `centernet` (below),
`yolov8` (YOLOv8 / YOLO11), `yolox` or `detr` (DETR / RT-DETR), given or detected from the output names and shapes
(onnx_layouts.detect_layout). For the non-CenterNet layouts the input name is free; input size, normalisation and
resizing come from the arguments, else the model metadata (`imgsz`, `mean`, `std` as JSON lists), else defaults
(0-1 RGB, letterbox); class names from the argument, else the metadata (`class_names` JSON list or Ultralytics'
`names`), else COCO's 80.

CenterNet contract (what `perception3d export detector2d` writes):

- one input named `image`: float32, shape (N, 3, H, W), RGB in [0, 1] (no mean/std normalisation; the model does
  its own), letterboxed as core.models.preprocess describes (x_input = scale * x_full, image at the top-left, zero
  padding). N may be dynamic or fixed (a model with a fixed N is run in chunks of N images); H and W must be fixed
  in the model or given to `OnnxDetector2D(input_size=...)`.
- three outputs, all float32 with the same (N, ., h, w) grid, h = H / stride and w = W / stride:
  - `heatmap` (N, C, h, w): per-class probability in [0, 1] that an object centre lies in the cell (after sigmoid);
  - `size` (N, 2, h, w): box (width, height) in network-input pixels;
  - `offset` (N, 2, h, w): object centre (x, y) inside the cell, in grid cells (centre = (cell + offset) * stride).
- class names: the model metadata property `class_names` (a JSON list, C entries) or `OnnxDetector2D(class_names=)`.
Decoding (peaks, top-k, NMS, mapping to full resolution) is core.models.decode, the same as the torch backend.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import ModelError
from ..classes import COCO_CLASSES
from ..detections import Detections2D
from .decode import DEFAULT_DECODE, DecodeParams
from .inference import Detector2D
from .onnx_layouts import (
    CENTERNET_OUTPUTS,
    DEFAULT_BOX_FORMAT,
    InputFormat,
    LayoutError,
    decode_outputs,
    detect_layout,
    finish_detections,
    metadata_class_names,
    metadata_input_size,
    prepare_batch,
)
from .options import CPU_OPTIONS, RunnerOptions
from .runner import onnx_session

INPUT_NAME = "image"
OUTPUT_NAMES = CENTERNET_OUTPUTS
CLASS_NAMES_KEY = "class_names"
OPSET = 17


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


class OnnxDetector2D(Detector2D):
    """An ONNX 2D detector of any supported layout, run with onnxruntime (CPU unless providers say otherwise)."""

    def __init__(self, path: Path, class_names: Sequence[str] | None = None,
                 input_size: tuple[int, int] | None = None, params: DecodeParams = DEFAULT_DECODE,
                 options: RunnerOptions = CPU_OPTIONS, layout: str = "auto", box_format: str = "auto",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, channel_order: str = "rgb",
                 resize: str = "letterbox") -> None:
        """Load and validate the model (ModelError when it fits no layout or breaks its layout).

        Args:
            path: the .onnx file.
            class_names: names of the model's classes in output order; default the metadata, else (non-CenterNet
                layouts) COCO's 80.
            input_size: (width, height) when the model's input H, W are dynamic (default: metadata `imgsz`).
            params: decoding parameters.
            options: device (CUDA provider first unless 'cpu', when onnxruntime has it) and intra-op threads.
            layout: 'auto' (from the outputs) or one of onnx_layouts.LAYOUTS.
            box_format: 'auto' (the layout's default) or one of onnx_layouts.BOX_FORMATS.
            mean, std: per-channel normalisation of 0-1 inputs (default: metadata, else 0 and 1).
            channel_order: 'rgb' or 'bgr' (non-CenterNet layouts).
            resize: 'letterbox' or 'stretch' (non-CenterNet layouts).
        """
        super().__init__(params)
        source = str(path)
        self.session = onnx_session(path, options)
        self.output_names = [o.name for o in self.session.get_outputs()]
        metadata = self.session.get_modelmeta().custom_metadata_map
        try:
            if layout == "auto":
                layout = "centernet" if set(self.output_names) & set(OUTPUT_NAMES) else "auto"
            self.layout = layout
            if layout == "centernet":
                self._validate(source, class_names, input_size)
                return
            self._validate_layout(source, class_names, input_size, metadata, box_format, mean, std, channel_order,
                                  resize)
        except LayoutError as exc:
            raise ModelError(source, str(exc)) from exc

    def _validate(self, source: str, class_names: Sequence[str] | None, input_size: tuple[int, int] | None) -> None:
        """The CenterNet contract of the module docstring."""
        self.input_name = INPUT_NAME
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        contract = f"input {INPUT_NAME!r} float (N, 3, H, W) and outputs {list(OUTPUT_NAMES)} of rank 4"
        if list(inputs) != [INPUT_NAME]:
            raise ModelError(source, f"inputs {list(inputs)}", contract)
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if missing:
            raise ModelError(source, f"outputs {list(outputs)} lack {missing}", contract)
        image = inputs[INPUT_NAME]
        if image.type != "tensor(float)" or len(image.shape) != 4 or image.shape[1] != 3:
            raise ModelError(source, f"input {INPUT_NAME!r} is {image.type} of shape {image.shape}", contract)
        for name in OUTPUT_NAMES:
            if outputs[name].type != "tensor(float)" or len(outputs[name].shape) != 4:
                raise ModelError(source, f"output {name!r} is {outputs[name].type} of shape {outputs[name].shape}",
                                 contract)
        for name, channels in (("size", 2), ("offset", 2)):
            if _dim(outputs[name].shape[1]) not in (None, channels):
                raise ModelError(source, f"output {name!r} has {outputs[name].shape[1]} channels", f"{channels}")
        height, width = _dim(image.shape[2]), _dim(image.shape[3])
        if height is None or width is None:
            if input_size is None:
                raise ModelError(source, f"input {INPUT_NAME!r} has dynamic size {image.shape[2:]}",
                                 "fixed H, W in the model, or input_size=(width, height) given")
            width, height = input_size
        self.input_width, self.input_height = int(width), int(height)
        self.fixed_batch = _dim(image.shape[0])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if class_names is None:
            if CLASS_NAMES_KEY not in metadata:
                raise ModelError(source, f"no {CLASS_NAMES_KEY!r} metadata and no class_names given",
                                 "a JSON list of class names in the metadata, or the class_names argument")
            class_names = json.loads(metadata[CLASS_NAMES_KEY])
        self.class_names = tuple(class_names)
        channels = _dim(outputs["heatmap"].shape[1])
        if channels is not None and channels != len(self.class_names):
            raise ModelError(source, f"heatmap has {channels} channels for {len(self.class_names)} class names",
                             "one heatmap channel per class name")
        self._check_run(source)

    def _validate_layout(self, source: str, class_names: Sequence[str] | None, input_size: tuple[int, int] | None,
                         metadata: dict, box_format: str, mean: Sequence[float] | None,
                         std: Sequence[float] | None, channel_order: str, resize: str) -> None:
        """Input, class names and layout of a yolov8 / yolox / detr model, checked with one run on a zero image."""
        inputs = self.session.get_inputs()
        expected = "one float input (N, 3, H, W)"
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4 or \
                inputs[0].shape[1] != 3:
            raise ModelError(source, f"inputs {[(i.name, i.type, i.shape) for i in inputs]}", expected)
        self.input_name = inputs[0].name
        height, width = _dim(inputs[0].shape[2]), _dim(inputs[0].shape[3])
        if height is None or width is None:
            size = input_size or metadata_input_size(metadata)
            if size is None:
                raise ModelError(source, f"input {self.input_name!r} has dynamic size {inputs[0].shape[2:]}",
                                 "fixed H, W in the model, `imgsz` metadata, or input_size=(width, height)")
            width, height = size
        self.input_width, self.input_height = int(width), int(height)
        self.fixed_batch = _dim(inputs[0].shape[0])
        names = class_names or metadata_class_names(metadata) or COCO_CLASSES
        self.class_names = tuple(names)
        try:
            self.input_format = InputFormat(
                self.input_width, self.input_height, resize, channel_order,
                tuple(mean if mean else _metadata_floats(metadata, "mean", (0.0, 0.0, 0.0))),
                tuple(std if std else _metadata_floats(metadata, "std", (1.0, 1.0, 1.0))))
        except ValueError as exc:
            raise ModelError(source, str(exc)) from exc
        outputs = self.run(np.zeros((1, 3, self.input_height, self.input_width), np.float32))
        shapes = {name: tuple(value.shape) for name, value in outputs.items()}
        if self.layout == "auto":
            self.layout = detect_layout(shapes, len(self.class_names))
        self.box_format = DEFAULT_BOX_FORMAT[self.layout] if box_format == "auto" else box_format
        decode_outputs(self.layout, outputs, len(self.class_names), self.box_format, self.input_width,
                       self.input_height)  # raises LayoutError when the shapes do not fit the layout

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """{output name: array} for a (N, 3, H, W) float32 batch (a fixed-batch model runs in padded chunks)."""
        if self.fixed_batch is None:
            values = self.session.run(self.output_names, {self.input_name: batch})
            return {name: np.asarray(v) for name, v in zip(self.output_names, values)}
        chunks = []
        for start in range(0, len(batch), self.fixed_batch):
            chunk = batch[start:start + self.fixed_batch]
            padded = np.concatenate([chunk, np.zeros((self.fixed_batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            chunks.append([o[:len(chunk)] for o in self.session.run(self.output_names, {self.input_name: padded})])
        return {name: np.concatenate([c[k] for c in chunks]) for k, name in enumerate(self.output_names)}

    def detect(self, images: Sequence[np.ndarray], frame_ids: Sequence[str] | None = None,
               stamps_ns: Sequence[int] | None = None) -> list[Detections2D]:
        """As Detector2D.detect, decoding this model's layout (NMS for the YOLO layouts, none for DETR)."""
        if self.layout == "centernet" or len(images) == 0:
            return super().detect(images, frame_ids, stamps_ns)
        batch, scales = prepare_batch(images, self.input_format, frame_ids)
        candidates = decode_outputs(self.layout, self.run(batch), len(self.class_names), self.box_format,
                                    self.input_width, self.input_height)
        sizes = [(image.shape[1], image.shape[0]) for image in images]
        return finish_detections(candidates, scales, sizes, self.class_names, self.params,
                                 nms=self.layout != "detr", frame_ids=frame_ids, stamps_ns=stamps_ns)

    def _check_run(self, source: str) -> None:
        """Run a zero image once: output grids must agree and divide the input size (fails early, not per frame)."""
        heatmap, size, offset = self.heads(np.zeros((1, 3, self.input_height, self.input_width), np.float32))
        h, w = heatmap.shape[2:]
        if size.shape[2:] != (h, w) or offset.shape[2:] != (h, w) or heatmap.shape[1] != len(self.class_names):
            raise ModelError(source, f"output shapes heatmap {heatmap.shape}, size {size.shape}, offset "
                                     f"{offset.shape} disagree", f"(N, {len(self.class_names)} / 2 / 2, h, w)")
        if self.input_height % h or self.input_width % w or self.input_height // h != self.input_width // w:
            raise ModelError(source, f"output grid {h}x{w} is not the input {self.input_height}x"
                                     f"{self.input_width} divided by one stride", "h = H / s and w = W / s")

    def heads(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outputs = self.run(batch)
        return tuple(outputs[name].astype(np.float32) for name in OUTPUT_NAMES)


def _metadata_floats(metadata: dict, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A JSON list of numbers from the model metadata, or the default when the key is absent."""
    if key not in metadata:
        return default
    try:
        return tuple(float(v) for v in json.loads(metadata[key]))
    except (ValueError, TypeError) as exc:
        raise LayoutError(f"metadata {key} {metadata[key]!r} is not a JSON list of numbers") from exc
