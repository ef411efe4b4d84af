"""ONNX export (opset 17) of the learned models: one generic writer, and each model's wrapper that fixes its
inputs, outputs and metadata (detector2d: the contract of core.models.onnx_backend)."""
from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .centernet import CenterNet, CenterNetInference
from .onnx_backend import CLASS_NAMES_KEY, INPUT_NAME, OPSET, OUTPUT_NAMES


def export_network(network: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
                   input_names: Sequence[str], output_names: Sequence[str], metadata: Mapping[str, str],
                   dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> Path:
    """Write a copy of the network in eval mode (the caller's stays put) with the given metadata properties; the
    ONNX checker must accept the result. dynamic_axes: per input/output name, its dynamic axes (default: a dynamic
    batch axis 0 on every one)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    network = copy.deepcopy(network).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about its own deprecation
        torch.onnx.export(network, example_inputs, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=OPSET,
                          dynamic_axes={n: dict(a) for n, a in dynamic_axes.items()} if dynamic_axes is not None
                          else {n: {0: "batch"} for n in (*input_names, *output_names)}, dynamo=False)
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def export_onnx(model: CenterNet, path: Path) -> Path:
    """detector2d: heads after sigmoid / scaling, dynamic batch, fixed input size, class names in the metadata."""
    import json

    config = model.config
    example = torch.zeros(1, 3, config.input_height, config.input_width)
    return export_network(CenterNetInference(copy.deepcopy(model).cpu().eval()), (example,), path, [INPUT_NAME],
                          OUTPUT_NAMES, {CLASS_NAMES_KEY: json.dumps(list(config.class_names))})
