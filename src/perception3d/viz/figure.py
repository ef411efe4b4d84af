"""One PNG per frame: a bird's-eye view (points by label, occupancy, ground-truth and predicted boxes) beside the six
camera images with projected boxes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..core.camera import CameraModel
from ..core.classes import DETECTION_COLORS, LIDARSEG_COLORS
from ..core.detections import Detections2D, Detections3D
from ..core.voxels import VoxelGrid
from .bev import BevView, draw_boxes, draw_ego, draw_motion, draw_points, occupancy_top_view
from .camera import draw_boxes2d, draw_boxes3d, to_pil

GT_COLOR = (0, 255, 0)
PRED_COLOR = (255, 60, 60)
DET2D_COLOR = (255, 220, 0)
CAMERA_LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))


@dataclass
class CameraFrame:
    """One camera's image with what to draw on it; T_cam_base maps base_link points into the optical frame."""

    image: np.ndarray
    camera: CameraModel
    T_cam_base: np.ndarray
    detections2d: Detections2D | None = None


@dataclass
class FrameData:
    """Everything of one frame, all 3D content in base_link."""

    title: str
    points: np.ndarray | None = None  # (N, 3) [m]
    point_labels: np.ndarray | None = None  # (N,) lidarseg evaluation indices 0..16
    ground_truth: Detections3D | None = None
    predictions: Detections3D | None = None
    occupancy: tuple[np.ndarray, VoxelGrid] | None = None
    cameras: dict[str, CameraFrame] = field(default_factory=dict)


def render_bev(frame: FrameData, view: BevView) -> Image.Image:
    """The bird's-eye view panel."""
    if frame.occupancy is not None:
        canvas = occupancy_top_view(frame.occupancy[0], frame.occupancy[1], view)
    else:
        canvas = np.zeros((view.size_px, view.size_px, 3), dtype=np.uint8)
    if frame.points is not None and len(frame.points):
        if frame.point_labels is not None:
            colors = LIDARSEG_COLORS[np.clip(frame.point_labels, 0, len(LIDARSEG_COLORS) - 1)]
        else:
            colors = np.full((len(frame.points), 3), 200, dtype=np.uint8)
        draw_points(canvas, view, frame.points[:, :2], colors)
    image = Image.fromarray(canvas)
    if frame.ground_truth is not None:
        draw_boxes(image, view, frame.ground_truth, GT_COLOR, width=2)
    if frame.predictions is not None:
        draw_boxes(image, view, frame.predictions, PRED_COLOR, width=2)
        draw_motion(image, view, frame.predictions, PRED_COLOR, width=2)
    draw_ego(image, view)
    return image


def render_camera(cam: CameraFrame, frame: FrameData, scale: float) -> Image.Image:
    image = to_pil(cam.image, scale)
    if cam.detections2d is not None:
        draw_boxes2d(image, cam.detections2d, DET2D_COLOR, width=1, scale=scale)
    if frame.ground_truth is not None:
        draw_boxes3d(image, cam.camera, cam.T_cam_base, frame.ground_truth, GT_COLOR, width=2, scale=scale)
    if frame.predictions is not None:
        draw_boxes3d(image, cam.camera, cam.T_cam_base, frame.predictions, PRED_COLOR, width=2, scale=scale)
    return image


def side_by_side(images: Sequence[Image.Image]) -> Image.Image:
    """The images pasted left to right, top-aligned, on black."""
    canvas = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    for x, image in zip(np.cumsum([0] + [i.width for i in images[:-1]]).tolist(), images):
        canvas.paste(image, (x, 0))
    return canvas


def draw_legend(draw: ImageDraw.ImageDraw, x: int, y: int, entries: Sequence[tuple[str, tuple[int, ...]]]) -> None:
    """A colour swatch and a name per entry, one row of 16 px each, from (x, y) down."""
    for i, (name, color) in enumerate(entries):
        draw.rectangle([x, y + 16 * i + 3, x + 10, y + 16 * i + 13], fill=color)
        draw.text((x + 16, y + 16 * i), name, fill=(230, 230, 230))


def render_frame(frame: FrameData, view: BevView | None = None, camera_width: int = 480) -> Image.Image:
    """BEV panel (left) and a 2x3 camera grid (right) with a legend, as one RGB image."""
    view = view or BevView(half_extent_m=50.0, px_per_m=6.0)
    bev = render_bev(frame, view)
    tiles = {}
    for name, cam in frame.cameras.items():
        tiles[name] = render_camera(cam, frame, camera_width / cam.camera.width)
    tile_h = max((t.height for t in tiles.values()), default=int(camera_width * 9 / 16))
    grid_w, grid_h = 3 * camera_width, 2 * tile_h
    height = max(bev.height, grid_h) + 30
    figure = Image.new("RGB", (bev.width + grid_w + 150, height), (20, 20, 20))
    draw = ImageDraw.Draw(figure)
    draw.text((8, 8), frame.title, fill=(255, 255, 255))
    figure.paste(bev, (0, 30))
    for r, row in enumerate(CAMERA_LAYOUT):
        for c, name in enumerate(row):
            x, y = bev.width + c * camera_width, 30 + r * tile_h
            if name in tiles:
                figure.paste(tiles[name], (x, y))
            draw.text((x + 6, y + 4), name, fill=(255, 255, 255))
    entries = [("ground truth", GT_COLOR), ("prediction", PRED_COLOR), ("2D detections", DET2D_COLOR)]
    draw_legend(draw, bev.width + grid_w + 8, 34, entries + list(DETECTION_COLORS.items()))
    return figure
