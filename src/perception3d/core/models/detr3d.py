"""The learned 3D detector: a query decoder over BEV LiDAR features whose queries include QAF2D anchors, with
Point-DETR3D-style LiDAR and camera RoI attention (methods.md §1, §2).

Inputs (numpy, core.models.detr3d_inputs; base frame: x forward, y left, z up [m]; B frames):
- bev (B, 2 C, S, S): core.models.bev.bev_input of the current sweep, then of one earlier sweep moved into the current
  base frame (zeros when there is none); the model predicts each object's displacement between the two.
- anchors (B, A, ANCHOR_FEATURES): A = `anchor_queries` padded rows of QAF2D anchors lifted from the 2D boxes
  (centre x, y, z, log l, w, h, sin, cos of yaw, detection-class index, 2D score, valid 0/1).
- camera_maps (B, N, classes, rows, cols): per camera the 2D detections as per-class score maps
  (core.box_points.detection_maps); camera_projection (B, N, 3, 4): base frame -> the map's
  grid_sample coordinates (u, v in [-1, 1] inside the image) times depth.

Network (`Detr3D`):
1. BevUNet -> features F at 2 x cell_m; a CenterPoint heatmap head (one channel per class) on F.
2. Queries: `heatmap_queries` peaks of the heatmap (3x3 max-pool, top-K over cells and classes): content = F at the
   peak + the class embedding, reference box = the peak with the class's mean size; then the anchor queries (QAF2D):
   content = class embedding of the 2D box + a projection of its score, reference box = the anchor; padded anchors
   are masked out of attention and never scored. With `anchor_queries_learned`, the same number of learned queries
   (content and reference centre learned) replaces the anchors (the ablation).
3. `layers` decoder layers: self-attention (position = MLP of a sine encoding of the reference centre); LiDAR RoI
   attention: F sampled on a `roi_grid` x `roi_grid` grid over the reference box's rotated footprint plus learned
   offsets, weighted by a softmax from the query; camera RoI attention (`use_camera`): the camera maps sampled at the
   projections of the box centre and 8 corners in every camera that sees them (averaged over those cameras,
   masked where none does), weighted likewise; the two are concatenated and projected (Point-DETR3D's fusion);
   FFN; heads: class logits, attribute logits and a box update (centre offset, log-size offset, sin / cos yaw,
   displacement [m] from the earlier sweep to this one). Each layer's box is the next layer's reference.
Output of `Detr3DInference`: boxes (B, Q, BOX_FIELDS) [x, y, z, l, w, h, yaw, dx, dy], class probabilities
(B, Q, classes) (0 for padded anchors), attribute probabilities (B, Q, attributes).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional

from ...errors import ConfigError
from ..classes import DETECTION_CLASSES, SIZE_PRIOR_WLH
from .bev import BevGrid, BevUNet
from .layers import mlp

ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving")
ANCHOR_FEATURES = 11  # x, y, z, log l, log w, log h, sin, cos, class, score, valid
STATE = 10  # x, y, z, log l, log w, log h, sin, cos, dx, dy
BOX_FIELDS = 9  # x, y, z, l, w, h, yaw, dx, dy
DETR3D_INPUTS = ("bev", "anchors", "camera_maps", "camera_projection")
DETR3D_OUTPUTS = ("boxes", "class_probabilities", "attribute_probabilities")
CAMERA_POINTS = 9  # box centre + 8 corners


@dataclass(frozen=True)
class Detr3DConfig:
    """Architecture of the learned 3D detector; stored in checkpoints and ONNX metadata.

    Attributes:
        class_names, attribute_names: output classes and nuScenes attributes, in order.
        half_extent_m, cell_m, z_min_m, z_max_m, z_bins: the BEV input grid (core.models.bev.BevGrid).
        widths, stem_stride: BevUNet channels per level and stem stride (features at stem_stride x cell_m).
        d_model, heads, layers, ffn: decoder width, attention heads, layers, FFN width.
        heatmap_queries: queries from heatmap peaks; anchor_queries: anchor rows (padded).
        anchor_queries_learned: replace the anchors by as many learned queries (QAF2D ablation).
        roi_grid: LiDAR RoI sampling grid side; roi_offset_m: largest learned offset of a grid point [m].
        use_camera: camera RoI attention on (off: LiDAR only, the cross-modal ablation).
        map_rows, map_cols: camera detection map size.
    """

    class_names: tuple[str, ...] = DETECTION_CLASSES
    attribute_names: tuple[str, ...] = ATTRIBUTES
    half_extent_m: float = 51.2
    cell_m: float = 0.4
    z_min_m: float = -3.0
    z_max_m: float = 5.0
    z_bins: int = 8
    widths: tuple[int, ...] = (32, 64, 96)
    stem_stride: int = 2
    d_model: int = 96
    heads: int = 4
    layers: int = 2
    ffn: int = 192
    heatmap_queries: int = 160
    anchor_queries: int = 64
    anchor_queries_learned: bool = False
    roi_grid: int = 3
    roi_offset_m: float = 1.0
    use_camera: bool = True
    map_rows: int = 36
    map_cols: int = 64

    def __post_init__(self) -> None:
        for name in ("class_names", "attribute_names", "widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.d_model % self.heads or self.layers < 1 or self.heatmap_queries < 1 or self.anchor_queries < 0 \
                or self.roi_grid < 1:
            raise ConfigError(f"detection3d config {self}: d_model must divide by heads; layers, heatmap_queries, "
                              "roi_grid >= 1; anchor_queries >= 0")
        unknown = set(self.class_names) - set(SIZE_PRIOR_WLH)
        if unknown:
            raise ConfigError(f"detection3d config: classes {sorted(unknown)} have no size prior")
        BevGrid(self.half_extent_m, self.cell_m, self.z_min_m, self.z_max_m, self.z_bins)  # raises if invalid

    @property
    def grid(self) -> BevGrid:
        return BevGrid(self.half_extent_m, self.cell_m, self.z_min_m, self.z_max_m, self.z_bins)

    @property
    def queries(self) -> int:
        return self.heatmap_queries + self.anchor_queries

    def to_dict(self) -> dict:
        return asdict(self)


def sine_encoding(xyz: torch.Tensor, features: int, half_extent_m: float) -> torch.Tensor:
    """(..., 3 * features) sine/cosine encoding of positions (..., 3) [m] scaled by half_extent_m."""
    frequencies = torch.pow(10000.0, -torch.arange(features // 2, dtype=xyz.dtype, device=xyz.device)
                            / (features // 2))
    angles = (xyz / half_extent_m * math.pi)[..., None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def box_points(state: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Points (B, Q, P, 3) [m] of boxes `state` (B, Q, STATE) at box-frame fractions `local` (B|1, Q|1, P, 3) of
    their extents (±0.5 = the faces)."""
    size = state[..., 3:6].exp()[:, :, None, :]
    x, y, z = (local * size).unbind(-1)
    s, c = state[..., 6:7], state[..., 7:8]
    norm = torch.sqrt(s * s + c * c).clamp(min=1e-6)
    s, c = s / norm, c / norm
    return torch.stack([x * c - y * s, x * s + y * c, z], dim=-1) + state[:, :, None, :3]


class DecoderLayer(nn.Module):
    """Self-attention, LiDAR (+ camera) RoI attention, FFN and this layer's heads (module docstring, step 3)."""

    def __init__(self, config: Detr3DConfig, bev_channels: int) -> None:
        super().__init__()
        d, g = config.d_model, config.roi_grid
        self.config = config
        self.self_attention = nn.MultiheadAttention(d, config.heads, batch_first=True)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        steps = torch.linspace(-0.5, 0.5, g) if g > 1 else torch.zeros(1)
        gx, gy = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer("roi_grid", torch.stack([gx.flatten(), gy.flatten(), torch.zeros(g * g)], -1),
                             persistent=False)
        self.lidar_offsets = nn.Linear(d, g * g * 2)
        self.lidar_weights = nn.Linear(d, g * g)
        self.lidar_value = nn.Linear(bev_channels, d)
        corners = torch.tensor([[0.0, 0.0, 0.0]] + [[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5)
                                                    for sz in (-0.5, 0.5)])
        self.register_buffer("camera_points", corners, persistent=False)
        if config.use_camera:
            self.camera_weights = nn.Linear(d, CAMERA_POINTS)
            self.camera_value = nn.Linear(len(config.class_names) + 1, d)
        self.fuse = nn.Linear(2 * d if config.use_camera else d, d)
        self.ffn = nn.Sequential(nn.Linear(d, config.ffn), nn.ReLU(inplace=True), nn.Linear(config.ffn, d))
        self.class_head = mlp(d, d, len(config.class_names), activate_last=False)
        self.attribute_head = nn.Linear(d, len(config.attribute_names))
        self.box_head = mlp(d, d, STATE, activate_last=False)

    def lidar_roi(self, query: torch.Tensor, state: torch.Tensor, bev: torch.Tensor) -> torch.Tensor:
        """(B, Q, d) BEV features on the reference footprint grid + learned offsets, softmax-weighted."""
        b, q, _ = query.shape
        points = box_points(state.detach(), self.roi_grid[None, None])[..., :2]  # (B, Q, P, 2)
        offsets = torch.tanh(self.lidar_offsets(query)).view(b, q, -1, 2) * self.config.roi_offset_m
        coords = (points + offsets) / self.config.half_extent_m
        sampled = functional.grid_sample(bev, coords, mode="bilinear", padding_mode="zeros", align_corners=False)
        weights = torch.softmax(self.lidar_weights(query), dim=-1)  # (B, Q, P)
        return self.lidar_value((sampled.permute(0, 2, 3, 1) * weights[..., None]).sum(2))

    def camera_roi(self, query: torch.Tensor, state: torch.Tensor, maps: torch.Tensor,
                   projection: torch.Tensor) -> torch.Tensor:
        """(B, Q, d) camera maps at the projections of the box centre and corners, averaged over the cameras that
        see each point, softmax-weighted over the points that any camera sees."""
        b, q, _ = query.shape
        n, c, rows, cols = maps.shape[1:]
        points = box_points(state.detach(), self.camera_points[None, None]).reshape(b, 1, q * CAMERA_POINTS, 3)
        homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
        uvw = torch.einsum("bnij,bnpj->bnpi", projection, homogeneous.expand(b, n, -1, -1))
        depth = uvw[..., 2]
        uv = uvw[..., :2] / depth.clamp(min=0.5)[..., None]
        seen = ((depth > 0.5) & (uv.abs() <= 1.0).all(-1)).float()  # (B, N, Q * 9)
        sampled = functional.grid_sample(maps.reshape(b * n, c, rows, cols), uv.reshape(b * n, 1, -1, 2),
                                         mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.reshape(b, n, c, -1) * seen[:, :, None]
        count = seen.sum(1)  # (B, Q * 9)
        mean = sampled.sum(1) / count.clamp(min=1.0)[:, None]  # (B, C, Q * 9)
        visible = (count > 0).float()
        features = torch.cat([mean, visible[:, None]], dim=1).reshape(b, c + 1, q, CAMERA_POINTS).permute(0, 2, 3, 1)
        weights = torch.softmax(self.camera_weights(query), dim=-1) * visible.reshape(b, q, CAMERA_POINTS)
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-6)
        return self.camera_value((features * weights[..., None]).sum(2))

    def forward(self, query: torch.Tensor, position: torch.Tensor, state: torch.Tensor, padding: torch.Tensor,
                bev: torch.Tensor, maps: torch.Tensor, projection: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(query, new state, class logits, attribute logits) of one layer; padding (B, Q) True = masked."""
        x = query + position
        attended, _ = self.self_attention(x, x, query, key_padding_mask=padding, need_weights=False)
        query = self.norms[0](query + attended)
        roi = [self.lidar_roi(query + position, state, bev)]
        if self.config.use_camera:
            roi.append(self.camera_roi(query + position, state, maps, projection))
        query = self.norms[1](query + self.fuse(torch.cat(roi, dim=-1)))
        query = self.norms[2](query + self.ffn(query))
        delta = self.box_head(query)
        new_state = torch.cat([state[..., :6].detach() + delta[..., :6], delta[..., 6:]], dim=-1)
        return query, new_state, self.class_head(query), self.attribute_head(query)


class Detr3D(nn.Module):
    """BEV backbone, heatmap, heatmap + anchor (or learned) queries and the decoder (module docstring).

    forward returns a dict: heatmap (B, classes, H, W) logits; states, class_logits, attribute_logits: lists over
    layers of (B, Q, STATE), (B, Q, classes), (B, Q, attributes); padding (B, Q) True for padded anchors;
    anchor_class (B, Q) detection-class index of anchor queries (-1 for the others)."""

    def __init__(self, config: Detr3DConfig) -> None:
        super().__init__()
        self.config = config
        d, classes = config.d_model, len(config.class_names)
        grid = config.grid
        self.backbone = BevUNet(2 * grid.channels, config.widths, config.stem_stride, fuse_kernel=1)
        channels = config.widths[0]
        self.heatmap_head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(channels, classes, 1))
        self.heatmap_head[-1].bias.data.fill_(-2.19)  # prior probability 0.1 (CenterPoint)
        self.class_embedding = nn.Embedding(classes, d)
        self.peak_feature = nn.Linear(channels, d)
        self.anchor_score = nn.Linear(1, d)
        self.position = mlp(3 * 32, d, d, activate_last=False)
        prior = torch.tensor([SIZE_PRIOR_WLH[c][0] for c in config.class_names])  # (classes, 3) w, l, h
        self.register_buffer("prior_log_lwh", torch.log(prior[:, [1, 0, 2]]), persistent=False)
        if config.anchor_queries_learned and config.anchor_queries:
            self.learned_content = nn.Embedding(config.anchor_queries, d)
            self.learned_reference = nn.Embedding(config.anchor_queries, 2)
            nn.init.uniform_(self.learned_reference.weight, -0.8, 0.8)
        self.layers = nn.ModuleList(DecoderLayer(config, channels) for _ in range(config.layers))

    def _heatmap_queries(self, features: torch.Tensor, heatmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content (B, K, d), state (B, K, STATE)) of the top-K heatmap peaks."""
        b, classes, h, w = heatmap.shape
        probability = torch.sigmoid(heatmap.detach())
        peaks = probability * (functional.max_pool2d(probability, 3, 1, 1) == probability).float()
        best, cls = peaks.max(dim=1)  # (B, H, W)
        _, index = torch.topk(best.flatten(1), self.config.heatmap_queries, dim=1)  # (B, K)
        cls = torch.gather(cls.flatten(1), 1, index)
        row, col = index // w, index % w
        step = 2 * self.config.half_extent_m / w
        x = (col.float() + 0.5) * step - self.config.half_extent_m
        y = (row.float() + 0.5) * step - self.config.half_extent_m
        feature = torch.gather(features.flatten(2), 2, index[:, None].expand(-1, features.shape[1], -1))
        content = self.peak_feature(feature.transpose(1, 2)) + self.class_embedding(cls)
        log_lwh = self.prior_log_lwh[cls]
        state = torch.cat([x[..., None], y[..., None], 0.5 * log_lwh[..., 2:3].exp(), log_lwh,
                           torch.zeros_like(x)[..., None], torch.ones_like(x)[..., None],
                           torch.zeros_like(log_lwh[..., :2])], dim=-1)
        return content, state

    def _anchor_queries(self, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(content (B, A, d), state (B, A, STATE), padding (B, A), anchor class (B, A)) of the anchor rows or,
        with anchor_queries_learned, of the learned queries (never padded, class -1)."""
        b, a = anchors.shape[:2]
        if self.config.anchor_queries_learned:
            content = self.learned_content.weight[None].expand(b, -1, -1)
            xy = self.learned_reference.weight[None].expand(b, -1, -1) * self.config.half_extent_m
            log_lwh = self.prior_log_lwh.mean(0).expand(b, a, 3)
            state = torch.cat([xy, torch.full_like(xy[..., :1], 0.8), log_lwh, torch.zeros_like(xy[..., :1]),
                               torch.ones_like(xy[..., :1]), torch.zeros_like(xy)], dim=-1)
            return content, state, torch.zeros(b, a, dtype=torch.bool, device=anchors.device), \
                torch.full((b, a), -1, dtype=torch.long, device=anchors.device)
        valid = anchors[..., 10] > 0.5
        cls = anchors[..., 8].long().clamp(0, len(self.config.class_names) - 1)
        content = self.class_embedding(cls) + self.anchor_score(anchors[..., 9:10])
        state = torch.cat([anchors[..., :8], torch.zeros_like(anchors[..., :2])], dim=-1)
        return content, state, ~valid, torch.where(valid, cls, torch.full_like(cls, -1))

    def forward(self, bev: torch.Tensor, anchors: torch.Tensor, camera_maps: torch.Tensor,
                camera_projection: torch.Tensor) -> dict:
        features = self.backbone(bev)
        heatmap = self.heatmap_head(features)
        content, state = self._heatmap_queries(features, heatmap)
        padding = torch.zeros(content.shape[:2], dtype=torch.bool, device=bev.device)
        anchor_class = torch.full(content.shape[:2], -1, dtype=torch.long, device=bev.device)
        if self.config.anchor_queries:
            a_content, a_state, a_padding, a_class = self._anchor_queries(anchors)
            content, state = torch.cat([content, a_content], 1), torch.cat([state, a_state], 1)
            padding, anchor_class = torch.cat([padding, a_padding], 1), torch.cat([anchor_class, a_class], 1)
        query = content
        out = {"heatmap": heatmap, "states": [], "class_logits": [], "attribute_logits": [], "padding": padding,
               "anchor_class": anchor_class}
        for layer in self.layers:
            position = self.position(sine_encoding(state[..., :3].detach(), 32, self.config.half_extent_m))
            query, state, class_logits, attribute_logits = layer(query, position, state, padding, features,
                                                                 camera_maps, camera_projection)
            out["states"].append(state)
            out["class_logits"].append(class_logits)
            out["attribute_logits"].append(attribute_logits)
        return out


def state_to_boxes(state: torch.Tensor) -> torch.Tensor:
    """(..., BOX_FIELDS) [x, y, z, l, w, h, yaw, dx, dy] of states (..., STATE)."""
    yaw = torch.atan2(state[..., 6], state[..., 7])
    return torch.cat([state[..., :3], state[..., 3:6].exp(), yaw[..., None], state[..., 8:10]], dim=-1)


class Detr3DInference(nn.Module):
    """The node's contract: (bev, anchors, camera_maps, camera_projection) -> (boxes (B, Q, BOX_FIELDS), class
    probabilities (B, Q, classes), attribute probabilities (B, Q, attributes)) of the last layer; padded anchor
    queries get probability 0."""

    def __init__(self, network: Detr3D) -> None:
        super().__init__()
        self.network = network.eval()
        self.config = network.config

    def forward(self, bev: torch.Tensor, anchors: torch.Tensor, camera_maps: torch.Tensor,
                camera_projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(bev, anchors, camera_maps, camera_projection)
        probabilities = torch.sigmoid(out["class_logits"][-1]) * (~out["padding"]).float()[..., None]
        return state_to_boxes(out["states"][-1]), probabilities, torch.softmax(out["attribute_logits"][-1], -1)
