"""Point-box pairs of core.frustum against straightforward computations on random images: the pairs and their
order (points_in_boxes_2d), the clusters of several images computed at once (frustum_clusters' parts), the cover
of same-kind lower boxes (points_in_boxes_covered) and the one owner of a point held by several boxes
(_nearest_owner)."""
import numpy as np

from perception3d.core.frustum import (
    _by_box_then_depth,
    _kind_codes,
    _nearest_owner,
    frustum_clusters,
    points_in_boxes_2d,
    points_in_boxes_covered,
)


def _random_image(rng, n_points=400, n_boxes=12):
    """Pixels (with repeated columns and rows) and boxes (some degenerate, some touching the pixel grid)."""
    uv = np.round(rng.uniform(0.0, 100.0, (n_points, 2)), 1)
    corners = np.round(rng.uniform(0.0, 100.0, (n_boxes, 2, 2)), 1)
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    boxes[0] = [uv[0, 0], uv[0, 1], uv[0, 0], uv[0, 1]]  # a box of one pixel, edges included
    return uv, boxes


def test_pairs_are_those_inside_each_box_by_box_then_column():
    rng = np.random.default_rng(0)
    for _ in range(20):
        uv, boxes = _random_image(rng)
        point, box = points_in_boxes_2d(uv, boxes)
        by_u = np.argsort(uv[:, 0], kind="stable")
        expected = [(p, b) for b in range(len(boxes)) for p in by_u
                    if boxes[b, 0] <= uv[p, 0] <= boxes[b, 2] and boxes[b, 1] <= uv[p, 1] <= boxes[b, 3]]
        assert [(int(p), int(b)) for p, b in zip(point, box)] == expected


def test_pairs_are_ordered_by_box_then_depth_then_pair_over_any_depth_range():
    rng = np.random.default_rng(4)
    for top in (30.0, 1e3, 1e30, 1e300):  # the wider the range, the fewer boxes per sort
        for _ in range(10):
            box = np.sort(rng.integers(0, 40, 500))
            depth = np.round(np.exp(rng.uniform(np.log(0.1), np.log(top), 500)), 1)  # with ties
            depth[rng.random(500) < 0.2] = top
            assert np.array_equal(_by_box_then_depth(box, depth), np.lexsort((depth, box)))


def test_the_clusters_of_several_images_at_once_are_those_of_each_image():
    rng = np.random.default_rng(3)
    for _ in range(10):
        images = [_random_image(rng, int(rng.integers(0, 300)), int(rng.integers(1, 10))) for _ in range(4)]
        depths = [np.round(rng.uniform(1.0, 30.0, len(uv)), 1) for uv, _ in images]  # with ties
        kinds = [rng.choice(np.array(["car", "truck", "pedestrian"]), len(boxes)) for _, boxes in images]
        extents = [rng.uniform(1.0, 10.0, len(boxes)) for _, boxes in images]
        expected = [np.where(rng.random(len(boxes)) < 0.3, np.nan, rng.uniform(1.0, 30.0, len(boxes)))
                    for _, boxes in images]
        point_start = np.cumsum([0] + [len(uv) for uv, _ in images])
        box_start = np.cumsum([0] + [len(boxes) for _, boxes in images])
        together = frustum_clusters(np.concatenate([uv for uv, _ in images]), np.concatenate(depths),
                                    np.concatenate([boxes for _, boxes in images]), np.concatenate(extents),
                                    np.concatenate(expected), kinds=np.concatenate(kinds),
                                    parts=(point_start, box_start)).split(point_start, box_start)
        for (uv, boxes), depth, kind, extent, estimate, part in zip(images, depths, kinds, extents, expected,
                                                                    together):
            alone = frustum_clusters(uv, depth, boxes, extent, estimate, kinds=kind)
            for field in ("point", "box", "depth", "u", "covered", "in_cluster", "in_next_cluster", "expected_depth"):
                assert np.array_equal(getattr(part, field), getattr(alone, field), equal_nan=field == "expected_depth")
            assert np.array_equal(part.kind[:, None] == part.kind, alone.kind[:, None] == alone.kind)


def test_kind_codes_are_the_inverse_of_np_unique():
    rng = np.random.default_rng(5)
    names = np.array(["car", "truck", "pedestrian", "barrier", "bus", "a", "Car", "car "])
    for n in (0, 1, 7, 200):
        for kinds in (rng.choice(names, n), rng.choice(names, n).astype(object), rng.integers(-3, 12, n)):
            codes = _kind_codes(kinds)
            expected = np.unique(kinds, return_inverse=True)[1]
            assert codes.dtype == expected.dtype and np.array_equal(codes, expected)


def test_a_pair_is_covered_by_a_lower_box_of_its_kind_only():
    rng = np.random.default_rng(1)
    for _ in range(20):
        uv, boxes = _random_image(rng)
        kinds = rng.choice(np.array(["car", "truck", "pedestrian"], dtype=object), len(boxes))
        point, box, covered = points_in_boxes_covered(uv, boxes, kinds)
        inside = ((uv[:, None, 0] >= boxes[:, 0]) & (uv[:, None, 0] <= boxes[:, 2])
                  & (uv[:, None, 1] >= boxes[:, 1]) & (uv[:, None, 1] <= boxes[:, 3]))
        expected = [bool(np.any(inside[p] & (kinds == kinds[b]) & (boxes[:, 3] > boxes[b, 3])))
                    for p, b in zip(point, box)]
        assert covered.tolist() == expected


def test_a_point_held_by_several_boxes_stays_with_the_nearest_uncovered_one():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n_points, n_boxes, n_pairs = 30, 6, 80
        pairs = np.unique(np.stack([rng.integers(0, n_boxes, n_pairs), rng.integers(0, n_points, n_pairs)], 1), axis=0)
        box, point = pairs.T  # sorted by box
        on = rng.random(len(box)) < 0.8
        covered = rng.random(len(box)) < 0.3
        kind = rng.integers(0, 2, n_boxes)
        box_depth = rng.choice([5.0, 7.0, 9.0], n_boxes)  # ties between boxes: the lower box index wins
        keep = _nearest_owner(on, point, box, covered, kind, box_depth)
        expected = np.zeros_like(on)
        for p in np.unique(point[on]):
            holders = np.flatnonzero(on & (point == p))
            uncovered_kinds = set(kind[box[holders[~covered[holders]]]])
            competing = [q for q in holders if not (covered[q] and kind[box[q]] in uncovered_kinds)]
            expected[min(competing, key=lambda q: (box_depth[box[q]], q))] = True
        assert np.array_equal(keep, expected)


def test_a_cars_depth_extent_starts_behind_the_barrier_in_front_of_it():
    """A barrier 1 m in front of a car seen along its length (its returns 11-16 m, no gap above gap_m) starts the
    car's depth cluster. The car's 5 m depth extent counts from its first return that no lower box (the nearer
    barrier's) holds: all of the car stays in its cluster. Unboxed returns in front (a kerb post) still start it."""
    car_box, barrier_box = [120.0, 250.0, 400.0, 380.0], [100.0, 300.0, 200.0, 400.0]  # the barrier's bottom is lower
    barrier_uv = np.stack(np.meshgrid(np.arange(130.0, 195.0, 10.0), np.arange(320.0, 395.0, 10.0)), -1).reshape(-1, 2)
    car_uv = np.stack([np.linspace(210.0, 390.0, 41), np.full(41, 320.0)], axis=1)
    car_depth = np.linspace(11.0, 16.0, 41)  # 0.125 m apart
    uv = np.vstack([barrier_uv, car_uv])
    depth = np.concatenate([np.linspace(10.0, 10.4, len(barrier_uv)), car_depth])
    boxes, kinds, extent = np.array([car_box, barrier_box]), np.array(["car", "barrier"]), np.array([5.0, 1.0])
    clusters = frustum_clusters(uv, depth, boxes, extent, kinds=kinds)
    car = (clusters.box == 0) & (clusters.point >= len(barrier_uv))
    assert car.sum() == 41 and clusters.in_cluster[car].all()
    unboxed = frustum_clusters(uv, depth, boxes[:1], extent[:1], kinds=kinds[:1])  # the same returns, no barrier box
    car = unboxed.point >= len(barrier_uv)
    assert np.array_equal(unboxed.in_cluster[car], unboxed.depth[car] <= 10.0 + 5.0)
