"""An oriented 3D box fitted to the LiDAR segment of one 2D detection (size and position; the heading is the
LiDAR footprint's, up to a quarter turn).

core.frustum hands each 2D box the object's segment: its depth cluster without occluders in front and without
the points a nearer detection's segment holds. Its nearest point is then the object's, but the points need not
show the whole object (a barrier in a row shows one long face; the car parked bumper to bumper its side), and
a QAF2D anchor's size comes from a 0.5 m grid. A candidate box is judged by
- its points: the mean over the segment's points (LiDAR frame) of the distance to the box's surface, capped at
  `outline_cap_m` (`segment_cost`; a point off the object costs the cap whatever the box); for objects whose upper
  half stands back from the box's outline (`FitProblem.open_top`: a car's cabin, bonnet and boot), a point in the
  box's upper half costs nothing inside the box;
- the 2D box: the IoU of its projection with the detection, to the power `iou_power` (with touching objects the
  2D box is what tells where one ends and the next begins);
- the class size prior: the nuScenes mean and std per class (Gaussian likelihood, std x `prior_std_scale`).
`fit_boxes` searches (length, width) on a coarse grid over the prior (both footprint axes tried as the length), then on
a fine grid around the winner (for boxes with `length_prior`, where the points do not show the length, a car seen
end-on, the length is the prior's mean: `unseen_length_fraction`); each candidate is placed where its projection fits
the 2D box edges (the KM3D solver, `place_by_box_edges`) and slid along its camera ray so that its nearest corner lies
at the segment's nearest depth; for objects whose returns lie on one flat long face (barriers) seen between both image
edges, also slid so that this face lies on the points (`_slide_to_face`: a far row seen at a grazing angle holds few
returns, its nearest one far from the box's nearest corner); for boxes cut by the image's left or right border (no 2D
edge there), also put with its sides facing the sensor on the segment's extremes along its footprint axes
(`_against_extremes`; a barrier, centred on them along its length: core.lift3d grows a cut barrier's segment by the
segments of its boxes in the other cameras, which keep out the next barriers of a row; a box whose height the LiDAR
bounds and whose segment spans its length, standing on the ground); for boxes whose near end a
nearer object may hide, also kept where the 2D box edges put it, as long as it holds the nearest return
(`_hold_nearest`: the nearest return then need not lie on the box's near face).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .geometry import wrap_angle
from .km3d import keypoint_offset_components, yaw_to_ry
from .qaf2d import paired_iou


@dataclass(frozen=True)
class FitParams:
    """Parameters of the box fit to a LiDAR segment.

    Attributes:
        coarse_std, fine_std: the size grids searched, in class prior std: first mean + coarse_std x std (for
            length and width) and the mean, then the winner + fine_std x std.
        unseen_length_fraction: for boxes with `FitProblem.length_prior`, a candidate whose length axis the segment
            spans less than this x the class's mean length (a car seen end-on shows its face, not its length)
            takes the mean length: the candidates' scores then differ only by the 2D box's top edge (under 1 px
            per metre of length for a car at 30 m), they tied and the first, the QAF2D anchor's size, won; the mean
            is the best guess (`_unseen_lengths`).
        outline_cap_m: a point costs its distance to the box surface up to this [m].
        cost_sigma_m: scale of the mean point cost in the fit's score [m].
        iou_power: power of the projected-box IoU in the fit's score (10: on the tuning worlds v1 seeds 5-6 and v2
            seeds 9-10 with perfect and good 2D boxes, 10 against 20 lowered the car ATE in all eight runs and raised
            detection mAP in seven, the eighth level; benchmarks/results/world_v2_log.md).
        prior_std_scale: the size prior's std x this factor.
        standing_span: a box put against its segment's extremes stands on the ground (`FitProblem.ground_z`) where
            the segment spans at least this x its length along its long axis: then its extremes bound the whole
            object. On the tuning worlds (v1 seeds 5-6, v2 seeds 9-10, perfect and good 2D) standing without this
            test lowered bus AP by 0.05 summed (a bus cut by the image border whose segment holds part of it).
    """

    coarse_std: tuple[float, ...] = (-1.0, 1.0)
    fine_std: tuple[float, ...] = (-0.5, 0.0, 0.5)
    unseen_length_fraction: float = 0.3
    outline_cap_m: float = 0.5
    cost_sigma_m: float = 0.1
    iou_power: float = 10.0
    prior_std_scale: float = 1.5
    standing_span: float = 0.8


@dataclass
class FitProblem:
    """B boxes to fit, each with its 2D detection and segment points (all NumPy arrays; LiDAR frame).

    Attributes:
        points: (B, K, 3) segment points per box, padded; valid: (B, K) which are real.
        T_cam_lidar: (B, 4, 4) the box's camera extrinsics.
        box_norm: (B, 4) the detection in normalised image coordinates, clipped to `limits` (B, 4) (the image).
        prior_wlh: (B, 2, 3) the class size prior: mean and std of (w, l, h) [m].
        edges_norm: (B, 4) the detection in normalised image coordinates, unclipped; on_border: (B, 4) which of
            its edges (left, right, top, bottom) lie on the image border (`place_by_box_edges`).
        nearest_depth: (B,) camera depth of the segment's nearest point [m].
        flat_face: (B,) the object's returns lie on one flat long face (a barrier): where both its left and right
            edges are inside the image, each candidate is also slid so that this face lies on the points
            (`_slide_to_face`).
        heading: (B,) the segment's footprint heading in the LiDAR frame [rad] (core.lift3d.lidar_headings).
        extremes: (B, 4) the least and greatest coordinate of all the segment's points along that heading and
            across it [m]: [along min, along max, across min, across max]; where the 2D box's left or right edge
            lies on the image border, each candidate is also put against them
            (`_against_extremes`).
        near_end_hidden: (B,) a nearer object's 2D box covers much of this one's, and the segment holds enough
            points to judge where the box starts: each candidate is also kept where the 2D box edges put it, slid
            nearer only as far as makes it hold the nearest return (`_hold_nearest`).
        length_prior: (B,) where the segment does not show the box's length, its candidates take the class's mean
            length (`FitParams.unseen_length_fraction`).
        ground_z: (B,) height of the ground under the middle of the segment's footprint (LiDAR frame z [m]; NaN
            where unknown or the box's height is not bounded by the LiDAR): a box put against the segment's
            extremes stands on it (`_against_extremes`, `FitParams.standing_span`).
        open_top: (B,) the object's upper half stands back from the box's outline (a car's cabin is narrower and
            shorter than its body, its bonnet and boot lie below the roof): its points there cost nothing inside the
            box (`segment_cost`).
    """

    points: np.ndarray
    valid: np.ndarray
    T_cam_lidar: np.ndarray
    box_norm: np.ndarray
    limits: np.ndarray
    prior_wlh: np.ndarray
    edges_norm: np.ndarray
    on_border: np.ndarray
    nearest_depth: np.ndarray
    flat_face: np.ndarray
    heading: np.ndarray
    extremes: np.ndarray
    near_end_hidden: np.ndarray
    length_prior: np.ndarray
    ground_z: np.ndarray
    open_top: np.ndarray

    # What both rounds of the fit derive from the problem alone, computed on first use.

    @functools.cached_property
    def edge_system(self) -> _EdgeSystem:
        """The terms of each box's KM3D edge equations that its 2D box edges fix (`_place`)."""
        return _EdgeSystem.of(self.edges_norm, self.on_border)

    @functools.cached_property
    def face_slide(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The boxes slid onto their flat face (flat faces whose left and right edges lie inside the image) (F,), their
        segment points in the camera frame (F, K, 3) [m] and which are real (F, K) (`_slide_to_face`)."""
        face_box = np.flatnonzero(self.flat_face & ~self.on_border[:, 0] & ~self.on_border[:, 1])
        T = self.T_cam_lidar.take(face_box, axis=0)
        points_cam = np.einsum("bij,bkj->bki", T[:, :3, :3], self.points.take(face_box, axis=0)) + T[:, None, :3, 3]
        return face_box, points_cam, self.valid.take(face_box, axis=0)

    @functools.cached_property
    def cut_heights(self) -> tuple[np.ndarray, np.ndarray]:
        """The boxes cut by the image's left or right border (C,) and their segments' height spans (C, 2): least and
        greatest z [m, LiDAR frame] (`_against_extremes`)."""
        cut_box = np.flatnonzero(self.on_border[:, 0] | self.on_border[:, 1])
        height = np.where(self.valid.take(cut_box, axis=0), self.points[..., 2].take(cut_box, axis=0), np.nan)
        return cut_box, np.stack([np.nanmin(height, axis=1), np.nanmax(height, axis=1)], axis=1)


def gather_groups(values: np.ndarray, box_of: np.ndarray) -> np.ndarray:
    """values (..., G) of G point groups gathered for groups box_of (M,): (..., M). Where box_of is sorted (the
    candidates of one box together), by np.repeat, several times faster than np.take along a last axis."""
    if len(box_of) and np.all(box_of[1:] >= box_of[:-1]):
        return values.repeat(np.bincount(box_of, minlength=values.shape[-1]), axis=-1)
    return values.take(box_of, axis=-1)


def box_frame_excess(points: np.ndarray, box_of: np.ndarray, centers: np.ndarray, sizes_lwh: np.ndarray,
                     cos_sin: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """How far the points of groups box_of (M,) (points (G, K, 3), or (G, K, 2) for the footprint alone) lie outside
    boxes m (centres (M, 3), sizes (M, 3), cos and sin (M,) of yaws) along each box axis: |coordinate in the box
    frame| - half size [m], (K, M) each for l, w (and h) (negative inside). Point-major: numpy's loops then run
    along rows of M boxes (along rows of K points or of 3 coordinates they cost several times more)."""
    px, py, *pz = gather_groups(np.ascontiguousarray(points.transpose(2, 1, 0)), box_of)  # (K, M) each
    cx, cy, cz = np.ascontiguousarray(centers.T)
    px -= cx
    py -= cy
    c, s = cos_sin
    half = np.ascontiguousarray(0.5 * sizes_lwh.T)
    along, across = px * c, py * c
    along += py * s
    across -= px * s
    if pz:
        pz[0] -= cz
    excess = (along, across, *pz)
    for axis, half_size in zip(excess, half):
        np.abs(axis, out=axis)
        axis -= half_size
    return excess


def surface_distance(excess: tuple[np.ndarray, ...], outside_only: np.ndarray | None = None) -> np.ndarray:
    """Distance [m] of points to the surface of their boxes, (K, M), from `box_frame_excess` (its footprint axes:
    to the footprint's outline; all three: to the box's faces): how deep inside for a point inside, how far outside
    for one outside; 0 inside for the points `outside_only` (K, M). The excess arrays are overwritten."""
    depth = functools.reduce(np.maximum, excess)
    np.negative(depth, out=depth)  # how deep inside (negative outside)
    if outside_only is not None:
        depth[outside_only] = 0.0
    for axis in excess:
        np.maximum(axis, 0.0, out=axis)
        np.square(axis, out=axis)
    outside = excess[0]
    for axis in excess[1:]:
        outside += axis
    # The distance outside is 0 inside, where the depth is >= 0; outside the depth is negative (np.hypot: ~3x the
    # time of the square root of the sum).
    return np.maximum(depth, np.sqrt(outside, out=outside), out=outside)


def point_sum(values: np.ndarray) -> np.ndarray:
    """Sums (M,) of point-major values (K, M) (zero at padding) over the points: the same floats as a sum along rows
    of K points (numpy's pairwise sum, whose rounding a sum over rows of M boxes does not follow)."""
    return np.ascontiguousarray(values.T).sum(axis=1)


def segment_cost(centers, sizes_lwh, cos_sin, points, valid, box_of, params: FitParams = FitParams(),
                 open_top: np.ndarray | None = None) -> np.ndarray:
    """Mean point cost (M,) [m] of boxes m (cos and sin (M,) of their yaws) against the points of their groups
    box_of (M,) (points (G, K, 3) with mask valid (G, K)); see the module. open_top (G,): the groups whose points
    above their box's centre cost nothing inside it (FitProblem.open_top)."""
    upper_open = None
    if open_top is not None and open_top.any():
        upper_open = ((gather_groups(np.ascontiguousarray(points[..., 2].T), box_of) > centers[:, 2])
                      & gather_groups(open_top, box_of))
    distance = surface_distance(box_frame_excess(points, box_of, centers, sizes_lwh, cos_sin), upper_open)
    np.minimum(distance, gather_groups(np.where(valid.T, params.outline_cap_m, 0.0), box_of), out=distance)
    return point_sum(distance) / np.maximum(valid.sum(axis=1), 1)[box_of]


def size_log_prior(sizes_lwh: np.ndarray, prior_wlh: np.ndarray, box_of: np.ndarray, std_scale: float) -> np.ndarray:
    """log of the Gaussian likelihood (M,) (up to its constant) of sizes (M, 3) under the class priors (G, mean/std,
    wlh) of their groups box_of (M,), std x std_scale: -0.5 sum over w, l, h (in that order) of z^2. Axis-major:
    along rows of 3 numpy's loops cost several times more."""
    mean = gather_groups(np.ascontiguousarray(prior_wlh[:, 0].T), box_of)  # (3, M) each: w, l, h
    std = gather_groups((std_scale * prior_wlh[:, 1]).T, box_of)
    z = (sizes_lwh.T[[1, 0, 2]] - mean) / std
    return -0.5 * np.sum(z**2, axis=0)


def _bottom_corners(size_lwh: np.ndarray, ry: np.ndarray, cos_sin: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame offsets x, y, z (4, N) each [m] of the bottom face's corners (keypoints 0-3) from the centres of
    boxes of sizes (N, 3) and headings ry (N,) (cos_sin: their cos and sin, where already computed), corner-major
    (numpy's loops along rows of 8 corners cost several times more); the top face's corners (keypoints 4-7) lie at
    the same x, z and at -y."""
    x, y, z = keypoint_offset_components(size_lwh, ry, 4, cos_sin)
    return x.T, y.T, z.T


def _projected_corners(center_cam: np.ndarray, bottom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised image coordinates u (4, N), v (8, N) (x/z, y/z) and depths z (4, N) of the corners of boxes at
    center_cam (N, 3) with corner offsets `bottom` (`_bottom_corners`) (camera frame [m]). A top corner projects to
    the column u of the bottom corner below it (and lies at its depth); v's rows follow the keypoints."""
    x, y, z = bottom
    cx, cy, cz = center_cam.T
    depth = cz + z
    with np.errstate(divide="ignore", invalid="ignore"):
        return (cx + x) / depth, np.concatenate([(cy + y) / depth, (cy - y) / depth]), depth


def _score(centers, centers_cam, bottom, sizes_lwh, problem: FitProblem, rows: np.ndarray, cos_sin,
           params: FitParams) -> np.ndarray:
    """log score (M,) of candidate boxes of problem rows `rows` (M,): -cost / sigma + iou_power log IoU + log prior
    likelihood. Centres (M, 3) in the LiDAR frame and in the camera frame, corner offsets in the camera frame
    (`_bottom_corners`), sizes (M, 3), cos and sin (M,) of the yaws in the LiDAR frame."""
    cost = segment_cost(centers, sizes_lwh, cos_sin, problem.points, problem.valid, rows, params, problem.open_top)
    u, v, depth = _projected_corners(centers_cam, bottom)
    # (4, M) each, xyxy: the image's limits and the detection of each candidate's box
    limits_detection = gather_groups(np.concatenate([problem.limits, problem.box_norm], axis=1).T, rows)
    limits, detection = limits_detection[:4], limits_detection[4:]
    projected = np.array([[u.min(axis=0), v.min(axis=0)], [u.max(axis=0), v.max(axis=0)]])  # (2, 2, M)
    projected = np.minimum(np.maximum(projected, limits[:2]), limits[2:]).reshape(4, -1)
    iou = paired_iou(projected.T, detection.T)
    visible = depth.min(axis=0) > 0.0
    return np.where(visible, -cost / params.cost_sigma_m + params.iou_power * np.log(np.maximum(iou, 1e-6))
                    + size_log_prior(sizes_lwh, problem.prior_wlh, rows, params.prior_std_scale), -np.inf)


def fit_boxes(centers, sizes_lwh, yaws, problem: FitProblem,
              params: FitParams = FitParams()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (B, 3), sizes (B, 3) and yaws (B,) of boxes improved by the search of the module (the heading is
    held up to a quarter turn: the length may lie along either footprint axis)."""
    centers = np.array(centers, dtype=np.float64)
    sizes = np.array(sizes_lwh, dtype=np.float64)
    yaws = np.asarray(yaws, dtype=np.float64)
    if len(centers) == 0:
        return centers, sizes, yaws
    return _best_size(centers, sizes, yaws, problem, params)


def _best_size(centers, sizes, yaws, problem, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best box of a coarse (length, width) grid over the prior (mean + `coarse_std` x std, and the mean, both
    footprint axes tried as the length), then of a fine grid around the winner (+- `fine_std` x std); the current box
    competes in the first round. Each candidate is placed where its projection fits the 2D box edges
    (`place_by_box_edges`) and then slid along its ray so that its nearest corner lies at the segment's nearest
    depth (LiDAR range is far more precise than depth from a box; occluders in front are no longer in the
    segment, core.frustum)."""
    mean, std = problem.prior_wlh[:, 0, :2], problem.prior_wlh[:, 1, :2]  # (B, (w, l))
    # Round 1: (turn, l step, w step) grid with the mean (0, 0) step, plus the current box.
    step_l, step_w, yaw_of = _size_steps(tuple(params.coarse_std), turns=2, with_mean=True)
    lw = np.stack([mean[:, None, 1] + step_l * std[:, None, 1], mean[:, None, 0] + step_w * std[:, None, 0]], -1)
    cand_lw = np.concatenate([sizes[:, None, :2], lw], axis=1)
    cand_yaws = wrap_angle(yaws[:, None] + np.array([0.0, 0.5 * np.pi]))  # (B, 2): the candidates' distinct yaws
    yaw_of = np.r_[0, yaw_of]
    unseen = _unseen_lengths(cand_yaws, problem, mean[:, 1], params.unseen_length_fraction)[:, yaw_of]
    cand_lw[..., 0] = np.where(unseen, mean[:, None, 1], cand_lw[..., 0])
    centers, sizes, yaws = _best_placed(centers, sizes, cand_lw, cand_yaws, yaw_of, problem, params)
    # Round 2: a finer grid around the winner (whose length stays the mean where its length is not seen).
    step_l, step_w, yaw_of = _size_steps(tuple(params.fine_std), turns=1, with_mean=False)
    unseen = _unseen_lengths(yaws[:, None], problem, mean[:, 1], params.unseen_length_fraction)
    cand_lw = np.stack([sizes[:, None, 0] + np.where(unseen, 0.0, step_l * std[:, None, 1]),
                        sizes[:, None, 1] + step_w * std[:, None, 0]], -1)
    return _best_placed(centers, sizes, np.maximum(cand_lw, 0.05), yaws[:, None], yaw_of, problem, params)


@functools.cache
def _size_steps(stds: tuple[float, ...], turns: int, with_mean: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (length, width) steps (G,) each [prior std] of the grid stds x stds (length-major), followed by the mean's
    (0, 0) step where with_mean, once per turn, and each step's turn (G,) (the index of its yaw). Read-only, cached
    per grid: numpy's grid helpers cost ~40 us per fit."""
    stds = np.asarray(stds, dtype=np.float64)
    step_l, step_w = np.repeat(stds, len(stds)), np.tile(stds, len(stds))
    if with_mean:
        step_l, step_w = np.append(step_l, 0.0), np.append(step_w, 0.0)
    grid = (np.tile(step_l, turns), np.tile(step_w, turns), np.repeat(np.arange(turns), len(step_l)))
    for values in grid:
        values.flags.writeable = False
    return grid


def _unseen_lengths(yaws: np.ndarray, problem: FitProblem, mean_length: np.ndarray, fraction: float) -> np.ndarray:
    """(B, Y) whether box b's segment spans less than fraction x its class's mean length (B,) [m] along the length
    axis of a candidate at yaw yaws[b, y] (LiDAR frame [rad]), for boxes with problem.length_prior: the segment's
    extent along its footprint heading, or across it, whichever that axis is (False without a heading)."""
    along = problem.extremes[:, 1] - problem.extremes[:, 0]
    across = problem.extremes[:, 3] - problem.extremes[:, 2]
    extent = np.where(_length_along_heading(yaws, problem.heading[:, None]), along[:, None], across[:, None])
    with np.errstate(invalid="ignore"):  # NaN: no heading
        return problem.length_prior[:, None] & (extent < fraction * mean_length[:, None])


def _length_along_heading(yaws: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Whether boxes at yaws [rad] have their length along the segment's footprint heading (heading [rad],
    broadcastable) rather than across it: the nearer of the two axes."""
    return np.abs(np.cos(yaws - heading)) >= np.abs(np.sin(yaws - heading))


def _best_placed(centers, sizes, cand_lw, yaws, yaw_of, problem, params):
    """The best centre (B, 3), size (B, 3) and yaw (B,) of candidate footprints cand_lw (B, C, 2) [l, w] at yaws
    yaws[:, yaw_of] ((B, Y): the distinct yaws of each box's candidates; yaw_of (C,)), each placed by the 2D box
    edges and slid to the segment's nearest depth (or onto its flat face, or against its extremes: the module
    docstring). What depends on the yaw alone (headings in the camera frame, cos and sin) is computed once per
    distinct yaw. Rows are gathered by the take and repeat methods (np.take, np.repeat add ~0.5-1 us a call):
    numpy's fancy indexing of (N, 3) or (N, 4) rows, or by a boolean mask, costs 3-6x more."""
    n, n_cand = cand_lw.shape[:2]
    rows = np.arange(n).repeat(n_cand)
    cand_sizes = sizes.repeat(n_cand, axis=0)
    cand_sizes[:, :2] = cand_lw.reshape(-1, 2)
    R, t = problem.T_cam_lidar[:, :3, :3], problem.T_cam_lidar[:, :3, 3]  # per box
    yaws = yaws.ravel()
    ry = yaw_to_ry(yaws, R.repeat(len(yaws) // n, axis=0))
    yaw_index = rows * (len(yaws) // n) + np.tile(yaw_of, n)  # each candidate's entry in yaws and ry
    cand_yaws, cand_ry = yaws[yaw_index], ry[yaw_index]
    bottom = _bottom_corners(cand_sizes, cand_ry, (np.cos(ry)[yaw_index], np.sin(ry)[yaw_index]))
    placed = _place((np.einsum("nij,nj->ni", R, centers) + t).repeat(n_cand, axis=0), bottom,
                    problem.edge_system.repeat(n_cand), iterations=1)
    # Each placed candidate then moves in up to four ways, each (boxes, centres of their candidates, which of these
    # are scored): slid to the segment's nearest depth (every box); slid onto the flat face (flat faces seen between
    # both image edges); held nearer (boxes whose near end may be hidden); put against the segment's extremes (boxes
    # cut by the left or right image border).
    slide_scale = _slide_scale(placed, bottom[2].min(axis=0), problem.nearest_depth[rows])
    moves = [(np.arange(n), placed * slide_scale[:, None], True)]
    face_box, points_cam, valid_cam = problem.face_slide
    if len(face_box):
        face = _candidate_rows(face_box, n_cand)
        moves.append((face_box, _slide_to_face(placed.take(face, axis=0), cand_sizes.take(face, axis=0),
                                               cand_ry[face], points_cam.repeat(n_cand, axis=0),
                                               valid_cam.repeat(n_cand, axis=0)),
                      True))
    hidden_box = np.flatnonzero(problem.near_end_hidden)
    if len(hidden_box):
        hidden = _candidate_rows(hidden_box, n_cand)
        # held where the slide put it (slide_scale <= 1) it duplicates its slid candidate: not scored again (its
        # score would tie, and the first best wins)
        moves.append((hidden_box, _hold_nearest(placed.take(hidden, axis=0), slide_scale[hidden]),
                      (slide_scale[hidden] > 1.0).reshape(-1, n_cand)))
    cut_box, height_span = problem.cut_heights
    if len(cut_box):
        cut = _candidate_rows(cut_box, n_cand)
        moves.append((cut_box, _against_extremes(placed.take(cut, axis=0), cand_sizes.take(cut, axis=0),
                                                 cand_yaws[cut], problem.heading[cut_box].repeat(n_cand),
                                                 problem.extremes[cut_box].repeat(n_cand, axis=0),
                                                 height_span.repeat(n_cand, axis=0),
                                                 R[cut_box].repeat(n_cand, axis=0),
                                                 t[cut_box].repeat(n_cand, axis=0),
                                                 problem.flat_face[cut_box].repeat(n_cand),
                                                 problem.ground_z[cut_box].repeat(n_cand), params.standing_span),
                      True))
    # Per box its scored candidates, move by move (the first best wins a tie), box after box: the candidates of a box
    # lie together (gather_groups).
    scored = np.zeros((n, len(moves), n_cand), dtype=bool)
    table = np.empty((n, len(moves), n_cand, 3))
    for k, (boxes, centres, kept) in enumerate(moves):
        scored[boxes, k] = kept
        table[boxes, k] = centres.reshape(-1, n_cand, 3)
    entry = np.flatnonzero(scored)  # the scored candidates' entries in the table, (M,)
    centers_cam = table.reshape(-1, 3).take(entry, axis=0)
    every = entry // (len(moves) * n_cand) * n_cand + entry % n_cand  # their rows among the placed candidates
    box = rows[every]
    cand_centers = np.einsum("nji,nj->ni", R.take(box, axis=0), centers_cam - t.take(box, axis=0))
    lidar_yaw = yaw_index[every]
    score = _score(cand_centers, centers_cam, tuple(c.take(every, axis=1) for c in bottom),
                   cand_sizes.take(every, axis=0), problem, box, (np.cos(yaws)[lidar_yaw], np.sin(yaws)[lidar_yaw]),
                   params)
    slot = np.cumsum(scored.reshape(n, -1)).reshape(n, -1) - 1  # each table entry's row in `every`
    pick = slot[np.arange(n), np.argmax(np.where(scored.reshape(n, -1), score[slot], -np.inf), axis=1)]
    return cand_centers[pick], cand_sizes[every[pick]], yaws[lidar_yaw[pick]]


def _candidate_rows(boxes: np.ndarray, n_cand: int) -> np.ndarray:
    """The rows (len(boxes) * n_cand,) of the candidates of boxes among _best_placed's, box by box."""
    return (boxes[:, None] * n_cand + np.arange(n_cand)[None, :]).ravel()


def _against_extremes(center_cam, size_lwh, yaws, heading, extremes, height_span, R, t, flat_face, ground_z,
                      standing_span: float) -> np.ndarray:
    """Centres (N, 3) (camera frame; R (N, 3, 3), t (N, 3) map the LiDAR frame to it) of boxes (sizes (N, 3), yaws
    (N,) in the LiDAR frame) moved in x, y so that along each axis of their segment's footprint (heading (N,) [rad];
    extremes (N, 4) [m], FitProblem) the box's side facing the sensor (the LiDAR origin) lies on the segment's
    extreme: the LiDAR sees the near sides of an object, its far sides lie a box length beyond. Where the sensor
    stands beside the segment along an axis (a car parked next to the ego), the box is centred on it there, and so
    is a flat face's (flat_face (N,)) along its long axis: a barrier's segment then spans its whole length (core.lift3d
    grows it by its other camera's segment), and its length is not known better than the prior's (the 2D box of
    the cut part does not show it). A flat face's box is also moved in z, the least distance that makes it hold its
    segment's height span (height_span (N, 2): least and greatest z [m, LiDAR frame]; a box lower than the span is
    centred on it): placed by the cut 2D box's rows along the ray, a barrier behind the ego's side stood 0.3-1.1 m
    low, with few or none of its returns inside it, and the other camera's worse box of it won the merge. Any other
    box whose segment spans at least standing_span x its length along its long axis stands on the ground under the
    segment where that is known (ground_z (N,): LiDAR frame z [m], NaN where unknown; core.lift3d gives it only to
    boxes whose height the LiDAR bounds, whose roof it saw): moved in x, y from where the rows of its cut 2D box
    placed it, a car beside the ego kept a centre 0.2-0.25 m too high or low, its projection missed its 2D box,
    and the same car turned by a quarter turn could win.

    A box cut by the image's left or right border has no 2D edge there, and the KM3D placement and the slide to the
    nearest depth place it along the ray only: a near car spanning two cameras was fitted where the 2D box edge
    of one camera's part and the nearest return put it, 1-2 m along its length from where its points are."""
    lidar = np.einsum("nji,nj->ni", R, center_cam - t)
    length_along = _length_along_heading(yaws, heading)
    half = 0.5 * np.stack([np.where(length_along, size_lwh[:, 0], size_lwh[:, 1]),
                           np.where(length_along, size_lwh[:, 1], size_lwh[:, 0])], axis=1)  # along, across
    low, high = extremes[:, 0::2], extremes[:, 1::2]
    centre = np.where(low > 0, low + half, np.where(high < 0, high - half, 0.5 * (low + high)))
    long_axis = np.argmax(half, axis=1)  # the footprint axis of each box's length
    face = np.flatnonzero(flat_face)
    centre[face, long_axis[face]] = 0.5 * (low[face, long_axis[face]] + high[face, long_axis[face]])
    c, s = np.cos(heading), np.sin(heading)
    lidar[:, 0] = centre[:, 0] * c - centre[:, 1] * s
    lidar[:, 1] = centre[:, 0] * s + centre[:, 1] * c
    rows = np.arange(len(half))
    span = high[rows, long_axis] - low[rows, long_axis]
    standing = np.flatnonzero(~flat_face & np.isfinite(ground_z) & (span >= standing_span * 2 * half[rows, long_axis]))
    lidar[standing, 2] = ground_z[standing] + 0.5 * size_lwh[standing, 2]
    half_height = 0.5 * size_lwh[face, 2]
    # the least and greatest centre height of a box holding the span
    z_low, z_high = height_span[face, 1] - half_height, height_span[face, 0] + half_height
    lidar[face, 2] = np.where(z_low <= z_high, np.clip(lidar[face, 2], z_low, np.maximum(z_low, z_high)),
                              height_span[face].mean(axis=1))
    return np.einsum("nij,nj->ni", R, lidar) + t


def _slide_to_face(center_cam, size_lwh, ry, points_cam, valid, min_incidence: float = 0.1) -> np.ndarray:
    """Centres (N, 3) moved along their camera rays so that each box's long face towards the camera lies at the
    median of its points (N, K, 3) along that face's normal (camera frame [m], valid (N, K)).

    Seen at a grazing angle, a long face holds few returns far apart (0.6-0.8 m in depth at 20-30 m): its nearest
    one need not be near the box's nearest corner, but all of them lie on the face. The box's position along the
    face then comes from the 2D box's left and right edges (the centre's ray). Where the face is seen nearly edge-on
    (|cos| of the angle between its normal and the ray below `min_incidence`), the centre is kept."""
    long_is_l = size_lwh[:, 0] >= size_lwh[:, 1]
    # Footprint axes in the camera x-z plane (keypoint_offset_components): l along (cos ry, -sin ry), w along
    # (sin ry, cos ry); the long face's normal is the short axis.
    c, s = np.cos(ry), np.sin(ry)
    nx, nz = np.where(long_is_l, s, c), np.where(long_is_l, c, -s)
    half = 0.5 * np.minimum(size_lwh[:, 0], size_lwh[:, 1])
    along = center_cam[:, 0] * nx + center_cam[:, 2] * nz
    flip = np.where(along > 0, -1.0, 1.0)  # the normal towards the camera
    nx, nz, along = nx * flip, nz * flip, along * flip
    coord = np.where(valid, points_cam[..., 0] * nx[:, None] + points_cam[..., 2] * nz[:, None], np.inf)
    count = valid.sum(axis=1)
    face = np.take_along_axis(np.sort(coord, axis=1), (np.maximum(count, 1)[:, None] - 1) // 2, axis=1)[:, 0]
    ok = (count > 0) & (-along > min_incidence * np.hypot(center_cam[:, 0], center_cam[:, 2]))
    scale = np.where(ok, (face - half) / np.where(ok, along, -1.0), 1.0)
    return center_cam * np.where(scale > 0, scale, 1.0)[:, None]


def place_by_box_edges(center_cam, size_lwh, ry, boxes_norm, on_border, iterations: int = 2,
                       max_move_fraction: float = 0.15) -> np.ndarray:
    """KM3D least-squares centres (N, 3) (camera frame) of boxes of fixed size (N, 3) and heading ry (N,) from the
    four 2D box edges (N, 4) (normalised image coordinates), each tied to the extreme projected corner of the
    current centre; edges flagged `on_border` (N, 4: left, right, top, bottom) are not used.

    These are the rows of core.km3d.solve_location that carry weight, solved directly: an edge at column u on
    corner offset d gives [-1, 0, u] . C = d_x - u d_z, an edge at row v gives [0, -1, v] . C = d_y - v d_z.
    A solution further than `max_move_fraction` x depth from the start is rejected (the start is kept).
    """
    return _place(np.asarray(center_cam, dtype=np.float64), _bottom_corners(size_lwh, ry),
                  _EdgeSystem.of(boxes_norm, on_border), iterations, max_move_fraction)


class _EdgeSystem(NamedTuple):
    """What `_place`'s normal equations take from the 2D box edges alone (not from the corners the edges are tied
    to), per box: they have the form [[A, 0, -B], [0, C, -D], [-B, -D, E]] C = r (A, B from the column edges, C, D
    from the row edges) and are solved by the Schur complement of the 2 x 2 diagonal block.

    Attributes:
        edges: (4, N) left, right, top, bottom (normalised image coordinates); weight: (4, N) 0 on the image border.
        a, c, b, d: (N,) A, C, B, D; schur: (N,) E - B^2 / A - D^2 / C; solvable: (N,) the normalised matrix's
            determinant is not ~0.
    """

    edges: np.ndarray
    weight: np.ndarray
    a: np.ndarray
    c: np.ndarray
    b: np.ndarray
    d: np.ndarray
    schur: np.ndarray
    solvable: np.ndarray

    @classmethod
    def of(cls, boxes_norm, on_border) -> _EdgeSystem:
        """The system of 2D boxes (N, 4) xyxy with on_border (N, 4) (left, right, top, bottom); the four edges' terms
        summed edge by edge from 0 in edge order."""
        edges = np.ascontiguousarray(boxes_norm[:, [0, 2, 1, 3]].T)  # (4, N): left, right, top, bottom
        weight = (~np.asarray(on_border, dtype=bool)).T.astype(np.float64)  # (4, N): as `edges`
        weighted = weight * edges
        a, cc = weight[0] + weight[1], weight[2] + weight[3]  # A, C
        b, dd = (0.0 + weighted[0]) + weighted[1], (0.0 + weighted[2]) + weighted[3]  # B, D
        corner_term = (((0.0 + weighted[0] * edges[0]) + weighted[1] * edges[1]) + weighted[2] * edges[2]
                       + weighted[3] * edges[3])  # E
        scale = np.maximum(np.maximum(np.maximum(a, cc), np.maximum(np.abs(b), np.abs(dd))), corner_term)
        scale = np.maximum(scale, 1e-300)
        na, nc, nb, nd, ne = a / scale, cc / scale, b / scale, dd / scale, corner_term / scale
        solvable = np.abs(na * nc * ne - na * nd * nd - nc * nb * nb) > 1e-12  # det of the normalised matrix
        with np.errstate(divide="ignore", invalid="ignore"):
            schur = corner_term - b * b / a - dd * dd / cc
        return cls(edges, weight, a, cc, b, dd, schur, solvable)

    def repeat(self, count: int) -> _EdgeSystem:
        """Each box's system `count` times in a row (the candidates of a box together)."""
        return _EdgeSystem(*(term.repeat(count, axis=-1) for term in self))


def _place(center_cam, bottom, system: _EdgeSystem, iterations: int = 2,
           max_move_fraction: float = 0.15) -> np.ndarray:
    """`place_by_box_edges` with the boxes' corner offsets (`_bottom_corners`) and edge system (`_EdgeSystem`)
    given: the equations are solved in closed form, all boxes at once, not by a 3 x 3 solver per box; only r is
    computed per iteration, the four edges' terms together, (4, N), summed edge by edge from 0 in edge order."""
    n = len(center_cam)
    edges, weight, a, cc, b, dd, schur, solvable = system
    center = center_cam.copy()
    columns = np.arange(n)
    off_x, off_y, off_z = bottom
    reach = max_move_fraction * center_cam[:, 2]
    for _ in range(iterations):
        u, v, _ = _projected_corners(center, bottom)
        u, v = np.ascontiguousarray(u.T), np.ascontiguousarray(v.T)  # argmin along rows of 4 or 8: ~2x faster
        corner = np.array([u.argmin(1), u.argmax(1), v.argmin(1), v.argmax(1)])  # u's bottom corners, v's keypoints
        at = (corner % 4) * n + columns  # the extreme bottom corners' entries in off_x, off_y, off_z
        offset = np.concatenate([off_x.take(at[:2]), np.where(corner[2:] < 4, 1.0, -1.0) * off_y.take(at[2:])])
        t = weight * (offset - edges * off_z.take(at))
        tc = t * edges
        rhs0, rhs1 = (0.0 - t[0]) - t[1], (0.0 - t[2]) - t[3]
        rhs2 = (((0.0 + tc[0]) + tc[1]) + tc[2]) + tc[3]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (rhs2 + b * rhs0 / a + dd * rhs1 / cc) / schur
            solved = np.array([(rhs0 + b * z) / a, (rhs1 + dd * z) / cc, z])  # (3, N)
        np.copyto(solved, np.nan, where=~solvable)
        # Keep the start where the edges do not pin the box down (near-degenerate geometry moves it far away).
        step = solved - center_cam.T
        moved = np.sqrt((step[0] * step[0] + step[1] * step[1]) + step[2] * step[2])  # np.linalg.norm's floats
        ok = np.isfinite(moved) & (solved[2] > 0.5) & (moved <= reach)
        np.copyto(center, solved.T, where=ok[:, None])
    return center


def slide_to_depth(center_cam, size_lwh, ry, nearest_depth) -> np.ndarray:
    """Centres moved along their camera rays so that each box's nearest corner lies at `nearest_depth` [m]."""
    return center_cam * _slide_scale(center_cam, _nearest_corner_z(size_lwh, ry), nearest_depth)[:, None]


def _nearest_corner_z(size_lwh: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Camera depth offset (N,) [m] of the nearest corner of boxes of sizes (N, 3) and headings ry (N,) from their
    centres: the least of the bottom corners' +-A +- B (A = l/2 sin ry, B = w/2 cos ry, keypoint_offset_components),
    -(|A| + |B|), the same float (the signs flip exactly and rounding is monotone) without the (4, N) corners: a
    quarter of the time."""
    half = np.asarray(size_lwh, dtype=np.float64).reshape(-1, 3) / 2
    ry = np.asarray(ry, dtype=np.float64).reshape(-1)
    return -(np.abs(half[:, 0] * np.sin(ry)) + np.abs(half[:, 1] * np.cos(ry)))


def _hold_nearest(center_cam, slide_scale) -> np.ndarray:
    """Centres (N, 3) (camera frame [m]) kept where the 2D box edges put them, or slid nearer along their rays
    where the box's nearest corner lies behind its nearest return (slide_scale (N,) < 1, `_slide_scale`): the box
    may start before its nearest return (its near end hidden behind a nearer object), not after it. A car parked
    0.75 m behind a bus beside the ego showed its side from 1 m behind its front; slid to put its nearest corner at
    its nearest return it was 0.7-0.9 m back along its length."""
    return center_cam * np.minimum(slide_scale, 1.0)[:, None]


def _slide_scale(center_cam, nearest_z, nearest_depth) -> np.ndarray:
    """Factors (N,) that scale centres (N, 3) along their camera rays to put each box's nearest corner (depth offset
    nearest_z (N,) [m] from the centre) at nearest_depth (N,) [m]."""
    return (nearest_depth - nearest_z) / center_cam[:, 2]
