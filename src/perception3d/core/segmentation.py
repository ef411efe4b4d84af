"""2DDATA box prior without a network: LiDAR point labels from 2D boxes and the ground surface.

1. Ground: the ground surface of the sweep in base_link (core.ground: a local ground height that follows grade,
   crown and kerb steps); its points are `driveable_surface` (11), or `sidewalk` (13) on a level raised beyond a
   kerb step (the upper half of the kerb face included: a kerb bounds the pedestrian area and is no road; nuScenes'
   other_flat explicitly excludes kerbs), with score 1 - |height above the surface| / threshold, except the
   points of the band between `min_object_height_m` and the threshold that fall inside a box within its object's
   cluster depth range: those are the object's lowest part (wheels, feet) and take the box's class.
2. Objects: the remaining points are projected into every camera; a point inside a 2D box and on the box's object
   depth cluster (core.frustum: depth gating keeps the background behind the object out, and where two boxes of a
   class overlap the lower one's object hides the other's; the frustums are detection3d's, core.view_frustums, and
   the clusters are kept whole, not cut into segments) takes the box's class
   (detection class -> lidarseg index, core.classes.DETECTION_TO_LIDARSEG) and the box's 2D score. A point in
   several boxes (overlapping boxes, or two cameras) takes the box whose object is nearest (median cluster
   depth), as the occluding object is the one seen.
3. Blind spots: non-ground points no camera sees (beside the vehicle, between the side cameras' fields of view)
   take the majority label of the labelled object points they connect to through neighbours closer than
   `blind_link_m`, with half the score; a car half in a blind spot is labelled whole.
4. Everything else is 0 = ignore/unlabelled with score 0: the other stuff classes (terrain, manmade,
   vegetation, other_flat) are beyond a box prior and need the learned mode.
Boxes with class names outside the 10 detection classes are skipped.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .classes import DETECTION_TO_LIDARSEG, IGNORE_LABEL, LIDARSEG_CLASSES
from .frustum import CameraView, ClusterParams, check_points, object_points, points_in_boxes_2d, project_cloud
from .ground import GroundParams, SweepGround, checked_split, sweep_ground
from .ground_contact import GroundContact
from .view_frustums import ViewFrustums, checked_frustums, view_frustums

GROUND_LABEL = LIDARSEG_CLASSES.index("driveable_surface")
RAISED_GROUND_LABEL = LIDARSEG_CLASSES.index("sidewalk")


def segment_points(points_lidar: np.ndarray, views: Sequence[CameraView], T_base_lidar: np.ndarray,
                   ground: GroundParams | None = None,
                   cluster: ClusterParams | None = None,
                   min_object_height_m: float = 0.05,
                   blind_link_m: float = 0.3, split: SweepGround | None = None,
                   frustums: Sequence[ViewFrustums | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-point lidarseg labels and scores of one sweep.

    Args:
        points_lidar: (N, >=3) points in the LiDAR frame [m] (non-finite rows stay unlabelled).
        views: per camera: 2D detections, camera model and T_cam_lidar.
        T_base_lidar: 4x4 LiDAR -> base_link transform (the ground surface is built in base_link, z up).
        ground: ground surface parameters; cluster: object depth cluster parameters (defaults when None).
        min_object_height_m: ground-band points higher than this above the surface can still be an object's.
        blind_link_m: non-ground points that no camera sees (the blind spots beside the vehicle) take the label
            of labelled object points they connect to through neighbours closer than this [m]; 0 turns it off.
        split: sweep_ground's result for the finite points with `ground`, when already computed (the nodes of one
            process share it per sweep: nodes.shared_sweep); computed here when None.
        frustums: core.view_frustums' result for the views and the non-ground points of that split with
            `cluster` and its ground contact (core.ground_contact.GroundContact.of), when already computed (shared
            like split); computed here when None.
    Returns:
        labels (N,) uint8 in 0..16 (core.classes.LIDARSEG_CLASSES) and scores (N,) float32 in [0, 1].
    """
    ground = ground or GroundParams()
    cluster = cluster or ClusterParams()
    xyz, finite = check_points(points_lidar, "segment_points")
    labels = np.full(len(xyz), IGNORE_LABEL, dtype=np.uint8)
    scores = np.zeros(len(xyz), dtype=np.float32)
    if not np.all(finite):  # non-finite returns stay unlabelled
        labels[finite], scores[finite] = segment_points(np.compress(finite, xyz, axis=0), views, T_base_lidar,
                                                        ground, cluster, min_object_height_m, blind_link_m, split,
                                                        frustums)
        return labels, scores
    pts = xyz
    split = checked_split(split, len(pts)) if split is not None else sweep_ground(pts, T_base_lidar, ground)
    is_ground = split.is_ground
    labels[is_ground] = np.where(split.raised[is_ground], RAISED_GROUND_LABEL, GROUND_LABEL)
    scores[is_ground] = 1.0 - np.abs(split.height[is_ground]) / ground.threshold_m
    band = np.zeros(len(pts), dtype=bool)
    band[is_ground] = split.height[is_ground] > min_object_height_m
    objects = np.flatnonzero(~is_ground)
    band_index = np.flatnonzero(band)
    band_pts = np.take(pts, band_index, axis=0)  # a take of rows: ~4x faster than indexing
    if frustums is None:
        frustums = view_frustums(np.take(pts, objects, axis=0), views, cluster,
                                 GroundContact.of(split, T_base_lidar, ground))
    hit_point, hit_label, hit_score, hit_depth = [], [], [], []
    seen = np.zeros(len(pts), dtype=bool)
    for view, camera_frustums in zip(views, checked_frustums(frustums, views)):
        if camera_frustums is None or len(objects) + len(band_index) == 0:
            continue
        dets = camera_frustums.dets
        point_index = objects[camera_frustums.cloud.index]
        seen[point_index] = True
        # Object clusters from the points above the ground band only.
        bp = object_points(camera_frustums.clusters, dets.boxes_xyxy, cluster)
        # Ground-band points inside a box and within its object's depth range belong to the object (wheels, feet).
        low = project_cloud(band_pts, view.camera, view.T_cam_lidar)
        low_point, low_box = points_in_boxes_2d(low.uv, dets.boxes_xyxy)
        low_depth = low.points_cam[low_point, 2]
        within = (low_depth >= bp.depth_min[low_box]) & (low_depth <= bp.depth_max[low_box])
        point = np.concatenate([point_index[bp.point[bp.on_object]], band_index[low.index[low_point[within]]]])
        box = np.concatenate([bp.box[bp.on_object], low_box[within]])
        box_label = np.array([DETECTION_TO_LIDARSEG[c] for c in dets.class_ids], dtype=np.uint8)
        hit_point.append(point)
        hit_label.append(box_label[box])
        hit_score.append(dets.scores[box])
        hit_depth.append(bp.depth_median[box])
    if hit_point:
        point = np.concatenate(hit_point)
        depth = np.concatenate(hit_depth)
        order = np.lexsort((depth, point))
        point, first = np.unique(point[order], return_index=True)
        pick = order[first]
        labels[point] = np.concatenate(hit_label)[pick]
        scores[point] = np.concatenate(hit_score)[pick]
        if blind_link_m > 0:
            # never the road band: it would chain labels; a labelled point is seen or ground, so none is blind
            blind = np.flatnonzero(~is_ground & ~seen)
            _label_connected(pts, labels, scores, point, blind, blind_link_m)
    return labels, scores


def _label_connected(pts: np.ndarray, labels: np.ndarray, scores: np.ndarray, labelled: np.ndarray,
                     blind: np.ndarray, link_m: float) -> None:
    """Give unseen points the label their connected component touches (in place).

    Blind points join through links shorter than link_m; a blind point within link_m of a labelled point is a seed
    carrying that point's label and score. Each component takes its seeds' majority label and half their mean
    score (the label was not seen in an image); components without seeds stay as they are.
    """
    if len(blind) == 0 or len(labelled) == 0:
        return
    blind_pts = pts[blind]
    # Only labelled points within link_m of the blind points' bounding box can be a seed's nearest.
    low, high = blind_pts.min(axis=0) - link_m, blind_pts.max(axis=0) + link_m
    near = np.take(pts, labelled, axis=0)  # a take of rows: ~4x faster than indexing
    inside = (near[:, 0] >= low[0]) & (near[:, 0] <= high[0])  # column by column: ~4x faster than along rows
    for axis in (1, 2):
        inside &= (near[:, axis] >= low[axis]) & (near[:, axis] <= high[axis])
    labelled = labelled[inside]
    if len(labelled) == 0:
        return
    # The nearest neighbour is exact whatever the tree's shape; an unbalanced, uncompacted tree (sliding midpoint
    # splits) built and answered in half the time each (the 8 s scene's sweeps: 1.8 -> 0.9 ms, the same seeds).
    tree = cKDTree(pts[labelled], balanced_tree=False, compact_nodes=False)
    dist, nearest = tree.query(blind_pts, k=1, distance_upper_bound=link_m)
    seed = np.isfinite(dist)
    if not np.any(seed):
        return
    component = linked_components(blind_pts, link_m)
    seed_label = labels[labelled[nearest[seed]]]
    votes = np.zeros((component.max() + 1, len(LIDARSEG_CLASSES)), dtype=np.int64)
    np.add.at(votes, (component[seed], seed_label), 1)
    score_sum = np.bincount(component[seed], weights=scores[labelled[nearest[seed]]], minlength=len(votes))
    count = votes.sum(axis=1)
    take = count[component] > 0
    labels[blind[take]] = np.argmax(votes[component[take]], axis=1)
    scores[blind[take]] = 0.5 * score_sum[component[take]] / count[component[take]]


MAX_CELL_PAIR_TABLE = 1 << 24  # cells^2 up to which _pair_linked_cells marks cell pairs in a table (16 MB)
# points x mean points per coarse cell (twice their pairs within cells) from which linked_components bounds the
# components by fine cells first (the 8 s scene's blind points: 600 sparse ones 1 ms either way, 3,500-6,000 dense
# ones 4x-7x faster)
BOUNDS_MIN_PAIRS = 5000


def _half_steps(keep) -> np.ndarray:
    """The cell offsets (K, 3) of up to two steps on each axis that keep((K, 3) absolute offsets) accepts, one of
    each +- pair."""
    steps = np.arange(-2, 3)
    offsets = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    first = offsets[np.arange(len(offsets)), np.argmax(offsets != 0, axis=1)]  # the first non-zero step (0: none)
    return offsets[(first > 0) & keep(np.abs(offsets))]


# Fine cells (side just under link_m / (2 sqrt(3))) this far apart hold only points within link_m of each other:
# sum((|d| + 1)^2) <= 12 bounds the squared distance by 12 fine sides^2 = link_m^2.
_CERTAIN_STEPS = _half_steps(lambda d: ((d + 1) ** 2).sum(axis=1) <= 12)
# Coarse cells (twice that side) of two points within link_m are at most two steps apart on each axis.
_COARSE_STEPS = _half_steps(lambda d: np.ones(len(d), dtype=bool))


def linked_components(points: np.ndarray, link_m: float) -> np.ndarray:
    """Connected component (N,) of each point (N, 3) [m] when points closer than link_m (distance <= link_m) link.

    The points are binned into coarse cubic cells of side just under link_m / sqrt(3): any two points of a cell are
    within link_m, so the components are those of the cells, two cells linked when a pair of their points is
    (_pair_linked_cells). Dense points have many pairs (the blind points beside the vehicle, a wall or a car next to
    it: 6,000 points, 500,000 pairs within 0.3 m, 25 ms). For them the fine cells (half the side) _CERTAIN_STEPS
    apart are linked first: all their points are within link_m. Two of these fine components link only through a
    pair of points whose coarse cells are at most two steps apart and see both components there; only the points of
    such coarse cells are paired (that sweep: 4 ms).
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    fine = link_m / np.sqrt(3.0) * (1.0 - 1e-6) / 2.0
    fine_ijk = np.floor((points - points.min(axis=0)) / fine).astype(np.int64)
    coarse_ijk = fine_ijk >> 1  # the same cells as floor(x / (2 fine)): halving is exact
    coarse, cells = _cells(coarse_ijk)
    if n * n / cells < BOUNDS_MIN_PAIRS:  # sparse: the pairs are few
        return _pair_linked_cells(points, link_m, coarse, cells)
    fine_cell, fine_cells = _cells(fine_ijk)
    lower = _components(*_occupied_steps(fine_cell, fine_cells, fine_ijk, _CERTAIN_STEPS), fine_cells).take(fine_cell)
    # per coarse cell the least and greatest fine component it holds; a coarse cell that holds, or is within two
    # steps of one that holds, another fine component is on a boundary
    least, greatest = np.full(cells, n), np.full(cells, -1)
    np.minimum.at(least, coarse, lower)
    np.maximum.at(greatest, coarse, lower)
    rows, cols = _occupied_steps(coarse, cells, coarse_ijk, _COARSE_STEPS)
    boundary = least != greatest
    # (cells that share a component need no pairing: the components a cell holds are linked through its points)
    differ = np.flatnonzero(least.take(rows) != greatest.take(cols))
    boundary[rows.take(differ)] = boundary[cols.take(differ)] = True
    edge = np.flatnonzero(boundary.take(coarse))
    pairs = cKDTree(points.take(edge, axis=0)).query_pairs(link_m, output_type="ndarray").reshape(-1, 2)
    a, b = (lower.take(edge.take(side)) for side in pairs.T)
    cross = a != b
    return np.unique(_components(a[cross], b[cross], n).take(lower), return_inverse=True)[1]


def _cells(ijk: np.ndarray) -> tuple[np.ndarray, int]:
    """The cell (N,) of each point of cells ijk (N, 3) >= 0, numbered in the order of (i, j, k), and their count."""
    dims = ijk.max(axis=0) + 1
    cell = np.unique((ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2], return_inverse=True)[1]
    return cell, int(cell.max()) + 1


def _occupied_steps(cell: np.ndarray, cells: int, ijk: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of occupied cells (P,), (P,) `steps` (K, 3) apart, of points in cells `cell` (N,) (numbered as
    _cells numbers grid indices ijk (N, 3))."""
    first = np.zeros(cells, dtype=np.intp)
    first[cell] = np.arange(len(cell))  # a point of each cell
    at = ijk.take(first, axis=0) + 2  # each cell's indices, two from the grid's edges
    dims = at.max(axis=0) + 3
    key = (at[:, 0] * dims[1] + at[:, 1]) * dims[2] + at[:, 2]  # ascending: the cells' order
    target = key[:, None] + (steps[:, 0] * dims[1] + steps[:, 1]) * dims[2] + steps[:, 2]
    found = np.minimum(np.searchsorted(key, target), cells - 1)
    rows, columns = np.nonzero(key.take(found) == target)
    return rows, found[rows, columns]


def _components(rows: np.ndarray, cols: np.ndarray, nodes: int) -> np.ndarray:
    """Connected component (nodes,) of each node of the undirected graph of edges rows (E,) - cols (E,)."""
    graph = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(nodes, nodes))
    return connected_components(graph, directed=False)[1]


def _pair_linked_cells(points: np.ndarray, link_m: float, cell: np.ndarray, cells: int) -> np.ndarray:
    """linked_components of points (N, 3) [m] in coarse cells `cell` (N,) (of `cells`) by their pairs within link_m:
    the linked pairs (a k-d tree search) collapse onto far fewer distinct cell pairs (a world v1 sweep's blind points:
    3,800 points, 300,000 linked pairs, 250 cells), and the sparse graph of the point pairs cost twice the search to
    build (that sweep: 16.8 -> 7.5 ms)."""
    pairs = cKDTree(points, balanced_tree=False).query_pairs(link_m, output_type="ndarray").reshape(-1, 2)
    a, b = cell[pairs[:, 0]], cell[pairs[:, 1]]
    cross = a != b
    if cells * cells <= MAX_CELL_PAIR_TABLE:
        linked = np.zeros((cells, cells), dtype=bool)
        linked[a[cross], b[cross]] = True
        rows, cols = np.nonzero(linked)  # distinct pairs, by row
    else:
        rows, cols = np.divmod(np.unique(a[cross] * cells + b[cross]), cells)
    return _components(rows, cols, cells).take(cell)
