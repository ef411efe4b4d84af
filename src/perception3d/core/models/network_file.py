"""Opening the model file of a learned LiDAR node (segmentation, occupancy, detection3d), either backend.

A node's model is a registered network (core.models.registry) run through an inference wrapper that fixes its numpy-in /
numpy-out contract. `open_network` loads it from a perception3d checkpoint (backend 'torch',
core.models.runner.TorchRunner) or from the ONNX file `perception3d export` wrote (backend 'onnx', onnxruntime); both
give the model's architecture config (the node needs its grid and classes to prepare inputs) and one `run` callable with
the same inputs and outputs. The ONNX file (core.models.export.export_model) carries the model name and config as
metadata properties, so an ONNX model of another network, or without them, is refused at start with a ModelError.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from ...errors import ConfigError, ModelError
from .checkpoint import load_checkpoint
from .export import CONFIG_KEY, MODEL_KEY
from .options import RunnerOptions
from .registry import model_spec
from .runner import TorchRunner, onnx_session

BACKENDS = ("torch", "onnx")
ONNX_ELEMENT_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64,
                      "tensor(bool)": np.bool_}


@dataclass
class OpenedNetwork:
    """A loaded model: its registry name, architecture config and `run(*inputs) -> tuple of float32 arrays`."""

    model: str
    config: object
    run: Callable[..., tuple[np.ndarray, ...]]
    backend: str


def open_network(backend: str, path: Path, model: str, inference: Callable[[nn.Module], nn.Module],
                 input_names: Sequence[str], options: RunnerOptions) -> OpenedNetwork:
    """Load `model` from `path` with backend 'torch' (a checkpoint) or 'onnx' (an exported file).

    inference: wraps the trained network into the module whose forward is the node's contract (the same wrapper
    `export_model` exported). input_names: that contract's inputs in order (the ONNX file must have them).
    """
    source = str(path)
    if backend == "torch":
        network, _ = load_checkpoint(path, None, "cpu", expected_model=model)
        return OpenedNetwork(model, network.config, TorchRunner(inference(network), options), backend)
    if backend != "onnx":
        raise ConfigError(f"{model} backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    session = onnx_session(Path(path), options)
    metadata = session.get_modelmeta().custom_metadata_map
    if metadata.get(MODEL_KEY) != model:
        raise ModelError(source, f"ONNX model metadata {MODEL_KEY!r} is {metadata.get(MODEL_KEY)!r}",
                         f"a {model} model written by `perception3d export {model}`")
    names = [i.name for i in session.get_inputs()]
    if names != list(input_names):
        raise ModelError(source, f"ONNX inputs {names}", f"inputs {list(input_names)}")
    try:
        config = model_spec(model, source).config_type(**json.loads(metadata[CONFIG_KEY]))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelError(source, f"ONNX metadata {CONFIG_KEY!r} is missing or invalid ({exc})") from exc

    # inputs in the element types the file declares (a file exported before an input changed type still runs)
    dtypes = [ONNX_ELEMENT_TYPES.get(i.type) for i in session.get_inputs()]

    def run(*inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(session.run(None, {n: np.ascontiguousarray(x, dtype=d) for n, x, d in zip(names, inputs, dtypes)}))

    return OpenedNetwork(model, config, run, backend)
