"""detector2d's part of the shared trainer (train.trainer): CenterNet samples, loss and AP@0.5 validation.

A dataset is anything with `len(ds)` and `ds[i] -> (image, boxes)`: image an (H, W, 3) uint8 RGB array at full
resolution, boxes a Detections2D with full-resolution pixel boxes and class names (classes the model does not know
are ignored). `train.nuscenes_boxes.NuScenesCameraBoxes` is one, built from a nuScenes-schema dataroot.

With `init`, a new run starts from another checkpoint's weights (fine-tuning, e.g. the shipped checkpoint on your
own data; a checkpoint without context blocks can be widened with them) with a fresh optimizer and schedule.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.detections import Detections2D
from ..core.models.centernet import BACKBONE_STRIDE, CenterNet, CenterNetConfig
from ..core.models.checkpoint import load_checkpoint
from ..core.models.decode import DecodeParams
from ..core.models.inference import Detector2D, TorchDetector2D
from ..core.models.preprocess import check_rgb, letterbox_scale, warp_image
from ..errors import ConfigError, ModelError
from ..eval.map2d import AveragePrecision2D
from .augment import AugmentConfig, augment_sample
from .losses import centernet_loss
from .targets import centernet_targets
from .trainer import SeededSamples, TrainConfig, TrainResult, TrainTask, train

# Classes whose mean AP@0.5 is the headline validation score (issue 6, acceptance 1).
SCORED_CLASSES = ("car", "pedestrian", "truck", "bus", "barrier", "traffic_cone")
# Low threshold for validation: AP needs the low-score tail of the ranking.
VALIDATION_DECODE = DecodeParams(score_threshold=0.05, top_k=100, nms_iou=0.6)


@dataclass(frozen=True)
class Detector2DData:
    """What detector2d trains on besides the trainer's hyper-parameters.

    Attributes:
        augment: augmentation ranges, or None for plain letterboxing.
        crop_size: (width, height) of random training crops of the augmented input, multiples of 32 (None: the
            whole input). Validation always uses whole inputs.
        validation_batch: images per validation forward pass.
    """

    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    crop_size: tuple[int, int] | None = None
    validation_batch: int = 8


class CenterNetSamples(SeededSamples):
    """Network inputs and CenterNet targets from a dataset of (image, Detections2D).

    Sample i of epoch e is augmented from a generator seeded by (seed, e, i) (see train.trainer).
    """

    def __init__(self, dataset, config: CenterNetConfig, augment: AugmentConfig | None,
                 crop_size: tuple[int, int] | None = None) -> None:
        self.dataset, self.config, self.augment = dataset, config, augment
        self.crop_size = crop_size if augment is not None else None
        width, height = self.crop_size or (config.input_width, config.input_height)
        if width % BACKBONE_STRIDE or height % BACKBONE_STRIDE or width > config.input_width or \
                height > config.input_height:
            raise ConfigError(f"training crop {width}x{height}: must be multiples of {BACKBONE_STRIDE} and fit in "
                              f"the input {config.input_width}x{config.input_height}")
        self.grid_size = (height // config.output_stride, width // config.output_stride)
        self.class_index = {name: i for i, name in enumerate(config.class_names)}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, gt = self.dataset[index]
        image = check_rgb(image, f"training sample {index}")
        known = np.array([c in self.class_index for c in gt.class_ids], bool)
        boxes = gt.boxes_xyxy[known]
        classes = np.array([self.class_index[c] for c in gt.class_ids[known]], int)
        c = self.config
        if self.augment is not None:
            rng = self.rng(index)
            warped, boxes, kept = augment_sample(image, boxes, c.input_width, c.input_height, rng, self.augment,
                                                 self.crop_size)
            classes = classes[kept]
        else:
            scale = letterbox_scale(image.shape[1], image.shape[0], c.input_width, c.input_height)
            warped = warp_image(image, scale, (0.0, 0.0), False, c.input_width, c.input_height)
            boxes = boxes * scale
        grid_h, grid_w = self.grid_size
        targets = centernet_targets(boxes, classes, len(c.class_names), grid_h, grid_w, c.output_stride)
        sample = {k: torch.from_numpy(v) for k, v in targets.items()}
        sample["image"] = torch.from_numpy(warped.transpose(2, 0, 1).astype(np.float32) / 255.0)
        return sample


def evaluate(detector: Detector2D, dataset, batch_size: int = 8, progress: bool = True) -> AveragePrecision2D:
    """AP@0.5 accumulator of the detector over a dataset of (image, Detections2D)."""
    ap = AveragePrecision2D(detector.class_names)
    for start in tqdm(range(0, len(dataset), batch_size), desc="validate", unit="batch", disable=not progress):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        for detections, (_, gt) in zip(detector.detect([image for image, _ in items]), items):
            ap.add(detections, gt)
    return ap


class Detector2DTask(TrainTask):
    """detector2d on the shared trainer: CenterNet targets, CenterNet loss, AP@0.5 on the validation images."""

    model_name = "detector2d"
    headline = "mean_ap"

    def __init__(self, train_set, model_config: CenterNetConfig, data: Detector2DData | None = None,
                 val_set=None) -> None:
        self.train_set, self.model_config, self.val_set = train_set, model_config, val_set
        self.data = data or Detector2DData()

    def build(self) -> CenterNet:
        return CenterNet(self.model_config)

    def initialised_from(self, path: Path) -> CenterNet:
        return initialised_from(path, self.model_config)

    def training_samples(self) -> CenterNetSamples:
        return CenterNetSamples(self.train_set, self.model_config, self.data.augment, self.data.crop_size)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return centernet_loss(model(batch["image"]), batch)

    def validate(self, model: nn.Module, device: torch.device, progress: bool) -> dict | None:
        if self.val_set is None:
            return None
        ap = evaluate(TorchDetector2D(model, str(device), VALIDATION_DECODE), self.val_set,
                      self.data.validation_batch, progress)
        model.train()
        return {"mean_ap": ap.mean(SCORED_CLASSES), "ap_per_class": ap.per_class(),
                "ground_truth_per_class": dict(ap.num_ground_truth)}

    def data_summary(self) -> dict:
        summary = {"train_images": len(self.train_set), "val_images": len(self.val_set or []),
                   "augment": None if self.data.augment is None else str(self.data.augment),
                   "crop_size": self.data.crop_size}
        for name, dataset in (("train", self.train_set), ("val", self.val_set)):
            describe = getattr(dataset, "describe", None)
            if describe is not None:
                summary[f"{name}_source"] = describe()
        return summary


def train_detector2d(train_set, out: Path, model_config: CenterNetConfig | None = None,
                     config: TrainConfig | None = None, val_set=None, resume: bool = False,
                     init: Path | None = None, progress: bool = True, data: Detector2DData | None = None,
                     command: str = "") -> TrainResult:
    """Train a CenterNet on train_set with the shared trainer, validating on val_set, checkpointing to out.

    model_config, config and data default to CenterNetConfig(), TrainConfig() and Detector2DData(). init: checkpoint
    whose weights a new run starts from (ignored when resuming an existing `out`); see `initialised_from` for the
    architectures it takes. The result's metrics hold mean_ap (over SCORED_CLASSES) and ap_per_class.
    """
    task = Detector2DTask(train_set, model_config or CenterNetConfig(), data, val_set)
    return train(task, out, config or TrainConfig(), resume=resume, init=init, progress=progress, command=command)


def initialised_from(init: Path, model_config: CenterNetConfig) -> CenterNet:
    """A model of model_config with the weights of checkpoint `init`: the same architecture, or one that only adds
    context blocks (which start as the identity, so the widened model computes what `init` did)."""
    source, _ = load_checkpoint(init, model_config.class_names)
    if replace(source.config, context_dilations=model_config.context_dilations) != model_config or \
            source.config.context_dilations not in ((), model_config.context_dilations):
        raise ModelError(str(init), f"init checkpoint has architecture {source.config.to_dict()}",
                         f"{model_config.to_dict()}, or that without context blocks")
    model = CenterNet(model_config)
    model.load_state_dict(source.state_dict(), strict=source.config == model_config)
    return model


def format_scores(ap_per_class: dict[str, float], classes: Sequence[str] = SCORED_CLASSES) -> str:
    """A one-line-per-class text table of AP@0.5 and the mean over `classes`."""
    lines = [f"{name:<22}{ap_per_class.get(name, float('nan')):.3f}" for name in ap_per_class]
    values = [ap_per_class[c] for c in classes if c in ap_per_class and not np.isnan(ap_per_class[c])]
    lines.append(f"{'mAP@0.5 (' + ', '.join(classes) + ')'}: {np.mean(values) if values else float('nan'):.3f}")
    return "\n".join(lines)


def ground_truth_for(boxes_xyxy: np.ndarray, class_names: Sequence[str]) -> Detections2D:
    """Ground truth as Detections2D (score 1), for datasets built from arrays."""
    return Detections2D(boxes_xyxy, list(class_names), np.ones(len(class_names)))
