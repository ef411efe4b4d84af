"""TfBuffer: chains, interpolation at a stamp, and clear errors; checked by hand-composed transforms."""
from __future__ import annotations

import numpy as np
import pytest

from perception3d.core.tf_buffer import TfBuffer
from perception3d.errors import TransformError

S = 1_000_000_000


def rot_z(yaw: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = t
    return T


@pytest.fixture()
def buffer():
    tf = TfBuffer()
    tf.set_transform("base_link", "LIDAR_TOP", 0, rot_z(-np.pi / 2, (0.94, 0.0, 1.84)), static=True)
    tf.set_transform("base_link", "CAM_FRONT", 0, rot_z(0.3, (1.7, 0.0, 1.5)), static=True)
    tf.set_transform("map", "base_link", 10 * S, rot_z(0.0, (100.0, 0.0, 0.0)))
    tf.set_transform("map", "base_link", 11 * S, rot_z(0.2, (110.0, 4.0, 0.0)))
    return tf


def test_static_chain_between_sensors(buffer):
    T = buffer.lookup("CAM_FRONT", "LIDAR_TOP", 10 * S)
    expected = np.linalg.inv(rot_z(0.3, (1.7, 0.0, 1.5))) @ rot_z(-np.pi / 2, (0.94, 0.0, 1.84))
    np.testing.assert_allclose(T, expected, atol=1e-12)
    p_lidar = np.array([2.0, 5.0, 0.5, 1.0])  # a point 5 m along LIDAR_TOP's y (= forward on nuScenes)
    np.testing.assert_allclose(T @ p_lidar, expected @ p_lidar, atol=1e-12)


def test_frames_joined_by_static_edges_answer_at_any_stamp_whatever_tf_holds_above_them(buffer):
    """tf2 walks to the lowest common ancestor: base_link <- LIDAR_TOP needs no map -> base_link at the stamp."""
    for stamp in (0, 5 * S, 10 * S, 99 * S):  # before, inside and after the /tf history
        np.testing.assert_array_equal(buffer.lookup("base_link", "LIDAR_TOP", stamp),
                                      rot_z(-np.pi / 2, (0.94, 0.0, 1.84)))
        assert np.allclose(buffer.lookup("CAM_FRONT", "LIDAR_TOP", stamp),
                           np.linalg.inv(rot_z(0.3, (1.7, 0.0, 1.5))) @ rot_z(-np.pi / 2, (0.94, 0.0, 1.84)))
    with pytest.raises(TransformError, match="no transform at"):
        buffer.lookup("map", "LIDAR_TOP", 5 * S)  # through the dynamic edge: still only inside its history


def test_dynamic_edge_is_interpolated_at_the_stamp(buffer):
    T = buffer.lookup("map", "base_link", 10 * S + S // 4)
    np.testing.assert_allclose(T[:3, 3], [102.5, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(np.arctan2(T[1, 0], T[0, 0]), 0.05, atol=1e-9)
    T_map_lidar = buffer.lookup("map", "LIDAR_TOP", 11 * S)
    np.testing.assert_allclose(T_map_lidar, rot_z(0.2, (110.0, 4.0, 0.0)) @ rot_z(-np.pi / 2, (0.94, 0, 1.84)),
                               atol=1e-12)


def test_inverse_direction(buffer):
    a = buffer.lookup("map", "CAM_FRONT", 10 * S + 7)
    b = buffer.lookup("CAM_FRONT", "map", 10 * S + 7)
    np.testing.assert_allclose(a @ b, np.eye(4), atol=1e-9)


def test_errors_name_the_problem(buffer):
    with pytest.raises(TransformError, match="CAM_BACK.*unknown"):
        buffer.lookup("CAM_BACK", "LIDAR_TOP", 10 * S)
    with pytest.raises(TransformError, match="no transform at"):
        buffer.lookup("map", "LIDAR_TOP", 12 * S)
    buffer.set_transform("odom", "imu", 0, np.eye(4), static=True)
    with pytest.raises(TransformError, match="not connected"):
        buffer.lookup("imu", "LIDAR_TOP", 10 * S)
    with pytest.raises(TransformError, match="finite 4x4"):
        buffer.set_transform("map", "x", 0, np.full((4, 4), np.nan))


def test_history_restarts_after_a_time_jump_backwards():
    tf = TfBuffer(cache_time_ns=5 * S)
    for k in range(20):
        tf.set_transform("map", "base_link", 100 * S + k * S, rot_z(0.0, (k, 0, 0)))
    for k in range(3):  # bag loop: a jump back is accepted once three stamps agree (core.tf_buffer doc)
        if k < 2:
            with pytest.raises(TransformError, match="held back as an outlier"):
                tf.set_transform("map", "base_link", 100 * S + k * S, rot_z(0.0, (42.0 + k, 0, 0)))
        else:
            tf.set_transform("map", "base_link", 100 * S + k * S, rot_z(0.0, (42.0 + k, 0, 0)))
    np.testing.assert_allclose(tf.lookup("map", "base_link", 101 * S)[:3, 3], [43.0, 0, 0])
    np.testing.assert_allclose(tf.lookup("map", "base_link", 100 * S)[:3, 3], [42.0, 0, 0])
    with pytest.raises(TransformError):
        tf.lookup("map", "base_link", 119 * S)


def test_lookup_across_time_compensates_ego_motion(buffer):
    from perception3d.nodes.base import lookup_across_time

    t_cam, t_lidar = 10 * S, 11 * S
    T = lookup_across_time(buffer, "CAM_FRONT", t_cam, "LIDAR_TOP", t_lidar)
    # a point fixed in the world: seen by the LiDAR at t_lidar, where does the camera at t_cam see it?
    p_lidar = np.array([1.0, 8.0, 0.0, 1.0])
    p_map = rot_z(0.2, (110.0, 4.0, 0.0)) @ rot_z(-np.pi / 2, (0.94, 0.0, 1.84)) @ p_lidar
    p_cam = np.linalg.inv(rot_z(0.0, (100.0, 0.0, 0.0)) @ rot_z(0.3, (1.7, 0.0, 1.5))) @ p_map
    np.testing.assert_allclose(T @ p_lidar, p_cam, atol=1e-9)
    # the sweep's pose looked up once by the caller (one sweep into several cameras): the same mapping
    given = lookup_across_time(buffer, "CAM_FRONT", t_cam, "LIDAR_TOP", t_lidar, "map",
                               buffer.lookup("map", "LIDAR_TOP", t_lidar))
    np.testing.assert_array_equal(given, T)
    same_time = lookup_across_time(buffer, "CAM_FRONT", t_lidar, "LIDAR_TOP", t_lidar)
    np.testing.assert_allclose(same_time, buffer.lookup("CAM_FRONT", "LIDAR_TOP", t_lidar), atol=1e-9)


def test_one_transform_with_wrong_frames_cannot_cut_a_frame_off_the_tree():
    tf = TfBuffer()
    tf.set_transform("base_link", "LIDAR_TOP", 0, rot_z(0.0, (1.0, 0, 0)), static=True)
    for k in range(3):
        tf.set_transform("map", "base_link", k * S, rot_z(0.0, (k, 0, 0)))
    with pytest.raises(TransformError, match="would close a loop"):
        tf.set_transform("base_link", "map", 1 * S, np.eye(4))  # parent and child swapped
    with pytest.raises(TransformError, match="cannot move it"):
        tf.set_transform("map", "LIDAR_TOP", 1 * S, np.eye(4))  # a /tf for a /tf_static frame
    for _ in range(3):  # a new parent, interleaved with the old edge: never confirmed
        with pytest.raises(TransformError, match="held back"):
            tf.set_transform("odom", "base_link", 1 * S, np.eye(4))
        tf.set_transform("map", "base_link", 1 * S, rot_z(0.0, (1.0, 0, 0)))
    np.testing.assert_allclose(tf.lookup("map", "LIDAR_TOP", 2 * S)[:3, 3], [3.0, 0, 0])
    for k in range(3):  # three in a row: the frame really moved
        if k < 2:
            with pytest.raises(TransformError, match="held back"):
                tf.set_transform("odom", "base_link", (3 + k) * S, np.eye(4))
        else:
            tf.set_transform("odom", "base_link", (3 + k) * S, np.eye(4))
    assert tf.lookup("odom", "LIDAR_TOP", 5 * S)[0, 3] == 1.0
