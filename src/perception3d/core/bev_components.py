"""Connected pieces of a point cloud in bird's-eye view: points whose cells (a square grid in x, y) touch, with the
8 neighbours, belong to one piece. detection3d grows the frustum segment of an object cut by the image border
with them: the part of a near object that lies in the neighbouring camera's view is connected to the part in this
one (core.lift3d). The pieces are found in a square window around the object only (the touching occupied cells of
the window's points, scipy.sparse.csgraph's components), not over the whole sweep; the windows of all objects at
once."""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components


class BevCells:
    """Points (N, >=2) [m] with their x, y and cells (cell_m [m]) computed once: one sweep's object points serve
    every window of it (per window only the comparisons with the window's bounds are left)."""

    def __init__(self, points: np.ndarray, cell_m: float) -> None:
        pts = np.asarray(points, dtype=np.float64)
        self.x, self.y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
        self.cell_x, self.cell_y = (np.floor(c / cell_m).astype(np.int64) for c in (self.x, self.y))

    def __len__(self) -> int:
        return len(self.x)


def connected_in_windows(cells: BevCells, seeds: np.ndarray, seed_count: np.ndarray, centres: np.ndarray,
                         reach_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window w, the sorted indices of the points of cells within reach_m[w] (W,) of centres[w] (W, 2) [m] in x
    and in y whose cell is connected to a cell of one of the window's seed points (seeds (S,) grouped by window,
    seed_count (W,)) through cells of the window's points (8-connected). Seed points outside their window take no
    part; paths leaving the window do not connect.

    Returns the indices of all windows concatenated (grouped by window), their count per window (W,) and which of
    them are seeds of their window. The windows' rasters lie side by side, an empty row between two, and the
    components of their occupied cells are found at once (a sparse graph of the touching cells: far cheaper than
    labelling the mostly empty rasters)."""
    near = [np.zeros(0, dtype=np.intp)]
    for (x, y), reach in zip(centres.tolist(), np.asarray(reach_m).tolist()):
        inside = np.flatnonzero(np.abs(cells.x - x) < reach)
        near.append(inside[np.abs(cells.y.take(inside) - y) < reach])
    counts = np.array([len(window) for window in near[1:]], dtype=np.int64)
    near = np.concatenate(near)
    if len(near) == 0:
        return near, counts, np.zeros(0, dtype=bool)
    filled = counts[counts > 0]
    firsts = np.cumsum(filled) - filled
    # each window's raster spans its points only
    cell_x, cell_y = cells.cell_x.take(near), cells.cell_y.take(near)
    cell_x -= np.repeat(np.minimum.reduceat(cell_x, firsts), filled)
    cell_y -= np.repeat(np.minimum.reduceat(cell_y, firsts), filled)
    rows = np.maximum.reduceat(cell_x, firsts) + 2  # the window's rows and an empty one
    cell_x += np.repeat(np.cumsum(rows) - rows, filled)
    width = int(cell_y.max()) + 2  # and an empty column: a cell's neighbours never wrap round to another row
    flat = cell_x * width + cell_y
    occupied = np.zeros(int(rows.sum()) * width, dtype=bool)
    occupied[flat] = True
    cell = np.flatnonzero(occupied)
    number = np.empty(len(occupied), dtype=np.int32)  # of each occupied cell (read there only: not cleared)
    number[cell] = np.arange(len(cell), dtype=np.int32)
    # each cell's links to its occupied neighbours right, down-left, down and down-right (the 8, both ways)
    neighbour = cell[:, None] + np.array([1, width - 1, width, width + 1])
    link, step = np.nonzero(occupied[neighbour])
    indptr = np.zeros(len(cell) + 1, dtype=np.int32)  # csgraph's types: no conversion
    np.cumsum(np.bincount(link, minlength=len(cell)), out=indptr[1:])
    links = csr_matrix((np.ones(len(link)), number.take(neighbour[link, step]), indptr),
                       shape=(len(cell), len(cell)))
    count, label = connected_components(links, directed=False)
    point_label = label.take(number.take(flat))
    owner = np.repeat(np.arange(len(counts)), counts)
    key = owner * len(cells) + near  # ascending: windows in order, each window's points sorted
    seed_key = np.repeat(np.arange(len(counts)), seed_count) * len(cells) + seeds
    at = np.minimum(np.searchsorted(key, seed_key), len(key) - 1)
    is_seed = np.zeros(len(near), dtype=bool)
    is_seed[at[key.take(at) == seed_key]] = True
    grows = np.zeros(count, dtype=bool)  # per component: holds a seed point of its window
    grows[point_label[is_seed]] = True
    grown = np.flatnonzero(grows.take(point_label))
    return near.take(grown), np.bincount(owner.take(grown), minlength=len(counts)), is_seed[grown]
