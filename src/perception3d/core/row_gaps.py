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
  along the row, grown by it across), between `MIN_HEIGHT_M` and `MAX_HEIGHT_M` above the ground surface, and past a
  row end at least two in each half of it: a gap or a row end without them is where the row really stops or parts.
  The barriers a 2D detector misses are the far, hidden ones of a row, with few returns: with 5 instead of 2, barrier
  AP with `good` 2D boxes was lower on all four tuning worlds (v1 seeds 5-6, v2 seeds 9-10: -0.028 summed; with 3,
  -0.008), and level with perfect boxes; 1 raised it by 0.007 more, but a single return is no surface (a stray hit).
- A filled box takes its neighbours' mean length, height and centre height (z), the first neighbour's heading,
  and `SCORE_FACTOR` x the lower of their scores (no image saw it).

The fill runs twice, so that a row end grows by up to two barriers (the second from the first one filled).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import SIZE_PRIOR_WLH
from .detections import Detections3D
from .geometry import wrap_angle

ROW_CLASS = "barrier"
ROW_YAW_DEG = 15.0
ROW_OFFSET_M = 0.5
GAP_SLACK = 0.4
MAX_FILLED = 2
END_GAP_M = 0.05
MIN_RETURNS = 2
MIN_HEIGHT_M = 0.2
MAX_HEIGHT_M = 1.6
FOOTPRINT_MARGIN_M = 0.1
SCORE_FACTOR = 0.5
WIDTH_STD = 2.0
_MEAN, _STD = SIZE_PRIOR_WLH[ROW_CLASS][0][0], SIZE_PRIOR_WLH[ROW_CLASS][1][0]
_WIDTHS = (_MEAN - WIDTH_STD * _STD, _MEAN + WIDTH_STD * _STD)  # a barrier's least and greatest width [m]
FILL_PASSES = 2


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
        i, j = np.triu_indices(len(self.index), k=1)
        offset = self.centre[j] - self.centre[i]
        turn = np.degrees(np.abs(wrap_angle(2.0 * (dets.yaws[self.index[i]] - dets.yaws[self.index[j]])))) / 2.0
        same_row = ((turn <= ROW_YAW_DEG) & (np.abs(_projected(offset, self.heading[i])) <= ROW_OFFSET_M)
                    & (np.abs(_projected(offset, self.heading[j])) <= ROW_OFFSET_M))
        i, j = i[same_row], j[same_row]
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
    with np.errstate(invalid="ignore"):
        usable = (object_height >= MIN_HEIGHT_M) & (object_height <= MAX_HEIGHT_M)
    points = _Returns.of(objects_xy[usable])
    for _ in range(FILL_PASSES):
        row = _Row.of(dets)
        if len(row.index) == 0:
            break
        i, j = row.neighbours(dets)
        added = _gaps(row, i, j, points) + _ends(row, i, j, points, dets)
        if not added:
            break
        dets = _joined(dets, _filled(dets, row, added))
    return dets


def _gaps(row: _Row, i: np.ndarray, j: np.ndarray, points: _Returns) -> list[tuple[np.ndarray, float, int, int]]:
    """(centre (2,), width, neighbour, neighbour) of the barriers filling the gaps between neighbours i and j."""
    added = []
    for a, b in zip(i, j):
        offset = _projected(row.centre[b] - row.centre[a], row.along[a])
        toward = np.sign(offset) * row.along[a]
        size = 0.5 * (row.width[a] + row.width[b])
        gap = abs(offset) - size
        k = int(round(gap / size))
        if not 1 <= k <= MAX_FILLED or abs(gap - k * size) > GAP_SLACK * size:
            # the neighbours' widths do not divide the gap: the fewest barriers of the class's widths that fill it
            k = int(np.ceil(gap / _WIDTHS[1]))
            if not 1 <= k <= MAX_FILLED or gap / k < _WIDTHS[0]:
                continue
        piece = gap / k
        length = 0.5 * (row.length[a] + row.length[b])
        for m in range(k):
            centre = row.centre[a] + toward * (0.5 * row.width[a] + (m + 0.5) * piece)
            if len(points.in_footprint(centre, row.along[a], piece, length)) >= MIN_RETURNS:
                added.append((centre, piece, a, b))
    return added


def _ends(row: _Row, i: np.ndarray, j: np.ndarray, points: _Returns,
          dets: Detections3D) -> list[tuple[np.ndarray, float, int, int]]:
    """(centre (2,), width, barrier, barrier) of the barriers continuing rows past the sides of barriers that have no
    neighbour there."""
    added = []
    for b in range(len(row.index)):
        others = np.r_[j[i == b], i[j == b]]
        taken = np.sign(_projected(row.centre[others] - row.centre[b], row.along[b]))
        for side in (1.0, -1.0):
            if side in taken:
                continue
            centre = row.centre[b] + side * row.along[b] * (row.width[b] + END_GAP_M)
            inside = points.in_footprint(centre, row.along[b], row.width[b], row.length[b])
            halves = _projected(inside - centre, row.along[b]) > 0
            if len(inside) < MIN_RETURNS or min(np.count_nonzero(halves), np.count_nonzero(~halves)) < 2:
                continue
            standing = np.delete(dets.centers[:, :2], row.index[b], axis=0) - centre  # another detection there:
            if np.any((np.abs(_projected(standing, row.along[b])) <= 0.5 * row.width[b] + 0.5)  # the row ends at it
                      & (np.abs(_projected(standing, row.heading[b])) <= 0.5 * row.length[b] + 0.5)):
                continue
            added.append((centre, row.width[b], b, b))
    return added


@dataclass(frozen=True)
class _Returns:
    """The returns that can be a barrier's (N, 2) [m], sorted by x: a footprint's returns are searched among those
    within its reach in x (each barrier's one or two fills would otherwise each test every return of the sweep)."""

    xy: np.ndarray

    @classmethod
    def of(cls, xy: np.ndarray) -> _Returns:
        return cls(xy[np.argsort(xy[:, 0], kind="stable")])

    def in_footprint(self, centre: np.ndarray, along: np.ndarray, width: float, length: float) -> np.ndarray:
        """The returns (K, 2) in the footprint of a barrier at centre (2,) whose row runs along `along` (2,), its
        width shrunk and its length grown by FOOTPRINT_MARGIN_M on each side."""
        reach = 0.5 * np.hypot(width, length) + FOOTPRINT_MARGIN_M
        low, high = np.searchsorted(self.xy[:, 0], [centre[0] - reach, centre[0] + reach])
        near = self.xy[low:high]
        relative, across = near - centre, np.array([along[1], -along[0]])
        return near[(np.abs(_projected(relative, along)) <= 0.5 * width - FOOTPRINT_MARGIN_M)
                    & (np.abs(_projected(relative, across)) <= 0.5 * length + FOOTPRINT_MARGIN_M)]


def _projected(vectors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """vectors (..., 2) projected on directions (..., 2) (broadcast): x * dx + y * dy, rounded the same on any
    machine and for any shape (`@` and einsum call BLAS or SIMD routines whose fused multiply-adds and summation
    order differ between array shapes and builds)."""
    return vectors[..., 0] * directions[..., 0] + vectors[..., 1] * directions[..., 1]


def _filled(dets: Detections3D, row: _Row, added: list[tuple[np.ndarray, float, int, int]]) -> Detections3D:
    """The filled barriers as detections (sizes, height and score from their neighbours, module docstring)."""
    a = np.array([n for _, _, n, _ in added])
    b = np.array([n for _, _, _, n in added])
    first, second = row.index[a], row.index[b]
    z = 0.5 * (dets.centers[first, 2] + dets.centers[second, 2])
    sizes = 0.5 * (dets.sizes_lwh[first] + dets.sizes_lwh[second])
    sizes[:, 1] = [width for _, width, _, _ in added]
    return Detections3D(np.column_stack([np.array([c for c, _, _, _ in added]), z]), sizes, dets.yaws[first],
                        np.full(len(added), ROW_CLASS, dtype=object),
                        SCORE_FACTOR * np.minimum(dets.scores[first], dets.scores[second]), dets.frame_id,
                        dets.stamp_ns)


def _joined(a: Detections3D, b: Detections3D) -> Detections3D:
    """a's boxes, then b's."""
    return Detections3D(np.concatenate([a.centers, b.centers]), np.concatenate([a.sizes_lwh, b.sizes_lwh]),
                        np.concatenate([a.yaws, b.yaws]), np.concatenate([a.class_ids, b.class_ids]),
                        np.concatenate([a.scores, b.scores]), a.frame_id, a.stamp_ns,
                        np.concatenate([a.velocities, b.velocities]), np.concatenate([a.ids, b.ids]),
                        np.concatenate([a.attributes, b.attributes]))
