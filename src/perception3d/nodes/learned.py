"""The parameters every node with a model declares, and the model-running options built from them.

One declaration for all learned nodes (detector2d today; detection3d, segmentation and occupancy when their learned
modes land): `model_path`, `backend`, `device`, `precision`, `threads`, `warm_up`. The model is loaded once when
the node starts (a missing or unfit file stops it there with a ModelError), warmed up when `warm_up` is set, and run
through core.models.runner (inference mode, no autograd state, no per-frame allocation of the network).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.models.options import DEVICE_PATTERN, PRECISIONS, RunnerOptions
from .params import Param

MODEL_BACKENDS = ("torch", "onnx")

LEARNED_MODEL_PARAMS: tuple[Param, ...] = (
    Param("model_path", "string", "",
          "perception3d checkpoint (backend torch) or .onnx file (backend onnx); empty = the checkpoint shipped "
          "with the package (torch only)"),
    Param("backend", "string", "torch",
          "torch: a checkpoint written by `perception3d train`; onnx: an ONNX model through onnxruntime",
          choices=MODEL_BACKENDS),
    Param("device", "string", "auto", "auto (CUDA when available), cpu, cuda or cuda:N", pattern=DEVICE_PATTERN),
    Param("precision", "string", "fp32", "fp32, or fp16 (torch backend on CUDA only)", choices=PRECISIONS),
    Param("threads", "int", 0, "CPU threads for inference (0 = one per core the process may use: its CPU "
          "affinity, a replay worker's share; whatever process_threads says)", 0, 64),
    Param("warm_up", "bool", True, "run one frame at start so the first real frame pays no allocation"),
)


def runner_options(params: Mapping[str, Any]) -> RunnerOptions:
    """Device, precision and threads from a node's learned-model parameters."""
    return RunnerOptions(params["device"], params["precision"], params["threads"])


def model_file(params: Mapping[str, Any], shipped: Path) -> Path:
    """The model file a node loads: `model_path`, or the shipped checkpoint when it is empty."""
    return Path(params["model_path"]) if params["model_path"] else shipped
