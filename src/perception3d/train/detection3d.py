"""detection3d's part of the shared trainer (train.trainer): samples from sweep caches, QAF2D's class-restricted
Hungarian matching, the DETR losses and validation with nuscenes-devkit (eval.detection, as `perception3d eval`).

A training sample is one sweep of a cache built by `perception3d dataset build` (any nuScenes-schema dataroot; every
sweep has boxes, interpolated between keyframes):
- points: the sweep in the ego (base) frame, and the sweep `past_sweeps` (one of PAST_STEPS) earlier in the same
  scene moved into it through the global poses (none at a scene's start: zeros, no displacement target);
- 2D boxes: made afresh from the 3D ground truth by the simulated detector (data.simulated_2d) with the `good` or
  the `poor` preset at random, so the decoder learns to distrust bad anchors (the cache's own 2D boxes are not used);
  the QAF2D anchors and camera maps come from them (core.models.detr3d_inputs);
- a random rotation about z and a mirror y -> -y of everything (points, anchors, boxes, camera projections);
- targets: the boxes inside the BEV grid and their class's evaluation range with at least one LiDAR point (what the
  devkit scores), as box states (core.models.detr3d.STATE), class, attribute and displacement between the sweeps,
  and a CenterPoint heatmap (Gaussian radius from train.targets.gaussian_radius at overlap 0.1, at least 2 cells).

Matching (per layer and sample, scipy linear_sum_assignment): cost = 2 focal class cost + 0.25 L1 of the BEV centre
[m]; an anchor query may only take ground truth of its 2D box's class (QAF2D); padded anchors take none.
Loss per layer: sigmoid focal classification (alpha 0.25, gamma 2) over all queries, weight 2, normalised by the
ground-truth count; L1 0.25 on the matched box states (centre [m], log size, sin / cos yaw, displacement [m]);
attribute cross-entropy 0.2; plus the CenterNet heatmap focal loss (train.losses.focal_loss).
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from ..core.box_points import CameraBoxes
from ..core.boxes import wlh_to_lwh
from ..core.camera import CameraModel
from ..core.classes import DETECTION_CLASSES, DETECTION_RANGE_M
from ..core.detections import Detections3D
from ..core.geometry import invert_transform, transform_points
from ..core.models.detr3d import STATE, Detr3D, Detr3DConfig, Detr3DInference
from ..core.models.detr3d_inputs import anchor_rows, camera_inputs, decode, detr3d_bev
from ..data.simulated_2d import PRESETS, simulate_detections
from ..errors import ConfigError
from .data.dataset import SweepDataset, sample_camera_boxes
from .losses import focal_loss
from .targets import draw_gaussian, gaussian_radius
from .trainer import SeededSamples, TrainConfig, TrainResult, TrainTask, same_architecture, train

PAST_STEPS = (4, 5, 6)  # sweeps back to the earlier sweep (0.2-0.3 s at nuScenes' 20 Hz)
MAX_TRUTH = 256  # ground-truth rows per sample (padded)
MATCH_CLASS, MATCH_CENTER, FORBIDDEN = 2.0, 0.25, 1e6
CLASS_WEIGHT, BOX_WEIGHT, ATTRIBUTE_WEIGHT = 2.0, 0.25, 0.2
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


@dataclass(frozen=True)
class Detection3DData:
    """2D-box source and augmentation of detection3d training samples.

    Attributes:
        presets: simulated-detector presets drawn per sample with equal probability.
        max_rotation_rad: rotation about z drawn uniformly from +-this; mirror: mirror y -> -y with probability 0.5.
    """

    presets: tuple[str, ...] = ("good", "poor")
    max_rotation_rad: float = float(np.pi)
    mirror: bool = True


def simulated_cameras(sample: dict, preset: str, rng: np.random.Generator) -> list[CameraBoxes]:
    """CameraBoxes (points in the ego frame) of a sample's cameras with 2D boxes simulated from its 3D boxes by
    data.simulated_2d with `preset` (noise in the original image's pixels, boxes in the stored image's)."""
    gt = Detections3D(sample["boxes_center"], wlh_to_lwh(sample["boxes_size_wlh"]), sample["boxes_yaw"],
                      [DETECTION_CLASSES[c] for c in sample["boxes_class"]], np.ones(len(sample["boxes_class"])))
    T_lidar_ego = invert_transform(sample["T_ego_lidar"])
    cameras = []
    for c in np.flatnonzero(sample["cam_valid"]):
        scale = sample["cam_scale"][c]
        width, height = (int(v) for v in sample["cam_image_size"][c])
        full = CameraModel(np.diag([1 / scale[0], 1 / scale[1], 1.0]) @ sample["cam_K"][c],
                           int(round(width / scale[0])), int(round(height / scale[1])))
        dets = simulate_detections(gt, sample["cam_T_camera_lidar"][c], full, PRESETS[preset], rng, 0)
        classes = np.array([DETECTION_CLASSES.index(k) for k in dets.class_ids], dtype=np.int64)
        cameras.append(CameraBoxes(sample["cam_K"][c], sample["cam_T_camera_lidar"][c] @ T_lidar_ego, width, height,
                                   dets.boxes_xyxy * np.tile(scale, 2), classes, dets.scores))
    return cameras


def past_points(dataset: SweepDataset, index: int, steps: int, sample: dict) -> tuple[np.ndarray | None, ...]:
    """(points (P, 3) [m] in the sample's ego frame, intensity (P,), lag [s]) of the sweep `steps` before sample
    `index` in the same scene; (None, None, None) at the scene's start."""
    scene, i = dataset.locate(index)
    if i < steps:
        return None, None, None
    past = dataset[index - steps]
    points = past["points"][:past["num_points_current"]]
    T = sample["T_ego_lidar"] @ invert_transform(sample["T_global_lidar"]) @ past["T_global_lidar"]
    lag = (sample["timestamp_us"] - past["timestamp_us"]) * 1e-6
    return transform_points(T, points[:, :3].astype(np.float64)), points[:, 3], lag


def truth_in_ego(sample: dict, config: Detr3DConfig) -> dict[str, np.ndarray]:
    """The sample's scored boxes (module docstring) in the ego frame: center (G, 3), lwh (G, 3), yaw (G,),
    velocity (G, 2) [m/s] (NaN unknown), class (G,), attribute (G,) index into config.attribute_names or -1."""
    R = sample["T_ego_lidar"][:3, :3]
    center = transform_points(sample["T_ego_lidar"], sample["boxes_center"].astype(np.float64))
    heading = np.stack([np.cos(sample["boxes_yaw"]), np.sin(sample["boxes_yaw"]), np.zeros(len(center))], 1) @ R.T
    velocity = np.concatenate([sample["boxes_velocity"], np.zeros((len(center), 1))], axis=1) @ R.T
    cls = sample["boxes_class"].astype(np.int64)
    reach = np.array([DETECTION_RANGE_M[DETECTION_CLASSES[k]] for k in cls])
    inside = (np.abs(center[:, :2]) < config.half_extent_m).all(1) & (np.hypot(center[:, 0], center[:, 1]) <= reach)
    keep = inside & (sample["boxes_num_lidar_pts"] != 0)
    names = sample.get("attribute_names", ())
    attribute = np.array([config.attribute_names.index(names[a]) if 0 <= a < len(names) and names[a] in
                          config.attribute_names else -1 for a in sample["boxes_attribute"]], dtype=np.int64)
    return {"center": center[keep], "lwh": wlh_to_lwh(sample["boxes_size_wlh"])[keep].astype(np.float64),
            "yaw": np.arctan2(heading[keep, 1], heading[keep, 0]), "velocity": velocity[keep, :2],
            "class": cls[keep], "attribute": attribute[keep]}


def augmentation(rng: np.random.Generator, data: Detection3DData) -> np.ndarray:
    """4x4 map of the ego frame: a rotation about z and, with probability 0.5, a mirror y -> -y (applied first)."""
    angle = rng.uniform(-data.max_rotation_rad, data.max_rotation_rad)
    c, s = np.cos(angle), np.sin(angle)
    A = np.eye(4)
    A[:2, :2] = [[c, -s], [s, c]]
    if data.mirror and rng.random() < 0.5:
        A[:, 1] *= -1.0
    return A


def turned_yaws(A: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Headings [rad] of yaws after the ego-frame map A (augmentation)."""
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=-1) @ A[:2, :2].T
    return np.arctan2(heading[..., 1], heading[..., 0])


def heatmap_target(truth: dict[str, np.ndarray], config: Detr3DConfig) -> np.ndarray:
    """(classes, H, W) float32 CenterPoint heatmap of ego-frame boxes on the feature grid (stem_stride x cell_m)."""
    cell = config.cell_m * config.stem_stride
    size = int(round(2 * config.half_extent_m / cell))
    heatmap = np.zeros((len(config.class_names), size, size), dtype=np.float32)
    for center, lwh, cls in zip(truth["center"], truth["lwh"], truth["class"]):
        radius = max(2, int(gaussian_radius(lwh[0] / cell, lwh[1] / cell, 0.1)))
        col, row = (int(np.floor((v + config.half_extent_m) / cell)) for v in center[:2])
        if 0 <= col < size and 0 <= row < size:
            draw_gaussian(heatmap[cls], col, row, radius)
    return heatmap


class Detection3DSamples(SeededSamples):
    """Network inputs and targets of every sweep of sweep caches (module docstring); sample i of epoch e is drawn
    from a generator seeded by (seed, e, i) (see train.trainer)."""

    def __init__(self, caches: Sequence[SweepDataset], config: Detr3DConfig, data: Detection3DData) -> None:
        self.items = [(ds, i) for ds in caches for i in range(len(ds))]
        if not self.items:
            raise ConfigError("detection3d training: the caches hold no sweeps")
        self.config, self.data = config, data

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        dataset, i = self.items[index]
        rng = self.rng(index)
        sample = {**dataset[i], "attribute_names": dataset.attributes}
        points = sample["points"][:sample["num_points_current"]]
        points_ego = transform_points(sample["T_ego_lidar"], points[:, :3].astype(np.float64))
        past, past_intensity, lag = past_points(dataset, i, int(rng.choice(PAST_STEPS)), sample)
        cameras = simulated_cameras(sample, str(rng.choice(self.data.presets)), rng)
        anchors = anchor_rows(cameras, self.config)
        truth = truth_in_ego(sample, self.config)
        A = augmentation(rng, self.data)
        points_ego = transform_points(A, points_ego)
        past = None if past is None else transform_points(A, past)
        cameras = [CameraBoxes(c.K, c.T_camera_points @ invert_transform(A), c.width, c.height, c.boxes_xyxy,
                               c.classes, c.scores) for c in cameras]
        valid = anchors[:, 10] > 0.5
        anchors[valid, :3] = transform_points(A, anchors[valid, :3].astype(np.float64))
        turned = turned_yaws(A, np.arctan2(anchors[valid, 6], anchors[valid, 7]))
        anchors[valid, 6], anchors[valid, 7] = np.sin(turned), np.cos(turned)
        truth["center"] = transform_points(A, truth["center"])
        truth["yaw"] = turned_yaws(A, truth["yaw"])
        truth["velocity"] = truth["velocity"] @ A[:2, :2].T
        maps, projection = camera_inputs(cameras, self.config)
        g = min(len(truth["class"]), MAX_TRUTH)
        target = np.zeros((MAX_TRUTH, STATE), np.float32)
        target[:g, :3] = truth["center"][:g]
        target[:g, 3:6] = np.log(np.maximum(truth["lwh"][:g], 1e-2))
        target[:g, 6], target[:g, 7] = np.sin(truth["yaw"][:g]), np.cos(truth["yaw"][:g])
        displacement = truth["velocity"][:g] * (lag or 0.0)
        target[:g, 8:10] = np.nan_to_num(displacement)
        moving_known = np.zeros(MAX_TRUTH, bool)
        moving_known[:g] = np.isfinite(displacement).all(1) & (lag is not None)
        return {"bev": torch.from_numpy(detr3d_bev(points_ego, points[:, 3], past, past_intensity, self.config)),
                "anchors": torch.from_numpy(anchors), "camera_maps": torch.from_numpy(maps),
                "camera_projection": torch.from_numpy(projection),
                "heatmap": torch.from_numpy(heatmap_target(truth, self.config)),
                "truth_state": torch.from_numpy(target),
                "truth_class": torch.from_numpy(np.concatenate([truth["class"][:g], np.full(MAX_TRUTH - g, -1)])),
                "truth_attribute": torch.from_numpy(np.concatenate([truth["attribute"][:g],
                                                                    np.full(MAX_TRUTH - g, -1)])),
                "truth_moving_known": torch.from_numpy(moving_known)}


def match(class_logits: np.ndarray, state: np.ndarray, anchor_class: np.ndarray, padding: np.ndarray,
          truth_state: np.ndarray, truth_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, truth indices) of the Hungarian matching of one sample (module docstring).

    class_logits (Q, classes), state (Q, STATE), anchor_class (Q,) (-1: not an anchor query), padding (Q,) bool;
    truth_state (G, STATE), truth_class (G,)."""
    if len(truth_class) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    p = 1.0 / (1.0 + np.exp(-class_logits[:, truth_class]))
    positive = FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * -np.log(p + 1e-8)
    negative = (1 - FOCAL_ALPHA) * p ** FOCAL_GAMMA * -np.log(1 - p + 1e-8)
    cost = MATCH_CLASS * (positive - negative)
    cost += MATCH_CENTER * np.abs(state[:, None, :2] - truth_state[None, :, :2]).sum(-1)
    cost += FORBIDDEN * ((anchor_class[:, None] >= 0) & (anchor_class[:, None] != truth_class[None, :]))
    cost += FORBIDDEN * padding[:, None]
    rows, cols = linear_sum_assignment(cost)
    allowed = cost[rows, cols] < FORBIDDEN / 2
    return rows[allowed], cols[allowed]


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise sigmoid focal loss (alpha FOCAL_ALPHA, gamma FOCAL_GAMMA) of logits against 0/1 targets."""
    p = torch.sigmoid(logits)
    ce = functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return alpha * (1 - p_t) ** FOCAL_GAMMA * ce


def detection_loss(out: dict, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (heatmap, class, box, attribute; summed over layers) of a batch."""
    parts = {"heatmap": focal_loss(out["heatmap"], batch["heatmap"])}
    class_loss = box_loss = attribute_loss = out["heatmap"].new_zeros(())
    padding = out["padding"]
    anchor_class = out["anchor_class"].cpu().numpy()
    count = max(1, int((batch["truth_class"] >= 0).sum()))
    for class_logits, state, attribute_logits in zip(out["class_logits"], out["states"], out["attribute_logits"]):
        target = torch.zeros_like(class_logits)
        logits_np, state_np = class_logits.detach().float().cpu().numpy(), state.detach().float().cpu().numpy()
        for b in range(class_logits.shape[0]):
            g = int((batch["truth_class"][b] >= 0).sum())
            truth_class = batch["truth_class"][b, :g]
            rows, cols = match(logits_np[b], state_np[b], anchor_class[b], padding[b].cpu().numpy(),
                               batch["truth_state"][b, :g].cpu().numpy(), truth_class.cpu().numpy())
            rows, cols = torch.from_numpy(rows).to(state.device), torch.from_numpy(cols).to(state.device)
            target[b, rows, truth_class[cols]] = 1.0
            truth = batch["truth_state"][b, cols]
            error = (state[b, rows] - truth).abs()
            moving = batch["truth_moving_known"][b, cols].float()
            box_loss = box_loss + error[:, :8].sum() + (error[:, 8:] * moving[:, None]).sum()
            attribute = batch["truth_attribute"][b, cols]
            known = attribute >= 0
            if known.any():
                attribute_loss = attribute_loss + functional.cross_entropy(
                    attribute_logits[b, rows[known]], attribute[known], reduction="sum")
        focal = sigmoid_focal(class_logits, target) * (~padding).float()[..., None]
        class_loss = class_loss + focal.sum()
    parts.update(classification=class_loss / count, box=box_loss / count, attribute=attribute_loss / count)
    total = parts["heatmap"] + CLASS_WEIGHT * parts["classification"] + BOX_WEIGHT * parts["box"] + \
        ATTRIBUTE_WEIGHT * parts["attribute"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def frame_cameras(sample: dict, boxes2d: str, rng: np.random.Generator | None = None) -> list[CameraBoxes]:
    """CameraBoxes (points in the ego frame) of a cache sample: its own 2D boxes (boxes2d 'cache') or boxes
    simulated from its 3D boxes with a preset (data.simulated_2d) drawn from rng."""
    if boxes2d == "cache":
        return sample_camera_boxes(sample, invert_transform(sample["T_ego_lidar"]))
    return simulated_cameras(sample, boxes2d, rng)


def frame_inputs(sample: dict, past: tuple, cameras: Sequence[CameraBoxes], config: Detr3DConfig
                 ) -> tuple[np.ndarray, ...]:
    """The four network inputs of one cache sample (its current sweep in the ego frame, the earlier sweep `past`
    from `past_points`, CameraBoxes for ego-frame points)."""
    points = sample["points"][:sample["num_points_current"]]
    points_ego = transform_points(sample["T_ego_lidar"], points[:, :3].astype(np.float64))
    return (detr3d_bev(points_ego, points[:, 3], past[0], past[1], config), anchor_rows(cameras, config),
            *camera_inputs(cameras, config))


def predict(network: nn.Module, caches: Sequence[SweepDataset], device: torch.device, boxes2d: str = "cache",
            score_threshold: float = 0.05, progress: bool = True, seed: int = 0) -> dict[str, Detections3D]:
    """Global-frame ('map') detections per sample token of the keyframes of the caches.

    boxes2d: 'cache' (the cache's own 2D boxes) or a simulated preset (data.simulated_2d) drawn with `seed`."""
    inference = Detr3DInference(network).to(device)
    rng = np.random.default_rng(seed)
    predictions = {}
    for dataset in caches:
        for i in tqdm(dataset.indices_where("is_key_frame"), desc="detect", unit="keyframe", disable=not progress):
            sample = dataset[int(i)]
            past = past_points(dataset, int(i), PAST_STEPS[1], sample)
            cameras = frame_cameras(sample, boxes2d, rng)
            inputs = frame_inputs(sample, past, cameras, network.config)
            with torch.inference_mode():
                outputs = inference(*(torch.from_numpy(x)[None].to(device) for x in inputs))
            dets = decode(*(o[0].float().cpu().numpy() for o in outputs), network.config, score_threshold, past[2])
            T_global_ego = sample["T_global_lidar"] @ invert_transform(sample["T_ego_lidar"])
            predictions[sample["sample_token"]] = dets.transformed(T_global_ego, "map")
    return predictions


def cache_nuscenes(cache: SweepDataset):
    """The devkit's NuScenes of the dataroot a cache was built from."""
    from nuscenes.nuscenes import NuScenes

    return NuScenes(cache.manifest["version"], cache.manifest["dataroot"], verbose=False)


def score(nusc, predictions: dict[str, Detections3D], split: str, min_distance_m: float = 0.0):
    """eval.detection.DetectionReport (nuscenes-devkit) of global-frame predictions on `split` of nusc's dataroot
    (only objects at least min_distance_m away when it is not 0)."""
    from ..eval.detection import evaluate_detection

    with tempfile.TemporaryDirectory(prefix="p3d-det3d-eval-") as tmp:
        return evaluate_detection(nusc, predictions, split, Path(tmp), min_distance_m=min_distance_m)


def evaluate(network: nn.Module, caches: Sequence[SweepDataset], split: str, device: torch.device,
             boxes2d: str = "cache", progress: bool = True, seed: int = 0):
    """`score` of the network's predictions (`predict`) on the keyframes of caches (of one dataroot)."""
    predictions = predict(network, caches, device, boxes2d, progress=progress, seed=seed)
    return score(cache_nuscenes(caches[0]), predictions, split)


class Detection3DTask(TrainTask):
    """detection3d on the shared trainer: Detr3D, matching + DETR losses, NDS / mAP on the val caches."""

    model_name = "detection3d"
    headline = "nds"

    def __init__(self, train_caches: Sequence[Path], model_config: Detr3DConfig, data: Detection3DData | None = None,
                 val_caches: Sequence[Path] = (), val_split: str = "val") -> None:
        self.train_paths, self.val_paths = [Path(p) for p in train_caches], [Path(p) for p in val_caches]
        self.train_caches = [SweepDataset(p, past_sweeps=0, images=False) for p in self.train_paths]
        self.val_caches = [SweepDataset(p, past_sweeps=0, images=False) for p in self.val_paths]
        self.model_config, self.data, self.val_split = model_config, data or Detection3DData(), val_split

    def build(self) -> Detr3D:
        return Detr3D(self.model_config)

    def initialised_from(self, path: Path) -> Detr3D:
        return same_architecture(path, self.model_name, self.model_config)

    def training_samples(self) -> Detection3DSamples:
        return Detection3DSamples(self.train_caches, self.model_config, self.data)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return detection_loss(model(batch["bev"], batch["anchors"], batch["camera_maps"], batch["camera_projection"]),
                              batch)

    def validate(self, model: nn.Module, device: torch.device, progress: bool) -> dict | None:
        if not self.val_caches:
            return None
        report = evaluate(model, self.val_caches, self.val_split, device, progress=progress)
        model.train()
        return {"nds": report.nds_present, "map": report.map_present, "class_ap": report.class_ap,
                "tp_errors": report.class_tp_errors}

    def data_summary(self) -> dict:
        return {"train_caches": [str(p) for p in self.train_paths], "val_caches": [str(p) for p in self.val_paths],
                "val_split": self.val_split, "train_sweeps": sum(len(c) for c in self.train_caches),
                "train_sources": [{k: ds.manifest[k] for k in ("dataroot", "version", "split", "options")}
                                  for ds in self.train_caches], "sampling": str(self.data)}


def train_detection3d(train_caches: Sequence[Path], out: Path, model_config: Detr3DConfig | None = None,
                      config: TrainConfig | None = None, val_caches: Sequence[Path] = (), val_split: str = "val",
                      resume: bool = False, init: Path | None = None, progress: bool = True,
                      data: Detection3DData | None = None, command: str = "") -> TrainResult:
    """Train a Detr3D on every sweep of train_caches, validating on the keyframes of val_caches (split val_split of
    their dataroot), checkpointing to out."""
    task = Detection3DTask(train_caches, model_config or Detr3DConfig(), data, val_caches, val_split)
    return train(task, out, config or TrainConfig(), resume=resume, init=init, progress=progress, command=command)
