"""Image / CompressedImage decoding: encodings, step padding, endianness, JPEG/PNG, malformed input."""
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image as PILImage

from perception3d.errors import ImageError
from perception3d.msgs.factory import default_factory
from perception3d.msgs.image import (
    array_to_image,
    compressed_image_msg,
    compressed_image_to_array,
    encode_jpeg,
    image_to_array,
)

F = default_factory()
TOPIC = "/CAM_FRONT/image"


def image(encoding, height, width, step, data, big=False):
    return F("sensor_msgs/msg/Image", header=F.header(1, "CAM_FRONT"), height=height, width=width,
             encoding=encoding, is_bigendian=big, step=step, data=np.frombuffer(bytes(data), dtype=np.uint8))


def test_rgb8_and_bgr8_give_the_same_rgb_pixels():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    got_rgb = image_to_array(image("rgb8", 2, 3, 9, rgb.tobytes()), TOPIC)
    got_bgr = image_to_array(image("bgr8", 2, 3, 9, rgb[..., ::-1].tobytes()), TOPIC)
    np.testing.assert_array_equal(got_rgb, rgb)
    np.testing.assert_array_equal(got_bgr, rgb)


def test_mono8_with_row_padding():
    rows = [bytes([1, 2, 3]) + b"\xff", bytes([4, 5, 6]) + b"\xff"]
    np.testing.assert_array_equal(image_to_array(image("mono8", 2, 3, 4, b"".join(rows)), TOPIC),
                                  [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("big", [False, True])
def test_16uc1_depth_in_both_byte_orders(big):
    depth = np.array([[1, 256], [1000, 65535]], dtype=">u2" if big else "<u2")
    got = image_to_array(image("16UC1", 2, 2, 4, depth.tobytes(), big), TOPIC)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, [[1, 256], [1000, 65535]])


def test_32fc1():
    values = np.array([[0.5, -1.0, np.inf]], dtype="<f4")
    np.testing.assert_array_equal(image_to_array(image("32FC1", 1, 3, 12, values.tobytes()), TOPIC), values)


def test_array_to_image_round_trips_each_encoding():
    rng = np.random.default_rng(0)
    cases = {"rgb8": rng.integers(0, 255, (4, 5, 3), dtype=np.uint8),
             "bgr8": rng.integers(0, 255, (4, 5, 3), dtype=np.uint8),
             "mono8": rng.integers(0, 255, (4, 5), dtype=np.uint8),
             "16UC1": rng.integers(0, 65535, (4, 5), dtype=np.uint16),
             "32FC1": rng.normal(size=(4, 5)).astype(np.float32)}
    for encoding, pixels in cases.items():
        msg = array_to_image(pixels, encoding, 7, "CAM_BACK")
        np.testing.assert_array_equal(image_to_array(msg, TOPIC), pixels)


def test_png_decodes_exactly_and_jpeg_closely():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (9, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    np.testing.assert_array_equal(compressed_image_to_array(compressed_image_msg(buf.getvalue(), 1, "c", "png"), TOPIC),
                                  rgb)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (32, 1, 3))
    decoded = compressed_image_to_array(compressed_image_msg(encode_jpeg(smooth, 95), 1, "c"), TOPIC)
    assert decoded.shape == smooth.shape
    assert np.abs(decoded.astype(int) - smooth).mean() < 2.0


@pytest.mark.parametrize(
    ("msg", "field", "message"),
    [
        (image("yuv422", 2, 2, 4, b"\0" * 8), "encoding", "'yuv422'"),
        (image("rgb8", 0, 5, 15, b""), "height/width", "0x5"),
        (image("rgb8", 2, 2, 6, b"\0" * 11), "data", "holds 11 bytes"),
        (image("rgb8", 2, 2, 5, b"\0" * 10), "step", "is 5"),
        (compressed_image_msg(b"not a jpeg", 1, "c"), "data", "does not decode"),
        (compressed_image_msg(b"", 1, "c"), "data", "is empty"),
        (compressed_image_msg(b"\xff\xd8", 1, "c", "tiff"), "format", "'tiff'"),
    ],
)
def test_malformed_images_raise_typed_errors(msg, field, message):
    decode = compressed_image_to_array if hasattr(msg, "format") else image_to_array
    with pytest.raises(ImageError) as info:
        decode(msg, TOPIC)
    assert info.value.source == TOPIC and info.value.field == field and message in str(info.value)


@given(st.sampled_from(["rgb8", "bgr8", "mono8", "16UC1", "32FC1"]), st.integers(0, 4), st.integers(0, 4),
       st.integers(-3, 3), st.integers(-4, 4))
def test_random_image_headers_decode_or_raise_image_error(encoding, h, w, d_step, d_len):
    per_pixel = {"rgb8": 3, "bgr8": 3, "mono8": 1, "16UC1": 2, "32FC1": 4}[encoding]
    step = max(0, w * per_pixel + d_step)
    size = max(0, step * h + d_len)
    msg = image(encoding, h, w, step, b"\x07" * size)
    try:
        pixels = image_to_array(msg, TOPIC)
    except ImageError as err:
        assert err.source == TOPIC and err.field
        return
    assert pixels.shape[:2] == (h, w) and h > 0 and w > 0 and size >= step * h >= h * w * per_pixel


@given(st.binary(max_size=200))
def test_random_bytes_as_jpeg_raise_image_error_or_decode(data):
    try:
        pixels = compressed_image_to_array(compressed_image_msg(data, 1, "c"), TOPIC)
    except ImageError:
        return
    assert pixels.size > 0
