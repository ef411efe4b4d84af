"""Connected pieces of a point cloud in bird's-eye view: points whose cells (a square grid in x, y) touch, with the
8 neighbours, belong to one piece. detection3d grows the frustum segment of an object cut by the image border
with them: the part of a near object that lies in the neighbouring camera's view is connected to the part in this
one (core.lift3d). The pieces are found in a square window around the object only (a raster of the cells of the
window's points, labelled at once by scipy.ndimage), not over the whole sweep."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def connected_in_window(points: np.ndarray, seed: np.ndarray, centre: np.ndarray, reach_m: float,
                        cell_m: float) -> np.ndarray:
    """Sorted indices of the points (N, >=2) [m] within reach_m of centre (2,) [m] in x and in y whose cell (cell_m
    [m]) is connected to a cell of a seed point (indices (S,)) through cells of the window's points (8-connected).
    Seed points outside the window take no part; paths leaving the window do not connect."""
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    near = np.flatnonzero(np.abs(xy[:, 0] - centre[0]) < reach_m)
    near = near[np.abs(xy[near, 1] - centre[1]) < reach_m]
    if len(near) == 0:
        return near
    cells = np.floor(np.take(xy, near, axis=0) / cell_m).astype(np.int64)  # take: ~4x faster than xy[near]
    cells -= cells.min(axis=0)  # the raster spans the window's points only
    occupied = np.zeros(tuple(cells.max(axis=0) + 1), dtype=bool)
    occupied[cells[:, 0], cells[:, 1]] = True
    label, count = ndimage.label(occupied, structure=_EIGHT_NEIGHBOURS)
    point_label = label[cells[:, 0], cells[:, 1]]
    is_seed = np.zeros(len(xy), dtype=bool)
    is_seed[seed] = True
    grows = np.zeros(count + 1, dtype=bool)  # per label: holds a seed point
    grows[point_label[is_seed[near]]] = True
    return near[grows[point_label]]  # near is sorted, so is the result
