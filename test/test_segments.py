"""core.segments: the KM3D placement of a box of known size and heading from its 2D box edges, the point cost, the
projected corners."""
import numpy as np

from perception3d.core.km3d import keypoint_offsets
from perception3d.core.segments import place_by_box_edges
from scene_helpers import box_frame_excess_one_by_one, random_box_fit_problem


def _edges(center_cam, size_lwh, ry):
    """The 2D box (N, 4) of boxes in normalised image coordinates: the extremes of their projected corners."""
    corners = center_cam[:, None, :] + keypoint_offsets(size_lwh, ry, 8)
    u, v = corners[..., 0] / corners[..., 2], corners[..., 1] / corners[..., 2]
    return np.stack([u.min(1), v.min(1), u.max(1), v.max(1)], axis=1)


def test_the_edges_of_a_projected_box_give_back_its_centre():
    rng = np.random.default_rng(0)
    n = 50
    truth = np.stack([rng.uniform(-8, 8, n), rng.uniform(0.5, 1.5, n), rng.uniform(8, 40, n)], axis=1)
    size = np.stack([rng.uniform(3.5, 5.5, n), rng.uniform(1.6, 2.1, n), rng.uniform(1.4, 1.9, n)], axis=1)
    ry = rng.uniform(-np.pi, np.pi, n)
    start = truth + rng.normal(0.0, 0.02, (n, 3)) * truth[:, 2:3]  # 2 % of the depth off
    placed = place_by_box_edges(start, size, ry, _edges(truth, size, ry), np.zeros((n, 4), dtype=bool),
                                iterations=3)
    assert np.median(np.linalg.norm(placed - truth, axis=1)) < 0.01
    assert np.all(np.linalg.norm(placed - truth, axis=1) < np.linalg.norm(start - truth, axis=1))


def test_a_box_whose_column_edges_both_lie_on_the_image_border_keeps_its_start():
    truth = np.array([[0.5, 1.0, 12.0]])
    size, ry = np.array([[4.6, 1.9, 1.7]]), np.array([0.3])
    start = truth + [[0.4, 0.0, 0.5]]
    on_border = np.array([[True, True, False, False]])  # left and right: only the rows are left, depth is free
    placed = place_by_box_edges(start, size, ry, _edges(truth, size, ry), on_border)
    assert np.array_equal(placed, start)


def test_a_box_against_its_segment_extremes_puts_the_sides_facing_the_sensor_on_them():
    """Three 4 x 2 m boxes along heading 30 deg (the LiDAR at the origin): one whose segment lies ahead of the sensor
    and to its left along that heading, one behind and to its right, one beside the sensor along it. The sides
    facing the sensor lie on the extremes, the far sides a box length beyond; beside the sensor the box is centred
    on the segment, and so is a flat face along its long axis. A flat face moves in z as little as makes it hold
    its segment's height span (one holds it already, one lies below it, one is lower than it: centred); another box
    stands on the ground under its segment where that is known and the segment spans at least 0.8 of its length
    (the third: 4 m; the others 2 and 3 m keep their height)."""
    from perception3d.core.segments import _against_extremes

    heading = np.radians(30.0)
    extremes = np.array([[5.0, 7.0, 1.0, 2.5], [-9.0, -6.0, -4.0, -3.0], [-1.0, 3.0, 2.0, 2.6]])  # along, across
    size = np.tile([4.0, 2.0, 1.5], (3, 1))
    R, t = np.tile(np.eye(3), (3, 1, 1)), np.zeros((3, 3))  # the "camera" frame is the LiDAR frame here
    start = np.array([[0.0, 0.0, 0.7]] * 3)
    height_span = np.array([[0.2, 1.0], [1.5, 2.0], [-0.5, 2.5]])  # least and greatest z of the segments [m]
    yaws = np.full(3, heading + np.pi)  # the length along the heading (either way round)
    unknown = np.full(3, np.nan)  # the ground under the segments
    moved = _against_extremes(start, size, yaws, np.full(3, heading), extremes, height_span, R, t,
                              np.zeros(3, dtype=bool), unknown, 0.8)
    c, s = np.cos(heading), np.sin(heading)
    along, across = moved[:, 0] * c + moved[:, 1] * s, moved[:, 1] * c - moved[:, 0] * s
    np.testing.assert_allclose(along, [5.0 + 2.0, -6.0 - 2.0, 1.0])
    np.testing.assert_allclose(across, [1.0 + 1.0, -3.0 - 1.0, 2.0 + 1.0])
    np.testing.assert_allclose(moved[:, 2], 0.7)
    standing = _against_extremes(start, size, yaws, np.full(3, heading), extremes, height_span, R, t,
                                 np.zeros(3, dtype=bool), np.full(3, -1.8), 0.8)
    np.testing.assert_allclose(standing[:, :2], moved[:, :2])
    np.testing.assert_allclose(standing[:, 2], [0.7, 0.7, -1.8 + 0.75])
    turned = _against_extremes(start, size, np.full(3, heading + np.pi / 2), np.full(3, heading), extremes,
                               height_span, R, t, np.zeros(3, dtype=bool), unknown, 0.8)
    np.testing.assert_allclose(turned[0, 0] * c + turned[0, 1] * s, 5.0 + 1.0)  # the width along the heading now
    # a flat face (a barrier) is centred on its segment along its long axis, its near side on the extreme across it
    flat = _against_extremes(start, size, yaws, np.full(3, heading), extremes, height_span, R, t,
                             np.ones(3, dtype=bool), np.full(3, -1.8), 0.8)
    along, across = flat[:, 0] * c + flat[:, 1] * s, flat[:, 1] * c - flat[:, 0] * s
    np.testing.assert_allclose(along, [6.0, -7.5, 1.0])
    np.testing.assert_allclose(across, [1.0 + 1.0, -3.0 - 1.0, 2.0 + 1.0])
    np.testing.assert_allclose(flat[:, 2], [0.7, 2.0 - 0.75, 1.0])  # 1.5 m high boxes


def test_segment_cost_is_the_mean_capped_distance_to_the_box_surface_computed_point_by_point():
    """segment_cost (point-major, with point_sum) gives the same floats as the straightforward computation on the
    gathered points (M, K, 3): distance to the surface inside and outside, capped, averaged over the valid points."""
    from perception3d.core.segments import FitParams, segment_cost

    rng = np.random.default_rng(5)
    box_of = rng.integers(0, 40, 900)
    points, valid, centers, sizes, yaws = random_box_fit_problem(rng, box_of, groups=40)
    ax, ay, az = box_frame_excess_one_by_one(points[box_of], centers, sizes, yaws)
    inside = np.maximum(np.maximum(ax, ay), az)
    outside = np.sqrt(np.maximum(ax, 0) ** 2 + np.maximum(ay, 0) ** 2 + np.maximum(az, 0) ** 2)
    cost = np.minimum(np.where(inside <= 0, -inside, outside), 0.5)
    mask = valid[box_of]
    expected = np.where(mask, cost, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    assert np.array_equal(segment_cost(centers, sizes, (np.cos(yaws), np.sin(yaws)), points, valid, box_of,
                                       FitParams(outline_cap_m=0.5)),
                          expected)


def test_segment_cost_of_an_open_top_group_frees_its_points_in_the_upper_half_of_the_box():
    """For groups with open_top (a car's cabin stands back from its body's outline), a point above the box's centre
    and inside the box costs nothing; every other point costs its capped distance to the surface, as it does for
    the groups without open_top."""
    from perception3d.core.segments import FitParams, segment_cost

    rng = np.random.default_rng(6)
    box_of = rng.integers(0, 40, 900)
    points, valid, centers, sizes, yaws = random_box_fit_problem(rng, box_of, groups=40)
    open_top = rng.random(40) < 0.5
    ax, ay, az = box_frame_excess_one_by_one(points[box_of], centers, sizes, yaws)
    inside = np.maximum(np.maximum(ax, ay), az)
    outside = np.sqrt(np.maximum(ax, 0) ** 2 + np.maximum(ay, 0) ** 2 + np.maximum(az, 0) ** 2)
    cost = np.minimum(np.where(inside <= 0, -inside, outside), 0.5)
    free = open_top[box_of, None] & (inside <= 0) & (points[box_of, :, 2] > centers[:, 2:3])
    assert free.sum() > 100 and (free & (cost > 0.05)).sum() > 50  # points that cost something without open_top
    cost = np.where(free, 0.0, cost)
    mask = valid[box_of]
    expected = np.where(mask, cost, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    np.testing.assert_allclose(segment_cost(centers, sizes, (np.cos(yaws), np.sin(yaws)), points, valid, box_of,
                                            FitParams(outline_cap_m=0.5), open_top),
                               expected, rtol=0, atol=1e-12)


def test_projected_corners_of_the_bottom_face_are_those_of_all_eight_corners():
    """u and depth of the bottom face's 4 corners, v of all 8 (keypoint order): the values of the 8 corners
    projected one by one; a slide to a depth agrees with them."""
    from perception3d.core.segments import _bottom_corners, _projected_corners, slide_to_depth

    rng = np.random.default_rng(6)
    n = 300
    center = np.stack([rng.uniform(-8, 8, n), rng.uniform(0.5, 1.5, n), rng.uniform(3, 40, n)], axis=1)
    size = np.stack([rng.uniform(0.5, 12, n), rng.uniform(0.5, 3, n), rng.uniform(0.5, 4, n)], axis=1)
    ry = rng.uniform(-np.pi, np.pi, n)
    ry[:12] = np.arange(-4, 8) * (np.pi / 4)  # axis-aligned and diagonal headings: corners at equal depths
    size[:3, :2] = 0.0
    corners = center[:, None, :] + keypoint_offsets(size, ry, 8)
    bottom = _bottom_corners(size, ry)
    u, v, depth = _projected_corners(center, bottom)
    assert np.array_equal(u.T, corners[:, :4, 0] / corners[:, :4, 2])
    assert np.array_equal(u.T, corners[:, 4:, 0] / corners[:, 4:, 2])
    assert np.array_equal(v.T, corners[..., 1] / corners[..., 2])
    assert np.array_equal(depth.T, corners[:, :4, 2])
    nearest = rng.uniform(3, 40, n)
    slid = slide_to_depth(center, size, ry, nearest)
    assert np.array_equal(slid, center * ((nearest - keypoint_offsets(size, ry, 8)[..., 2].min(axis=1))
                                          / center[:, 2])[:, None])


def test_gather_groups_is_take_along_the_last_axis_sorted_or_not():
    from perception3d.core.segments import gather_groups

    rng = np.random.default_rng(7)
    values = rng.normal(size=(3, 16, 40))
    for box_of in (rng.integers(0, 40, 500), np.sort(rng.integers(0, 40, 500)), np.repeat(np.arange(40), 3),
                   np.zeros(0, dtype=int)):
        assert np.array_equal(gather_groups(values, box_of), np.take(values, box_of, axis=-1))
        assert np.array_equal(gather_groups(values[0] > 0, box_of), np.take(values[0] > 0, box_of, axis=-1))


def test_segment_cost_of_sorted_boxes_is_that_of_each_box_alone():
    """Sorted box_of (the candidates of a box together) gathers by np.repeat: each box's cost is the one it has alone
    (the capped distances of the valid points, padding excluded)."""
    from perception3d.core.segments import FitParams, segment_cost

    rng = np.random.default_rng(8)
    groups, k = 30, 16
    points = rng.normal(0.0, 2.0, (groups, k, 3))
    valid = np.arange(k)[None, :] < rng.integers(0, k + 1, groups)[:, None]
    box_of = np.sort(rng.integers(0, groups, 400))
    centers = points[box_of, 0] + rng.normal(0.0, 0.5, (400, 3))
    sizes, yaws = rng.uniform(0.3, 4.0, (400, 3)), rng.uniform(-np.pi, np.pi, 400)
    cost = segment_cost(centers, sizes, (np.cos(yaws), np.sin(yaws)), points, valid, box_of, FitParams())
    for m in range(0, 400, 37):
        alone = segment_cost(centers[m:m + 1], sizes[m:m + 1], (np.cos(yaws[m:m + 1]), np.sin(yaws[m:m + 1])),
                             points, valid, box_of[m:m + 1], FitParams())
        assert cost[m] == alone[0]


def _place_edge_by_edge(center_cam, bottom, boxes_norm, on_border, iterations, max_move_fraction=0.15):
    """segments._place as first written: the normal equations summed edge by edge, solved per iteration."""
    from perception3d.core.segments import _projected_corners

    n = len(center_cam)
    rows = np.arange(n)
    edges = boxes_norm[:, [0, 2, 1, 3]]
    weight = (~on_border).astype(np.float64)
    center = center_cam.copy()
    off_x, off_y, off_z = bottom
    for _ in range(iterations):
        u, v, _ = _projected_corners(center, bottom)
        extremes = (u.argmin(0), u.argmax(0), v.argmin(0), v.argmax(0))
        diagonal, cross, rhs = np.zeros((2, n)), np.zeros((2, n)), np.zeros((3, n))
        corner_term = np.zeros(n)
        for edge, (corner, coord) in enumerate(zip(extremes, (0, 0, 1, 1))):
            bottom_corner = corner % 4
            offset = (off_x[bottom_corner, rows] if coord == 0
                      else np.where(corner < 4, 1.0, -1.0) * off_y[bottom_corner, rows])
            w, c = weight[:, edge], edges[:, edge]
            diagonal[coord] += w
            cross[coord] += w * c
            corner_term += w * c * c
            t = w * (offset - c * off_z[bottom_corner, rows])
            rhs[coord] -= t
            rhs[2] += t * c
        (a, cc), (b, dd) = diagonal, cross
        scale = np.maximum(np.maximum(np.maximum(a, cc), np.maximum(np.abs(b), np.abs(dd))), corner_term)
        scale = np.maximum(scale, 1e-300)
        na, nc, nb, nd, ne = a / scale, cc / scale, b / scale, dd / scale, corner_term / scale
        solvable = np.abs(na * nc * ne - na * nd * nd - nc * nb * nb) > 1e-12
        solved = np.full((n, 3), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            schur = corner_term - b * b / a - dd * dd / cc
            z = (rhs[2] + b * rhs[0] / a + dd * rhs[1] / cc) / schur
            solved[solvable] = np.stack([(rhs[0] + b * z) / a, (rhs[1] + dd * z) / cc, z], axis=1)[solvable]
        moved = np.linalg.norm(solved - center_cam, axis=1)
        ok = np.isfinite(moved) & (solved[:, 2] > 0.5) & (moved <= max_move_fraction * center_cam[:, 2])
        center[ok] = solved[ok]
    return center


def test_place_gives_the_floats_of_the_edge_by_edge_normal_equations():
    """The four edges' terms at once, the matrix once for all iterations: the same floats as summing the normal
    equations edge by edge per iteration (edges on the border, boxes the edges do not pin down, headings whose
    corners tie in u included)."""
    from perception3d.core.segments import _bottom_corners, _EdgeSystem, _place

    rng = np.random.default_rng(9)
    n = 2000
    truth = np.stack([rng.uniform(-8, 8, n), rng.uniform(0.5, 1.5, n), rng.uniform(3, 40, n)], axis=1)
    size = np.stack([rng.uniform(0.5, 12, n), rng.uniform(0.5, 3, n), rng.uniform(0.5, 4, n)], axis=1)
    ry = np.where(rng.random(n) < 0.1, rng.choice([0.0, 0.5 * np.pi, -np.pi], n), rng.uniform(-np.pi, np.pi, n))
    start = truth + rng.normal(0.0, 0.05, (n, 3)) * truth[:, 2:3]
    edges = _edges(truth, size, ry) + rng.normal(0.0, 0.01, (n, 4))
    on_border = rng.random((n, 4)) < 0.25
    bottom = _bottom_corners(size, ry)
    for iterations in (1, 2):
        placed = _place(start, bottom, _EdgeSystem.of(edges, on_border), iterations)
        assert np.array_equal(placed, _place_edge_by_edge(start, bottom, edges, on_border, iterations))
        assert not np.array_equal(placed, start)
    # a box's system repeated to its candidates is the system of the repeated box
    repeated = _EdgeSystem.of(edges[:50], on_border[:50]).repeat(3)
    for term, expected in zip(repeated, _EdgeSystem.of(np.repeat(edges[:50], 3, axis=0),
                                                       np.repeat(on_border[:50], 3, axis=0))):
        assert np.array_equal(term, expected, equal_nan=True)


def test_size_log_prior_is_the_row_by_row_gaussian_exponent():
    """Axis-major with per-group priors: the floats of -0.5 * np.sum(z**2, axis=1) of the priors gathered row by row
    (sorted and unsorted groups, one row to thousands)."""
    from perception3d.core.segments import size_log_prior

    rng = np.random.default_rng(10)
    prior = np.stack([rng.uniform(0.5, 12.0, (25, 3)), rng.uniform(0.05, 2.0, (25, 3))], axis=1)  # (G, 2, 3)
    for m in (1, 2, 3, 17, 4219):
        sizes = rng.uniform(0.3, 14.0, (m, 3))
        for box_of in (rng.integers(0, 25, m), np.sort(rng.integers(0, 25, m))):
            rows = prior[box_of]
            z = (sizes[:, [1, 0, 2]] - rows[:, 0]) / (1.5 * rows[:, 1])
            assert np.array_equal(size_log_prior(sizes, prior, box_of, 1.5), -0.5 * np.sum(z**2, axis=1))


def test_size_steps_are_the_meshgrid_of_the_steps_per_turn():
    """_size_steps's (length, width) steps: the length-major meshgrid of the steps, the mean's (0, 0) step after it
    where asked, all of it once per turn; each step's turn."""
    from perception3d.core.segments import _size_steps

    for stds, turns, with_mean in (((-1.0, 1.0), 2, True), ((-0.5, 0.0, 0.5), 1, False), ((-2, 1, 3), 3, True)):
        grid_l, grid_w = (g.ravel() for g in np.meshgrid(stds, stds, indexing="ij"))
        if with_mean:
            grid_l, grid_w = np.r_[grid_l, 0.0], np.r_[grid_w, 0.0]
        step_l, step_w, turn = _size_steps(stds, turns, with_mean)
        assert np.array_equal(step_l, np.tile(grid_l, turns)) and np.array_equal(step_w, np.tile(grid_w, turns))
        assert np.array_equal(turn, np.repeat(np.arange(turns), len(grid_l)))
        assert step_l.dtype == np.float64 and not step_l.flags.writeable
