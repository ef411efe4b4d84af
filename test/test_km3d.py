"""KM3D geometry: keypoints against hand-computed projections, the GRM solver round trip, noise, MultiBin, alpha."""
import numpy as np
import pytest

from perception3d.core import km3d
from perception3d.core.geometry import wrap_angle

K = np.array([[721.5, 0.0, 609.6], [0.0, 718.0, 172.9], [0.0, 0.0, 1.0]])  # fx != fy on purpose


def random_boxes(n, rng, depth=(8.0, 40.0)):
    centers = np.stack([rng.uniform(-6, 6, n), rng.uniform(0.5, 2.0, n), rng.uniform(*depth, n)], axis=1)
    sizes = np.stack([rng.uniform(3.5, 5.0, n), rng.uniform(1.5, 2.0, n), rng.uniform(1.3, 1.8, n)], axis=1)
    return centers, sizes, rng.uniform(-np.pi, np.pi, n)


def test_keypoints_hand_computed():
    # ry = 0: corner 0 sits at (+l/2, +h/2, +w/2) = (2, 0.75, 1) from the centre (0, 0, 10).
    uv = km3d.box_keypoints(K, [[0.0, 0.0, 10.0]], [[4.0, 2.0, 1.5]], [0.0])[0]
    assert uv[0] == pytest.approx([609.6 + 721.5 * 2 / 11, 172.9 + 718.0 * 0.75 / 11])
    assert uv[8] == pytest.approx([609.6, 172.9])
    # ry = pi/2: the length axis (cos ry, 0, -sin ry) points to -z, so corner 0 moves to (w/2, h/2, -l/2).
    uv = km3d.box_keypoints(K, [[0.0, 0.0, 10.0]], [[4.0, 2.0, 1.5]], [np.pi / 2])[0]
    assert uv[0] == pytest.approx([609.6 + 721.5 * 1 / 8, 172.9 + 718.0 * 0.75 / 8])


def test_keypoint_offsets_match_rotation_matrix():
    rng = np.random.default_rng(0)
    _, sizes, ry = random_boxes(20, rng)
    offsets = km3d.keypoint_offsets(sizes, ry)
    for i in range(20):
        l_, w, h = sizes[i]
        local = km3d.KEYPOINT_SIGNS * [l_ / 2, h / 2, w / 2]
        c, s = np.cos(ry[i]), np.sin(ry[i])
        R_y = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # rotation about camera y by ry
        assert offsets[i] == pytest.approx(local @ R_y.T)


def test_flip_pairs_mirror_the_box():
    # Mirroring x -> -x maps ry to pi - ry; each flip pair then swaps places.
    offsets = km3d.keypoint_offsets([[4.0, 2.0, 1.5]], [0.3])[0]
    mirrored = km3d.keypoint_offsets([[4.0, 2.0, 1.5]], [np.pi - 0.3])[0]
    for a, b in km3d.FLIP_PAIRS:
        assert mirrored[b] == pytest.approx(offsets[a] * [-1, 1, 1])


def test_solver_is_exact_without_noise():
    rng = np.random.default_rng(1)
    centers, sizes, ry = random_boxes(200, rng)
    uv = km3d.box_keypoints(K, centers, sizes, ry)
    solved = km3d.solve_location(uv, K, sizes, ry)
    assert np.max(np.abs(solved - centers)) < 1e-6


def test_solver_error_with_one_pixel_noise_at_18m():
    rng = np.random.default_rng(2)
    n = 2000
    centers, sizes, ry = random_boxes(n, rng, depth=(18.0, 18.0))
    uv = km3d.box_keypoints(K, centers, sizes, ry) + rng.normal(0.0, 1.0, (n, 9, 2))
    err = np.linalg.norm(km3d.solve_location(uv, K, sizes, ry) - centers, axis=1)
    assert 0.03 < np.mean(err) < 0.2  # methods.md: about 0.1 m


def test_solver_with_three_keypoints_dropped():
    rng = np.random.default_rng(3)
    n = 2000
    centers, sizes, ry = random_boxes(n, rng, depth=(18.0, 18.0))
    weights = np.ones((n, 9))
    for i in range(n):
        weights[i, rng.choice(9, 3, replace=False)] = 0.0
    uv = km3d.box_keypoints(K, centers, sizes, ry)
    exact = km3d.solve_location(uv, K, sizes, ry, weights)
    assert np.max(np.abs(exact - centers)) < 1e-6
    garbage = uv.copy()
    garbage[weights == 0] = 1e4  # dropped keypoints must have no influence at all
    assert np.max(np.abs(km3d.solve_location(garbage, K, sizes, ry, weights) - centers)) < 1e-6
    noisy = uv + rng.normal(0.0, 1.0, uv.shape)
    err = np.linalg.norm(km3d.solve_location(noisy, K, sizes, ry, weights) - centers, axis=1)
    full = np.linalg.norm(km3d.solve_location(noisy, K, sizes, ry) - centers, axis=1)
    assert np.mean(full) < np.mean(err) < 0.3


def test_solver_uses_fy_for_v():
    # With fx != fy, normalising v by fx (the reference code) biases the height; the solver must be exact.
    centers, sizes, ry = np.array([[1.0, 1.5, 20.0]]), np.array([[4.0, 1.8, 1.5]]), np.array([0.4])
    uv = km3d.box_keypoints(K, centers, sizes, ry)
    assert km3d.solve_location(uv, K, sizes, ry)[0] == pytest.approx(centers[0], abs=1e-9)


def test_solver_flags_underdetermined_rows():
    uv = km3d.box_keypoints(K, [[0.0, 1.0, 15.0]], [[4.0, 2.0, 1.5]], [0.2])
    weights = np.zeros((1, 9, 2))
    weights[0, 0, 0] = weights[0, 3, 0] = 1.0  # only two u equations: three unknowns
    assert np.all(np.isnan(km3d.solve_location(uv, K, [[4.0, 2.0, 1.5]], [0.2], weights)))


def test_multibin_round_trip_and_bins():
    alpha = np.linspace(-np.pi, np.pi, 721, endpoint=False)
    rot = km3d.multibin_encode(alpha)
    assert km3d.multibin_decode(rot) == pytest.approx(alpha, abs=1e-9)
    # alpha = 0 is in both bins; alpha = pi/2 only in bin 2; alpha = -pi/2 only in bin 1.
    both, only2, only1 = km3d.multibin_encode([0.0, np.pi / 2, -np.pi / 2])
    assert both[1] == both[5] == 1 and only2[1] == 0 and only2[5] == 1 and only1[1] == 1 and only1[5] == 0
    # Hand-made vector: bin 1 selected, residual 0 -> alpha = bin-1 centre.
    assert km3d.multibin_decode([[0, 1, 0, 1, 1, 0, 0, 1]])[0] == pytest.approx(-np.pi / 2)


def test_alpha_ry_relation():
    rng = np.random.default_rng(4)
    centers, sizes, ry = random_boxes(50, rng)
    u_center = km3d.box_keypoints(K, centers, sizes, ry)[:, 8, 0]
    alpha = km3d.ry_to_alpha(ry, u_center, K)
    # Definition: alpha = ry - atan2(x, z) of the centre ray.
    assert np.allclose(wrap_angle(alpha - (ry - np.arctan2(centers[:, 0], centers[:, 2]))), 0.0, atol=1e-9)
    assert np.allclose(wrap_angle(km3d.alpha_to_ry(alpha, u_center, K) - ry), 0.0, atol=1e-9)


def test_ry_yaw_through_a_front_camera():
    # A level front camera: optical z = base x, optical x = -base y, optical y = -base z.
    R_base_cam = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    # ry = 0 heads along camera x = base -y -> yaw -pi/2; ry = pi/4 heads along (x - z)/sqrt2 = base (-x - y)/sqrt2.
    assert km3d.ry_to_yaw([0.0, np.pi / 4], R_base_cam) == pytest.approx([-np.pi / 2, -3 * np.pi / 4])
    yaw = np.linspace(-3, 3, 13)
    assert np.allclose(wrap_angle(km3d.ry_to_yaw(km3d.yaw_to_ry(yaw, R_base_cam.T), R_base_cam) - yaw), 0)


@pytest.mark.parametrize("count", [1, 4, 8, 9])
def test_keypoint_offset_components_are_the_rounded_signed_half_sizes_rotated(count):
    """The same floats (signs of zero included) as signs x size / 2 rotated by (cos ry, sin ry) per keypoint, for
    sizes over several magnitudes, zero sizes and headings on the axes."""
    rng = np.random.default_rng(3)
    n = 5000
    size = np.abs(rng.normal(size=(n, 3))) * rng.choice([1e-3, 1.0, 100.0], (n, 3))
    size[:5] = 0.0
    ry = rng.uniform(-4.0, 4.0, n)
    ry[:5] = [0.0, np.pi, -np.pi / 2, np.pi / 2, -0.0]
    signs = km3d.KEYPOINT_SIGNS[:count]
    x = signs[None, :, 0] * size[:, 0:1] / 2
    z = signs[None, :, 2] * size[:, 1:2] / 2
    c, s = np.cos(ry)[:, None], np.sin(ry)[:, None]
    expected = (x * c + z * s, signs[None, :, 1] * size[:, 2:3] / 2, -x * s + z * c)
    for got, want in zip(km3d.keypoint_offset_components(size, ry, count), expected):
        assert got.shape == (n, count)
        assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))


def test_keypoint_offset_components_with_cos_and_sin_given_are_those_computed_from_ry():
    rng = np.random.default_rng(3)
    size, ry = rng.uniform(0.3, 12.0, (50, 3)), rng.uniform(-np.pi, np.pi, 50)
    for got, want in zip(km3d.keypoint_offset_components(size, ry, 4, (np.cos(ry), np.sin(ry))),
                         km3d.keypoint_offset_components(size, ry, 4)):
        assert np.array_equal(got, want)
