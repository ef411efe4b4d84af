"""The ONNX detector contract and the onnxruntime backend.

Contract (what `perception3d export detector2d` writes and what any user-supplied ONNX detector must follow):

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
from .decode import DEFAULT_DECODE, DecodeParams
from .inference import Detector2D
from .runner import CPU_OPTIONS, RunnerOptions, onnx_session

INPUT_NAME = "image"
OUTPUT_NAMES = ("heatmap", "size", "offset")
CLASS_NAMES_KEY = "class_names"
OPSET = 17


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


class OnnxDetector2D(Detector2D):
    """Any ONNX detector that follows the contract, run with onnxruntime (CPU unless providers say otherwise)."""

    def __init__(self, path: Path, class_names: Sequence[str] | None = None,
                 input_size: tuple[int, int] | None = None, params: DecodeParams = DEFAULT_DECODE,
                 options: RunnerOptions = CPU_OPTIONS) -> None:
        """Load and validate the model (ModelError when it breaks the contract).

        Args:
            path: the .onnx file.
            class_names: heatmap channel names, when the model has no `class_names` metadata.
            input_size: (width, height) when the model's input H, W are dynamic.
            params: decoding parameters.
            options: device (CUDA provider first unless 'cpu', when onnxruntime has it) and intra-op threads.
        """
        super().__init__(params)
        self.session = onnx_session(path, options)
        self._validate(str(path), class_names, input_size)

    def _validate(self, source: str, class_names: Sequence[str] | None, input_size: tuple[int, int] | None) -> None:
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
        if self.fixed_batch is None:
            return tuple(np.asarray(o, np.float32) for o in self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}))
        chunks = []
        for start in range(0, len(batch), self.fixed_batch):
            chunk = batch[start:start + self.fixed_batch]
            padded = np.concatenate([chunk, np.zeros((self.fixed_batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            chunks.append([o[:len(chunk)] for o in self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: padded})])
        return tuple(np.concatenate([c[k] for c in chunks]).astype(np.float32) for k in range(len(OUTPUT_NAMES)))
