"""Geometric 3D detection: 2D boxes lifted by QAF2D anchors, chosen with LiDAR, refined by the KM3D solver.

Per camera and 2D box (classes outside the 10 detection classes are skipped):
1. LiDAR support: non-ground points (core.ground) projected inside the box, reduced to the object's segment
   (core.frustum: its depth cluster, less occluders in front, chosen without the points a nearer box of its class
   covers, and less the points a nearer box's segment holds); a box with at least `min_support_points` such points (2
   for pedestrians, `min_support_by_class`) is supported. Its nearest depth is the segment's, or, where the segment's
   lowest point lies high above the ground (`foot_gap`), that of the ground returns at the object's foot
   (core.frustum.foot_depths: a car's bumper at road height is ground, and the ring above it passes over the bonnet
   to the cabin ~1.4 m further), or of low object returns there that no box's segment holds (a bumper seen in a strip
   of the box, `_low_returns_in_front`). A box cut by the left or right image border also takes in its object's
   points past the border, and a segment longer than one object of its class is split at its widest gap
   (`_split_overlong`; not barrier rows).
2. Anchors (core.qaf2d, top_k per box and heading). Supported boxes: each vertical edge's depth candidates are
   restricted to the depths of the cluster points in the box's outer `edge_band` on that side
   (+- `edge_window_m`), and the headings to those within `heading_tolerance_deg` of the cluster's footprint
   heading (`lidar_headings`, bird's-eye rectangle fit, modulo 90 deg); the IoU bar is `lidar_iou_threshold`.
   Unsupported boxes: depths where the box height fits the class's prior height (+- `prior_window_std`),
   within `max_range_factor` x the class's evaluation range, all headings, `iou_threshold`. The boxes of all
   cameras are searched in one pass per class (core.qaf2d.lift_boxes_multi).
3. Choice: the anchor maximising (projected IoU) x (class size prior likelihood) x, with support,
   exp(-mean distance of the cluster points to the anchor's outline / `surface_sigma_m`), each anchor first slid
   along its camera ray so that its nearest corner lies at the cluster's nearest depth.
4. Refinement: unsupported boxes take the class's mean size (the size sets the depth along the ray), and their
   location is solved by the KM3D equations from the 2D box (core.segments.place_by_box_edges: one row per edge, tied
   to the extreme projected corner; edges cut by the image border are not used: those within a few pixels of it,
   core.frustum.ImageBorder, for a detector's box of a cut object ends near the border, not on it), then moved
   along the ray towards where the ray through their bottom edge meets the ground surface (`_on_the_ground`, the
   two depths weighed by their errors: 11-15 % of the depth from the size, less from the ground up to ~40 m).
   Supported boxes are fitted to their segment (core.segments.fit_boxes): their height held within what the returns
   allow (at least the highest return above the ground, at most where the next beam up passed over the object), the
   cluster's continuous heading up to a quarter turn, and (length, width) searched on grids over the class prior;
   each candidate is placed by the 2D box edges and slid along its ray so that its nearest corner lies at the segment's
   nearest depth (LiDAR range is far more precise than depth from a box: 1 px of box error at 30 m moves a 2D-only
   depth by ~0.5 m), and judged by its points (distance to the box surface, capped; for `open_top_classes` a point in
   the box's upper half costs nothing inside it: a car's cabin, bonnet and boot), the projected IoU with the 2D box
   and the size prior. This is what separates touching objects: the segment holds no nearer neighbour's points,
   the 2D box says where the object ends. Where the 2D box is cut by the left or right image border, each candidate
   is also put with its sides facing the sensor on the segment's extremes (core.segments). Heading is only known
   modulo pi (front and back look alike).
5. Score = 2D score x geometric fit, fit = projected IoU of the final box x (with support: fraction of cluster
   points inside it x n / (n + m) for its n object points and its class's minimum support m, else `no_lidar_fit`):
   a box placed by a few returns is less sure of its place than one placed by a hundred, and a box with just its
   class's minimum support scores half of a well-seen one.
6. All cameras' boxes go to the output frame and one object seen by two cameras is merged by class-aware
   BEV NMS (rotated footprint IoU, core.boxes.footprint_iou, plus a centre-distance rule for thin objects),
   keeping the higher score; boxes lifted from one image are never merged (distinct 2D boxes, distinct objects).
7. Rows: barriers that a row of the merged barrier boxes implies in its gaps and past its ends, where the returns
   continue the row and no 2D box was found (core.row_gaps: a detector misses the more hidden barriers of a row).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .bev_components import BevCells, connected_in_windows
from .boxes import bev_corners, footprint_pair_iou, paired_intersection_2d, wlh_to_lwh
from .cell_pairs import cell_keys, neighbour_cell_pairs
from .classes import DETECTION_RANGE_M, SIZE_PRIOR_WLH, size_priors
from .detections import Detections2D, Detections3D
from .frustum import (
    CameraView,
    ClusterParams,
    FrustumClusters,
    check_points,
    foot_depths,
    nearest_at_foot,
    object_points,
    project_cloud,
)
from .geometry import invert_transform, transform_points, wrap_angle
from .ground import GroundParams, SweepGround, checked_split, sweep_ground
from .ground_contact import GroundContact, blend, contact_weight
from .km3d import ry_to_yaw, yaw_to_ry
from .qaf2d import YAW_CANDIDATES, Anchors, lift_boxes_multi, normalise_boxes, paired_iou, projected_extent
from .row_gaps import fill_row_gaps
from .segments import (
    FitParams,
    FitProblem,
    box_frame_excess,
    fit_boxes,
    gather_groups,
    place_by_box_edges,
    point_sum,
    size_log_prior,
    slide_to_depth,
    surface_distance,
)
from .sorted_runs import run_indices, run_starts
from .view_frustums import ViewFrustums, checked_frustums, view_frustums


@dataclass(frozen=True)
class LiftParams:
    """Parameters of geometric 3D detection.

    Attributes:
        iou_threshold: QAF2D projected-box IoU an anchor must exceed (boxes without LiDAR support).
        lidar_iou_threshold: the same for boxes with LiDAR support, whose anchors the points then judge (the
            15 degree / 0.5 m grid and the one-edge height assumption can keep the right box below 0.8).
        top_k: anchors per 2D box and heading candidate handed to the choice.
        min_support_points: on-object points needed to use LiDAR for a box; it also scales the score's LiDAR
            evidence (`_lidar_evidence`: n / (n + this) for a box placed by n points).
        min_support_by_class: (class, points) pairs that take the place of min_support_points for their class.
            Pedestrians need 2: one hidden in a group or behind clutter shows a few returns (1-5 for a third of
            world v2's scored pedestrians, a fifth of world v1's), its frustum is narrow, and its cluster is the one
            that fits its box-height estimate (`ClusterParams.small_cluster_classes`); with 3, those holding 2 were
            placed by their 2D box alone, two thirds of them 0.5 m off or more at ~30 m. 2 for every class cost AP
            elsewhere (world v1 motorcycles -0.04, benchmarks/results/world_v2_log.md).
        segment_gap_per_depth_by_class: (class, fraction) pairs that take the place of `cluster`'s
            segment_gap_per_depth for their class. Barriers: 0.06 (1.2 m at 20 m): a barrier seen almost end-on
            20 m away holds returns 0.8-1 m apart in depth, and at 0.04 it fell apart into segments and was fitted to
            its near part, 0.8-1 m short of its centre. 0.06 for every class placed cars better behind simulated 2D
            boxes but lost cars parked 1 m apart behind the learned detector2d's boxes (car AP on bench scores' scene
            0.601 -> 0.580, benchmarks/results/world_v2_log.md). The growth stops at the class's longest side.
        border_cell_m: a box cut by the left or right image border takes in the object points connected to its
            segment past the border (not those a camera sees beside its box of the object): bird's-eye-view cells of
            this size [m] (core.bev_components).
        edge_band: fraction of the box width on each side whose points give that edge's depth.
        edge_window_m: depth candidates within this of the edge points' depths are kept [m].
        containment_margin_m: box growth when counting the cluster points it contains [m].
        surface_sigma_m: scale of the mean point-to-outline distance in the anchor choice [m].
        prior_std_scale: the anchor choice weighs sizes by the nuScenes class prior with std x this factor.
        max_fit_points: anchors and the final box are judged against at most about this many cluster points
            per box (an even subsample).
        foot_gap, foot_reach: a box whose segment's lowest point lies more than foot_gap x the class's mean height
            above the ground was not seen down to the ground; ground returns at its foot (inside the box, in the
            segment's columns, at most foot_reach x the class's mean length nearer than the segment), and object
            returns there lower than foot_gap x that height that no box's segment holds, then give its nearest depth
            (a car's bumper at road height is ground, and the ring above it passes over the bonnet to the cabin).
        beam_spacing_deg, top_beam_deg: the LiDAR's elevation step between beams and its highest beam [deg] (nuScenes'
            32-beam LIDAR_TOP: 1.33 and +10.67). A supported box's height is held between its segment's highest
            return above the ground and the height there of the next beam up, which passed over the object
            (`_lidar_height_bounds`); the anchor's height comes from a coarse grid.
        prior_window_std: boxes without LiDAR are searched where the box height fits the class's mean height
            +- this many std.
        max_range_factor: boxes without LiDAR are searched up to this x the class's evaluation range.
        heading_tolerance_deg: with LiDAR, QAF2D tries only headings this close to the cluster's footprint
            heading (one of its 4 directions).
        no_lidar_fit: geometric fit factor of boxes without LiDAR support (their depth is ambiguous).
        nms_iou: BEV IoU above which two boxes of one class are the same object (so are boxes whose centres are
            closer than the class's smaller mean side, see `bev_nms`).
        min_score: detections below this score are dropped.
        flat_face_classes: classes whose LiDAR returns lie on one flat long face (barrier panels): their box fit
            also tries each candidate slid so that this face lies on the points (core.segments `flat_face`).
        prior_length_classes: classes whose box takes the class's mean length where the segment does not show its
            length (core.segments `length_prior`, `FitParams.unseen_length_fraction`). On the tuning worlds (v1
            seeds 5-6, v2 seeds 9-10, perfect and good 2D), cars and trucks: mAP up in 7 of 8 runs (+0.018
            summed), truck AP in 7, car ATE lower in 6 (-0.052 m summed); cars alone: mAP level. Barriers (their
            length is their thickness) added: barrier AP up in 6 of 8, lower in two perfect-2D runs, and lower in
            3 of 4 held-out runs; bus, trailer and construction-vehicle AP swung by up to 0.14 either way. The width
            of a car seen side-on by the same rule raised mAP by 0.004 more, but an oblique car's 2D box edges do
            show its width (perfect boxes of 1.7 and 2.2 m wide cars gave 1.86 and 2.06 m; the rule, 1.96): not kept.
        low_front_classes: classes whose lower front stands before the part seen higher up (a car's bonnet or boot
            before its cabin, a truck's cab before its load): a segment of the box's cluster lower than its chosen
            segment's lowest point, at most foot_reach x the class's mean length nearer, stays with it
            (core.frustum.object_points `low_front`). World v2's cars have a cabin inset 0.2-0.3 of their length;
            seen end-on over the car parked in front, the face of such a car can show as a few returns at body
            height, split from the cabin's by a depth jump (on the tuning worlds v1 seeds 5-6, v2 seeds 9-10 with
            perfect and good 2D: car ATE -0.009 m summed, car AP +0.006, truck AP -0.004 in one run, world v1
            unchanged).
        open_top_classes: classes whose upper half stands back from their box's outline (a car's cabin, bonnet and
            boot; a truck's cab): their returns there cost nothing inside a candidate box (core.segments
            `open_top`). World v2's cars have a cabin 7 % of their width in from the body's sides and half their
            length long, and a bonnet and boot 45 % of their height below the roof: returns there lie inside the
            box and were counted as off its surface. On the tuning worlds (v1 seeds 5-6, v2 seeds 9-10, perfect and
            good 2D) car ATE fell on all four world v2 runs (-0.020 m summed) and rose on all four world v1 runs
            (+0.014 m summed; v1's cars are plain boxes, whose upper returns lie on the outline); car AP +0.015
            summed on v2, -0.002 on v1; mAP -0.003 summed over all eight.
        ground, cluster, fit: ground-surface, frustum-cluster and segment box-fit (core.segments) parameters.
    """

    iou_threshold: float = 0.8
    lidar_iou_threshold: float = 0.5
    top_k: int = 4
    min_support_points: int = 3
    min_support_by_class: tuple[tuple[str, int], ...] = (("pedestrian", 2),)
    segment_gap_per_depth_by_class: tuple[tuple[str, float], ...] = (("barrier", 0.06),)
    border_cell_m: float = 0.15
    edge_band: float = 0.15
    edge_window_m: float = 0.75
    containment_margin_m: float = 0.25
    surface_sigma_m: float = 0.2
    prior_std_scale: float = 1.5
    heading_tolerance_deg: float = 10.0
    max_range_factor: float = 1.2
    prior_window_std: float = 1.5
    max_fit_points: int = 16
    foot_gap: float = 0.4
    foot_reach: float = 0.35
    beam_spacing_deg: float = 1.33
    top_beam_deg: float = 10.67
    no_lidar_fit: float = 0.5
    nms_iou: float = 0.1
    min_score: float = 0.0
    flat_face_classes: tuple[str, ...] = ("barrier",)
    prior_length_classes: tuple[str, ...] = ("car", "truck")
    low_front_classes: tuple[str, ...] = ("car", "truck")
    open_top_classes: tuple[str, ...] = ("car", "truck")
    ground: GroundParams = field(default_factory=GroundParams)
    cluster: ClusterParams = field(default_factory=lambda: ClusterParams(segment_gap_m=0.6,
                                                                          segment_gap_per_depth=0.04))
    fit: FitParams = field(default_factory=FitParams)


def detect_3d(points_lidar: np.ndarray, views: Sequence[CameraView], T_base_lidar: np.ndarray,
              frame_id: str = "base_link", stamp_ns: int = 0, params: LiftParams = LiftParams(),
              timings: dict[str, float] | None = None, split: SweepGround | None = None,
              frustums: Sequence[ViewFrustums | None] | None = None) -> Detections3D:
    """3D boxes of the 2D detections of all cameras, in the frame of T_base_lidar (named `frame_id`).

    Args:
        points_lidar: (N, >=3) LiDAR points in the LiDAR frame [m] (may be empty: then no LiDAR support;
            non-finite rows are ignored).
        views: per camera: Detections2D, CameraModel and T_cam_lidar.
        T_base_lidar: 4x4 LiDAR -> output frame transform (the ground surface is built in that frame, z up).
        timings: if given, filled with the milliseconds of each step: ground, support (frustums, clusters,
            headings), anchors (QAF2D), choose_refine, merge (transform, NMS and the row fill).
        split: sweep_ground's result for the finite points with params.ground, when already computed (the nodes
            of one process share it per sweep: nodes.shared_sweep); computed here when None.
        frustums: core.view_frustums' result for the views and the non-ground points of that split with
            params.cluster and its ground contact (core.ground_contact.GroundContact.of), when already computed
            (shared like split); computed here when None.
    """
    clock = _StepClock(timings)
    xyz, finite = check_points(points_lidar, "detect_3d")
    pts = np.compress(finite, xyz, axis=0)  # compress and take select rows ~3x faster than indexing
    ground = checked_split(split, len(pts)) if split is not None else sweep_ground(pts, T_base_lidar, params.ground)
    objects = np.compress(~ground.is_ground, pts, axis=0)
    object_height = ground.height[~ground.is_ground]
    ground_pts = np.compress(ground.is_ground, pts, axis=0)
    clock.step("ground")
    contact = GroundContact.of(ground, T_base_lidar, params.ground)
    frustums = checked_frustums(frustums, views) if frustums is not None else view_frustums(objects, views,
                                                                                             params.cluster, contact)
    object_cells = BevCells(objects, params.border_cell_m)
    present = [camera_frustums for camera_frustums in frustums if camera_frustums is not None]
    seen = _SeenColumns.of(present, len(objects))
    supports = _box_supports(objects, object_cells, object_height, ground_pts, seen, params)
    clock.step("support")
    lifted = _lift_all(supports, params, clock, contact) if supports else None
    if lifted is None:
        return Detections3D.empty(frame_id, stamp_ns)
    lidar, camera = lifted
    out = Detections3D(lidar.centers, lidar.sizes_lwh, lidar.yaws, lidar.class_ids, lidar.scores, "lidar",
                       stamp_ns).transformed(T_base_lidar, frame_id)
    keep = np.flatnonzero(out.scores >= params.min_score)
    scored = out if len(keep) == len(out.scores) else out.select(keep)  # all kept (often): no copy
    out = out.select(keep[bev_nms(scored, params.nms_iou, camera[keep])])
    out = fill_row_gaps(out, transform_points(T_base_lidar, objects[:, :3])[:, :2], object_height)
    clock.step("merge")
    return out


class _StepClock:
    """Records milliseconds between consecutive `step` calls into a dict (does nothing without one)."""

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.last = time.perf_counter()

    def step(self, name: str) -> None:
        if self.out is not None:
            now = time.perf_counter()
            self.out[name] = self.out.get(name, 0.0) + 1e3 * (now - self.last)
            self.last = now


THIN_FOOTPRINT_RATIO = 2.0


def _centre_merge_distance(cls: str) -> float:
    """bev_nms's centre distance [m] below which two boxes of class cls are one object (0: IoU alone decides)."""
    if cls not in SIZE_PRIOR_WLH:
        return 0.0
    short, long = sorted(SIZE_PRIOR_WLH[cls][0][:2])
    return short if long >= THIN_FOOTPRINT_RATIO * short else 0.0


def bev_nms(dets: Detections3D, iou_threshold: float, sources: np.ndarray | None = None) -> np.ndarray:
    """Indices (sorted) of the boxes kept by class-aware greedy NMS, highest score first.

    `sources` (N,) names the image each box was lifted from (None: all different): boxes of one image are never
    merged. They come from distinct 2D boxes, i.e. distinct objects (the 2D detector ran its own NMS), and only an
    object seen by two cameras is lifted twice; touching objects of one image (a barrier row, whose boxes overlap
    when one is placed a little long) stay apart.

    Two boxes of one class are the same object when their rotated BEV IoU exceeds `iou_threshold` or, for a class
    of thin footprint (mean long side at least THIN_FOOTPRINT_RATIO x the short side: barriers, vehicles), their
    centres are closer than its smaller mean side (two such objects side by side are at least that far apart; this
    catches thin objects such as barriers, whose IoU collapses with a small sideways offset). Square footprints
    keep IoU with an offset and have no such rule: pedestrians walking shoulder to shoulder stand closer than their
    mean box width (0.67 m), and a distance rule would merge a group into fewer people.
    Boxes touch when their centres are closer than the sum of their footprint radii; each box is compared with the
    kept boxes of its class in its own and the 8 neighbouring cells of a grid as wide as the class's largest
    such sum. The boxes go in score order, _NMS_CHUNK at a time: the touching pairs of a chunk's boxes with the
    boxes kept so far and with each other are found in bulk (neighbour_cell_pairs), then the greedy pass runs over
    those few pairs. Memory is O(N) (no N x N matrices; 20,000 boxes would need gigabytes).
    """
    n = len(dets.scores)
    radius = 0.5 * np.hypot(dets.sizes_lwh[:, 0], dets.sizes_lwh[:, 1])
    corners, area = bev_corners(dets.centers, dets.sizes_lwh, dets.yaws), dets.sizes_lwh[:, 0] * dets.sizes_lwh[:, 1]
    # the class names in order and each box's, by a dict: np.unique of strings sorts all N at ~3x the time
    names = sorted({str(name) for name in dets.class_ids.tolist()})
    index = {name: i for i, name in enumerate(names)}
    group = np.array([index[str(name)] for name in dets.class_ids.tolist()], dtype=np.int64)
    largest = np.full(len(names), -np.inf)
    np.maximum.at(largest, group, radius)
    cell = 2.0 * largest * (1.0 + 1e-9) + 1e-9  # [m] per class; touching boxes: adjacent cells
    with np.errstate(invalid="ignore"):
        cells = np.floor(dets.centers[:, :2] / cell[group, None]).astype(np.int64)
    key, span = cell_keys(group, cells)
    merge = np.array([_centre_merge_distance(name) for name in names])[group]
    src = np.arange(n) if sources is None else np.asarray(sources)
    order = np.argsort(-dets.scores, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    kept = np.zeros(n, dtype=bool)
    for start in range(0, n, _NMS_CHUNK):
        chunk = order[start:start + _NMS_CHUNK]
        i, k = neighbour_cell_pairs(key, span, chunk, np.concatenate([np.flatnonzero(kept), chunk]))
        ahead = (rank[k] < rank[i]) & (src[k] != src[i])
        i, k = i[ahead], k[ahead]
        dx, dy = dets.centers[k, 0] - dets.centers[i, 0], dets.centers[k, 1] - dets.centers[i, 1]
        gap = np.sqrt(dx * dx + dy * dy)
        touching = gap < radius[i] + radius[k]
        i, k, close = i[touching], k[touching], (gap < merge[i])[touching]
        kept[chunk] = True
        # pairs come grouped by i in score order; a box's kept touching boxes are all decided before it
        firsts = np.flatnonzero(np.diff(i, prepend=-1))
        bounds, others, closer, dropped = np.append(firsts, len(i)).tolist(), k.tolist(), close.tolist(), set()
        for box, lo, hi in zip(i[firsts].tolist(), bounds[:-1], bounds[1:]):
            near = [j for j in range(lo, hi) if others[j] not in dropped]
            if near and (any(closer[j] for j in near) or any(
                    footprint_pair_iou(corners[box], area[box], corners[others[j]], area[others[j]]) > iou_threshold
                    for j in near)):
                dropped.add(box)
        kept[list(dropped)] = False
    return np.flatnonzero(kept)


# bev_nms's boxes per pass: bounds the candidate pairs of a dense scene (20,000 boxes), one pass on a sweep's few
# hundred boxes
_NMS_CHUNK = 512


@dataclass
class _SeenColumns:
    """The cameras' shares of a sweep (core.view_frustums, the cameras with boxes) and the image column u [px] of
    each object point in each of them: columns (K, N), NaN where the camera does not see the point in its image;
    with the left and right edges [px] of each camera's boxes, box_edges (K, M, 2), and their classes' numbers,
    box_class (K, M) (NaN and -1 past a camera's last box)."""

    frustums: list[ViewFrustums]
    columns: np.ndarray
    box_edges: np.ndarray
    box_class: np.ndarray

    @classmethod
    def of(cls, frustums: list[ViewFrustums], num_objects: int) -> _SeenColumns:
        columns = np.full((len(frustums), num_objects), np.nan)
        most = max([len(camera_frustums.dets) for camera_frustums in frustums], default=0)
        box_edges = np.full((len(frustums), most, 2), np.nan)
        box_class = np.full((len(frustums), most), -1)
        number: dict[str, int] = {}
        for k, camera_frustums in enumerate(frustums):
            columns[k, camera_frustums.cloud.index] = camera_frustums.cloud.uv[:, 0]
            dets = camera_frustums.dets
            box_edges[k, :len(dets)] = dets.boxes_xyxy[:, [0, 2]]
            box_class[k, :len(dets)] = [number.setdefault(name, len(number)) for name in dets.class_ids]
        return cls(frustums, columns, box_edges, box_class)


@dataclass
class _BoxSupport:
    """One camera's boxes (known classes only) with their LiDAR support and search restrictions.

    Attributes:
        view: the camera; dets: its boxes; supported: (B,) enough cluster points; windows: (B, 2, 2) edge depth
        windows [m]; heading: (B,) cluster footprint heading in the LiDAR frame (NaN without support);
        yaw_masks: (B, 24) QAF2D headings to try; depth_min: (B,) nearest object depth [m]; points: on-object
        cluster points of the supported boxes (LiDAR frame), grouped by box; count: (B,) points per box;
        height_bounds: (B, 2) least and greatest object height above the ground the LiDAR allows [m]; cut_edges:
        (B, 4) whether each edge (left, right, top, bottom) is cut by the image border (ClusterParams.border).
    """

    view: CameraView
    dets: Detections2D
    supported: np.ndarray
    windows: np.ndarray
    heading: np.ndarray
    yaw_masks: np.ndarray
    depth_min: np.ndarray
    points: np.ndarray
    count: np.ndarray
    height_bounds: np.ndarray
    cut_edges: np.ndarray


@dataclass
class _Segments:
    """The object segments (core.frustum.object_points) of every camera's boxes (numbered across the cameras, in
    order), before the growth past the image border: supported (B,): enough on-object points; depth_min (B,): the
    nearest object depth [m] (_foot_nearest_depth); segment_depth (B, 2): the segment's least and greatest depth [m];
    prior_windows (U, 2): the edge depth windows [m] of the unsupported boxes (prior_depth_windows); and per on-object
    point of the supported boxes, grouped by box: box (P,), point_index (P,) into the sweep's object points, depth
    (P,) [m], image column u (P,) [px] and height (P,) above the ground surface [m] (NaN without one)."""

    supported: np.ndarray
    depth_min: np.ndarray
    segment_depth: np.ndarray
    prior_windows: np.ndarray
    box: np.ndarray
    point_index: np.ndarray
    depth: np.ndarray
    u: np.ndarray
    height: np.ndarray


def _box_supports(objects_lidar: np.ndarray, object_cells: BevCells, object_height: np.ndarray,
                  ground_lidar: np.ndarray, seen: _SeenColumns, params: LiftParams) -> list[_BoxSupport]:
    """LiDAR support of every camera's boxes (seen.frustums): object points, nearest depths, edge depth windows and
    headings. objects_lidar, ground_lidar: the sweep's object and ground points (LiDAR frame [m]); object_cells: the
    objects' bird's-eye-view cells (params.border_cell_m); object_height: their heights above the ground surface [m]
    (NaN without one); seen: every camera's share of core.view_frustums and image columns of the object points.
    The boxes of all cameras are handled at once."""
    if not seen.frustums:
        return []
    n_boxes = [len(f.dets) for f in seen.frustums]
    first_box = np.cumsum(n_boxes) - n_boxes
    camera = np.repeat(np.arange(len(n_boxes)), n_boxes)  # of each box
    boxes = np.concatenate([f.dets.boxes_xyxy for f in seen.frustums])
    class_ids = np.concatenate([f.dets.class_ids for f in seen.frustums])
    prior_wlh = size_priors(class_ids)
    segments = _box_segments(object_height, ground_lidar, seen.frustums, boxes, class_ids, prior_wlh, params)
    supported, on_box, point_index = segments.supported, segments.box, segments.point_index
    height_bounds = _lidar_height_bounds(objects_lidar, point_index, on_box, segments.height, len(boxes), params)
    windows = _edge_depth_windows(boxes, supported, on_box, segments.depth, segments.u, segments.segment_depth,
                                  params)
    windows[~supported] = segments.prior_windows[:, None, :]
    count = np.bincount(on_box, minlength=len(boxes))
    size_px = np.array([[f.view.camera.width, f.view.camera.height] for f in seen.frustums], np.float64)[camera]
    cut_edges = params.cluster.border.cuts(boxes, size_px)
    cut = supported & cut_edges[:, :2].any(axis=1)
    row = np.isin(class_ids, params.flat_face_classes)  # a row runs on without a gap: grown by segments, not split
    points, count = _grow_past_image_border(objects_lidar, object_cells, point_index, count, cut, camera, seen, row)
    heading = np.full(len(count), np.nan)
    heading[supported] = lidar_headings(points[:, :2], (np.cumsum(count) - count)[supported], count[supported])
    T_cam_lidar = np.array([f.view.T_cam_lidar for f in seen.frustums])
    points, count, split = _split_overlong(points, count, np.where(row, np.nan, heading), prior_wlh,
                                           T_cam_lidar[camera])
    if split.any():
        heading[split] = lidar_headings(points[:, :2], (np.cumsum(count) - count)[split], count[split])
    yaw_masks = _yaw_masks(heading, camera, T_cam_lidar[:, :3, :3], params.heading_tolerance_deg)
    depth_min = segments.depth_min
    bounds = np.append(first_box, len(boxes))
    held = np.cumsum(np.r_[0, count])[bounds]  # the points of each camera's boxes
    return [_BoxSupport(f.view, f.dets, supported[lo:hi], windows[lo:hi], heading[lo:hi], yaw_masks[lo:hi],
                        depth_min[lo:hi], points[first:last], count[lo:hi], height_bounds[lo:hi], cut_edges[lo:hi])
            for f, lo, hi, first, last in zip(seen.frustums, bounds[:-1], bounds[1:], held[:-1], held[1:])]


def _box_segments(object_height: np.ndarray, ground_lidar: np.ndarray, frustums: list[ViewFrustums],
                  boxes: np.ndarray, class_ids: np.ndarray, prior_wlh: np.ndarray, params: LiftParams) -> _Segments:
    """The object segments and nearest depths of every camera's boxes (frustums: the cameras' shares of
    core.view_frustums; boxes (B, 4) [px], class_ids (B,) and their size priors prior_wlh (B, 2, 3) [m]: the boxes
    of all cameras in order; other arguments as in _box_supports), all cameras at once."""
    clusters, cloud_index = _joined_clusters(frustums)
    images = np.repeat(np.arange(len(frustums)), [len(f.dets) for f in frustums])  # of each box
    pair_height = object_height.take(cloud_index.take(clusters.point))
    low_front = np.where(np.isin(class_ids, params.low_front_classes), params.foot_reach * prior_wlh[:, 0, 1], 0.0)
    bp = object_points(clusters, boxes, params.cluster, images, (pair_height, low_front),
                       *segment_growth(class_ids, prior_wlh, params))
    supported = bp.support >= _min_support(class_ids, params)
    on = np.flatnonzero(bp.on_object & supported.take(bp.box))
    on_box, on_depth, on_u = bp.box.take(on), bp.depth.take(on), bp.u.take(on)
    point_index = cloud_index.take(bp.point.take(on))
    on_height = object_height.take(point_index)
    depth_min = _foot_nearest_depth(bp.depth_min, supported, on_box, on_u, on_height, frustums, boxes, clusters,
                                    bp.on_object, pair_height, prior_wlh, ground_lidar, params)
    fy = np.repeat([f.view.camera.K[1, 1] for f in frustums], [len(f.dets) for f in frustums])
    unsupported = np.flatnonzero(~supported)
    prior = _prior_depth_windows(boxes.take(unsupported, axis=0), class_ids.take(unsupported),
                                 prior_wlh.take(unsupported, axis=0), fy.take(unsupported), params)
    return _Segments(supported, depth_min, np.stack([bp.depth_min, bp.depth_max], axis=1), prior, on_box,
                     point_index, on_depth, on_u, on_height)


def segment_growth(class_ids: np.ndarray, prior_wlh: np.ndarray, params: LiftParams) -> tuple[np.ndarray, np.ndarray]:
    """How detection's segment gap grows with depth for boxes of the classes class_ids (B,) with their size priors
    prior_wlh (B, 2, 3) [m], as core.frustum.object_points takes it: each box's fraction of the depth (B,)
    (segment_gap_per_depth_by_class, else the cluster's) and the longest horizontal side of its class (B,) [m]."""
    return (_by_class(class_ids, params.cluster.segment_gap_per_depth, params.segment_gap_per_depth_by_class),
            prior_wlh[:, 0, :2].max(axis=1))


def _min_support(class_ids: np.ndarray, params: LiftParams) -> np.ndarray:
    """The object points (B,) a box of each class of class_ids (B,) needs for its LiDAR support
    (`min_support_points`, or its class's in `min_support_by_class`)."""
    return _by_class(class_ids, params.min_support_points, params.min_support_by_class)


def _by_class(class_ids: np.ndarray, default: float, overrides: tuple[tuple[str, float], ...]) -> np.ndarray:
    """A parameter's value (B,) for boxes of the classes class_ids (B,): default, or the class's in overrides
    ((class, value) pairs: LiftParams.min_support_by_class, segment_gap_per_depth_by_class)."""
    values = np.full(len(class_ids), default, dtype=np.float64)
    for class_id, value in overrides:
        values[class_ids == class_id] = value
    return values


def _joined_clusters(frustums: list[ViewFrustums]) -> tuple[FrustumClusters, np.ndarray]:
    """The frustum clusters of all cameras as those of one (FrustumClusters.join) and the joined clouds' indices
    (into the sweep's object points) of those points. Segments are per box and owners per point, so object_points
    gives each camera's boxes what it gives them camera by camera, in one pass instead of one per camera."""
    return (FrustumClusters.join([f.clusters for f in frustums], [len(f.cloud.index) for f in frustums]),
            np.concatenate([f.cloud.index for f in frustums]))


def _foot_nearest_depth(depth_min, supported, on_box, on_u, on_height, frustums: list[ViewFrustums], boxes,
                        clusters: FrustumClusters, on_object, pair_height, prior_wlh, ground_lidar: np.ndarray,
                        params: LiftParams) -> np.ndarray:
    """The nearest depth (B,) [m] of each box's object: its segment's depth_min (B,), or nearer where the segment's
    lowest point (heights on_height above the ground [m] of its points, boxes on_box (grouped by box), columns on_u
    [px]) lies more than `foot_gap` x the class's mean height above the ground and returns lie at the object's foot
    within `foot_reach` x its mean length: the lower part of the object was not seen in the segment. Such returns
    are ground returns (ground_lidar, LiDAR frame; core.frustum.foot_depths: a car's bumper at road height is ground
    to core.ground, and a ring passing over its bonnet hits the cabin ~1.4 m further), or low object returns of the
    box's frustum that no box's segment holds (`_low_returns_in_front`: a bumper just above the ground band, seen
    in a strip of the box where nearer objects hide the rest, whose segment the frustum split dropped as an
    occluder). The boxes (B, 4) [px] of all cameras (frustums) in order, their joined frustum clusters (point-box
    pairs: on_object (Q,) which pairs lie on their box's segment, pair_height (Q,) the pairs' heights above the
    ground [m]) and size priors prior_wlh (B, 2, 3) [m]."""
    n_boxes = len(depth_min)
    runs = run_starts(on_box)  # the points come grouped by box
    has = on_box[runs]
    lowest = np.full(n_boxes, np.inf)
    # a point without a ground surface below it (NaN height) never lets its box count as raised
    lowest[has] = np.minimum.reduceat(np.where(np.isnan(on_height), -np.inf, on_height), runs)
    prior = prior_wlh[:, 0]  # (w, l, h)
    raised = supported & np.isfinite(lowest) & (lowest > params.foot_gap * prior[:, 2])
    if not raised.any():
        return depth_min
    columns = np.full((n_boxes, 2), [np.inf, -np.inf])  # the columns [left, right] [px] each segment spans
    columns[has, 0], columns[has, 1] = np.minimum.reduceat(on_u, runs), np.maximum.reduceat(on_u, runs)
    reach = params.foot_reach * prior[:, 1]
    low = _low_returns_in_front(clusters, on_object, pair_height, raised, columns, depth_min, reach,
                                params.foot_gap * prior[:, 2])
    if len(ground_lidar) == 0:
        return np.fmin(depth_min, low)
    # Per camera only the ground returns within the depths of its raised boxes' feet are projected (a small share of
    # the sweep); the feet of all cameras' boxes are then found at once.
    box_start = np.cumsum([0] + [len(f.dets) for f in frustums])
    uv, depth = [], []  # per camera: (2, n) pixels and (n,) depths [m] of its ground returns
    for f, b0, b1 in zip(frustums, box_start[:-1].tolist(), box_start[1:].tolist()):
        mine = np.flatnonzero(raised[b0:b1]) + b0
        if not len(mine):
            uv.append(np.zeros((2, 0)))
            depth.append(np.zeros(0))
            continue
        T = f.view.T_cam_lidar
        ground_depth = ground_lidar @ T[2, :3] + T[2, 3]
        window = np.flatnonzero((ground_depth >= np.min(depth_min[mine] - reach[mine]))
                                & (ground_depth < np.max(depth_min[mine])))
        cloud = project_cloud(np.take(ground_lidar, window, axis=0), f.view.camera, T)
        uv.append(cloud.uv.T)
        depth.append(cloud.points_cam[:, 2])
    foot = foot_depths(np.concatenate(uv, axis=1).T, np.concatenate(depth), boxes, clusters.kind, columns,
                       np.where(raised, depth_min, np.nan), reach,
                       (np.cumsum([0] + [len(d) for d in depth]), box_start))
    return np.fmin(depth_min, np.fmin(low, foot))


def _low_returns_in_front(clusters: FrustumClusters, on_object: np.ndarray, pair_height: np.ndarray,
                          raised: np.ndarray, columns: np.ndarray, depth_min: np.ndarray, reach: np.ndarray,
                          low_below: np.ndarray) -> np.ndarray:
    """Camera depth [m] (B,) of the nearest low object return at the foot of each raised box (B,), NaN where there is
    none: a point-box pair of the joined frustum clusters (pair_height (Q,) above the ground [m]) whose point no
    box's segment holds (on_object (Q,)), not covered (FrustumClusters.covered), lower than low_below (B,) [m], and at
    the foot as core.frustum.nearest_at_foot has it (the columns (B, 2) [px] the box's segment spans, at most reach
    (B,) [m] nearer than its nearest depth depth_min (B,) [m])."""
    held = np.zeros(int(clusters.point.max(initial=-1)) + 1, dtype=bool)
    held[clusters.point[on_object]] = True
    pair = np.flatnonzero(raised.take(clusters.box) & ~clusters.covered)  # the pairs of the raised boxes
    box = clusters.box.take(pair)
    with np.errstate(invalid="ignore"):  # NaN: no ground surface under the point
        low = pair.compress(~held.take(clusters.point.take(pair)) & (pair_height.take(pair) < low_below.take(box)))
    return nearest_at_foot(clusters.box.take(low), clusters.depth.take(low), clusters.u.take(low), columns,
                           depth_min, reach)


def _lidar_height_bounds(objects: np.ndarray, point_index: np.ndarray, box: np.ndarray, height: np.ndarray,
                         n_boxes: int, params: LiftParams) -> np.ndarray:
    """(B, 2) least and greatest height [m] above the ground of each box's object that its segment's returns allow
    (the points objects[point_index] (objects (N, 3) in the LiDAR frame [m], point_index (P,)), of boxes box (P,)
    (grouped by box), heights above the ground surface (P,) [m], NaN without one): at least that of its highest
    return; at most that of the next beam up (`beam_spacing_deg` higher) at that return's range, which passed over the
    object (no bound above the top beam). [0, inf] for a box without such returns. A LiDAR sees a low object's roof
    (its highest return is its top); ring spacing grows with range (0.23 m at 10 m, 0.93 m at 40 m), so far away the
    bound is loose."""
    bounds = np.tile([0.0, np.inf], (n_boxes, 1))
    if len(box) == 0:
        return bounds
    start = run_starts(box)  # the points come grouped by box
    top = np.fmax.reduceat(height, start)  # NaN only where no point has a height
    highest = np.flatnonzero(height == np.repeat(top, np.diff(np.append(start, len(box)))))
    if len(highest) == 0:
        return bounds
    highest = highest[np.append(run_starts(box[highest])[1:], len(highest)) - 1]  # the last of each box's highest
    points = np.take(objects, point_index.take(highest), axis=0)
    reach = np.hypot(points[:, 0], points[:, 1])
    elevation = np.arctan2(points[:, 2], reach)
    step = np.deg2rad(params.beam_spacing_deg)
    next_up = elevation + step
    gap = np.where(next_up <= np.deg2rad(params.top_beam_deg) + 0.5 * step,
                   reach * (np.tan(next_up) - np.tan(elevation)), np.inf)
    bounds[box[highest]] = np.stack([height[highest], height[highest] + gap], axis=1)
    return bounds


def _grow_past_image_border(objects: np.ndarray, cells: BevCells, group_index: np.ndarray, count: np.ndarray,
                            cut: np.ndarray, camera: np.ndarray, seen: _SeenColumns, row: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The on-object point groups of every camera's boxes (indices group_index (P,) into objects (N, 3) [m, LiDAR
    frame], grouped by box, count (B,); the boxes of seen.frustums in order, camera (B,) the index of each one's)
    as points, the group of every box cut by the left or right image border (cut (B,)) replaced by the object points
    within its class's depth extent [m] of the group's median in x and y, connected to the group in bird's-eye view
    (the objects' cells, core.bev_components), within 0.3 m of its height span, and not another object's by what
    the cameras with a box of the object see (_seen_as_another; row (B,): the box is of a class that stands in rows
    end to end, barriers; for those, a camera that sees none of the group has its box by the grown points nearest
    the group, _boxes_past_the_border) (in sweep order).

    A near object spans two cameras and each sees a part of it: the part past the border is the same object's, and
    the box fit needs all of it (a car lifted from the part one camera sees is placed 1-2 m off). But touching
    objects are connected too: a barrier cut by the border took in the next barriers of its row (fitted 3.1 m long
    instead of 2.5 m, 0.33 m off). So a point that the box's camera sees left or right of the box is another
    object's, and so is one that another camera sees beside its box of the object (its box of the class holding the
    most of the group's points it sees). A barrier beside the ego spans two side cameras, and each one's box of it
    overlaps its box of the next barrier: in a row each camera's part of the object is its segment (on both sides
    the growth took in the next barrier, and the barrier was fitted 1.6 m long instead of 2.6 m, 0.55 m off). The
    group's own points always stay. A grown group is kept when it holds more points. All cut boxes are grown at
    once."""
    start = np.cumsum(count) - count
    count = np.array(count, dtype=np.int64)
    cut = np.flatnonzero(cut)
    if not len(cut):
        return np.take(objects, group_index, axis=0), count
    size = count[cut]  # >= 1: cut boxes are supported
    first = np.cumsum(size) - size
    owner = np.repeat(np.arange(len(cut)), size)
    members = group_index[run_indices(start[cut], size)]
    seed = np.take(objects, members, axis=0)
    # each group's (upper) median in x and y: its window's centre
    middle = first + size // 2
    centre = np.stack([seed[np.lexsort((seed[:, axis], owner)), axis][middle] for axis in range(2)], axis=1)
    extent = np.concatenate([f.extent for f in seen.frustums])[cut]
    grown, grown_count, own = connected_in_windows(cells, members, size, centre, extent)
    height = np.take(objects[:, 2], grown)
    keep = ((height >= np.repeat(np.minimum.reduceat(seed[:, 2], first) - 0.3, grown_count))
            & (height <= np.repeat(np.maximum.reduceat(seed[:, 2], first) + 0.3, grown_count)))
    # per camera and group: the camera's box of the object (its index among the camera's boxes, -1: none)
    first_box = np.searchsorted(camera, np.arange(len(seen.frustums)))  # of each camera, among all boxes
    group_camera = camera[cut]
    cut_box = cut - first_box[group_camera]  # the box's index in its camera
    member_columns = seen.columns.take(members, axis=1)
    member_columns[group_camera[owner], np.arange(len(owner))] = np.nan  # its box of an object it cut: the cut box
    boxes_of_group = _boxes_of_groups(member_columns, owner, seen.box_class[group_camera, cut_box], seen)
    boxes_of_group[group_camera, np.arange(len(cut))] = cut_box
    grown_group = np.repeat(np.arange(len(cut)), grown_count)
    boxes_of_group = _boxes_past_the_border(boxes_of_group, objects, grown, grown_group, own, centre,
                                            seen.box_class[group_camera, cut_box], seen, row[cut])
    keep &= ~_seen_as_another(grown, grown_group, boxes_of_group, first_box, group_index, start, count, seen,
                              row[cut])
    keep |= own
    kept = np.bincount(grown_group[keep], minlength=len(cut))
    grown = grown[keep]
    grown_first = np.cumsum(kept) - kept
    pieces, done = [], 0  # the index in pieces: the groups up to position `done` of group_index, grown ones replaced
    for j in np.flatnonzero(kept > size).tolist():
        b = cut[j]
        pieces += [group_index[done:start[b]], grown[grown_first[j]:grown_first[j] + kept[j]]]
        done = start[b] + count[b]
        count[b] = kept[j]
    return np.take(objects, np.concatenate(pieces + [group_index[done:]]), axis=0), count


OVERLONG_STD = 3.0  # a group longer than the class's mean + this many std long side is more than one object
MIN_SPLIT_GAP_M = 0.2  # [m] the least gap between two objects a group is split at


def _split_overlong(points: np.ndarray, count: np.ndarray, heading: np.ndarray, prior_wlh: np.ndarray,
                    T_cam_lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The point groups (points (P, 3) [m, LiDAR frame], grouped by box, count (B,)) with each group longer than one
    object of its class cut down to one; also which boxes (B,) were cut.

    A group whose extent along its longer footprint axis (heading (B,) [rad], NaN: no group) exceeds the class's
    mean + OVERLONG_STD std long side (prior_wlh (B, 2, 3)) is split at its widest gap along that axis (at least
    MIN_SPLIT_GAP_M), keeping the part holding the point nearest to its box's camera (T_cam_lidar (B, 4, 4)), until
    it fits or has no such gap. Objects that touch without a depth jump form one group, and the 2D box cannot part
    them when it spans the image: the car parked next to the ego and the one bumper to bumper behind it (a 9 m
    "car")."""
    start = np.cumsum(count) - count
    limit = (prior_wlh[:, 0, :2] + OVERLONG_STD * prior_wlh[:, 1, :2]).max(axis=1)
    count = np.array(count, dtype=np.int64)
    split = np.zeros(len(count), dtype=bool)
    pieces, done = [], 0  # as in _grow_past_image_border: the groups up to position `done`, cut ones replaced
    groups = np.flatnonzero(np.isfinite(heading) & (count >= 2))
    if len(groups):  # a group longer than the limit along an axis has a bird's-eye bounding box diagonal above it
        held = np.flatnonzero(count)
        span = (np.maximum.reduceat(points[:, :2], start[held], axis=0)
                - np.minimum.reduceat(points[:, :2], start[held], axis=0))
        diagonal = np.hypot(span[:, 0], span[:, 1])[np.searchsorted(held, groups)]
        groups = groups[diagonal > limit[groups] - 1e-6]  # 1e-6 m: far above the rounding of either
    extremes = _footprint_extremes(points, start[groups], count[groups], heading[groups])
    extent = np.stack([extremes[:, 1] - extremes[:, 0], extremes[:, 3] - extremes[:, 2]], axis=1)  # along, across
    for g in np.flatnonzero(extent.max(axis=1) > limit[groups]):
        b = groups[g]
        group = points[start[b]:start[b] + count[b]]
        c, s = np.cos(heading[b]), np.sin(heading[b])
        # the longer footprint axis: along the heading, or across it
        along = group[:, 0] * c + group[:, 1] * s if extent[g, 0] >= extent[g, 1] else group[:, 1] * c - group[:, 0] * s
        depth = group @ T_cam_lidar[b, 2, :3]
        keep = np.ones(len(group), dtype=bool)
        while np.ptp(along[keep]) > limit[b]:
            values = np.sort(along[keep])
            k = int(np.argmax(np.diff(values)))
            if values[k + 1] - values[k] < MIN_SPLIT_GAP_M:
                break
            nearest = along[keep][np.argmin(depth[keep])]
            keep &= (along <= values[k]) if nearest <= values[k] else (along >= values[k + 1])
        if not keep.all():
            split[b] = True
            pieces += [points[done:start[b]], group[keep]]
            done = start[b] + count[b]
            count[b] = int(keep.sum())
    if not split.any():
        return points, count, split
    return np.concatenate(pieces + [points[done:]]), count, split


def _seen_as_another(points: np.ndarray, group: np.ndarray, boxes_of_group: np.ndarray, first_box: np.ndarray,
                     group_index: np.ndarray, start: np.ndarray, count: np.ndarray, seen: _SeenColumns,
                     row: np.ndarray) -> np.ndarray:
    """Which grown points (points (Q,) into the sweep's object points, of groups group (Q,)) are another object's.

    A point is another object's when a camera with a box of its group (boxes_of_group (K, G): the box's index among
    the camera's boxes, -1: none; first_box (K,): the index of each camera's first box among all boxes) sees it
    beside that box's columns. For a group of a row class (row (G,): objects that stand end to end, barriers) a
    camera's box of the object holds one barrier's segment (the on-object points group_index[start[b]:start[b] +
    count[b]] of box b) but its columns overlap the next barrier's box: there the point must lie in the segment
    instead, and where a second camera has a box of the object, a point that no camera with a box of it sees (below
    the images) is dropped too: the object's points are those its boxes' segments hold."""
    n_objects = seen.columns.shape[1]
    # The (camera, point) pairs as flat positions in (K, Q) arrays: takes at them cost a third of 2-D fancy indexing.
    columns, box_of_pair = seen.columns.take(points, axis=1), boxes_of_group.take(group, axis=1)  # (K, Q) each
    pair = np.flatnonzero(~np.isnan(columns) & (box_of_pair >= 0))
    camera, at = np.divmod(pair, len(points))
    point, in_camera, column = points.take(at), box_of_pair.take(pair), columns.take(pair)
    box = first_box.take(camera) + in_camera
    edge = camera * seen.box_edges.shape[1] + in_camera  # flat position in (K, M)
    outside = (column < seen.box_edges[..., 0].take(edge)) | (column > seen.box_edges[..., 1].take(edge))
    by_segment = row.take(group.take(at)) & (count.take(box) > 0)
    segment_boxes = np.unique(box[by_segment])
    size = count[segment_boxes]
    segment_keys = np.repeat(segment_boxes, size) * n_objects + group_index[run_indices(start[segment_boxes], size)]
    outside[by_segment] = ~np.isin(box[by_segment] * n_objects + point[by_segment], segment_keys)
    another = np.zeros(len(points), dtype=bool)
    another[at[outside]] = True
    seen_by_a_box = np.zeros(len(points), dtype=bool)
    seen_by_a_box[at] = True
    two_boxes = row & ((boxes_of_group >= 0).sum(axis=0) >= 2)  # (G,)
    return another | (two_boxes[group] & ~seen_by_a_box)


def _boxes_past_the_border(boxes_of_group: np.ndarray, objects: np.ndarray, grown: np.ndarray,
                           grown_group: np.ndarray, own: np.ndarray, centre: np.ndarray, group_class: np.ndarray,
                           seen: _SeenColumns, row: np.ndarray) -> np.ndarray:
    """boxes_of_group (K, G) (_boxes_of_groups) with, for each group of a row class (row (G,)) and camera that has no
    box of it, the camera's box of the group's class (group_class (G,)) whose columns hold the grown point (grown
    (Q,) into objects (N, 3) [m, LiDAR frame], of groups grown_group (Q,), not the group's own: own (Q,)) it sees
    nearest in bird's-eye view to the group's centre (centre (G, 2) [m]); of several, the one whose middle column is
    nearest the point's.

    A barrier cut by the borders of two cameras may show each camera a part that the other does not see at all: then
    its seed's columns name no box in the other camera, and the growth took in the next barrier of the row there (a
    barrier behind the ego's left side, between CAM_BACK and CAM_BACK_LEFT, was fitted 0.97 m off). Past the border
    the object's points nearest its seed are its own, and the other camera's box that holds them is its box."""
    missing = (boxes_of_group < 0) & row
    # only the points of such groups are looked at (there are none without a row group cut by a border)
    candidate = np.flatnonzero(missing.any(axis=0).take(grown_group) & ~own)
    camera, at = np.nonzero(~np.isnan(seen.columns.take(grown.take(candidate), axis=1))
                            & missing.take(grown_group.take(candidate), axis=1))
    at = candidate.take(at)
    if not len(at) or not seen.box_class.size:
        return boxes_of_group
    group = grown_group[at]
    distance = np.hypot(*(objects[grown[at], :2] - centre[group]).T)
    key = camera * len(row) + group
    nearest = np.lexsort((distance, key))
    nearest = nearest[run_starts(key[nearest])]
    camera, group, point = camera[nearest], group[nearest], grown[at[nearest]]
    column = seen.columns[camera, point][:, None]
    edges = seen.box_edges[camera]  # (S, M, 2)
    holds = (column >= edges[..., 0]) & (column <= edges[..., 1]) & (seen.box_class[camera] == group_class[group, None])
    off_middle = np.where(holds, np.abs(edges.mean(axis=2) - column), np.inf)
    has = holds.any(axis=1)
    chosen = boxes_of_group.copy()
    chosen[camera[has], group[has]] = np.argmin(off_middle, axis=1)[has]
    return chosen


def _boxes_of_groups(columns: np.ndarray, owner: np.ndarray, group_class: np.ndarray,
                     seen: _SeenColumns) -> np.ndarray:
    """(K, G) per camera k of seen and point group g: the index among the camera's boxes of its box of the group's
    class (group_class (G,), seen's numbers) whose columns hold the most of the group's image columns in that camera
    (columns (K, P) [px], NaN: not seen; owner (P,): the group of each point, ascending), -1 where none holds any
    (the first of equals)."""
    chosen = np.full((len(columns), len(group_class)), -1)
    camera, point = np.nonzero(~np.isnan(columns))  # grouped by camera, then group
    if not len(camera) or not seen.box_class.size:
        return chosen
    at = columns[camera, point][:, None]
    box = seen.box_edges[camera]  # (S, M, 2)
    runs = run_starts(camera * len(group_class) + owner[point])
    held = np.add.reduceat((at >= box[..., 0]) & (at <= box[..., 1]), runs, axis=0, dtype=np.int64)
    camera, group = camera[runs], owner[point[runs]]
    held *= seen.box_class[camera] == group_class[group, None]
    best = np.argmax(held, axis=1)
    has = held[np.arange(len(runs)), best] > 0
    chosen[camera[has], group[has]] = best[has]
    return chosen


def _lift_all(supports: list[_BoxSupport], params: LiftParams, clock: _StepClock,
              contact: GroundContact | None) -> tuple[Detections3D, np.ndarray] | None:
    """Anchors, choice and refinement for the boxes of all cameras at once: boxes in the LiDAR frame and the
    index (into supports) of the camera of each (contact: the sweep's ground surface; None without one)."""
    cameras = [sup.view.camera for sup in supports]
    T_cam_lidar = np.array([sup.view.T_cam_lidar for sup in supports])
    T_lidar_cam = invert_transform(T_cam_lidar)
    cam = np.repeat(np.arange(len(supports)), [len(sup.dets) for sup in supports])
    boxes = np.vstack([sup.dets.boxes_xyxy for sup in supports])
    classes = np.concatenate([sup.dets.class_ids for sup in supports])
    scores = np.concatenate([sup.dets.scores for sup in supports])
    supported = np.concatenate([sup.supported for sup in supports])
    heading = np.concatenate([sup.heading for sup in supports])
    depth_min = np.concatenate([sup.depth_min for sup in supports])
    height_bounds = np.vstack([sup.height_bounds for sup in supports])
    points = np.vstack([sup.points for sup in supports])
    count = np.concatenate([sup.count for sup in supports])
    start = np.cumsum(count) - count
    prior_wlh = size_priors(classes)  # (B, mean/std, wlh)

    threshold = np.where(supported, params.lidar_iou_threshold, params.iou_threshold)
    anchors = lift_boxes_multi(boxes, classes, cam, cameras, T_lidar_cam, threshold, params.top_k,
                               np.concatenate([sup.windows for sup in supports]),
                               np.concatenate([sup.yaw_masks for sup in supports]), top_k_per_yaw=True)
    missing = np.flatnonzero(supported & (np.bincount(anchors.box_index, minlength=len(boxes)) == 0))
    if len(missing):  # LiDAR windows that admit no anchor: search all depths for these boxes
        retry = lift_boxes_multi(boxes[missing], classes[missing], cam[missing], cameras, T_lidar_cam,
                                 params.lidar_iou_threshold, params.top_k, top_k_per_yaw=True)
        retry.box_index = missing[retry.box_index]
        anchors = _concat_anchors(anchors, retry)
    clock.step("anchors")
    if len(anchors) == 0:
        return None

    # Choose: IoU x size prior x (with LiDAR) closeness of the cluster to the anchor's outline.
    box_of = anchors.box_index
    lid = np.flatnonzero(supported[box_of])  # the anchors with LiDAR
    # their rows by take: a boolean mask on (N, 3) rows costs ~4x more
    lid_box, lid_size = box_of.take(lid), anchors.sizes_lwh.take(lid, axis=0)
    slid = slide_to_depth(anchors.centers_cam.take(lid, axis=0), lid_size, anchors.ry.take(lid),
                          depth_min.take(lid_box))
    centers_cam = anchors.centers_cam.copy()
    centers_cam[lid] = slid
    sample, sample_start, sample_count = _subsample_groups(start, count, params.max_fit_points)
    padded, valid = _pad_groups(np.take(points, sample, axis=0), sample_start, sample_count)
    T_anchor = np.take(T_lidar_cam, cam.take(lid_box), axis=0)  # a take of (4, 4) blocks: ~3x faster
    centers_lidar = np.einsum("nij,nj->ni", T_anchor[:, :3, :3], slid) + T_anchor[:, :3, 3]
    off_surface = _outline_distance(centers_lidar, lid_size, anchors.yaws.take(lid), lid_box, padded, valid)
    key = anchors.ious * np.exp(size_log_prior(anchors.sizes_lwh, prior_wlh, box_of, params.prior_std_scale))
    key[lid] *= np.exp(-off_surface / params.surface_sigma_m)
    chosen, pick = _best_of_groups(box_of, key)

    size = anchors.sizes_lwh[pick]
    ry = anchors.ry[pick]
    has_lidar = supported[chosen]
    # Without LiDAR the size sets the depth along the ray: solve with the class's mean size instead of the grid's.
    size[~has_lidar] = wlh_to_lwh(prior_wlh[chosen[~has_lidar], 0])
    # With LiDAR the height lies within what its returns allow.
    low, high = height_bounds[chosen[has_lidar]].T
    size[has_lidar, 2] = np.clip(size[has_lidar, 2], low, high)
    # With LiDAR the heading is the cluster's (continuous), taken in the anchor's direction.
    lidar_yaw = heading[chosen[has_lidar]]
    turns = np.round(wrap_angle(anchors.yaws[pick[has_lidar]] - lidar_yaw) / (np.pi / 2))
    ry[has_lidar] = yaw_to_ry(lidar_yaw + turns * np.pi / 2, T_cam_lidar[cam[chosen[has_lidar]], :3, :3])
    norm, clipped, limits = normalise_boxes(boxes[chosen], cam[chosen], cameras)
    on_border = np.vstack([sup.cut_edges for sup in supports])[chosen]
    center = place_by_box_edges(centers_cam[pick], size, ry, norm, on_border)
    standing = np.flatnonzero(~has_lidar & ~on_border[:, 3])  # without LiDAR, their bottom edge in the image
    if contact is not None and len(standing):
        center[standing] = _on_the_ground(center[standing], size[standing], ry[standing], norm[standing],
                                          contact.T_base_lidar @ T_lidar_cam[cam[chosen[standing]]],
                                          prior_wlh[chosen[standing]], contact)
    T_box = T_lidar_cam[cam[chosen]]
    centers_lidar = np.einsum("nij,nj->ni", T_box[:, :3, :3], center) + T_box[:, :3, 3]
    yaws = ry_to_yaw(ry, T_box[:, :3, :3])
    # With LiDAR: size, position and quarter turn searched against the segment, the 2D box and the size prior.
    lid = np.flatnonzero(has_lidar)
    T_cam_box = T_cam_lidar[cam[chosen]]
    fitted = chosen[lid]
    extremes = _footprint_extremes(points, start[fitted], count[fitted], heading[fitted])
    problem = FitProblem(padded[fitted], valid[fitted], T_cam_box[lid], clipped[lid], limits[lid], prior_wlh[fitted],
                         norm[lid], on_border[lid], depth_min[fitted],
                         np.isin(classes[fitted], params.flat_face_classes), heading[fitted], extremes,
                         _behind_a_nearer_box(boxes, cam, depth_min)[fitted] & (count[fitted] >= HIDDEN_MIN_POINTS),
                         np.isin(classes[fitted], params.prior_length_classes),
                         # the ground under the boxes whose height the LiDAR bounds (it saw their roof)
                         np.where(np.isfinite(height_bounds[fitted, 1]),
                                  _ground_under(extremes, heading[fitted], contact), np.nan),
                         np.isin(classes[fitted], params.open_top_classes))
    centers_lidar[lid], size[lid], yaws[lid] = fit_boxes(centers_lidar[lid], size[lid], yaws[lid], problem,
                                                         params.fit)
    center[lid] = np.einsum("nij,nj->ni", T_cam_box[lid, :3, :3], centers_lidar[lid]) + T_cam_box[lid, :3, 3]
    ry[lid] = yaw_to_ry(yaws[lid], T_cam_box[lid, :3, :3])

    # Score: 2D score x projected IoU x (contained cluster fraction x LiDAR evidence, or the no-LiDAR factor).
    projected = projected_extent(center, size, ry)
    projected = np.minimum(np.maximum(projected, limits[:, [0, 1, 0, 1]]), limits[:, [2, 3, 2, 3]])
    iou = paired_iou(projected, clipped)
    inside = _contained_fraction(centers_lidar, size, yaws, chosen, padded, valid, params.containment_margin_m)
    fit = iou * np.where(has_lidar, inside * _lidar_evidence(count[chosen], classes[chosen], params),
                         params.no_lidar_fit)
    clock.step("choose_refine")
    return Detections3D(centers_lidar, size, yaws, classes[chosen], scores[chosen] * fit, "lidar"), cam[chosen]


# A box whose near end a nearer object may hide (core.segments.FitProblem.near_end_hidden): at least HIDDEN_SHARE of
# its area under a nearer object's box, and at least HIDDEN_MIN_POINTS segment points. On the tuning worlds (v1 seeds
# 5-6, v2 seeds 9-10, perfect and good 2D): share 0.1 without a point minimum lowered mAP in 6 of 8 runs; 0.3 without
# one moved far cars (25-39 m, 5-16 returns) 1.3-3.6 m further off (v2 seed 10 good: car ATE +0.019 m); 0.3 with 30
# points left mAP level (sum of the 8 changes -0.0005), raised car AP in all 8 and lowered the car ATE in 6.
HIDDEN_SHARE = 0.3
HIDDEN_MIN_POINTS = 30


def _on_the_ground(center_cam: np.ndarray, size_lwh: np.ndarray, ry: np.ndarray, norm: np.ndarray,
                   T_base_cam: np.ndarray, prior_wlh: np.ndarray, contact: GroundContact) -> np.ndarray:
    """Centres (B, 3) (camera frame [m]) of boxes without LiDAR (sizes (B, 3), headings ry (B,), placed by their 2D
    boxes norm (B, 4) in normalised image coordinates, whose depth comes from the class's mean size: priors (B, 2,
    3)), moved along their rays towards where they stand on the ground surface (T_base_cam (B, 4, 4)): to their
    log-depth combination with the box slid so that its nearest bottom corner lies at the ground contact's depth
    (core.ground_contact; the size's relative error is the class's height std / mean)."""
    depth, contact_error = contact.depths(norm, T_base_cam)
    meets = np.isfinite(depth)
    if not meets.any():
        return center_cam
    on_ground = slide_to_depth(center_cam[meets], size_lwh[meets], ry[meets], depth[meets])
    weight = contact_weight(prior_wlh[meets, 1, 2] / prior_wlh[meets, 0, 2], contact_error[meets])
    out = center_cam.copy()
    out[meets] = center_cam[meets] * blend(center_cam[meets, 2], on_ground[:, 2], weight)[:, None]
    return out


def _ground_under(extremes: np.ndarray, heading: np.ndarray, contact: GroundContact | None) -> np.ndarray:
    """Height (B,) of the ground (LiDAR frame z [m]) under the middle of each segment's footprint (extremes (B, 4)
    along and across its heading (B,) [rad], FitProblem); NaN without a surface or a heading."""
    along, across = 0.5 * (extremes[:, 0] + extremes[:, 1]), 0.5 * (extremes[:, 2] + extremes[:, 3])
    c, s = np.cos(heading), np.sin(heading)
    middle = np.stack([along * c - across * s, along * s + across * c, np.zeros(len(heading))], axis=1)
    if contact is None or len(middle) == 0:
        return np.full(len(middle), np.nan)
    base = transform_points(contact.T_base_lidar, np.nan_to_num(middle))
    base[:, 2] = contact.surface.height_at(base[:, :2])
    z = transform_points(invert_transform(contact.T_base_lidar), base)[:, 2]
    return np.where(np.isfinite(middle[:, 0]), z, np.nan)


def _behind_a_nearer_box(boxes: np.ndarray, camera: np.ndarray, depth_min: np.ndarray) -> np.ndarray:
    """Which boxes (B, 4) [px] have at least HIDDEN_SHARE of their area covered by one box of the same camera
    (camera (B,)) whose object lies nearer (segment's nearest depth depth_min (B,) [m]; NaN, no LiDAR support, is
    never nearer)."""
    # The box pairs within each camera (a tenth of all pairs with six) as flat pair lists i, j: half the time of a
    # pairwise matrix per camera.
    order = np.argsort(camera, kind="stable")
    first = run_starts(camera.take(order))
    size = np.diff(first, append=len(order))
    others = np.repeat(size, size)  # per box (in `order`) the boxes of its camera
    i = np.repeat(order, others)
    j = order.take(run_indices(np.repeat(first, size), others))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    covers = paired_intersection_2d(boxes.take(i, axis=0), boxes.take(j, axis=0)) >= HIDDEN_SHARE * area.take(i)
    covers &= depth_min.take(j) < depth_min.take(i)
    behind = np.zeros(len(boxes), dtype=bool)
    behind[i[covers]] = True
    return behind


HEADING_STEP_DEG = 3.0
_HEADINGS = np.radians(np.arange(0.0, 90.0, HEADING_STEP_DEG))  # lidar_headings' candidates [rad]
_HEADING_COS_SIN = np.cos(_HEADINGS), np.sin(_HEADINGS)


def lidar_headings(points_xy: np.ndarray, start: np.ndarray, count: np.ndarray, max_points: int = 32) -> np.ndarray:
    """Footprint heading (G,) [rad, in [0, pi/2)] of point groups points_xy[start[g] : start[g] + count[g]].

    Rectangle fitting in bird's-eye view: for headings 0..90 deg in 3 deg steps the group's points are put in
    that frame, and the heading whose bounding rectangle leaves the points closest to its outline (mean
    distance to the nearest side) wins; a LiDAR sees one or two sides of an object, both lie on the outline.
    Groups are subsampled to at most `max_points` points. The heading is defined modulo 90 degrees.
    """
    if len(count) == 0:
        return np.zeros(0)
    index, first, kept = _subsample_groups(start, count, max_points)
    x, y = points_xy[:, 0].take(index), points_xy[:, 1].take(index)
    cos, sin = _HEADING_COS_SIN
    # Heading-major (H, P): the group reductions run along contiguous rows, ~20 % faster than along columns of (P, H).
    a = np.multiply.outer(cos, x)
    a += np.multiply.outer(sin, y)
    b = np.multiply.outer(cos, y)
    b -= np.multiply.outer(sin, x)  # y cos - x sin: the same floats as -x sin + y cos

    def to_sides(coord: np.ndarray) -> np.ndarray:  # per heading, each point's distance to its group's nearer side
        low = np.repeat(np.minimum.reduceat(coord, first, axis=1), kept, axis=1)
        high = np.repeat(np.maximum.reduceat(coord, first, axis=1), kept, axis=1)
        high -= coord
        coord -= low
        return np.minimum(coord, high, out=coord)

    spread = np.add.reduceat(np.minimum(to_sides(a), to_sides(b)), first, axis=1)
    return _HEADINGS[np.argmin(spread, axis=0)]


def _footprint_extremes(points: np.ndarray, start: np.ndarray, count: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """(G, 4) least and greatest coordinate [m] of the point groups points[start[g] : start[g] + count[g]] (LiDAR
    frame, count >= 1) along their headings (G,) [rad] and across them: [along min, along max, across min, across
    max]."""
    first = np.cumsum(count) - count
    if len(count) and np.array_equal(start, start[0] + first):  # the groups follow each other: a slice
        xy = points[start[0]:start[0] + first[-1] + count[-1], :2]
    else:
        xy = points[run_indices(start, count), :2]
    c, s = np.repeat(np.cos(heading), count), np.repeat(np.sin(heading), count)
    along, across = xy[:, 0] * c + xy[:, 1] * s, xy[:, 1] * c - xy[:, 0] * s
    return np.stack([np.minimum.reduceat(along, first), np.maximum.reduceat(along, first),
                     np.minimum.reduceat(across, first), np.maximum.reduceat(across, first)], axis=1)


def _subsample_groups(start, count, max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every k-th member of each group start[g] : start[g] + count[g] so that at most ~max_points remain.

    Returns the kept indices (grouped, in order) and the new starts and counts of the groups.
    """
    count = np.asarray(count, dtype=np.int64)
    stride = np.maximum(1, -(-count // max_points))
    kept = -(-count // stride)  # members 0, stride, 2 stride, ... below count
    first = np.cumsum(kept) - kept
    rank = np.arange(int(kept.sum())) - np.repeat(first, kept)
    return np.repeat(np.asarray(start), kept) + rank * np.repeat(stride, kept), first, kept


def _yaw_masks(heading: np.ndarray, camera: np.ndarray, R_cam_lidar: np.ndarray, tolerance_deg: float) -> np.ndarray:
    """(B, 24) QAF2D heading candidates within tolerance of one of the 4 directions of each LiDAR heading
    (all candidates where the heading is NaN), of boxes of cameras camera (B,), ascending, with rotations
    R_cam_lidar (K, 3, 3)."""
    masks = np.ones((len(heading), len(YAW_CANDIDATES)), dtype=bool)
    known = np.flatnonzero(np.isfinite(heading))
    if len(known) == 0:
        return masks
    turns = heading[known, None] + np.arange(4) * np.pi / 2
    ry = np.empty_like(turns)
    runs = np.append(run_starts(camera[known]), len(known)).tolist()
    for lo, hi in zip(runs[:-1], runs[1:]):
        ry[lo:hi] = yaw_to_ry(turns[lo:hi].ravel(), R_cam_lidar[camera[known[lo]]]).reshape(-1, 4)
    # Turn-major (4, B', 24): the least over the turns is 3 elementwise minimums. Candidate - ry + pi lies in [0, 4 pi)
    # (candidates in [0, 2 pi), ry in [-pi, pi]): less 2 pi where it reaches 2 pi is exactly wrap_angle's remainder
    # (Sterbenz: the difference is exact), which costs ~6x more.
    shifted = (YAW_CANDIDATES[None, None, :] - ry.T[:, :, None]) + np.pi
    diff = np.abs(np.where(shifted >= 2.0 * np.pi, shifted - 2.0 * np.pi, shifted) - np.pi).min(axis=0)
    masks[known] = diff <= np.radians(tolerance_deg)
    return masks


def prior_depth_windows(boxes, class_ids, camera, params: LiftParams) -> np.ndarray:
    """(B, 2) edge depths [m] at which the box height fits the class prior height (mean +- prior_window_std std),
    capped at `max_range_factor` x the class's evaluation range: the search space of boxes without LiDAR."""
    return _prior_depth_windows(boxes, class_ids, size_priors(class_ids), camera.K[1, 1], params)


def _prior_depth_windows(boxes, class_ids, prior_wlh, fy, params: LiftParams) -> np.ndarray:
    """prior_depth_windows of boxes (B, 4) [px] with their classes' size priors prior_wlh (B, 2, 3) [m] and the
    focal length fy [px] of each one's camera (a scalar or (B,)): the boxes of several cameras at once."""
    h_lo = prior_wlh[:, 0, 2] - params.prior_window_std * prior_wlh[:, 1, 2]
    h_hi = prior_wlh[:, 0, 2] + params.prior_window_std * prior_wlh[:, 1, 2]
    pixels = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    cap = params.max_range_factor * np.array([DETECTION_RANGE_M[c] for c in class_ids])
    lo = np.minimum(fy * np.maximum(h_lo, 0.1) / pixels, cap)
    return np.stack([lo, np.minimum(fy * h_hi / pixels, cap)], axis=1).reshape(-1, 2)


def _edge_depth_windows(boxes, supported, on_box, on_depth, on_u, segment_depth, params: LiftParams) -> np.ndarray:
    """(B, 2 edges, 2) [min, max] edge depth candidates per box from its cluster points (on_box (grouped by box),
    on_depth [m], on_u [px]; without points on an edge: the segment's least and greatest depth segment_depth (B, 2)
    [m]); NaN = unrestricted."""
    whole = np.stack([segment_depth[:, 0] - params.edge_window_m, segment_depth[:, 1] + params.edge_window_m], axis=1)
    windows = np.repeat(whole[:, None, :], 2, axis=1)
    left, right = boxes[:, 0].take(on_box), boxes[:, 2].take(on_box)
    width = right - left
    bands = (on_u <= left + params.edge_band * width, on_u >= right - params.edge_band * width)
    for edge, band in enumerate(bands):
        band_box, band_depth = on_box[band], on_depth[band]
        if len(band_box):
            runs = run_starts(band_box)  # a reduceat over the boxes' runs: ~2x faster than minimum.at
            windows[band_box.take(runs), edge, 0] = np.minimum.reduceat(band_depth, runs) - params.edge_window_m
            windows[band_box.take(runs), edge, 1] = np.maximum.reduceat(band_depth, runs) + params.edge_window_m
    windows[~supported] = np.nan
    return windows


def _pad_groups(points: np.ndarray, start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups points[start[g] : start[g] + count[g]] as a padded (G, K, 3) array and its validity mask (G, K)."""
    width = max(int(count.max()) if len(count) else 0, 1)
    slot = np.arange(width)
    valid = slot[None, :] < count[:, None]
    index = np.where(valid, start[:, None] + slot[None, :], 0)
    padded = np.take(points, index, axis=0) if len(points) else np.zeros((len(count), width, 3))
    return padded, valid


def _outline_distance(centers, sizes_lwh, yaws, box_of, padded, valid) -> np.ndarray:
    """Mean bird's-eye-view distance (M,) [m] of the cluster points of box m's 2D box b = box_of[m] (padded
    (B, K, 3), valid (B, K)) to the box outline: points on the visible faces of a well-fitting box are near 0."""
    outline = surface_distance(box_frame_excess(padded[..., :2], box_of, centers, sizes_lwh,
                                                (np.cos(yaws), np.sin(yaws))))  # (K, M)
    return point_sum(np.where(gather_groups(valid.T, box_of), outline, 0.0)) / np.maximum(valid.sum(axis=1), 1)[box_of]


def _lidar_evidence(points: np.ndarray, class_ids: np.ndarray, params: LiftParams) -> np.ndarray:
    """Score factor (N,) in (0, 1) of boxes placed by `points` (N,) object points: n / (n + m), m their class's
    minimum support (`_min_support`). A box placed by a few returns is less sure of its place than one placed by a
    hundred; what ranks or weighs detections by score (a tracker; the devkit's AP, and its errors, which are means over
    the best-scored matches first) then trusts the well-seen ones first."""
    return points / (points + _min_support(class_ids, params))


def _contained_fraction(centers, sizes_lwh, yaws, box_of, padded, valid, margin) -> np.ndarray:
    """Fraction (M,) of the cluster points of box m's 2D box b = box_of[m] (padded (B, K, 3), valid (B, K)) inside
    the box grown by `margin` [m]."""
    ax, ay, az = box_frame_excess(padded, box_of, centers, sizes_lwh, (np.cos(yaws), np.sin(yaws)))  # (K, M)
    inside = (ax <= margin) & (ay <= margin) & (az <= margin) & gather_groups(valid.T, box_of)
    return inside.sum(axis=0) / np.maximum(valid.sum(axis=1), 1)[box_of]


def _best_of_groups(group: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups (G,) present in group (N,), ascending, and per group the index of its member of the highest key
    (N,) (NaN: lowest; the first of equal keys): the first per group of np.lexsort((-key, group)), without sorting
    the keys."""
    order = np.argsort(group, kind="stable")
    starts = run_starts(group[order])
    members = np.diff(np.r_[starts, len(order)])
    keys = key[order]
    best = np.fmax.reduceat(keys, starts)  # NaN only where all of a group's keys are
    hits = np.flatnonzero((keys == np.repeat(best, members)) | np.repeat(np.isnan(best), members))
    return group[order[starts]], order[hits[np.searchsorted(hits, starts)]]


def _concat_anchors(a: Anchors, b: Anchors) -> Anchors:
    return Anchors(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                     ("box_index", "centers", "sizes_lwh", "yaws", "ious", "centers_cam", "ry")))
