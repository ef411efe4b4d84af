"""Box-prior segmentation, frustum depth clusters and the RANSAC plane (the ground surface's seed) on hand-built
scenes."""
import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from perception3d.core import segmentation
from perception3d.core.camera import project_points
from perception3d.core.classes import LIDARSEG_CLASSES
from perception3d.core.frustum import (
    ClusterParams,
    ImageBorder,
    class_depth_extent,
    expected_depths,
    foot_depths,
    frustum_clusters,
    object_points,
    points_in_boxes_covered,
    project_cloud,
)
from perception3d.core.geometry import invert_transform, transform_points
from perception3d.core.ground import fit_ground_plane
from perception3d.core.segmentation import linked_components, segment_points
from perception3d.errors import PointCloudError
from scene_helpers import (
    T_BASE_LIDAR,
    box_surface_points,
    camera,
    camera_mount,
    ground_grid,
    projected_box,
    to_lidar,
    view,
)

CAR, PED, GROUND, SIDEWALK, TRUCK = (LIDARSEG_CLASSES.index(n)
                                     for n in ("car", "pedestrian", "driveable_surface", "sidewalk", "truck"))
SENSOR = T_BASE_LIDAR[:3, 3]
CAR_BOX = (np.array([15.0, 1.0, 0.3 + 0.8]), np.array([4.6, 1.9, 1.6]), 0.4)  # 0.3 m ground clearance
PED_BOX = (np.array([9.0, 0.2, 0.9]), np.array([0.6, 0.6, 1.8]), 0.0)


def object_points_in_boxes(uv, depth, boxes, extent, expected=None, params=None, kinds=None, longest_side=None):
    """The frustum clusters of boxes among projected points, then each box's object points (core.frustum)."""
    params = params or ClusterParams()
    return object_points(frustum_clusters(uv, depth, boxes, extent, expected, params, kinds), boxes, params,
                         longest_side=longest_side)


def wall(x, y_range=(-6, 6), z_range=(0.3, 4.0), spacing=0.15):
    y, z = np.meshgrid(np.arange(*y_range, spacing), np.arange(*z_range, spacing), indexing="ij")
    return np.stack([np.full(y.size, x), y.ravel(), z.ravel()], axis=1)


@pytest.fixture(scope="module")
def scene():
    y, x = np.meshgrid(np.arange(-1.0, 3.0, 0.1), np.r_[np.arange(11.0, 12.4, 0.1), np.arange(18.5, 20.0, 0.1)])
    curb = np.stack([x.ravel(), y.ravel(), np.full(x.size, 0.12)], axis=1)  # raised ground in front of/behind the car
    parts = {"car": box_surface_points(*CAR_BOX, SENSOR), "ped": box_surface_points(*PED_BOX, SENSOR),
             "wall": wall(24.0), "ground": ground_grid(), "curb": curb}
    names = np.concatenate([[k] * len(v) for k, v in parts.items()])
    points = to_lidar(np.vstack(list(parts.values())))
    front = camera_mount(0.0)
    cam = camera()
    boxes = [projected_box(cam, front, *CAR_BOX), projected_box(cam, front, *PED_BOX)]
    return points, names, cam, front, boxes


def test_car_pedestrian_wall_ground(scene):
    points, names, cam, front, boxes = scene
    labels, scores = segment_points(points, [view(cam, front, boxes, ["car", "pedestrian"], [0.8, 0.6])],
                                    T_BASE_LIDAR)
    assert labels.dtype == np.uint8 and scores.dtype == np.float32 and labels.shape == (len(points),)
    car, ped, wall_, ground = (names == n for n in ("car", "ped", "wall", "ground"))
    assert np.mean(labels[car] == CAR) > 0.97
    # The pedestrian occludes part of the car box: the nearest box wins. It stands on the ground: its points in
    # the ground band (0.05-0.2 m) are reclaimed by its box; the lowest 5 cm stay ground.
    height = transform_points(T_BASE_LIDAR, points)[:, 2]
    feet = height <= 0.05
    assert np.mean(labels[ped & ~feet] == PED) > 0.97
    assert np.mean(labels[ped & (height > 0.06) & (height < 0.19)] == PED) > 0.97
    assert np.all(labels[ped & feet] == GROUND)
    assert np.all(scores[labels == CAR] == pytest.approx(0.8))
    # Background behind the car inside its 2D box must stay unlabelled.
    u_in_box = np.zeros(len(points), dtype=bool)
    cloud = project_cloud(points, cam, view(cam, front, boxes, ["car", "pedestrian"]).T_cam_lidar)
    b = boxes[0]
    inside = (cloud.uv[:, 0] >= b[0]) & (cloud.uv[:, 0] <= b[2]) & (cloud.uv[:, 1] >= b[1]) & (cloud.uv[:, 1] <= b[3])
    u_in_box[cloud.index[inside]] = True
    assert np.sum(wall_ & u_in_box) > 50
    assert np.all(labels[wall_] == 0)
    assert np.mean(labels[ground] == GROUND) > 0.99
    # Ground-band points in the car's box but outside its depth range are not reclaimed by the car: the raised
    # patches stay road or (where the surface sees them as a level 0.12 m up) sidewalk, except in a ground-surface
    # cell they share with the car's lowest face points (the cell's lowest point then is a step up next to an
    # object, not ground): those stay unlabelled.
    curb = names == "curb"
    assert np.sum(curb & u_in_box) > 20 and not np.any(labels[curb] == CAR)
    assert np.mean(np.isin(labels[curb], [GROUND, SIDEWALK])) > 0.99
    assert not np.any(np.isin(labels, [GROUND, SIDEWALK]) & ~(ground | curb | (ped & feet)))
    assert not np.any((labels == SIDEWALK) & ~curb)


def test_boxes_of_unknown_classes_and_no_cameras(scene):
    points, names, cam, front, boxes = scene
    labels, _ = segment_points(points, [view(cam, front, boxes[:1], ["traffic_light"])], T_BASE_LIDAR)
    assert not np.any(labels[names == "car"] == CAR)
    labels, scores = segment_points(points, [], T_BASE_LIDAR)
    assert set(np.unique(labels)) <= {0, GROUND, SIDEWALK} and GROUND in labels
    assert np.all(scores[labels == 0] == 0)


def test_same_object_in_two_cameras(scene):
    points, names, _, _, _ = scene
    # Two cameras whose views overlap on the car: both boxes label it, nothing else changes.
    mounts = [camera_mount(0.25), camera_mount(-0.25)]
    cams = [camera("A"), camera("B")]
    views = [view(c, m, [projected_box(c, m, *CAR_BOX)], ["car"]) for c, m in zip(cams, mounts)]
    labels, _ = segment_points(points, views, T_BASE_LIDAR)
    assert np.mean(labels[names == "car"] == CAR) > 0.97
    assert np.all(labels[names == "wall"] == 0)


def test_frustum_membership_matches_brute_force():
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 100, (500, 2))
    depth = rng.uniform(2, 50, 500)
    boxes = np.sort(rng.uniform(0, 100, (7, 2, 2)), axis=1).transpose(0, 2, 1).reshape(7, 4)[:, [0, 2, 1, 3]]
    bp = object_points_in_boxes(uv, depth, boxes, np.full(7, 5.0))
    pairs = {(p, b) for p in range(500) for b in range(7)
             if boxes[b, 0] <= uv[p, 0] <= boxes[b, 2] and boxes[b, 1] <= uv[p, 1] <= boxes[b, 3]}
    assert set(zip(bp.point.tolist(), bp.box.tolist())) == pairs


def test_covered_frustum_pairs_match_brute_force():
    rng = np.random.default_rng(1)
    uv = rng.uniform(0, 100, (500, 2))
    boxes = np.sort(rng.uniform(0, 100, (9, 2, 2)), axis=1).transpose(0, 2, 1).reshape(9, 4)[:, [0, 2, 1, 3]]
    boxes[8, 3] = boxes[7, 3]  # a tie: both keep the points they share
    kinds = np.array(["car", "barrier", "car", "car", "barrier", "pedestrian", "car", "barrier", "barrier"])
    point, box, flag = points_in_boxes_covered(uv, boxes, kinds)
    inside = {(p, b) for p in range(500) for b in range(9)
              if boxes[b, 0] <= uv[p, 0] <= boxes[b, 2] and boxes[b, 1] <= uv[p, 1] <= boxes[b, 3]}
    covered = {(p, b) for p, b in inside if any((p, c) in inside and kinds[c] == kinds[b] and boxes[c, 3] > boxes[b, 3]
                                               for c in range(9))}
    pairs = list(zip(point.tolist(), box.tolist()))
    assert covered and len(pairs) == len(inside) and set(pairs) == inside
    assert {pair for pair, f in zip(pairs, flag) if f} == covered


def test_depth_cluster_choice():
    # One box: 2 occluder points at 3 m, the object at 10-11.8 m, background at 20 m.
    depth = np.array([3.0, 3.1, 10.0, 10.5, 11.0, 11.4, 11.8, 20.0, 20.2, 20.4, 20.6])
    uv = np.full((len(depth), 2), 50.0)
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    params = ClusterParams(gap_m=1.5, min_points=3, min_fraction=0.1)
    bp = object_points_in_boxes(uv, depth, box, np.array([5.0]), None, params)
    on = np.sort(bp.depth[bp.on_object])
    assert on == pytest.approx([10.0, 10.5, 11.0, 11.4, 11.8])  # the 2-point occluder is too small
    assert bp.depth_min[0] == 10.0 and bp.depth_max[0] == 11.8 and bp.support[0] == 5
    # A box-height estimate of 19 m selects the background-distance object instead.
    bp = object_points_in_boxes(uv, depth, box, np.array([5.0]), np.array([19.0]), params)
    assert np.sort(bp.depth[bp.on_object]) == pytest.approx([20.0, 20.2, 20.4, 20.6])
    # No cluster within the allowed ratio of the estimate: no support rather than a wrong one.
    bp = object_points_in_boxes(uv, depth, box, np.array([5.0]), np.array([60.0]), params)
    assert bp.support[0] == 0 and np.isnan(bp.depth_median[0])
    # The class extent cuts a cluster that runs on (e.g. a wall right behind the object).
    bp = object_points_in_boxes(uv, depth, box, np.array([1.0]), None, params)
    assert np.sort(bp.depth[bp.on_object]) == pytest.approx([10.0, 10.5, 11.0])


def test_a_small_cluster_at_the_estimate_where_no_large_one_fits_it():
    """A pedestrian (8 returns at 7.0-7.2 m, its box-height estimate 7.1 m) behind a motorcycle that fills the lower
    half of its box (100 returns at 2.6-2.8 m, too near the camera for the estimate), a wall at 12.2-12.6 m behind it
    (12 returns, 1.7x the estimate). The pedestrian's cluster holds fewer than min_fraction of the frustum's points,
    and the wall was its object. No cluster that large fits the estimate (within 2 std of a pedestrian's height),
    so the small one that does is eligible (pedestrians: ClusterParams.small_cluster_classes)."""
    depth = np.r_[np.linspace(2.6, 2.8, 100), np.linspace(7.0, 7.2, 8), np.linspace(12.2, 12.6, 12)]
    uv = np.full((len(depth), 2), 50.0)
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    params = ClusterParams(gap_m=1.5, min_points=3, min_fraction=0.1)
    pedestrian = np.array(["pedestrian"])
    bp = object_points_in_boxes(uv, depth, box, np.array([1.46]), np.array([7.1]), params, pedestrian)
    assert np.sort(bp.point[bp.on_object]).tolist() == list(range(100, 108))
    # Only for ClusterParams.small_cluster_classes: a barrier's box in the same place takes the wall.
    bp = object_points_in_boxes(uv, depth, box, np.array([1.46]), np.array([7.1]), params, np.array(["barrier"]))
    assert np.sort(bp.point[bp.on_object]).tolist() == list(range(108, 120))
    # Where a large cluster fits the estimate, a small one nearer it is still left out (4 returns of a pole at
    # 9.9-10.0 m before 60 of the object at 11.7-12.0 m, the estimate 10.4 m).
    depth = np.r_[np.linspace(9.9, 10.0, 4), np.linspace(11.7, 12.0, 60)]
    bp = object_points_in_boxes(uv[:64], depth, box, np.array([1.46]), np.array([10.4]), params, pedestrian)
    assert np.sort(bp.point[bp.on_object]).tolist() == list(range(4, 64))


def test_a_low_car_behind_a_barrier_keeps_its_cluster():
    """A low car (1.29 m against the class's 1.73 m mean: its box height puts it at 13.8 m) whose front is at 11.2 m,
    seen past a barrier 8.55-10.4 m away in part of its box: no depth jump above 1.5 m separates them, so the
    cluster starts at the barrier, 1.61x nearer than the estimate. The ratio the cluster choice allows (2) keeps it
    (1.6 left the car without support, fitted from the size prior alone: 3.7 m off on world v2); its segment is the
    car's."""
    depth = np.r_[np.linspace(8.55, 10.4, 10), np.linspace(11.2, 12.0, 20)]
    uv = np.column_stack([np.r_[np.linspace(70.0, 84.0, 10), np.linspace(5.0, 95.0, 20)], np.full(30, 60.0)])
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    bp = object_points_in_boxes(uv, depth, box, np.array([5.6]), np.array([13.76]),
                                ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04))
    assert np.sort(bp.point[bp.on_object]).tolist() == list(range(10, 30))
    assert bp.depth_min[0] == pytest.approx(11.2)


def barrier_row_in_two_boxes():
    """A barrier row in two boxes: the near barrier's box (bottom edge at row 100) covers columns 0-60, the far one's
    (bottom edge at row 80) columns 30-100. Depths run on without a jump above 1.5 m; the near barrier's returns
    in the shared columns 34-58 lie 11.0-12.9 m away, the far barrier's (columns 62-94) 13.8-16.2 m."""
    near_u, far_u = np.linspace(5.0, 58.0, 12), np.linspace(62.0, 94.0, 9)
    depth = np.r_[np.linspace(9.5, 12.9, 12), np.linspace(13.8, 16.2, 9)]
    uv = np.column_stack([np.r_[near_u, far_u], np.full(21, 70.0)])
    boxes = np.array([[0.0, 20.0, 60.0, 100.0], [30.0, 30.0, 100.0, 80.0]])
    return uv, depth, boxes


def test_the_nearer_box_of_a_class_covers_the_overlap_of_two_boxes():
    """The far barrier's box holds the near barrier's returns in the shared columns. By depth alone it chose them (they
    span more of its width and lie nearer its box-height estimate, 11.2 m: a barrier seen lengthwise fills a taller
    box), then lost them to the near box and was left without support. The lower (nearer) box of the class covers
    the shared columns: covered returns neither set the far box's cluster depth nor count in its segment choice,
    and the far box keeps its own returns."""
    uv, depth, boxes = barrier_row_in_two_boxes()
    params, extent, expected = ClusterParams(segment_gap_m=0.6), np.array([3.84, 3.84]), np.array([9.0, 11.2])
    bp = object_points_in_boxes(uv, depth, boxes, extent, expected, params, np.array(["barrier", "barrier"]))
    assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(12))
    assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == list(range(12, 21))
    # Across classes a box does not cover another (a pedestrian's head shows above the car in front): by depth alone.
    bp = object_points_in_boxes(uv, depth, boxes, extent, expected, params, np.array(["car", "pedestrian"]))
    assert bp.support[1] == 0


def test_with_whole_clusters_the_covered_overlap_keeps_the_far_box_s_object_whole():
    """Segmentation keeps whole clusters (no segments). Without the cover rule the far barrier's cluster starts at
    the near barrier's returns (11.0 m) and the class's depth extent (3.84 m) cuts it at 14.8 m: its returns beyond
    are lost. Covered returns do not set the cluster's depth, so it starts at 13.8 m and holds all of them."""
    uv, depth, boxes = barrier_row_in_two_boxes()
    extent, expected = np.array([3.84, 3.84]), np.array([9.0, 11.2])
    for kinds, far in ((np.array(["barrier", "barrier"]), range(12, 21)), (None, range(12, 17))):
        bp = object_points_in_boxes(uv, depth, boxes, extent, expected, ClusterParams(), kinds)
        assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(12))
        assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == list(far)


def test_the_bonnet_of_the_lower_car_stays_with_it_when_the_far_car_s_segment_lies_nearer():
    """Two cars of a parked row seen from behind, the near one (box 0, bottom edge at row 100) low, the far one (box
    1, bottom edge at row 80) tall: box height puts the near car at 32.8 m and the far one at 26.1 m. The near car
    shows its bonnet (25.4 m, columns 25-58) and its windshield (26.85-26.95 m, columns 5-58); the far car's own
    returns lie beyond 31 m. The far box's nearest cluster is the near car's, and of it the bonnet fits the
    far box's estimate best: its segment lies nearer (median depth) than the near car's, whose median is on the
    windshield. By median depth alone the far box took the bonnet and the near car was fitted 1.45 m too far, at
    its windshield; the bonnet is covered for the far box (the lower box of the kind holds it), so it stays with
    the near car."""
    bonnet_u, windshield_u, far_u = np.linspace(25.0, 58.0, 8), np.linspace(5.0, 58.0, 8), np.linspace(62.0, 95.0, 6)
    depth = np.r_[np.full(8, 25.4), np.linspace(26.85, 26.95, 8), np.linspace(31.0, 31.5, 6)]
    uv = np.column_stack([np.r_[bonnet_u, windshield_u, far_u], np.r_[np.full(8, 75.0), np.full(8, 50.0),
                                                                       np.full(6, 40.0)]])
    boxes = np.array([[0.0, 20.0, 60.0, 100.0], [30.0, 10.0, 100.0, 80.0]])
    params = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04)
    bp = object_points_in_boxes(uv, depth, boxes, np.full(2, 5.6), np.array([32.8, 26.1]), params,
                                np.array(["car", "car"]))
    assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(16))
    assert bp.depth_min[0] == pytest.approx(25.4)


def test_a_cluster_the_lower_box_of_the_kind_covers_whole_is_chosen_last():
    """A tall car (box 1, bottom edge at row 80) behind a low one (box 0, bottom edge at row 100): box height puts
    the tall car at 33.4 m, nearer than its returns (40.6-40.7 m, columns 62-95, outside box 0). The low car's
    rear (35.1 m, columns 32-58) lies in both boxes and nearer that estimate. It was the tall box's cluster, the low
    box kept its returns, and the tall car was left without LiDAR support (fitted from the size prior, 1.9 m too
    near). Every return of that cluster is covered for box 1 (the lower box of the kind holds it): a cluster with
    an uncovered return comes first."""
    near_u, far_u = np.linspace(32.0, 58.0, 7), np.linspace(62.0, 95.0, 8)
    depth = np.r_[np.linspace(35.1, 35.2, 7), np.linspace(40.6, 40.7, 8)]
    uv = np.column_stack([np.r_[near_u, far_u], np.full(15, 60.0)])
    boxes = np.array([[20.0, 30.0, 60.0, 100.0], [30.0, 20.0, 100.0, 80.0]])
    params = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04)
    bp = object_points_in_boxes(uv, depth, boxes, np.full(2, 5.6), np.array([36.0, 33.4]), params,
                                np.array(["car", "car"]))
    assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(7))
    assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == list(range(7, 15))
    # Across kinds nothing is covered: the truck's box-height estimate picks the nearer cluster, the car keeps it
    # (and the truck box is left without support when it may not take its next cluster).
    alone = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04, height_fit_std=0.0)
    bp = object_points_in_boxes(uv, depth, boxes, np.full(2, 5.6), np.array([36.0, 33.4]), alone,
                                np.array(["car", "truck"]))
    assert bp.support[1] == 0


def pedestrians_in_file(uv, depth, far_box, far_estimate):
    """Object points of a near pedestrian's box (0: [20, 10, 80, 100] px, estimate 8.3 m) and a far one's behind it
    (1: far_box, far_estimate [m]) with detection's segment gaps and the class's depth extent."""
    boxes = np.array([[20.0, 10.0, 80.0, 100.0], far_box])
    params = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04)
    return object_points_in_boxes(uv, depth, boxes, np.full(2, class_depth_extent("pedestrian")),
                                  np.array([8.3, far_estimate]), params, np.array(["pedestrian", "pedestrian"]))


def test_a_hidden_group_member_takes_its_covered_returns_not_the_wall_behind():
    """Two pedestrians in file: the near one (box 0, bottom edge at row 100; returns at 8.0-8.2 m) hides the far one
    (box 1, bottom edge at row 90, inside box 0 but for columns 80-90; returns at 9.2-9.4 m, all in box 0, so all
    covered for box 1). Through box 1's uncovered strip a wall shows at 16 m, 1.7x its box-height estimate (9.5 m).
    The wall's cluster holds box 1's only uncovered returns and came first: the hidden pedestrian was placed on the
    wall. It does not fit the estimate (|log(16 / 9.5)| = 0.52 > 2 x 0.19 / 1.77), so the covered cluster nearer the
    estimate is box 1's, and of it the segment at the estimate."""
    near_u, far_u, wall_u = np.linspace(30.0, 70.0, 9), np.linspace(40.0, 75.0, 8), np.linspace(82.0, 88.0, 4)
    depth = np.r_[np.linspace(8.0, 8.2, 9), np.linspace(9.2, 9.4, 8), np.linspace(16.0, 16.2, 4)]
    uv = np.column_stack([np.r_[near_u, far_u, wall_u], np.r_[np.full(9, 60.0), np.full(8, 50.0), np.full(4, 40.0)]])
    bp = pedestrians_in_file(uv, depth, far_box=[30.0, 20.0, 90.0, 90.0], far_estimate=9.5)
    assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(9))
    assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == list(range(9, 17))


def test_a_cluster_that_lower_boxes_hold_whole_is_not_cut_at_its_nearer_object_s_extent():
    """A pedestrian (box 1, returns at 9.6-9.8 m, estimate 9.9 m) hidden behind another (box 0, returns at 8.0-8.2
    m): one cluster (a 1.4 m gap), all of whose returns box 0 holds. The pedestrian's depth extent (1.46 m) counted
    from the cluster's first return, the near one's, cut box 1's own returns off, and box 1 was left without support;
    uncut, its segment nearest the estimate is its own."""
    near_u, far_u = np.linspace(30.0, 70.0, 9), np.linspace(40.0, 60.0, 8)
    depth = np.r_[np.linspace(8.0, 8.2, 9), np.linspace(9.6, 9.8, 8)]
    uv = np.column_stack([np.r_[near_u, far_u], np.r_[np.full(9, 60.0), np.full(8, 50.0)]])
    bp = pedestrians_in_file(uv, depth, far_box=[30.0, 20.0, 70.0, 90.0], far_estimate=9.9)
    assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(9))
    assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == list(range(9, 17))


def test_a_box_whose_cluster_the_others_keep_takes_its_next_cluster_near_its_estimate():
    """A truck (box 0, returns at 9.3-9.5 m in columns 10-60) in front of a car (box 1, columns 40-100) whose
    box-height estimate (10 m) lies near the truck: the truck's returns are the car box's cluster, the truck keeps
    them (its segment lies nearer), and the car was left without support although its own returns (13.0-13.2 m,
    columns 62-95) are in its box. It takes its next cluster when that one fits the estimate within 2 std of the
    class's height (car: |log(13 / 10)| = 0.26 <= 2 x 0.25 / 1.74); a pedestrian's height varies less (0.21), and
    a car's returns at 14 m (0.34) are too far from the estimate."""
    truck_u, car_u = np.linspace(10.0, 60.0, 11), np.linspace(62.0, 95.0, 8)
    uv = np.column_stack([np.r_[truck_u, car_u], np.full(19, 60.0)])
    boxes = np.array([[0.0, 0.0, 65.0, 100.0], [40.0, 20.0, 100.0, 80.0]])
    params = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04)
    extent, expected = np.array([14.0, 5.6]), np.array([9.0, 10.0])
    for kind, car_depth, found in (("car", 13.0, True), ("pedestrian", 13.0, False), ("car", 14.0, False)):
        depth = np.r_[np.linspace(9.3, 9.5, 11), np.linspace(car_depth, car_depth + 0.2, 8)]
        bp = object_points_in_boxes(uv, depth, boxes, extent, expected, params, np.array(["truck", kind]))
        assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(11))
        assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == (list(range(11, 19)) if found else [])


def test_the_cover_only_ranks_boxes_of_one_kind():
    """A car (box 0, bottom edge at row 80; returns at 19.8-20.5 m in columns 32-60) in front of a bus (box 2, the
    whole image; its rear at 20.8-21.0 m in columns 70-98), and a lower car box (box 1, bottom edge at row 95) over
    columns 35-120 whose own returns lie at 10 m: the car's returns are covered for box 0 by box 1, which does not
    hold them. The bus's segment holds them too, and for the bus nothing is covered (no lower bus box): they stay
    with the car, whose segment lies nearer (the cover decides only between boxes of one kind)."""
    car_u, bus_u, near_u = np.linspace(32.0, 60.0, 8), np.linspace(70.0, 98.0, 6), np.linspace(80.0, 115.0, 6)
    depth = np.r_[np.linspace(19.8, 20.5, 8), np.linspace(20.8, 21.0, 6), np.linspace(10.0, 10.3, 6)]
    uv = np.column_stack([np.r_[car_u, bus_u, near_u], np.full(20, 60.0)])
    boxes = np.array([[30.0, 20.0, 66.0, 80.0], [35.0, 40.0, 120.0, 95.0], [0.0, 0.0, 130.0, 100.0]])
    params = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04)
    bp = object_points_in_boxes(uv, depth, boxes, np.array([5.6, 5.6, 14.0]), np.array([20.0, 10.0, 21.0]), params,
                                np.array(["car", "car", "bus"]))
    assert np.sort(bp.point[bp.on_object & (bp.box == 0)]).tolist() == list(range(8))
    assert np.sort(bp.point[bp.on_object & (bp.box == 2)]).tolist() == list(range(8, 14))
    assert np.sort(bp.point[bp.on_object & (bp.box == 1)]).tolist() == list(range(14, 20))


def test_foot_depths_take_ground_returns_in_front_of_the_segment_in_its_columns():
    """Box 0 (a car) has its segment 30 m away in columns 20-80; ground returns at its foot count when they lie in
    those columns and at most 1.6 m nearer: the row at 28.8 m does, a return beside the segment's columns, one 2 m
    in front and one behind it do not. Box 1 (a lower car box in front) covers the columns right of 85: its ground
    returns are not box 0's. A box without a segment (NaN depth) has no foot."""
    boxes = np.array([[0.0, 0.0, 100.0, 100.0], [85.0, 0.0, 140.0, 120.0], [0.0, 0.0, 100.0, 100.0]])
    uv = np.array([[30.0, 95.0], [60.0, 95.0], [10.0, 95.0], [50.0, 96.0], [50.0, 90.0], [90.0, 95.0]])
    depth = np.array([28.8, 28.9, 28.5, 28.0, 30.5, 28.6])
    columns = np.array([[20.0, 80.0], [85.0, 140.0], [20.0, 80.0]])
    nearest = np.array([30.0, 27.0, np.nan])
    foot = foot_depths(uv, depth, boxes, np.array(["car", "car", "car"]), columns, nearest, np.full(3, 1.6))
    assert foot[0] == pytest.approx(28.8) and np.isnan(foot[1]) and np.isnan(foot[2])
    columns[0, 1] = 95.0  # the return at column 90 is covered by box 1's lower box of the kind, not box 0's
    foot = foot_depths(uv, depth, boxes, np.array(["car", "car", "car"]), columns, nearest, np.full(3, 1.6))
    assert foot[0] == pytest.approx(28.8)
    foot = foot_depths(uv, depth, boxes, np.array(["car", "truck", "car"]), columns, nearest, np.full(3, 1.6))
    assert foot[0] == pytest.approx(28.6)  # across kinds nothing is covered


def test_the_segment_gap_grows_with_depth():
    """The side of a barrier 22 m away seen at a grazing angle: its returns lie 0.7 m apart in depth, past the 0.6 m
    segment gap; at 4 % of the depth (0.88 m) they form one segment. A post 1 m in front of a car 5 m away is
    still split off (4 % of 5 m is below 0.6 m)."""
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    side = np.array([22.0, 22.7, 23.4, 24.1])
    uv = np.column_stack([np.linspace(10.0, 90.0, 4), np.full(4, 50.0)])
    split, grown = ClusterParams(segment_gap_m=0.6), ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.04)
    assert object_points_in_boxes(uv, side, box, np.array([3.84]), None, split).support[0] == 1
    assert object_points_in_boxes(uv, side, box, np.array([3.84]), None, grown).support[0] == 4
    post_car = np.array([4.0, 4.02, 4.05, 5.0, 5.05, 5.1, 5.15, 5.2])
    uv = np.column_stack([np.r_[48.0, 50.0, 52.0, np.linspace(5.0, 95.0, 5)], np.full(8, 50.0)])
    bp = object_points_in_boxes(uv, post_car, box, np.array([5.0]), None, grown)
    assert np.sort(bp.depth[bp.on_object]) == pytest.approx(post_car[3:])


def test_the_segment_gap_grows_no_longer_than_the_object():
    """Two pedestrians in file 25 m away, 0.9 m apart in depth, three returns each in one box: at 6 % of the depth
    (1.5 m) the jump between them lies inside one segment, and the box took both; no longer than the class's
    longest side (0.73 m) the gap parts them, and the box keeps the nearer one."""
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    depth = np.array([25.0, 25.1, 25.2, 26.1, 26.2, 26.3])
    uv = np.column_stack([np.tile([40.0, 50.0, 60.0], 2), np.full(6, 50.0)])
    params = ClusterParams(segment_gap_m=0.6, segment_gap_per_depth=0.06)
    assert object_points_in_boxes(uv, depth, box, np.array([3.0]), None, params).support[0] == 6
    bp = object_points_in_boxes(uv, depth, box, np.array([3.0]), None, params, longest_side=np.array([0.73]))
    assert np.sort(bp.depth[bp.on_object]) == pytest.approx(depth[:3])


def test_ground_plane_recovers_a_tilted_plane():
    rng = np.random.default_rng(1)
    slope = np.radians(3.0)
    normal = np.array([-np.sin(slope), 0.0, np.cos(slope)])
    xy = rng.uniform(-30, 30, (5000, 2))
    z = (-0.5 - normal[0] * xy[:, 0]) / normal[2] + rng.normal(0, 0.02, 5000)  # n.p + 0.5 = 0
    ground = np.column_stack([xy, z])
    cxy = rng.uniform(-30, 30, (1500, 2))
    clutter = np.column_stack([cxy, (-0.5 - normal[0] * cxy[:, 0]) / normal[2] + rng.uniform(0.5, 4.0, 1500)])
    plane, mask = fit_ground_plane(np.vstack([ground, clutter]), up=(0, 0, 1), distance_threshold=0.15, seed=3)
    assert np.degrees(np.arccos(plane.normal @ normal)) < 0.3
    assert plane.offset == pytest.approx(0.5, abs=0.03)
    assert mask[:5000].mean() > 0.99 and not mask[5000:].any()
    again = fit_ground_plane(np.vstack([ground, clutter]), up=(0, 0, 1), distance_threshold=0.15, seed=3)[1]
    assert np.array_equal(mask, again)
    # A wall is not ground however many points it has.
    wall_pts = np.column_stack([np.full(3000, 5.0), rng.uniform(-5, 5, (3000, 2))])
    plane, mask = fit_ground_plane(wall_pts, up=(0, 0, 1), low_fraction=1.0)
    assert plane is None and not mask.any()


def test_bad_and_non_finite_points(scene):
    points, names, cam, front, boxes = scene
    views = [view(cam, front, boxes, ["car", "pedestrian"])]
    with pytest.raises(PointCloudError, match="segment_points"):
        segment_points(points[:, :2], views, T_BASE_LIDAR)
    noisy = points.copy()
    noisy[::50] = np.nan
    labels, scores = segment_points(noisy, views, T_BASE_LIDAR)
    clean, _ = segment_points(points[np.isfinite(noisy).all(axis=1)], views, T_BASE_LIDAR)
    assert np.all(labels[::50] == 0) and np.all(scores[::50] == 0)
    assert np.array_equal(labels[np.isfinite(noisy).all(axis=1)], clean)


def test_blind_spot_points_take_the_label_of_the_object_they_connect_to():
    # A truck alongside the vehicle: only its front part is in the front camera's view; a pole on the other side
    # is seen by no camera and touches no labelled object.
    truck = (np.array([2.0, 4.0, 0.3 + 1.5]), np.array([12.0, 2.5, 3.0]), 0.0)
    pole = (np.array([0.5, -4.0, 1.5]), np.array([0.3, 0.3, 3.0]), 0.0)
    truck_pts, pole_pts = box_surface_points(*truck, SENSOR), box_surface_points(*pole, SENSOR)
    points = to_lidar(np.vstack([truck_pts, pole_pts, ground_grid()]))
    cam, front = camera(), camera_mount(0.0)
    T_cam_lidar = invert_transform(front) @ T_BASE_LIDAR
    visible = project_points(cam, transform_points(T_cam_lidar, points[: len(truck_pts)]))
    seen = visible.in_image
    assert seen.sum() > 50 and (~seen).sum() > 50
    box = np.r_[visible.uv[seen].min(axis=0), visible.uv[seen].max(axis=0)]
    cams = [view(cam, front, [box], ["truck"], [0.9])]
    labels, scores = segment_points(points, cams, T_BASE_LIDAR)
    truck_labels, truck_scores = labels[: len(truck_pts)], scores[: len(truck_pts)]
    assert np.mean(truck_labels[seen] == TRUCK) > 0.95
    assert np.mean(truck_labels[~seen] == TRUCK) > 0.95
    assert np.all(truck_scores[~seen & (truck_labels == TRUCK)] <= 0.45 + 1e-6)  # half the 2D score
    pole_labels = labels[len(truck_pts): len(truck_pts) + len(pole_pts)]
    assert np.all(pole_labels[pole_pts[:, 2] > 0.3] == 0)  # its foot is road, the rest stays unlabelled
    without = segment_points(points, cams, T_BASE_LIDAR, blind_link_m=0.0)[0]
    assert np.all(without[: len(truck_pts)][~seen] == 0)


def _pair_components(points, link_m):
    """Connected components of the graph whose edges are the point pairs within link_m, straight from the pairs."""
    pairs = cKDTree(points).query_pairs(link_m, output_type="ndarray").reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    return connected_components(graph, directed=False)[1]


def _same_partition(a, b):
    """Whether two component labellings (N,) group the points alike."""
    joint = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(joint) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("table", [True, False])
def test_linked_components_are_those_of_the_linked_pairs(monkeypatch, table):
    if not table:  # the distinct cell pairs found by sorting instead of the cells x cells table
        monkeypatch.setattr(segmentation, "MAX_CELL_PAIR_TABLE", 0)
    rng = np.random.default_rng(3)
    for trial in range(20):
        blobs = rng.uniform(-6, 6, size=(rng.integers(1, 12), 3))
        points = blobs[rng.integers(0, len(blobs), 400)] + rng.normal(scale=rng.uniform(0.05, 0.6), size=(400, 3))
        points = np.vstack([points, rng.uniform(-8, 8, size=(100, 3))])  # loose points, most alone
        link = rng.uniform(0.1, 0.5)
        labels = linked_components(points, link)
        expected = _pair_components(points, link)
        assert len(np.unique(expected)) > 1
        assert _same_partition(labels, expected), trial


def test_dense_surfaces_are_linked_as_their_pairs_link(monkeypatch):
    """Dense walls (the blind points beside the vehicle) go the way of the fine cells and the boundary pairs: their
    components are still those of the point pairs, with gaps just under, at and just over the link distance."""
    def no_pairing_of_all_points(*args):
        raise AssertionError("dense points were paired all at once")
    monkeypatch.setattr(segmentation, "_pair_linked_cells", no_pairing_of_all_points)
    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(np.linspace(0, 3, 50), np.linspace(0, 2, 35)), axis=-1).reshape(-1, 2)
    for gap in (0.29, 0.3, 0.31, 0.5, 1.2):
        wall = np.c_[grid[:, 0], np.zeros(len(grid)), grid[:, 1]]
        beside = wall + [3.0 + gap, 0.0, 0.0]  # the same wall further along, gap [m] between their ends
        behind = wall[::3] + [0.0, gap, 0.0] + rng.normal(scale=0.01, size=(len(wall[::3]), 3))  # a thinner one
        loose = rng.uniform(-2.0, 8.0, size=(200, 3)) + [0.0, 0.0, 4.0]  # above the walls, most alone
        points = np.vstack([wall, beside, behind, loose])
        labels = linked_components(points, 0.3)
        expected = _pair_components(points, 0.3)
        assert _same_partition(labels, expected), gap
        assert (expected[0] == expected[len(wall)]) == (gap <= 0.3)  # the scene: the walls link up to 0.3 m apart


def test_linked_components_link_at_exactly_the_distance():
    chain = np.zeros((5, 3))
    chain[:, 0] = np.arange(5) * 0.25  # neighbours exactly 0.25 m apart (binary fractions: exact)
    assert len(np.unique(linked_components(chain, 0.25))) == 1
    assert len(np.unique(linked_components(chain, 0.2499))) == 5
    assert len(linked_components(np.zeros((0, 3)), 0.3)) == 0


def test_a_box_ending_a_few_pixels_inside_the_image_counts_as_cut_by_its_border():
    """A detector's box of an object cut by the image's bottom ends near the border, not always on it. Within
    ImageBorder's px + share x the box's height of the border it has no box-height depth estimate (its height is not
    the object's); further in it has one, fy x the class's mean height / the box height."""
    cam = camera()
    height = 200.0
    bottoms = np.array([cam.height - 1.0, cam.height - 1.0 - 10.0, cam.height - 1.0 - 20.0])  # border px 4 + 0.06 x 200
    boxes = np.column_stack([np.full(3, 700.0), bottoms - height, np.full(3, 900.0), bottoms])
    depths = expected_depths(boxes, ["car"] * 3, cam)
    assert np.isnan(depths[:2]).all()
    assert depths[2] == pytest.approx(cam.K[1, 1] * 1.74 / height)  # car height prior: mean 1.74 m
    assert np.isfinite(expected_depths(boxes, ["car"] * 3, cam, ImageBorder(1.0, 0.0))[1:]).all()
    top = np.array([[700.0, 10.0, 900.0, 210.0], [700.0, 20.0, 900.0, 220.0]])  # the same at the image's top
    top_depths = expected_depths(top, ["car"] * 2, cam)
    assert np.isnan(top_depths[0]) and np.isfinite(top_depths[1])
