"""The learned models a checkpoint can hold: model name -> architecture config type and network type.

Every learned model registers here once; checkpoints store the model name, and loading builds the network from its
stored config. A config type is a frozen dataclass with `to_dict()`, `class_names` and keyword construction; a
network type takes its config as the only constructor argument and keeps it as `.config`.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...errors import ModelError
from .centernet import CenterNet, CenterNetConfig
from .detr3d import Detr3D, Detr3DConfig
from .occfusion import OccFusionConfig, OccFusionNet
from .segnet import SegNet, SegNetConfig


@dataclass(frozen=True)
class ModelSpec:
    """One learned model: its name (as `perception3d train <name>` takes it), config type and network type."""

    name: str
    config_type: type
    network_type: type[nn.Module]


MODELS: dict[str, ModelSpec] = {
    "detector2d": ModelSpec("detector2d", CenterNetConfig, CenterNet),
    "segmentation": ModelSpec("segmentation", SegNetConfig, SegNet),
    "occupancy": ModelSpec("occupancy", OccFusionConfig, OccFusionNet),
    "detection3d": ModelSpec("detection3d", Detr3DConfig, Detr3D),
}


def model_spec(name: str, source: str = "") -> ModelSpec:
    """The spec of a registered model (ModelError naming `source` when there is none of that name)."""
    if name not in MODELS:
        raise ModelError(source or name, f"model {name!r} is not a perception3d model",
                         f"one of {', '.join(MODELS)}")
    return MODELS[name]


def model_name_of(network: nn.Module) -> str:
    """The registered name of a network instance (ModelError for an unregistered type)."""
    for spec in MODELS.values():
        if type(network) is spec.network_type:
            return spec.name
    raise ModelError(type(network).__name__, "network type is not a registered perception3d model",
                     f"one of {', '.join(s.network_type.__name__ for s in MODELS.values())}")
