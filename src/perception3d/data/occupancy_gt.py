"""Semantic occupancy ground truth per keyframe (OpenOccupancy-style labels) and its file format.

Volume: uint8 [x, y, z] on an axis-aligned grid in the ego frame (`base_link`) at the keyframe's LIDAR_TOP
timestamp; default range [-51.2, -51.2, -5, 51.2, 51.2, 3] m at 0.4 m (256 x 256 x 20). Labels:
- 1..16: the lidarseg evaluation class of the geometry covering the voxel centre (dense and complete: the world
  is analytic, so occluded parts of objects are labelled too); the ground fills the voxel layer containing z = 0;
- a voxel holding a LiDAR return of the keyframe sweep: that return's class (so surface voxels whose centre lies
  just outside the geometry are occupied too);
- 0 (free): a voxel the keyframe's LiDAR rays passed through before their return;
- 255 (unobserved): every other voxel (free space no ray crossed, the ground's underside).

Labels are complete, but a single sweep sees only surfaces: `observed` (bool [x, y, z]) marks the voxels the
keyframe sweep observed, those its rays crossed or ended in (Occ3D's `mask_lidar`). Scoring "on observed voxels"
uses it.

File: `<dataroot>/occupancy/<version>/<lidar_sample_data_token>_occupancy.npz` (numpy savez_compressed) with
`labels` (uint8 [x, y, z]), `observed` (bool [x, y, z]), `pc_range` (6 float64: xmin, ymin, zmin, xmax, ymax,
zmax [m]), `voxel_size` (float64 [m]), `frame` ('base_link'), `T_global_ego` (4x4 float64, the keyframe LIDAR_TOP
ego pose), `sample_token`, `lidar_token`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.boxes import box_corners
from ..core.classes import FINE_TO_COARSE, OCCUPANCY_FREE, OCCUPANCY_UNKNOWN
from ..core.geometry import invert_transform, transform_points
from ..core.voxels import VoxelGrid
from ..errors import DatasetError
from .world import Primitives, World

DEFAULT_RANGE = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
DEFAULT_VOXEL_SIZE = 0.4
OCCUPANCY_FRAME = "base_link"


def ground_truth_volume(world: World, t: float, T_global_ego: np.ndarray, T_global_sensor: np.ndarray,
                        points_sensor: np.ndarray, grid: VoxelGrid,
                        point_labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The labelled volume for scene time t [s] and the keyframe sweep's observation mask, given the sweep's points
    (N, 3) in the sensor frame and their fine lidarseg labels (N,) (voxels holding a return get its class, after the
    analytic geometry)."""
    volume = np.full(grid.shape, OCCUPANCY_UNKNOWN, np.uint8)
    T_ego_global = invert_transform(T_global_ego)
    T_ego_sensor = T_ego_global @ T_global_sensor
    points_ego = transform_points(T_ego_sensor, points_sensor)
    observed = np.zeros(grid.shape, dtype=bool)
    crossed = _mark_free(volume, grid, T_ego_sensor[:3, 3], points_ego)
    observed[crossed[:, 0], crossed[:, 1], crossed[:, 2]] = True
    _mark_ground(volume, grid, world, T_global_ego)
    prims = world.primitives(t).near(T_global_ego[:2, 3], np.hypot(*grid.shape[:2]) * grid.resolution / 2)
    _mark_primitives(volume, grid, prims, T_global_ego)
    idx, inside = grid.voxel_indices(points_ego)
    observed[idx[inside, 0], idx[inside, 1], idx[inside, 2]] = True
    if point_labels is not None:
        inside &= FINE_TO_COARSE[point_labels] != OCCUPANCY_FREE  # noise / ignored classes do not mark voxels
        idx = idx[inside]
        volume[idx[:, 0], idx[:, 1], idx[:, 2]] = FINE_TO_COARSE[point_labels[inside]]
    return volume, observed


def _mark_free(volume, grid: VoxelGrid, origin: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Voxels along each ray from origin to its return (excluding the last voxel) become free; returns their
    (M, 3) indices."""
    step = grid.resolution
    dist = np.linalg.norm(points - origin, axis=1)
    counts = np.maximum(np.floor((dist - step) / step).astype(int), 0)
    ray = np.repeat(np.arange(len(points)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    frac = (k + 0.5) * step / dist[ray]
    samples = origin + (points[ray] - origin) * frac[:, None]
    idx, inside = grid.voxel_indices(samples)
    idx = idx[inside]
    volume[idx[:, 0], idx[:, 1], idx[:, 2]] = OCCUPANCY_FREE
    return idx


def _mark_ground(volume, grid: VoxelGrid, world: World, T_global_ego: np.ndarray) -> None:
    """The voxel layer containing the ground plane z = 0 gets the ground class below each voxel centre; on a
    non-planar ground (`world.ground`), the voxel of each column that contains the ground height below its
    centre."""
    z_layer = int(np.floor((0.0 - grid.origin[2]) / grid.resolution))
    if world.ground is None and not 0 <= z_layer < grid.shape[2]:
        return
    ix, iy = np.meshgrid(np.arange(grid.shape[0]), np.arange(grid.shape[1]), indexing="ij")
    centers = grid.centers(np.column_stack([ix.ravel(), iy.ravel(), np.full(ix.size, z_layer)]))
    global_xy = transform_points(T_global_ego, centers)[:, :2]
    fine = world.ground_labels(global_xy)
    if world.ground is None:
        volume[:, :, z_layer] = FINE_TO_COARSE[fine].reshape(grid.shape[:2])
        return
    on_ground = np.column_stack([global_xy, world.ground.height(global_xy)])
    z_ego = transform_points(invert_transform(T_global_ego), on_ground)[:, 2]
    layer = np.floor((z_ego - grid.origin[2]) / grid.resolution).astype(int)
    inside = (layer >= 0) & (layer < grid.shape[2])
    volume[ix.ravel()[inside], iy.ravel()[inside], layer[inside]] = FINE_TO_COARSE[fine[inside]]


def _mark_primitives(volume, grid: VoxelGrid, prims: Primitives, T_global_ego: np.ndarray) -> None:
    """Voxels whose centre lies inside a box or cylinder get its class."""
    T_ego_global = invert_transform(T_global_ego)
    shape = np.asarray(grid.shape)
    origin = np.asarray(grid.origin)
    cyl_mid = np.column_stack([prims.cyl_centers, prims.cyl_z.mean(1)]) if len(prims.cyl_z) else np.zeros((0, 3))
    cyl_size = np.column_stack([2 * prims.cyl_radii, 2 * prims.cyl_radii, np.ptp(prims.cyl_z, axis=1)]) \
        if len(prims.cyl_z) else np.zeros((0, 3))
    centers = np.vstack([prims.box_centers, cyl_mid])
    sizes = np.vstack([prims.box_lwh, cyl_size])
    yaws = np.concatenate([prims.box_yaws, np.zeros(len(cyl_mid))])
    labels = FINE_TO_COARSE[np.concatenate([prims.box_labels, prims.cyl_labels])]
    n_boxes = len(prims.box_centers)
    corners = box_corners(centers, sizes, yaws) @ T_ego_global[:3, :3].T + T_ego_global[:3, 3]
    for k in range(len(centers)):
        lo = np.maximum(np.floor((corners[k].min(0) - origin) / grid.resolution).astype(int), 0)
        hi = np.minimum(np.ceil((corners[k].max(0) - origin) / grid.resolution).astype(int), shape)
        if np.any(hi <= lo):
            continue
        ix, iy, iz = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
        idx = np.column_stack([ix.ravel(), iy.ravel(), iz.ravel()])
        p = transform_points(T_global_ego, grid.centers(idx)) - centers[k]
        if k < n_boxes:
            c, s = np.cos(yaws[k]), np.sin(yaws[k])
            local = np.column_stack([p[:, 0] * c + p[:, 1] * s, -p[:, 0] * s + p[:, 1] * c, p[:, 2]])
            inside = np.all(np.abs(local) <= sizes[k] / 2, axis=1)
        else:
            inside = (np.hypot(p[:, 0], p[:, 1]) <= sizes[k, 0] / 2) & (np.abs(p[:, 2]) <= sizes[k, 2] / 2)
        idx = idx[inside]
        volume[idx[:, 0], idx[:, 1], idx[:, 2]] = labels[k]


def occupancy_relpath(version: str, lidar_token: str) -> str:
    """Dataroot-relative path of a keyframe's occupancy file."""
    return f"occupancy/{version}/{lidar_token}_occupancy.npz"


def occupancy_arrays(volume: np.ndarray, observed: np.ndarray, grid: VoxelGrid, T_global_ego: np.ndarray,
                     sample_token: str, lidar_token: str) -> dict[str, np.ndarray]:
    """The arrays of one keyframe's occupancy file, in the documented layout."""
    pc_range = np.concatenate([grid.origin, np.asarray(grid.origin) + np.asarray(grid.shape) * grid.resolution])
    return {"labels": volume, "observed": observed, "pc_range": pc_range, "voxel_size": np.float64(grid.resolution),
            "frame": np.str_(OCCUPANCY_FRAME), "T_global_ego": np.asarray(T_global_ego, np.float64),
            "sample_token": np.str_(sample_token), "lidar_token": np.str_(lidar_token)}


def load_occupancy(path: str | Path) -> tuple[np.ndarray, VoxelGrid, dict]:
    """(labels [x, y, z] uint8, grid, {observed, frame, T_global_ego, sample_token, lidar_token}) of a file.

    Raises:
        DatasetError: missing file or missing / inconsistent arrays.
    """
    path = Path(path)
    try:
        with np.load(path) as z:
            labels = z["labels"]
            pc_range = tuple(float(v) for v in z["pc_range"])
            grid = VoxelGrid.from_range(pc_range, float(z["voxel_size"]))
            meta = {"observed": z["observed"], "frame": str(z["frame"]), "T_global_ego": z["T_global_ego"],
                    "sample_token": str(z["sample_token"]), "lidar_token": str(z["lidar_token"])}
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable occupancy file ({exc}); expected an .npz with labels, "
                           "observed, pc_range, voxel_size, frame, T_global_ego, sample_token, lidar_token") from exc
    if labels.shape != grid.shape or labels.dtype != np.uint8:
        raise DatasetError(f"{path}: labels are {labels.dtype} {labels.shape}, expected uint8 {grid.shape}")
    if meta["observed"].shape != grid.shape or meta["observed"].dtype != bool:
        raise DatasetError(f"{path}: observed is {meta['observed'].dtype} {meta['observed'].shape}, "
                           f"expected bool {grid.shape}")
    return labels, grid, meta
