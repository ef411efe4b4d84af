"""Export of the built-in CenterNet to ONNX (opset 17) under the contract of core.models.onnx_backend."""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch

from .centernet import CenterNet, CenterNetInference
from .onnx_backend import CLASS_NAMES_KEY, INPUT_NAME, OPSET, OUTPUT_NAMES


def export_onnx(model: CenterNet, path: Path) -> Path:
    """Write the model (heads after sigmoid / scaling, dynamic batch, fixed input size) with its class names."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    network = CenterNetInference(copy.deepcopy(model).cpu().eval()).eval()  # the caller's model stays put
    example = torch.zeros(1, 3, config.input_height, config.input_width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about its own deprecation
        torch.onnx.export(network, (example,), str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          opset_version=OPSET, dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)},
                          dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = CLASS_NAMES_KEY, json.dumps(list(config.class_names))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path
