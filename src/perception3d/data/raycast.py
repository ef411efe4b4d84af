"""Analytic ray casting against the world's primitives, vectorized over rays and primitives.

All rays of one cast share an origin (a LiDAR or camera centre). Surfaces: the ground (the plane z = 0, or a
`GroundSurface` when given), yaw-rotated boxes (slab test in each box's frame) and vertical cylinders with caps.
A ray that starts inside a primitive does not hit it. Frames: whatever frame origin, directions and primitives
share (the global frame in practice).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.boxes import box_corners
from .ground_surface import GroundSurface
from .world import Primitives

KIND_NONE, KIND_GROUND, KIND_BOX, KIND_CYLINDER = 0, 1, 2, 3


@dataclass
class Hits:
    """Nearest hit per ray: distance t [m along unit dirs] (inf if none), primitive kind and index, unit normal."""

    t: np.ndarray
    kind: np.ndarray
    index: np.ndarray
    normal: np.ndarray


def ray_boxes_t(origin: np.ndarray, dirs: np.ndarray, centers: np.ndarray, lwh: np.ndarray,
                yaws: np.ndarray) -> np.ndarray:
    """Entry distance (N, B) of N rays into B boxes; inf where a ray misses or starts inside."""
    c, s = np.cos(yaws).astype(np.float32), np.sin(yaws).astype(np.float32)
    rel = (origin[None, :] - centers).astype(np.float32)  # (B, 3)
    ox = rel[:, 0] * c + rel[:, 1] * s
    oy = -rel[:, 0] * s + rel[:, 1] * c
    dx = dirs[:, 0:1] * c + dirs[:, 1:2] * s  # (N, B)
    dy = -dirs[:, 0:1] * s + dirs[:, 1:2] * c
    dz = np.broadcast_to(dirs[:, 2:3], dx.shape)
    half = (0.5 * lwh).astype(np.float32)
    t_near = np.full(dx.shape, -np.inf, np.float32)
    t_far = np.full(dx.shape, np.inf, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for d, o, h in ((dx, ox, half[:, 0]), (dy, oy, half[:, 1]), (dz, rel[:, 2], half[:, 2])):
            inv = 1.0 / d
            t1 = (-h - o) * inv
            t2 = (h - o) * inv
            np.maximum(t_near, np.minimum(t1, t2), out=t_near)
            np.minimum(t_far, np.maximum(t1, t2), out=t_far)
    hit = (t_near <= t_far) & (t_near > 0)
    return np.where(hit, t_near, np.inf)


def ray_cylinders_t(origin: np.ndarray, dirs: np.ndarray, centers: np.ndarray, z_range: np.ndarray,
                    radii: np.ndarray) -> np.ndarray:
    """Entry distance (N, C) of N rays into C vertical capped cylinders; inf where none."""
    rel = (origin[None, :2] - centers).astype(np.float32)  # (C, 2)
    dx, dy, dz = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
    a = dx * dx + dy * dy
    b = dx * rel[:, 0] + dy * rel[:, 1]
    cc = (rel ** 2).sum(1) - radii.astype(np.float32) ** 2
    disc = b * b - a * cc
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
        z_side = origin[2] + t_side * dz
        side_ok = (disc >= 0) & (t_side > 0) & (z_side >= z_range[:, 0]) & (z_side <= z_range[:, 1]) & (cc > 0)
        best = np.where(side_ok, t_side, np.inf)
        for z_cap in (z_range[:, 0], z_range[:, 1]):
            t_cap = (z_cap - origin[2]) / dz
            px = rel[:, 0] + t_cap * dx
            py = rel[:, 1] + t_cap * dy
            cap_ok = (t_cap > 0) & (px * px + py * py <= radii ** 2)
            best = np.minimum(best, np.where(cap_ok, t_cap, np.inf))
    return best.astype(np.float32)


def primitive_corners(prims: Primitives) -> np.ndarray:
    """Bounding-box corners (B + C, 8, 3) of every box, then every cylinder (for culling)."""
    cyl_centers = np.column_stack([prims.cyl_centers, prims.cyl_z.mean(1)]) if len(prims.cyl_centers) else \
        np.zeros((0, 3))
    cyl_size = np.column_stack([2 * prims.cyl_radii, 2 * prims.cyl_radii, prims.cyl_z[:, 1] - prims.cyl_z[:, 0]]) \
        if len(prims.cyl_centers) else np.zeros((0, 3))
    return np.concatenate([box_corners(prims.box_centers, prims.box_lwh, prims.box_yaws),
                           box_corners(cyl_centers, cyl_size, np.zeros(len(cyl_centers)))])


# candidates(corners (8, 3)) -> the rays that may hit a primitive with these bounding corners: an index array or
# a slice, or None when none can.
CandidateRays = Callable[[np.ndarray], "np.ndarray | slice | None"]


def cast(origin: np.ndarray, dirs: np.ndarray, prims: Primitives, max_range: float = np.inf,
         candidates: CandidateRays | None = None, ground: GroundSurface | None = None) -> Hits:
    """Nearest hit of each unit ray (N, 3) from `origin` (3,) against ground, boxes and cylinders.

    `candidates` culls: each primitive is tested only against the rays it returns (all rays when not given), so a
    caller whose rays are ordered (by azimuth, by pixel) tests a small fraction of ray-primitive pairs.
    """
    origin = np.asarray(origin, dtype=np.float64)
    dirs = np.asarray(dirs, dtype=np.float32)
    n = len(dirs)
    if ground is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            best_t = np.where(dirs[:, 2] < 0, -origin[2] / dirs[:, 2], np.inf).astype(np.float32)
    else:
        best_t = ground.intersect(origin, dirs)
    kind = np.where(np.isfinite(best_t), KIND_GROUND, KIND_NONE).astype(np.uint8)
    index = np.full(n, -1, np.int32)
    n_boxes = len(prims.box_centers)
    corners = primitive_corners(prims)
    for k in range(len(corners)):
        rays = candidates(corners[k]) if candidates is not None else slice(None)
        if rays is None:
            continue
        if k < n_boxes:
            t = ray_boxes_t(origin, dirs[rays], prims.box_centers[k:k + 1], prims.box_lwh[k:k + 1],
                            prims.box_yaws[k:k + 1])[:, 0]
            prim_kind, prim_index = KIND_BOX, k
        else:
            c = k - n_boxes
            t = ray_cylinders_t(origin, dirs[rays], prims.cyl_centers[c:c + 1], prims.cyl_z[c:c + 1],
                                prims.cyl_radii[c:c + 1])[:, 0]
            prim_kind, prim_index = KIND_CYLINDER, c
        closer = t < best_t[rays]
        if not closer.any():
            continue
        sel = (np.arange(*rays.indices(n)) if isinstance(rays, slice) else rays)[closer]
        best_t[sel] = t[closer]
        kind[sel] = prim_kind
        index[sel] = prim_index
    beyond = best_t > max_range
    best_t[beyond] = np.inf
    kind[beyond] = KIND_NONE
    index[beyond] = -1
    return Hits(best_t, kind, index, surface_normals(origin, dirs, best_t, kind, index, prims, ground))


def take(hits: Hits, keep: np.ndarray) -> Hits:
    """The hits of the rays selected by `keep` (mask or indices)."""
    return Hits(hits.t[keep], hits.kind[keep], hits.index[keep], hits.normal[keep])


def surface_normals(origin, dirs, t, kind, index, prims: Primitives, ground: GroundSurface | None = None) -> np.ndarray:
    """Unit outward normals (N, 3) at the hits (zero where none); the ground's are +z unless `ground` is given."""
    normal = np.zeros((len(t), 3), np.float32)
    if ground is None:
        normal[kind == KIND_GROUND, 2] = 1.0
    else:
        on_ground = np.flatnonzero(kind == KIND_GROUND)
        normal[on_ground] = ground.normals(origin + dirs[on_ground] * t[on_ground, None])
    on_box = np.flatnonzero(kind == KIND_BOX)
    if on_box.size:
        b = index[on_box]
        p = (origin - prims.box_centers[b]).astype(np.float32) + dirs[on_box] * t[on_box, None]
        c, s = np.cos(prims.box_yaws[b]).astype(np.float32), np.sin(prims.box_yaws[b]).astype(np.float32)
        local = np.column_stack([p[:, 0] * c + p[:, 1] * s, -p[:, 0] * s + p[:, 1] * c, p[:, 2]])
        ratio = np.abs(local) / (0.5 * prims.box_lwh[b]).astype(np.float32)
        axis = ratio.argmax(1)
        n_local = np.zeros_like(local)
        n_local[np.arange(len(b)), axis] = np.sign(local[np.arange(len(b)), axis])
        normal[on_box] = np.column_stack([n_local[:, 0] * c - n_local[:, 1] * s,
                                          n_local[:, 0] * s + n_local[:, 1] * c, n_local[:, 2]])
    on_cyl = np.flatnonzero(kind == KIND_CYLINDER)
    if on_cyl.size:
        k = index[on_cyl]
        p = origin + dirs[on_cyl] * t[on_cyl, None]
        radial = p[:, :2] - prims.cyl_centers[k]
        r = np.linalg.norm(radial, axis=1)
        on_side = r > prims.cyl_radii[k] * 0.999
        n = np.zeros((len(k), 3))
        n[on_side, :2] = radial[on_side] / r[on_side, None]
        n[~on_side, 2] = np.where(p[~on_side, 2] > prims.cyl_z[k[~on_side]].mean(1), 1.0, -1.0)
        normal[on_cyl] = n
    return normal


def hit_labels(hits: Hits, points: np.ndarray, prims: Primitives, ground_labels) -> np.ndarray:
    """Fine lidarseg label (N,) uint8 of each hit; `ground_labels(xy)` labels the ground; 0 (noise) for misses."""
    labels = np.zeros(len(hits.t), np.uint8)
    g = hits.kind == KIND_GROUND
    labels[g] = ground_labels(points[g, :2])
    b = hits.kind == KIND_BOX
    labels[b] = prims.box_labels[hits.index[b]]
    c = hits.kind == KIND_CYLINDER
    labels[c] = prims.cyl_labels[hits.index[c]]
    return labels
