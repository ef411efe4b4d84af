"""core.ground_contact: where a 2D box's bottom edge meets the ground, and its weight against the box height's depth."""
import numpy as np
import pytest

from perception3d.bench.algo import load_rig
from perception3d.core.detections import Detections2D
from perception3d.core.frustum import CameraView, ClusterParams, expected_depths
from perception3d.core.geometry import invert_transform, transform_points
from perception3d.core.ground import GroundParams, fit_ground_surface
from perception3d.core.ground_contact import GroundContact, blend, contact_weight
from perception3d.core.view_frustums import BOTTOM_MARGIN, view_frustums
from scene_helpers import ground_grid

CAMERA_HEIGHT_M = 1.5
# A camera 1.5 m above a level road looking along base x: optical z = base x, optical x = -base y, optical y = -base z.
T_BASE_CAM = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, CAMERA_HEIGHT_M],
                       [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def level_road():
    return GroundContact(fit_ground_surface(ground_grid(extent=60.0, spacing=0.4)), np.eye(4), 0.005)


def test_a_box_s_bottom_edge_meets_a_level_road_at_its_depth(level_road):
    # a bottom edge v (normalised) below the horizon meets the road at depth camera height / v; one above it never
    bottoms = np.array([CAMERA_HEIGHT_M / 10.0, CAMERA_HEIGHT_M / 30.0, -0.05])
    boxes = np.stack([np.full(3, -0.1), bottoms - 0.1, np.full(3, 0.1), bottoms], axis=1)
    depth, error = level_road.depths(boxes, np.broadcast_to(T_BASE_CAM, (3, 4, 4)))
    assert depth[:2] == pytest.approx([10.0, 30.0], abs=0.02)
    assert error[:2] == pytest.approx([0.005 * 10.0 / CAMERA_HEIGHT_M, 0.005 * 30.0 / CAMERA_HEIGHT_M], rel=0.01)
    assert np.isnan(depth[2]) and np.isnan(error[2])


def test_the_combination_weighs_each_depth_by_its_inverse_squared_relative_error():
    size_depth, contact = np.array([16.0, 16.0, 16.0]), np.array([10.0, 10.0, 10.0])
    weight = contact_weight(np.array([0.1, 0.27, 0.1]), np.array([0.1, 0.03, np.inf]))
    combined = size_depth * blend(size_depth, contact, weight)
    assert combined[0] == pytest.approx(np.sqrt(160.0))  # equal errors: the geometric mean
    assert 10.0 < combined[1] < 10.6  # a precise contact (a bicycle's 0.27 height error against 3 %) dominates
    assert combined[2] == pytest.approx(16.0)  # no trust in the ground: the size's depth


def test_a_box_ending_near_the_image_s_bottom_border_keeps_its_height_depth():
    """A box whose bottom edge lies within BOTTOM_MARGIN of its height of the image's bottom border may be cut there
    (a truncated object with a noisy edge): its bottom edge is no foot, and its expected depth stays the box
    height's (nearer the border still, within ImageBorder's few pixels, it counts as cut and has no height depth). A
    box standing higher in the image takes its ground contact into account."""
    assert BOTTOM_MARGIN > 0.1  # the premise: 10 % of its height lies within the margin
    rig = load_rig()
    camera, T_base_cam = rig.cameras["CAM_FRONT"]
    T_cam_lidar = invert_transform(T_base_cam) @ rig.T_base_lidar
    ground = fit_ground_surface(ground_grid(extent=60.0, spacing=0.4), rig.T_base_lidar[:2, 3])
    contact = GroundContact(ground, rig.T_base_lidar, GroundParams().error_per_m)
    bottom = camera.height - 1.0
    boxes = np.array([[700.0, bottom - 400.0, 900.0, bottom - 40.0],  # 10 % of its height above the border
                      [700.0, 500.0, 800.0, 560.0]])  # a car's box well above it
    view = CameraView(Detections2D(boxes, ["car", "car"], [0.9, 0.9], camera.frame_id), camera, T_cam_lidar)
    objects = transform_points(invert_transform(rig.T_base_lidar), np.array([[10.0, 0.0, 0.5]]))
    (frustums,) = view_frustums(objects, [view], ClusterParams(), contact)
    by_height = expected_depths(boxes, ["car", "car"], camera)
    assert np.isfinite(by_height).all()
    assert frustums.clusters.expected_depth[0] == by_height[0]
    assert abs(np.log(frustums.clusters.expected_depth[1] / by_height[1])) > 0.01
