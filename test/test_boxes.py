"""core.boxes: size conventions, corners, and overlaps against brute-force point sampling."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception3d.core import boxes as b


def test_size_conversion_swaps_width_and_length_only():
    wlh = np.array([[1.9, 4.6, 1.7]])
    np.testing.assert_array_equal(b.wlh_to_lwh(wlh), [[4.6, 1.9, 1.7]])
    np.testing.assert_array_equal(b.lwh_to_wlh(b.wlh_to_lwh(wlh)), wlh)


def test_corners_of_a_yawed_box_by_hand():
    corners = b.box_corners([[10, 5, 1]], [[4, 2, 2]], [np.pi / 2])[0]
    # Length 4 along the box x-axis, which yaw pi/2 turns onto world +y.
    np.testing.assert_allclose(corners[0], [10 - 1, 5 + 2, 0], atol=1e-12)  # front-left bottom
    np.testing.assert_allclose(corners[6], [10 + 1, 5 - 2, 2], atol=1e-12)  # rear-right top
    np.testing.assert_allclose(corners.mean(axis=0), [10, 5, 1], atol=1e-12)


def test_points_in_box_with_margin():
    pts = np.array([[0, 0, 0], [2.05, 0, 0], [0, 1.2, 0], [0, 0, 1.01]])
    inside = b.points_in_box(pts, [0, 0, 0], [4, 2, 2], 0.0)
    np.testing.assert_array_equal(inside, [True, False, False, False])
    np.testing.assert_array_equal(b.points_in_box(pts, [0, 0, 0], [4, 2, 2], 0.0, margin=0.1),
                                  [True, True, False, True])


def test_iou_2d_by_hand():
    a = np.array([[0, 0, 10, 10]])
    bb = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(b.iou_2d(a, bb), [[25 / 175, 0.0, 1.0]])


def _sampled_iou(ca, sa, ya, cb, sb, yb, dims, n=200_000, seed=0):
    """Monte-Carlo IoU over a bounding region (dims=2: footprints, dims=3: volumes)."""
    rng = np.random.default_rng(seed)
    reach = 0.5 * max(np.linalg.norm(sa), np.linalg.norm(sb))  # half-diagonal: covers any rotation
    lo = np.minimum(ca, cb) - reach
    hi = np.maximum(ca, cb) + reach
    pts = rng.uniform(lo, hi, size=(n, 3))
    if dims == 2:
        pts[:, 2] = 0.0
        ca, cb = np.r_[ca[:2], 0], np.r_[cb[:2], 0]
    in_a = b.points_in_box(pts, ca, sa, ya)
    in_b = b.points_in_box(pts, cb, sb, yb)
    union = np.count_nonzero(in_a | in_b)
    return np.count_nonzero(in_a & in_b) / union if union else 0.0


box_params = st.tuples(
    st.floats(-2, 2), st.floats(-2, 2), st.floats(-0.5, 0.5),
    st.floats(0.5, 4), st.floats(0.5, 3), st.floats(0.5, 2), st.floats(-np.pi, np.pi))


def test_paired_intersection_is_the_pairwise_diagonal_exactly():
    rng = np.random.default_rng(3)
    corner = rng.uniform(0, 50, (200, 2, 2))
    boxes = np.concatenate([corner.min(axis=1), corner.max(axis=1)], axis=1)  # (200, 4) xyxy
    a, c = boxes[:100], boxes[100:]
    inter = b.paired_intersection_2d(a, c)
    assert np.array_equal(inter, np.diag(b.intersection_2d(a, c)))
    assert (inter > 0).any() and (inter == 0).any()


@given(box_params, box_params)
def test_bev_and_3d_iou_match_point_sampling(pa, pb):
    ca, sa, ya = np.array(pa[:3]), np.array(pa[3:6]), pa[6]
    cb, sb, yb = np.array(pb[:3]), np.array(pb[3:6]), pb[6]
    bev = b.bev_iou([ca], [sa], [ya], [cb], [sb], [yb])[0, 0]
    iou3 = b.iou_3d([ca], [sa], [ya], [cb], [sb], [yb])[0, 0]
    assert bev == pytest.approx(_sampled_iou(ca, sa, ya, cb, sb, yb, 2, n=40_000), abs=0.03)
    assert iou3 == pytest.approx(_sampled_iou(ca, sa, ya, cb, sb, yb, 3, n=40_000), abs=0.03)


@given(box_params, box_params)
def test_one_pair_footprint_iou_is_the_pairwise_value_exactly(pa, pb):
    """bev_nms compares one pair at a time with footprint_pair_iou: the same float as footprint_iou's, or the NMS
    would keep other boxes than the batched form."""
    (ca, sa, ya), (cb, sb, yb) = [(np.array([p[:3]]), np.array([p[3:6]]), [p[6]]) for p in (pa, pb)]
    corners_a, corners_b = b.bev_corners(ca, sa, ya), b.bev_corners(cb, sb, yb)
    area_a, area_b = sa[0, 0] * sa[0, 1], sb[0, 0] * sb[0, 1]
    batched = b.footprint_iou(corners_a, [area_a], corners_b, [area_b])[0, 0]
    assert b.footprint_pair_iou(corners_a[0], area_a, corners_b[0], area_b) == batched
    assert b.footprint_pair_iou(corners_a[0], area_a, corners_a[0] + 50.0, area_a) == 0.0  # far apart


def test_iou_of_identical_and_disjoint_boxes():
    c, s, y = [[1, 2, 0]], [[4, 2, 1.5]], [0.3]
    assert b.bev_iou(c, s, y, c, s, y)[0, 0] == pytest.approx(1.0)
    assert b.iou_3d(c, s, y, c, s, y)[0, 0] == pytest.approx(1.0)
    assert b.iou_3d(c, s, y, [[20, 2, 0]], s, y)[0, 0] == 0.0
    # Same footprint (area A), height 1.5, shifted up 0.75: IoU = 0.75 A / (2 * 1.5 A - 0.75 A) = 1/3.
    assert b.iou_3d(c, s, y, [[1, 2, 0.75]], s, y)[0, 0] == pytest.approx(1 / 3)


def test_pairwise_shapes():
    rng = np.random.default_rng(1)
    ca, cb = rng.normal(size=(5, 3)), rng.normal(size=(3, 3))
    sa, sb = rng.uniform(1, 3, (5, 3)), rng.uniform(1, 3, (3, 3))
    assert b.bev_iou(ca, sa, np.zeros(5), cb, sb, np.zeros(3)).shape == (5, 3)
    assert b.iou_2d(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
