"""core.geometry against independent references: scipy (x, y, z, w) and transforms3d (w, x, y, z)."""
import numpy as np
import pytest
import transforms3d
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from perception3d.core import geometry as g

unit_quats = arrays(np.float64, 4, elements=st.floats(-1, 1)).filter(lambda q: np.linalg.norm(q) > 0.1).map(
    lambda q: q / np.linalg.norm(q))


@given(unit_quats)
def test_quat_xyzw_to_matrix_matches_scipy(q):
    np.testing.assert_allclose(g.quat_xyzw_to_matrix(q), Rotation.from_quat(q).as_matrix(), atol=1e-12)


@given(unit_quats)
def test_quat_wxyz_to_matrix_matches_transforms3d(q):
    np.testing.assert_allclose(g.quat_wxyz_to_matrix(q), transforms3d.quaternions.quat2mat(q), atol=1e-12)


@given(unit_quats)
def test_matrix_to_quat_round_trip_up_to_sign(q):
    back = g.matrix_to_quat_xyzw(g.quat_xyzw_to_matrix(q))
    assert back[3] >= 0
    assert np.allclose(back, q, atol=1e-9) or np.allclose(back, -q, atol=1e-9)
    back_wxyz = g.matrix_to_quat_wxyz(g.quat_xyzw_to_matrix(q))
    np.testing.assert_allclose(back_wxyz, g.quat_xyzw_to_wxyz(back))


def test_matrix_to_quat_handles_each_branch():
    # 180-degree rotations about x, y, z exercise the three non-trace branches.
    for axis in np.eye(3):
        R = Rotation.from_rotvec(np.pi * axis).as_matrix()
        np.testing.assert_allclose(g.quat_xyzw_to_matrix(g.matrix_to_quat_xyzw(R)), R, atol=1e-12)


def test_vectorized_over_leading_dimensions():
    q = Rotation.random(12, random_state=3).as_quat().reshape(3, 4, 4)
    m = g.quat_xyzw_to_matrix(q)
    assert m.shape == (3, 4, 3, 3)
    np.testing.assert_allclose(m.reshape(12, 3, 3), Rotation.from_quat(q.reshape(12, 4)).as_matrix(), atol=1e-12)


@given(unit_quats, unit_quats)
def test_quat_multiply_composes_rotations(a, b):
    expected = (Rotation.from_quat(a) * Rotation.from_quat(b)).as_matrix()
    np.testing.assert_allclose(g.quat_xyzw_to_matrix(g.quat_xyzw_multiply(a, b)), expected, atol=1e-9)


@given(st.floats(-np.pi, np.pi))
def test_yaw_quaternion_round_trip(yaw):
    q = g.yaw_to_quat_xyzw(yaw)
    np.testing.assert_allclose(q, Rotation.from_euler("z", yaw).as_quat() * np.sign(q[3] or 1), atol=1e-12)
    assert abs(g.wrap_angle(g.quat_xyzw_to_yaw(q) - yaw)) < 1e-9


def test_slerp_matches_scipy():
    from scipy.spatial.transform import Slerp
    rots = Rotation.random(2, random_state=7)
    for t in (0.0, 0.25, 0.5, 1.0):
        expected = Slerp([0, 1], rots)([t]).as_matrix()[0]
        got = g.quat_xyzw_to_matrix(g.quat_xyzw_slerp(rots[0].as_quat(), rots[1].as_quat(), t))
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_transform_compose_invert_and_apply():
    rng = np.random.default_rng(0)
    T_a_b = g.transform_from_quat_xyzw(rng.normal(size=3), Rotation.random(random_state=1).as_quat())
    q_wxyz = g.quat_xyzw_to_wxyz(Rotation.random(random_state=2).as_quat())
    T_b_c = g.transform_from_quat_wxyz(rng.normal(size=3), q_wxyz)
    p_c = rng.normal(size=(50, 3))
    np.testing.assert_allclose(g.transform_points(T_a_b @ T_b_c, p_c),
                               g.transform_points(T_a_b, g.transform_points(T_b_c, p_c)), atol=1e-12)
    np.testing.assert_allclose(g.invert_transform(T_a_b), np.linalg.inv(T_a_b), atol=1e-12)
    np.testing.assert_allclose(g.transform_points(g.invert_transform(T_a_b), g.transform_points(T_a_b, p_c)), p_c,
                               atol=1e-12)


def test_interpolate_transform_endpoints_and_midpoint():
    T0 = g.make_transform(np.eye(3), [0, 0, 0])
    T1 = g.make_transform(g.quat_xyzw_to_matrix(g.yaw_to_quat_xyzw(np.pi / 2)), [2, 4, 0])
    np.testing.assert_allclose(g.interpolate_transform(T0, T1, 0.0), T0, atol=1e-12)
    np.testing.assert_allclose(g.interpolate_transform(T0, T1, 1.0), T1, atol=1e-12)
    mid = g.interpolate_transform(T0, T1, 0.5)
    np.testing.assert_allclose(mid[:3, 3], [1, 2, 0])
    assert g.matrix_to_yaw(mid[:3, :3]) == pytest.approx(np.pi / 4)


def test_zero_quaternion_is_rejected():
    with pytest.raises(ValueError, match="zero norm"):
        g.quat_xyzw_to_matrix([0, 0, 0, 0])


def test_nuscenes_lidar_axes_come_from_the_rig_transform(rig):
    # LIDAR_TOP x points right: its +x axis maps to base_link -y (the vehicle's right side).
    T_base_lidar = np.array(rig["LIDAR_TOP"]["sensor_to_ego"])
    x_axis_in_base = T_base_lidar[:3, :3] @ [1, 0, 0]
    y_axis_in_base = T_base_lidar[:3, :3] @ [0, 1, 0]
    assert x_axis_in_base[1] < -0.99
    assert y_axis_in_base[0] > 0.99


def test_arctan2_keeps_the_shape_of_its_inputs_and_numpy_s_values():
    from perception3d.core.geometry import arctan2, quat_xyzw_to_yaw

    assert np.shape(arctan2(1.0, 1.0)) == () and arctan2(1.0, 1.0) == pytest.approx(np.pi / 4)
    assert np.shape(quat_xyzw_to_yaw(np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)]))) == ()  # a single quaternion
    columns = np.random.default_rng(0).normal(size=(50, 3))
    assert np.array_equal(arctan2(columns[:, 1], columns[:, 0]),
                          np.arctan2(columns[:, 1].copy(), columns[:, 0].copy()))  # the contiguous (SIMD) values
