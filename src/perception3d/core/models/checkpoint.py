"""Detector checkpoints: one torch file holding the architecture config, the weights and (optionally) the state
needed to resume training. Loading checks the format, the classes and that the weights fit the architecture, and
raises ModelError naming the file and what differs."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ...errors import ConfigError, ModelError
from .centernet import CenterNet, CenterNetConfig

CHECKPOINT_FORMAT = "perception3d.centernet2d"
CHECKPOINT_VERSION = 1
# The checkpoint shipped with the package (benchmarks/results/detector2d_training.md says how it was trained).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "detector2d_synth.pt"


def save_checkpoint(path: Path, model: CenterNet, train_state: dict | None = None, half: bool = False) -> None:
    """Write model config + weights (+ train_state: optimizer, epoch, scores...) atomically to path.

    half: store floating-point weights as float16 (half the file; loading restores float32), for finished models.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": model.config.to_dict(),
               "state_dict": weights,
               "train_state": train_state or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, expected_classes: Sequence[str] | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[CenterNet, dict]:
    """The model (eval mode, on map_location) and the train_state stored in a checkpoint.

    Raises ModelError when the file is not a perception3d CenterNet checkpoint, when its classes differ from
    expected_classes (in order), or when its weights do not fit the architecture its config describes.
    """
    source = str(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError as exc:
        raise ModelError(source, "checkpoint file not found") from exc
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for non-checkpoint files
        raise ModelError(source, f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelError(source, f"not a detector checkpoint (format {found!r})", f"format {CHECKPOINT_FORMAT!r}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ModelError(source, f"checkpoint version {payload.get('version')}", f"version {CHECKPOINT_VERSION}")
    try:
        config = CenterNetConfig(**payload["config"])
    except (TypeError, ConfigError) as exc:
        raise ModelError(source, f"architecture config {payload.get('config')} is invalid: {exc}") from exc
    if expected_classes is not None and tuple(config.class_names) != tuple(expected_classes):
        raise ModelError(source, f"trained for classes {list(config.class_names)}",
                         f"classes {list(expected_classes)} in that order")
    model = CenterNet(config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(source, "weights do not fit the architecture in its config "
                                 f"({'; '.join(line.strip() for line in first[:3])})",
                         f"weights of CenterNet{config.to_dict()}") from exc
    return model.to(map_location).eval(), payload.get("train_state", {})
