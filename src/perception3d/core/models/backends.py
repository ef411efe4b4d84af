"""Opening a 2D detector by backend name, as the detector2d node's `backend` parameter selects it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..classes import DETECTION_CLASSES
from .decode import DEFAULT_DECODE, DecodeParams
from .inference import Detector2D, TorchDetector2D

BACKENDS = ("builtin", "onnx")


def open_detector2d(backend: str, path: Path, device: str = "auto", params: DecodeParams = DEFAULT_DECODE,
                    class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None,
                    onnx_options: Mapping[str, Any] | None = None) -> Detector2D:
    """A ready detector: 'builtin' loads a CenterNet checkpoint (on `device`), 'onnx' any ONNX detector of a supported
    layout (core.models.onnx_backend; onnxruntime, CUDA provider first when device is not 'cpu' and onnxruntime has
    it).

    class_names: for 'builtin', the classes the checkpoint must have (default the 10 nuScenes classes); for 'onnx',
    the model's class names in output order (default: its metadata, else COCO's 80 for non-CenterNet layouts).
    input_size: (width, height) for ONNX models with a dynamic input size. onnx_options: more OnnxDetector2D
    keywords (layout, box_format, mean, std, channel_order, resize).
    Raises ModelError for a file that is not a usable model, ConfigError for an unknown backend or device.
    """
    if backend == "builtin":
        return TorchDetector2D.from_checkpoint(path, device, params, tuple(class_names or DETECTION_CLASSES))
    if backend == "onnx":
        import onnxruntime as ort

        from .onnx_backend import OnnxDetector2D

        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        return OnnxDetector2D(path, class_names, input_size, params, providers, **(onnx_options or {}))
    raise ConfigError(f"detector2d backend {backend!r}: expected one of {', '.join(BACKENDS)} "
                      "('external' detectors are subscribed to by the node, not opened here)")
