"""Checkpoints of every learned model: one torch file with the model name, its architecture config (JSON-able), the
class names, the weights, the training record and (while a run is unfinished) the state needed to resume it.

Layout (a dict of plain data and tensors only, so it loads with `torch.load(weights_only=True)`):
    format "perception3d.checkpoint", version 2, model (registry name, e.g. "detector2d"), config (dict),
    class_names (list), state_dict (tensors; float16 in finished checkpoints), record (command, data summary,
    metrics, hardware), train_state (epoch, step, history, optimizer while unfinished).
Version-1 files (format "perception3d.centernet2d", written by `train detector2d` before the shared trainer) are read
as detector2d checkpoints.

Loading never unpickles code: a file that needs anything beyond tensors and plain containers is refused. A file that
is not a checkpoint, is of another model, has other classes, or whose weights do not fit its config raises ModelError
naming the file and what differs.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError, ModelError
from .registry import model_name_of, model_spec

CHECKPOINT_FORMAT = "perception3d.checkpoint"
CHECKPOINT_VERSION = 2
_V1_FORMAT = "perception3d.centernet2d"


def _plain(value):
    """Tensors and plain Python data only (numpy scalars and arrays, tuples and paths converted), so that the file
    loads with weights_only=True."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    for plain_type in (bool, int, float, str):  # subclasses too (torch.__version__ is a str subclass)
        if isinstance(value, plain_type):
            return plain_type(value)
    if value is None or isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"checkpoint field of type {type(value).__name__} is not plain data")


def save_checkpoint(path: Path, model: nn.Module, train_state: dict | None = None, half: bool = False,
                    record: dict | None = None) -> None:
    """Write a registered model's config + weights (+ train_state, + record) atomically to path.

    half: store floating-point weights as float16 (half the file; loading restores float32), for finished models.
    record: JSON-able provenance (training command, data summary, metrics, hardware).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": model_name_of(model),
               "config": model.config.to_dict(), "class_names": list(model.config.class_names),
               "state_dict": weights, "record": _plain(record or {}), "train_state": _plain(train_state or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """The checked payload of a checkpoint file (version-1 files upgraded), without building the network."""
    source = str(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError(source, "checkpoint file not found") from exc
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), None)
        if reason is None:
            raise ModelError(source, "cannot be read as a torch checkpoint (not a torch file, or a damaged one)") \
                from exc
        raise ModelError(source, f"refused: it holds Python objects beyond tensors and plain data, which loading "
                                 f"would execute ({reason})", "a checkpoint written by perception3d") from exc
    except Exception as exc:  # torch raises many types (zip, runtime) for non-checkpoint files
        raise ModelError(source, f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(payload, dict) and payload.get("format") == _V1_FORMAT and payload.get("version") == 1:
        payload = {**payload, "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": "detector2d",
                   "class_names": payload["config"].get("class_names"), "record": {}}
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelError(source, f"not a perception3d checkpoint (format {found!r})", f"format {CHECKPOINT_FORMAT!r}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ModelError(source, f"checkpoint version {payload.get('version')}", f"version {CHECKPOINT_VERSION}")
    return payload


def load_checkpoint(path: Path, expected_classes: Sequence[str] | None = None,
                    map_location: str | torch.device = "cpu", expected_model: str = "detector2d",
                    ) -> tuple[nn.Module, dict]:
    """The network (eval mode, float32, on map_location) and the train_state stored in a checkpoint.

    Raises ModelError when the file is not a perception3d checkpoint, holds another model than expected_model, was
    trained for other classes than expected_classes (in order), or its weights do not fit its stored architecture.
    """
    source = str(path)
    payload = read_checkpoint(path, map_location)
    if payload.get("model") != expected_model:
        raise ModelError(source, f"is a checkpoint of model {payload.get('model')!r}", f"a {expected_model} checkpoint")
    spec = model_spec(expected_model, source)
    try:
        config = spec.config_type(**payload["config"])
    except (TypeError, ConfigError) as exc:
        raise ModelError(source, f"architecture config {payload.get('config')} is invalid: {exc}") from exc
    if expected_classes is not None and tuple(config.class_names) != tuple(expected_classes):
        raise ModelError(source, f"trained for classes {list(config.class_names)}",
                         f"classes {list(expected_classes)} in that order")
    network = spec.network_type(config)
    try:
        network.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(source, "weights do not fit the architecture in its config "
                                 f"({'; '.join(line.strip() for line in first[:3])})",
                         f"weights of {spec.network_type.__name__}{config.to_dict()}") from exc
    return network.to(map_location).eval(), payload.get("train_state", {})
