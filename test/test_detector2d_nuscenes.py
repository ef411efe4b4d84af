"""Projection of 3D annotation boxes into 2D training boxes (train.nuscenes_boxes) against dense sampling."""
import numpy as np
import pytest

from perception3d.core.boxes import box_corners
from perception3d.core.camera import MIN_DEPTH_M, CameraModel
from perception3d.train.nuscenes_boxes import projected_box

CAMERA = CameraModel(np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]]), 1600, 900)


def _sampled_box(center, size_lwh, yaw):
    """Extent of the projections of a dense grid of points filling the box, cut at the near plane and the image."""
    g = np.linspace(-0.5, 0.5, 41)
    local = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) * size_lwh
    c, s = np.cos(yaw), np.sin(yaw)
    # box axes: yaw about the camera's -y (up) axis, so the box stays upright in the optical frame
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    pts = local[:, [0, 2, 1]] @ R.T + center  # lwh -> (x, y down, z forward) as l along x, h along y, w along z
    pts = pts[pts[:, 2] > MIN_DEPTH_M]
    uv = pts[:, :2] / pts[:, 2:] * CAMERA.K[0, 0] + CAMERA.K[:2, 2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 1600) & (uv[:, 1] >= 0) & (uv[:, 1] <= 900)
    uv = np.clip(uv, 0, [1600, 900])
    return np.concatenate([uv.min(0), uv.max(0)]), inside.any(), R


@pytest.mark.parametrize(("center", "size", "yaw"), [
    ((0.0, 0.5, 12.0), (4.6, 1.9, 1.7), 0.3),    # fully in view
    ((-3.5, 0.8, 6.0), (4.6, 1.9, 1.7), 1.2),    # cut by the left image border
    ((2.5, 0.3, 2.0), (4.6, 1.9, 1.7), 1.5),     # crossing the near plane, right of the image centre
])
def test_projected_box_matches_dense_sampling(center, size, yaw):
    reference, visible, R = _sampled_box(np.array(center), np.array(size), yaw)
    # the same box as 8 corners in the optical frame
    corners_local = box_corners(np.zeros(3), np.array(size), 0.0)[0]  # (x=l, y=w, z=h) box axes
    corners = corners_local[:, [0, 2, 1]] @ R.T + np.array(center)
    box = projected_box(corners, CAMERA)
    assert visible and box is not None
    assert box[0] > 0 or box[2] < 1600  # never the whole image: the cases test real clipping
    # sampling spacing (1/40 of the box) limits the reference accuracy near the plane; elsewhere it is < 1 px
    assert np.allclose(box, reference, atol=0.02 * np.abs(reference).max() + 1.0)


def test_box_behind_camera_is_not_visible():
    corners = box_corners(np.array([0.0, 0.0, -10.0]), np.array([4.0, 2.0, 1.5]), 0.0)[0]
    assert projected_box(corners, CAMERA) is None


def test_training_images_of_a_lyft_style_table_set(tmp_path):
    """Lyft's category names, float timestamps, no splits, no visibility or point counts: the car ahead is a 'car'
    box in every CAM_FRONT keyframe image, other_vehicle (no detection class) is left out and counted."""
    from lyft_data import VERSION, write_lyft_dataroot
    from perception3d.train.nuscenes_boxes import NuScenesCameraBoxes

    root = write_lyft_dataroot(tmp_path / "lyft")
    dataset = NuScenesCameraBoxes(root, VERSION, "all", cameras=("CAM_FRONT",))
    assert len(dataset) == len([s for s in dataset.nusc.sample])
    for i in range(len(dataset)):
        image, gt = dataset[i]
        assert sorted(gt.class_ids) == ["car", "pedestrian", "truck"]
        stamp_us = dataset.nusc.get("sample_data", dataset.sample_data_tokens[i])["timestamp"]
        assert isinstance(stamp_us, float) and abs(gt.stamp_ns - stamp_us * 1000) < 1e3  # the fraction is kept
        assert gt.stamp_ns % 1000 != 0
    assert dataset.category_counts.not_a_class == {"other_vehicle": len(dataset)}
    assert not dataset.category_counts.unmapped
