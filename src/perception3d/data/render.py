"""Camera images of the synthetic world: per-pixel ray casting with a depth test, shading, texture and noise.

Each pixel's ray is cast at a reduced resolution (`scale`, default 0.5 -> 800x450 for nuScenes cameras) against
the same primitives as the LiDAR, keeping the nearest hit (a z-buffer), culled per primitive to the pixel
rectangle its projected bounding box covers. Colour = per-instance base colour (class-distinct, varied), Lambert
shading under a fixed sun, façade windows and lane markings, distance haze, sensor noise; the image is then
resized to the full camera size (1600x900) and JPEG-encoded. The camera model is the rig's pinhole K (rectified).
The same rays also give each object's visible fraction (the share of its projected pixels where it is the nearest
surface), for the simulated 2D detector's occlusion.
"""
from __future__ import annotations

import zlib

import cv2
import numpy as np

from ..msgs.image import encode_jpeg
from .ground_surface import GroundSurface
from .raycast import KIND_BOX, KIND_CYLINDER, KIND_GROUND, cast, primitive_corners, ray_boxes_t
from .rig import CameraSpec
from .world import BASE_COLORS, FINE, Primitives, World

SUN_DIRECTION = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])  # global frame, towards the sun
SKY_TOP, SKY_HORIZON = np.array([0.35, 0.55, 0.85]), np.array([0.8, 0.85, 0.9])
HAZE_DISTANCE_M = 180.0
NOISE_STD = 3.0  # grey levels
JPEG_QUALITY = 88
MAX_DISTANCE_M = 120.0
_GROUND_COLORS = np.zeros((32, 3), np.float32)
for _name in ("flat.driveable_surface", "flat.sidewalk", "flat.terrain", "flat.other"):
    _GROUND_COLORS[FINE[_name]] = BASE_COLORS[_name]


class CameraRenderer:
    """Renders one rig camera; deterministic for (seed, channel) and the per-frame rng.

    Pixel (u, v) of the reduced image maps to full-resolution (u + 0.5) / scale - 0.5."""

    def __init__(self, spec: CameraSpec, scale: float = 0.5, seed: int = 0) -> None:
        self.spec = spec
        self.width, self.height = round(spec.width * scale), round(spec.height * scale)
        self.scale = scale
        u, v = np.meshgrid((np.arange(self.width) + 0.5) / scale - 0.5, (np.arange(self.height) + 0.5) / scale - 0.5)
        pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
        rays = pix @ np.linalg.inv(spec.K).T
        self.dirs_cam = (rays / np.linalg.norm(rays, axis=1, keepdims=True)).astype(np.float32)
        # Sensor noise: random crops (chosen per frame) of one noise bank fixed by (seed, channel).
        bank_rng = np.random.default_rng([seed, zlib.crc32(spec.channel.encode())])
        self._noise_bank = bank_rng.normal(0, NOISE_STD, (self.height + 64, self.width + 64, 3)).astype(np.float32)

    def _pixel_candidates(self, T_global_cam: np.ndarray):
        """Culling for `cast`: the pixels inside the projection of a primitive's bounding corners."""
        T_cam_global = np.linalg.inv(T_global_cam)
        K = self.spec.K
        width, height, scale = self.width, self.height, self.scale

        def candidates(corners: np.ndarray):
            p = corners @ T_cam_global[:3, :3].T + T_cam_global[:3, 3]
            if (p[:, 2] <= 0.05).all() or (p[:, 2].min() > MAX_DISTANCE_M):
                return None
            if (p[:, 2] <= 0.05).any():
                return slice(None)
            uv = (p @ K.T)[:, :2] / p[:, 2:3]
            c0, r0 = np.floor((uv.min(0) + 0.5) * scale - 0.5).astype(int) - 1
            c1, r1 = np.ceil((uv.max(0) + 0.5) * scale - 0.5).astype(int) + 1
            c0, c1 = max(c0, 0), min(c1, width - 1)
            r0, r1 = max(r0, 0), min(r1, height - 1)
            if c0 > c1 or r0 > r1:
                return None
            return (np.arange(r0, r1 + 1)[:, None] * width + np.arange(c0, c1 + 1)).ravel()

        return candidates

    def render(self, world: World, t: float, rng: np.random.Generator) -> np.ndarray:
        """RGB uint8 image (height, width, 3) at full camera resolution for scene time t [s]."""
        return self.render_frame(world, t, rng)[0]

    def render_frame(self, world: World, t: float, rng: np.random.Generator,
                     with_visibility: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The image of `render` and, `with_visibility`, the visible fraction (len(world.tracks),) of every track
        (as `visible_fractions`, from the same rays)."""
        T = world.ego_pose(t) @ self.spec.T_ego_sensor
        origin = T[:3, 3]
        dirs = self.dirs_cam @ T[:3, :3].T.astype(np.float32)
        prims = world.primitives(t).near(origin[:2], MAX_DISTANCE_M)
        candidates = self._pixel_candidates(T)
        hits = cast(origin, dirs, prims, MAX_DISTANCE_M, candidates, world.ground)
        color = np.empty((len(dirs), 3), np.float32)
        sky = SKY_HORIZON + (SKY_TOP - SKY_HORIZON) * np.clip(dirs[:, 2:3] * 3, 0, 1)
        color[:] = sky
        box, cyl, ground = hits.kind == KIND_BOX, hits.kind == KIND_CYLINDER, hits.kind == KIND_GROUND
        color[box] = prims.box_colors[hits.index[box]]
        color[cyl] = prims.cyl_colors[hits.index[cyl]]
        g = np.flatnonzero(ground)
        ground_xy = origin[:2] + dirs[g, :2] * hits.t[g, None]
        ground_color = _GROUND_COLORS[world.ground_labels(ground_xy)]
        ground_color[_lane_marking(world.to_road_xy(ground_xy))] = 0.9
        color[g] = ground_color
        b = np.flatnonzero(box & (np.abs(hits.normal[:, 2]) < 0.5))
        b = b[prims.box_labels[hits.index[b]] == FINE["static.manmade"]]
        facade = origin + dirs[b] * hits.t[b, None]
        road = world.to_road_xy(facade[:, :2])
        lit = _window_pattern(road[:, 0] + road[:, 1], facade[:, 2])
        color[b[lit]] = color[b[lit]] * 0.35 + np.array([0.1, 0.15, 0.25], np.float32)
        hit = np.flatnonzero(hits.kind != 0)
        shade = 0.45 + 0.55 * np.clip(hits.normal[hit] @ SUN_DIRECTION.astype(np.float32), 0, 1)
        haze = np.exp(-hits.t[hit] / HAZE_DISTANCE_M)[:, None]
        color[hit] = color[hit] * (shade[:, None] * haze) + sky[hit] * (1 - haze)
        image = color.reshape(self.height, self.width, 3) * 255 + self._noise(rng)
        image = np.clip(image, 0, 255).astype(np.uint8)
        visible = self._visible(origin, dirs, prims, hits, candidates, len(world.tracks)) if with_visibility else None
        return cv2.resize(image, (self.spec.width, self.spec.height), interpolation=cv2.INTER_LINEAR), visible

    def visible_fractions(self, prims: Primitives, T_global_cam: np.ndarray, n_objects: int,
                          ground: GroundSurface | None = None) -> np.ndarray:
        """Visible fraction (n_objects,) of each object (boxes with instance >= 0) in the image taken from
        T_global_cam: of the reduced-resolution pixels whose ray meets any of its boxes within MAX_DISTANCE_M, the
        share where it is the nearest surface (occluders: every primitive and the ground); 0 when out of view."""
        origin = T_global_cam[:3, 3]
        dirs = self.dirs_cam @ T_global_cam[:3, :3].T.astype(np.float32)
        candidates = self._pixel_candidates(T_global_cam)
        hits = cast(origin, dirs, prims, MAX_DISTANCE_M, candidates, ground)
        return self._visible(origin, dirs, prims, hits, candidates, n_objects)

    @staticmethod
    def _visible(origin, dirs, prims: Primitives, hits, candidates, n_objects: int) -> np.ndarray:
        """Visible fractions (n_objects,) given the nearest hits of the pixel rays."""
        on_box = hits.kind == KIND_BOX
        nearest = prims.box_instances[hits.index[on_box]]
        seen = np.bincount(nearest[nearest >= 0], minlength=n_objects)[:n_objects]
        corners = primitive_corners(prims)
        pairs = [np.zeros(0, np.int64)]
        for k in np.flatnonzero(prims.box_instances >= 0):
            rays = candidates(corners[k])
            if rays is None:
                continue
            t = ray_boxes_t(origin, dirs[rays], prims.box_centers[k:k + 1], prims.box_lwh[k:k + 1],
                            prims.box_yaws[k:k + 1])[:, 0]
            met = (np.arange(len(dirs))[rays] if isinstance(rays, slice) else rays)[t <= MAX_DISTANCE_M]
            pairs.append(prims.box_instances[k] * np.int64(len(dirs)) + met)
        footprint = np.bincount(np.unique(np.concatenate(pairs)) // len(dirs), minlength=n_objects)[:n_objects]
        return np.where(footprint > 0, seen / np.maximum(footprint, 1), 0.0)

    def _noise(self, rng: np.random.Generator) -> np.ndarray:
        """Gaussian sensor noise (NOISE_STD): a crop of the noise bank at a random offset."""
        dy, dx = rng.integers(0, 64, 2)
        return self._noise_bank[dy:dy + self.height, dx:dx + self.width]

    def render_jpeg(self, world: World, t: float, rng: np.random.Generator) -> bytes:
        return encode_jpeg(self.render(world, t, rng), JPEG_QUALITY)

    def render_jpeg_visibility(self, world: World, t: float, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
        """JPEG bytes and the tracks' visible fractions of one frame."""
        image, visible = self.render_frame(world, t, rng, with_visibility=True)
        return encode_jpeg(image, JPEG_QUALITY), visible


def _lane_marking(road_xy: np.ndarray) -> np.ndarray:
    """Dashed centre line and solid road edges, 0.15 m wide, in road-frame xy."""
    centre = (np.abs(road_xy[:, 1]) < 0.075) & (np.mod(road_xy[:, 0], 6.0) < 3.0)
    edge = np.abs(np.abs(road_xy[:, 1]) - 7.3) < 0.075
    return centre | edge


def _window_pattern(along: np.ndarray, z: np.ndarray) -> np.ndarray:
    return (np.mod(z, 3.2) > 1.0) & (np.mod(z, 3.2) < 2.3) & (np.mod(along, 3.0) > 0.8) & (np.mod(along, 3.0) < 2.2)
