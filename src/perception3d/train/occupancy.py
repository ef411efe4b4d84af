"""occupancy's part of the shared trainer (train.trainer): OccFusion samples from sweep caches, the loss, active
training and IoU / mIoU validation with eval's OccupancyScore.

Samples: the keyframes of the caches that carry occupancy ground truth; their network inputs
(core.models.occfusion_inputs) are computed once when the task starts (no augmentation). One frame per step.

Loss (per frame): cross-entropy + Lovasz-softmax on the coarse voxels, cross-entropy on the refined fine voxels.
Free voxels dominate the grid, so each step keeps every known non-free voxel and only a random share of the free ones
(`loss_voxels`; the shares are in the model config, whose eval mode corrects the prior for them); unknown (255)
voxels never count.

Active training (OccFusion): the latest loss of every frame is kept; every second epoch trains on the hardest
`hard_share` of the frames (by that loss) only, repeated to the epoch's length (`hard_frame_table`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from ..core.classes import DETECTION_CLASSES, OCCUPANCY_FREE, OCCUPANCY_UNKNOWN
from ..core.geometry import invert_transform, transform_points
from ..core.models import occfusion_inputs as inputs
from ..core.models.checkpoint import load_checkpoint
from ..core.models.occfusion import INPUT_NAMES, TRAINING_INPUTS, OccFusionConfig, OccFusionInference, OccFusionNet
from ..core.models.options import RunnerOptions
from ..core.models.runner import TorchRunner
from ..core.voxels import VoxelGrid
from ..errors import DatasetError
from ..eval.semantic import OccupancyScore
from .data.dataset import SweepDataset, sample_camera_boxes
from .lovasz import lovasz_softmax
from .trainer import TrainTask


@dataclass(frozen=True)
class OccupancyTraining:
    """What occupancy trains with besides the trainer's hyper-parameters.

    Attributes:
        lovasz_weight: weight of the Lovasz-softmax term (coarse voxels).
        fine_weight: weight of the fine cross-entropy.
        active: active training on (hard_frame_table) or off (every epoch a plain pass).
        hard_share: share of the hardest frames trained on in active epochs (OccFusion's rho).
    """

    lovasz_weight: float = 1.0
    fine_weight: float = 1.0
    active: bool = True
    hard_share: float = 0.7


def coarse_target(fine_target: np.ndarray, fine: VoxelGrid) -> np.ndarray:
    """(coarse voxels,) uint8 coarse labels from fine labels (flat order): the most frequent non-free class among a
    coarse voxel's known children (ties: lower class), else free if a child is known free, else unknown."""
    sx, sy, sz = fine.shape
    blocks = fine_target.reshape(sz // 2, 2, sy // 2, 2, sx // 2, 2).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 8)
    known = blocks != OCCUPANCY_UNKNOWN
    classes = len(OccFusionConfig().class_names)
    rows = np.repeat(np.arange(len(blocks)), 8)[known.reshape(-1)]
    counts = np.bincount(rows * classes + blocks[known].astype(np.int64), minlength=len(blocks) * classes)
    counts = counts.reshape(len(blocks), classes)
    occupied = counts[:, 1:]
    return np.where(occupied.max(axis=1) > 0, occupied.argmax(axis=1) + 1,
                    np.where(counts[:, 0] > 0, OCCUPANCY_FREE, OCCUPANCY_UNKNOWN)).astype(np.uint8)


def keyframe_inputs(sample: dict, config: OccFusionConfig) -> dict[str, np.ndarray]:
    """Network inputs + fine_target / coarse_target (flat order) + observed of a SweepDataset keyframe sample."""
    fine = config.fine_grid
    range_ = tuple(float(v) for v in sample["occupancy_range"])
    if not fine.matches(VoxelGrid.from_range(range_, float(sample["occupancy_voxel_size"]))):
        raise DatasetError(f"sample {sample['sample_token']}: occupancy grid {range_} at "
                           f"{sample['occupancy_voxel_size']} m differs from the model's {fine}")
    points = sample["points"][:sample["num_points_current"]]
    base = transform_points(sample["T_ego_lidar"], points[:, :3].astype(np.float64))
    cameras = sample_camera_boxes(sample, invert_transform(sample["T_ego_lidar"]))  # boxes for ego-frame points
    net_inputs, observed = inputs.network_inputs(base, points[:, 3], sample["T_ego_lidar"][:3, 3], cameras, fine,
                                                 config.presample_points, config.camera_fusion, config.bev_statistics)
    fine_target = np.ascontiguousarray(sample["occupancy"].transpose(2, 1, 0)).reshape(-1)
    gt_observed = np.ascontiguousarray(sample["occupancy_observed"].transpose(2, 1, 0)).reshape(-1)
    return {**net_inputs, "fine_target": fine_target, "coarse_target": coarse_target(fine_target, fine),
            "gt_observed": gt_observed}


def loss_voxels(target: torch.Tensor, free_keep: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of the voxels a step's loss counts: every known non-free one, and each known free one with
    probability free_keep; unknown (255) never."""
    known = target != OCCUPANCY_UNKNOWN
    occupied = known & (target != OCCUPANCY_FREE)
    keep_free = torch.rand(target.shape, generator=generator, device=target.device) < free_keep
    return torch.nonzero(occupied | (known & ~occupied & keep_free)).reshape(-1)


def hard_frame_table(losses: np.ndarray, epoch: int, seed: int, hard_share: float) -> np.ndarray:
    """Frame of each sample index of an epoch: every frame once on even epochs (and while any loss is unknown, NaN);
    on odd epochs the hardest ceil(hard_share * n) frames by loss, repeated in a seeded order to n indices."""
    n = len(losses)
    if epoch % 2 == 0 or np.isnan(losses).any():
        return np.arange(n)
    hardest = np.argsort(-losses, kind="stable")[:max(1, int(np.ceil(hard_share * n)))]
    rng = np.random.default_rng([seed, epoch])
    return rng.permutation(np.resize(hardest, n))


class OccupancySamples(torch.utils.data.Dataset):
    """Precomputed keyframe inputs; index -> frame through the active-training table of the epoch."""

    def __init__(self, frames: list[dict[str, np.ndarray]], training: OccupancyTraining) -> None:
        self.frames, self.training = frames, training
        self.losses = np.full(len(frames), np.nan)
        self.table = np.arange(len(frames))
        self.seed = 0

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        if self.training.active:
            self.table = hard_frame_table(self.losses, epoch, self.seed, self.training.hard_share)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frame = int(self.table[index])
        sample = self.frames[frame]
        keys = (*TRAINING_INPUTS, "fine_target", "coarse_target")
        tensors = {k: torch.from_numpy(np.asarray(sample[k])) for k in keys}
        return {**tensors, "frame": torch.tensor(frame)}


def cache_keyframes(caches: Sequence[Path], config: OccFusionConfig, progress: bool = True,
                    limit: int | None = None) -> list[dict]:
    """Inputs and targets of every keyframe with occupancy ground truth in the caches (the first `limit`)."""
    frames = []
    for cache in caches:
        dataset = SweepDataset(cache, past_sweeps=0, images=False)
        keyframes = [i for i, (name, k) in enumerate(map(dataset.locate, range(len(dataset))))
                     if dataset.scene_arrays(name)["occupancy_index"][k] >= 0]
        wanted = keyframes if limit is None else keyframes[:max(limit - len(frames), 0)]
        for i in tqdm(wanted, desc=f"inputs of {Path(cache).name}", disable=not progress):
            frames.append(keyframe_inputs(dataset[i], config))
    if not frames:
        raise DatasetError(f"no keyframe with occupancy ground truth in {', '.join(map(str, caches))}")
    return frames


def frame_volume(run: Callable[..., tuple[np.ndarray, ...]], frame: dict, fine: VoxelGrid) -> np.ndarray:
    """The fine uint8 [x, y, z] volume a model's `run` (OccFusionInference contract, numpy in and out: a TorchRunner
    or an ONNX session's run) predicts for a frame of cache_keyframes."""
    coarse_label, _, fine_index, fine_label, _ = run(*(np.asarray(frame[k]) for k in INPUT_NAMES))
    observed = frame["fine_observation"] > 0
    return inputs.fine_volume(frame["observed_index"], coarse_label, fine_index.astype(np.int64), fine_label,
                              observed, fine)


def ground_truth(frame: dict, fine: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
    """The [x, y, z] ground-truth volume of a frame and its observed mask."""
    sx, sy, sz = fine.shape
    return (frame["fine_target"].reshape(sz, sy, sx).transpose(2, 1, 0),
            frame["gt_observed"].reshape(sz, sy, sx).transpose(2, 1, 0))


def score_frames(run: Callable[..., tuple[np.ndarray, ...]], frames: Sequence[dict], fine: VoxelGrid,
                 progress: bool = False) -> OccupancyScore:
    """OccupancyScore of a model's fine volumes (see frame_volume) against the frames' ground truth."""
    score = OccupancyScore()
    for frame in tqdm(frames, desc="scoring", disable=not progress):
        gt, observed = ground_truth(frame, fine)
        score.add(gt, frame_volume(run, frame, fine), observed)
    return score


def for_config(frames: Sequence[dict], config: OccFusionConfig) -> list[dict]:
    """Frames as a config's network sees them: camera evidence zeroed for a LiDAR-only config (the frames are not
    copied otherwise)."""
    if config.camera_fusion:
        return list(frames)
    return [{**f, "camera": np.zeros_like(f["camera"])} for f in frames]


class OccupancyTask(TrainTask):
    """Training frames and validation frames from cache_keyframes (computed once, shared by several runs)."""

    model_name = "occupancy"
    headline = "miou"

    def __init__(self, frames: Sequence[dict], config: OccFusionConfig, training: OccupancyTraining,
                 val_frames: Sequence[dict] = (), caches: Sequence[Path] = ()) -> None:
        self.caches, self.config, self.training = [str(c) for c in caches], config, training
        self.samples = OccupancySamples(for_config(frames, config), training)
        self.val_frames = for_config(val_frames, config)
        self.generator = torch.Generator().manual_seed(0)

    def build(self) -> nn.Module:
        return OccFusionNet(self.config)

    def initialised_from(self, path: Path) -> nn.Module:
        model, _ = load_checkpoint(path, expected_model=self.model_name)
        network = OccFusionNet(replace(model.config, camera_fusion=self.config.camera_fusion))
        network.load_state_dict(model.state_dict())
        return network

    def training_samples(self) -> torch.utils.data.Dataset:
        return self.samples

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if batch["frame"].numel() != 1:
            raise DatasetError("occupancy trains on one frame per step (--batch 1)")
        x = {k: v[0] for k, v in batch.items()}
        out = model(*(x[name] for name in TRAINING_INPUTS))
        keep = loss_voxels(x["coarse_target"], self.config.coarse_free_keep, self.generator)
        logits, target = out["coarse_logits"][keep], x["coarse_target"][keep].long()
        parts = {"coarse_ce": functional.cross_entropy(logits, target),
                 "lovasz": lovasz_softmax(torch.softmax(logits, dim=1), target)}
        fine_target = x["fine_target"][out["fine_index"]]
        fine_keep = loss_voxels(fine_target, self.config.fine_free_keep, self.generator)
        parts["fine_ce"] = (functional.cross_entropy(out["fine_logits"][fine_keep], fine_target[fine_keep].long())
                            if len(fine_keep) else out["fine_logits"].sum() * 0.0)
        total = parts["coarse_ce"] + self.training.lovasz_weight * parts["lovasz"] + \
            self.training.fine_weight * parts["fine_ce"]
        self.samples.losses[int(x["frame"])] = float(total.detach())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def validate(self, model: nn.Module, device: torch.device, progress: bool) -> dict | None:
        if not self.val_frames:
            return None
        run = TorchRunner(OccFusionInference(model), RunnerOptions(str(device)))
        score = score_frames(run, self.val_frames, self.config.fine_grid, progress)
        model.train()
        return {"miou": score.miou(), "iou": score.iou(), "per_class_iou": score.per_class_iou()}

    def data_summary(self) -> dict:
        return {"caches": self.caches, "keyframes": len(self.samples),
                "training": self.training.__dict__, "detection_classes": list(DETECTION_CLASSES)}
