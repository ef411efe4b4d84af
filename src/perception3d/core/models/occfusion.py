"""OccFusion-style learned semantic occupancy (methods.md section 4), sized for a CPU: BEV with height in channels,
depth-free camera fusion on pre-sampled points, active coarse-to-fine refinement.

Network (inputs from core.models.occfusion_inputs; S = coarse cells per side, Z = coarse height bins, F = voxel
features, N = S * S * Z coarse voxels in flat message order):
1. LiDAR BEV image (C, S, S) -> BevUNet -> (upsampled to S x S) -> 1x1 conv to Z * F channels -> one F-vector per
   coarse voxel (channel-to-height head).
2. Fusion: at the V non-empty coarse voxels, an MLP of [LiDAR feature, camera evidence] replaces the voxel's feature
   (scattered back with index_put: the indices are unique and ONNX exports it exactly).
3. Coarse logits (N, 17) by a linear layer per voxel: 0 free, 1..16 lidarseg classes.
4. Active coarse-to-fine: parents = the given LiDAR parents + the `refine_top_k` most uncertain other voxels
   (uncertainty 1 - max softmax, among the voxels predicted non-free that the sweep observed, i.e. with a fine
   child hit or crossed by a ray; TopK with a fixed k, fewer parents when there are fewer such voxels); each
   parent's 8 children at the fine grid get logits from an MLP of [parent feature, child offset, child's fine
   occupied / free state]. All other fine voxels take their parent's coarse label.
5. Prior correction: training counts only a share q of the free voxels (train.occupancy.loss_voxels), which
   multiplies the odds of 'occupied' by 1/q; in eval mode the network adds log(1/q) to the free logit (coarse and
   fine, each with its q) so that its probabilities are those of the full grid.

`forward` runs every coarse voxel (training). The node runs `infer`: steps 1-4 only at the M observed coarse voxels
(a fine child hit or crossed by a ray; ~14 % of a nuScenes sweep's: the others' labels are unknown in the output),
listed with their row ranges per height bin by occfusion_inputs.network_inputs, so the graph holds no operation over
the whole coarse grid: the 1x1 convolution becomes one matrix product per height bin at that bin's observed columns,
the top-K ranks the observed rows, and only the observed children of the parents are refined.
"""
from __future__ import annotations

import copy
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
from .occfusion_inputs import CAMERA_CHANNELS, coarse_grid, lidar_channel_count

OCCUPANCY_LABELS = tuple(name for label, name in OCCUPANCY_CLASSES.items() if label != OCCUPANCY_UNKNOWN)
# child offsets (dx, dy, dz) of a coarse voxel's 8 fine voxels
CHILD_OFFSETS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1))
TRAINING_INPUTS = ("bev", "fused_index", "camera", "lidar_parents", "fine_observation")  # OccFusionNet.forward
INPUT_NAMES = ("bev", "observed_index", "height_end", "fused_rows", "camera", "parent_rows",  # infer
               "fine_observation")
OUTPUT_NAMES = ("coarse_label", "coarse_score", "fine_index", "fine_label", "fine_score")


@dataclass(frozen=True)
class OccFusionConfig:
    """Architecture of the learned occupancy network; stored in checkpoints and ONNX metadata.

    Attributes:
        class_names: output classes in label order (0 free, 1..16 lidarseg classes).
        point_cloud_range: the fine grid [xmin, ymin, zmin, xmax, ymax, zmax] in the base frame [m].
        fine_voxel_m: fine (output) voxel edge [m]; the coarse fusion grid has twice that.
        widths, stem_stride, fuse_kernel: the BevUNet (core.models.bev).
        bev_statistics: the BEV image also holds core.models.bev.bev_input's statistics (log count per height bin,
            mean intensity, lowest and highest point) before the children shares; off, the shares alone (no
            statistics to compute per sweep; occfusion_inputs.lidar_inputs).
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
    fuse_kernel: int = 1
    bev_statistics: bool = False
    voxel_features: int = 16
    camera_fusion: bool = True
    presample_points: int = 0
    refine: bool = True
    refine_top_k: int = 2000
    refine_hidden: int = 16
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
            lidar_channel_count(self.fine_grid, self.bev_statistics)
        except ValueError as exc:
            raise ConfigError(f"occupancy config {self}: {exc}") from exc

    @property
    def fine_grid(self) -> VoxelGrid:
        return VoxelGrid.from_range(self.point_cloud_range, self.fine_voxel_m)

    def to_dict(self) -> dict:
        return asdict(self)


def occupied_confidence(relative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(label (N,), rows (O,) of the rows labelled non-free (label > 0), score (N,): the max softmax probability at
    those rows and 0 at the free ones) of relative logits (N, classes - 1): the non-free classes' logits minus the
    free one's (free_relative, relative_logits).

    A row is non-free when a class's logit exceeds the free one's (on a tie the free class wins, as argmax's first
    index), its label is its largest class, its score 1 / (exp(-top) + sum(exp(relative - top))) with top its
    largest relative logit: the softmax's maximum, computed on the non-free rows alone (a sweep's observed voxels are
    mostly free; only non-free voxels are refined and read downstream) and without dividing every class."""
    top = relative.amax(dim=1)
    occupied = torch.nonzero(top > 0).reshape(-1)
    rows, row_top = relative[occupied], top[occupied].unsqueeze(1)
    score = 1.0 / (torch.exp(-row_top) + torch.exp(rows - row_top).sum(dim=1, keepdim=True))
    label = relative.new_zeros(relative.shape[0], dtype=torch.int64).index_put((occupied,), rows.argmax(dim=1) + 1)
    return label, occupied, relative.new_zeros(relative.shape[0]).index_put((occupied,), score.reshape(-1))


def free_relative(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes - 1) of logits (N, classes): the non-free classes' logits minus the free class's (0)."""
    return logits[:, 1:] - logits[:, :1]


def relative_logits(x: torch.Tensor, layer: nn.Linear, shift: torch.Tensor | None) -> torch.Tensor:
    """(N, classes - 1) the non-free classes' logits of layer(x) + shift minus the free class's, by one linear map
    with the free row subtracted from the weights and bias (16 outputs: onnxruntime's matrix products run in tiles of
    16 columns, and a 17th column costs nearly as much as the other 16)."""
    bias = layer.bias if shift is None else layer.bias + shift
    return functional.linear(x, layer.weight[1:] - layer.weight[:1], bias[1:] - bias[:1])


class _Compress(torch.autograd.Function):
    """x[mask] along the first axis, exported as ONNX Compress (onnxruntime: a third of the time of the NonZero and
    Gathers that boolean indexing exports to)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x[mask]

    @staticmethod
    def symbolic(graph, x, mask):
        return graph.op("Compress", x, mask, axis_i=0)


def compress(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rows of x (N, ...) where mask (N,) bool is set (no gradient: for indices)."""
    return _Compress.apply(x, mask)


def shifted_linear(x: torch.Tensor, layer: nn.Linear, shift: torch.Tensor | None) -> torch.Tensor:
    """layer(x) + shift, the shift folded into the bias (a constant of the exported graph, not an Add per row)."""
    return layer(x) if shift is None else functional.linear(x, layer.weight, layer.bias + shift)


class OccFusionNet(nn.Module):
    """The network of the module docstring: `forward` on every coarse voxel (training; in eval mode with the prior
    correction), `infer` on the observed ones only (the node's contract, OccFusionInference)."""

    def __init__(self, config: OccFusionConfig) -> None:
        super().__init__()
        self.config = config
        fine = config.fine_grid
        sx, sy, sz = coarse_grid(fine).shape
        self.side, self.height, self.fine_side = sx, sz, fine.shape[0]
        self.num_coarse = sx * sy * sz
        f, classes = config.voxel_features, len(config.class_names)
        self.bev = BevUNet(lidar_channel_count(fine, config.bev_statistics), config.widths, config.stem_stride,
                           config.fuse_kernel)
        self.height_head = nn.Conv2d(config.widths[0], sz * f, 1)
        self.fusion = nn.Sequential(nn.Linear(f + CAMERA_CHANNELS, 32), nn.ReLU(inplace=True), nn.Linear(32, f))
        self.coarse_head = nn.Linear(f, classes)
        # input: [parent feature (F), child offset (3), child's fine occupied / free state (2)]
        self.fine_head = nn.Sequential(nn.Linear(f + 5, config.refine_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(config.refine_hidden, classes))
        # each child's fine flat index less its parent's first child's (dx + X * (dy + Y * dz), X = Y = fine side)
        steps = [dx + self.fine_side * (dy + self.fine_side * dz) for dx, dy, dz in CHILD_OFFSETS]
        self.register_buffer("child_steps", torch.tensor(steps, dtype=torch.int64), persistent=False)
        # the child inputs of the fine head, one row per child code (child_voxels): offset - 0.5, occupied, free
        offset = torch.tensor(CHILD_OFFSETS, dtype=torch.float32).repeat_interleave(4, dim=0) - 0.5
        state = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).repeat(len(CHILD_OFFSETS), 1)
        self.register_buffer("child_inputs", torch.cat([offset, state], dim=1), persistent=False)
        free = torch.zeros(2, classes)
        free[:, 0] = torch.tensor([-math.log(config.coarse_free_keep), -math.log(config.fine_free_keep)])
        self.register_buffer("free_prior", free, persistent=False)

    def bev_features(self, bev: torch.Tensor) -> torch.Tensor:
        """(1, widths[0], S, S) U-Net features of the BEV image (1, C, S, S)."""
        x = self.bev(bev)
        if x.shape[-1] != self.side:
            x = functional.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return x

    def fuse(self, voxels: torch.Tensor, rows: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """voxels (N, F) with the rows (V,) of the non-empty voxels replaced by their fusion with the camera evidence
        (V, CAMERA_CHANNELS) (index_put: the rows are unique and ONNX exports it exactly)."""
        lidar = voxels[rows]
        return voxels.index_put((rows,), lidar + self.fusion(torch.cat([lidar, camera], dim=1)))

    def voxel_features(self, bev: torch.Tensor, fused_index: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """(N, F) features of every coarse voxel (flat order) after fusion; bev (1, C, S, S)."""
        f = self.config.voxel_features
        volume = self.height_head(self.bev_features(bev)).reshape(self.height, f, self.side * self.side)
        return self.fuse(volume.permute(0, 2, 1).reshape(self.num_coarse, f), fused_index, camera)

    def height_head_at(self, x: torch.Tensor, observed_index: torch.Tensor, height_end: torch.Tensor) -> torch.Tensor:
        """(M, F) height head outputs of the M observed voxels (observed_index (M,), sorted flat indices), height by
        height: the 1x1 convolution's weights of one height bin at that bin's columns only; x (1, C, S, S).

        Flat order is height-major: bin z's rows lie between height_end[z - 1] and height_end[z] (ranges, not a
        nonzero per bin: exported, those cost 4x as much)."""
        f = self.config.voxel_features
        cells = x.reshape(x.shape[1], -1).t()  # (S * S, C): a row per column, gathered whole
        weight = self.height_head.weight.reshape(self.height, f, -1)
        bias = self.height_head.bias.reshape(self.height, f)
        column = observed_index % cells.shape[0]
        start = torch.cat([height_end.new_zeros(1), height_end[:-1]])
        return torch.cat([functional.linear(cells[column[torch.arange(start[z], height_end[z], device=x.device)]],
                                            weight[z], bias[z]) for z in range(self.height)])

    def observed_parents(self, bev: torch.Tensor) -> torch.Tensor:
        """(N,) bool: coarse voxels with a fine child hit or crossed by a ray, from the BEV image's children shares
        (occfusion_inputs.lidar_inputs: its last channels, occupied then free share per coarse height bin, > 0 iff a
        child is)."""
        z = self.height
        return (bev[0, -2 * z:-z] + bev[0, -z:]).reshape(-1) > 0

    def refine_parents(self, occupied: torch.Tensor, score: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """The given parents (R,) + the refine_top_k most uncertain (1 - score) voxels among the others predicted
        non-free, as rows of occupied_confidence's results (occupied (O,), score (N,); every voxel in training, the
        observed rows in infer). The top-K runs on the O candidates' uncertainties padded with refine_top_k entries
        ranked below every candidate: its k is fixed, and there may be fewer candidates than k."""
        k = self.config.refine_top_k
        if not self.config.refine:
            return parents[:0]
        if k == 0:
            return parents
        other = score.new_ones(score.shape, dtype=torch.bool).index_put((parents,), parents.new_zeros(parents.shape,
                                                                                                 dtype=torch.bool))
        candidate = score[occupied]
        uncertainty = torch.where(other[occupied], 1.0 - candidate, torch.full_like(candidate, -1.0))  # parents: -1
        top = torch.topk(torch.cat([uncertainty, score.new_full((k,), -2.0)]), k)
        return torch.cat([parents, occupied[top.indices[top.values >= 0]]])

    def child_voxels(self, parents: torch.Tensor,
                     fine_observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fine flat indices (P, 8), observations (P, 8)) of the children of coarse parents (P,) in fine_observation
        (fine voxels,): 0 unobserved, 1 free, 2 occupied, i.e. 2 * occupied + free (occfusion_inputs.lidar_inputs),
        any dtype (the node's is uint8)."""
        s, fs = self.side, self.fine_side
        first = 2 * (parents % s + fs * ((parents // s) % s + fs * (parents // (s * s))))  # the (0, 0, 0) child
        # CHILD_OFFSETS pairs the children along x, neighbours in flat order: their observations are read as rows
        # of 2 (half the gathered indices, each costing onnxruntime about the same)
        pairs = fine_observation.reshape(-1, 2)[(first // 2).unsqueeze(1) + self.child_steps[::2] // 2]
        return first.unsqueeze(1) + self.child_steps, pairs.reshape(-1, len(CHILD_OFFSETS))

    def child_codes(self, observation: torch.Tensor) -> torch.Tensor:
        """(P, 8) int64 rows of child_inputs, offset * 4 + observation, of the children's observations (P, 8)
        (child_voxels; cast after the gather, not the 1.3 M voxels)."""
        return 4 * torch.arange(len(CHILD_OFFSETS), device=observation.device) + observation.to(torch.int64)

    @staticmethod
    def child_parents(parents: torch.Tensor) -> torch.Tensor:
        """(P * 8,) each child's row among parents (P,), in child_voxels' order (flattened)."""
        rows = torch.arange(parents.shape[0], device=parents.device)
        return rows.unsqueeze(1).expand(-1, len(CHILD_OFFSETS)).reshape(-1)

    def child_hidden(self, parent_features: torch.Tensor, child_parent: torch.Tensor,
                     child_code: torch.Tensor) -> torch.Tensor:
        """(C, refine_hidden) fine head hidden layer of C children, the input of its last layer: child_parent (C,)
        rows of parent_features (P, F), child_code (C,) (child_voxels). The first layer is linear: its parent part
        runs once per parent and its child part is a table of the 32 child codes, so a child costs a gather and an
        add."""
        first, f = self.fine_head[0], self.config.voxel_features
        parent = functional.linear(parent_features, first.weight[:, :f], first.bias)
        child = functional.linear(self.child_inputs, first.weight[:, f:])
        return torch.relu(parent[child_parent] + child[child_code])

    def refine(self, parent_features: torch.Tensor, parents: torch.Tensor, fine_observation: torch.Tensor,
               logit_shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(fine flat indices (P * 8,), fine logits (P * 8, classes)) of every child of parents (P,) with features
        (P, F) (child_voxels, child_hidden, the last layer with logit_shift (classes,) folded into its bias: eval
        mode's prior correction at no cost per child)."""
        fine_index, observation = self.child_voxels(parents, fine_observation)
        codes = self.child_codes(observation).reshape(-1)
        hidden = self.child_hidden(parent_features, self.child_parents(parents), codes)
        return fine_index.reshape(-1), shifted_linear(hidden, self.fine_head[-1], logit_shift)

    def refine_observed(self, parent_features: torch.Tensor, parents: torch.Tensor, fine_observation: torch.Tensor,
                        logit_shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """refine for only the children the sweep observed (hit or crossed), the others being unknown in the output
        whatever their label, with relative logits (C, classes - 1) (relative_logits)."""
        fine_index, observation = self.child_voxels(parents, fine_observation)
        seen = (observation > 0).reshape(-1)
        hidden = self.child_hidden(parent_features, compress(self.child_parents(parents), seen),
                                   compress(self.child_codes(observation).reshape(-1), seen))
        return compress(fine_index.reshape(-1), seen), relative_logits(hidden, self.fine_head[-1], logit_shift)

    def forward(self, bev: torch.Tensor, fused_index: torch.Tensor, camera: torch.Tensor, lidar_parents: torch.Tensor,
                fine_observation: torch.Tensor) -> dict[str, torch.Tensor]:
        """On every coarse voxel, inputs as TRAINING_INPUTS (bev (1, C, S, S), fused_index (V,) int64, camera (V,
        CAMERA_CHANNELS), lidar_parents (R,) int64, fine_observation (fine voxels,) 0 / 1 / 2): coarse_logits (N,
        classes), coarse_label and coarse_score (N,) (occupied_confidence), fine_index and fine_logits of the children
        of every refined parent; in eval mode the logits carry the prior correction."""
        shift = None if self.training else self.free_prior
        voxels = self.voxel_features(bev, fused_index, camera)
        coarse = shifted_linear(voxels, self.coarse_head, None if shift is None else shift[0])
        label, occupied, score = occupied_confidence(free_relative(coarse.detach()))
        observed = self.observed_parents(bev)[occupied]  # unobserved voxels: no candidates
        parents = self.refine_parents(occupied[observed], score, lidar_parents)
        fine_index, fine = self.refine(voxels[parents], parents, fine_observation,
                                       None if shift is None else shift[1])
        return {"coarse_logits": coarse, "coarse_score": score, "coarse_label": label, "fine_index": fine_index,
                "fine_logits": fine}

    def infer(self, bev: torch.Tensor, observed_index: torch.Tensor, height_end: torch.Tensor,
              fused_rows: torch.Tensor, camera: torch.Tensor, parent_rows: torch.Tensor,
              fine_observation: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The node's contract, inputs as INPUT_NAMES (occfusion_inputs.network_inputs): labels and max softmax scores
        (0 at the voxels labelled free: occupied_confidence) of the M observed coarse voxels (M,) (in observed_index
        order) and of their refined observed children (fine_index (F,)); forward's results at those voxels (the
        others are unknown in the output), with the prior correction, on the observed voxels alone."""
        voxels = self.fuse(self.height_head_at(self.bev_features(bev), observed_index, height_end), fused_rows, camera)
        coarse_label, occupied, coarse_score = occupied_confidence(
            relative_logits(voxels, self.coarse_head, self.free_prior[0]))
        rows = self.refine_parents(occupied, coarse_score, parent_rows)
        fine_index, fine = self.refine_observed(voxels[rows], observed_index[rows], fine_observation,
                                                self.free_prior[1])
        fine_label, _, fine_score = occupied_confidence(fine)
        return coarse_label, coarse_score, fine_index, fine_label, fine_score


class OccFusionInference(nn.Module):
    """The node's contract (exported as is): INPUT_NAMES -> OUTPUT_NAMES (OccFusionNet.infer), on a copy of the
    network whose U-Net stem leaves out the input channels it weights by zero (BevUNet.without_dead_inputs)."""

    def __init__(self, network: OccFusionNet) -> None:
        super().__init__()
        self.network = copy.deepcopy(network)
        self.network.bev = network.bev.without_dead_inputs()

    def forward(self, bev, observed_index, height_end, fused_rows, camera, parent_rows, fine_observation):
        return self.network.infer(bev, observed_index, height_end, fused_rows, camera, parent_rows, fine_observation)
