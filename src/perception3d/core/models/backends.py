"""Opening a 2D detector by backend name, as the detector2d node's `backend` parameter selects it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..classes import DETECTION_CLASSES
from .decode import DEFAULT_DECODE, DecodeParams
from .inference import Detector2D, TorchDetector2D
from .options import DEFAULT_OPTIONS, RunnerOptions

BACKENDS = ("torch", "onnx")


def open_detector2d(backend: str, path: Path, options: RunnerOptions = DEFAULT_OPTIONS,
                    params: DecodeParams = DEFAULT_DECODE, class_names: Sequence[str] | None = None,
                    input_size: tuple[int, int] | None = None,
                    onnx_options: Mapping[str, Any] | None = None) -> Detector2D:
    """A ready detector: 'torch' loads a perception3d detector2d checkpoint, 'onnx' any ONNX detector of a supported
    layout (core.models.onnx_backend: our CenterNet contract, YOLOv8/11, YOLOX, DETR) through onnxruntime; both on
    the options' device, precision and threads (core.models.runner).

    class_names: for 'torch', the classes the checkpoint must have (default the 10 nuScenes classes); for 'onnx',
    the model's class names in output order (default: its metadata, else COCO's 80 for non-CenterNet layouts).
    input_size: (width, height) for ONNX models with a dynamic input size. onnx_options: more OnnxDetector2D
    keywords (layout, box_format, mean, std, channel_order, resize). Raises ModelError for a file that is not a
    usable model, ConfigError for an unknown backend, device or precision.
    """
    if backend == "torch":
        return TorchDetector2D.from_checkpoint(path, params=params, expected_classes=tuple(class_names or
                                                                                            DETECTION_CLASSES),
                                               options=options)
    if backend == "onnx":
        from .onnx_backend import OnnxDetector2D

        return OnnxDetector2D(path, class_names, input_size, params, options, **(onnx_options or {}))
    raise ConfigError(f"detector2d backend {backend!r}: expected one of {', '.join(BACKENDS)} "
                      "('external' detectors are subscribed to by the node, not opened here)")
