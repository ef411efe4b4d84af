"""Connected pieces of a point cloud in bird's-eye view: points whose cells (a square grid in x, y) touch, with the
8 neighbours, belong to one piece. detection3d grows the frustum segment of an object cut by the image border
with them: the part of a near object that lies in the neighbouring camera's view is connected to the part in this
one (core.lift3d). The pieces are found in a square window around the object only (a raster of the cells of the
window's points, labelled at once by scipy.ndimage), not over the whole sweep."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


class BevCells:
    """Points (N, >=2) [m] with their x, y and cells (cell_m [m]) computed once: one sweep's object points serve
    every window of it (per window only the comparisons with the window's bounds are left)."""

    def __init__(self, points: np.ndarray, cell_m: float) -> None:
        pts = np.asarray(points, dtype=np.float64)
        self.x, self.y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
        self.cell_x, self.cell_y = (np.floor(c / cell_m).astype(np.int64) for c in (self.x, self.y))

    def __len__(self) -> int:
        return len(self.x)


def connected_in_window(cells: BevCells, seed: np.ndarray, centre: np.ndarray, reach_m: float) -> np.ndarray:
    """Sorted indices of the points of cells within reach_m of centre (2,) [m] in x and in y whose cell is
    connected to a cell of a seed point (indices (S,)) through cells of the window's points (8-connected). Seed
    points outside the window take no part; paths leaving the window do not connect."""
    near = np.flatnonzero(np.abs(cells.x - centre[0]) < reach_m)
    near = near[np.abs(cells.y.take(near) - centre[1]) < reach_m]
    if len(near) == 0:
        return near
    # the raster spans the window's points only
    cell_x, cell_y = cells.cell_x.take(near), cells.cell_y.take(near)
    cell_x -= cell_x.min()
    cell_y -= cell_y.min()
    occupied = np.zeros((cell_x.max() + 1, cell_y.max() + 1), dtype=bool)
    occupied[cell_x, cell_y] = True
    label, count = ndimage.label(occupied, structure=_EIGHT_NEIGHBOURS)
    point_label = label[cell_x, cell_y]
    is_seed = np.zeros(len(cells), dtype=bool)
    is_seed[seed] = True
    grows = np.zeros(count + 1, dtype=bool)  # per label: holds a seed point
    grows[point_label[is_seed[near]]] = True
    return near[grows[point_label]]  # near is sorted, so is the result
