"""A street that is not a plane, scanned by a 32-beam LiDAR: for the ground surface tests.

The road (base_link, ego on it at the origin, x along the road) sags: level within 5 m of the ego, then a
parabolic vertical curve to a 4 % grade at 25 m, both ways (1.4 m above the ego's level at 50 m). It is crowned
(2 % cross-fall from its centre line, 1.75 m left of the ego, to the kerbs 5 m either side), 0.15 m kerbs step up
to 4 m sidewalks that rise 2 % away from the road, and building walls stand behind them. Cars (boxes) are
parked along the right kerb and one drives ahead in the left lane. The LiDAR is data.lidar's HDL-32E beam pattern
at the nuScenes mount (scene_helpers.T_BASE_LIDAR); every ray is intersected with the analytic scene (the ground by
marching 0.25 m steps to the first crossing, then bisection, so that kerb faces are hit too), and each point's
label comes from the geometry it hit.
"""
from __future__ import annotations

import numpy as np

from perception3d.data.lidar import beam_directions
from scene_helpers import T_BASE_LIDAR

CENTRE_Y = 1.75  # road centre line [m, base_link y]
HALF_WIDTH = 7.0  # kerb to centre line [m] (four lanes)
SIDEWALK = 4.0  # sidewalk width [m]
KERB = 0.15  # kerb height [m]
GRADE, CROSS_FALL, SIDEWALK_FALL = 0.04, 0.02, 0.02
LEVEL_TO, CURVE_TO = 10.0, 30.0  # level within LEVEL_TO of the ego, full grade beyond CURVE_TO [m]
CAR_LWH = (4.5, 1.9, 1.6)
CARS_XY = ((12.0, -4.2), (19.0, -4.2), (-14.0, -4.2), (33.0, -4.2), (-22.0, 5.25))
MAX_RANGE = 70.0
ROAD, KERB_FACE, SIDEWALK_TOP, WALL, CAR = range(5)


def profile(x):
    """Road height along the centre line [m] at x [m]: the sag's vertical curve (level, parabola, grade)."""
    u = np.abs(x)
    curve = GRADE * np.clip(u - LEVEL_TO, 0.0, CURVE_TO - LEVEL_TO) ** 2 / (2 * (CURVE_TO - LEVEL_TO))
    return curve + GRADE * np.maximum(u - CURVE_TO, 0.0)


def ground_height(x, y):
    """Height of the road or sidewalk at (x, y) [m]; 0 under the ego."""
    off = np.abs(y - CENTRE_Y)
    road = profile(x) - CROSS_FALL * np.minimum(off, HALF_WIDTH) + CROSS_FALL * CENTRE_Y
    return road + np.where(off > HALF_WIDTH, KERB + SIDEWALK_FALL * (off - HALF_WIDTH), 0.0)


def road_height(x, y):
    """Height of the road surface continued under the sidewalks [m] (the level a kerb steps up from)."""
    return profile(x) - CROSS_FALL * np.minimum(np.abs(y - CENTRE_Y), HALF_WIDTH) + CROSS_FALL * CENTRE_Y


def _ground_t(origin, dirs, t_max, step=0.25, iterations=20):
    """Ray parameter of the first ground crossing of each ray (inf where none before t_max)."""
    def below(rays, t):
        p = origin + dirs[rays] * t[:, None]
        return p[:, 2] <= ground_height(p[:, 0], p[:, 1])

    t_hit, before = np.full(len(dirs), np.inf), np.zeros(len(dirs))
    rays = np.flatnonzero(dirs[:, 2] < 0.05)  # rays rising faster never meet the road within range
    for t in np.arange(step, t_max + step, step):
        crossed = below(rays, np.full(len(rays), t))
        t_hit[rays[crossed]] = t
        before[rays[~crossed]] = t
        rays = rays[~crossed]
    hit = np.flatnonzero(np.isfinite(t_hit))
    a, b = before[hit], t_hit[hit]
    for _ in range(iterations):
        mid = 0.5 * (a + b)
        under = below(hit, mid)
        a, b = np.where(under, a, mid), np.where(under, mid, b)
    t_hit[hit] = b
    return t_hit


def _box_t(origin, dirs, lo, hi):
    """Entry ray parameter into the axis-aligned box [lo, hi] (inf for a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - origin) / dirs, (hi - origin) / dirs
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((far >= near) & (near > 0), near, np.inf)


def road_sweep(seed: int = 0, noise_m: float = 0.02):
    """(points (N, 3) in the LiDAR frame, labels (N,) ROAD/KERB_FACE/SIDEWALK_TOP/WALL/CAR, points in base_link)."""
    dirs_lidar, _ = beam_directions()
    dirs = dirs_lidar.astype(np.float64) @ T_BASE_LIDAR[:3, :3].T
    origin = T_BASE_LIDAR[:3, 3]
    t = {"ground": _ground_t(origin, dirs, MAX_RANGE)}
    with np.errstate(divide="ignore"):
        for side in (-1.0, 1.0):  # walls behind the sidewalks
            y_wall = CENTRE_Y + side * (HALF_WIDTH + SIDEWALK)
            tw = (y_wall - origin[1]) / dirs[:, 1]
            t[f"wall{side}"] = np.where(tw > 0, tw, np.inf)
    length, width, height = CAR_LWH
    for i, (x, y) in enumerate(CARS_XY):
        z = float(ground_height(np.array(x), np.array(y)))
        t[f"car{i}"] = _box_t(origin, dirs, np.array([x - length / 2, y - width / 2, z]),
                              np.array([x + length / 2, y + width / 2, z + height]))
    names = list(t)
    ts = np.stack([t[n] for n in names], axis=1)
    first = np.argmin(ts, axis=1)
    t_hit = ts[np.arange(len(ts)), first]
    keep = np.flatnonzero(np.isfinite(t_hit) & (t_hit >= 1.0) & (t_hit <= MAX_RANGE))
    t_hit, first = t_hit[keep], first[keep]
    exact = origin + dirs[keep] * t_hit[:, None]
    kind = np.array([n.rstrip("-+.0123456789") for n in names])[first]
    off = np.abs(exact[:, 1] - CENTRE_Y)
    labels = np.select([kind == "car", kind == "wall", off < HALF_WIDTH - 0.01, off > HALF_WIDTH + 0.01],
                       [CAR, WALL, ROAD, SIDEWALK_TOP], KERB_FACE)
    rng = np.random.default_rng(seed)
    noisy = origin + dirs[keep] * (t_hit + rng.normal(0.0, noise_m, len(keep)))[:, None]
    points_lidar = (noisy - T_BASE_LIDAR[:3, 3]) @ T_BASE_LIDAR[:3, :3]
    return points_lidar, labels, exact
