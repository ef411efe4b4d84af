"""Running a 2D detector on a batch of camera images: the torch backend and the interface the ONNX backend shares.

`detect(images)` takes full-resolution RGB uint8 images (any sizes), letterboxes them into one batch
(core.models.preprocess), runs the network once, and decodes (core.models.decode) one Detections2D per image with
boxes in that image's full-resolution pixels.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..classes import DETECTION_CLASSES
from ..detections import Detections2D
from .centernet import CenterNet, CenterNetInference
from .checkpoint import load_checkpoint
from .decode import DEFAULT_DECODE, DecodeParams, decode_detections
from .options import RunnerOptions
from .preprocess import letterbox_batch
from .runner import TorchRunner


class Detector2D:
    """Base of the backends: subclasses set class_names, input_width, input_height and implement `heads`."""

    class_names: tuple[str, ...]
    input_width: int
    input_height: int

    def __init__(self, params: DecodeParams = DEFAULT_DECODE) -> None:
        self.params = params

    def heads(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(heatmap, size, offset) numpy heads of the contract for a (N, 3, H, W) float32 [0, 1] batch."""
        raise NotImplementedError

    def warm_up(self, image_count: int = 6, width: int = 1600, height: int = 900) -> None:
        """Run one batch of black images, so that the first real frame does not pay for allocation and tuning."""
        self.detect([np.zeros((height, width, 3), np.uint8)] * image_count)

    def detect(self, images: Sequence[np.ndarray], frame_ids: Sequence[str] | None = None,
               stamps_ns: Sequence[int] | None = None) -> list[Detections2D]:
        """One Detections2D per RGB uint8 (H, W, 3) image, boxes in its full-resolution pixels; one forward pass.

        frame_ids / stamps_ns (per image) are copied into the results and name the image in errors.
        """
        if len(images) == 0:
            return []
        batch, scales = letterbox_batch(images, self.input_width, self.input_height, frame_ids)
        heatmap, size, offset = self.heads(batch)
        sizes = [(image.shape[1], image.shape[0]) for image in images]
        return decode_detections(heatmap, size, offset, scales, sizes, self.class_names, self.input_height,
                                 self.params, frame_ids, stamps_ns)


class TorchDetector2D(Detector2D):
    """The package's CenterNet on CPU or CUDA (core.models.runner: inference mode, eval, fp32 or fp16)."""

    def __init__(self, model: CenterNet, device: str = "auto", params: DecodeParams = DEFAULT_DECODE,
                 options: RunnerOptions | None = None) -> None:
        """options: device, precision and threads (options.device wins over device when given)."""
        super().__init__(params)
        self.runner = TorchRunner(CenterNetInference(model.eval()), options or RunnerOptions(device))
        self.device = self.runner.device
        self.class_names = tuple(model.config.class_names)
        self.input_width, self.input_height = model.config.input_width, model.config.input_height

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "auto", params: DecodeParams = DEFAULT_DECODE,
                        expected_classes: Sequence[str] | None = DETECTION_CLASSES,
                        options: RunnerOptions | None = None) -> TorchDetector2D:
        """Load a checkpoint (ModelError when it is not one, or is for other classes or another architecture)."""
        model, _ = load_checkpoint(path, expected_classes)
        return cls(model, device, params, options)

    def heads(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.runner(batch)
