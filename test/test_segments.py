"""core.segments: the KM3D placement of a box of known size and heading from its 2D box edges, the point cost, the
projected corners."""
import numpy as np

from perception3d.core.km3d import keypoint_offsets
from perception3d.core.segments import place_by_box_edges


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
    on the segment."""
    from perception3d.core.segments import _against_extremes

    heading = np.radians(30.0)
    extremes = np.array([[5.0, 7.0, 1.0, 2.5], [-9.0, -6.0, -4.0, -3.0], [-1.0, 3.0, 2.0, 2.6]])  # along, across
    size = np.tile([4.0, 2.0, 1.5], (3, 1))
    R, t = np.tile(np.eye(3), (3, 1, 1)), np.zeros((3, 3))  # the "camera" frame is the LiDAR frame here
    start = np.array([[0.0, 0.0, 0.7]] * 3)
    yaws = np.full(3, heading + np.pi)  # the length along the heading (either way round)
    moved = _against_extremes(start, size, yaws, np.full(3, heading), extremes, R, t)
    c, s = np.cos(heading), np.sin(heading)
    along, across = moved[:, 0] * c + moved[:, 1] * s, moved[:, 1] * c - moved[:, 0] * s
    np.testing.assert_allclose(along, [5.0 + 2.0, -6.0 - 2.0, 1.0])
    np.testing.assert_allclose(across, [1.0 + 1.0, -3.0 - 1.0, 2.0 + 1.0])
    np.testing.assert_allclose(moved[:, 2], 0.7)
    turned = _against_extremes(start, size, np.full(3, heading + np.pi / 2), np.full(3, heading), extremes, R, t)
    np.testing.assert_allclose(turned[0, 0] * c + turned[0, 1] * s, 5.0 + 1.0)  # the width along the heading now


def test_segment_cost_is_the_mean_capped_distance_to_the_box_surface_computed_point_by_point():
    """segment_cost (point-major, with point_sum) gives the same floats as the straightforward computation on the
    gathered points (M, K, 3): distance to the surface inside and outside, capped, averaged over the valid points."""
    from perception3d.core.segments import FitParams, segment_cost

    rng = np.random.default_rng(5)
    groups, k, m = 40, 16, 900
    points = rng.normal(0.0, 2.0, (groups, k, 3))
    valid = np.arange(k)[None, :] < rng.integers(0, k + 1, groups)[:, None]
    box_of = rng.integers(0, groups, m)
    centers = points[box_of, 0] + rng.normal(0.0, 0.5, (m, 3))
    sizes, yaws = rng.uniform(0.3, 4.0, (m, 3)), rng.uniform(-np.pi, np.pi, m)
    p = points[box_of] - centers[:, None, :]
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    ax = np.abs(p[..., 0] * c + p[..., 1] * s) - 0.5 * sizes[:, 0:1]
    ay = np.abs(p[..., 1] * c - p[..., 0] * s) - 0.5 * sizes[:, 1:2]
    az = np.abs(p[..., 2]) - 0.5 * sizes[:, 2:3]
    inside = np.maximum(np.maximum(ax, ay), az)
    outside = np.sqrt(np.maximum(ax, 0) ** 2 + np.maximum(ay, 0) ** 2 + np.maximum(az, 0) ** 2)
    cost = np.minimum(np.where(inside <= 0, -inside, outside), 0.5)
    mask = valid[box_of]
    expected = np.where(mask, cost, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    assert np.array_equal(segment_cost(centers, sizes, yaws, points, valid, box_of, FitParams(outline_cap_m=0.5)),
                          expected)


def test_projected_corners_of_the_bottom_face_are_those_of_all_eight_corners():
    """u and depth of the bottom face's 4 corners, v of all 8 (keypoint order): the values of the 8 corners
    projected one by one; their extremes and a slide to a depth agree with them."""
    from perception3d.core.segments import _bottom_corners, _corner_extremes, _projected_corners, _slide

    rng = np.random.default_rng(6)
    n = 300
    center = np.stack([rng.uniform(-8, 8, n), rng.uniform(0.5, 1.5, n), rng.uniform(3, 40, n)], axis=1)
    size = np.stack([rng.uniform(0.5, 12, n), rng.uniform(0.5, 3, n), rng.uniform(0.5, 4, n)], axis=1)
    ry = rng.uniform(-np.pi, np.pi, n)
    corners = center[:, None, :] + keypoint_offsets(size, ry, 8)
    bottom = _bottom_corners(size, ry)
    u, v, depth = _projected_corners(center, bottom)
    assert np.array_equal(u.T, corners[:, :4, 0] / corners[:, :4, 2])
    assert np.array_equal(u.T, corners[:, 4:, 0] / corners[:, 4:, 2])
    assert np.array_equal(v.T, corners[..., 1] / corners[..., 2])
    assert np.array_equal(depth.T, corners[:, :4, 2])
    assert np.array_equal(_corner_extremes(v)[0], v.min(axis=0))
    nearest = rng.uniform(3, 40, n)
    slid = _slide(center, bottom[2], nearest)
    assert np.array_equal(slid, center * ((nearest - keypoint_offsets(size, ry, 8)[..., 2].min(axis=1))
                                          / center[:, 2])[:, None])
