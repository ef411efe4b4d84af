"""LiDAR points in 2D-box frustums and the depth cluster of the boxed object.

A point belongs to a box's frustum when its projection lies inside the box. Besides the object the frustum
holds background (walls, other objects, ground) and occluders in front, so each box keeps only the object's
depth cluster: the frustum depths (camera z) are sorted and split wherever consecutive depths jump by more than
`gap_m`; clusters need at least max(min_points, min_fraction * frustum points) points (a few points of a thin
pole do not count; a pedestrian's few behind an occluder's many do where no larger cluster fits its box,
`small_cluster_classes`). Of those, the object is the cluster whose nearest depth best matches the depth the box
implies (fy * mean class height / box height, `expected_depths`, which core.view_frustums combines with where the
box's bottom edge meets the ground surface), within a factor `max_depth_ratio`: this rejects an occluding object in
front and the background behind. Boxes cut by the image's
top or bottom border have no such estimate and take the nearest cluster. The cluster is finally cut to the
class's largest plausible depth extent from its first point (not where nearer objects of its kind cover all of it,
below).

Inside that cluster an occluder can stand closer than `gap_m` in front of the object (a post, a bin 1 m in front
of a parked car). With a finite `segment_gap_m` (detection uses 0.6 m; segmentation keeps whole clusters) the
cluster is therefore split again at depth jumps larger than that into segments,
and the object keeps the segment that fits the box: the one whose points span the largest share of the box's
width (an object fills its box from edge to edge; a post in front covers a narrow strip of it), less the same
|log(depth / expected depth)| cost; ties go to the nearer segment. Nearer segments spanning at least half its share
stay with it (`near_segment_cover`): they are the object's own nearer part (a car's boot and bumper ~1 m in front of
its rear window). So do nearer segments lower than the chosen one's lowest point, within a reach given per box
(`object_points`' low_front; detection gives it to cars and trucks): a car's bonnet seen in a narrow strip below and
before its cabin. Objects that touch without any depth jump
(a barrier row, cars bumper to bumper) stay in one segment, but where their 2D boxes overlap the nearer object
hides the farther one. Between boxes of one kind (the detection class: similar silhouettes) the bottom edge
tells which: objects stand on the ground, the lower box is the nearer object's, and a point inside it is `covered`
for the boxes of the kind whose bottom edge lies higher (the far barrier of a row holds its neighbour's returns
in the shared columns). Covered points stay in the frustum (a far car shows through the empty corners of the box
of the car in front), but they do not set a cluster's depth (its first uncovered point does: the expected-depth
cost and the extent cut start there) nor count in a segment's share of the box width, and a cluster all of whose
points are covered is the object's only when no eligible cluster that fits the box-height estimate
(`height_fit_std`) has an uncovered point (a tall far car's box-height estimate lies nearer than its returns, near the
returns of the lower car in front; but a pedestrian hidden in a group, all of whose returns lie in the nearer
members' boxes, is not the wall behind the group). Such a cluster starts at the nearer object, not at this one's
front, so it is not cut at the depth extent: its segments part the objects. Across kinds nothing is
covered (a pedestrian's head shows above the car in front). Finally a point held by the segments of several boxes
stays with the one whose segment lies nearest (median depth), except that between boxes of one kind the cover comes
first: a box for which the point is covered gives way to one of its kind for which it is not. A far car whose
box-height estimate is too near (a taller car) can take the bonnet of the lower car in front as its segment, and
that segment then lies nearer than the near car's own. A box left with no point of its cluster this way is
not the object of that cluster: it takes its next cluster in rank, if one fits its box-height estimate
(`height_fit_std`).

The segment holds no ground returns, so an object whose lower part lies within the ground band (a car's bumper at
road height) is seen only from higher up; `foot_depths` finds the ground returns at its foot (core.lift3d uses them
when the segment's lowest point lies high above the ground).

Also here: `CameraView` (one camera's 2D boxes with its model and extrinsics, the input of core.lift3d and
core.segmentation), `project_cloud`, and `check_points` / `finite_rows` (the shared validation of incoming clouds).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import PointCloudError
from .camera import MIN_DEPTH_M, CameraModel, project_points
from .classes import SIZE_PRIOR_WLH
from .detections import Detections2D
from .geometry import transform_points
from .sorted_runs import run_indices, run_starts

GENERIC_DEPTH_EXTENT_M = 5.0


@dataclass(frozen=True)
class ImageBorder:
    """Which edges of a 2D box count as cut by its image's border: those within px + share x the box's side [px] of
    it. A detector's box of an object that the border cuts ends near the border, not always on it: the simulated
    `good` detector (data.simulated_2d) moves each edge by N(0, 2 px + 3 % of the side) before clipping it to the
    image, so half of its cut edges lie inside the image, where they would end the object."""

    px: float = 4.0
    share: float = 0.06

    def cuts(self, boxes_xyxy: np.ndarray, size_px) -> np.ndarray:
        """(B, 4) whether each edge (left, right, top, bottom) of pixel boxes (B, 4) xyxy is cut by the border of
        its image (sizes (B, 2) or (2,): width, height [px])."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        tolerance = self.px + self.share * (boxes[:, 2:] - boxes[:, :2])  # (B, 2): along x, along y
        low, high = boxes[:, :2] <= tolerance, boxes[:, 2:] >= np.asarray(size_px, dtype=np.float64) - tolerance
        return np.stack([low[:, 0], high[:, 0], low[:, 1], high[:, 1]], axis=1)


@dataclass(frozen=True)
class ClusterParams:
    """How a frustum's object depth cluster is found.

    Attributes:
        gap_m: a depth jump larger than this separates two clusters [m].
        min_points, min_fraction: the object cluster holds at least max(min_points, min_fraction * frustum points).
        small_cluster_classes: the kinds whose boxes take a cluster of min_points or more that fits the box-height
            estimate (`height_fit_std`) where none of min_fraction's size does: a pedestrian's 11 returns behind the
            112 of a motorcycle that fills its box, or the wall behind it was its object. Pedestrians are thin and
            their height varies least (std 11 % of the mean); for barriers, cars and motorcycles the same rule cost
            AP on world v2 (benchmarks/results/world_v2_log.md).
        max_depth_ratio: largest ratio between a cluster's nearest depth and the box's depth estimate. The box
            height alone assumes the class's mean height (a low car's box puts it ~25 % too far, a tall truck's too
            near; the ground contact takes most of that off near the sensor, core.view_frustums), and an occluder
            less than `gap_m` in front starts the object's cluster (a barrier 1 m before a parked car): 1.6
            rejected such clusters, and their objects were fitted from the size prior alone.
        segment_gap_m: inside the object cluster, a depth jump larger than this separates segments [m]; inf (the
            default) keeps the whole cluster. Detection (core.lift3d) splits at 0.6 m to drop occluders in front;
            segmentation keeps whole clusters (a split also drops the far part of objects seen at a grazing angle).
        segment_gap_per_depth: a jump separates segments only when it also exceeds this fraction of its depth
            (LiDAR returns are spaced by angle: along a surface seen at a grazing angle, consecutive returns lie
            0.7-1.1 m apart in depth at 20-25 m, the side of a barrier row), but no more than the longest side of
            the box's class where `object_points` is given it (one object's returns hold no jump longer than the
            object: a pedestrian 0.9 m behind another at 25 m is the next of a group); `object_points` may give each
            box its own fraction. 0 (the default): `segment_gap_m` alone. Detection uses 0.04 (0.6 m up to 15 m,
            1 m at 25 m), and 0.06 for barriers (core.lift3d.LiftParams.segment_gap_per_depth_by_class).
        near_segment_cover: a segment nearer than the chosen one stays with it when it spans at least this fraction
            of the chosen segment's share of the box width: the same object's nearer part (a car's boot and bumper
            ~1 m in front of its rear window, with fewer returns), not a post in front (a narrow strip).
        height_fit_std: a cluster fits the box-height estimate when its nearest depth lies within this many std of
            the class's height of it (|log(depth / estimate)| <= this x height std / mean height). A box whose
            object cluster the segments of other boxes keep whole takes its next cluster in rank instead
            (`object_points`) only where that one fits: a car behind a truck whose box-height estimate lies near the
            truck. Pedestrians, whose height varies least, then keep only clusters near the estimate (at 3 std more
            of them took the background). And a cluster with an uncovered point comes before those whose points are
            all covered only where it fits: a pedestrian hidden in a group (every return of it in a nearer member's
            box) took the wall behind the group, 1.8x its estimate. Without an estimate or a size prior of the box's
            class no next cluster fits, and the clusters with an uncovered point keep their precedence.
        border: which box edges count as cut by the image border: a box cut at its top or bottom has no
            box-height depth estimate (`expected_depths`), and detection (core.lift3d) places no box by a cut edge
            and gives a box cut on the left or right its object's points past the border. Edges within 4 px + 6 %
            of the box's side, against 1 px before: on the tuning worlds (v1 seeds 5-6, v2 seeds 9-10, perfect and
            good 2D) car ATE -0.116 m and mAP +0.108 summed over the eight runs, all of it in the good runs (a car
            beside the ego had been fitted 1.65 m off along its length); 3 % or 10 % gave about as much
            (benchmarks/results/world_v2_log.md).
    """

    gap_m: float = 1.5
    segment_gap_m: float = float("inf")
    segment_gap_per_depth: float = 0.0
    min_points: int = 3
    min_fraction: float = 0.1
    max_depth_ratio: float = 2.0
    near_segment_cover: float = 0.5
    height_fit_std: float = 2.0
    small_cluster_classes: tuple[str, ...] = ("pedestrian",)
    border: ImageBorder = ImageBorder()

    @property
    def cluster_choice(self) -> tuple[float, int, float, float, float, tuple[str, ...], ImageBorder]:
        """The parameters view_frustums uses: equal ones give the same clusters."""
        return (self.gap_m, self.min_points, self.min_fraction, self.max_depth_ratio, self.height_fit_std,
                self.small_cluster_classes, self.border)


@dataclass(frozen=True)
class CameraView:
    """One camera's 2D detections with its calibration.

    Attributes:
        detections: the camera's 2D boxes (pixels of the image `camera` describes).
        camera: the camera model.
        T_cam_lidar: 4x4 transform from the LiDAR frame into the camera's optical frame.
    """

    detections: Detections2D
    camera: CameraModel
    T_cam_lidar: np.ndarray


@dataclass
class ProjectedCloud:
    """The points of a cloud that land in one image: indices into the cloud, pixels (K, 2) and camera-frame points
    (K, 3) (both column-major: a column is contiguous)."""

    index: np.ndarray
    uv: np.ndarray
    points_cam: np.ndarray


@dataclass
class FrustumClusters:
    """Point-box pairs of one camera (sorted by box, then depth) and each box's object cluster, before it is split
    into segments (the segment parameters are what detection and segmentation choose differently; the rest they
    share per sweep: core.view_frustums).

    Attributes:
        point, box, depth, u: as in BoxPoints.
        covered: (Q,) the point lies in a lower box of its box's kind (module docstring).
        in_cluster: (Q,) the point is on its box's object cluster, within the class's depth extent of the cluster's
            first point that no lower box (the nearer object) of any kind holds (with kinds, and the whole cluster
            where every point of it is covered; else of its depth): a barrier less than gap_m in front of a car
            starts the car's cluster, and the extent counted from it cut the car's far part off.
        in_next_cluster: (Q,) the same for the box's next cluster in rank, where one fits the box-height estimate
            (`ClusterParams.height_fit_std`; none without an estimate or a kind with a size prior).
        expected_depth: (B,) the box-height depth estimates [m] (NaN: none).
        kind: (B,) int code of each box's kind (boxes without a given kind: one each).
    """

    point: np.ndarray
    box: np.ndarray
    depth: np.ndarray
    u: np.ndarray
    covered: np.ndarray
    in_cluster: np.ndarray
    in_next_cluster: np.ndarray
    expected_depth: np.ndarray
    kind: np.ndarray

    def split(self, point_start: np.ndarray, box_start: np.ndarray) -> list[FrustumClusters]:
        """The clusters of each of K images computed at once (frustum_clusters' parts (point_start, box_start),
        (K + 1,) each), with point and box numbers counted from the image's first."""
        pair_start = np.searchsorted(self.box, box_start)  # the pairs are sorted by box
        return [FrustumClusters(self.point[q0:q1] - p0, self.box[q0:q1] - b0, self.depth[q0:q1], self.u[q0:q1],
                                self.covered[q0:q1], self.in_cluster[q0:q1], self.in_next_cluster[q0:q1],
                                self.expected_depth[b0:b1], self.kind[b0:b1])
                for p0, b0, b1, q0, q1 in zip(point_start[:-1], box_start[:-1], box_start[1:], pair_start[:-1],
                                              pair_start[1:])]

    @classmethod
    def join(cls, parts: list[FrustumClusters], point_counts: list[int]) -> FrustumClusters:
        """The clusters of K images (parts, whose images hold point_counts points each) as those of one, point and box
        numbers counted past the previous images' (the inverse of split; a point pairs with its own image's boxes
        only)."""
        point_start = np.cumsum([0] + list(point_counts[:-1])).tolist()
        box_start = np.cumsum([0] + [len(c.kind) for c in parts[:-1]]).tolist()

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(c, name) for c in parts])

        return cls(np.concatenate([c.point + p0 for c, p0 in zip(parts, point_start)]),
                   np.concatenate([c.box + b0 for c, b0 in zip(parts, box_start)]), joined("depth"), joined("u"),
                   joined("covered"), joined("in_cluster"), joined("in_next_cluster"), joined("expected_depth"),
                   joined("kind"))


@dataclass
class BoxPoints:
    """Point-box pairs of one camera (sorted by box, then depth) and per-box object cluster statistics.

    Attributes:
        point: (Q,) index of the point (into whatever array the caller passed).
        box: (Q,) box index.
        depth: (Q,) camera-frame depth [m].
        u: (Q,) pixel column.
        on_object: (Q,) the point is on the box's object depth cluster.
        support: (B,) number of on-object points per box.
        depth_min, depth_median, depth_max: (B,) depths of the on-object points [m] (NaN without support).
    """

    point: np.ndarray
    box: np.ndarray
    depth: np.ndarray
    u: np.ndarray
    on_object: np.ndarray
    support: np.ndarray
    depth_min: np.ndarray
    depth_median: np.ndarray
    depth_max: np.ndarray


def check_points(points: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 xyz of an (N, >=3) array and the mask (N,) of its finite rows (NaN returns are common).

    Raises PointCloudError naming `source` when the array is not (N, >=3).
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3 or not np.issubdtype(pts.dtype, np.number):
        raise PointCloudError(source, "points", f"got an array of shape {pts.shape} and dtype {pts.dtype}",
                              "a numeric (N, 3) array of x, y, z [m]")
    # Column by column: numpy's loops over rows of 3 cost ~4x more than loops along the columns.
    xyz = np.empty((len(pts), 3))
    for axis in range(3):
        xyz[:, axis] = pts[:, axis]
    return xyz, finite_rows(xyz)


def finite_rows(points: np.ndarray) -> np.ndarray:
    """(N,) whether x, y and z of each point (N, >=3) are finite; column by column (a reduction along rows of 3
    costs ~4x more)."""
    return np.isfinite(points[:, 0]) & np.isfinite(points[:, 1]) & np.isfinite(points[:, 2])


@lru_cache(maxsize=64)
def class_depth_extent(class_id: str, n_std: float = 2.0) -> float:
    """Largest depth extent [m] an object of the class can cover: the diagonal of its mean + n_std std footprint."""
    if class_id not in SIZE_PRIOR_WLH:
        return GENERIC_DEPTH_EXTENT_M
    mean, std = (np.asarray(v) for v in SIZE_PRIOR_WLH[class_id])
    hi = mean + n_std * std
    return float(np.hypot(hi[0], hi[1]))


def height_priors(class_ids) -> np.ndarray:
    """(B, 2) mean and std [m] of each class's height (SIZE_PRIOR_WLH; NaN for a class without a prior)."""
    return np.array([[SIZE_PRIOR_WLH[c][0][2], SIZE_PRIOR_WLH[c][1][2]] if c in SIZE_PRIOR_WLH else [np.nan, np.nan]
                     for c in class_ids], dtype=np.float64).reshape(-1, 2)


def expected_depths(boxes_xyxy: np.ndarray, class_ids, camera: CameraModel,
                    border: ImageBorder = ImageBorder()) -> np.ndarray:
    """Depth [m] (B,) at which an object of mean class height fills each box's height: fy * h / (y1 - y0).

    NaN for boxes touching the image's top or bottom border (cut height) and for classes without a size prior.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    height = height_priors(class_ids)[:, 0]
    cut = border.cuts(boxes, (camera.width, camera.height))[:, 2:].any(axis=1)
    pixels = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.where(cut, np.nan, camera.K[1, 1] * height / pixels)


def project_cloud(points: np.ndarray, camera: CameraModel, T_cam_lidar: np.ndarray) -> ProjectedCloud:
    """Project LiDAR points (N, 3) into a camera; keeps the points in front of it and inside its image."""
    T = np.asarray(T_cam_lidar, dtype=np.float64)
    front = np.flatnonzero(points @ T[2, :3] + T[2, 3] > MIN_DEPTH_M)  # depth first: most points are behind
    pts_cam = transform_points(T, np.take(points, front, axis=0))  # a take of rows: ~4x faster than points[front]
    proj = project_points(camera, pts_cam)
    keep = np.flatnonzero(proj.in_image)
    # uv and pts_cam are (N, 2) and (N, 3) views of (2, N) and (3, N) arrays: their rows are taken there (~3x faster)
    return ProjectedCloud(front[keep], np.take(proj.uv.T, keep, axis=1).T, np.take(pts_cam.T, keep, axis=1).T)


def points_in_boxes_2d(uv: np.ndarray, boxes_xyxy: np.ndarray,
                       parts: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (point, box) pairs with pixel uv[point] (n, 2) inside boxes_xyxy[box] (B, 4), edges included.

    parts: (point_start, box_start) (K + 1,) each for K images at once: the points point_start[k]:point_start[k + 1]
    pair only with the boxes box_start[k]:box_start[k + 1] (None: one image).
    The points are sorted by column once (per image); each box takes its column range by binary search, then the
    row test.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    u = uv[:, 0]
    point_start, box_start = parts if parts is not None else ((0, len(uv)), (0, len(boxes)))
    by_u = np.empty(len(uv), dtype=np.intp)
    lo, hi = np.empty(len(boxes), dtype=np.intp), np.empty(len(boxes), dtype=np.intp)
    for p0, p1, b0, b1 in zip(point_start[:-1], point_start[1:], box_start[:-1], box_start[1:]):
        order = np.argsort(u[p0:p1], kind="stable")
        by_u[p0:p1] = order + p0
        u_sorted = u[p0:p1].take(order)
        lo[b0:b1] = np.searchsorted(u_sorted, boxes[b0:b1, 0], side="left") + p0
        hi[b0:b1] = np.searchsorted(u_sorted, boxes[b0:b1, 2], side="right") + p0
    span = np.maximum(hi - lo, 0)
    box = np.repeat(np.arange(len(boxes)), span)
    at = run_indices(lo, span)  # positions in by_u
    v = uv[:, 1].take(by_u).take(at)
    # the inside positions taken: boolean indexing by a mask of mixed values costs ~2.5x more
    inside = np.flatnonzero((v >= np.repeat(boxes[:, 1], span)) & (v <= np.repeat(boxes[:, 3], span)))
    return by_u.take(at.take(inside)), box.take(inside)


def _kind_codes(kinds: np.ndarray) -> np.ndarray:
    """(B,) int code 0..K-1 of each box's kind (kinds (B,), e.g. class ids): its rank among the distinct kinds (the
    inverse of np.unique)."""
    values = np.asarray(kinds).ravel().tolist()  # a dict of the few kinds: ~3x faster than np.unique on class names
    code = {kind: rank for rank, kind in enumerate(sorted(set(values)))}
    return np.array([code[value] for value in values], dtype=np.intp)


def points_in_boxes_covered(uv: np.ndarray, boxes_xyxy: np.ndarray, kinds: np.ndarray,
                            parts: tuple[np.ndarray, np.ndarray] | None = None
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`points_in_boxes_2d`'s (point, box) pairs (of several images with parts) and whether each is covered (Q,): its
    point also lies in a box of the same kind (kinds (B,)) with a lower bottom edge (image row y1 [px]: the nearer
    object)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    point, box = points_in_boxes_2d(uv, boxes, parts)
    return point, box, _covered(point, box, boxes, _kind_codes(kinds), len(uv))


def _covered(point: np.ndarray, box: np.ndarray, boxes: np.ndarray, kind: np.ndarray, n_points: int) -> np.ndarray:
    """Whether each (point, box) pair (Q,) of `points_in_boxes_2d` (n_points points, boxes (B, 4)) is covered by a box
    of the same kind (codes kind (B,), `_kind_codes`) with a lower bottom edge."""
    n_kinds = int(kind.max()) + 1 if len(kind) else 1
    key = point * n_kinds + kind.take(box)  # (point, kind)
    bottom = boxes[:, 3].take(box)
    lowest = np.full(n_points * n_kinds, -np.inf)  # per (point, kind): the lowest bottom edge of the boxes holding it
    np.maximum.at(lowest, key, bottom)
    return bottom < lowest.take(key)


def _by_box_then_depth(box: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The order (Q,) of pairs of boxes box (Q,) (ascending) and positive depths depth (Q,) [m] by box, then depth,
    then pair (np.lexsort((depth, box))).

    One stable sort of an int64 key, box x span + the depth's bit pattern (positive floats order as their bit
    patterns; span: that of the pattern's range), per run of as many boxes as the key's range holds (all, unless
    the depths span many orders of magnitude): ~2.5x faster than stable sorts by depth and then box."""
    order = np.empty(len(box), dtype=np.intp)
    if len(box) == 0:
        return order
    bits = depth.view(np.int64)
    lo = int(bits.min())
    if lo <= 0:
        raise ValueError("frustum depths must be positive (points in front of the camera)")
    span = int(bits.max()) - lo + 1
    first_box = np.arange(int(box[0]), int(box[-1]) + 1, max(1, (2**63 - 1) // span))  # of each run
    bounds = np.append(np.searchsorted(box, first_box), len(box))
    for b0, q0, q1 in zip(first_box.tolist(), bounds[:-1], bounds[1:]):
        order[q0:q1] = np.argsort((box[q0:q1] - b0) * span + (bits[q0:q1] - lo), kind="stable") + q0
    return order


def frustum_clusters(uv: np.ndarray, depth: np.ndarray, boxes_xyxy: np.ndarray, max_extent: np.ndarray,
                     expected_depth: np.ndarray | None = None, params: ClusterParams = ClusterParams(),
                     kinds: np.ndarray | None = None,
                     parts: tuple[np.ndarray, np.ndarray] | None = None) -> FrustumClusters:
    """The frustum points of boxes (B, 4) among projected points (uv (n, 2), depth (n,) > 0) and each box's object
    cluster, before segments (it uses params' gap_m, min_points, min_fraction and max_depth_ratio only).

    `max_extent` (B,) is the largest depth extent of each box's object [m] (see `class_depth_extent`);
    `expected_depth` (B,) the box-height depth estimate [m] (see `expected_depths`; NaN or None: nearest cluster);
    `kinds` (B,) the boxes' kinds (class ids; None: no two boxes of a kind, see `points_in_boxes_covered`);
    `parts`: the points and boxes of several images (`points_in_boxes_2d`; FrustumClusters.split parts them again).
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    n_boxes = len(boxes)
    point, box = points_in_boxes_2d(uv, boxes, parts)
    if kinds is None:
        covered = np.zeros(len(point), dtype=bool)
        kind = np.arange(n_boxes)
    else:
        kind = _kind_codes(kinds)
        covered = _covered(point, box, boxes, kind, len(uv))
    order = _by_box_then_depth(box, np.asarray(depth, dtype=np.float64).take(point))
    point, box, covered = point.take(order), box.take(order), covered.take(order)
    d = np.take(depth, point)
    expected = np.full(n_boxes, np.nan) if expected_depth is None else np.asarray(expected_depth, dtype=np.float64)
    if len(point) == 0:
        none = np.zeros(0, dtype=bool)
        return FrustumClusters(point, box, d, uv[:, 0].take(point), covered, none, none, expected, kind)
    starts = np.flatnonzero(np.concatenate(([True], (box[1:] != box[:-1]) | (np.diff(d) > params.gap_m))))
    cluster_size = np.diff(np.append(starts, len(d)))  # the clusters are runs of the sorted pairs
    cluster_box = box[starts]
    # A cluster's depth: its first point not covered by a lower box of the kind (its first point if all are).
    uncovered_first = np.minimum.reduceat(np.where(covered, np.inf, d), starts)
    cluster_first_depth = np.where(np.isfinite(uncovered_first), uncovered_first, d[starts])
    # Where the object's depth extent starts: with kinds, its cluster's first point that no lower box of any kind
    # holds (the cluster's depth where lower boxes hold all of them). Where lower boxes of the kind cover all of them
    # the cluster starts at a nearer object of the kind, not at this one's front, and is not cut (its segments part
    # the objects: a pedestrian hidden behind another of its group).
    extent_start = cluster_first_depth
    all_covered = ~np.isfinite(uncovered_first)
    if kinds is not None:
        in_lower_box = _covered(point, box, boxes, np.zeros(n_boxes, dtype=np.int64), len(uv))
        clear_first = np.minimum.reduceat(np.where(in_lower_box, np.inf, d), starts)
        extent_start = np.where(np.isfinite(clear_first), clear_first, cluster_first_depth)
        extent_start[all_covered] = np.inf
    frustum_size = np.bincount(box, minlength=n_boxes)
    eligible = cluster_size >= np.maximum(params.min_points, params.min_fraction * frustum_size[cluster_box])
    # Cost: |log(nearest depth / expected depth)| (0 without an estimate, so the nearest cluster wins).
    ratio = np.abs(np.log(np.maximum(cluster_first_depth, 1e-6) / expected[cluster_box]))
    cost = np.where(np.isnan(ratio), 0.0, ratio)
    near_estimate = cost <= np.log(params.max_depth_ratio)
    eligible &= near_estimate
    later = all_covered
    if kinds is not None:
        height_mean, height_std = height_priors(kinds).T
        fit_bound = (params.height_fit_std * height_std / height_mean).take(cluster_box)  # NaN: no size prior
        fits = near_estimate & (ratio <= fit_bound)  # NaN (no estimate or prior) fails
        small_kind = np.isin(np.asarray(kinds), params.small_cluster_classes).take(cluster_box)
        fitting_large = np.bincount(cluster_box[eligible & fits], minlength=n_boxes) > 0
        eligible |= small_kind & fits & (cluster_size >= params.min_points) & ~fitting_large.take(cluster_box)
        later = all_covered | (ratio > fit_bound)  # NaN (no estimate or prior): fits here
    candidates = np.flatnonzero(eligible)
    # Per box: clusters with an uncovered point that fit the estimate first (one whose points all lie in a lower box
    # of the kind is the nearer object's), then the least cost.
    best = candidates[np.lexsort((cost[candidates], later[candidates], cluster_box[candidates]))]
    chosen, following = np.full(n_boxes, -1), np.full(n_boxes, -1)
    first = run_starts(cluster_box[best])  # best is sorted by box
    chosen[cluster_box[best[first]]] = best[first]
    if kinds is not None:
        second = first[first + 1 < len(best)]
        second = best[second + 1][cluster_box[best[second + 1]] == cluster_box[best[second]]]
        fitting = second[fits[second]]  # NaN (no estimate, no size prior) fails: no next cluster
        following[cluster_box[fitting]] = fitting
    extent = np.asarray(max_extent, dtype=np.float64).reshape(n_boxes)
    cluster = np.arange(len(starts))

    def per_pair(of_cluster: np.ndarray) -> np.ndarray:  # a value per cluster repeated for its pairs
        return np.repeat(of_cluster, cluster_size)

    within = d <= per_pair(extent_start + extent[cluster_box])
    return FrustumClusters(point, box, d, uv[:, 0].take(point), covered,
                           per_pair(cluster == chosen[cluster_box]) & within,
                           per_pair(cluster == following[cluster_box]) & within, expected, kind)


def object_points(clusters: FrustumClusters, boxes_xyxy: np.ndarray, params: ClusterParams = ClusterParams(),
                  images: np.ndarray | None = None, low_front: tuple[np.ndarray, np.ndarray] | None = None,
                  gap_per_depth: np.ndarray | None = None, longest_side: np.ndarray | None = None) -> BoxPoints:
    """Each box's object points (B boxes (B, 4)): its cluster's segment that fits the box (params' segment_gap_m,
    segment_gap_per_depth and near_segment_cover), each point kept by the nearest box holding it; a box whose
    cluster other boxes keep whole tries its next cluster (FrustumClusters.in_next_cluster). The retry is per image:
    where one such box of an image has a next cluster, every such box of the image takes its next cluster (none, for
    a box without one) and the image's points are owned again. images (B,): the image of each box, for the clusters
    of several images joined (FrustumClusters.join; None: one image), so that each image's boxes get what they get
    alone. low_front: (heights (Q,) of the pairs' points above the ground [m], reach (B,) [m]): a nearer segment all
    of whose points lie lower than the chosen segment's lowest point stays with it when it starts at most the box's
    reach before it (the object's own low front: a car's bonnet or boot below and before its cabin); None: none.
    gap_per_depth (B,): each box's `segment_gap_per_depth` (None: params'). longest_side (B,): the longest horizontal
    side [m] of each box's class (inf without a prior), the most that the segment gap grows to with depth; None: no
    bound."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    n_boxes = len(boxes)
    c = clusters
    if len(c.point) == 0:
        nan = np.full(n_boxes, np.nan)
        return BoxPoints(c.point, c.box, c.depth, c.u, np.zeros(0, dtype=bool), np.zeros(n_boxes, dtype=np.int64),
                         nan, nan.copy(), nan.copy())
    growth = (gap_per_depth, longest_side)
    segments = _best_segment(c.in_cluster, c, boxes, params, low_front, growth)
    on, stats = _owned_segments(c, segments, n_boxes)
    support = np.bincount(c.box[on], minlength=n_boxes)
    taken = (support == 0) & (np.bincount(c.box[c.in_cluster], minlength=n_boxes) > 0)  # others keep its cluster
    has_next = np.bincount(c.box[c.in_next_cluster], minlength=n_boxes) > 0
    image = np.zeros(n_boxes, dtype=np.int64) if images is None else np.asarray(images)
    retrying = np.zeros(int(image.max(initial=0)) + 1, dtype=bool)  # per image (a mark: ~20x faster than np.isin)
    retrying[image[taken & has_next]] = True
    taken &= retrying.take(image)
    retry = taken.take(c.box)  # the pairs of those boxes
    if retry.any():  # a box's segment depends on its own pairs only: only these boxes' segments change
        segments = np.where(retry, _best_segment(c.in_next_cluster & retry, c, boxes, params, low_front, growth),
                            segments)
        on, stats = _owned_segments(c, segments, n_boxes)
        support = np.bincount(c.box[on], minlength=n_boxes)
    depth_min, depth_median, depth_max = stats
    return BoxPoints(c.point, c.box, c.depth, c.u, on, support, depth_min, depth_median, depth_max)


def foot_depths(uv: np.ndarray, depth: np.ndarray, boxes_xyxy: np.ndarray, kinds: np.ndarray, columns: np.ndarray,
                nearest_depth: np.ndarray, reach: np.ndarray,
                parts: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Camera depth [m] (B,) of the nearest ground return at the foot of each box's object, NaN where there is none.

    A ground return (pixel uv (n, 2), depth (n,) [m]) is at the foot when it lies inside the box (boxes_xyxy (B, 4)
    [px]), within the columns [left, right] (B, 2) [px] that the object's segment spans, and nearer than the
    segment's nearest depth nearest_depth (B,) [m] by at most reach (B,) [m]; returns that a lower box of its kind
    (kinds (B,)) covers are the nearer object's (`points_in_boxes_covered`). parts: the returns and boxes of several
    images at once (`points_in_boxes_2d`; None: one image).
    """
    point, box, covered = points_in_boxes_covered(uv, boxes_xyxy, kinds, parts)
    point, box = point[~covered], box[~covered]
    return nearest_at_foot(box, depth[point], uv[point, 0], columns, nearest_depth, reach)


def nearest_at_foot(box: np.ndarray, depth: np.ndarray, u: np.ndarray, columns: np.ndarray,
                    nearest_depth: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Camera depth [m] (B,) of the nearest of the returns paired with boxes (box (P,), depth (P,) [m], image column
    u (P,) [px]) that lie at the foot of their box's object: within the columns [left, right] (B, 2) [px] that its
    segment spans and nearer than its nearest depth nearest_depth (B,) [m] by at most reach (B,) [m]; NaN where there
    is none (always where nearest_depth is NaN)."""
    near = nearest_depth[box]
    keep = (u >= columns[box, 0]) & (u <= columns[box, 1]) & (depth < near) & (depth >= near - reach[box])
    foot = np.full(len(nearest_depth), np.inf)
    np.minimum.at(foot, box[keep], depth[keep])
    return np.where(np.isfinite(foot), foot, np.nan)


def _depth_stats(on: np.ndarray, box: np.ndarray, depth: np.ndarray, n_boxes: int):
    """Nearest, median and farthest depth (B,) each of the on-object pairs of every box (NaN without any)."""
    depth_min, depth_median, depth_max = (np.full(n_boxes, np.nan) for _ in range(3))
    on_pos = np.flatnonzero(on)
    if len(on_pos):
        # The on-object points of a box are one contiguous run of the sorted pairs.
        on_box = box.take(on_pos)
        first_on = run_starts(on_box)
        has, count = on_box.take(first_on), np.diff(np.append(first_on, len(on_box)))
        start = on_pos.take(first_on)
        depth_min[has] = depth.take(start)
        depth_median[has] = depth.take(start + count // 2)
        depth_max[has] = depth.take(start + count - 1)
    return depth_min, depth_median, depth_max


def _nearest_owner(on: np.ndarray, point: np.ndarray, box: np.ndarray, covered: np.ndarray, kind: np.ndarray,
                   box_depth: np.ndarray) -> np.ndarray:
    """`on` with each point kept in one box only: of the boxes whose object segment holds it, the one whose
    segment lies nearest (median depth `box_depth` (B,)), where a box of a kind (`kind` (B,)) for which the pair
    is `covered` does not compete when one of that kind for which it is not holds the point too (the lower box of
    the kind is the nearer object). Where 2D boxes overlap, the nearer object hides the farther one, so the points
    there are the nearer object's (the next barrier of a row, the car in front). Returns `on` itself when no point
    is held by two boxes."""
    on_pos = np.flatnonzero(on)
    on_point = point.take(on_pos)
    holders = np.bincount(on_point) if len(on_pos) else np.zeros(1, dtype=np.int64)
    if holders.max() < 2:
        return on
    keep = on.copy()
    shared = holders.take(on_point) > 1  # the points of one box only stay with it
    on_pos, on_point = on_pos[shared], on_point[shared]
    keep[on_pos] = False
    on_box, hidden = box.take(on_pos), covered.take(on_pos)
    held = on_point * (int(kind.max()) + 1) + kind.take(on_box)  # a (point, kind) code per pair
    # per (point, kind): a pair holds it uncovered (bools: a bincount of the flags wrote 8x the memory)
    open_to_kind = np.zeros(int(held.max()) + 1, dtype=bool)
    open_to_kind[held[~hidden]] = True
    stays = ~(hidden & open_to_kind.take(held))
    on_pos, on_point = on_pos[stays], on_point[stays]
    order = np.lexsort((box_depth.take(on_box[stays]), on_point))
    keep[on_pos.take(order)[run_starts(on_point.take(order))]] = True  # order sorts by point
    return keep


def _owned_segments(c: FrustumClusters, segments: np.ndarray,
                    n_boxes: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The on-object mask (Q,) of n_boxes boxes given each one's segment that fits it (segments (Q,), `_best_segment`):
    each point kept by the nearest box holding it; and the boxes' nearest, median and farthest depths."""
    stats = _depth_stats(segments, c.box, c.depth, n_boxes)
    owned = _nearest_owner(segments, c.point, c.box, c.covered, c.kind, stats[1])
    if owned is segments:
        return segments, stats
    return owned, _depth_stats(owned, c.box, c.depth, n_boxes)


def _best_segment(on: np.ndarray, c: FrustumClusters, boxes: np.ndarray, params: ClusterParams,
                  low_front: tuple[np.ndarray, np.ndarray] | None = None,
                  growth: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> np.ndarray:
    """The on-object mask `on` (Q,) of the depth-sorted point-box pairs of c reduced to one segment per box (B, 4).

    Segments are runs of a box's on-object points without a depth jump above both `segment_gap_m` and
    `segment_gap_per_depth` x depth (growth: each box's fraction (B,) instead of params', and the longest side
    (B,) [m] that this gap grows to at most; None: params', unbounded). Each is
    scored by the share of the box width the columns `c.u` of its points not `c.covered` span (0 without any), less
    |log(first depth / expected depth)| (0 where `c.expected_depth` is NaN); the best one per box is kept (the
    nearer one on a tie), with the box's nearer segments that span at least `near_segment_cover` x its share. Each
    box's segment depends on its own pairs only.
    """
    if not on.any():
        return on
    b, d, col, hidden = c.box[on], c.depth[on], c.u[on], c.covered[on]  # a mask: ~2x faster than flatnonzero, take
    gap_per_depth, longest_side = growth
    rate = params.segment_gap_per_depth if gap_per_depth is None else gap_per_depth.take(b[:-1])
    grown = rate * d[:-1]
    if longest_side is not None:
        grown = np.minimum(grown, longest_side.take(b[:-1]))
    gap = np.maximum(params.segment_gap_m, grown)
    starts = np.concatenate(([True], (b[1:] != b[:-1]) | (np.diff(d) > gap)))
    first = np.flatnonzero(starts)
    seg_box = b[first]
    width = np.maximum((boxes[:, 2] - boxes[:, 0]).take(seg_box), 1e-6)
    right = np.maximum.reduceat(np.where(hidden, -np.inf, col), first)
    left = np.minimum.reduceat(np.where(hidden, np.inf, col), first)
    cover = np.where(np.isfinite(right), right - left, 0.0) / width
    ratio = np.abs(np.log(np.maximum(d.take(first), 1e-6) / c.expected_depth.take(seg_box)))
    fit = cover - np.where(np.isnan(ratio), 0.0, ratio)
    segment = np.arange(len(first))
    order = np.lexsort((segment, -fit, seg_box))  # per box: best fit, then nearest
    best = np.full(len(boxes), -1)
    first_of_box = run_starts(seg_box[order])
    best[seg_box[order[first_of_box]]] = order[first_of_box]
    chosen = best[seg_box]
    kept = (segment == chosen) | ((segment < chosen) & (cover >= params.near_segment_cover * cover[chosen]))
    if low_front is not None:
        height, reach = low_front
        segment_reach = reach.take(seg_box)
        near = np.flatnonzero((segment < chosen) & ~kept & (segment_reach > 0))
        if len(near):  # (often none: a box of one segment, or of another class)
            h = height[on]
            with np.errstate(invalid="ignore"):  # NaN where a point has no ground below: never kept
                lowest, highest = np.minimum.reduceat(h, first), np.maximum.reduceat(h, first)
                of = chosen.take(near)
                kept[near] = ((highest.take(near) < lowest.take(of))
                              & (d.take(first.take(of)) - d.take(first.take(near)) <= segment_reach.take(near)))
    keep = on.copy()
    keep[on] = np.repeat(kept, np.diff(np.append(first, len(b))))  # per segment, to its points
    return keep
