"""Training and validation of the CenterNet 2D detector on any dataset of (RGB image, 2D boxes) pairs.

A dataset is anything with `len(ds)` and `ds[i] -> (image, boxes)`: image an (H, W, 3) uint8 RGB array at full
resolution, boxes a Detections2D with full-resolution pixel boxes and class names (classes the model does not know
are ignored). `train.nuscenes_boxes.NuScenesCameraBoxes` is one, built from a nuScenes-schema dataroot.

Checkpoints (core.models.checkpoint) are written to `out` at the end of every epoch and every `checkpoint_every`
optimizer steps; with `resume`, training continues from `out` (weights, optimizer, step; an epoch interrupted
midway restarts from its beginning). The checkpoint of a finished run holds no optimizer state and stores its
weights as float16, so it stays small enough to ship; resuming it for more epochs restarts Adam's moments. With
`init`, a new run starts from another checkpoint's weights (fine-tuning, e.g. the shipped checkpoint on your own
data; a checkpoint without context blocks can be widened with them) with a fresh optimizer and schedule. The
learning rate follows a cosine from `lr` to 0 over all steps.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core.detections import Detections2D
from ..core.models.centernet import BACKBONE_STRIDE, CenterNet, CenterNetConfig
from ..core.models.checkpoint import load_checkpoint, save_checkpoint
from ..core.models.decode import DecodeParams
from ..core.models.inference import Detector2D, TorchDetector2D, resolve_device
from ..core.models.preprocess import check_rgb, letterbox_scale, warp_image
from ..errors import ConfigError, ModelError
from ..eval.map2d import AveragePrecision2D
from .augment import AugmentConfig, augment_sample
from .losses import centernet_loss
from .targets import centernet_targets

# Classes whose mean AP@0.5 is the headline validation score (issue 6, acceptance 1).
SCORED_CLASSES = ("car", "pedestrian", "truck", "bus", "barrier", "traffic_cone")
# Low threshold for validation: AP needs the low-score tail of the ranking.
VALIDATION_DECODE = DecodeParams(score_threshold=0.05, top_k=100, nms_iou=0.6)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per optimizer step.
        lr: initial Adam learning rate (cosine decay to 0).
        weight_decay: Adam L2 weight decay.
        device: 'auto', 'cpu' or 'cuda[:N]'.
        checkpoint_every: optimizer steps between mid-epoch checkpoints (0: only at epoch ends).
        validate_every: epochs between validations (the last epoch is always validated when a val set is given).
        augment: augmentation ranges, or None for plain letterboxing.
        crop_size: (width, height) of random training crops of the augmented input, multiples of 32 (None: the
            whole input). Validation always uses whole inputs.
        seed: seed of shuffling, augmentation and initialisation.
        num_workers: DataLoader worker processes (0: load in the training process).
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    checkpoint_every: int = 200
    validate_every: int = 1
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    crop_size: tuple[int, int] | None = None
    seed: int = 0
    num_workers: int = 0


class CenterNetSamples(torch.utils.data.Dataset):
    """Network inputs and CenterNet targets from a dataset of (image, Detections2D)."""

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
            # drawn from torch's generator: seeded by torch.manual_seed, and distinct per DataLoader worker and epoch
            rng = np.random.default_rng(int(torch.randint(2**31, ())))
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


@dataclass
class TrainResult:
    """What training produced: the final checkpoint, its steps, and the validation scores (empty without a val set).

    Attributes:
        checkpoint: path of the written checkpoint.
        steps: optimizer steps done in total.
        ap_per_class: AP@0.5 per class of the last validation (NaN for classes without ground truth).
        mean_ap: mean AP@0.5 over SCORED_CLASSES that have ground truth.
        history: one dict per validation: epoch, mean_ap, ap_per_class, loss.
    """

    checkpoint: Path
    steps: int
    ap_per_class: dict[str, float]
    mean_ap: float
    history: list[dict]


def _lr_factor(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def train_detector2d(train_set, out: Path, model_config: CenterNetConfig | None = None,
                     config: TrainConfig | None = None, val_set=None, resume: bool = False,
                     init: Path | None = None, progress: bool = True) -> TrainResult:
    """Train a CenterNet on train_set, validating on val_set, checkpointing to out; see the module docstring.

    model_config and config default to CenterNetConfig() and TrainConfig(). init: checkpoint whose weights a new run
    starts from (ignored when resuming an existing `out`); see `initialised_from` for the architectures it takes.
    """
    model_config = model_config or CenterNetConfig()
    config = config or TrainConfig()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model, state = CenterNet(model_config), {}
    out = Path(out)
    if resume and out.exists():
        model, state = load_checkpoint(out, model_config.class_names)
        if model.config != model_config:
            raise ModelError(str(out), f"resume checkpoint has architecture {model.config.to_dict()}",
                             f"{model_config.to_dict()} as requested")
    elif init is not None:
        model, state = initialised_from(init, model_config), {"init": str(init)}
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    samples = CenterNetSamples(train_set, model_config, config.augment, config.crop_size)
    loader = torch.utils.data.DataLoader(samples, batch_size=config.batch_size, shuffle=True, drop_last=False,
                                         num_workers=config.num_workers,
                                         generator=torch.Generator().manual_seed(config.seed + state.get("epoch", 0)))
    total_steps = config.epochs * len(loader)
    step, history = state.get("step", 0), list(state.get("history", []))
    start_epoch, started_from = state.get("epoch", 0), state.get("init")
    torch.manual_seed(config.seed + step)  # a resumed run does not replay the augmentations already seen

    def checkpoint(epoch_done: int) -> None:
        state = {"epoch": epoch_done, "step": step, "history": history, "train_config": asdict(config),
                 "init": started_from}
        if epoch_done < config.epochs:
            state["optimizer"] = optimizer.state_dict()
        save_checkpoint(out, model, state, half=epoch_done >= config.epochs)

    for epoch in range(start_epoch, config.epochs):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
        losses = []
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _lr_factor(step, total_steps)
            loss, parts = centernet_loss(model(batch["image"]), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", hm=f"{parts['heatmap']:.3f}")
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint(epoch)
        last = epoch + 1 == config.epochs
        if val_set is not None and (last or (epoch + 1) % max(config.validate_every, 1) == 0):
            ap = evaluate(TorchDetector2D(model, str(device), VALIDATION_DECODE), val_set, config.batch_size,
                          progress)
            model.train()
            history.append({"epoch": epoch + 1, "mean_ap": ap.mean(SCORED_CLASSES), "ap_per_class": ap.per_class(),
                            "loss": float(np.mean(losses)) if losses else float("nan")})
            if progress:
                tqdm.write(f"epoch {epoch + 1}: loss {history[-1]['loss']:.3f}, "
                           f"mAP@0.5 {history[-1]['mean_ap']:.3f} over {', '.join(SCORED_CLASSES)}")
        checkpoint(epoch + 1)
    final = history[-1] if history else {"ap_per_class": {}, "mean_ap": float("nan")}
    return TrainResult(out, step, final["ap_per_class"], final["mean_ap"], history)


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
