"""Running a network in a node: device, precision and threads, the same for every learned model and both backends.

- `TorchRunner`: a torch network in eval and inference mode on its device (float16 autocast with precision 'fp16',
  CUDA only); numpy arrays in, float32 numpy arrays out.
- `onnx_session`: an onnxruntime session for an exported model, CUDA provider first (on device N) when the device
  asks for CUDA and onnxruntime has it.
Both take `RunnerOptions`, which the nodes build from their shared learned-model parameters (nodes.learned).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError, ModelError
from .options import DEFAULT_OPTIONS, DEVICE_PATTERN, RunnerOptions, usable_cores


def resolve_device(device: str) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N' as a torch.device (ConfigError if absent)."""
    if not re.match(DEVICE_PATTERN, device):
        raise ConfigError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available (use 'auto' or 'cpu')")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return resolved




class TorchRunner:
    """A torch network evaluated in inference mode on the options' device and precision."""

    def __init__(self, network: nn.Module, options: RunnerOptions = DEFAULT_OPTIONS) -> None:
        self.device = resolve_device(options.device)
        self.half = options.precision == "fp16"
        if self.half and self.device.type != "cuda":
            raise ConfigError(f"precision 'fp16' needs a CUDA device (the model runs on {self.device})")
        # 0: one thread per core the process may use, also where the host's thread policy (runtime.threads) has
        # shrunk the process's pools for the numpy work of the LiDAR nodes
        torch.set_num_threads(options.threads or len(usable_cores()))
        self.network = network.to(self.device).eval()

    def __call__(self, *inputs: np.ndarray | torch.Tensor) -> tuple[np.ndarray, ...]:
        """The network's outputs (a tuple) as float32 numpy arrays, for numpy inputs (or tensors, e.g. already on
        the device). fp16 is autocast: convolutions
        and matrix products run in float16, reductions, softmax and the models' own geometry (box decoding, sine
        encodings, index arithmetic) in float32, so the networks need no half-precision code paths."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            tensors = [(x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x)))
                       .to(self.device, non_blocking=True) for x in inputs]
            outputs = self.network(*tensors)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            return tuple(o.float().cpu().numpy() for o in outputs)


def onnx_session(path: Path, options: RunnerOptions = DEFAULT_OPTIONS):
    """An onnxruntime InferenceSession for the .onnx file (ModelError when it is missing or does not load)."""
    import onnxruntime as ort

    source = str(path)
    if options.precision != "fp32":
        raise ConfigError(f"precision {options.precision!r} is for the torch backend: an ONNX model runs in the "
                          "precision it was exported with")
    if not Path(path).is_file():
        raise ModelError(source, "ONNX model file not found")
    providers: list = ["CPUExecutionProvider"]
    if options.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        index = torch.device(options.device).index if options.device.startswith("cuda") else None
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index or 0}))
    session_options = ort.SessionOptions()
    cores = len(usable_cores())
    # 0: onnxruntime's default (one per physical core of the machine) unless this process may use fewer cores
    session_options.intra_op_num_threads = options.threads or (cores if cores < (os.cpu_count() or cores) else 0)
    try:
        return ort.InferenceSession(source, session_options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unparsable or invalid models
        raise ModelError(source, f"onnxruntime cannot load it ({type(exc).__name__}: {exc})") from exc
