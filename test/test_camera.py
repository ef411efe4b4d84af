"""core.camera projection and msgs.camera_info conversion/validation."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception3d.core.camera import CameraModel, backproject_pixels, project_points
from perception3d.errors import CameraInfoError
from perception3d.msgs.camera_info import camera_info_to_model, camera_model_to_camera_info
from perception3d.msgs.factory import default_factory

F = default_factory()
TOPIC = "/CAM_FRONT/camera_info"
K_FRONT = np.array([[1266.417, 0, 816.267], [0, 1266.417, 491.507], [0, 0, 1]])


def test_projection_by_hand_and_masks():
    cam = CameraModel(K_FRONT, 1600, 900)
    pts = np.array([[0, 0, 10], [1, -0.5, 20], [0, 0, -5], [100, 0, 10]])
    proj = project_points(cam, pts)
    np.testing.assert_allclose(proj.uv[0], [816.267, 491.507])
    np.testing.assert_allclose(proj.uv[1], [816.267 + 1266.417 / 20, 491.507 - 0.5 * 1266.417 / 20])
    np.testing.assert_array_equal(proj.in_front, [True, True, False, True])
    np.testing.assert_array_equal(proj.in_image, [True, True, False, False])


def test_backprojection_inverts_projection():
    cam = CameraModel(K_FRONT, 1600, 900)
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-5, 5, (20, 2)), rng.uniform(1, 80, 20)]
    proj = project_points(cam, pts)
    np.testing.assert_allclose(backproject_pixels(cam, proj.uv, proj.depth), pts, atol=1e-9)


def test_camera_info_round_trip_has_identity_r_and_k_zero_p():
    cam = CameraModel(K_FRONT, 1600, 900, frame_id="CAM_FRONT")
    msg = camera_model_to_camera_info(cam, 123)
    np.testing.assert_array_equal(msg.r, [1, 0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4), np.c_[K_FRONT, np.zeros(3)])
    assert len(msg.d) == 0 and msg.header.frame_id == "CAM_FRONT"
    back = camera_info_to_model(msg, TOPIC)
    np.testing.assert_array_equal(back.K, K_FRONT)
    assert (back.width, back.height, back.frame_id) == (1600, 900, "CAM_FRONT")


def test_plumb_bob_with_five_coefficients_is_accepted():
    cam = CameraModel(K_FRONT, 1600, 900, D=[0.1, -0.05, 0, 0, 0.01], distortion_model="plumb_bob")
    back = camera_info_to_model(camera_model_to_camera_info(cam, 0), TOPIC)
    np.testing.assert_array_equal(back.D, [0.1, -0.05, 0, 0, 0.01])
    assert back.distortion_model == "plumb_bob"


def _info(**overrides):
    fields = dict(header=F.header(0, "CAM_FRONT"), width=1600, height=900, k=K_FRONT.ravel(),
                  r=np.eye(3).ravel(), p=np.c_[K_FRONT, np.zeros(3)].ravel(), distortion_model="", d=np.zeros(0))
    fields.update(overrides)
    return F("sensor_msgs/msg/CameraInfo", **fields)


def test_all_zero_p_falls_back_to_k():
    np.testing.assert_array_equal(camera_info_to_model(_info(p=np.zeros(12)), TOPIC).P, np.c_[K_FRONT, np.zeros(3)])


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (dict(k=np.zeros(9)), "k", "singular"),
        (dict(k=np.array([1, 2, 3, 2, 4, 6, 0, 0, 1.0])), "k", "singular"),
        (dict(k=np.r_[np.nan, K_FRONT.ravel()[1:]]), "k", "finite"),
        (dict(width=0), "width/height", "0x900"),
        (dict(distortion_model="plumb_bob", d=np.zeros(4)), "d", "has 4 coefficients"),
        (dict(distortion_model="fisheye_custom", d=np.zeros(4)), "distortion_model", "'fisheye_custom'"),
        (dict(p=np.r_[np.inf, np.zeros(11)]), "p", "non-finite"),
    ],
)
def test_invalid_camera_info_raises_typed_error(overrides, field, message):
    with pytest.raises(CameraInfoError) as info:
        camera_info_to_model(_info(**overrides), TOPIC)
    assert info.value.source == TOPIC and info.value.field == field and message in str(info.value)

finite_or_not = st.one_of(st.floats(-2000, 2000), st.sampled_from([0.0, float("nan"), float("inf")]))


@given(st.lists(finite_or_not, min_size=9, max_size=9), st.integers(-2, 2000), st.integers(-2, 2000),
       st.sampled_from(["", "plumb_bob", "rational_polynomial", "equidistant", "weird"]), st.integers(0, 9))
def test_random_camera_info_is_valid_or_raises_camera_info_error(k, width, height, model, n_d):
    msg = _info(k=np.array(k), width=max(width, 0), height=max(height, 0), distortion_model=model, d=np.zeros(n_d))
    try:
        cam = camera_info_to_model(msg, TOPIC)
    except CameraInfoError as err:
        assert err.source == TOPIC and err.field
        return
    # Accepted: then the model is usable for projection.
    assert cam.width > 0 and cam.height > 0 and np.isfinite(cam.K_inv).all()
    assert cam.K[0, 0] > 0 and cam.K[1, 1] > 0
