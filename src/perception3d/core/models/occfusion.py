"""OccFusion-style learned semantic occupancy (methods.md section 4), sized for a CPU: BEV with height in channels,
depth-free camera fusion on pre-sampled points, active coarse-to-fine refinement.

Network (inputs from core.models.occfusion_inputs; S = coarse cells per side, Z = coarse height bins, F = voxel
features, N = S * S * Z coarse voxels in flat message order):
1. LiDAR BEV image (C, S, S) -> BevUNet -> (upsampled to S x S) -> 1x1 conv to Z * F channels -> one F-vector per
   coarse voxel (channel-to-height head).
2. Fusion: at the V non-empty coarse voxels, an MLP of [LiDAR feature, camera evidence] replaces the voxel's feature
   (scattered back with index_put: the indices are unique and ONNX exports it exactly).
3. Coarse logits (N, 17) by a linear layer per voxel: 0 free, 1..16 lidarseg classes. In eval mode steps 1-3 run
   only at the observed voxels (a fine child hit or crossed by a ray, read from the BEV image's children shares;
   ~14 % of a nuScenes sweep's: the others' labels are unknown in the output; the 1x1 convolution becomes one
   matrix product per height bin at that bin's observed columns) and step 4 refines only observed parents.
4. Active coarse-to-fine: parents = the given LiDAR parents + the `refine_top_k` most uncertain other voxels
   (uncertainty 1 - max softmax, among the voxels predicted non-free that the sweep observed, i.e. with a fine
   child hit or crossed by a ray; TopK with a fixed k); each parent's 8 children at the fine grid get logits from
   an MLP of [parent feature, child offset, child's fine occupied / free state]. All other fine voxels take their
   parent's coarse label.
5. Prior correction: training counts only a share q of the free voxels (train.occupancy.loss_voxels), which
   multiplies the odds of 'occupied' by 1/q; in eval mode the network adds log(1/q) to the free logit (coarse and
   fine, each with its q) so that its probabilities are those of the full grid.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional

from ...errors import ConfigError
from ..classes import OCCUPANCY_CLASSES, OCCUPANCY_UNKNOWN
from ..occupancy import OPENOCCUPANCY_RANGE
from ..voxels import VoxelGrid
from .bev import BevUNet
from .occfusion_inputs import CAMERA_CHANNELS, bev_grid, coarse_grid, lidar_channel_count

OCCUPANCY_LABELS = tuple(name for label, name in OCCUPANCY_CLASSES.items() if label != OCCUPANCY_UNKNOWN)
# child offsets (dx, dy, dz) of a coarse voxel's 8 fine voxels
CHILD_OFFSETS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1))
INPUT_NAMES = ("bev", "fused_index", "camera", "lidar_parents", "fine_state")
OUTPUT_NAMES = ("coarse_label", "coarse_score", "fine_index", "fine_label", "fine_score")


@dataclass(frozen=True)
class OccFusionConfig:
    """Architecture of the learned occupancy network; stored in checkpoints and ONNX metadata.

    Attributes:
        class_names: output classes in label order (0 free, 1..16 lidarseg classes).
        point_cloud_range: the fine grid [xmin, ymin, zmin, xmax, ymax, zmax] in the base frame [m].
        fine_voxel_m: fine (output) voxel edge [m]; the coarse fusion grid has twice that.
        widths, stem_stride: the BevUNet (core.models.bev).
        voxel_features: F, features per coarse voxel.
        camera_fusion: False trains the same network with zero camera evidence (LiDAR only).
        presample_points: N points pre-sampled per non-empty coarse voxel where the camera evidence is read; 0 reads
            it at the voxel centre alone (occfusion_inputs.fused_voxels).
        refine: coarse-to-fine refinement on; off, the fine labels are the coarse ones upsampled (ablation).
        refine_top_k: uncertain coarse voxels refined besides the LiDAR parents.
        refine_hidden: hidden width of the refinement MLP.
        coarse_free_keep, fine_free_keep: share q of the known free coarse / refined fine voxels each training
            step's loss counts (the rest are left out); eval mode adds log(1 / q) to the free logit.
    """

    class_names: tuple[str, ...] = OCCUPANCY_LABELS
    point_cloud_range: tuple[float, ...] = OPENOCCUPANCY_RANGE
    fine_voxel_m: float = 0.4
    widths: tuple[int, ...] = (16, 32, 48)
    stem_stride: int = 2
    voxel_features: int = 16
    camera_fusion: bool = True
    presample_points: int = 0
    refine: bool = True
    refine_top_k: int = 2000
    refine_hidden: int = 32
    coarse_free_keep: float = 0.05
    fine_free_keep: float = 0.5

    def __post_init__(self) -> None:
        for name in ("class_names", "point_cloud_range", "widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.class_names != OCCUPANCY_LABELS:
            raise ConfigError(f"occupancy classes {self.class_names}: expected {OCCUPANCY_LABELS}")
        if min(self.voxel_features, self.refine_hidden) < 1 or min(self.presample_points, self.refine_top_k) < 0 or \
                not (0 < self.coarse_free_keep <= 1 and 0 < self.fine_free_keep <= 1):
            raise ConfigError(f"occupancy config {self}: sizes must be positive (presample_points and refine_top_k "
                              "may be 0)")
        try:
            coarse_grid(self.fine_grid)
            lidar_channel_count(self.fine_grid)
        except ValueError as exc:
            raise ConfigError(f"occupancy config {self}: {exc}") from exc

    @property
    def fine_grid(self) -> VoxelGrid:
        return VoxelGrid.from_range(self.point_cloud_range, self.fine_voxel_m)

    def to_dict(self) -> dict:
        return asdict(self)


def max_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max softmax probability (N,), its class (N,)) of logits (N, classes): 1 / sum(exp(logits - max)), without
    the softmax's division of every class (a third of the exported network's time on 17 classes per row)."""
    top, label = logits.max(dim=1)
    return 1.0 / torch.exp(logits - top.unsqueeze(1)).sum(dim=1), label


def shifted_linear(x: torch.Tensor, layer: nn.Linear, shift: torch.Tensor | None) -> torch.Tensor:
    """layer(x) + shift, the shift folded into the bias (a constant of the exported graph, not an Add per row)."""
    return layer(x) if shift is None else functional.linear(x, layer.weight, layer.bias + shift)


class OccFusionNet(nn.Module):
    """The network of the module docstring; forward returns logits for training."""

    def __init__(self, config: OccFusionConfig) -> None:
        super().__init__()
        self.config = config
        fine = config.fine_grid
        sx, sy, sz = coarse_grid(fine).shape
        self.side, self.height, self.fine_side = sx, sz, fine.shape[0]
        self.share_channel = bev_grid(fine).channels
        self.num_coarse = sx * sy * sz
        f, classes = config.voxel_features, len(config.class_names)
        self.bev = BevUNet(lidar_channel_count(fine), config.widths, config.stem_stride)
        self.height_head = nn.Conv2d(config.widths[0], sz * f, 1)
        self.fusion = nn.Sequential(nn.Linear(f + CAMERA_CHANNELS, 32), nn.ReLU(inplace=True), nn.Linear(32, f))
        self.coarse_head = nn.Linear(f, classes)
        self.fine_head = nn.Sequential(nn.Linear(f + 5, config.refine_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(config.refine_hidden, classes))
        self.register_buffer("child_offsets", torch.tensor(CHILD_OFFSETS, dtype=torch.int64), persistent=False)
        free = torch.zeros(2, classes)
        free[:, 0] = torch.tensor([-math.log(config.coarse_free_keep), -math.log(config.fine_free_keep)])
        self.register_buffer("free_prior", free, persistent=False)

    def voxel_features(self, bev: torch.Tensor, fused_index: torch.Tensor, camera: torch.Tensor,
                       observed: torch.Tensor | None = None) -> torch.Tensor:
        """(N, F) features of every coarse voxel (flat order) after fusion, or given observed (N,) bool (with every
        fused voxel set) only the (M, F) of the M voxels set, in flat order; bev (1, C, S, S)."""
        x = self.bev(bev)
        if x.shape[-1] != self.side:
            x = functional.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        f = self.config.voxel_features
        if observed is None:
            volume = self.height_head(x).reshape(self.height, f, self.side * self.side)
            voxels, rows = volume.permute(0, 2, 1).reshape(self.num_coarse, f), fused_index
        else:
            voxels = self.height_head_at(x, observed)
            rows = self.observed_rows(observed)[fused_index]
        lidar = voxels[rows]
        fused = lidar + self.fusion(torch.cat([lidar, camera], dim=1))
        return voxels.index_put((rows,), fused)

    @staticmethod
    def observed_rows(observed: torch.Tensor) -> torch.Tensor:
        """(N,) int64: each observed voxel's row among the observed ones, in flat order (observed (N,) bool; not
        meaningful at the unobserved ones)."""
        return torch.cumsum(observed.to(torch.int64), dim=0) - 1

    def height_head_at(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """(M, F) height head outputs of the M voxels set in observed (N,) bool, in flat order (height by height:
        the 1x1 convolution's weights of one height bin at that bin's columns only); x (1, C, S, S).

        Flat order is height-major: one nonzero gives every bin's columns, bin z's rows lying between the running
        counts of the bins below it (ranges, not a nonzero per bin: exported, those cost 4x as much)."""
        f = self.config.voxel_features
        cells = x.reshape(x.shape[1], -1).t()  # (S * S, C): a row per column, gathered whole
        weight = self.height_head.weight.reshape(self.height, f, -1)
        bias = self.height_head.bias.reshape(self.height, f)
        column = torch.nonzero(observed).reshape(-1) % cells.shape[0]
        end = torch.cumsum(observed.reshape(self.height, -1).to(torch.float32).sum(dim=1).to(torch.int64), dim=0)
        start = torch.cat([end.new_zeros(1), end[:-1]])
        return torch.cat([functional.linear(cells[column[torch.arange(start[z], end[z])]], weight[z], bias[z])
                          for z in range(self.height)])

    def observed_parents(self, bev: torch.Tensor) -> torch.Tensor:
        """(N,) bool: coarse voxels with a fine child hit or crossed by a ray, from the BEV image's children shares
        (occfusion_inputs.lidar_inputs: occupied then free share per coarse height bin, > 0 iff a child is)."""
        first, z = self.share_channel, self.height
        return (bev[0, first:first + z] + bev[0, first + z:first + 2 * z]).reshape(-1) > 0

    @staticmethod
    def coarse_confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(max softmax score (N,), label (N,)) of coarse logits (N, classes), without gradient."""
        return max_softmax(logits.detach())

    def refine_parents(self, score: torch.Tensor, label: torch.Tensor, lidar_parents: torch.Tensor,
                       observed: torch.Tensor) -> torch.Tensor:
        """lidar_parents + the refine_top_k most uncertain other observed voxels predicted non-free (score, label:
        coarse_confidence)."""
        if not self.config.refine:
            return lidar_parents[:0]
        k = min(self.config.refine_top_k, self.num_coarse)
        if k == 0:
            return lidar_parents
        uncertainty = torch.where((label > 0) & observed, 1.0 - score, torch.full_like(score, -1.0))
        uncertainty = uncertainty.index_put((lidar_parents,), torch.full_like(lidar_parents, -2.0, dtype=score.dtype))
        return torch.cat([lidar_parents, torch.topk(uncertainty, k).indices])

    def refine(self, parent_features: torch.Tensor, parents: torch.Tensor, fine_state: torch.Tensor,
               logit_shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(fine flat indices (P * 8,), fine logits (P * 8, classes)) of the children of parents (P,) with features
        (P, F); fine_state (2, fine voxels), any dtype (the node's is uint8); logit_shift (classes,) is added to the
        logits through the last layer's bias (eval mode's prior correction at no cost per child)."""
        s, fs = self.side, self.fine_side
        px, py, pz = parents % s, (parents // s) % s, parents // (s * s)
        o = self.child_offsets
        cx = (2 * px).unsqueeze(1) + o[:, 0]
        cy = (2 * py).unsqueeze(1) + o[:, 1]
        cz = (2 * pz).unsqueeze(1) + o[:, 2]
        fine_index = (cx + fs * (cy + fs * cz)).reshape(-1)
        # one row per child (2D: the linear layers run as single matrix products with their bias)
        parent = parent_features.unsqueeze(1).expand(-1, len(CHILD_OFFSETS), -1)
        parent = parent.reshape(-1, self.config.voxel_features)
        offset = (o.to(parent_features.dtype) - 0.5).unsqueeze(0).expand(parents.shape[0], -1, -1).reshape(-1, 3)
        n = fine_state.shape[1]  # gathered from the flat states (a gather along the last axis is much slower)
        state = fine_state.reshape(-1)[torch.stack([fine_index, fine_index + n], dim=1)].to(parent_features.dtype)
        hidden, last = self.fine_head[:-1](torch.cat([parent, offset, state], dim=1)), self.fine_head[-1]
        return fine_index, shifted_linear(hidden, last, logit_shift)

    def forward(self, bev: torch.Tensor, fused_index: torch.Tensor, camera: torch.Tensor, lidar_parents: torch.Tensor,
                fine_state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs as INPUT_NAMES (bev (1, C, S, S), fused_index (V,) int64, camera (V, CAMERA_CHANNELS),
        lidar_parents (R,) int64, fine_state (2, fine voxels) uint8 0 / 1); returns coarse_logits, coarse_score and
        coarse_label (N,) (coarse_confidence), fine_index and fine_logits.

        Training: coarse_logits (N, classes) of every coarse voxel, the children of every refined parent. Eval mode:
        the logits only of the observed coarse voxels (observed_parents; coarse_logits (M, classes) in the order of
        coarse_observed (M,)), score and label 0 elsewhere, and only the observed parents refined, as only their
        labels reach an output (the others are unknown there); logits with the prior correction.
        """
        observed = self.observed_parents(bev)
        out = {}
        if self.training:
            voxels = self.voxel_features(bev, fused_index, camera)
            coarse = self.coarse_head(voxels)
            score, label = self.coarse_confidence(coarse)
        else:  # features, logits and refinement only at the observed voxels (voxels: their rows, in flat order)
            voxels = self.voxel_features(bev, fused_index, camera, observed)
            seen = torch.nonzero(observed).reshape(-1)
            coarse = shifted_linear(voxels, self.coarse_head, self.free_prior[0])
            seen_score, seen_label = self.coarse_confidence(coarse)
            score = torch.zeros_like(observed, dtype=seen_score.dtype).index_put((seen,), seen_score)
            label = torch.zeros_like(observed, dtype=seen_label.dtype).index_put((seen,), seen_label)
            out["coarse_observed"] = seen
        parents = self.refine_parents(score, label, lidar_parents, observed)
        if self.training:
            fine_index, fine = self.refine(voxels[parents], parents, fine_state)
        else:
            parents = parents[observed[parents]]  # an unobserved voxel's children are all unknown in the output
            fine_index, fine = self.refine(voxels[self.observed_rows(observed)[parents]], parents, fine_state,
                                           self.free_prior[1])
        return {**out, "coarse_logits": coarse, "coarse_score": score, "coarse_label": label,
                "fine_index": fine_index, "fine_logits": fine}


class OccFusionInference(nn.Module):
    """The node's contract (exported as is): INPUT_NAMES -> OUTPUT_NAMES, labels and max softmax scores of the coarse
    voxels (0 and 0 where the sweep observed none of a voxel's children) and of the refined fine voxels."""

    def __init__(self, network: OccFusionNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, bev, fused_index, camera, lidar_parents, fine_state):
        out = self.network(bev, fused_index, camera, lidar_parents, fine_state)
        coarse_score, coarse_label = out["coarse_score"], out["coarse_label"]  # as the refinement ranked them
        fine_score, fine_label = max_softmax(out["fine_logits"])
        return coarse_label, coarse_score, out["fine_index"], fine_label, fine_score
