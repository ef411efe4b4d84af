"""Connected pieces of a point cloud in bird's-eye view: points whose cells (a square grid in x, y) touch, with the
8 neighbours, belong to one component. detection3d grows the frustum segment of an object cut by the image border
with them: the part of a near object that lies in the neighbouring camera's view is connected to the part in this
one (core.lift3d)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_SPAN = 1 << 21  # cell keys: (column + _SPAN / 2) * _SPAN + (row + _SPAN / 2); cells within +-1e6 of the origin
_HALF_NEIGHBOURS = ((1, -1), (1, 0), (1, 1), (0, 1))  # the other four are their reverse


@dataclass(frozen=True)
class BevComponents:
    """Components of N points: label (N,) int, and the point indices grouped by component (members: indices sorted
    by component, then by index; start (C + 1,) where each component's run begins)."""

    label: np.ndarray
    members: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, xy: np.ndarray, cell_m: float) -> BevComponents:
        """The components of points xy (N, >=2) [m] on cells of cell_m [m]."""
        cells = np.floor(np.asarray(xy, dtype=np.float64)[:, :2] / cell_m).astype(np.int64) + _SPAN // 2
        keys, cell_of = np.unique(cells[:, 0] * _SPAN + cells[:, 1], return_inverse=True)
        rows, cols = [], []
        for dx, dy in _HALF_NEIGHBOURS:
            neighbour = keys + dx * _SPAN + dy
            at = np.minimum(np.searchsorted(keys, neighbour), max(len(keys) - 1, 0))
            found = np.flatnonzero(keys[at] == neighbour) if len(keys) else np.zeros(0, dtype=np.int64)
            rows.append(found)
            cols.append(at[found])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(keys), len(keys)))
        count, cell_label = connected_components(graph, directed=False)
        label = cell_label[cell_of]
        members = np.argsort(label, kind="stable")
        return cls(label, members, np.searchsorted(label[members], np.arange(count + 1)))

    def grow(self, seed: np.ndarray) -> np.ndarray:
        """Sorted indices of every point in a component of the seed points (indices (S,))."""
        components = np.unique(self.label[seed])
        runs = [self.members[self.start[c]:self.start[c + 1]] for c in components]
        return np.sort(np.concatenate(runs)) if runs else np.zeros(0, dtype=np.int64)
