"""The geometric core on a ray-cast synthetic sweep of the real nuScenes rig, scored against its ground truth."""
import numpy as np
import pytest

from perception3d.bench.algo import synthetic_frame
from perception3d.core.classes import LIDARSEG_CLASSES
from perception3d.core.geometry import transform_points
from perception3d.core.lift3d import detect_3d
from perception3d.core.occupancy import default_grid, occupancy_volume
from perception3d.core.segmentation import segment_points


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(n_objects=80, seed=3)


def class_iou(pred, truth, label):
    tp = np.sum((pred == label) & (truth == label))
    return tp / max(1, np.sum((pred == label) | (truth == label)))


def test_frame_is_nuscenes_sized(frame):
    assert frame.points.shape == (34_688, 3)
    assert sum(len(v.detections) for v in frame.views) > 20


def test_segmentation_against_ray_cast_truth(frame):
    labels, _ = segment_points(frame.points, frame.views, frame.rig.T_base_lidar)
    assert class_iou(labels, frame.point_labels, LIDARSEG_CLASSES.index("car")) > 0.8
    assert class_iou(labels, frame.point_labels, LIDARSEG_CLASSES.index("driveable_surface")) > 0.9


def test_detection_against_ground_truth(frame):
    dets = detect_3d(frame.points, frame.views, frame.rig.T_base_lidar)
    boxed = sorted({int(i) for v in frame.views for i in v.detections.ids})
    truth = frame.objects.select(np.array(boxed))
    gap = np.linalg.norm(dets.centers[:, None, :2] - truth.centers[None, :, :2], axis=2)
    nearest = gap.argmin(axis=1)
    assert np.mean(dets.class_ids == truth.class_ids[nearest]) > 0.9
    assert np.median(gap.min(axis=1)) < 0.3
    # Most boxed objects are found within 1 m (recall), and no object is reported twice (cross-camera merging).
    assert np.mean(gap.min(axis=0) < 1.0) > 0.8
    pair = np.linalg.norm(dets.centers[:, None, :2] - dets.centers[None, :, :2], axis=2)
    same = (dets.class_ids[:, None] == dets.class_ids[None, :]) & (pair < 0.5)
    assert same.sum() == len(dets)


def test_occupancy_holds_every_point_and_frees_the_road(frame):
    grid = default_grid(0.4)
    points = transform_points(frame.rig.T_base_lidar, frame.points)
    volume = occupancy_volume(points, grid, frame.rig.T_base_lidar[:3, 3], frame.point_labels)
    idx, inside = grid.voxel_indices(points)
    cells = volume[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
    assert np.all((cells >= 1) & (cells <= 16))
    # The air 1 m above the ground between 5 and 15 m ahead is seen free (the LiDAR hits the road there).
    x = np.arange(5.0, 15.0, 0.4)
    probe = np.stack([x, np.zeros_like(x), np.full_like(x, 1.0)], axis=1)
    pidx, _ = grid.voxel_indices(probe)
    assert np.mean(volume[pidx[:, 0], pidx[:, 1], pidx[:, 2]] == 0) > 0.7
