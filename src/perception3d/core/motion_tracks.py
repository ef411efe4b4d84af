"""Detections followed over the last sweeps in a fixed world frame: the velocity, heading and nuScenes motion
attribute that geometric detection3d's single-sweep boxes lack.

A box fitted to one sweep's returns has a place, a size and an axis, but no velocity, and its front may be its back.
MotionTracks follows the detections of `classes` (core.static_fusion's output: a standing object there has velocity
0 and its fused place) from sweep to sweep in the world frame, and gives each the id of its track (an integer string,
the same while the track lives, never reused by another track of the node: vision_msgs' Detection3D.id):

- each detection is matched one to one, nearest first, to the track of its class whose line puts it within gate_m
  of it now (a track not yet fitted: its newest place); a detection no track takes starts a track, and a track keeps
  the detections of its last window_s;
- once a track's detections number MIN_VIEWS and span MIN_SPAN_S, a straight line fitted to their places by least
  squares (constant velocity) gives its velocity, the slope. A detection without a velocity of a class that moves
  (one with motion attributes: not barriers or cones) takes its track's; the places stay as the sweep (or the
  fusion) gave them: the line's place did not lower car ATE (tried, README 'Velocities, headings and attributes in
  geometric mode');
- a detection moving at heading_speed_mps or faster is turned to face its travel: a pedestrian's yaw becomes the
  direction of travel (its box is about square, so its fitted yaw says little), any other's yaw turns by pi where it
  pointed backwards (its axis is fitted to the returns, its front is not);
- a detection of a class with motion attributes whose velocity is known gets vehicle.moving / vehicle.parked,
  cycle.with_rider / cycle.without_rider or pedestrian.moving / pedestrian.standing, moving at moving_speed_mps or
  faster (a standing bicycle is taken as one without its rider, a standing vehicle as parked).
- a moving vehicle's track keeps the mean length of its detections seen side-on (their axis at SIDE_ON_DEG or more
  from the line of sight from the ego, within SIDE_ON_RANGE_M), and its detections seen more end-on take it, the end
  nearest the ego held where the sweep put it. Seen end-on, a vehicle shows its face, not its length
  (core.segments then gives it the class's mean), and half the length's error is the centre's: an oncoming car that
  passed the ego side-on and drives away behind it keeps the length it showed. Moving: at heading_speed_mps or
  faster, its box's axis within TRAVEL_AXIS_DEG of its travel; a box fitted across its object (the axis a quarter
  turn off) would give its width as its length and shift the box the wrong way (README 'Velocities, headings and
  attributes in geometric mode').

Sweeps without a world pose pass through; a stamp earlier than the newest one (a replay restarted) forgets the
tracks. The world frame must not drift over window_s (a map frame, as nuScenes' ego poses are).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .cell_pairs import nearest_first, pairs_within
from .classes import DETECTION_CLASSES, class_codes
from .detections import Detections3D
from .geometry import invert_transform

MIN_VIEWS = 3
MIN_SPAN_S = 0.2
# Side-on from 60 degrees within 25 m: on the tuning worlds (v1 seeds 5-6, v2 seeds 9-10, perfect and good 2D) summed
# car ATE 1.597 m without the remembered lengths, 1.554 with them (the variants tried: world_v2_log.md).
SIDE_ON_DEG = 60.0
SIDE_ON_RANGE_M = 25.0
TRAVEL_AXIS_DEG = 30.0
VEHICLES = ("car", "truck", "bus", "trailer", "construction_vehicle")
CYCLES = ("bicycle", "motorcycle")
# (moving, standing) nuScenes attributes of each class that has them
MOTION_ATTRIBUTES: dict[str, tuple[str, str]] = {
    **{c: ("vehicle.moving", "vehicle.parked") for c in VEHICLES},
    **{c: ("cycle.with_rider", "cycle.without_rider") for c in CYCLES},
    "pedestrian": ("pedestrian.moving", "pedestrian.standing")}


@dataclass(frozen=True)
class MotionTrackParams:
    """window_s: how long a track keeps its detections [s] (0: off); gate_m: how far from where its line puts it a
    detection may lie to join a track [m]; classes: the detection classes followed; moving_speed_mps: the speed from
    which an object counts as moving (its attribute) [m/s]; heading_speed_mps: the speed from which a detection is
    turned to face its travel [m/s]."""

    window_s: float = 1.0
    gate_m: float = 2.0
    classes: tuple[str, ...] = DETECTION_CLASSES
    moving_speed_mps: float = 0.5
    heading_speed_mps: float = 1.0


class _Lines:
    """Per track the least-squares line through its detections' places (world frame) over time: `place` at the
    stamp it was fitted for (T, 2) [m], `velocity` (T, 2) [m/s] and `fitted` (T,), False (and the first two NaN)
    where the track's detections number fewer than MIN_VIEWS or span less than MIN_SPAN_S."""

    def __init__(self, track: np.ndarray, t: np.ndarray, xy: np.ndarray, n_tracks: int) -> None:
        def summed(weights: np.ndarray) -> np.ndarray:
            return np.bincount(track, weights, n_tracks)

        count, sum_t, sum_tt = np.bincount(track, minlength=n_tracks), summed(t), summed(t * t)
        sum_xy = np.column_stack([summed(xy[:, 0]), summed(xy[:, 1])])
        sum_txy = np.column_stack([summed(t * xy[:, 0]), summed(t * xy[:, 1])])
        first, last = np.full(n_tracks, np.inf), np.full(n_tracks, -np.inf)
        np.minimum.at(first, track, t)
        np.maximum.at(last, track, t)
        determinant = count * sum_tt - sum_t ** 2
        self.fitted = (count >= MIN_VIEWS) & (last - first >= MIN_SPAN_S) & (determinant > 0)
        f = self.fitted
        self.velocity = np.full((n_tracks, 2), np.nan)
        self.velocity[f] = (count[f, None] * sum_txy[f] - sum_t[f, None] * sum_xy[f]) / determinant[f, None]
        self.place = np.full((n_tracks, 2), np.nan)
        self.place[f] = (sum_xy[f] - self.velocity[f] * sum_t[f, None]) / count[f, None]


class MotionTracks:
    """The tracks of one detection3d node (module docstring): per track its class code (T,), id (T,) and the summed
    lengths [m] and count of its side-on views (T,); per remembered detection its track (R,), stamp (R,) [ns] and place
    (R, 2) [m, world frame]; the next track's id."""

    def __init__(self, params: MotionTrackParams = MotionTrackParams(), world_frame: str = "world") -> None:
        self.params = params
        self.world_frame = world_frame
        self.next_id = 1
        self._forget_all()

    def _forget_all(self) -> None:
        self.code = np.zeros(0, dtype=np.int64)
        self.track_id = np.zeros(0, dtype=np.int64)
        self.side_on_length_sum = np.zeros(0)
        self.side_on_count = np.zeros(0, dtype=np.int64)
        self.row_track = np.zeros(0, dtype=np.int64)
        self.row_ns = np.zeros(0, dtype=np.int64)
        self.row_xy = np.zeros((0, 2))

    def follow(self, dets: Detections3D, T_world_base: np.ndarray | None, stamp_ns: int) -> Detections3D:
        """dets (base frame, at stamp_ns [ns]) with their tracks' ids, the velocities their tracks give those without
        one, headings turned to the travel, motion attributes and the vehicles' remembered lengths (module docstring);
        unchanged without a world pose or with window_s 0."""
        p = self.params
        if p.window_s <= 0 or T_world_base is None:
            return dets
        if len(self.row_ns) and stamp_ns < self.row_ns.max():
            self._forget_all()
        self._forget_before(stamp_ns - p.window_s * 1e9)
        rows = np.flatnonzero(np.isin(dets.class_ids, p.classes))
        now = dets.select(rows).transformed(T_world_base, self.world_frame)
        xy = now.centers[:, :2]
        track = self._join(xy, class_codes(now.class_ids), stamp_ns)
        self.row_track = np.concatenate([self.row_track, track])
        self.row_ns = np.concatenate([self.row_ns, np.full(len(track), stamp_ns, dtype=np.int64)])
        self.row_xy = np.concatenate([self.row_xy, xy])
        lines = self._lines(stamp_ns)
        velocity = now.velocities.copy()
        unknown = ~np.isfinite(velocity).all(axis=1) & np.isin(now.class_ids, tuple(MOTION_ATTRIBUTES))
        velocity[unknown] = lines.velocity[track[unknown]]
        speed = np.hypot(velocity[:, 0], velocity[:, 1])  # [m/s], NaN where unknown
        remembered, shift, length = self._remembered_lengths(now, track, T_world_base[:2, 3], velocity, speed)
        yaws = _facing_travel(now.yaws, velocity, speed, now.class_ids == "pedestrian", unknown, p.heading_speed_mps)
        attributes = motion_attributes(now.class_ids, speed, now.attributes, p.moving_speed_mps)
        followed = replace(now, velocities=velocity, yaws=yaws).transformed(invert_transform(T_world_base),
                                                                           dets.frame_id)
        out = replace(dets, centers=dets.centers.copy(), sizes_lwh=dets.sizes_lwh.copy(),
                      velocities=dets.velocities.copy(), yaws=dets.yaws.copy(), ids=dets.ids.copy(),
                      attributes=dets.attributes.copy())
        out.velocities[rows], out.yaws[rows], out.attributes[rows] = followed.velocities, followed.yaws, attributes
        out.centers[rows[remembered], :2] += shift @ T_world_base[:2, :2]  # world -> base: the rotation's transpose
        out.sizes_lwh[rows[remembered], 0] = length
        out.ids[rows] = self.track_id[track].astype(str)
        return out

    def _remembered_lengths(self, now: Detections3D, track: np.ndarray, ego_xy: np.ndarray, velocity: np.ndarray,
                            speed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The moving vehicles of `now` (world frame, their tracks (Q,), velocities (Q, 2) and speeds (Q,) [m/s])
        seen side-on add their lengths to their tracks'; those seen more end-on take their track's mean length, their
        end nearest the ego (ego_xy (2,) [m]) kept (module docstring): their rows (K,), centre shifts (K, 2) [m, world
        frame] and lengths (K,) [m]."""
        axis = np.column_stack([np.cos(now.yaws), np.sin(now.yaws)])
        sight = now.centers[:, :2] - ego_xy
        distance = np.hypot(sight[:, 0], sight[:, 1])
        along = np.einsum("ij,ij->i", sight, axis)  # the sight's part along the box's axis [m]
        with np.errstate(invalid="ignore"):
            moving = (np.isin(now.class_ids, VEHICLES) & (speed >= self.params.heading_speed_mps)
                      & (np.abs(np.einsum("ij,ij->i", velocity, axis)) >= np.cos(np.radians(TRAVEL_AXIS_DEG)) * speed))
        side_on = np.abs(along) <= np.cos(np.radians(SIDE_ON_DEG)) * distance
        shows = moving & side_on & (distance <= SIDE_ON_RANGE_M)
        np.add.at(self.side_on_length_sum, track[shows], now.sizes_lwh[shows, 0])
        np.add.at(self.side_on_count, track[shows], 1)
        takes = np.flatnonzero(moving & ~side_on & (self.side_on_count[track] > 0))
        length = self.side_on_length_sum[track[takes]] / self.side_on_count[track[takes]]
        # The near end (centre - axis x length / 2 x the sight's sign along the axis) stays.
        grown = 0.5 * (length - now.sizes_lwh[takes, 0]) * np.sign(along[takes])
        return takes, axis[takes] * grown[:, None], length

    def _forget_before(self, stamp_ns: float) -> None:
        """Drop the detections older than stamp_ns [ns], and the tracks left without one."""
        keep = self.row_ns >= stamp_ns
        self.row_track, self.row_ns, self.row_xy = self.row_track[keep], self.row_ns[keep], self.row_xy[keep]
        alive = np.zeros(len(self.code), dtype=bool)
        alive[self.row_track] = True
        self.code, self.track_id = self.code[alive], self.track_id[alive]
        self.side_on_length_sum, self.side_on_count = self.side_on_length_sum[alive], self.side_on_count[alive]
        self.row_track = (np.cumsum(alive) - 1)[self.row_track]

    def _lines(self, stamp_ns: int) -> _Lines:
        """The tracks' lines, their places at stamp_ns [ns]."""
        return _Lines(self.row_track, (self.row_ns - stamp_ns) * 1e-9, self.row_xy, len(self.code))

    def _join(self, xy: np.ndarray, code: np.ndarray, stamp_ns: int) -> np.ndarray:
        """The track of each detection (xy (Q, 2) [m, world frame], class codes (Q,)); new tracks for those no
        track takes."""
        lines = self._lines(stamp_ns)
        newest_row = np.zeros(len(self.code), dtype=np.int64)  # rows are appended sweep by sweep: the last is newest
        np.maximum.at(newest_row, self.row_track, np.arange(len(self.row_track)))
        expected = np.where(lines.fitted[:, None], lines.place, self.row_xy[newest_row])
        detection, track, distance = pairs_within(xy, code, expected, self.code, self.params.gate_m)
        chosen = nearest_first(detection, track, distance)
        joined = np.full(len(xy), -1)
        joined[detection[chosen]] = track[chosen]
        new = joined < 0
        n_new = int(new.sum())
        joined[new] = len(self.code) + np.arange(n_new)
        self.code = np.concatenate([self.code, code[new]])
        self.track_id = np.concatenate([self.track_id, self.next_id + np.arange(n_new)])
        self.side_on_length_sum = np.concatenate([self.side_on_length_sum, np.zeros(n_new)])
        self.side_on_count = np.concatenate([self.side_on_count, np.zeros(n_new, dtype=np.int64)])
        self.next_id += n_new
        return joined


def _facing_travel(yaws: np.ndarray, velocity: np.ndarray, speed: np.ndarray, square: np.ndarray,
                   turned: np.ndarray, min_speed: float) -> np.ndarray:
    """Yaws (N,) [rad] of the rows `turned` (N,) moving at min_speed [m/s] or faster (velocity (N, 2), same frame;
    speed (N,)) facing their travel: the travel's direction for the `square` rows (N,), yaw + pi for the others that
    point backwards."""
    travel = np.arctan2(velocity[:, 1], velocity[:, 0])
    moving = turned & (speed >= min_speed)
    out = yaws.copy()
    out[moving & square] = travel[moving & square]
    backwards = moving & ~square & (np.cos(yaws - travel) < 0)
    out[backwards] += np.pi
    return out


def motion_attributes(class_ids: np.ndarray, speed: np.ndarray, attributes: np.ndarray,
                      moving_speed_mps: float) -> np.ndarray:
    """attributes (N,) with those of the rows of a class in MOTION_ATTRIBUTES and a known speed (N,) [m/s, NaN:
    unknown] set by it: moving at moving_speed_mps or faster, standing below."""
    out = attributes.copy()
    for name, (moving, standing) in MOTION_ATTRIBUTES.items():
        rows = (class_ids == name) & np.isfinite(speed)
        out[rows] = np.where(speed[rows] >= moving_speed_mps, moving, standing)
    return out
