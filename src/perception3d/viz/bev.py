"""Bird's-eye-view rendering in a vehicle frame (base_link: x forward = image up, y left = image left)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..core.boxes import bev_corners
from ..core.classes import OCCUPANCY_FREE, OCCUPANCY_UNKNOWN, occupancy_colors
from ..core.detections import Detections3D
from ..core.voxels import VoxelGrid


@dataclass(frozen=True)
class BevView:
    """A square top-down window of half-size `half_extent_m` around the origin, at `px_per_m` pixels per metre."""

    half_extent_m: float = 50.0
    px_per_m: float = 8.0

    @property
    def size_px(self) -> int:
        return int(round(2 * self.half_extent_m * self.px_per_m))

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) float pixel (col, row) of points (N, 2) [m]."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        col = (self.half_extent_m - xy[:, 1]) * self.px_per_m
        row = (self.half_extent_m - xy[:, 0]) * self.px_per_m
        return np.stack([col, row], axis=1)


def occupancy_top_view(volume: np.ndarray, grid: VoxelGrid, view: BevView) -> np.ndarray:
    """RGB (S, S, 3) of the topmost occupied voxel's class per column; unobserved columns dark, free black.

    The grid must be axis-aligned in the view's frame.
    """
    vol = np.asarray(volume)
    occupied = (vol != OCCUPANCY_FREE) & (vol != OCCUPANCY_UNKNOWN)
    top = vol.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    labels = np.take_along_axis(vol, top[..., None], axis=2)[..., 0]
    column_unobserved = (vol == OCCUPANCY_UNKNOWN).all(axis=2)
    labels = np.where(occupied.any(axis=2), labels, np.where(column_unobserved, OCCUPANCY_UNKNOWN, OCCUPANCY_FREE))
    table = occupancy_colors()
    table[OCCUPANCY_UNKNOWN] = (35, 35, 35)
    colors = table[labels]
    # Sample the column colours at each output pixel centre.
    size = view.size_px
    centres = (np.arange(size) + 0.5) / view.px_per_m
    xs = view.half_extent_m - centres  # row -> x
    ys = view.half_extent_m - centres  # col -> y
    ix = np.floor((xs - grid.origin[0]) / grid.resolution).astype(int)
    iy = np.floor((ys - grid.origin[1]) / grid.resolution).astype(int)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    vr = (ix >= 0) & (ix < grid.shape[0])
    vc = (iy >= 0) & (iy < grid.shape[1])
    out[np.ix_(vr, vc)] = colors[np.ix_(ix[vr], iy[vc])]
    return out


def draw_points(image: np.ndarray, view: BevView, points_xy: np.ndarray, colors: np.ndarray) -> None:
    """Paint points (N, 2) [m] with colours (N, 3) uint8 into an RGB image in place (one pixel each)."""
    px = np.floor(view.to_pixels(points_xy)).astype(int)
    size = image.shape[0]
    keep = (px[:, 0] >= 0) & (px[:, 0] < size) & (px[:, 1] >= 0) & (px[:, 1] < size)
    image[px[keep, 1], px[keep, 0]] = np.asarray(colors)[keep]


def draw_boxes(image: Image.Image, view: BevView, dets: Detections3D, color: tuple[int, int, int],
               width: int = 2) -> None:
    """Outline box footprints on a PIL image, with a short line from the centre to the front face."""
    draw = ImageDraw.Draw(image)
    corners = bev_corners(dets.centers, dets.sizes_lwh, dets.yaws)
    for i in range(len(dets)):
        px = view.to_pixels(corners[i])
        draw.polygon([tuple(p) for p in px], outline=color, width=width)
        front = view.to_pixels(np.vstack([dets.centers[i, :2], corners[i, [0, 3]].mean(axis=0)]))
        draw.line([tuple(front[0]), tuple(front[1])], fill=color, width=width)


def draw_motion(image: Image.Image, view: BevView, dets: Detections3D, color: tuple[int, int, int],
                width: int = 2) -> None:
    """An arrow per box with a known velocity (in the view's frame [m/s]) from its centre to where it is in 1 s."""
    draw = ImageDraw.Draw(image)
    for i in np.flatnonzero(np.isfinite(dets.velocities).all(axis=1)):
        start, velocity = dets.centers[i, :2], dets.velocities[i]
        speed = float(np.hypot(*velocity))
        if speed * view.px_per_m < 1.0:  # under a pixel a second: nothing to draw
            continue
        end = start + velocity
        back = np.arctan2(velocity[1], velocity[0]) + np.pi + np.array([-np.pi / 6, np.pi / 6])  # the head's strokes
        heads = end + min(0.8, 0.4 * speed) * np.column_stack([np.cos(back), np.sin(back)])
        tip, *strokes = view.to_pixels(np.vstack([end, heads]))
        draw.line([tuple(p) for p in view.to_pixels(np.vstack([start, end]))], fill=color, width=width)
        for stroke in strokes:
            draw.line([tuple(tip), tuple(stroke)], fill=color, width=width)


def draw_ego(image: Image.Image, view: BevView) -> None:
    """A small white triangle at the origin pointing along +x."""
    draw = ImageDraw.Draw(image)
    tri = view.to_pixels(np.array([[2.5, 0.0], [-1.5, 1.2], [-1.5, -1.2]]))
    draw.polygon([tuple(p) for p in tri], outline=(255, 255, 255), width=2)
