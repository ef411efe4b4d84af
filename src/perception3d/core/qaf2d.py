"""QAF2D anchor lifting: turn 2D boxes into a few 3D boxes whose projections fit them (methods.md section 1).

For each 2D box (x0, y0, x1, y1) of class c in one camera:
1. depth candidates d = 3.0 .. 102.0 m in 1.5 m steps; the box's vertical edge lifted at depth d has height
   h = d (y1 - y0) / fy, and only depths whose h lies in the class's height range are kept (this prunes most);
2. the left edge (u = x0) and then the right edge (u = x1) are each taken as a vertical edge of the 3D box:
   top = d K^-1 [u, y0, 1], bottom = d K^-1 [u, y1, 1];
3. for each heading theta = k pi/12 (k = 0..23, rotation about camera y) and each (w, l) of the class grid
   (arange(min, max + 0.5, 0.5) each, Cartesian product), the width side goes to +w (-sin t, 0, -cos t) and the
   far face to +l (cos t, 0, -sin t); the anchor centre is the mean of the 8 corners. Fix: the mirror placement
   (width side to -w (-sin t, 0, -cos t)) is enumerated too. The release's placement alone covers only two of
   the four quadrants a box can occupy from its edge for a given heading axis, so about half of all real
   boxes could only be matched with length and width swapped (which the class size grids then reject);
4. the 8 corners are projected; candidates with a corner at z <= 0.1 m are rejected; the min/max box of the
   projection and the detection box are both clipped to the image and their IoU must exceed `iou_threshold`
   (0.98 reproduces the paper; 0.9 suits noisy boxes); the best `top_k` per 2D box are kept.

Speed: all boxes (of any number of cameras and classes, `lift_boxes_multi`) are searched in one vectorised pass
(every class's size grid cut into chunks of SIZE_CHUNK sizes, one search column per lifted edge and chunk) in
normalised image coordinates and float32 (the kept anchors' boxes are rebuilt in float64; their IoU is the
search's), and candidates whose lifted edge is not the extreme corner on its side of their own box are dropped
before the sizes are expanded (they cannot produce the edge they were lifted from; edges on the image border are
exempt). Where a box's candidate rows (edge, depth, placement) are many (a search over the whole depth range), its
best-bounded rows are searched first, and a row whose IoU bound (its projected box's height against the 2D box's,
`_height_bound`) lies below the box's top_k-th IoU found is not searched: the same anchors from a third of the rows.

The heading convention is the same as core.km3d (`ry`): the box length axis points along (cos t, 0, -sin t) in
the camera frame. Output boxes are expressed in a target frame (e.g. LIDAR_TOP) through T_target_cam; the yaw is
the target-frame heading of that axis (`km3d.ry_to_yaw`), not a convention-specific formula.

Class size table: the QAF2D release's ranges. Trailer gets its own row from the nuScenes size prior
(mean +- 2 std of w, l, h): the release's trailer branch never runs (a string comparison bug) and falls through
to the generic 'other' row, which is used here only for class names outside the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .camera import MIN_DEPTH_M, CameraModel
from .classes import SIZE_PRIOR_WLH
from .km3d import keypoint_offset_components, ry_to_yaw
from .sorted_runs import run_starts

DEPTH_CANDIDATES_M = 1.5 * np.arange(2, 69)  # 3.0 .. 102.0 m, 67 values
YAW_CANDIDATES = np.arange(24) * np.pi / 12  # 15 degree steps
SIZE_STEP_M = 0.5


@dataclass(frozen=True)
class SizeRange:
    """Per-class size search space [m]: w and l are enumerated on a 0.5 m grid, h is a filter range only."""

    width: tuple[float, float]
    length: tuple[float, float]
    height: tuple[float, float]

    def size_grid(self) -> np.ndarray:
        """(S, 2) array of (w, l) candidates: Cartesian product of arange(min, max + 0.5, 0.5) for w and l."""
        return _size_grid(self.width, self.length).copy()


@lru_cache(maxsize=32)
def _size_grid(width: tuple[float, float], length: tuple[float, float]) -> np.ndarray:
    ww, ll = np.meshgrid(_grid(*width), _grid(*length), indexing="ij")
    return np.stack([ww.ravel(), ll.ravel()], axis=1)


def _grid(lo: float, hi: float) -> np.ndarray:
    """lo, lo + 0.5, ... up to hi inclusive (counted, so float round-off never adds or drops a value)."""
    count = int(np.floor((hi - lo) / SIZE_STEP_M + 1e-6)) + 1
    return lo + SIZE_STEP_M * np.arange(count)


def _prior_range(name: str, n_std: float = 2.0) -> SizeRange:
    mean, std = (np.asarray(v) for v in SIZE_PRIOR_WLH[name])
    lo, hi = np.round(mean - n_std * std, 2), np.round(mean + n_std * std, 2)
    return SizeRange((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), (float(lo[2]), float(hi[2])))


SIZE_RANGES: dict[str, SizeRange] = {
    "car": SizeRange((1.45, 2.95), (3.45, 6.95), (1.25, 3.25)),
    "pedestrian": SizeRange((0.34, 1.34), (0.33, 1.33), (1.15, 2.65)),
    "bus": SizeRange((2.55, 3.55), (6.9, 13.9), (2.8, 4.8)),
    "truck": SizeRange((1.7, 3.2), (1.78, 14.28), (1.7, 4.2)),
    "construction_vehicle": SizeRange((2.11, 3.61), (3.71, 7.71), (2.03, 3.03)),
    "motorcycle": SizeRange((0.47, 1.47), (1.25, 2.75), (1.18, 2.18)),
    "bicycle": SizeRange((0.43, 0.93), (1.33, 2.33), (0.95, 1.95)),
    "traffic_cone": SizeRange((0.21, 1.71), (0.30, 0.80), (0.51, 1.51)),
    "barrier": SizeRange((1.73, 3.73), (0.39, 0.89), (0.88, 1.38)),
    "trailer": _prior_range("trailer"),
}
GENERIC_SIZE_RANGE = SizeRange((0.21, 3.71), (0.30, 14.30), (0.51, 5.01))


def size_range(class_id: str) -> SizeRange:
    """The size search space of a class name (the generic row for names outside the table)."""
    return SIZE_RANGES.get(class_id, GENERIC_SIZE_RANGE)


@dataclass
class Anchors:
    """M 3D anchors lifted from 2D boxes.

    Attributes:
        box_index: (M,) index of the source 2D box; anchors of one box are consecutive, best IoU first.
        centers: (M, 3) centres in the target frame [m].
        sizes_lwh: (M, 3) (l, w, h) [m].
        yaws: (M,) rotation about +z of the target frame [rad].
        ious: (M,) IoU of the clipped projected box with the clipped 2D box.
        centers_cam: (M, 3) centres in the camera frame [m].
        ry: (M,) heading about camera y (core.km3d convention) [rad].
    """

    box_index: np.ndarray
    centers: np.ndarray
    sizes_lwh: np.ndarray
    yaws: np.ndarray
    ious: np.ndarray
    centers_cam: np.ndarray
    ry: np.ndarray

    def __len__(self) -> int:
        return len(self.box_index)


def lift_boxes(boxes_xyxy: np.ndarray, class_ids, camera: CameraModel, T_target_cam: np.ndarray,
               iou_threshold: float = 0.9, top_k: int = 3,
               depth_windows: np.ndarray | None = None, yaw_masks: np.ndarray | None = None,
               top_k_per_yaw: bool = False) -> Anchors:
    """QAF2D anchors for the 2D boxes of one camera, in the frame of T_target_cam.

    Args:
        boxes_xyxy: (B, 4) pixel boxes in the image `camera.K` refers to (rescale detector boxes first).
        class_ids: (B,) class names (size table rows); unknown names use the generic row.
        camera: the camera model (K, width, height).
        T_target_cam: 4x4 transform from the camera's optical frame to the output frame.
        iou_threshold: keep candidates whose clipped projected-box IoU is strictly above this (scalar or (B,)).
        top_k: at most this many anchors per 2D box (highest IoU first), or per box and heading candidate when
            `top_k_per_yaw` (so that every heading tried stays represented).
        depth_windows: optional [min, max] edge depth [m] to prune candidates (e.g. from LiDAR): (B, 2) for
            both vertical edges of a box or (B, 2, 2) per edge (left, right); NaN means no bound.
        yaw_masks: optional (B, 24) bool: which of YAW_CANDIDATES to try per box (e.g. near a LiDAR heading).
    Returns:
        Anchors, grouped by box index (ascending), best IoU first within a box.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return lift_boxes_multi(boxes, class_ids, np.zeros(len(boxes), dtype=np.int64), [camera], [T_target_cam],
                            iou_threshold, top_k, depth_windows, yaw_masks, top_k_per_yaw)


def lift_boxes_multi(boxes_xyxy: np.ndarray, class_ids, camera_index: np.ndarray, cameras, T_target_cams,
                     iou_threshold: float = 0.9, top_k: int = 3,
                     depth_windows: np.ndarray | None = None, yaw_masks: np.ndarray | None = None,
                     top_k_per_yaw: bool = False) -> Anchors:
    """`lift_boxes` for the boxes of several cameras at once (box b belongs to cameras[camera_index[b]], whose
    optical frame maps to the output frame by T_target_cams[camera_index[b]]); one pass for all."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    class_names = [str(c) for c in np.asarray(list(class_ids), dtype=object).reshape(n).tolist()]
    cam = np.asarray(camera_index, dtype=np.int64).reshape(n)
    T_cams = np.array([np.asarray(t, dtype=np.float64) for t in T_target_cams]).reshape(-1, 4, 4)
    # Normalised image coordinates (x/z, y/z) per box: the search below is then camera independent.
    norm, clipped, limits = normalise_boxes(boxes, cam, cameras)
    windows = None if depth_windows is None else np.asarray(depth_windows, dtype=np.float64)
    yaws = None if yaw_masks is None else np.asarray(yaw_masks, dtype=bool).reshape(n, -1)
    thresholds = np.broadcast_to(np.asarray(iou_threshold, dtype=np.float64), (n,))
    # The boxes of each class made consecutive (classes in name order, so that a set of classes always gets the
    # same cached search layout), searched in one pass.
    names = sorted(set(class_names))
    class_of = np.array([names.index(name) for name in class_names], dtype=np.int64)
    perm = np.argsort(class_of, kind="stable")
    merged = None if n == 0 else _lift_classes(
        norm[perm], clipped[perm], limits[perm], [size_range(name) for name in names],
        np.bincount(class_of), thresholds[perm], top_k, None if windows is None else windows[perm],
        None if yaws is None else yaws[perm], top_k_per_yaw, perm)
    if merged is None:
        return Anchors(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                       np.zeros(0), np.zeros((0, 3)), np.zeros(0))
    box_cam = cam[merged["box_index"]]
    T_anchor = T_cams[box_cam]
    return Anchors(
        box_index=merged["box_index"],
        centers=np.einsum("nij,nj->ni", T_anchor[:, :3, :3], merged["center_cam"]) + T_anchor[:, :3, 3],
        sizes_lwh=merged["size_lwh"],
        yaws=_placement_yaws(T_cams)[box_cam, merged["placement"]],
        ious=merged["iou"],
        centers_cam=merged["center_cam"],
        ry=_THETA[merged["placement"]],
    )


def _placement_yaws(T_target_cams: np.ndarray) -> np.ndarray:
    """(N, 48) yaw [rad] in the target frame of each placement's heading _THETA[k] seen from each of N cameras
    (T_target_cams (N, 4, 4)): `ry_to_yaw` once per camera and placement instead of once per anchor, with the
    same per-row arithmetic (a quarter of the time)."""
    n = len(T_target_cams)
    return ry_to_yaw(np.tile(_THETA, n), np.repeat(T_target_cams, len(_THETA), axis=0)[:, :3, :3]).reshape(n, -1)


def normalise_boxes(boxes_xyxy: np.ndarray, camera_index: np.ndarray,
                    cameras) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel boxes (B, 4) of cameras[camera_index[b]] in normalised image coordinates ((u - cx) / fx,
    (v - cy) / fy): the boxes, the boxes clipped to their image, and each image's rectangle, all (B, 4)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    cam = np.asarray(camera_index, dtype=np.int64).reshape(len(boxes))
    K = np.array([c.K for c in cameras]).reshape(-1, 3, 3)[cam]
    size_px = np.array([[c.width, c.height] for c in cameras], dtype=np.float64).reshape(-1, 2)[cam]
    offset = np.stack([K[:, 0, 2], K[:, 1, 2]] * 2, axis=1)
    scale = np.stack([K[:, 0, 0], K[:, 1, 1]] * 2, axis=1)
    norm = (boxes - offset) / scale
    limits = (np.hstack([np.zeros((len(boxes), 2)), size_px]) - offset) / scale
    clipped = np.minimum(np.maximum(norm, limits[:, [0, 1, 0, 1]]), limits[:, [2, 3, 2, 3]])
    return norm, clipped, limits


def _lift_classes(norm: np.ndarray, clipped: np.ndarray, limits: np.ndarray, ranges: list[SizeRange],
                  counts: np.ndarray, iou_threshold: np.ndarray, top_k: int, windows: np.ndarray | None,
                  yaw_masks: np.ndarray | None, top_k_per_yaw: bool,
                  box_ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """Candidates of boxes grouped by size range (the first counts[0] boxes use ranges[0], the next counts[1]
    ranges[1], ...); returns the kept anchors or None: box_index (box_ids of their boxes), center_cam, size_lwh,
    placement (0..47) and iou, ordered by box id, then IoU descending.

    Boxes are in normalised image coordinates (x/z, y/z): `norm` (B, 4) as detected, `clipped` (B, 4) clipped to
    the image, `limits` (B, 4) the image rectangle. IoU is invariant to the per-axis scaling by fx, fy.
    """
    depths = DEPTH_CANDIDATES_M
    n_box, n_depth, n_yaw = len(norm), len(depths), len(YAW_CANDIDATES)
    edge_height = depths[None, :] * (norm[:, 3] - norm[:, 1])[:, None]  # (B, D) [m]
    height = np.repeat([r.height for r in ranges], counts, axis=0)  # (B, min/max) [m]
    keep = (edge_height >= height[:, 0:1]) & (edge_height <= height[:, 1:2])
    keep = np.repeat(keep[:, None, :], 2, axis=1)  # (B, edge, D): edge 0 = left (x0), 1 = right (x1)
    if windows is not None:
        w = windows if windows.ndim == 3 else np.repeat(windows[:, None, :], 2, axis=1)
        lo = np.where(np.isnan(w[..., 0]), -np.inf, w[..., 0])
        hi = np.where(np.isnan(w[..., 1]), np.inf, w[..., 1])
        keep &= (depths >= lo[..., None]) & (depths <= hi[..., None])
    # Placements: heading index k < 24 puts the width side at +w a(theta) (the release's placement), k >= 24 at
    # -w a(theta) (the mirror image, which the release cannot represent: without it half of all corner
    # configurations only fit with length and width swapped).
    placements = np.ones((n_box, 2 * n_yaw), dtype=bool) if yaw_masks is None else np.tile(yaw_masks, 2)
    # np.nonzero in flat form (the 2-D/3-D forms cost several times more): lifted edges (box, side, depth), then
    # candidate rows (edge, placement).
    edge_box, edge_rest = np.divmod(np.flatnonzero(keep), 2 * n_depth)
    edge_side, edge_depth = np.divmod(edge_rest, n_depth)
    edge_of_box = 2 * edge_box + edge_side  # into (B, side) arrays, flat
    edge_z = depths[edge_depth]  # [m]
    edge_x = edge_z * norm[:, [0, 2]].ravel()[edge_of_box]  # [m]
    # An edge on the image border is where the image ends, not the object: the box may reach past it.
    on_border = np.stack([norm[:, 0] <= limits[:, 0] + 1e-9, norm[:, 2] >= limits[:, 2] - 1e-9], axis=1)
    edge_on_border = on_border.ravel()[edge_of_box]
    row, pair_yaw = np.divmod(np.flatnonzero(placements[edge_box]), 2 * n_yaw)
    # The lifted edge must be the box's extreme corner on its side: both adjacent corners (at +side w a(theta)
    # and +l b(theta)) must project to its right for the left edge, to its left for the right edge. The test is
    # independent of w and l, so it prunes before the size expansion (about 3 of 4 placements fail it). This
    # is exact for the candidate's own edge; the release evaluates these inconsistent candidates too.
    z_e, x_e, pair_side = edge_z[row], edge_x[row], edge_side[row]
    sin_t, cos_t = _SIN[pair_yaw], _COS[pair_yaw]
    toward_side = _TOWARD_SIDE.ravel()[len(_THETA) * pair_side + pair_yaw]  # flat: half the time of [side, yaw]
    width_side = toward_side * (-sin_t * z_e + cos_t * x_e) >= 0
    length_side = _TOWARD[pair_side] * (cos_t * z_e + sin_t * x_e) >= 0
    consistent = np.flatnonzero((width_side & length_side) | edge_on_border[row])
    row, pair_yaw = row[consistent], pair_yaw[consistent]
    if len(row) == 0:
        return None
    # Candidates of one top-k group (box, or box and heading) made consecutive, in their enumeration order (the
    # boxes of a size range, hence their candidates, are consecutive too).
    pair_box = edge_box[row]
    row_group = pair_box * n_yaw + pair_yaw % n_yaw if top_k_per_yaw else pair_box
    order = np.argsort(row_group, kind="stable")
    row, pair_yaw, pair_box, row_group = row[order], pair_yaw[order], pair_box[order], row_group[order]
    d = edge_z[row]  # (P,)
    nb = norm[pair_box]  # (P, 4)
    edge_x = edge_x[row]  # (P,) x of the vertical edge [m]
    tables = _size_tables(tuple(ranges))
    row_range = np.repeat(np.arange(len(ranges)), counts)[pair_box]  # (P,) size range of each candidate row
    # Per box: image rectangle, clipped box, and the smallest float32 IoU above its float64 threshold.
    box = np.vstack([limits.T, clipped.T, np.nextafter(_float32_floor(iou_threshold), np.float32(np.inf))])
    p_i, s_i, kept_iou = _bounded_search(np.stack([edge_x, d, d * nb[:, 1], d * nb[:, 3]]), box.astype(np.float32),
                                         pair_box, pair_yaw, row_range, tables, row_group, top_k)
    if len(p_i) == 0:
        return None
    order = _top_k_per_group(row_group[p_i], kept_iou, top_k)  # by group, then IoU descending
    box_i = box_ids[pair_box[p_i[order]]]
    order = order[np.argsort(2.0 * box_i - kept_iou[order], kind="stable")]  # by box id, then IoU descending
    p_i, s_i, kept_iou = p_i[order], s_i[order], kept_iou[order]

    dd = d[p_i]
    yaw = pair_yaw[p_i]
    sin_t, cos_t = _SIN[yaw], _COS[yaw]
    ww, ll = tables.grid[s_i, 0], tables.grid[s_i, 1]
    side_w = _SIDE[yaw] * ww
    top_y = dd * nb[p_i, 1]
    bot_y = dd * nb[p_i, 3]
    center = np.stack([
        edge_x[p_i] + 0.5 * (-sin_t * side_w + cos_t * ll),
        0.5 * (top_y + bot_y),
        dd + 0.5 * (-cos_t * side_w - sin_t * ll),
    ], axis=1)
    size_lwh = np.stack([ll, ww, bot_y - top_y], axis=1)
    return {
        "box_index": box_ids[pair_box[p_i]],
        "center_cam": center,
        "size_lwh": size_lwh,
        "placement": yaw,
        "iou": kept_iou.astype(np.float64),  # the search's (float32: within 1e-6 of the float64 IoU)
    }


def _top_k_per_group(group: np.ndarray, iou: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the top_k candidates of each group, highest IoU first (ties in index order), groups ascending:
    `group` (N,) non-decreasing, `iou` (N,) float32 >= 0.

    top_k rounds of a per-group maximum of one int64 key per candidate (IoU bits, which order as the values for
    float32 >= 0, then the inverted index), each taking the best remaining candidate of every group: less than
    half the time of a stable sort of all candidates by group and IoU.
    """
    starts = run_starts(group)
    lengths = np.diff(starts, append=len(group))
    key = (iou.view(np.int32).astype(np.int64) << 32) | (0xFFFFFFFF - np.arange(len(group)))
    chosen = np.full((min(top_k, lengths.max(initial=0)), len(starts)), -1)  # (rank, group); none without candidates
    for rank, row in enumerate(chosen):
        has = lengths > rank
        row[has] = 0xFFFFFFFF - (np.maximum.reduceat(key, starts)[has] & 0xFFFFFFFF)
        key[row[has]] = -1
    chosen = chosen.T.ravel()
    return chosen[chosen >= 0]


def _bounded_search(edge: np.ndarray, box: np.ndarray, pair_box: np.ndarray, placement: np.ndarray,
                    row_range: np.ndarray, tables: _SizeTables, row_group: np.ndarray,
                    top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_search`'s result as far as the top_k candidates of each group of rows (row_group (P,), non-decreasing)
    go: the same candidates (rows, sizes, IoUs, ordered by row, then size) but those that a group's top_k already
    outrank. Rows whose `_height_bound` lies below the threshold are never searched; then the FIRST_ROWS rows of
    each group with the highest bounds are, and the others only where their bound reaches the group's top_k-th IoU
    among those (a row's candidates cannot have a higher IoU than its bound, so none of them could enter the top
    k). Groups of a few rows each (LiDAR depth windows and headings: ~2.5 rows a group on bench algo's frame) are
    searched whole, as the bounds would save less than they cost; the full-range search of boxes without LiDAR
    (more than 100 rows a group: the learned anchor rows) leaves two rows in three out."""
    if len(row_group) < BOUNDED_ROWS_PER_GROUP * len(run_starts(row_group)):
        return _search(edge, box, pair_box, placement, row_range, tables)
    bound = _height_bound(edge, box, pair_box, placement, row_range, tables)
    rows = np.flatnonzero(bound * (1.0 + _BOUND_SLACK) >= box[8].astype(np.float64).take(pair_box))
    group = row_group.take(rows)
    starts = run_starts(group)
    lengths = np.diff(np.append(starts, len(rows)))
    by_bound = rows.take(np.lexsort((-bound.take(rows), group)))  # groups in order, highest bound first
    rank = np.arange(len(rows)) - np.repeat(starts, lengths)
    first = np.sort(by_bound[rank < FIRST_ROWS])
    found = _rows_searched(first, edge, box, pair_box, placement, row_range, tables)
    # Each group's top_k-th IoU among its first rows' candidates (0 where they are fewer: the threshold bounds)
    group_of = np.searchsorted(group.take(starts), row_group.take(found[0]))  # into starts
    best = _top_k_per_group(group_of, found[2], top_k)  # by group, IoU descending
    best_starts = run_starts(group_of.take(best))
    full = np.diff(np.append(best_starts, len(best))) == top_k
    kth_best = best.take(best_starts[full] + top_k - 1)
    kth = np.zeros(len(starts))
    kth[group_of.take(kth_best)] = found[2].take(kth_best)
    reaches = bound.take(rows) * (1.0 + _BOUND_SLACK) >= np.repeat(kth, lengths)
    more = _rows_searched(np.setdiff1d(rows[reaches], first, assume_unique=True), edge, box, pair_box, placement,
                          row_range, tables)
    row, size, iou = (np.concatenate([a, b]) for a, b in zip(found, more))
    order = np.argsort(row * len(tables.grid) + size, kind="stable")
    return row.take(order), size.take(order), iou.take(order)


FIRST_ROWS = 16  # rows of each group searched before the others are bounded by their IoUs (`_bounded_search`)
BOUNDED_ROWS_PER_GROUP = 4 * FIRST_ROWS  # fewer rows a group on average: no bounds (`_bounded_search`)
_BOUND_SLACK = 1e-4  # a bound this much (relative) below a float32 IoU still counts as reaching it


def _rows_searched(rows: np.ndarray, edge: np.ndarray, box: np.ndarray, pair_box: np.ndarray,
                   placement: np.ndarray, row_range: np.ndarray,
                   tables: _SizeTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_search` of the candidate rows `rows` (sorted) alone, its rows given as indices into all rows."""
    row, size, iou = _search(edge.take(rows, axis=1), box, pair_box.take(rows), placement.take(rows),
                             row_range.take(rows), tables)
    return rows.take(row), size, iou


def _height_bound(edge: np.ndarray, box: np.ndarray, pair_box: np.ndarray, placement: np.ndarray,
                  row_range: np.ndarray, tables: _SizeTables) -> np.ndarray:
    """(P,) an upper bound of the IoU of every size of each candidate row (arguments as `_search`'s).

    The top corners of a candidate lie at the lifted edge's top row times its depth, k = d y0, and project to rows
    k / z; so do the bottom ones (k = d y1). The projected box's rows are then the 2D box's rows scaled about the
    horizon by d / z between its nearest and farthest corner, which include the edge itself (d / z = 1): the
    projected box holds the 2D box's rows, and clipped to the image it holds the clipped box's rows. Its IoU with
    the clipped box is then at most their heights' ratio. From the edge, the nearest corner lies
    min(0, a w) + min(0, b l) deeper and the farthest max(0, a w) + max(0, b l) (a = -side cos(theta),
    b = -sin(theta)): the smallest (w, l) of the row's size range gives the shortest projected box, hence a bound
    for all its sizes. 0 where that nearest corner is at z <= MIN_DEPTH_M (as every size's: IoU 0)."""
    _, d, k_top, k_bottom = edge
    first_size = tables.grid[tables.grid_start[row_range]]  # the range's (w, l) grid starts at its smallest
    theta = _THETA[placement]
    a, b = -_SIDE[placement] * np.cos(theta) * first_size[:, 0], -np.sin(theta) * first_size[:, 1]
    near = d + np.minimum(a, 0.0) + np.minimum(b, 0.0)
    far = d + np.maximum(a, 0.0) + np.maximum(b, 0.0)
    seen = near > MIN_DEPTH_M
    inverse_near, inverse_far = 1.0 / np.where(seen, near, 1.0), 1.0 / far
    # the rows of the image's top and bottom and of the clipped 2D box's, per candidate row
    image_top, image_bottom, box_top, box_bottom = box[[1, 3, 5, 7]].astype(np.float64).take(pair_box, axis=1)
    top = np.clip(np.minimum(k_top * inverse_near, k_top * inverse_far), image_top, image_bottom)
    bottom = np.clip(np.maximum(k_bottom * inverse_near, k_bottom * inverse_far), image_top, image_bottom)
    projected, detected = bottom - top, box_bottom - box_top
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(seen, np.where(projected > 0, detected / projected, 1.0), 0.0)


def _search(edge: np.ndarray, box: np.ndarray, pair_box: np.ndarray, placement: np.ndarray, row_range: np.ndarray,
            tables: _SizeTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates (row p, size s) whose IoU is above their threshold: row indices, size indices (into
    tables.grid) and float32 IoUs, ordered by row, then size.

    Per candidate row p (one lifted edge, depth and placement): `edge` (4, P) the edge's x and z [m] and its top
    and bottom row times z, its box pair_box[p], placement (0..47) and size range (into tables). Per box, float32:
    `box` (9, B) the image rectangle and the clipped 2D box in normalised image coordinates, and the smallest IoU
    above its threshold.
    """
    # Each row's S sizes in ceil(S / SIZE_CHUNK) chunks, one column of the search each: all size ranges at once.
    n_chunk = tables.n_chunk[row_range]
    first_column = np.cumsum(n_chunk) - n_chunk
    column_row = np.repeat(np.arange(len(n_chunk)), n_chunk)
    chunk = np.arange(len(column_row)) - first_column[column_row]
    # The search runs in float32 (half the memory traffic); the kept anchors' boxes are rebuilt in float64.
    edge_c = np.take(edge.astype(np.float32), column_row, axis=1)
    box_c = np.take(box, pair_box[column_row], axis=1)
    iou = _candidate_ious(edge_c, box_c[0:4], box_c[4:8], tables.off_x, tables.off_z,
                          (tables.start[row_range] + placement * n_chunk)[column_row] + chunk)
    kept = np.flatnonzero(iou >= box_c[8][:, None])  # SIZE_CHUNK column + position in the chunk
    row = column_row[kept // SIZE_CHUNK]
    # size = the range's first size + SIZE_CHUNK chunk + position in the chunk
    return row, kept + (tables.grid_start[row_range] - SIZE_CHUNK * first_column)[row], iou.ravel()[kept]


def _candidate_ious(edge: np.ndarray, lim: np.ndarray, det: np.ndarray, off_x: np.ndarray, off_z: np.ndarray,
                    column: np.ndarray) -> np.ndarray:
    """float32 IoU (C, SIZE_CHUNK) of the clipped projected box of candidate (search column, size in chunk) with its
    clipped 2D box, 0 where a corner is at z <= MIN_DEPTH_M or the size is padding.

    Per column, float32: `edge` (4, C) the lifted edge's x0 and z0 [m] and its top and bottom row times its depth,
    the image rectangle `lim` and the clipped 2D box `det` (4, C) in normalised image coordinates, and the column
    of the corner offset tables off_x, off_z (3, SIZE_CHUNK, T) [m] (`_size_tables`). The work arrays are
    (SIZE_CHUNK, C), so that per-column values broadcast along long contiguous rows (about twice as fast as along
    rows of a few sizes), and are updated in place (out=): a third less time than with temporaries.
    """
    f32 = np.float32
    x0, z0, k_top, k_bot = edge[0:1], edge[1:2], edge[2:3], edge[3:4]
    iz0 = 1.0 / z0
    u0 = x0 * iz0
    shape = (off_x.shape[1], len(column))
    # Normalised column x/z and inverse depth of the 4 footprint corners.
    iz, u = np.empty(shape, dtype=f32), np.empty(shape, dtype=f32)
    for corner in range(3):
        np.take(off_z[corner], column, axis=1, out=iz, mode="clip")
        np.add(z0, iz, out=iz)  # z
        if corner == 0:
            z_min = np.minimum(z0, iz)
        else:
            np.minimum(z_min, iz, out=z_min)
        np.divide(1.0, iz, out=iz)
        np.take(off_x[corner], column, axis=1, out=u, mode="clip")
        np.add(x0, u, out=u)
        np.multiply(u, iz, out=u)
        if corner == 0:
            u_min, u_max = np.minimum(u0, u), np.maximum(u0, u)
            iz_min, iz_max = np.minimum(iz0, iz), np.maximum(iz0, iz)
        else:
            np.minimum(u_min, u, out=u_min)
            np.maximum(u_max, u, out=u_max)
            np.minimum(iz_min, iz, out=iz_min)
            np.maximum(iz_max, iz, out=iz_max)
    # Normalised row of a corner = k / z with k = d * top (or bottom) of the edge; extremes at extreme 1/z.
    v_min = np.minimum(np.multiply(k_top, iz_min, out=iz), np.multiply(k_top, iz_max, out=u), out=iz)
    v_max = np.maximum(np.multiply(k_bot, iz_min, out=iz_min), np.multiply(k_bot, iz_max, out=iz_max), out=iz_min)
    spare = u  # iz_max and u are free from here on
    # minimum / maximum rather than np.clip: the same values, at a third of the cost on these arrays.
    for low, high, lo, hi in ((u_min, u_max, lim[0:1], lim[2:3]), (v_min, v_max, lim[1:2], lim[3:4])):
        for a in (low, high):
            np.minimum(np.maximum(a, lo, out=a), hi, out=a)
    pu0, pu1, pv0, pv1 = u_min, u_max, v_min, v_max
    ix = np.minimum(pu1, det[2:3], out=spare)
    ix -= np.maximum(pu0, det[0:1], out=iz_max)
    np.maximum(ix, f32(0.0), out=ix)
    iy = np.minimum(pv1, det[3:4])
    iy -= np.maximum(pv0, det[1:2], out=iz_max)
    np.maximum(iy, f32(0.0), out=iy)
    inter = np.multiply(ix, iy, out=ix)
    union = np.multiply(np.subtract(pu1, pu0, out=pu1), np.subtract(pv1, pv0, out=pv1), out=pu1)
    union += (det[2:3] - det[0:1]) * (det[3:4] - det[1:2])
    union -= inter
    valid = (union > 0) & (z_min > MIN_DEPTH_M)
    # inter / union where valid, else +0, without a divide with where= (twice the time on scattered masks): an
    # invalid quotient times 0 is +-0 or NaN, which + 0 and fmax(., 0) turn into +0; a valid one stays as it is.
    with np.errstate(divide="ignore", invalid="ignore"):
        np.multiply(np.divide(inter, union, out=inter), valid, out=inter)
    iou = np.empty(shape[::-1], dtype=f32)  # (C, SIZE_CHUNK): the caller reads it column by column
    np.fmax(np.add(inter, f32(0.0), out=inter), f32(0.0), out=iou.T)
    return iou


# Per placement k (0..47, `_lift_classes`): heading YAW_CANDIDATES[k % 24], its sine and cosine, the sign of the
# width side (+1 for k < 24, -1 the mirror placement), and the sign toward the box's inside per edge (left +1,
# right -1), alone and times the width side sign: (2, 48).
_THETA = np.tile(YAW_CANDIDATES, 2)
_SIN, _COS = np.sin(_THETA), np.cos(_THETA)
_SIDE = np.repeat([1.0, -1.0], len(YAW_CANDIDATES))
_TOWARD = np.array([1.0, -1.0])
_TOWARD_SIDE = _TOWARD[:, None] * _SIDE


@lru_cache(maxsize=32)
def _corner_offsets(width: tuple[float, float], length: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """float32 x and z offsets (3, 48, S) [m], in the camera frame, of the footprint corners at +side w a(theta),
    +l b(theta) and their sum from the lifted edge, per placement and (w, l) of the class grid (read-only)."""
    grid = _size_grid(width, length)
    w_, l_ = grid[:, 0], grid[:, 1]
    s, c = _SIN[:, None], _COS[:, None]
    width_x, width_z = -_SIDE[:, None] * s * w_, -_SIDE[:, None] * c * w_
    off_x = np.stack([width_x, c * l_, width_x + c * l_]).astype(np.float32)
    off_z = np.stack([width_z, -s * l_, width_z - s * l_]).astype(np.float32)
    off_x.flags.writeable = off_z.flags.writeable = False
    return off_x, off_z


SIZE_CHUNK = 8  # sizes per search column (`_size_tables`)


@dataclass(frozen=True)
class _SizeTables:
    """The sizes of several size ranges laid out for one search (`_size_tables`).

    Attributes:
        off_x, off_z: (3, SIZE_CHUNK, T) float32 corner offsets [m] (`_corner_offsets`): column start[r] +
            n_chunk[r] k + j holds sizes j SIZE_CHUNK .. (j + 1) SIZE_CHUNK - 1 of range r in placement k, NaN past
            its last size (NaN corners fail the depth test: IoU 0).
        start, n_chunk: (R,) first column and chunks per placement of each range.
        grid, grid_start: (S_0 + S_1 + ..., 2) all ranges' (w, l) [m]; (R,) the first row of each range.
    """

    off_x: np.ndarray
    off_z: np.ndarray
    start: np.ndarray
    n_chunk: np.ndarray
    grid: np.ndarray
    grid_start: np.ndarray


@lru_cache(maxsize=32)
def _size_tables(ranges: tuple[SizeRange, ...]) -> _SizeTables:
    """The search layout of the sizes of `ranges` (cached, read-only: a frame's set of classes recurs; building
    it takes ~0.4 ms for 8 classes, 0.3-0.8 MB each). One layout of all classes instead costs ~0.1 ms per frame
    (a larger table to gather from)."""
    grids = [_size_grid(r.width, r.length) for r in ranges]
    n_chunk = np.array([-(-len(g) // SIZE_CHUNK) for g in grids])
    columns = []  # per range: (2 x/z, 3 corners, 48 n_chunk, SIZE_CHUNK)
    for r, n in zip(ranges, n_chunk):
        offsets = np.stack(_corner_offsets(r.width, r.length))
        padded = np.full(offsets.shape[:3] + (n * SIZE_CHUNK,), np.nan, dtype=np.float32)
        padded[..., :offsets.shape[3]] = offsets
        columns.append(padded.reshape(2, 3, -1, SIZE_CHUNK))
    offsets = np.ascontiguousarray(np.concatenate(columns, axis=2).transpose(0, 1, 3, 2))
    sizes = [len(g) for g in grids]
    tables = _SizeTables(offsets[0], offsets[1], np.cumsum(48 * n_chunk) - 48 * n_chunk, n_chunk, np.vstack(grids),
                         np.cumsum(sizes) - sizes)
    for array in vars(tables).values():
        array.flags.writeable = False
    return tables


def _float32_floor(x: np.ndarray) -> np.ndarray:
    """The largest float32 <= x, elementwise: a float32 v is > x exactly when v > _float32_floor(x)."""
    x = np.asarray(x, dtype=np.float64)
    f = x.astype(np.float32)
    return np.where(f > x, np.nextafter(f, np.float32(-np.inf)), f)


def projected_extent(centers_cam: np.ndarray, size_lwh: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """(N, 4) min/max box of the 8 projected corners of N boxes (centres (N, 3) in the camera frame) in normalised
    image coordinates (x/z, y/z)."""
    centers = np.asarray(centers_cam, dtype=np.float64).reshape(-1, 3)
    x, y, z = keypoint_offset_components(size_lwh, ry, 4)  # the bottom face; the top face's corners are at -y
    depth = centers[:, 2:3] + z
    u = (centers[:, 0:1] + x) / depth
    v = np.hstack([centers[:, 1:2] + y, centers[:, 1:2] - y]) / np.hstack([depth, depth])
    return np.stack([u.min(axis=1), v.min(axis=1), u.max(axis=1), v.max(axis=1)], axis=1)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (N,) of box a[i] with box b[i] (both (N, 4) xyxy)."""
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
