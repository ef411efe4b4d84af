"""Rotations, quaternions and rigid transforms, vectorized over leading dimensions.

Conventions:
- Quaternion order is in every name: `xyzw` (ROS, scipy) or `wxyz` (nuScenes, transforms3d). Hamilton product,
  active rotations, unit quaternions.
- A transform `T_a_b` is a 4x4 homogeneous matrix that maps points expressed in frame b into frame a:
  `p_a = T_a_b @ p_b`. Composition: `T_a_c = T_a_b @ T_b_c`.
- Yaw is the rotation about +z (right-handed, counter-clockwise seen from above) [rad].
"""
from __future__ import annotations

import numpy as np


def quat_xyzw_to_wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    """Reorder (..., 4) quaternions from (x, y, z, w) to (w, x, y, z)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    return q[..., [3, 0, 1, 2]]


def quat_wxyz_to_xyzw(q_wxyz: np.ndarray) -> np.ndarray:
    """Reorder (..., 4) quaternions from (w, x, y, z) to (x, y, z, w)."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    return q[..., [1, 2, 3, 0]]


def quat_xyzw_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from (..., 4) quaternions (x, y, z, w); the quaternions are normalised."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("quaternion of zero norm has no rotation")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def quat_wxyz_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from (..., 4) quaternions (w, x, y, z)."""
    return quat_xyzw_to_matrix(quat_wxyz_to_xyzw(q_wxyz))


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (x, y, z, w) with w >= 0 from rotation matrices (..., 3, 3).

    Uses the largest-diagonal branch per matrix for numerical stability.
    """
    R = np.asarray(R, dtype=np.float64)
    batch = R.shape[:-2]
    m = R.reshape(-1, 3, 3)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    diag = np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2], trace], axis=1)
    choice = np.argmax(diag, axis=1)
    q = np.empty((m.shape[0], 4))
    for branch in range(4):
        sel = choice == branch
        if not np.any(sel):
            continue
        s = m[sel]
        if branch == 3:
            r = np.sqrt(1.0 + trace[sel]) * 2.0
            q[sel] = np.stack(
                [(s[:, 2, 1] - s[:, 1, 2]) / r, (s[:, 0, 2] - s[:, 2, 0]) / r,
                 (s[:, 1, 0] - s[:, 0, 1]) / r, 0.25 * r], axis=1)
        else:
            i, j, k = branch, (branch + 1) % 3, (branch + 2) % 3
            r = np.sqrt(1.0 + s[:, i, i] - s[:, j, j] - s[:, k, k]) * 2.0
            v = np.empty((s.shape[0], 4))
            v[:, i] = 0.25 * r
            v[:, j] = (s[:, j, i] + s[:, i, j]) / r
            v[:, k] = (s[:, k, i] + s[:, i, k]) / r
            v[:, 3] = (s[:, k, j] - s[:, j, k]) / r
            q[sel] = v
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 3] < 0] *= -1.0
    return q.reshape(batch + (4,))


def matrix_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (w, x, y, z) with w >= 0 from rotation matrices (..., 3, 3)."""
    return quat_xyzw_to_wxyz(matrix_to_quat_xyzw(R))


def quat_xyzw_multiply(a_xyzw: np.ndarray, b_xyzw: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (..., 4) quaternions in (x, y, z, w) order (rotation b first, then a)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a_xyzw, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b_xyzw, dtype=np.float64), -1, 0)
    return np.stack(
        [aw * bx + ax * bw + ay * bz - az * by,
         aw * by - ax * bz + ay * bw + az * bx,
         aw * bz + ax * by - ay * bx + az * bw,
         aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quat_xyzw_slerp(a_xyzw: np.ndarray, b_xyzw: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Spherical linear interpolation from a (t=0) to b (t=1), shortest path, (x, y, z, w) order."""
    a = np.asarray(a_xyzw, dtype=np.float64)
    b = np.asarray(b_xyzw, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-9
    safe = np.where(near, 1.0, sin_theta)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    q = wa * a + wb * b
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def yaw_to_quat_xyzw(yaw: np.ndarray | float) -> np.ndarray:
    """Quaternions (..., 4) in (x, y, z, w) order for rotations of `yaw` radians about +z."""
    half = 0.5 * np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(half)
    return np.stack([zeros, zeros, np.sin(half), np.cos(half)], axis=-1)


def arctan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """np.arctan2(y, x) [rad] with a result that does not depend on where the inputs lie in memory.

    numpy's SIMD arctan2 (AVX-512) falls back to its scalar loop (results up to 2 ulp apart) when the span of a
    strided input (a column of an (N, 3) array) reaches into the output buffer, as when the output is allocated
    right behind the input, so strided inputs give results that change from run to run; contiguous inputs always
    take the SIMD loop.
    """
    y, x = np.asarray(y), np.asarray(x)  # ascontiguousarray makes a 0-d input 1-d: the shapes are put back
    return np.arctan2(np.ascontiguousarray(y).reshape(y.shape), np.ascontiguousarray(x).reshape(x.shape))


def matrix_to_yaw(R: np.ndarray) -> np.ndarray:
    """Yaw [rad] in (-pi, pi] of rotation matrices (..., 3, 3): the heading of the rotated +x axis in the xy-plane."""
    R = np.asarray(R, dtype=np.float64)
    return arctan2(R[..., 1, 0], R[..., 0, 0])


def quat_xyzw_to_yaw(q_xyzw: np.ndarray) -> np.ndarray:
    """Yaw [rad] of (..., 4) quaternions in (x, y, z, w) order (heading of the rotated +x axis)."""
    return matrix_to_yaw(quat_xyzw_to_matrix(q_xyzw))


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2.0 * np.pi) - np.pi


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 (or (..., 4, 4)) homogeneous transforms from rotation matrices (..., 3, 3) and translations (..., 3)."""
    R = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    T = np.zeros(np.broadcast_shapes(R.shape[:-2], t.shape[:-1]) + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def transform_from_quat_xyzw(translation: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """Homogeneous transform from a translation [m] and a quaternion in (x, y, z, w) order."""
    return make_transform(quat_xyzw_to_matrix(q_xyzw), translation)


def transform_from_quat_wxyz(translation: np.ndarray, q_wxyz: np.ndarray) -> np.ndarray:
    """Homogeneous transform from a translation [m] and a quaternion in (w, x, y, z) order (nuScenes tables)."""
    return make_transform(quat_wxyz_to_matrix(q_wxyz), translation)


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4): T_b_a from T_a_b, without a general matrix inverse."""
    T = np.asarray(T, dtype=np.float64)
    R_inv = np.swapaxes(T[..., :3, :3], -1, -2)
    t = T[..., :3, 3]
    return make_transform(R_inv, -np.einsum("...ij,...j->...i", R_inv, t))


def transform_points(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Map (N, 3) points from frame b into frame a with the 4x4 transform T_a_b; returns float64 (N, 3).

    Computed as R p^T + t, (3, N), and returned as its transpose (a column-major (N, 3) view): adding t along rows
    of N is ~2x faster than broadcasting it over N rows of 3, and the products are the same."""
    T = np.asarray(T_a_b, dtype=np.float64)
    p = np.asarray(points_b, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # an infinite coordinate times a zero gives NaN, as the row layout did quietly
        return (T[:3, :3] @ p.T + T[:3, 3:4]).T


def interpolate_transform(T0: np.ndarray, T1: np.ndarray, t: float, q0: np.ndarray | None = None,
                          q1: np.ndarray | None = None) -> np.ndarray:
    """Transform between T0 (t=0) and T1 (t=1): linear in translation, slerp in rotation; q0, q1: the rotations as
    matrix_to_quat_xyzw gives them, when the caller keeps them (the conversion is most of the cost)."""
    q0 = matrix_to_quat_xyzw(T0[:3, :3]) if q0 is None else q0
    q = quat_xyzw_slerp(q0, matrix_to_quat_xyzw(T1[:3, :3]) if q1 is None else q1, t)
    translation = (1.0 - t) * np.asarray(T0[:3, 3]) + t * np.asarray(T1[:3, 3])
    return transform_from_quat_xyzw(translation, q)
