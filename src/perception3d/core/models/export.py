"""ONNX export (opset 17) of the learned models: one generic writer, and each model's wrapper that fixes its
inputs, outputs and metadata (detector2d: the contract of core.models.onnx_backend; the LiDAR models: their
inference wrapper, with the model name and architecture config as metadata, which core.models.network_file reads)."""
from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .centernet import CenterNet, CenterNetInference
from .detr3d import ANCHOR_FEATURES, DETR3D_INPUTS, DETR3D_OUTPUTS, Detr3D, Detr3DInference
from .onnx_backend import CLASS_NAMES_KEY, INPUT_NAME, OPSET, OUTPUT_NAMES
from .registry import model_name_of
from .segnet import SEGNET_INPUTS, SEGNET_OUTPUTS, SegNet, SegNetInference

MODEL_KEY = "perception3d.model"
CONFIG_KEY = "perception3d.config"


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


def export_model(inference: nn.Module, network: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
                 input_names: Sequence[str], output_names: Sequence[str],
                 dynamic_axes: Mapping[str, Mapping[int, str]]) -> Path:
    """Write the inference wrapper of a registered network with its model name and config as metadata."""
    import json

    return export_network(inference, example_inputs, path, input_names, output_names,
                          {MODEL_KEY: model_name_of(network), CONFIG_KEY: json.dumps(network.config.to_dict())},
                          dynamic_axes)


def export_segmentation(network: SegNet, path: Path) -> Path:
    """segmentation: (bev, coords, point_features) -> probabilities, dynamic batch and point count."""
    grid = network.config.grid
    example = (torch.zeros(1, grid.channels, grid.size, grid.size), torch.zeros(1, 64, 2),
               torch.zeros(1, 64, network.config.point_features))
    axes = {"bev": {0: "batch"}, "coords": {0: "batch", 1: "points"}, "point_features": {0: "batch", 1: "points"},
            "probabilities": {0: "batch", 1: "points"}}
    return export_model(SegNetInference(copy.deepcopy(network).cpu().eval()), network, example, path, SEGNET_INPUTS,
                        SEGNET_OUTPUTS, axes)


def export_detection3d(network: Detr3D, path: Path) -> Path:
    """detection3d: (bev, anchors, camera_maps, camera_projection) -> (boxes, class and attribute probabilities),
    dynamic batch and camera count."""
    c = network.config
    grid = c.grid
    example = (torch.zeros(1, 2 * grid.channels, grid.size, grid.size),
               torch.zeros(1, c.anchor_queries, ANCHOR_FEATURES),
               torch.zeros(1, 6, len(c.class_names), c.map_rows, c.map_cols), torch.zeros(1, 6, 3, 4))
    axes = {name: {0: "batch"} for name in (*DETR3D_INPUTS, *DETR3D_OUTPUTS)}
    axes["camera_maps"][1] = axes["camera_projection"][1] = "cameras"
    return export_model(Detr3DInference(copy.deepcopy(network).cpu().eval()), network, example, path, DETR3D_INPUTS,
                        DETR3D_OUTPUTS, axes)
