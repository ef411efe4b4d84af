"""KM3D-Net geometry: 9-keypoint layout, the closed-form location solver (GRM), MultiBin and alpha <-> ry.

Frames and angles (reference/methods.md section 5):
- All 3D quantities are in a camera's optical frame (x right, y down, z forward) [m].
- `ry` is the box heading as a rotation about the camera y axis: the box length axis points along
  (cos ry, 0, -sin ry). `alpha` is the observation angle, ry minus the azimuth of the box centre's ray.
- Sizes are (l, w, h) full extents [m] (core.boxes convention); l lies along the heading, h along camera y.
- Keypoints 0..7 are the corners, 8 is the geometric centre. Corner offsets from the centre before rotation:
  x = l/2 * [1,1,-1,-1,1,1,-1,-1], y = h/2 * [1,1,1,1,-1,-1,-1,-1] (first four at the bottom, y down),
  z = w/2 * [1,-1,-1,1,1,-1,-1,1]. A horizontal image flip swaps the pairs in `FLIP_PAIRS`.

The solver fixes the normalisation pitfall of the reference code: u is normalised with fx and v with fy.
"""
from __future__ import annotations

import numpy as np

from .geometry import arctan2, wrap_angle

NUM_KEYPOINTS = 9
CENTER_KEYPOINT = 8
# Signs of the (x: l/2, y: h/2, z: w/2) offsets of each keypoint, (9, 3).
KEYPOINT_SIGNS = np.array(
    [[1, 1, 1], [1, 1, -1], [-1, 1, -1], [-1, 1, 1],
     [1, -1, 1], [1, -1, -1], [-1, -1, -1], [-1, -1, 1],
     [0, 0, 0]],
    dtype=np.float64,
)
FLIP_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7))

# MultiBin: two overlapping bins, each [logit_out, logit_in, sin(alpha - centre), cos(alpha - centre)].
BIN_CENTERS = (-0.5 * np.pi, 0.5 * np.pi)


def keypoint_offsets(size_lwh: np.ndarray, ry: np.ndarray, count: int = NUM_KEYPOINTS) -> np.ndarray:
    """Camera-frame offsets (N, count, 3) [m] of the first `count` keypoints (8: the corners) from the box centre
    for sizes (N, 3) and ry (N,)."""
    return np.stack(keypoint_offset_components(size_lwh, ry, count), axis=-1)


def keypoint_offset_components(size_lwh: np.ndarray, ry: np.ndarray, count: int = NUM_KEYPOINTS,
                               cos_sin: tuple[np.ndarray, np.ndarray] | None = None
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`keypoint_offsets` as its x, y and z components, (N, count) each [m]: transposed views of keypoint-major
    (count, N) arrays (`.T` gives those back without a copy). cos_sin: cos and sin (N,) of ry, where already
    computed."""
    size = np.asarray(size_lwh, dtype=np.float64).reshape(-1, 3)
    ry = np.asarray(ry, dtype=np.float64).reshape(-1)
    half = (size / 2).T  # (3, N): l, w, h
    c, s = (np.cos(ry), np.sin(ry)) if cos_sin is None else cos_sin
    # The signs are +-1 or 0, so sign x (half x trig) is the rounded (sign x half) x trig; keypoint-major, numpy's
    # loops run along rows of N boxes (rows of `count` keypoints cost several times more).
    sx, sy, sz = KEYPOINT_SIGNS[:count, :, None].transpose(1, 0, 2)  # (count, 1) each
    x = sx * (half[0] * c) + sz * (half[1] * s)
    z = -sx * (half[0] * s) + sz * (half[1] * c)
    return x.T, (sy * half[2]).T, z.T


def box_keypoints(K: np.ndarray, centers_cam: np.ndarray, size_lwh: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Pixel coordinates (N, 9, 2) of the keypoints of N boxes (centres (N, 3) in the camera frame)."""
    K = np.asarray(K, dtype=np.float64)
    pts = np.asarray(centers_cam, dtype=np.float64).reshape(-1, 1, 3) + keypoint_offsets(size_lwh, ry)
    uvw = pts @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


def solve_location(uv: np.ndarray, K: np.ndarray, size_lwh: np.ndarray, ry: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Box centres (N, 3) in the camera frame from keypoints by weighted least squares C = (A'WA)^-1 A'W b.

    Args:
        uv: (N, 9, 2) keypoint pixels (entries with zero weight are not used).
        K: 3x3 intrinsics; u is normalised by fx, v by fy.
        size_lwh: (N, 3) box sizes; ry: (N,) headings (both held fixed).
        weights: (N, 9) per keypoint or (N, 9, 2) per coordinate (u, v); 0 drops an observation. Default 1.
    Returns:
        (N, 3) centres; rows whose observations do not determine the centre (fewer than 3 independent
        equations) are NaN.
    """
    K = np.asarray(K, dtype=np.float64)
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 2)
    n = len(uv)
    if weights is None:
        w = np.ones((n, NUM_KEYPOINTS, 2))
    else:
        w = np.asarray(weights, dtype=np.float64)
        w = np.broadcast_to(w[..., None] if w.ndim == 2 else w, (n, NUM_KEYPOINTS, 2))
    un = (uv[..., 0] - K[0, 2]) / K[0, 0]
    vn = (uv[..., 1] - K[1, 2]) / K[1, 1]
    d = keypoint_offsets(size_lwh, ry)
    # Rows [-1, 0, un].C = dx - un dz and [0, -1, vn].C = dy - vn dz, interleaved (N, 18, 3).
    A = np.zeros((n, NUM_KEYPOINTS, 2, 3))
    A[..., 0, 0] = -1.0
    A[..., 0, 2] = un
    A[..., 1, 1] = -1.0
    A[..., 1, 2] = vn
    b = np.stack([d[..., 0] - un * d[..., 2], d[..., 1] - vn * d[..., 2]], axis=-1)
    A = A.reshape(n, 2 * NUM_KEYPOINTS, 3)
    b = b.reshape(n, 2 * NUM_KEYPOINTS)
    w = w.reshape(n, 2 * NUM_KEYPOINTS)
    AtW = np.swapaxes(A * w[..., None], 1, 2)
    normal = AtW @ A
    rhs = np.einsum("nij,nj->ni", AtW, b)
    # Scale-aware singularity test: the normal matrix must be well conditioned relative to its size.
    scale = np.maximum(np.abs(normal).max(axis=(1, 2)), 1e-300)
    ok = np.abs(np.linalg.det(normal / scale[:, None, None])) > 1e-12
    out = np.full((n, 3), np.nan)
    if np.any(ok):
        out[ok] = np.linalg.solve(normal[ok], rhs[ok][..., None])[..., 0]
    return out


def multibin_encode(alpha: np.ndarray) -> np.ndarray:
    """MultiBin vectors (N, 8) of observation angles (N,) [rad]: per bin [out, in, sin, cos] of alpha - centre.

    Bin 1 (centre -pi/2) covers alpha < pi/6 or alpha > 5pi/6; bin 2 (centre +pi/2) covers alpha > -pi/6 or
    alpha < -5pi/6; the bins overlap, and an angle in both has both 'in' logits set.
    """
    a = wrap_angle(np.asarray(alpha, dtype=np.float64).reshape(-1))
    in_bin = (
        (a < np.pi / 6) | (a > 5 * np.pi / 6),
        (a > -np.pi / 6) | (a < -5 * np.pi / 6),
    )
    out = np.empty((len(a), 8))
    for k, centre in enumerate(BIN_CENTERS):
        out[:, 4 * k] = np.where(in_bin[k], 0.0, 1.0)
        out[:, 4 * k + 1] = np.where(in_bin[k], 1.0, 0.0)
        out[:, 4 * k + 2] = np.sin(a - centre)
        out[:, 4 * k + 3] = np.cos(a - centre)
    return out


def multibin_decode(rot: np.ndarray) -> np.ndarray:
    """Observation angles (N,) in [-pi, pi) from MultiBin vectors (N, 8): bin 1 when rot[1] > rot[5]."""
    rot = np.asarray(rot, dtype=np.float64).reshape(-1, 8)
    alpha1 = np.arctan2(rot[:, 2], rot[:, 3]) + BIN_CENTERS[0]
    alpha2 = np.arctan2(rot[:, 6], rot[:, 7]) + BIN_CENTERS[1]
    return wrap_angle(np.where(rot[:, 1] > rot[:, 5], alpha1, alpha2))


def alpha_to_ry(alpha: np.ndarray, u_center: np.ndarray, K: np.ndarray) -> np.ndarray:
    """ry = alpha + atan2(u_c - cx, fx), wrapped; u_center is the pixel column of the projected box centre."""
    K = np.asarray(K, dtype=np.float64)
    return wrap_angle(np.asarray(alpha, dtype=np.float64) + np.arctan2(np.asarray(u_center) - K[0, 2], K[0, 0]))


def ry_to_alpha(ry: np.ndarray, u_center: np.ndarray, K: np.ndarray) -> np.ndarray:
    """alpha = ry - atan2(u_c - cx, fx), wrapped; the inverse of `alpha_to_ry`."""
    K = np.asarray(K, dtype=np.float64)
    return wrap_angle(np.asarray(ry, dtype=np.float64) - np.arctan2(np.asarray(u_center) - K[0, 2], K[0, 0]))


def _rotate(R: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """vectors (N, 3) rotated by one (3, 3) or per-row (N, 3, 3) rotation."""
    R = np.asarray(R, dtype=np.float64)
    return vectors @ R.T if R.ndim == 2 else np.einsum("nij,nj->ni", R, vectors)


def ry_to_yaw(ry: np.ndarray, R_target_cam: np.ndarray) -> np.ndarray:
    """Yaw about +z of a target frame (N,) of camera-frame headings ry (N,): the heading (cos ry, 0, -sin ry)
    rotated into the target frame (R (3, 3), or (N, 3, 3) per row), projected on its xy-plane."""
    ry = np.asarray(ry, dtype=np.float64).reshape(-1)
    heading = _rotate(R_target_cam, np.stack([np.cos(ry), np.zeros_like(ry), -np.sin(ry)], axis=1))
    return arctan2(heading[:, 1], heading[:, 0])


def yaw_to_ry(yaw: np.ndarray, R_cam_target: np.ndarray) -> np.ndarray:
    """Camera-frame heading ry (N,) of target-frame yaws (N,); inverse of `ry_to_yaw` for level cameras."""
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    heading = _rotate(R_cam_target, np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], axis=1))
    return arctan2(-heading[:, 2], heading[:, 0])
