"""The learned segmentation network: BEV U-Net + per-point head, with 2DDATA's Local Object Branch for training.

Inputs (numpy, `segnet_inputs`; one sweep, points in the base frame, x forward, y left, z up [m]):
- bev (C, S, S): core.models.bev.bev_input of all points;
- coords (N, 2): each point's grid_sample coordinates on that grid;
- point_features (N, 5): z / 2 [m], intensity / 255, horizontal range / 50 [m], height above the lowest and
  below the highest point of the point's 0.4 m cell [m] (what a BEV cell cannot say about one point); with
  `box_prior`, 10 more: the one-hot detection class of the point's 2D box times the box's score (core.box_points;
  zeros outside boxes). The box prior is not 2DDATA's method (which needs no boxes at run time) but an option that
  gives the network the 2D detector's class where it has one.

Network (`SegNet`): BevUNet -> bilinear BEV feature at each point, concatenated with an MLP of its point features
-> per-point feature f3 (`point_hidden`) -> 16 logits, one per lidarseg class 1..16 (LIDARSEG_CLASSES without
index 0 'ignore', which is never predicted: the devkit leaves ignore points out of the score).

Local Object Branch (methods.md §3, training only; `lob=True`): for points inside a 2D detection box (box class c,
core.box_points selects them), class-aware attention between learned detection-class and segmentation-class embeddings,
pi = softmax_k(cos(E_det[c], E_seg[k]) / tau), o = sum_k pi_k E_seg[k]; the 2DPASS gate fuses o into f3,
g = Linear([f3, o]), h = ReLU(g * sigmoid(Linear(g))); its own head gives LOB logits. The training loss supervises
them and distils them into the 3D logits; inference runs the 3D branch only (`SegNetInference`), so the node needs
neither cameras nor boxes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ...errors import ConfigError
from ..classes import DETECTION_CLASSES, LIDARSEG_CLASSES
from .bev import BevGrid, BevUNet, bev_input, sample_bev
from .layers import mlp

POINT_FEATURES = 5  # without the box prior
INTENSITY_SCALE = 255.0  # nuScenes intensity units
SEGNET_INPUTS = ("bev", "coords", "point_features")
SEGNET_OUTPUTS = ("probabilities",)


@dataclass(frozen=True)
class SegNetConfig:
    """Architecture of the segmentation network; stored in checkpoints and ONNX metadata.

    Attributes:
        class_names: output classes, in order (the 16 lidarseg classes; label = index + 1).
        half_extent_m, cell_m, z_min_m, z_max_m, z_bins: the BEV input grid (core.models.bev.BevGrid).
        widths, stem_stride, fuse_kernel: BevUNet channels per level, the stem's stride (2: features at 2 * cell_m)
            and the decoder's fusion kernel (1: a ninth of a 3x3's cost; measured in README, Learned segmentation).
        point_hidden: width of the per-point MLPs and of f3.
        lob: build the Local Object Branch (training with 2D boxes); detection_classes: its box classes.
        lob_embed: width of the class embeddings; lob_tau: the attention temperature.
        box_prior: the network reads each point's 2D box class x score (the node then needs cameras and boxes).
    """

    class_names: tuple[str, ...] = tuple(LIDARSEG_CLASSES[1:])
    half_extent_m: float = 51.2
    cell_m: float = 0.4
    z_min_m: float = -3.0
    z_max_m: float = 5.0
    z_bins: int = 8
    widths: tuple[int, ...] = (24, 48, 96, 128)
    stem_stride: int = 2
    fuse_kernel: int = 1
    point_hidden: int = 48
    lob: bool = True
    detection_classes: tuple[str, ...] = DETECTION_CLASSES
    lob_embed: int = 32
    lob_tau: float = 0.1
    box_prior: bool = False

    def __post_init__(self) -> None:
        for name in ("class_names", "widths", "detection_classes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.class_names or self.point_hidden < 1 or self.lob_embed < 1 or self.lob_tau <= 0:
            raise ConfigError(f"segmentation config {self}: classes, widths and temperature must be positive")
        BevGrid(self.half_extent_m, self.cell_m, self.z_min_m, self.z_max_m, self.z_bins)  # raises if invalid

    @property
    def grid(self) -> BevGrid:
        return BevGrid(self.half_extent_m, self.cell_m, self.z_min_m, self.z_max_m, self.z_bins)

    @property
    def point_features(self) -> int:
        """Channels of point_features."""
        return POINT_FEATURES + (len(self.detection_classes) if self.box_prior else 0)

    def to_dict(self) -> dict:
        return asdict(self)


def segnet_inputs(points_base: np.ndarray, intensity: np.ndarray, config: SegNetConfig,
                  boxes: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bev (C, S, S), coords (N, 2), point_features (N, config.point_features)) float32 network inputs of one sweep
    (module docstring).

    points_base: (N, 3) finite points in the base frame [m]; intensity: (N,) in nuScenes units (0-255); boxes:
    each point's 2D box (class index into detection_classes, -1 none; score), needed when config.box_prior.
    """
    grid = config.grid
    points_base = np.asarray(points_base, dtype=np.float64)
    bev = bev_input(points_base, intensity, grid)
    cell, inside = grid.cell_of(points_base)
    height = points_base[:, 2] - grid.z_min_m
    flat = bev.reshape(grid.channels, -1)
    low = np.where(inside, flat[grid.z_bins + 1, cell], height)
    high = np.where(inside, flat[grid.z_bins + 2, cell], height)
    features = np.stack([points_base[:, 2] / 2.0, np.asarray(intensity, np.float64) / INTENSITY_SCALE,
                         np.hypot(points_base[:, 0], points_base[:, 1]) / 50.0, height - low, high - height], axis=1)
    if config.box_prior:
        if boxes is None:
            raise ConfigError("this segmentation model takes a box prior: give each point's 2D box class and score")
        box_class, box_score = boxes
        prior = np.zeros((len(points_base), len(config.detection_classes)))
        inside = np.flatnonzero(box_class >= 0)
        prior[inside, box_class[inside]] = box_score[inside]
        features = np.concatenate([features, prior], axis=1)
    return bev, grid.normalised(points_base), features.astype(np.float32)


class LocalObjectBranch(nn.Module):
    """2DDATA's LOB: class-aware attention from a point's 2D box class, gated into its feature, and a head."""

    def __init__(self, config: SegNetConfig) -> None:
        super().__init__()
        hidden, classes = config.point_hidden, len(config.class_names)
        self.tau = config.lob_tau
        self.det_embed = nn.Parameter(torch.randn(len(config.detection_classes), config.lob_embed) * 0.1)
        self.seg_embed = nn.Parameter(torch.randn(classes, config.lob_embed) * 0.1)
        self.project = nn.Linear(config.lob_embed, hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.gate = nn.Linear(hidden, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, classes))

    def attention(self, box_class: torch.Tensor) -> torch.Tensor:
        """(..., n_seg) attention pi of each box class (index into detection_classes) over segmentation classes."""
        det = functional.normalize(self.det_embed[box_class], dim=-1)
        seg = functional.normalize(self.seg_embed, dim=-1)
        return torch.softmax(det @ seg.T / self.tau, dim=-1)

    def forward(self, f3: torch.Tensor, box_class: torch.Tensor) -> torch.Tensor:
        """LOB logits (B, N, classes) for features f3 (B, N, hidden) and box classes (B, N) (>= 0 where used)."""
        o = self.project(self.attention(box_class.clamp(min=0)) @ self.seg_embed)
        g = self.mix(torch.cat([f3, o], dim=-1))
        return self.head(torch.relu(g * torch.sigmoid(self.gate(g))))


class SegNet(nn.Module):
    """BEV U-Net + per-point head (+ the training-only Local Object Branch); module docstring."""

    def __init__(self, config: SegNetConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.point_hidden
        self.unet = BevUNet(config.grid.channels, config.widths, config.stem_stride, config.fuse_kernel)
        self.point_mlp = mlp(config.point_features, hidden, hidden)
        self.fuse = mlp(config.widths[0] + hidden, hidden, hidden)
        self.head = nn.Linear(hidden, len(config.class_names))
        self.lob = LocalObjectBranch(config) if config.lob else None

    def point_features(self, bev: torch.Tensor, coords: torch.Tensor, point_features: torch.Tensor) -> torch.Tensor:
        """f3 (B, N, point_hidden) for bev (B, C, S, S), coords (B, N, 2), point_features (B, N, F)."""
        cells = sample_bev(self.unet(bev), coords)
        return self.fuse(torch.cat([cells, self.point_mlp(point_features)], dim=-1))

    def forward(self, bev: torch.Tensor, coords: torch.Tensor, point_features: torch.Tensor,
                box_class: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(3D logits (B, N, classes), LOB logits or None): the LOB runs when it exists and box_class is given."""
        f3 = self.point_features(bev, coords, point_features)
        lob = self.lob(f3, box_class) if self.lob is not None and box_class is not None else None
        return self.head(f3), lob


class SegNetInference(nn.Module):
    """The node's contract: (bev (B, C, S, S), coords (B, N, 2), point_features (B, N, F)) -> class probabilities
    (B, N, classes) of the 3D branch (the LOB is not used)."""

    def __init__(self, network: SegNet) -> None:
        super().__init__()
        self.network = network.eval()
        self.config = network.config

    def forward(self, bev: torch.Tensor, coords: torch.Tensor, point_features: torch.Tensor) -> torch.Tensor:
        logits, _ = self.network(bev, coords, point_features)
        return torch.softmax(logits, dim=-1)


def labels_from_probabilities(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) uint8 lidarseg indices 1..16, scores (N,) float32 = the label's probability) of (N, 16)."""
    index = np.argmax(probabilities, axis=-1)
    return (index + 1).astype(np.uint8), np.take_along_axis(probabilities, index[:, None], -1)[:, 0].astype(np.float32)
