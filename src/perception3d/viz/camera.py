"""Drawing 3D boxes and 2D detections over camera images."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..core.boxes import box_corners
from ..core.camera import MIN_DEPTH_M, CameraModel
from ..core.detections import Detections2D, Detections3D
from ..core.geometry import transform_points

# Corner index pairs of the 12 box edges (core.boxes corner order).
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def projected_box_edges(camera: CameraModel, T_cam_boxes: np.ndarray, dets: Detections3D) -> list[np.ndarray]:
    """Per box, the (K, 2, 2) pixel segments of its edges, clipped to the part in front of the camera."""
    out = []
    corners = box_corners(dets.centers, dets.sizes_lwh, dets.yaws)
    for box in corners:
        cam_pts = transform_points(T_cam_boxes, box)
        segments = []
        for a, b in BOX_EDGES:
            p, q = cam_pts[a], cam_pts[b]
            if p[2] < MIN_DEPTH_M and q[2] < MIN_DEPTH_M:
                continue
            if p[2] < MIN_DEPTH_M or q[2] < MIN_DEPTH_M:  # clip at the near plane
                t = (MIN_DEPTH_M - p[2]) / (q[2] - p[2])
                clipped = p + t * (q - p)
                p, q = (clipped, q) if p[2] < MIN_DEPTH_M else (p, clipped)
            uv = np.stack([p, q]) @ camera.K.T
            segments.append(uv[:, :2] / uv[:, 2:3])
        out.append(np.array(segments).reshape(-1, 2, 2))
    return out


def draw_boxes3d(image: Image.Image, camera: CameraModel, T_cam_boxes: np.ndarray, dets: Detections3D,
                 color: tuple[int, int, int], width: int = 3, scale: float = 1.0) -> None:
    """Draw projected 3D box edges on a PIL image of size (camera size x scale)."""
    draw = ImageDraw.Draw(image)
    for segments in projected_box_edges(camera, T_cam_boxes, dets):
        for seg in segments * scale:
            draw.line([tuple(seg[0]), tuple(seg[1])], fill=color, width=width)


def draw_boxes2d(image: Image.Image, dets: Detections2D, color: tuple[int, int, int], width: int = 2,
                 scale: float = 1.0) -> None:
    """Draw 2D detection rectangles on a PIL image of size (camera size x scale)."""
    draw = ImageDraw.Draw(image)
    for box in dets.boxes_xyxy * scale:
        draw.rectangle([tuple(box[:2]), tuple(box[2:])], outline=color, width=width)


def to_pil(rgb: np.ndarray, scale: float = 1.0) -> Image.Image:
    """A PIL RGB image of an (H, W, 3) array, resized by `scale`."""
    image = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(round(image.width * scale)), int(round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    return image
