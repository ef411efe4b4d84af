"""core.ground_contact: where a 2D box's bottom edge meets the ground, and its weight against the box height's depth."""
import numpy as np
import pytest

from perception3d.core.ground import fit_ground_surface
from perception3d.core.ground_contact import GroundContact, blend, contact_weight
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
