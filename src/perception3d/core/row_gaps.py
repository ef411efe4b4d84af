"""Barriers that a row of detected barriers implies where no 2D box found them (detection3d, issue 16).

Barriers stand end to end in rows. Where they touch, each one hides part of the next from the camera, and a 2D
detector misses the more hidden ones (on world v2 with the `good` simulated detector, missed 2D boxes cost barrier
AP 0.21, against 0.09 on world v1: benchmarks/results/world_v2_good_parts.md). A 3D box only comes from a 2D box, but
the LiDAR still sees the missed barriers: their returns continue the row's wall. So, after the boxes are merged:

- Rows: two barrier boxes are neighbours when their headings agree within `ROW_YAW_DEG` (up to a half turn), each
  one's centre lies within `ROW_OFFSET_M` of the other's row line (a barrier's row runs along its width, across its
  heading) and no other barrier box lies between them on that line.
- Gaps: the gap between two neighbours' facing ends holds k barriers (1 <= k <= `MAX_FILLED`) when it is within
  `GAP_SLACK` x their mean width of k times that width, or else (barriers of one row differ in width) when k is
  the fewest barriers of the class's widths (nuScenes mean +- `WIDTH_STD` std: 1.27-3.75 m) that fill it; the k
  boxes share the gap equally.
- Ends: a barrier continues its row past each side on which it has no neighbour (a barrier without any: on both) by
  a barrier of its own size (`END_GAP_M` apart), when no other detection stands there and returns fill both halves
  of the footprint.
- A filled box needs `MIN_RETURNS` object (non-ground) returns inside its footprint (shrunk by `FOOTPRINT_MARGIN_M`
  along the row, grown by it across), between `MIN_HEIGHT_M` and `MAX_HEIGHT_M` above the ground surface: a gap
  without them is where the row really parts. The barriers a 2D detector misses are the far, hidden ones of a row,
  with few returns: with 5 instead of 2, barrier AP with `good` 2D boxes was lower on all four tuning worlds (v1
  seeds 5-6, v2 seeds 9-10: -0.028 summed; with 3, -0.008), and level with perfect boxes; 1 raised it by 0.007 more,
  but a single return is no surface (a stray hit).
- Past a row end the footprint also needs `END_HALF_RETURNS` returns in each of its halves along the row: a row
  end without them is where the row stops (a post beside it fills one half only). A row end's far barriers are seen
  along the row, behind the nearer ones: with 1 instead of 2 in each half, barrier AP rose or held on all eight
  tuning runs (those worlds with perfect and good 2D: +0.042 summed, +0.014 at most, v2 seed 9 good).
- A filled box takes its neighbours' mean length, height and centre height (z), the first neighbour's heading,
  and `SCORE_FACTOR` x the lower of their scores (no image saw it).

The fill runs twice, so that a row end grows by up to two barriers (the second from the first one filled; four passes
changed no score on the tuning runs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import SIZE_PRIOR_WLH
from .detections import Detections3D
from .geometry import wrap_angle
from .sorted_runs import run_indices

ROW_CLASS = "barrier"
ROW_YAW_DEG = 15.0
ROW_OFFSET_M = 0.5
GAP_SLACK = 0.4
MAX_FILLED = 2
END_GAP_M = 0.05
MIN_RETURNS = 2
END_HALF_RETURNS = 1
MIN_HEIGHT_M = 0.2
MAX_HEIGHT_M = 1.6
FOOTPRINT_MARGIN_M = 0.1
SCORE_FACTOR = 0.5
WIDTH_STD = 2.0
_MEAN, _STD = SIZE_PRIOR_WLH[ROW_CLASS][0][0], SIZE_PRIOR_WLH[ROW_CLASS][1][0]
_WIDTHS = (_MEAN - WIDTH_STD * _STD, _MEAN + WIDTH_STD * _STD)  # a barrier's least and greatest width [m]
FILL_PASSES = 2
_CELL_M = 0.5  # the side of the squares that returns are searched by [m] (_Returns)


@dataclass(frozen=True)
class _Row:
    """The barrier boxes of a sweep in bird's-eye view: index into the detections (R,), centre (R, 2) [m], unit
    heading and row direction (R, 2), width along the row and length across it (R,) [m]."""

    index: np.ndarray
    centre: np.ndarray
    heading: np.ndarray
    along: np.ndarray
    width: np.ndarray
    length: np.ndarray

    @classmethod
    def of(cls, dets: Detections3D) -> _Row:
        index = np.flatnonzero(dets.class_ids == ROW_CLASS)
        heading = np.stack([np.cos(dets.yaws[index]), np.sin(dets.yaws[index])], axis=1)
        along = np.stack([-heading[:, 1], heading[:, 0]], axis=1)
        return cls(index, dets.centers[index, :2], heading, along, dets.sizes_lwh[index, 1], dets.sizes_lwh[index, 0])

    def neighbours(self, dets: Detections3D) -> tuple[np.ndarray, np.ndarray]:
        """The neighbour pairs (i (P,), j (P,)), rows into this, i < j (module docstring)."""
        rank = np.arange(len(self.index))
        i, j = np.nonzero(rank[:, None] < rank)  # np.triu_indices(R, k=1) in a quarter of its time
        offset = self.centre[j] - self.centre[i]
        turn = np.degrees(np.abs(wrap_angle(2.0 * (dets.yaws[self.index[i]] - dets.yaws[self.index[j]])))) / 2.0
        same_row = ((turn <= ROW_YAW_DEG) & (np.abs(_projected(offset, self.heading[i])) <= ROW_OFFSET_M)
                    & (np.abs(_projected(offset, self.heading[j])) <= ROW_OFFSET_M))
        i, j = i[same_row], j[same_row]
        if len(i) == 0:  # no two in a row (often): the test below would take ~25 us on nothing
            return i, j
        # another barrier on i's row line strictly between the two parts them
        relative = self.centre[None, :, :] - self.centre[i][:, None, :]  # (P, R, 2)
        position = _projected(relative, self.along[i][:, None, :])
        reach = _projected(self.centre[j] - self.centre[i], self.along[i])
        on_line = np.abs(_projected(relative, self.heading[i][:, None, :])) <= ROW_OFFSET_M
        between = on_line & (position * np.sign(reach)[:, None] > 0) & (np.abs(position) < np.abs(reach)[:, None])
        between[np.arange(len(i)), i] = between[np.arange(len(i)), j] = False
        alone = ~between.any(axis=1)
        return i[alone], j[alone]


def fill_row_gaps(dets: Detections3D, objects_xy: np.ndarray, object_height: np.ndarray) -> Detections3D:
    """dets (a z-up frame) with the barriers that its rows imply appended (module docstring).

    objects_xy: (N, 2) the sweep's object (non-ground) points in the same frame [m]; object_height: (N,) their
    heights above the ground surface [m] (NaN without one)."""
    if not np.any(dets.class_ids == ROW_CLASS):  # no rows: nothing to fill, no returns to sort
        return dets
    with np.errstate(invalid="ignore"):
        usable = (object_height >= MIN_HEIGHT_M) & (object_height <= MAX_HEIGHT_M)
    points = _Returns.of(objects_xy, usable)
    for _ in range(FILL_PASSES):
        row = _Row.of(dets)
        fills = _fills(row, *row.neighbours(dets), points, dets)
        if len(fills.width) == 0:
            break
        dets = dets.then(_filled(dets, row, fills))
    return dets


@dataclass(frozen=True)
class _Fills:
    """Barriers to add: centres (F, 2) and widths (F,) [m], and the two barriers (F,) each, rows into the _Row, that
    lend them the rest (module docstring); a row end's barrier is both."""

    centre: np.ndarray
    width: np.ndarray
    first: np.ndarray
    second: np.ndarray

    def then(self, other: _Fills) -> _Fills:
        """These fills, then other's."""
        return _Fills(np.concatenate([self.centre, other.centre]), np.concatenate([self.width, other.width]),
                      np.concatenate([self.first, other.first]), np.concatenate([self.second, other.second]))

    def select(self, keep: np.ndarray) -> _Fills:
        """The fills where keep (F,) is true."""
        return _Fills(self.centre[keep], self.width[keep], self.first[keep], self.second[keep])


def _fills(row: _Row, i: np.ndarray, j: np.ndarray, points: _Returns, dets: Detections3D) -> _Fills:
    """The barriers filling the gaps between neighbours i and j, pair by pair, then those continuing rows past the
    free sides of barriers, barrier by barrier (module docstring)."""
    candidates = _end_candidates(row, i, j)
    if len(i):  # without neighbours, no gaps (their ~20 array operations on nothing take ~35 us)
        candidates = _gap_candidates(row, i, j).then(candidates)
    first, second = candidates.first, candidates.second
    # a row end's footprint is its barrier's: 0.5 * (l + l) is exactly l
    count, ahead = points.in_footprints(candidates.centre, row.along[first], row.heading[first], candidates.width,
                                        0.5 * (row.length[first] + row.length[second]))
    end = first == second
    filled = (count >= MIN_RETURNS) & (~end | (np.minimum(ahead, count - ahead) >= END_HALF_RETURNS))
    ends = np.flatnonzero(filled & end)
    filled[ends] = ~_occupied(dets, row, first[ends], candidates.centre[ends])
    return candidates.select(filled)


def _gap_candidates(row: _Row, i: np.ndarray, j: np.ndarray) -> _Fills:
    """The barriers that would fill the gaps between neighbours i and j, pair by pair, from i's end on."""
    offset = _projected(row.centre[j] - row.centre[i], row.along[i])  # j from i along i's row [m]
    size = 0.5 * (row.width[i] + row.width[j])
    gap = np.abs(offset) - size
    count = _fill_counts(gap, size)
    pair = np.repeat(np.arange(len(i)), count)
    m = run_indices(np.zeros_like(count), count)  # each barrier's place in its gap
    a = i[pair]
    piece = gap[pair] / count[pair]
    toward = np.sign(offset[pair])[:, None] * row.along[a]
    return _Fills(row.centre[a] + toward * (0.5 * row.width[a] + (m + 0.5) * piece)[:, None], piece, a, j[pair])


def _fill_counts(gap: np.ndarray, size: np.ndarray) -> np.ndarray:
    """(P,) how many barriers fill each gap [m] between neighbours of mean width `size` [m] (0: none)."""
    k = np.rint(gap / size)  # half to even, as Python's round
    fits = (k >= 1) & (k <= MAX_FILLED) & (np.abs(gap - k * size) <= GAP_SLACK * size)
    # the neighbours' widths do not divide the gap: the fewest barriers of the class's widths that fill it
    fewest = np.ceil(gap / _WIDTHS[1])
    fill = (fewest >= 1) & (fewest <= MAX_FILLED) & (gap / np.maximum(fewest, 1.0) >= _WIDTHS[0])  # no 0 / 0
    return np.where(fits, k, np.where(fill, fewest, 0.0)).astype(int)


_SIDES = np.array([1.0, -1.0])  # a barrier's sides along its row


def _end_candidates(row: _Row, i: np.ndarray, j: np.ndarray) -> _Fills:
    """The barriers that would continue rows past the free sides of barriers (_free_sides), barrier by barrier, the
    + side first."""
    b, side = np.nonzero(_free_sides(row, i, j))
    centre = row.centre[b] + _SIDES[side][:, None] * row.along[b] * (row.width[b] + END_GAP_M)[:, None]
    return _Fills(centre, row.width[b], b, b)


def _free_sides(row: _Row, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(R, 2) whether no neighbour of each barrier lies on its _SIDES along its row (i and j: the neighbour pairs)."""
    barrier, other = np.concatenate([i, j]), np.concatenate([j, i])
    side = np.sign(_projected(row.centre[other] - row.centre[barrier], row.along[barrier]))
    free = np.ones((len(row.index), 2), dtype=bool)
    free[barrier[side == _SIDES[0]], 0] = free[barrier[side == _SIDES[1]], 1] = False
    return free


def _occupied(dets: Detections3D, row: _Row, b: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(C,) whether a detection other than barrier b (C,) stands where its row's continuation (centre (C, 2) [m])
    would: the row ends at it."""
    standing = dets.centers[None, :, :2] - centre[:, None, :]  # (C, D, 2)
    there = ((np.abs(_projected(standing, row.along[b][:, None, :])) <= (0.5 * row.width[b] + 0.5)[:, None])
             & (np.abs(_projected(standing, row.heading[b][:, None, :])) <= (0.5 * row.length[b] + 0.5)[:, None]))
    there[np.arange(len(b)), row.index[b]] = False
    return there.any(axis=1)


@dataclass(frozen=True)
class _Returns:
    """The returns that can be a barrier's, xy (N, 2) [m], sorted by their cells (N,): squares of a grid _CELL_M wide
    from the returns' least x and y (origin (2,) [m]), numbered column by column (column * rows + row). A footprint's
    returns are searched among those in the cells that its reach overlaps (~1/10 of those within its reach in x)."""

    xy: np.ndarray
    cell: np.ndarray
    origin: np.ndarray
    rows: int

    @classmethod
    def of(cls, xy: np.ndarray, usable: np.ndarray) -> _Returns:
        """The finite returns xy (N, 2) [m] where usable (N,)."""
        # x and y apart: xy is often in Fortran order, and reductions over (N, 2) arrays take ~50x longer
        x, y = xy[:, 0], xy[:, 1]
        usable = usable & np.isfinite(x) & np.isfinite(y)  # the others lie in no footprint
        x, y = x.compress(usable), y.compress(usable)
        origin = np.array([x.min(), y.min()]) if len(x) else np.zeros(2)
        row = cls._grid(y - origin[1])
        rows = int(row.max()) + 1 if len(x) else 1
        cell = cls._grid(x - origin[0]) * rows + row
        order = np.argsort(cell, kind="stable")  # timsort: the scan order leaves runs of cells (~10x quicksort's speed)
        return cls(np.column_stack([x.take(order), y.take(order)]), cell.take(order), origin, rows)

    @staticmethod
    def _grid(offset: np.ndarray) -> np.ndarray:
        """The grid columns or rows of offsets [m] from the origin (same shape)."""
        return np.floor(offset / _CELL_M).astype(np.int64)

    def in_footprints(self, centre: np.ndarray, along: np.ndarray, across: np.ndarray, width: np.ndarray,
                      length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For C barriers at centre (C, 2) whose rows run along `along` (C, 2), across them `across` (C, 2) (their
        headings), their widths (C,) shrunk and lengths (C,) grown by FOOTPRINT_MARGIN_M on each side [m]: how many
        returns lie in each footprint (C,), and how many of them ahead of its centre along its row (C,)."""
        half_width, half_length = 0.5 * width - FOOTPRINT_MARGIN_M, 0.5 * length + FOOTPRINT_MARGIN_M
        # a footprint's circumscribed radius, and more: its returns lie in the cells of the square of its reach
        reach = (0.5 * np.hypot(width, length) + FOOTPRINT_MARGIN_M)[:, None]
        first = self._grid(centre - reach - self.origin)  # (C, 2) its first and last column and row
        last = self._grid(centre + reach - self.origin)
        # rows within the grid's, so that a column's cells in them are its own (a row past them is the next column's)
        first[:, 1], last[:, 1] = np.clip(first[:, 1], 0, self.rows - 1), np.clip(last[:, 1], 0, self.rows - 1)
        columns = last[:, 0] - first[:, 0] + 1
        owner = np.repeat(np.arange(len(centre)), columns)
        column = run_indices(first[:, 0], columns) * self.rows  # each column's cell 0
        low = np.searchsorted(self.cell, column + first[owner, 1])
        near = np.searchsorted(self.cell, column + last[owner, 1], side="right") - low
        slot, owner = run_indices(low, near), np.repeat(owner, near)
        # take, not fancy indexing: ~7x faster on (K, 2) arrays
        relative = self.xy.take(slot, axis=0) - centre.take(owner, axis=0)
        ahead = _projected(relative, along.take(owner, axis=0))
        inside = ((np.abs(ahead) <= half_width.take(owner))
                  & (np.abs(_projected(relative, across.take(owner, axis=0))) <= half_length.take(owner)))
        return (np.bincount(owner[inside], minlength=len(centre)),
                np.bincount(owner[inside & (ahead > 0)], minlength=len(centre)))


def _projected(vectors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """vectors (..., 2) projected on directions (..., 2) (broadcast): x * dx + y * dy, rounded the same on any
    machine and for any shape (`@` and einsum call BLAS or SIMD routines whose fused multiply-adds and summation
    order differ between array shapes and builds)."""
    return vectors[..., 0] * directions[..., 0] + vectors[..., 1] * directions[..., 1]


def _filled(dets: Detections3D, row: _Row, fills: _Fills) -> Detections3D:
    """The filled barriers as detections (sizes, height and score from their neighbours, module docstring)."""
    first, second = row.index[fills.first], row.index[fills.second]
    z = 0.5 * (dets.centers[first, 2] + dets.centers[second, 2])
    sizes = 0.5 * (dets.sizes_lwh[first] + dets.sizes_lwh[second])
    sizes[:, 1] = fills.width
    return Detections3D(np.column_stack([fills.centre, z]), sizes, dets.yaws[first],
                        np.full(len(first), ROW_CLASS, dtype=object),
                        SCORE_FACTOR * np.minimum(dets.scores[first], dets.scores[second]), dets.frame_id,
                        dets.stamp_ns)
