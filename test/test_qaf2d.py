"""QAF2D anchor lifting: round trips through projection with an independent corner/IoU computation."""
from collections import Counter

import numpy as np
import pytest

from perception3d.core import qaf2d
from perception3d.core.boxes import box_corners, iou_2d
from perception3d.core.camera import CameraModel, project_points
from perception3d.core.geometry import invert_transform, make_transform, transform_points, wrap_angle

K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
CAMERA = CameraModel(K, 1600, 900, frame_id="cam")
MOUNT_YAW = 0.5  # the camera looks 0.5 rad left of base +x; level, so anchors are exact boxes in base_link
_RZ = np.array([[np.cos(MOUNT_YAW), -np.sin(MOUNT_YAW), 0.0], [np.sin(MOUNT_YAW), np.cos(MOUNT_YAW), 0.0],
                [0.0, 0.0, 1.0]])
T_BASE_CAM = make_transform(_RZ @ np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), [1.5, 0.2, 1.6])
T_CAM_BASE = invert_transform(T_BASE_CAM)


def project_box(center, size_lwh, yaw, clip=True):
    """Independent path: core.boxes corners -> camera -> pixels -> min/max box (optionally clipped)."""
    corners = box_corners(center, size_lwh, yaw)
    uv = project_points(CAMERA, transform_points(T_CAM_BASE, corners.reshape(-1, 3))).uv.reshape(-1, 8, 2)
    box = np.hstack([uv.min(axis=1), uv.max(axis=1)])
    return np.clip(box, 0, [CAMERA.width, CAMERA.height] * 2) if clip else box


def car_in_view(depth, bearing, yaw, size=(4.6, 1.9, 1.7)):
    center = T_BASE_CAM[:3, 3] + _RZ @ np.array([depth * np.cos(bearing), depth * np.sin(bearing), 0.0])
    center[2] = size[2] / 2
    return center, np.array(size), yaw


def yaw_error(a, b):
    """Heading difference modulo pi (a box looks the same turned round) [rad]."""
    d = np.abs(wrap_angle(np.asarray(a) - b))
    return np.minimum(d, np.pi - d)


@pytest.mark.parametrize("depth,bearing,yaw", [(25.0, 0.1, 0.6), (12.0, -0.3, 2.0), (38.0, 0.25, -1.2)])
def test_round_trip_paper_threshold(depth, bearing, yaw):
    center, size, yaw = car_in_view(depth, bearing, yaw)
    box = project_box(center, size, [yaw], clip=False)
    anchors = qaf2d.lift_boxes(box, ["car"], CAMERA, T_BASE_CAM, iou_threshold=0.98, top_k=3)
    assert 1 <= len(anchors) <= 3
    assert np.all(anchors.ious > 0.98) and np.all(np.diff(anchors.ious) <= 0)
    # The reported IoU equals an independent recomputation from the output boxes (centre, size, yaw in base).
    recomputed = iou_2d(project_box(anchors.centers, anchors.sizes_lwh, anchors.yaws), box)[:, 0]
    assert recomputed == pytest.approx(anchors.ious, abs=1e-6)
    # Depth ambiguity: the anchors lie on the ray through the true centre (within ~1.5 degrees).
    true_cam = transform_points(T_CAM_BASE, center[None])[0]
    cos = anchors.centers_cam @ true_cam / np.linalg.norm(anchors.centers_cam, axis=1) / np.linalg.norm(true_cam)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.5
    assert np.allclose(transform_points(T_BASE_CAM, anchors.centers_cam), anchors.centers)


def test_all_candidates_contain_the_truth():
    rng = np.random.default_rng(5)
    for _ in range(5):
        center, size, yaw = car_in_view(rng.uniform(10, 40), rng.uniform(-0.4, 0.4), rng.uniform(-np.pi, np.pi))
        box = project_box(center, size, [yaw], clip=False)
        # The heading/size grid is coarse: the near-true candidate's IoU can drop below 0.9 (seen: 0.87).
        anchors = qaf2d.lift_boxes(box, ["car"], CAMERA, T_BASE_CAM, iou_threshold=0.8, top_k=10_000)
        near_yaw = yaw_error(anchors.yaws, yaw) <= np.radians(7.5) + 1e-9
        assert near_yaw.any()
        # With the nearest 15-degree heading and the 0.5 m size grid some anchor sits close to the true box.
        assert np.linalg.norm(anchors.centers[near_yaw] - center, axis=1).min() < 0.75


def test_truncated_object_keeps_anchors_thanks_to_clipping():
    # A car straddling the image's right border: the unclipped projected box would never match the clipped one.
    center, size, yaw = car_in_view(14.0, -0.55, 0.3)
    raw = project_box(center, size, [yaw], clip=False)[0]
    assert raw[2] > CAMERA.width and raw[0] < CAMERA.width
    box = project_box(center, size, [yaw])
    anchors = qaf2d.lift_boxes(box, ["car"], CAMERA, T_BASE_CAM, iou_threshold=0.9, top_k=3)
    assert len(anchors) > 0
    assert iou_2d(project_box(anchors.centers, anchors.sizes_lwh, anchors.yaws), box)[:, 0] == pytest.approx(
        anchors.ious, abs=1e-6)


def test_no_anchor_has_a_corner_behind_the_camera():
    # A nearby box: many candidates (3 m depth, 7 m long far face) would reach behind the camera.
    center, size, yaw = car_in_view(5.0, 0.0, 0.2)
    box = project_box(center, size, [yaw])
    anchors = qaf2d.lift_boxes(box, ["car"], CAMERA, T_BASE_CAM, iou_threshold=0.5, top_k=10_000)
    assert len(anchors) > 0
    corners = box_corners(anchors.centers, anchors.sizes_lwh, anchors.yaws)
    depth = transform_points(T_CAM_BASE, corners.reshape(-1, 3))[:, 2]
    assert depth.min() > 0.1


def test_several_boxes_and_classes_in_one_call():
    car = car_in_view(20.0, 0.15, 0.4)
    ped = car_in_view(12.0, -0.2, 1.0, size=(0.7, 0.6, 1.75))
    boxes = np.vstack([project_box(*car[:2], [car[2]]), project_box(*ped[:2], [ped[2]])])
    anchors = qaf2d.lift_boxes(boxes, ["car", "pedestrian"], CAMERA, T_BASE_CAM, iou_threshold=0.9, top_k=4)
    assert set(anchors.box_index.tolist()) == {0, 1}
    assert np.all(np.diff(anchors.box_index) >= 0) and np.bincount(anchors.box_index).max() <= 4
    for box_index, name in enumerate(["car", "pedestrian"]):
        grid = qaf2d.size_range(name).size_grid()
        sizes = anchors.sizes_lwh[anchors.box_index == box_index]
        for l_, w in sizes[:, :2]:
            assert np.any(np.isclose(grid[:, 0], w) & np.isclose(grid[:, 1], l_))
        h_range = qaf2d.size_range(name).height
        assert np.all((sizes[:, 2] >= h_range[0]) & (sizes[:, 2] <= h_range[1]))


def test_depth_windows_prune_candidates():
    center, size, yaw = car_in_view(20.0, 0.0, 0.4)
    box = project_box(center, size, [yaw])
    near = qaf2d.lift_boxes(box, ["car"], CAMERA, T_BASE_CAM, 0.9, 10_000, depth_windows=[[15.0, 24.0]])
    assert len(near) > 0
    # Every anchor's vertical edge (the nearest or the lateral corner) is within the window, so its centre is
    # no nearer than 15 m minus half the largest car diagonal along z.
    assert near.centers_cam[:, 2].min() > 15.0 - 3.8
    assert len(qaf2d.lift_boxes(box, ["car"], CAMERA, T_BASE_CAM, 0.9, 10_000, depth_windows=[[60.0, 70.0]])) == 0


def test_size_tables():
    car = qaf2d.size_range("car").size_grid()
    assert len(car) == 4 * 8  # w 1.45..2.95, l 3.45..6.95 in 0.5 m steps
    assert sorted(set(car[:, 0].round(2))) == [1.45, 1.95, 2.45, 2.95]
    assert car[:, 1].max() == pytest.approx(6.95)
    # 2 edges x 32 sizes x 24 yaws x 67 depths: the paper's ~103k candidates before the height filter.
    assert 2 * len(car) * len(qaf2d.YAW_CANDIDATES) * len(qaf2d.DEPTH_CANDIDATES_M) == 102_912
    assert qaf2d.DEPTH_CANDIDATES_M[[0, -1]] == pytest.approx([3.0, 102.0])
    # Trailer: nuScenes prior mean +- 2 std: w 2.92 +- 1.10, l 12.28 +- 9.2, h 3.87 +- 1.54.
    trailer = qaf2d.size_range("trailer")
    assert trailer.width == pytest.approx((1.82, 4.02))
    assert trailer.length == pytest.approx((3.08, 21.48))
    assert trailer.height == pytest.approx((2.33, 5.41))
    assert qaf2d.size_range("unknown_thing") == qaf2d.GENERIC_SIZE_RANGE


def test_each_anchor_stands_on_a_lifted_box_edge():
    # Every anchor has a vertical edge whose top and bottom project exactly onto (x0 or x1, y0) and (.., y1),
    # and that edge is the extreme corner on its side (independent check with core.boxes corners).
    center, size, yaw = car_in_view(22.0, 0.12, 0.9)
    box = project_box(center, size, [yaw])[0]
    anchors = qaf2d.lift_boxes(box[None], ["car"], CAMERA, T_BASE_CAM, iou_threshold=0.9, top_k=50)
    corners = box_corners(anchors.centers, anchors.sizes_lwh, anchors.yaws)  # bottom face 0-3, top face 4-7
    uv = project_points(CAMERA, transform_points(T_CAM_BASE, corners.reshape(-1, 3))).uv.reshape(-1, 8, 2)
    for a in range(len(anchors)):
        found = False
        for k in range(4):
            bottom, top = uv[a, k], uv[a, k + 4]
            for x_edge, extreme in ((box[0], uv[a, :, 0].min()), (box[2], uv[a, :, 0].max())):
                if np.allclose([bottom[0], top[0], top[1], bottom[1]], [x_edge, x_edge, box[1], box[3]], atol=1e-6):
                    found = found or np.isclose(extreme, x_edge, atol=1e-6)
        assert found


def test_float32_floor_keeps_float64_threshold_comparisons():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-2, 2, 2000), rng.uniform(0, 1, 2000).astype(np.float32), [0.0, -0.0, 0.9, 0.98,
                        1e-40, 3e38, -3e38, np.inf, -np.inf]])
    f = qaf2d._float32_floor(x)
    assert f.dtype == np.float32
    assert np.all(f.astype(np.float64) <= x)  # the largest float32 <= x: the next one up is above x
    finite = np.isfinite(x)
    assert np.all(np.nextafter(f[finite], np.float32(np.inf)).astype(np.float64) > x[finite])
    # A float32 value passes the float32 comparison exactly when it passes the float64 one.
    v = np.concatenate([f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf)),
                        x.astype(np.float32)])
    xx = np.tile(x, 4)
    assert np.array_equal(v > xx, v > np.tile(f, 4))


def test_corner_offsets_match_the_direct_formulas():
    # Per placement k: width side at side_k w (-sin t, -cos t) in (x, z), far face at l (cos t, -sin t).
    sizes = qaf2d.size_range("truck")
    off_x, off_z = qaf2d._corner_offsets(sizes.width, sizes.length)
    grid = sizes.size_grid()
    for k in range(2 * len(qaf2d.YAW_CANDIDATES)):
        t = qaf2d.YAW_CANDIDATES[k % 24]
        side_w = (1.0 if k < 24 else -1.0) * grid[:, 0]
        wx, wz = -np.sin(t) * side_w, -np.cos(t) * side_w
        lx, lz = np.cos(t) * grid[:, 1], -np.sin(t) * grid[:, 1]
        np.testing.assert_allclose(off_x[:, k], np.float32([wx, lx, wx + lx]), atol=1e-6)
        np.testing.assert_allclose(off_z[:, k], np.float32([wz, lz, wz + lz]), atol=1e-6)
    assert off_x.dtype == np.float32 and not off_x.flags.writeable


@pytest.mark.parametrize("top_k_per_yaw", [False, True])
def test_mixed_classes_match_one_class_at_a_time(top_k_per_yaw):
    # All classes are searched in one pass: the same anchors, in the same order, as class by class.
    rng = np.random.default_rng(5)
    x0 = rng.uniform(-50, 1500, (30, 2)) * [1, 0.55]
    boxes = np.hstack([x0, x0 + rng.uniform(20, 400, (30, 2))])
    classes = rng.choice(["car", "pedestrian", "truck", "barrier", "no_such_class"], 30)
    threshold = rng.uniform(0.6, 0.9, 30)
    every = qaf2d.lift_boxes(boxes, classes, CAMERA, T_BASE_CAM, threshold, 3, top_k_per_yaw=top_k_per_yaw)
    parts = []
    for name in dict.fromkeys(classes):
        index = np.flatnonzero(classes == name)
        part = qaf2d.lift_boxes(boxes[index], classes[index], CAMERA, T_BASE_CAM, threshold[index], 3,
                                top_k_per_yaw=top_k_per_yaw)
        part.box_index = index[part.box_index]
        parts.append(part)
    fields = ("box_index", "centers", "sizes_lwh", "yaws", "ious", "centers_cam", "ry")
    merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    order = np.lexsort((-merged["ious"], merged["box_index"]))
    assert len(every) > 50 and len(np.unique(every.box_index)) > 20
    for f in fields:
        assert np.array_equal(getattr(every, f), merged[f][order])


def test_size_tables_hold_each_range_in_chunks_of_its_corner_offsets():
    ranges = (qaf2d.SIZE_RANGES["car"], qaf2d.SIZE_RANGES["pedestrian"], qaf2d.SIZE_RANGES["truck"])
    tables = qaf2d._size_tables(ranges)
    chunk = qaf2d.SIZE_CHUNK
    for r, sizes in enumerate(ranges):
        off_x, off_z = qaf2d._corner_offsets(sizes.width, sizes.length)
        grid = qaf2d._size_grid(sizes.width, sizes.length)
        count = len(grid)
        assert tables.n_chunk[r] == -(-count // chunk)
        assert np.array_equal(tables.grid[tables.grid_start[r]:tables.grid_start[r] + count], grid)
        for k in (0, 17, 47):
            for j in range(tables.n_chunk[r]):
                column = tables.start[r] + tables.n_chunk[r] * k + j
                sizes_here = np.arange(j * chunk, (j + 1) * chunk)
                real = sizes_here < count
                for table, offsets in ((tables.off_x, off_x), (tables.off_z, off_z)):
                    assert np.array_equal(table[:, real, column], offsets[:, k, sizes_here[real]])
                    assert np.all(np.isnan(table[:, ~real, column]))


def test_placement_yaws_equal_ry_to_yaw_per_anchor_bit_for_bit():
    from perception3d.core.km3d import ry_to_yaw
    rng = np.random.default_rng(6)
    T_cams = np.array([make_transform(_RZ @ T_BASE_CAM[:3, :3] @ np.linalg.qr(rng.normal(size=(3, 3)))[0],
                                      rng.normal(size=3)) for _ in range(5)])
    table = qaf2d._placement_yaws(T_cams)
    # Not one row: ry_to_yaw of a single row may take numpy's scalar arctan2 (1 ulp apart, `geometry.arctan2`).
    for count in (2, 7, 1000):
        cam, placement = rng.integers(0, 5, count), rng.integers(0, 48, count)
        T_anchor = T_cams[cam]
        direct = ry_to_yaw(qaf2d._THETA[placement], T_anchor[:, :3, :3])
        assert np.array_equal(table[cam, placement], direct)


def test_top_k_per_group_matches_sorting_each_group():
    rng = np.random.default_rng(4)
    group = np.sort(rng.choice([3, 7, 8, 20, 41, 42], 300))
    iou = (rng.integers(0, 12, 300) / 11).astype(np.float32)  # many ties
    for top_k in (0, 1, 3, 60, 400):
        expected = [i for g in np.unique(group)
                    for i in sorted(np.flatnonzero(group == g), key=lambda i: (-iou[i], i))[:top_k]]
        assert qaf2d._top_k_per_group(group, iou, top_k).tolist() == expected


@pytest.mark.parametrize("top_k_per_yaw", [False, True])
def test_top_k_is_the_best_of_all_candidates_ties_in_enumeration_order(top_k_per_yaw):
    # Boxes crossing the image border: many candidates clip to the same box, hence equal IoUs.
    rng = np.random.default_rng(8)
    x0 = rng.uniform(-300, 1500, (20, 2)) * [1, 0.55]
    boxes = np.hstack([x0, x0 + rng.uniform(40, 600, (20, 2))])
    classes = rng.choice(["car", "pedestrian", "truck", "barrier"], 20)
    every = qaf2d.lift_boxes(boxes, classes, CAMERA, T_BASE_CAM, 0.5, 10**6, top_k_per_yaw=top_k_per_yaw)
    best = qaf2d.lift_boxes(boxes, classes, CAMERA, T_BASE_CAM, 0.5, 3, top_k_per_yaw=top_k_per_yaw)
    # `every` is sorted by box, then IoU descending, ties in enumeration order: a group's first 3 are its best.
    group = every.box_index * 100 + (np.round(every.ry / (np.pi / 12)).astype(int) % 24 if top_k_per_yaw else 0)
    count, rank = Counter(), []
    for g in group.tolist():
        rank.append(count[g])
        count[g] += 1
    rank = np.array(rank)
    assert np.any(np.diff(every.ious)[np.diff(group) == 0] == 0)  # ties to break
    assert len(best) > 50 and np.count_nonzero(rank >= 3) > 100
    for f in ("box_index", "centers", "sizes_lwh", "yaws", "ious", "centers_cam", "ry"):
        assert np.array_equal(getattr(best, f), getattr(every, f)[rank < 3])


def _full_range_boxes(seed, count=24):
    """Random boxes of several classes, some crossing the image border (clipped), searched over all depths."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-300, 1500, (count, 2)) * [1, 0.55]
    boxes = np.hstack([x0, x0 + rng.uniform(15, 500, (count, 2))])
    return boxes, rng.choice(["car", "pedestrian", "truck", "barrier", "bicycle"], count)


def test_height_bound_is_above_every_size_of_its_row(monkeypatch):
    # Every candidate's IoU (the search's own, all sizes of all rows) lies at or below its row's bound.
    searches = []
    monkeypatch.setattr(qaf2d, "_bounded_search", lambda *args: searches.append(args) or qaf2d._search(*args[:6]))
    boxes, classes = _full_range_boxes(11)
    qaf2d.lift_boxes(boxes, classes, CAMERA, T_BASE_CAM, 1e-6, 1)
    edge, box, pair_box, placement, row_range, tables = searches[0][:6]
    bound = qaf2d._height_bound(edge, box, pair_box, placement, row_range, tables)
    row, _, iou = qaf2d._search(edge, box, pair_box, placement, row_range, tables)
    assert len(row) > 10_000
    # (the search's float32 IoUs may exceed the float64 bound by their rounding: ~1e-6, well inside _BOUND_SLACK)
    assert np.all(iou <= bound[row] * (1 + 1e-5)) and qaf2d._BOUND_SLACK >= 1e-5
    # It is not trivial: most rows of a box lie below the IoU the box's best candidate reaches (their search is
    # what the bounded search leaves out), and some candidates reach their bound (the heights fit exactly).
    best = np.zeros(len(boxes))
    np.maximum.at(best, pair_box[row], iou)
    assert np.mean(bound < best[pair_box]) > 0.5
    assert np.any(iou >= 0.99 * bound[row])


@pytest.mark.parametrize("threshold,top_k,top_k_per_yaw,most_rows", [
    (0.5, 1, False, 0.85), (0.9, 3, False, 0.7), (np.linspace(0.3, 0.95, 24), 4, False, 0.85), (0.7, 2, True, 1.0)])
def test_bounded_search_keeps_the_anchors_of_the_whole_search(monkeypatch, threshold, top_k, top_k_per_yaw,
                                                              most_rows):
    # The same anchors with and without the bounds; the bounded search leaves rows out (per heading, a group has
    # few rows beyond its FIRST_ROWS, hence most_rows 1).
    boxes, classes = _full_range_boxes(12)
    searched = []
    search = qaf2d._search
    monkeypatch.setattr(qaf2d, "_search", lambda edge, *rest: searched.append(edge.shape[1]) or search(edge, *rest))
    results = {}
    for name, rows_per_group in (("whole", 10**9), ("bounded", 1)):
        monkeypatch.setattr(qaf2d, "BOUNDED_ROWS_PER_GROUP", rows_per_group)
        searched.clear()
        results[name] = qaf2d.lift_boxes(boxes, classes, CAMERA, T_BASE_CAM, threshold, top_k,
                                         top_k_per_yaw=top_k_per_yaw)
        results[name + " rows"] = sum(searched)
    assert len(results["whole"]) > 20
    for f in ("box_index", "centers", "sizes_lwh", "yaws", "ious", "centers_cam", "ry"):
        assert np.array_equal(getattr(results["bounded"], f), getattr(results["whole"], f))
    assert results["bounded rows"] < most_rows * results["whole rows"]
