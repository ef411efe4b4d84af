"""segmentation's part of the shared trainer (train.trainer): samples from sweep caches, the 2DPASS/2DDATA loss and
mIoU validation with the project's scorer (eval.semantic, as `perception3d eval`).

Training samples are the sweeps with lidarseg labels (nuScenes: keyframes) of one or more caches built by
`perception3d dataset build` (any nuScenes-schema dataroot; `--boxes2d` gives the 2D boxes of the Local Object
Branch: a simulated preset, or a detector2d output bag). Each sample: the current sweep's points moved into the ego
frame, the 2D box class and score of each point (core.box_points, from the unaugmented geometry), a random rotation
about z, a mirror across the x axis and a scale; network inputs from all points; then `points` of them drawn at
random (or padded with ignored points) so that samples stack into batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.box_points import point_boxes
from ..core.classes import LIDARSEG_CLASSES
from ..core.geometry import transform_points
from ..core.models.segnet import SegNet, SegNetConfig, SegNetInference, labels_from_probabilities, segnet_inputs
from ..errors import ConfigError
from ..eval.semantic import SegmentationScore
from .data.dataset import SweepDataset, sample_camera_boxes
from .segmentation_loss import class_weights, segmentation_loss
from .trainer import SeededSamples, TrainConfig, TrainResult, TrainTask, same_architecture, train


@dataclass(frozen=True)
class SegmentationData:
    """Sampling and augmentation of segmentation training samples.

    Attributes:
        points: points per training sample (drawn from the sweep's; fewer are padded with ignored points).
        max_rotation_rad: rotation about z drawn uniformly from +-this.
        mirror: mirror y -> -y with probability 0.5.
        scale: (low, high) of a uniform scale of all coordinates.
    """

    points: int = 12000
    max_rotation_rad: float = float(np.pi)
    mirror: bool = True
    scale: tuple[float, float] = (0.95, 1.05)


def _labelled(caches: Sequence[SweepDataset]) -> list[tuple[SweepDataset, int]]:
    return [(ds, int(i)) for ds in caches for i in ds.indices_where("has_lidarseg")]


def sweep_in_ego(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) [m] in the ego frame, intensity (N,)) of a sample's current sweep."""
    current = sample["points"][:sample["num_points_current"]]
    return transform_points(sample["T_ego_lidar"], current[:, :3].astype(np.float64)), current[:, 3]


class SegmentationSamples(SeededSamples):
    """Network inputs, labels and LOB box classes of the labelled sweeps of sweep caches (module docstring).

    Sample i of epoch e is augmented from a generator seeded by (seed, e, i) (see train.trainer).
    """

    def __init__(self, caches: Sequence[SweepDataset], config: SegNetConfig, data: SegmentationData) -> None:
        self.items, self.config, self.data = _labelled(caches), config, data
        if not self.items:
            raise ConfigError("segmentation training: the caches hold no sweeps with lidarseg labels")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        dataset, i = self.items[index]
        sample = dataset[i]
        points, intensity = sweep_in_ego(sample)
        box_class, box_score = point_boxes(sample["points"][:sample["num_points_current"]], sample_camera_boxes(sample))
        rng = self.rng(index)
        angle = rng.uniform(-self.data.max_rotation_rad, self.data.max_rotation_rad)
        c, s = np.cos(angle), np.sin(angle)
        points = points @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
        if self.data.mirror and rng.random() < 0.5:
            points[:, 1] *= -1.0
        points *= rng.uniform(*self.data.scale)
        bev, coords, features = segnet_inputs(points, intensity, self.config, (box_class, box_score))
        labels = sample["lidarseg"].astype(np.int64)
        n = self.data.points
        pick = rng.choice(len(points), n, replace=False) if len(points) >= n else np.arange(len(points))
        pad = n - len(pick)
        return {"bev": torch.from_numpy(bev),
                "coords": torch.from_numpy(np.concatenate([coords[pick], np.zeros((pad, 2), np.float32)])),
                "point_features": torch.from_numpy(np.concatenate([features[pick],
                                                                   np.zeros((pad, features.shape[1]), np.float32)])),
                "labels": torch.from_numpy(np.concatenate([labels[pick], np.zeros(pad, np.int64)])),
                "box_class": torch.from_numpy(np.concatenate([box_class[pick], np.full(pad, -1, np.int64)]))}


def label_counts(caches: Sequence[SweepDataset]) -> np.ndarray:
    """(17,) lidarseg label counts over the labelled sweeps of the caches (index 0 = ignore)."""
    counts = np.zeros(len(LIDARSEG_CLASSES), np.int64)
    for dataset in caches:
        for name in dataset.scenes:
            a = dataset.scene_arrays(name)
            offsets = a["point_offsets"]
            for i in np.flatnonzero(a["has_lidarseg"]):
                counts += np.bincount(a["lidarseg"][offsets[i]:offsets[i + 1]], minlength=len(counts))
    return counts


def predict_labels(network: nn.Module, points_ego: np.ndarray, intensity: np.ndarray, device: torch.device,
                   boxes: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) uint8 in 1..16, scores (N,) float32) of one sweep by the 3D branch of a SegNet; boxes: each
    point's 2D box (class, score) (core.box_points), for a model with a box prior."""
    bev, coords, features = segnet_inputs(points_ego, intensity, network.config, boxes)
    with torch.inference_mode():
        probabilities = SegNetInference(network)(*(torch.from_numpy(x)[None].to(device)
                                                   for x in (bev, coords, features)))[0]
    return labels_from_probabilities(probabilities.float().cpu().numpy())


def evaluate(network: nn.Module, caches: Sequence[SweepDataset], device: torch.device,
             progress: bool = True) -> SegmentationScore:
    """The segmentation score (eval.semantic) of a SegNet over the labelled sweeps of the caches."""
    score = SegmentationScore()
    network.eval()
    for dataset, i in tqdm(_labelled(caches), desc="validate", unit="sweep", disable=not progress):
        sample = dataset[i]
        boxes = point_boxes(sample["points"][:sample["num_points_current"]], sample_camera_boxes(sample)) \
            if network.config.box_prior else None
        labels, _ = predict_labels(network, *sweep_in_ego(sample), device, boxes)
        score.add(sample["lidarseg"], labels)
    return score


class SegmentationTask(TrainTask):
    """segmentation on the shared trainer: SegNet, CE + Lovász (+ LOB and distillation), mIoU on the val caches."""

    model_name = "segmentation"
    headline = "miou"

    def __init__(self, train_caches: Sequence[Path], model_config: SegNetConfig, data: SegmentationData | None = None,
                 val_caches: Sequence[Path] = ()) -> None:
        self.train_paths, self.val_paths = [Path(p) for p in train_caches], [Path(p) for p in val_caches]
        self.train_caches = [SweepDataset(p, past_sweeps=0, images=False) for p in self.train_paths]
        self.val_caches = [SweepDataset(p, past_sweeps=0, images=False) for p in self.val_paths]
        self.model_config, self.data = model_config, data or SegmentationData()
        self.counts = label_counts(self.train_caches)
        self.weights = torch.from_numpy(class_weights(self.counts[1:]))

    def build(self) -> SegNet:
        return SegNet(self.model_config)

    def initialised_from(self, path: Path) -> SegNet:
        return same_architecture(path, self.model_name, self.model_config)

    def training_samples(self) -> SegmentationSamples:
        return SegmentationSamples(self.train_caches, self.model_config, self.data)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits, lob_logits = model(batch["bev"], batch["coords"], batch["point_features"], batch["box_class"])
        return segmentation_loss(logits, lob_logits, batch["labels"], batch["box_class"],
                                 self.weights.to(logits.device))

    def validate(self, model: nn.Module, device: torch.device, progress: bool) -> dict | None:
        if not self.val_caches:
            return None
        score = evaluate(model, self.val_caches, device, progress)
        model.train()
        return {"miou": score.miou(), "iou_per_class": score.per_class_iou()}

    def data_summary(self) -> dict:
        return {"train_caches": [str(p) for p in self.train_paths], "val_caches": [str(p) for p in self.val_paths],
                "train_sweeps": len(_labelled(self.train_caches)), "val_sweeps": len(_labelled(self.val_caches)),
                "train_sources": [{k: ds.manifest[k] for k in ("dataroot", "version", "split", "options")}
                                  for ds in self.train_caches],
                "label_counts": dict(zip(LIDARSEG_CLASSES, self.counts.tolist())), "sampling": str(self.data)}


def train_segmentation(train_caches: Sequence[Path], out: Path, model_config: SegNetConfig | None = None,
                       config: TrainConfig | None = None, val_caches: Sequence[Path] = (), resume: bool = False,
                       init: Path | None = None, progress: bool = True, data: SegmentationData | None = None,
                       command: str = "") -> TrainResult:
    """Train a SegNet on the labelled sweeps of train_caches, validating on val_caches, checkpointing to out."""
    task = SegmentationTask(train_caches, model_config or SegNetConfig(), data, val_caches)
    return train(task, out, config or TrainConfig(), resume=resume, init=init, progress=progress, command=command)
