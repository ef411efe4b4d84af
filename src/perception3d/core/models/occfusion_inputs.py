"""Numpy inputs and outputs of the learned occupancy network (core.models.occfusion), the same for training and
for the node.

Two grids in the base frame: the fine (output) grid is the node's VoxelGrid (default the OpenOccupancy range at
0.4 m, 256 x 256 x 20); the coarse (fusion) grid has voxels twice as large (0.8 m, 128 x 128 x 10) and is the BEV
image of the network with its height folded into channels. Flat voxel indices of both follow the message order
x + X * (y + Y * z) (core.voxels), which is the C order of a (Z, Y, X) array: BEV rows are y, columns x.

- `lidar_inputs`: the BEV image (with statistics: core.models.bev.bev_input at the coarse grid, log point count per
  coarse height bin, intensity, lowest and highest point; then, always its last channels, per coarse height bin the
  share of its 8 fine voxels holding a return and the share the rays cross, core.occupancy.free_voxels) and what the
  sweep observed of each fine voxel.
- `camera_evidence`: OccFusion's depth-free fusion input. Points in the non-empty coarse voxels (`fused_voxels`: N
  pre-sampled per voxel, core.occupancy.presample_voxels, or the voxel centre alone) are projected into each camera;
  only the cameras that see a point (in front, inside the image) contribute. The image feature is each camera's 2D
  detections rasterised as one score map per detection class (`detection_maps`), read bilinearly at the
  projections, averaged over the voxel's visible points per camera and then over the cameras that see the voxel,
  plus a last channel that is 1 when any camera sees it. No depth is estimated: the LiDAR geometry says where to look.
- `lidar_parents`: the coarse voxels whose children are always refined (those holding returns and their vertical
  neighbours); the network adds the top-K most uncertain ones itself.
- `observed_rows`: the observed coarse voxels, the only ones the node's network (OccFusionNet.infer) runs on, and
  the rows of the fused voxels and the LiDAR parents among them.
- `fine_volume`: the network's coarse and refined labels combined into the fine [x, y, z] volume;
  `voxel_scores`: the scores of those labels at given fine voxels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..box_points import DETECTION_MAP_SIZE, CameraBoxes, detection_maps, may_see, project, project_all
from ..classes import DETECTION_CLASSES, OCCUPANCY_UNKNOWN
from ..occupancy import free_voxels, presample_voxels
from ..voxels import VoxelGrid
from .bev import BevGrid, bev_input

CAMERA_CHANNELS = len(DETECTION_CLASSES) + 1  # a score per detection class + "seen by a camera"


@dataclass
class LidarInputs:
    """bev: (C, S, S) float32 network input; fine_observation: (fine voxels,) uint8 in flat order, 0 unobserved,
    1 free (crossed by a ray, no return), 2 occupied (holds a return): 2 * occupied + free; observed: (fine voxels,)
    bool, a return or a ray in the voxel (others stay unknown in the output)."""

    bev: np.ndarray
    fine_observation: np.ndarray
    observed: np.ndarray

    def shares(self, fine: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
        """(occupied, crossed) (Z, S, S) views: per coarse voxel the share of its fine voxels holding a return and
        the share the rays cross, the BEV image's last 2 Z channels (lidar_inputs)."""
        z = coarse_grid(fine).shape[2]
        return self.bev[-2 * z:-z], self.bev[-z:]


def coarse_grid(fine: VoxelGrid) -> VoxelGrid:
    """The fusion grid: same origin, voxels twice as large (the fine shape must be even)."""
    if any(s % 2 for s in fine.shape):
        raise ValueError(f"fine grid shape {fine.shape} must be even along every axis")
    return VoxelGrid(fine.origin, 2 * fine.resolution, tuple(s // 2 for s in fine.shape))


def bev_grid(fine: VoxelGrid) -> BevGrid:
    """The BEV grid of the coarse voxels (the grid must be square and centred on the base frame's origin in xy)."""
    coarse = coarse_grid(fine)
    half = -fine.origin[0]
    if coarse.shape[0] != coarse.shape[1] or abs(fine.origin[1] - fine.origin[0]) > 1e-6 or \
            abs(coarse.shape[0] * coarse.resolution - 2 * half) > 1e-6:
        raise ValueError(f"grid {fine}: learned occupancy needs a square grid centred on the base frame in xy")
    return BevGrid(half, coarse.resolution, fine.origin[2], fine.origin[2] + coarse.shape[2] * coarse.resolution,
                   coarse.shape[2])


def lidar_channel_count(fine: VoxelGrid, statistics: bool) -> int:
    """Channels of lidar_inputs' BEV image, with or without bev_input's statistics."""
    return (bev_grid(fine).channels if statistics else 0) + 2 * coarse_grid(fine).shape[2]


def lidar_inputs(points_base: np.ndarray, intensity: np.ndarray | None, sensor_origin: np.ndarray, fine: VoxelGrid,
                 statistics: bool, binned: tuple[np.ndarray, np.ndarray] | None = None) -> LidarInputs:
    """The LiDAR inputs of one sweep: points (N, 3) in the base frame [m], intensity (N,) on the 0-255 scale (read
    only with statistics: None without), sensor_origin (3,) [m] (module docstring); binned:
    fine.voxel_indices(points) when the caller has it."""
    points = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    idx, inside = fine.voxel_indices(points) if binned is None else binned
    hit = fine.flat_index(np.compress(inside, idx, axis=0))
    occupied = np.zeros(fine.num_voxels, dtype=bool)
    occupied[hit] = True
    observation = free_voxels(points, fine, sensor_origin, 0.5 * fine.resolution).view(np.uint8)  # 1: crossed
    observation[hit] = 2  # hit (crossed or not: a scatter, where a boolean comparison of the grids costs 4x more)
    occupied_share = children_share(occupied, fine)
    free_share = children_share(observation, fine) - 2 * occupied_share  # the sum of 2 * occupied + free
    channels = [occupied_share, free_share]
    if statistics:
        channels.insert(0, bev_input(points, np.asarray(intensity, dtype=np.float32) / np.float32(255.0),
                                     bev_grid(fine)))
    return LidarInputs(np.concatenate(channels), observation, observation > 0)


def children_share(values: np.ndarray, fine: VoxelGrid) -> np.ndarray:
    """(Z, S, S) float32 sum over each coarse voxel's 8 fine voxels of fine bool or small uint8 values (flat order),
    divided by 8 (of a mask: the share of the children set); summed pairwise along x, y, z on uint8 (much faster than
    a mean over three axes)."""
    sx, sy, sz = fine.shape
    m = values.view(np.uint8).reshape(sz // 2, 2, sy // 2, 2, sx // 2, 2)
    m = m[:, 0] + m[:, 1]
    m = m[:, :, 0] + m[:, :, 1]
    return ((m[..., 0] + m[..., 1]) / np.float32(8)).astype(np.float32)


def sample_bilinear(maps: np.ndarray, map_index: np.ndarray, uv_cells: np.ndarray) -> np.ndarray:
    """(N, C) float32 values of stacked maps (K, C, rows, cols), point i read in map map_index[i], at continuous cell
    coordinates (N, 2) (column, row; cell centres at +0.5), clamped at each map's border."""
    _, channels, rows, cols = maps.shape
    cells = np.ascontiguousarray(maps.transpose(0, 2, 3, 1).reshape(-1, channels))  # a row per cell: one gather
    x = np.clip(uv_cells[:, 0] - 0.5, 0, cols - 1)                                 # per corner gives (N, C)
    y = np.clip(uv_cells[:, 1] - 0.5, 0, rows - 1)
    x0, y0 = np.minimum(x.astype(np.int64), cols - 2), np.minimum(y.astype(np.int64), rows - 2)
    fx, fy = (x - x0).astype(np.float32)[:, None], (y - y0).astype(np.float32)[:, None]
    corner = (np.asarray(map_index, dtype=np.int64) * rows + y0) * cols + x0  # the top-left corner's row in cells
    top = np.take(cells, corner, axis=0) * (1 - fx) + np.take(cells, corner + 1, axis=0) * fx
    bottom = np.take(cells, corner + cols, axis=0) * (1 - fx) + np.take(cells, corner + cols + 1, axis=0) * fx
    return top * (1 - fy) + bottom * fy


def camera_evidence(samples: np.ndarray, cameras: Sequence[CameraBoxes],
                    spheres: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(V, CAMERA_CHANNELS) float32 camera feature of V voxels from their pre-sampled points (V, N, 3) [m] (module
    docstring). With one sample per voxel, every camera projects every voxel in one stacked product (box_points.
    project_all: projecting is the test itself, a cull first costs more). With several, a camera projects only the
    points of the voxels it may see (box_points.may_see) by spheres (centres (V, 3) [m], radii (V,) [m]) that hold
    each voxel's samples: fused_voxels gives the voxels' own, else they are those around the samples' bounding
    boxes. The maps of all cameras are read in one pass."""
    n_vox, n_pts = samples.shape[:2]
    cols, rows = DETECTION_MAP_SIZE
    scale = np.array([[cols / camera.width, rows / camera.height] for camera in cameras]).reshape(-1, 2)
    if n_pts == 1:
        uv, seen = project_all(samples[:, 0], cameras)
        pair_camera, pair_voxel = np.nonzero(seen)  # a pair: a voxel and a camera that sees it
        values = sample_bilinear(detection_maps(cameras), pair_camera, uv[pair_camera, :, pair_voxel] *
                                 scale[pair_camera]) if len(pair_voxel) else np.zeros((0, CAMERA_CHANNELS - 1))
    else:
        pair_camera, pair_voxel, values = _mean_reads(samples, cameras, scale, spheres)
    per_camera = np.zeros((len(cameras), n_vox, CAMERA_CHANNELS - 1), dtype=np.float32)
    per_camera[pair_camera, pair_voxel] = values
    cameras_seeing = np.bincount(pair_voxel, minlength=n_vox).astype(np.float32)
    evidence = per_camera.sum(axis=0) / np.maximum(cameras_seeing, 1)[:, None]
    return np.concatenate([evidence, (cameras_seeing > 0).astype(np.float32)[:, None]], axis=1)


def _mean_reads(samples: np.ndarray, cameras: Sequence[CameraBoxes], scale: np.ndarray,
                spheres: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """camera_evidence's pairs (camera (P,), voxel (P,)) of a voxel with several samples (V, N, 3) and a camera that
    sees at least one of them, and the mean (P, CAMERA_CHANNELS - 1) of the maps read at the samples it sees; scale
    (cameras, 2): map cells per pixel."""
    n_vox, n_pts = samples.shape[:2]
    if spheres is None:
        low, high = samples.min(axis=1), samples.max(axis=1)
        spheres = (low + high) / 2, np.linalg.norm(high - low, axis=1) / 2
    visible = may_see(*spheres, cameras)
    pair_camera, pair_voxel, pair_points, point_camera, cells = [], [], [], [], []
    for c, camera in enumerate(cameras):
        candidates = np.flatnonzero(visible[:, c])
        uv, _, seen = project(np.take(samples, candidates, axis=0).reshape(-1, 3), camera)
        points_seen = seen.reshape(len(candidates), n_pts).sum(axis=1)
        pair_voxel.append(candidates[points_seen > 0])
        pair_camera.append(np.full(len(pair_voxel[-1]), c))
        pair_points.append(points_seen[points_seen > 0])
        point_camera.append(np.full(int(points_seen.sum()), c))
        cells.append(np.compress(seen, uv, axis=0) * scale[c])
    voxel = np.concatenate(pair_voxel) if cameras else np.zeros(0, dtype=np.int64)
    if not len(voxel):
        return voxel, voxel, np.zeros((0, CAMERA_CHANNELS - 1), dtype=np.float32)
    points_seen = np.concatenate(pair_points)
    values = sample_bilinear(detection_maps(cameras), np.concatenate(point_camera), np.concatenate(cells))
    first = np.cumsum(points_seen) - points_seen
    means = np.add.reduceat(values, first, axis=0) / points_seen[:, None].astype(np.float32)
    return np.concatenate(pair_camera), voxel, means


def fused_voxels(points_base: np.ndarray, cameras: Sequence[CameraBoxes], fine: VoxelGrid, num_points: int,
                 use_cameras: bool, seed: int = 0, binned: tuple[np.ndarray, np.ndarray] | None = None,
                 holding: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flat coarse indices (V,) int64 of the non-empty coarse voxels, sorted; their camera evidence
    (V, CAMERA_CHANNELS)); evidence is all zero with use_cameras False (the LiDAR-only network).

    num_points > 0: the evidence is read at that many points pre-sampled per voxel (presample_voxels: a farthest
    point sampling of its returns, filled uniformly inside it); 0: at the voxel centre alone (no sampling and no sort
    of the sweep). binned: fine.voxel_indices(points_base) when the caller has it (a coarse voxel's index is its
    children's halved: the coarse edge is exactly twice the fine one, so the floors agree); holding: the coarse
    voxels holding returns ((Z, Y, X) bool, lidar_inputs' occupied shares > 0) when the caller has them."""
    grid = coarse_grid(fine)
    idx, inside = fine.voxel_indices(points_base) if binned is None else binned
    if num_points:
        voxels, samples, _ = presample_voxels(points_base, grid, num_points, seed, (idx >> 1, inside))
        index = grid.flat_index(voxels)
    else:
        if holding is None:
            holding = np.zeros(grid.num_voxels, dtype=bool)
            holding[grid.flat_index(np.compress(inside, idx, axis=0) >> 1)] = True
        index = np.flatnonzero(holding)
        voxels = grid.indices_of(index)
        samples = grid.centers(voxels)[:, None]
    if not use_cameras or not len(index):
        return index, np.zeros((len(index), CAMERA_CHANNELS), dtype=np.float32)
    spheres = (grid.centers(voxels), np.full(len(voxels), np.sqrt(3) / 2 * grid.resolution)) if num_points else None
    return index, camera_evidence(samples, cameras, spheres)


def lidar_parents(holding: np.ndarray) -> np.ndarray:
    """Sorted flat coarse indices of the voxels holding returns (holding: (Z, Y, X) bool over the coarse grid) and of
    their upper and lower neighbours."""
    parents = holding.copy()
    parents[1:] |= holding[:-1]
    parents[:-1] |= holding[1:]
    return np.flatnonzero(parents)


def observed_rows(lidar: LidarInputs, fine: VoxelGrid, fused_index: np.ndarray,
                  parents: np.ndarray) -> dict[str, np.ndarray]:
    """OccFusionNet.infer's view of the observed coarse voxels (a fine child hit or crossed: its children shares, the
    BEV image's last channels, > 0): observed_index (M,) their sorted flat indices; height_end (Z,) the end of each
    height bin's rows among them; fused_rows (V,) the rows of the fused voxels (all observed: they hold returns);
    parent_rows the rows of the observed ones among the sorted flat indices parents (lidar_parents)."""
    occupied, crossed = lidar.shares(fine)
    observed_index = np.flatnonzero((occupied + crossed).reshape(-1) > 0)
    z, layer = occupied.shape[0], occupied.shape[1] * occupied.shape[2]
    rows = np.searchsorted(observed_index, parents)
    hit = rows < len(observed_index)
    hit[hit] = observed_index[rows[hit]] == parents[hit]
    return {"observed_index": observed_index,
            "height_end": np.searchsorted(observed_index, layer * np.arange(1, z + 1)).astype(np.int64),
            "fused_rows": np.searchsorted(observed_index, fused_index).astype(np.int64),
            "parent_rows": rows[hit].astype(np.int64)}


def network_inputs(points_base: np.ndarray, intensity: np.ndarray | None, sensor_origin: np.ndarray,
                   cameras: Sequence[CameraBoxes], fine: VoxelGrid, presample_points: int, use_cameras: bool,
                   bev_statistics: bool, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The network's inputs by name (core.models.occfusion TRAINING_INPUTS and INPUT_NAMES; batchless except bev) of
    one sweep, and its observed fine voxels mask (flat order); presample_points, use_cameras, bev_statistics: the
    model's config (OccFusionConfig's presample_points, camera_fusion, bev_statistics)."""
    points = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    binned = fine.voxel_indices(points)  # once for both
    lidar = lidar_inputs(points, intensity, sensor_origin, fine, bev_statistics, binned)
    holding = lidar.shares(fine)[0] > 0
    fused_index, camera = fused_voxels(points, cameras, fine, presample_points, use_cameras, seed, binned, holding)
    parents = lidar_parents(holding)
    inputs = {"bev": lidar.bev[None], "fused_index": fused_index, "camera": camera, "lidar_parents": parents,
              "fine_observation": lidar.fine_observation, **observed_rows(lidar, fine, fused_index, parents)}
    return inputs, lidar.observed


def fine_volume(observed_index: np.ndarray, coarse_label: np.ndarray, fine_index: np.ndarray,
                fine_label: np.ndarray, observed: np.ndarray, fine: VoxelGrid) -> np.ndarray:
    """The fine uint8 [x, y, z] label volume (0 free, 1..16, 255 where the sweep observed nothing): coarse labels
    upsampled (nearest), refined children overwritten.

    observed_index, coarse_label: (M,) coarse voxels (flat order) and their labels (the others are free until the
    unobserved fine voxels are set unknown); fine_index, fine_label: (F,) refined fine voxels (flat order);
    observed: (fine voxels,) bool flat order.
    """
    sx, sy, sz = fine.shape
    cube = np.zeros(sz // 2 * (sy // 2) * (sx // 2), dtype=np.uint8)
    cube[np.asarray(observed_index, dtype=np.int64)] = np.asarray(coarse_label).astype(np.uint8)
    # x first: the element-wise repeat on the smallest array, the later ones copy whole rows / planes
    labels = cube.reshape(sz // 2, sy // 2, sx // 2).repeat(2, axis=2).repeat(2, axis=1).repeat(2, axis=0).reshape(-1)
    labels[np.asarray(fine_index, dtype=np.int64)] = np.asarray(fine_label).astype(np.uint8)
    # unknown (255) is the largest uint8: a maximum sets the unobserved voxels (faster than a boolean-mask write)
    np.maximum(labels, np.uint8(OCCUPANCY_UNKNOWN) * ~np.asarray(observed, dtype=bool), out=labels)
    return labels.reshape(sz, sy, sx).transpose(2, 1, 0)


def voxel_scores(voxels: np.ndarray, observed_index: np.ndarray, coarse_score: np.ndarray, fine_index: np.ndarray,
                 fine_score: np.ndarray, fine: VoxelGrid) -> np.ndarray:
    """(M,) float32 score of the label fine_volume gives observed fine voxels (M, 3) [x, y, z]: the refined score of
    a refined voxel (the last one where fine_index repeats it, as in fine_volume), else its parent's coarse score.

    observed_index, coarse_score: (K,) coarse voxels (flat order, sorted: every parent of the M voxels among them)
    and their scores; fine_index, fine_score: (F,) refined fine voxels (flat order).
    """
    voxels = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
    sx, sy, _ = fine.shape
    parent = voxels[:, 0] // 2 + sx // 2 * (voxels[:, 1] // 2 + sy // 2 * (voxels[:, 2] // 2))
    scores = np.asarray(coarse_score, dtype=np.float32)[np.searchsorted(observed_index, parent)]
    refined = np.asarray(fine_index, dtype=np.int64)
    if len(refined) and len(voxels):
        order = np.argsort(refined, kind="stable")
        flat = fine.flat_index(voxels)
        last = np.maximum(np.searchsorted(refined[order], flat, side="right") - 1, 0)
        hit = refined[order[last]] == flat
        scores[hit] = np.asarray(fine_score, dtype=np.float32)[order[last[hit]]]
    return scores
