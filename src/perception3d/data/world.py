"""The synthetic world: a straight urban road with static scenery and object tracks of all 10 detection classes.

Everything is laid out in a *road frame* (x along the road, y to the left, z up, ground at z = 0) and placed in the
nuScenes global frame (ROS `map`) by one random rigid transform T_global_road (yaw about z plus an offset), so that
no consumer can get away with assuming axes. Objects move at constant velocity along the road; speeds are chosen
so that tracks sharing a lane never collide (vehicles ahead of the ego are at least as fast as the ones behind
them). Sizes are drawn from `core.classes.SIZE_PRIOR_WLH`.

Cross-section of the road frame (|y| in metres): 0-7.5 driveable surface (lanes at y = -1.75 with the ego and
+1.75 oncoming, parking strips at +-5.5; object widths are capped at 3.2 m), 7.5-11 sidewalk (walking lanes at
8.0 and 9.0, standing zone at 10.2, poles at 10.85), 11-14.5 terrain with trees at 12.8, 14.5-15.5 other flat,
buildings beyond 15.5.

A `WorldStyle` switches the features of a world version: version 1 is the layout above; version 2 adds the hard
cases (touching barrier rows, cone lines, parked cars bumper to bumper, pedestrian groups, unannotated roadside
clutter, objects out to 100 m along the road) on a wider sidewalk (7.5-12: furniture strip at 7.85, walking lanes
at 8.75 and 9.75, standing zone at 10.85, poles at 11.6; terrain 12-14.5) and a non-planar ground
(`ground_surface.GroundSurface`: grade, crown, bumps, kerb step) on which the ego (pitched with the grade), the
objects and the scenery stand. Objects of version 2 are built of parts (`PART_SHAPES`) inside their box, and its
road bends in a gentle arc (`road_frame.RoadFrame`; the road frame's x is then the arc length along the centreline,
objects keep their arc-length speed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.boxes import wlh_to_lwh
from ..core.classes import LIDARSEG_FINE_CATEGORIES, SIZE_PRIOR_WLH
from ..core.geometry import make_transform, wrap_angle
from .ground_surface import KERB_FACE_M, KERB_Y, GroundSurface
from .road_frame import RoadFrame

FINE = {name: i for i, name in enumerate(LIDARSEG_FINE_CATEGORIES)}
# The fine lidarseg category each detection class is written as.
CLASS_CATEGORY: dict[str, str] = {
    "car": "vehicle.car", "truck": "vehicle.truck", "bus": "vehicle.bus.rigid", "trailer": "vehicle.trailer",
    "construction_vehicle": "vehicle.construction", "pedestrian": "human.pedestrian.adult",
    "motorcycle": "vehicle.motorcycle", "bicycle": "vehicle.bicycle", "traffic_cone": "movable_object.trafficcone",
    "barrier": "movable_object.barrier",
}
EGO_LANE_Y = -1.75
ONCOMING_LANE_Y = 1.75
PARKING_Y = 5.5
MAX_WIDTH_M = 3.2
# Base RGB colours (0..1) per fine category; each instance varies around them.
BASE_COLORS: dict[str, tuple[float, float, float]] = {
    "vehicle.car": (0.2, 0.3, 0.7), "vehicle.truck": (0.85, 0.85, 0.8), "vehicle.bus.rigid": (0.9, 0.75, 0.1),
    "vehicle.trailer": (0.55, 0.35, 0.2), "vehicle.construction": (0.95, 0.6, 0.05),
    "human.pedestrian.adult": (0.7, 0.2, 0.25), "vehicle.motorcycle": (0.15, 0.15, 0.15),
    "vehicle.bicycle": (0.1, 0.6, 0.5), "movable_object.trafficcone": (1.0, 0.4, 0.0),
    "movable_object.barrier": (0.9, 0.9, 0.9), "flat.driveable_surface": (0.3, 0.3, 0.32),
    "flat.sidewalk": (0.62, 0.6, 0.57), "flat.terrain": (0.4, 0.45, 0.2), "flat.other": (0.5, 0.42, 0.35),
    "static.manmade": (0.6, 0.55, 0.5), "static.vegetation": (0.15, 0.45, 0.15),
}
CLUTTER_ROAD_EDGE_Y = 7.3  # posts and kerb stones between the parking strip and the kerb (v2)
CLUTTER_FURNITURE_Y = 7.85  # bins, bushes and posts on the sidewalk's furniture strip (v2)
CAR_PALETTE = np.array([(0.8, 0.1, 0.1), (0.1, 0.1, 0.1), (0.9, 0.9, 0.9), (0.2, 0.3, 0.7), (0.5, 0.5, 0.55),
                        (0.1, 0.4, 0.2)])


# Composite object shapes (v2): per class, parts as (centre offset, size, colour factor), offsets and sizes as
# fractions of the box's (l, w, h) in its own frame (x forward, y left, z up; the box centre at 0). Every part lies
# inside the box. Bicycles carry the rider only while moving (`cycle.with_rider`).
_Part = tuple[tuple[float, float, float], tuple[float, float, float], float]
PART_SHAPES: dict[str, tuple[_Part, ...]] = {
    "car": (((0.0, 0.0, -0.225), (1.0, 1.0, 0.55), 1.0),  # body: bonnet and boot are its ends beside the cabin
            ((-0.05, 0.0, 0.275), (0.5, 0.86, 0.45), 0.45)),  # cabin (darker: windows)
    "pedestrian": (((0.0, 0.2, -0.265), (0.35, 0.3, 0.47), 0.6), ((0.0, -0.2, -0.265), (0.35, 0.3, 0.47), 0.6),
                   ((0.0, 0.0, 0.16), (0.5, 0.8, 0.38), 1.0), ((0.0, 0.0, 0.425), (0.35, 0.35, 0.15), 1.2)),
    "bicycle": (((0.0, 0.0, -0.2), (1.0, 0.3, 0.6), 1.0),),
    "truck": (((0.39, 0.0, -0.1), (0.22, 1.0, 0.8), 0.8), ((-0.125, 0.0, 0.0), (0.75, 1.0, 1.0), 1.0)),
}
RIDER_PART: _Part = ((-0.1, 0.0, 0.3), (0.3, 0.8, 0.4), 0.7)


def object_parts(track: Track) -> tuple[_Part, ...]:
    """The parts of a track's composite shape (one part, the whole box, for classes without one)."""
    parts = PART_SHAPES.get(track.detection_class, (((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1.0),))
    return parts + (RIDER_PART,) if track.detection_class == "bicycle" and track.speed > 0 else parts


@dataclass(frozen=True)
class WorldStyle:
    """The feature switches of one world version (lengths [m], lateral positions |y_road| [m]).

    Attributes:
        version: the world version written to the dataroot.
        margin_m: the layout reaches this far behind the ego's start and ahead of its end.
        rows: per class, (min count, max count + 1, min gap, max gap) of the rows it is placed in along a strip.
        parked_car_gap_m: gap range after a parked car (None: the strip's own gap).
        sidewalk_outer_m: outer edge of the sidewalk.
        walk_lanes_y, standing_y, pole_y: walking lanes, standing zone and street poles on the sidewalk.
        clutter: unannotated roadside clutter (posts, bins, bushes, kerb stones).
        terrain: a non-planar ground (`GroundSurface`) instead of the plane z = 0.
        composite: objects built of parts (`PART_SHAPES`) instead of one box each.
        curve_radius_m: (min, max) radius of the road's arc, bending either way (None: a straight road).
        rendered_visibility: the synthesizer records each object's rendered visible fraction per camera image
            (`visibility2d`), which the simulated 2D detector then uses for occlusion.
    """

    version: int = 1
    margin_m: float = 80.0
    rows: tuple[tuple[str, tuple[int, int, float, float]], ...] = (
        ("traffic_cone", (3, 6, 0.3, 1.5)), ("barrier", (3, 6, 0.3, 1.5)))
    parked_car_gap_m: tuple[float, float] | None = None
    sidewalk_outer_m: float = 11.0
    walk_lanes_y: tuple[float, float] = (8.0, 9.0)
    standing_y: float = 10.2
    pole_y: float = 10.85
    clutter: bool = False
    terrain: bool = False
    composite: bool = False
    curve_radius_m: tuple[float, float] | None = None
    rendered_visibility: bool = False

    @property
    def ground_bands(self) -> tuple[tuple[float, str], ...]:
        """(upper bound of |y_road| [m], fine category) of the ground, from the road centre outwards (the kerb
        face belongs to the sidewalk)."""
        kerb = KERB_Y - KERB_FACE_M if self.terrain else KERB_Y
        return ((kerb, "flat.driveable_surface"), (self.sidewalk_outer_m, "flat.sidewalk"), (14.5, "flat.terrain"),
                (15.5, "flat.other"), (np.inf, "flat.terrain"))


WORLD_STYLES: dict[int, WorldStyle] = {
    1: WorldStyle(),
    2: WorldStyle(version=2, margin_m=100.0, rows=(("traffic_cone", (3, 9, 1.0, 2.0)),
                                                   ("barrier", (4, 9, 0.01, 0.05)), ("pedestrian", (1, 6, 0.1, 0.5))),
                  parked_car_gap_m=(0.3, 0.8), sidewalk_outer_m=12.0, walk_lanes_y=(8.75, 9.75), standing_y=10.85,
                  pole_y=11.6, clutter=True, terrain=True, composite=True, curve_radius_m=(500.0, 1500.0),
                  rendered_visibility=True),
}


@dataclass(frozen=True)
class Track:
    """One object instance moving at constant velocity in the road frame.

    Attributes:
        detection_class: one of the 10 detection classes.
        size_wlh: nuScenes (w, l, h) [m].
        x0, y: road-frame centre at t = 0 [m]; the box stands on the ground (centre z = h / 2).
        yaw: heading in the road frame [rad] (0 along +x, pi against).
        speed: [m/s] along the heading.
        attribute: nuScenes attribute name or '' (cones, barriers).
        color: RGB 0..1.
    """

    detection_class: str
    size_wlh: tuple[float, float, float]
    x0: float
    y: float
    yaw: float
    speed: float
    attribute: str
    color: tuple[float, float, float]

    @property
    def category(self) -> str:
        return CLASS_CATEGORY[self.detection_class]


@dataclass
class Primitives:
    """World geometry in the global frame: oriented boxes (objects with instance >= 0, buildings with -1) and
    vertical cylinders (tree trunks and crowns, poles), each with a fine lidarseg label and an RGB colour."""

    box_centers: np.ndarray
    box_lwh: np.ndarray
    box_yaws: np.ndarray
    box_labels: np.ndarray
    box_instances: np.ndarray
    box_colors: np.ndarray
    cyl_centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    cyl_z: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    cyl_radii: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cyl_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    cyl_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def near(self, xy: np.ndarray, radius: float) -> Primitives:
        """The primitives whose centre lies within `radius` [m] (plus their own extent) of a global xy point."""
        box_reach = np.hypot(*self.box_lwh[:, :2].T) / 2
        keep_b = np.hypot(*(self.box_centers[:, :2] - xy).T) <= radius + box_reach
        keep_c = np.hypot(*(self.cyl_centers - xy).T) <= radius + self.cyl_radii
        return Primitives(self.box_centers[keep_b], self.box_lwh[keep_b], self.box_yaws[keep_b],
                          self.box_labels[keep_b], self.box_instances[keep_b], self.box_colors[keep_b],
                          self.cyl_centers[keep_c], self.cyl_z[keep_c], self.cyl_radii[keep_c],
                          self.cyl_labels[keep_c], self.cyl_colors[keep_c])


def _jitter_color(rng: np.random.Generator, base, spread: float = 0.08) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(np.asarray(base) + rng.normal(0, spread, 3), 0, 1))


def sample_size_wlh(rng: np.random.Generator, detection_class: str) -> tuple[float, float, float]:
    """(w, l, h) [m] from the class's nuScenes mean and std, clipped to 60..140 % of the mean and to a width of
    MAX_WIDTH_M (so that lanes, parking strips and sidewalks never overlap)."""
    mean, std = (np.asarray(v) for v in SIZE_PRIOR_WLH[detection_class])
    size = np.clip(mean + rng.normal(0, 1, 3) * std, 0.6 * mean, 1.4 * mean)
    size[0] = min(size[0], MAX_WIDTH_M)
    return tuple(float(v) for v in size)


class World:
    """One scene's world: ego trajectory, static scenery and object tracks, deterministic for (seed, scene, style)."""

    def __init__(self, seed: int, scene_index: int, duration_s: float, style: WorldStyle = WORLD_STYLES[1]) -> None:
        rng = np.random.default_rng([seed, scene_index, 7])
        self.style = style
        self.duration_s = duration_s
        self.road_yaw = float(rng.uniform(-np.pi, np.pi))
        self.road_origin = np.array([rng.uniform(200, 1800), rng.uniform(200, 1800), 0.0])
        c, s = np.cos(self.road_yaw), np.sin(self.road_yaw)
        self.T_global_road = make_transform(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), self.road_origin)
        self.ego_speed = float(rng.uniform(5.0, 8.0))
        curvature = 0.0
        if style.curve_radius_m is not None:
            curve_rng = np.random.default_rng([seed, scene_index, 9])
            curvature = float(curve_rng.choice([-1.0, 1.0]) / curve_rng.uniform(*style.curve_radius_m))
        self.road = RoadFrame((float(self.road_origin[0]), float(self.road_origin[1])), self.road_yaw, curvature)
        self.ground = GroundSurface.random(np.random.default_rng([seed, scene_index, 8]), self.road) \
            if style.terrain else None
        self.x_min = -style.margin_m
        self.x_max = self.ego_speed * duration_s + style.margin_m
        self.tracks: list[Track] = []
        self._layout_vehicles(rng)
        self._layout_sidewalks(rng)
        self._static = self._layout_static(rng)
        if style.clutter:
            self._static = _concat(self._static, self._layout_clutter(rng))
        # composite shapes: rows (track index, offset fractions (3), size fractions (3), colour factor)
        self._part_table = np.array([(j, *off, *size, shade) for j, tr in enumerate(self.tracks)
                                     for off, size, shade in object_parts(tr)]).reshape(-1, 8) \
            if style.composite else None

    # ----- layout ---------------------------------------------------------------------------------------------
    def _add(self, rng, cls: str, x0: float, y: float, yaw: float, speed: float, attribute: str,
             size=None) -> Track:
        size = size or sample_size_wlh(rng, cls)
        base = CAR_PALETTE[rng.integers(len(CAR_PALETTE))] if cls == "car" else BASE_COLORS[CLASS_CATEGORY[cls]]
        track = Track(cls, size, x0, y, yaw, speed, attribute, _jitter_color(rng, base))
        self.tracks.append(track)
        return track

    def _fill_strip(self, rng, y: float, yaw: float, classes: list[str], weights: list[float],
                    first: list[str], speed_fn=None, gap=(1.5, 7.0), x_range=None, car_gap=None) -> None:
        """Place objects one after another along a strip; `first` are placed before the random draws. The classes
        of `style.rows` come in rows (all at one speed); `car_gap` (if given) is the gap range after a car.

        Lengths along the road are l (w for barriers, which stand across their heading); on a curved road, lengths
        and gaps at the strip's lateral offset y are stretched to arc length along the centreline (1 / (1 - k y)),
        so neighbours keep their distances."""
        x_lo, x_hi = x_range or (self.x_min, self.x_max)
        cursor = x_lo + rng.uniform(0, 5)
        queue = list(first)
        p = np.asarray(weights) / np.sum(weights)
        rows = dict(self.style.rows)
        stretch = 1.0 / (1.0 - self.road.curvature * y)  # 1.0 on a straight road
        while cursor < x_hi:
            cls = queue.pop(0) if queue else str(rng.choice(classes, p=p))
            row = rows.get(cls)
            group = int(rng.integers(row[0], row[1])) if row else 1
            for _ in range(group):
                size = sample_size_wlh(rng, cls)
                along = (size[0] if cls == "barrier" else size[1]) * stretch
                if cursor + along > x_hi:  # objects stay inside their range, so adjacent ranges never overlap
                    return
                x0 = cursor + along / 2
                obj_yaw = wrap_angle(yaw + np.pi / 2) if cls == "barrier" else yaw
                speed = speed_fn(x0) if speed_fn else 0.0
                self._add(rng, cls, x0, y, float(obj_yaw), speed, _attribute(cls, speed), size)
                cursor += along + (rng.uniform(row[2], row[3]) * stretch if group > 1 else 0.0)
            cursor += rng.uniform(*(car_gap if car_gap and cls == "car" else gap)) * stretch

    def _layout_vehicles(self, rng) -> None:
        parked = ["car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle", "traffic_cone", "barrier"]
        w_parked = [0.5, 0.08, 0.05, 0.05, 0.05, 0.07, 0.1, 0.1]
        showcase = ["traffic_cone", "car", "construction_vehicle", "barrier", "truck", "motorcycle"]
        car_gap = self.style.parked_car_gap_m
        self._fill_strip(rng, -PARKING_Y, 0.0, parked, w_parked, first=[], x_range=(self.x_min, -3.0),
                         car_gap=car_gap)
        self._fill_strip(rng, -PARKING_Y, 0.0, parked, w_parked, first=showcase, x_range=(-3.0, self.x_max),
                         car_gap=car_gap)
        self._fill_strip(rng, PARKING_Y, np.pi, parked, w_parked, first=["bus", "trailer", "car"], car_gap=car_gap)
        # Ego lane: vehicles ahead at least as fast as the ego, faster the further ahead; slower ones behind.
        ahead_speed = lambda x: self.ego_speed + 0.05 * max(x, 0.0)  # noqa: E731
        self._fill_strip(rng, EGO_LANE_Y, 0.0, ["car", "truck", "motorcycle", "bus"], [0.7, 0.1, 0.15, 0.05],
                         first=["car"], speed_fn=ahead_speed, gap=(12.0, 30.0), x_range=(14.0, self.x_max + 100))
        behind_speed = lambda x: max(self.ego_speed + 0.05 * x, 0.5)  # noqa: E731 (x < 0: slower)
        self._fill_strip(rng, EGO_LANE_Y, 0.0, ["car", "truck"], [0.8, 0.2], first=[], speed_fn=behind_speed,
                         gap=(12.0, 30.0), x_range=(self.x_min - 60, -14.0 - 15.0))
        oncoming = float(rng.uniform(5.0, 10.0))
        self._fill_strip(rng, ONCOMING_LANE_Y, np.pi, ["car", "truck", "bus", "motorcycle"],
                         [0.7, 0.12, 0.06, 0.12], first=["car", "motorcycle"], speed_fn=lambda x: oncoming,
                         gap=(10.0, 35.0), x_range=(self.x_min, self.x_max + oncoming * self.duration_s))

    def _layout_sidewalks(self, rng) -> None:
        for side in (-1.0, 1.0):
            for y, yaw in zip(self.style.walk_lanes_y, (0.0, np.pi)):
                speed = float(rng.uniform(0.9, 1.6))
                walk = lambda x, v=speed: v  # noqa: E731
                self._fill_strip(rng, side * y, yaw, ["pedestrian"], [1.0], first=[], speed_fn=walk,
                                 gap=(2.0, 25.0), x_range=(self.x_min - 30, self.x_max + 30))
            self._fill_strip(rng, side * self.style.standing_y, 0.0, ["pedestrian", "bicycle", "traffic_cone"],
                             [0.5, 0.4, 0.1], first=["pedestrian", "bicycle"], gap=(2.0, 15.0))

    def _layout_static(self, rng) -> Primitives:
        centers, lwh, yaws, labels, colors = [], [], [], [], []
        for side in (-1.0, 1.0):
            x = self.x_min - 20
            while x < self.x_max + 20:
                length, depth, height = rng.uniform(8, 25), rng.uniform(8, 14), rng.uniform(5, 20)
                centers.append((x + length / 2, side * (15.5 + depth / 2), height / 2))
                lwh.append((length, depth, height))
                yaws.append(0.0)
                labels.append(FINE["static.manmade"])
                colors.append(_jitter_color(rng, BASE_COLORS["static.manmade"], 0.15))
                x += length + rng.uniform(0.0, 6.0)
        cyl_c, cyl_z, cyl_r, cyl_l, cyl_col = [], [], [], [], []
        for side in (-1.0, 1.0):
            x = self.x_min + rng.uniform(0, 8)
            while x < self.x_max:
                trunk_top = rng.uniform(2.0, 3.0)
                cyl_c += [(x, side * 12.8)] * 2
                cyl_z += [(0.0, trunk_top), (trunk_top, trunk_top + rng.uniform(2.5, 5.0))]
                cyl_r += [rng.uniform(0.15, 0.3), rng.uniform(1.2, 2.0)]
                cyl_l += [FINE["static.vegetation"]] * 2
                cyl_col += [_jitter_color(rng, (0.35, 0.25, 0.15)),
                            _jitter_color(rng, BASE_COLORS["static.vegetation"])]
                x += rng.uniform(7.0, 15.0)
            x = self.x_min + rng.uniform(0, 20)
            while x < self.x_max:
                cyl_c.append((x, side * self.style.pole_y))
                cyl_z.append((0.0, 6.0))
                cyl_r.append(0.1)
                cyl_l.append(FINE["static.manmade"])
                cyl_col.append((0.45, 0.45, 0.45))
                x += rng.uniform(25.0, 40.0)
        return self._static_primitives(centers, lwh, yaws, labels, colors, cyl_c, cyl_z, cyl_r, cyl_l, cyl_col)

    def _layout_clutter(self, rng) -> Primitives:
        """Unannotated roadside clutter on both sides: posts and kerb stones on the road edge beside the parking
        strip, bins, bushes and posts on the sidewalk's furniture strip (static.manmade / static.vegetation)."""
        centers, lwh, yaws, labels, colors = [], [], [], [], []
        cyl_c, cyl_z, cyl_r, cyl_l, cyl_col = [], [], [], [], []
        manmade, vegetation = FINE["static.manmade"], FINE["static.vegetation"]

        def post(x, y):
            cyl_c.append((x, y))
            cyl_z.append((0.0, rng.uniform(0.9, 1.3)))
            cyl_r.append(rng.uniform(0.04, 0.08))
            cyl_l.append(manmade)
            cyl_col.append(_jitter_color(rng, (0.35, 0.35, 0.38)))

        def block(x, y, size):  # a bin or a kerb stone
            centers.append((x, y, size[2] / 2))
            lwh.append(size)
            yaws.append(0.0)
            labels.append(manmade)
            colors.append(_jitter_color(rng, BASE_COLORS["static.manmade"], 0.15))

        for side in (-1.0, 1.0):
            x = self.x_min + rng.uniform(0, 4)
            while x < self.x_max:
                if rng.random() < 0.6:
                    post(x, side * CLUTTER_ROAD_EDGE_Y)
                else:
                    block(x, side * CLUTTER_ROAD_EDGE_Y, (rng.uniform(0.5, 1.0), 0.25, rng.uniform(0.12, 0.25)))
                x += rng.uniform(3.0, 12.0)
            x = self.x_min + rng.uniform(0, 6)
            while x < self.x_max:
                kind = rng.choice(3, p=[0.4, 0.35, 0.25])
                if kind == 0:
                    block(x, side * CLUTTER_FURNITURE_Y, tuple(rng.uniform([0.5, 0.5, 0.9], [0.65, 0.6, 1.1])))
                elif kind == 1:
                    cyl_c.append((x, side * CLUTTER_FURNITURE_Y))
                    cyl_z.append((0.0, rng.uniform(0.6, 1.3)))
                    cyl_r.append(rng.uniform(0.22, 0.3))
                    cyl_l.append(vegetation)
                    cyl_col.append(_jitter_color(rng, BASE_COLORS["static.vegetation"]))
                else:
                    post(x, side * CLUTTER_FURNITURE_Y)
                x += rng.uniform(4.0, 15.0)
        return self._static_primitives(centers, lwh, yaws, labels, colors, cyl_c, cyl_z, cyl_r, cyl_l, cyl_col)

    def _static_primitives(self, centers, lwh, yaws, labels, colors, cyl_c, cyl_z, cyl_r, cyl_l,
                           cyl_col) -> Primitives:
        """Scenery laid out on flat ground in the road frame (box centres xyz, cylinder centres xy) as global
        primitives; on a non-planar ground each stands on the ground height at its centre, boxes reaching down to
        its lowest corner."""
        boxes_c = self._to_global_xyz(np.asarray(centers).reshape(-1, 3))
        lwh = np.asarray(lwh, np.float64).reshape(-1, 3)
        cyl_g = self._to_global_xyz(np.column_stack([np.asarray(cyl_c).reshape(-1, 2), np.zeros(len(cyl_c))]))[:, :2]
        cyl_z = np.asarray(cyl_z, np.float64).reshape(-1, 2)
        if self.ground is not None:
            road = np.asarray(centers).reshape(-1, 3)
            corners = road[:, None, :2] + np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * lwh[:, None, :2] / 2
            z_low = self.ground.height_road(corners[..., 0], corners[..., 1]).min(1)
            top = self.ground.height_road(road[:, 0], road[:, 1]) + lwh[:, 2]
            boxes_c[:, 2], lwh[:, 2] = (top + z_low) / 2, top - z_low
            cyl_z = cyl_z + self.ground.height(cyl_g)[:, None]
        heading = self._heading(np.asarray(centers).reshape(-1, 3)[:, 0])
        return Primitives(boxes_c, lwh, wrap_angle(np.asarray(yaws) + heading),
                          np.asarray(labels, np.uint8), np.full(len(labels), -1), np.asarray(colors).reshape(-1, 3),
                          cyl_g, cyl_z, np.asarray(cyl_r), np.asarray(cyl_l, np.uint8),
                          np.asarray(cyl_col).reshape(-1, 3))

    # ----- queries --------------------------------------------------------------------------------------------
    def _to_global_xyz(self, p_road: np.ndarray) -> np.ndarray:
        if self.road.curvature != 0.0:
            return np.column_stack([*self.road.to_global(p_road[:, 0], p_road[:, 1]), p_road[:, 2]])
        return p_road @ self.T_global_road[:3, :3].T + self.T_global_road[:3, 3]

    def _heading(self, x: np.ndarray):
        """Global yaw [rad] of the road's direction at road-frame x [m]."""
        return self.road_yaw if self.road.curvature == 0.0 else self.road.heading(x)

    def to_road_xy(self, xy_global: np.ndarray) -> np.ndarray:
        """Road-frame xy of global xy points (N, 2)."""
        if self.road.curvature != 0.0:
            return np.stack(self.road.to_road(np.asarray(xy_global)[..., :2]), axis=-1)
        d = np.asarray(xy_global)[..., :2] - self.road_origin[:2]
        c, s = np.cos(self.road_yaw), np.sin(self.road_yaw)
        return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)

    def ego_pose(self, t: float) -> np.ndarray:
        """T_global_ego (4x4) at scene time t [s]: the ego drives along +x of the road at constant speed (on a
        non-planar ground at the ground height, pitched with the grade; along the curve of a curved road)."""
        x = self.ego_speed * t
        p = self._to_global_xyz(np.array([[x, EGO_LANE_Y, 0.0]]))[0]
        yaw = self._heading(x)
        c, s = np.cos(yaw), np.sin(yaw)
        if self.ground is None:
            return make_transform(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), p)
        p[2] = self.ground.height_road(np.float64(x), np.float64(EGO_LANE_Y))
        # nose up on an uphill grade (the grade runs along the road's start heading)
        pitch = np.arctan(self.ground.grade * np.cos(yaw - self.road_yaw))
        cp, sp = np.cos(pitch), np.sin(pitch)
        R_pitch = np.array([[cp, 0, -sp], [0, 1, 0], [sp, 0, cp]])
        return make_transform(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R_pitch, p)

    def object_states(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global box centres (N, 3), sizes (N, 3) as l,w,h and yaws (N,) of every track at time t [s]."""
        x0 = np.array([tr.x0 for tr in self.tracks])
        y = np.array([tr.y for tr in self.tracks])
        yaw = np.array([tr.yaw for tr in self.tracks])
        speed = np.array([tr.speed for tr in self.tracks])
        size_lwh = wlh_to_lwh(np.array([tr.size_wlh for tr in self.tracks]))
        road = np.column_stack([x0 + speed * np.cos(yaw) * t, y + speed * np.sin(yaw) * t, size_lwh[:, 2] / 2])
        if self.ground is not None:
            road[:, 2] += self.ground.height_road(road[:, 0], road[:, 1])
        return self._to_global_xyz(road), size_lwh, wrap_angle(yaw + self._heading(road[:, 0]))

    def object_velocities(self, t: float = 0.0) -> np.ndarray:
        """Global xy velocities (N, 2) [m/s] of the tracks at time t [s] (constant on a straight road; on a curve
        they turn with it, at the arc-length speed scaled by the lane's radius)."""
        yaw = np.array([tr.yaw for tr in self.tracks]) + self.road_yaw
        speed = np.array([tr.speed for tr in self.tracks])
        if self.road.curvature != 0.0:
            x = np.array([tr.x0 for tr in self.tracks]) + speed * np.cos(yaw - self.road_yaw) * t
            yaw = yaw - self.road_yaw + self.road.heading(x)
            speed = speed * (1 - self.road.curvature * np.array([tr.y for tr in self.tracks]))
        return np.column_stack([speed * np.cos(yaw), speed * np.sin(yaw)])

    def primitives(self, t: float) -> Primitives:
        """All geometry at time t [s] in the global frame (objects first, each one's parts in a row, then
        buildings)."""
        centers, lwh, yaws = self.object_states(t)
        labels = np.array([FINE[tr.category] for tr in self.tracks], np.uint8)
        colors = np.array([tr.color for tr in self.tracks])
        instances = np.arange(len(self.tracks))
        if self._part_table is not None:
            centers, lwh, yaws, labels, colors, instances = self._parts(centers, lwh, yaws, labels, colors)
        s = self._static
        return Primitives(np.vstack([centers, s.box_centers]), np.vstack([lwh, s.box_lwh]),
                          np.concatenate([yaws, s.box_yaws]), np.concatenate([labels, s.box_labels]),
                          np.concatenate([instances, s.box_instances]),
                          np.vstack([colors, s.box_colors]), s.cyl_centers, s.cyl_z, s.cyl_radii, s.cyl_labels,
                          s.cyl_colors)

    def _parts(self, centers, lwh, yaws, labels, colors):
        """The part boxes of the tracks' boxes (global centres, l,w,h, yaws, labels, colours, track index)."""
        table = self._part_table
        k = table[:, 0].astype(int)
        offset = table[:, 1:4] * lwh[k]
        c, s = np.cos(yaws[k]), np.sin(yaws[k])
        part_centers = centers[k] + np.column_stack([offset[:, 0] * c - offset[:, 1] * s,
                                                     offset[:, 0] * s + offset[:, 1] * c, offset[:, 2]])
        return (part_centers, table[:, 4:7] * lwh[k], yaws[k], labels[k], np.clip(colors[k] * table[:, 7:8], 0, 1),
                k)

    def ground_labels(self, xy_global: np.ndarray) -> np.ndarray:
        """Fine lidarseg label of the ground at global xy points (..., 2)."""
        lateral = np.abs(self.to_road_xy(xy_global)[..., 1])
        bands = self.style.ground_bands
        bounds = np.array([b for b, _ in bands])
        names = np.array([FINE[n] for _, n in bands], np.uint8)
        return names[np.searchsorted(bounds, lateral, side="right").clip(max=len(bounds) - 1)]


def _concat(a: Primitives, b: Primitives) -> Primitives:
    """The primitives of `a` followed by those of `b`."""
    return Primitives(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in Primitives.__dataclass_fields__))


def _attribute(cls: str, speed: float) -> str:
    if cls in ("traffic_cone", "barrier"):
        return ""
    if cls == "pedestrian":
        return "pedestrian.moving" if speed > 0 else "pedestrian.standing"
    if cls in ("bicycle", "motorcycle"):
        return "cycle.with_rider" if speed > 0 else "cycle.without_rider"
    return "vehicle.moving" if speed > 0 else "vehicle.parked"
