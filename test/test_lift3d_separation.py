"""Geometric 3D detection next to things that touch or stand in front of the object (issue 16, acceptance 2).

The scene is built by hand as world primitives and cast with the simulated HDL-32E of the real nuScenes rig
(data.lidar beam directions, data.raycast against a flat ground); the 2D boxes are the projected ground truth
(bench.algo.perfect_2d_boxes), so every error comes from the 3D lifting.
"""
import numpy as np
import pytest

from perception3d.bench.algo import Frame, load_rig, perfect_2d_boxes
from perception3d.bench.graph import write_frame_bag
from perception3d.core.classes import LIDARSEG_FINE_CATEGORIES
from perception3d.core.detections import Detections2D, Detections3D
from perception3d.core.frustum import CameraView
from perception3d.core.geometry import invert_transform, transform_points
from perception3d.core.lift3d import LiftParams, detect_3d
from perception3d.data.lidar import MAX_RANGE_M, MIN_RANGE_M, beam_directions
from perception3d.data.raycast import KIND_CYLINDER, cast
from perception3d.data.world import Primitives
from perception3d.msgs.bag import BagReader
from perception3d.msgs.detections import msg_to_detections3d
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH

CAR_CENTER = np.array([16.0, 5.0, 0.8])  # base_link, parked at the left road edge, heading along the road
CAR_LWH = np.array([4.6, 1.9, 1.6])
POST_RADIUS_M = 0.08
POST_GAP_M = 1.0
# Five barriers end to end along the right road edge: 2.0 m long (along the road), 0.7 m thick, 1.0 m high.
BARRIER_CENTERS = np.array([[12.0 + 2.0 * k, -5.5, 0.5] for k in range(5)])
BARRIER_LWH = np.array([0.7, 2.0, 1.0])  # length along the heading (across the road), as nuScenes barriers
FAR_CAR_CENTER = np.array([64.0, 2.0, 0.8])  # beyond the 50 m evaluation range of cars, within the LiDAR's 70 m
NODE_DEFAULTS = LiftParams(min_score=0.05)  # the detection3d node drops boxes below its score_threshold 0.05


def post_in_front(car_center, car_lwh, sensor_xy, gap_m):
    """xy of a point on the sensor's line of sight to the (axis-aligned) car's centre, `gap_m` from its outline."""
    ray = car_center[:2] - sensor_xy
    along = np.linspace(0.0, np.linalg.norm(ray), 20_000)
    xy = sensor_xy + along[:, None] * ray / np.linalg.norm(ray)
    outside = np.maximum(np.abs(xy - car_center[:2]) - car_lwh[:2] / 2, 0.0)
    return xy[np.flatnonzero(np.hypot(*outside.T) >= gap_m)[-1]]


def sweep_and_views(prims, objects, rig):
    """The rig's LiDAR sweep of the primitives (points in the LiDAR frame, what each return hit) and every camera's
    perfect 2D boxes of the objects."""
    T = rig.T_base_lidar
    dirs = beam_directions()[0] @ T[:3, :3].T
    hits = cast(T[:3, 3], dirs, prims, MAX_RANGE_M)
    keep = np.isfinite(hits.t) & (hits.t >= MIN_RANGE_M)
    points = transform_points(invert_transform(T), T[:3, 3] + dirs[keep] * hits.t[keep, None])
    views = [CameraView(perfect_2d_boxes(objects, cam, T_base_cam), cam, invert_transform(T_base_cam) @ T)
             for cam, T_base_cam in rig.cameras.values()]
    return points, hits.kind[keep], views


def barrier_row(first_m, side_m, n, length_m, rig):
    """n barriers (0.7 m thick, 1 m high) of length_m end to end along the road edge side_m to the side, the first
    centred first_m ahead (ids "0".."n-1"), the rig's sweep of them and every camera's perfect 2D boxes."""
    row = Detections3D(np.array([[first_m + length_m * k, side_m, 0.5] for k in range(n)]),
                       np.tile([0.7, length_m, 1.0], (n, 1)), [np.pi / 2] * n, ["barrier"] * n, np.ones(n),
                       "base_link", ids=[str(k) for k in range(n)])
    label = list(LIDARSEG_FINE_CATEGORIES).index("movable_object.barrier")
    prims = Primitives(row.centers, row.sizes_lwh, row.yaws, np.full(n, label, np.uint8), np.arange(n),
                       np.full((n, 3), 0.5), cyl_centers=np.zeros((0, 2)), cyl_z=np.zeros((0, 2)),
                       cyl_radii=np.zeros(0), cyl_labels=np.zeros(0, np.uint8), cyl_colors=np.zeros((0, 3)))
    points, _, views = sweep_and_views(prims, row, rig)
    return row, points, views


def cut_in(views, box_id):
    """The cameras whose 2D box `box_id` touches the left or right image border."""
    return {v.camera.frame_id for v in views for i, b in zip(v.detections.ids, v.detections.boxes_xyxy)
            if i == box_id and (b[0] <= 1 or b[2] >= v.camera.width - 1)}


def nearest_barrier(dets, center):
    """(BEV distance [m] of the barrier detection nearest to center, its longer footprint side [m])."""
    barrier = np.flatnonzero(dets.class_ids == "barrier")
    j = barrier[np.argmin(np.linalg.norm(dets.centers[barrier, :2] - center[:2], axis=1))]
    return np.linalg.norm(dets.centers[j, :2] - center[:2]), dets.sizes_lwh[j, :2].max()


@pytest.fixture(scope="module")
def street():
    """The objects (annotated: the barriers and the cars), the post, a sweep and perfect 2D boxes of the rig."""
    rig = load_rig()
    n = len(BARRIER_CENTERS)
    objects = Detections3D(np.vstack([BARRIER_CENTERS, CAR_CENTER, FAR_CAR_CENTER]),
                           np.vstack([np.tile(BARRIER_LWH, (n, 1)), CAR_LWH, CAR_LWH]), [np.pi / 2] * n + [0.0, 0.0],
                           ["barrier"] * n + ["car", "car"], np.ones(n + 2), "base_link", ids=list("0123456"))
    fine = list(LIDARSEG_FINE_CATEGORIES)
    labels = [fine.index("movable_object.barrier")] * n + [fine.index("vehicle.car")] * 2
    post_xy = post_in_front(CAR_CENTER, CAR_LWH, rig.T_base_lidar[:2, 3], POST_GAP_M)
    post_label = np.array([fine.index("static.manmade")], np.uint8)  # clutter: in no detection class
    prims = Primitives(objects.centers, objects.sizes_lwh, objects.yaws, np.array(labels, np.uint8), np.arange(n + 2),
                       np.full((n + 2, 3), 0.5), cyl_centers=post_xy[None], cyl_z=np.array([[0.0, 1.6]]),
                       cyl_radii=np.array([POST_RADIUS_M]), cyl_labels=post_label, cyl_colors=np.zeros((1, 3)))
    points, kind, views = sweep_and_views(prims, objects, rig)
    return objects, post_xy, points, kind, views, rig


def test_the_scene_is_the_hard_case(street):
    """The post (1 m in front of the car's outline, inside the frustum cluster's 1.5 m depth gap) returns points,
    and the barriers touch: in CAM_FRONT each one's 2D box overlaps the next one's."""
    objects, _, _, kind, views, _ = street
    assert np.sum(kind == KIND_CYLINDER) >= 5
    front = next(v.detections for v in views if v.camera.frame_id == "CAM_FRONT")
    barrier = front.boxes_xyxy[front.class_ids == "barrier"]
    assert len(barrier) == 5
    order = np.argsort(barrier[:, 0])
    assert np.all(barrier[order[1:], 0] < barrier[order[:-1], 2])


def graph_detections(street, work):
    """The detection3d node's output on the street sweep: a bag of it replayed through the graph (default
    parameters, the sweep in base_link through the rig's transforms)."""
    objects, _, points, _, views, rig = street
    write_frame_bag(work / "street", sweeps=2, frame=Frame(points, None, None, objects, views, rig))
    replay(work / "street", work / "out", FULL_GRAPH.select(("detection3d",)), progress=False)
    with BagReader(work / "out") as bag:
        return [msg_to_detections3d(m.decode()) for m in bag.messages(["/perception/objects"])][-1]


@pytest.mark.parametrize("where", ["core", "graph"])
def test_touching_barriers_a_car_behind_a_post_and_a_car_at_64_m_are_each_found(street, where, tmp_path):
    objects, post_xy, points, _, views, rig = street
    dets = (detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS) if where == "core"
            else graph_detections(street, tmp_path))
    for i in range(len(objects)):
        same = np.flatnonzero(dets.class_ids == objects.class_ids[i])
        j = same[np.argmin(np.linalg.norm(dets.centers[same] - objects.centers[i], axis=1))]
        assert np.linalg.norm(dets.centers[j] - objects.centers[i]) < 0.5, (objects.class_ids[i], i)
        # Footprint sides compared sorted: a box and the same box turned by 90 degrees with l and w swapped agree.
        ratio = np.r_[np.sort(dets.sizes_lwh[j, :2]) / np.sort(objects.sizes_lwh[i, :2]),
                      dets.sizes_lwh[j, 2] / objects.sizes_lwh[i, 2]]
        assert np.all(np.abs(ratio - 1.0) < 0.3), (objects.class_ids[i], i, dets.sizes_lwh[j])
    # Nothing is reported on the post.
    assert np.min(np.linalg.norm(dets.centers[:, :2] - post_xy, axis=1)) > 1.0


def test_a_near_car_seen_by_two_cameras_is_placed_from_both_parts():
    """A car 6 m ahead-left spans CAM_FRONT and CAM_FRONT_LEFT and its 2D box touches the image border in both: each
    camera's frustum holds a part of it, and the box is fitted to the points of the whole car (the part past the
    border is connected to it in bird's-eye view); lifted from one camera's part it was 1.5 m off."""
    rig = load_rig()
    car = Detections3D(np.array([[6.0, 3.8, 0.8]]), np.array([[4.6, 1.95, 1.6]]), [0.0], ["car"], [1.0], "base_link",
                       ids=["0"])
    label = np.array([list(LIDARSEG_FINE_CATEGORIES).index("vehicle.car")], np.uint8)
    prims = Primitives(car.centers, car.sizes_lwh, car.yaws, label, np.zeros(1, int), np.full((1, 3), 0.5),
                       cyl_centers=np.zeros((0, 2)), cyl_z=np.zeros((0, 2)), cyl_radii=np.zeros(0),
                       cyl_labels=np.zeros(0, np.uint8), cyl_colors=np.zeros((0, 3)))
    points, _, views = sweep_and_views(prims, car, rig)
    cut = [v.camera.frame_id for v in views if len(v.detections) and
           (v.detections.boxes_xyxy[0, 0] <= 1 or v.detections.boxes_xyxy[0, 2] >= v.camera.width - 1)]
    assert sorted(cut) == ["CAM_FRONT", "CAM_FRONT_LEFT"]  # the hard case: cut in both cameras
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    best = np.argmax(dets.scores)
    assert np.linalg.norm(dets.centers[best, :2] - car.centers[0, :2]) < 0.5


def test_cars_parked_bumper_to_bumper_beside_the_ego_are_placed_each_at_its_points():
    """A 5 m car parked 3.75 m to the right of the ego, beside it, and a 4 m car 0.4 m behind its bumper. The first is
    cut by both side borders of CAM_BACK_RIGHT (its 2D box spans the image) and by one of CAM_FRONT_RIGHT: nothing
    in those images places it along its length, and its segment ran on into the car behind (no depth jump). Before,
    it was fitted 1.5 m back along its length, across the gap into the other car (world v2, seed 9, t = 9 s)."""
    rig = load_rig()
    cars = Detections3D(np.array([[0.4, -3.75, 0.65], [-4.7, -3.75, 0.65]]), np.array([[5.0, 2.0, 1.3],
                        [4.0, 1.9, 1.3]]), [0.0, 0.0], ["car"] * 2, [1.0] * 2, "base_link", ids=["0", "1"])
    label = list(LIDARSEG_FINE_CATEGORIES).index("vehicle.car")
    prims = Primitives(cars.centers, cars.sizes_lwh, cars.yaws, np.full(2, label, np.uint8), np.arange(2),
                       np.full((2, 3), 0.5), cyl_centers=np.zeros((0, 2)), cyl_z=np.zeros((0, 2)),
                       cyl_radii=np.zeros(0), cyl_labels=np.zeros(0, np.uint8), cyl_colors=np.zeros((0, 3)))
    points, _, views = sweep_and_views(prims, cars, rig)
    back_right = next(v for v in views if v.camera.frame_id == "CAM_BACK_RIGHT")
    box = back_right.detections.boxes_xyxy[list(back_right.detections.ids).index("0")]
    assert box[0] <= 1 and box[2] >= back_right.camera.width - 1  # the hard case: its box spans the image
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    for center in cars.centers:
        assert np.min(np.linalg.norm(dets.centers[dets.class_ids == "car", :2] - center[:2], axis=1)) < 0.3, center


def test_a_car_whose_front_a_bus_hides_is_placed_where_its_2d_box_puts_it():
    """A car parked 0.75 m behind a bus that stands beside the ego: from the LiDAR the bus's rear end hides the
    car's front metre, so its nearest return lies on its side ~1 m behind its front. Slid to put its nearest corner
    there, the car was placed back along its length (0.72 m off here; 0.85 m with score 0.27 in world v2, seed 9, at
    14.5 s); where a nearer box covers its 2D box, its box may start before its nearest return, where its 2D box
    edges put it."""
    rig = load_rig()
    things = Detections3D(np.array([[-0.55, -3.75, 2.0], [-9.27, -3.78, 0.8]]),
                          np.array([[11.6, 2.97, 4.0], [4.33, 2.04, 1.6]]), [0.0, 0.0], ["bus", "car"], [1.0] * 2,
                          "base_link", ids=["0", "1"])
    labels = [list(LIDARSEG_FINE_CATEGORIES).index(c) for c in ("vehicle.bus.rigid", "vehicle.car")]
    prims = Primitives(things.centers, things.sizes_lwh, things.yaws, np.array(labels, np.uint8), np.arange(2),
                       np.full((2, 3), 0.5), cyl_centers=np.zeros((0, 2)), cyl_z=np.zeros((0, 2)),
                       cyl_radii=np.zeros(0), cyl_labels=np.zeros(0, np.uint8), cyl_colors=np.zeros((0, 3)))
    points, _, views = sweep_and_views(prims, things, rig)
    base = transform_points(rig.T_base_lidar, points)
    on_car = np.all(np.abs(base - things.centers[1]) < things.sizes_lwh[1] / 2 + 0.05, axis=1) & (base[:, 2] > 0.05)
    assert base[on_car, 0].max() < -7.1 - 0.6  # the hard case: the car's front (at x = -7.1 m) returns nothing
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    car = np.flatnonzero(dets.class_ids == "car")
    assert np.min(np.linalg.norm(dets.centers[car, :2] - things.centers[1, :2], axis=1)) < 0.3


def test_a_composite_car_seen_from_behind_is_placed_at_its_body():
    """A car built of a body and a shorter, narrower cabin on top (world v2's shape) 22 m ahead in the next lane, seen
    from behind: the body's rear face lies ~1 m in front of the cabin's (a depth jump beyond the 0.6 m segment gap)
    and holds fewer returns; the box's near end is the body's. Fitted to the cabin's segment alone it was 0.77 m off."""
    rig = load_rig()
    lwh = np.array([4.8, 1.9, 1.6])
    car = Detections3D(np.array([[22.0, 3.5, 0.8]]), lwh[None], [0.0], ["car"], [1.0], "base_link", ids=["0"])
    parts = np.array([[[0.0, 0.0, -0.225], [1.0, 1.0, 0.55]], [[-0.05, 0.0, 0.275], [0.5, 0.86, 0.45]]])  # body, cabin
    label = list(LIDARSEG_FINE_CATEGORIES).index("vehicle.car")
    prims = Primitives(car.centers + parts[:, 0] * lwh, parts[:, 1] * lwh, np.zeros(2), np.full(2, label, np.uint8),
                       np.zeros(2, int), np.full((2, 3), 0.5), cyl_centers=np.zeros((0, 2)), cyl_z=np.zeros((0, 2)),
                       cyl_radii=np.zeros(0), cyl_labels=np.zeros(0, np.uint8), cyl_colors=np.zeros((0, 3)))
    points, _, views = sweep_and_views(prims, car, rig)
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    best = np.argmax(dets.scores)
    assert np.linalg.norm(dets.centers[best, :2] - car.centers[0, :2]) < 0.3


@pytest.mark.parametrize("side_m, first_m, length_m",
                         [(6.0, 25.0, 2.0), (-6.0, 20.0, 2.5), (5.0, 22.0, 1.6), (3.0, 20.0, 2.5)])
def test_a_far_barrier_row_seen_at_a_grazing_angle_is_placed_barrier_by_barrier(side_m, first_m, length_m):
    """Three barriers end to end along the road edge `side_m` to the side, the first centred `first_m` ahead: CAM_FRONT
    sees the row at a grazing angle, each barrier's box overlaps the next one's, and the side of a barrier holds 2-5
    returns 0.6-0.8 m apart in depth. The far barriers' frustums held the nearer neighbour's returns and their own
    fell apart into single-return segments: they were placed 0.6-2.1 m off along the row. With 1.6 m barriers 22 m ahead
    (4-5 returns on the far two) the BEV NMS merged the first into the second (their boxes overlapped), and the
    third, slid to its nearest return's depth, was 0.57 m off. A row 3 m to the side from 20 m ahead is seen almost
    end-on: its returns lie 0.8-1 m apart in depth, and with the segment gap at 4 % of the depth (not 6 %) each
    barrier's box took its near part alone, 2.1 m off."""
    rig = load_rig()
    row, points, views = barrier_row(first_m, side_m, 3, length_m, rig)
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    found = dets.centers[dets.class_ids == "barrier", :2]
    for center in row.centers:
        assert np.min(np.linalg.norm(found - center[:2], axis=1)) < 0.5, center


def test_a_barrier_cut_by_the_image_border_keeps_out_its_neighbour_in_the_same_image():
    """Five 2.5 m barriers end to end 5 m to the right, from 4 m ahead: the fourth spans the border between CAM_FRONT
    and CAM_FRONT_RIGHT and is cut in both images. Its segment grows past each border into the connected points,
    and the row is connected: the growth took in a neighbour that the camera sees beside the fourth's box, and the
    fourth was fitted 3.1 m long, 0.33 m off. Points a camera sees outside the box's columns are another object's.
    (Since box heights lie within what the LiDAR allows, the fourth is 1.10 m high, between its highest return at
    0.86 m and the next beam up, instead of the anchor's 1.18 m: fitted 2.2 m long, 0.30 m off; at its true 1 m
    height it is 0.04 m off.)"""
    rig = load_rig()
    row, points, views = barrier_row(4.0, -5.0, 5, 2.5, rig)
    assert cut_in(views, "3") == {"CAM_FRONT", "CAM_FRONT_RIGHT"}  # the hard case: cut in both images
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    for center in row.centers:
        error, length = nearest_barrier(dets, center)
        assert error < 0.35 and abs(length / 2.5 - 1.0) < 0.15, (center, error, length)


def test_a_barrier_cut_by_the_image_border_keeps_out_its_neighbour_that_the_other_camera_sees_beside_it():
    """Four 2.5 m barriers end to end 5 m to the right, from 11.5 m ahead: the first spans the border between CAM_FRONT
    and CAM_FRONT_RIGHT. CAM_FRONT_RIGHT's growth past its left border took in the second barrier, which
    CAM_FRONT_RIGHT does not see but CAM_FRONT sees beside its box of the first: the first was fitted 2.82 m long,
    0.16 m off."""
    rig = load_rig()
    row, points, views = barrier_row(11.5, -5.0, 4, 2.5, rig)
    assert cut_in(views, "0") == {"CAM_FRONT", "CAM_FRONT_RIGHT"}
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    error, length = nearest_barrier(dets, row.centers[0])
    assert error < 0.12 and abs(length / 2.5 - 1.0) < 0.06, (error, length)


@pytest.mark.parametrize("first_m, side_m, n, length_m, spanning, cameras", [
    (-3.5, -3.8, 4, 2.6, "2", {"CAM_FRONT_RIGHT", "CAM_BACK_RIGHT"}),
    (-2.0, -3.8, 4, 3.0, "1", {"CAM_FRONT_RIGHT", "CAM_BACK_RIGHT"}),
    (-3.0, 3.8, 4, 2.5, "2", {"CAM_FRONT_LEFT", "CAM_BACK_LEFT"}),
    (-4.0, -4.5, 5, 2.0, "3", {"CAM_FRONT_RIGHT", "CAM_BACK_RIGHT"})])
def test_a_barrier_beside_the_ego_is_placed_from_both_side_cameras_parts(first_m, side_m, n, length_m, spanning,
                                                                          cameras):
    """A row of barriers end to end along the road edge beside the ego: barrier `spanning` is cut by the border of the
    two side cameras, and each camera's box of it overlaps its box of the next barrier. Both cameras' growth past
    the border took in the next barrier: it was fitted 1.4-2.5 m long, 0.29-0.65 m off. In a row, what another
    camera sees of the object is its segment there."""
    rig = load_rig()
    row, points, views = barrier_row(first_m, side_m, n, length_m, rig)
    assert cut_in(views, spanning) == cameras  # the hard case: cut in both images
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    error, length = nearest_barrier(dets, row.centers[int(spanning)])
    assert error < 0.25 and abs(length / length_m - 1.0) < 0.1, (error, length)


@pytest.mark.parametrize("first_m, side_m, length_m, cameras", [
    (-3.0, 3.8, 2.5, {"CAM_BACK", "CAM_BACK_LEFT"}),
    (-3.0, -3.8, 2.5, {"CAM_BACK", "CAM_BACK_RIGHT"}),
    (-2.5, -3.8, 2.5, {"CAM_BACK", "CAM_BACK_RIGHT"})])
def test_a_barrier_behind_the_ego_is_placed_from_the_parts_two_cameras_see_apart(first_m, side_m, length_m, cameras):
    """The first barrier of a row beside and behind the ego is cut by the borders of CAM_BACK and a back side camera,
    and neither camera sees any of the part the other one sees: the columns of one camera's part name no box in the
    other, and both growths past the border took in the next barrier (0.66-0.97 m off). Past the border the points
    nearest the part are the barrier's own, and the box holding them is its box there."""
    rig = load_rig()
    row, points, views = barrier_row(first_m, side_m, 4, length_m, rig)
    assert cut_in(views, "0") == cameras
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    error, length = nearest_barrier(dets, row.centers[0])
    assert error < 0.25 and abs(length / length_m - 1.0) < 0.1, (error, length)


@pytest.mark.parametrize("first_m, side_m, barrier", [(-5.0, 3.8, 1), (-4.0, 4.5, 0)])
def test_a_barrier_cut_by_the_back_camera_stands_where_its_returns_are(first_m, side_m, barrier):
    """A barrier of a row behind the ego's side, cut by CAM_BACK's border: placed along the ray by the rows of its
    cut 2D box, CAM_BACK's box of it stood 0.3 m low with some of its returns above it, and the back side camera's
    worse box (0.19-0.36 m off, 1.9 or 3.1 m long) outscored it in the merge. Its box holds its returns' height
    span."""
    rig = load_rig()
    row, points, views = barrier_row(first_m, side_m, 4, 2.5, rig)
    assert "CAM_BACK" in cut_in(views, str(barrier))
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    error, length = nearest_barrier(dets, row.centers[barrier])
    assert error < 0.25 and abs(length / 2.5 - 1.0) < 0.1, (error, length)
    nearest = np.argmin(np.linalg.norm(dets.centers[:, :2] - row.centers[barrier, :2], axis=1))
    assert abs(dets.centers[nearest, 2] - row.centers[barrier, 2]) < 0.15


def test_a_barrier_whose_2d_box_was_missed_is_filled_in_from_its_row():
    """Five 2 m barriers end to end 5.5 m to the right from 12 m ahead, and no camera's 2D box of the middle one (a
    detector misses the more hidden barriers of a row): a 3D box comes from a 2D box, but the row's neighbours and
    the middle barrier's returns imply it (core.row_gaps). Without the row it was missing (nearest barrier 2 m
    off)."""
    rig = load_rig()
    row, points, views = barrier_row(12.0, -5.5, 5, 2.0, rig)
    views = [CameraView(v.detections.select(v.detections.ids != "2"), v.camera, v.T_cam_lidar) for v in views]
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    for center in row.centers:
        error, length = nearest_barrier(dets, center)
        assert error < 0.5 and abs(length / 2.0 - 1.0) < 0.3, (center, error, length)


def car_beside_the_ego(x_m, side_m, rig):
    """A 4.1 m car parked x_m ahead of and side_m beside the ego (id "0"), the rig's sweep of it and every camera's
    perfect 2D boxes."""
    car = Detections3D(np.array([[x_m, side_m, 0.7]]), np.array([[4.12, 1.76, 1.4]]), [0.0], ["car"], [1.0],
                       "base_link", ids=["0"])
    label = np.array([list(LIDARSEG_FINE_CATEGORIES).index("vehicle.car")], np.uint8)
    points, _, views = sweep_and_views(Primitives(car.centers, car.sizes_lwh, car.yaws, label, np.zeros(1, int),
                                                  np.full((1, 3), 0.5)), car, rig)
    return car, points, views


@pytest.mark.parametrize("side_m", [3.5, -3.5])
@pytest.mark.parametrize("x_m", [-1.0, 0.0, 1.3, 2.5])
def test_a_car_beside_the_ego_cut_by_the_image_borders_stands_on_the_ground(x_m, side_m):
    """A 4.1 m car parked 3.5 m to the side of the ego spans two cameras; its 2D box touches the side and bottom
    borders of the image in each, so only its left or right edge and its top edge place it along the camera ray. Put
    against its returns' extremes it kept the height that placement gave, up to 0.25 m too low or high (world v1 seed
    8 with terrain: the projection then missed the 2D box, and the same car turned by a quarter turn won). The LiDAR
    sees its roof, so its height is known: it stands on the ground surface under its returns."""
    rig = load_rig()
    car, points, views = car_beside_the_ego(x_m, side_m, rig)
    assert len(cut_in(views, "0")) == 2  # the hard case: cut by the image border in two cameras
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    best = np.argmax(dets.scores)
    assert np.linalg.norm(dets.centers[best, :2] - car.centers[0, :2]) < 0.3
    assert abs(dets.centers[best, 2] - car.centers[0, 2]) < 0.1


def edges_moved_off_the_border(views, box_id):
    """The views with box `box_id`'s edges that lie on the image border moved into the image by 2 px + 3 % of the box's
    side (one std of the simulated `good` detector's edge noise, data.simulated_2d)."""
    moved = []
    for v in views:
        boxes = v.detections.boxes_xyxy.copy()
        for b in np.flatnonzero(v.detections.ids == box_id):
            inward = 2.0 + 0.03 * (boxes[b, 2:] - boxes[b, :2])  # along x, along y [px]
            limits = (v.camera.width - 1.0, v.camera.height - 1.0)
            for axis in (0, 1):
                if boxes[b, axis] <= 1.0:
                    boxes[b, axis] += inward[axis]
                if boxes[b, axis + 2] >= limits[axis] - 1.0:
                    boxes[b, axis + 2] -= inward[axis]
        detections = Detections2D(boxes, v.detections.class_ids, v.detections.scores, v.detections.frame_id,
                                  v.detections.stamp_ns, list(v.detections.ids))
        moved.append(CameraView(detections, v.camera, v.T_cam_lidar))
    return moved


@pytest.mark.parametrize("side_m", [3.5, -3.5])
@pytest.mark.parametrize("x_m", [0.0, 1.3])
def test_a_car_beside_the_ego_whose_2d_boxes_end_near_the_image_borders_is_placed_by_its_returns(x_m, side_m):
    """The car of the test above, its 2D boxes' edges on the image borders moved a few pixels into the image, as a
    detector's box of a cut object ends near the border rather than on it: taken as the object's ends, those edges put
    a car 4 m from the ego 1.65 m off along its length (world v2 seed 8, the good simulated 2D). An edge within a few
    pixels of the border counts as cut (ClusterParams.border, core.frustum.ImageBorder: 4 px + 6 % of the side)."""
    rig = load_rig()
    car, points, views = car_beside_the_ego(x_m, side_m, rig)
    views = edges_moved_off_the_border(views, "0")
    assert not cut_in(views, "0")  # no edge of the car's boxes lies on an image border any more
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    best = np.argmax(dets.scores)
    assert np.linalg.norm(dets.centers[best, :2] - car.centers[0, :2]) < 0.3
    assert abs(dets.centers[best, 2] - car.centers[0, 2]) < 0.1


@pytest.mark.parametrize("x_m, side_m", [(9.0, 4.5), (-8.0, -5.0), (14.0, -4.0)])
def test_a_low_parked_bicycle_before_a_wall_is_placed_at_its_returns_not_at_the_wall(x_m, side_m):
    """A parked bicycle 0.8 m tall (the class's mean height is 1.30 m) before a house wall 3 m further out: by its 2D
    box's height alone its object cluster was expected 1.6 x its depth away, near the wall's returns, and the bicycle
    was placed at the wall (6 m off in world v2, seed 9, at 0.5 s). Its box's bottom edge meets the ground where it
    stands (core.ground_contact), which puts the expected depth at its own returns."""
    rig = load_rig()
    bike = Detections3D(np.array([[x_m, side_m, 0.4]]), np.array([[1.7, 0.6, 0.8]]), [0.0], ["bicycle"], [1.0],
                        "base_link", ids=["0"])
    wall_y = side_m + np.sign(side_m) * 3.0
    fine = list(LIDARSEG_FINE_CATEGORIES)
    labels = np.array([fine.index("vehicle.bicycle"), fine.index("static.manmade")], np.uint8)
    prims = Primitives(np.array([[x_m, side_m, 0.4], [x_m, wall_y, 2.0]]),
                       np.array([[1.7, 0.6, 0.8], [40.0, 0.5, 4.0]]), np.zeros(2), labels, np.arange(2),
                       np.full((2, 3), 0.5), cyl_centers=np.zeros((0, 2)), cyl_z=np.zeros((0, 2)),
                       cyl_radii=np.zeros(0), cyl_labels=np.zeros(0, np.uint8), cyl_colors=np.zeros((0, 3)))
    points, _, views = sweep_and_views(prims, bike, rig)
    dets = detect_3d(points, views, rig.T_base_lidar, params=NODE_DEFAULTS)
    bicycles = np.flatnonzero(dets.class_ids == "bicycle")
    assert len(bicycles)
    assert np.min(np.linalg.norm(dets.centers[bicycles, :2] - bike.centers[0, :2], axis=1)) < 0.5
