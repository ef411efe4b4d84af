"""sensor_msgs/Image and CompressedImage -> numpy, and the reverse for the encodings we write.

Colour images come back as RGB (H, W, 3) uint8 whatever their encoding (bgr8 is reordered); mono8 as (H, W) uint8,
16UC1 as (H, W) uint16, 32FC1 as (H, W) float32. Compressed JPEG and PNG are decoded with Pillow.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image as PILImage

from ..errors import ImageError
from .factory import MessageFactory, default_factory

# encoding -> (channels, dtype)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype("u1")),
    "bgr8": (3, np.dtype("u1")),
    "rgba8": (4, np.dtype("u1")),
    "bgra8": (4, np.dtype("u1")),
    "mono8": (1, np.dtype("u1")),
    "8UC1": (1, np.dtype("u1")),
    "mono16": (1, np.dtype("u2")),
    "16UC1": (1, np.dtype("u2")),
    "32FC1": (1, np.dtype("f4")),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
# Largest decoded image accepted [pixels]: 8K video is 33 MP. A few bytes of PNG or JPEG header can claim any size
# (a decompression bomb); the size is checked before any pixel is decoded.
MAX_DECODED_PIXELS = 64 * 2**20


def image_to_array(msg: Any, topic: str = "<unknown topic>") -> np.ndarray:
    """Pixels of a sensor_msgs/Image (see module docstring for shapes); a view of `data` where possible.

    Raises:
        ImageError: unknown encoding, zero size, or a step / data length that does not fit the size.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ImageError(topic, "encoding", f"is {encoding!r}", f"one of {', '.join(ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(topic, "height/width", f"is {height}x{width}", "a non-empty image")
    channels, dtype = ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageError(topic, "step", f"is {step}", f"at least width * channels * bytes = {row_bytes}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ImageError(topic, "data", f"holds {data.size} bytes", f"step * height = {step * height}")
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, row_bytes), strides=(step, 1), writeable=False)
    if step != row_bytes:
        rows = np.ascontiguousarray(rows)
    order = ">" if msg.is_bigendian else "<"
    pixels = rows.view(dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype)
    pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    if encoding in ("bgr8", "bgra8"):
        pixels = pixels[..., [2, 1, 0]]
    elif encoding == "rgba8":
        pixels = pixels[..., :3]
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return pixels


def compressed_image_to_array(msg: Any, topic: str = "<unknown topic>") -> np.ndarray:
    """Decoded pixels of a sensor_msgs/CompressedImage: RGB (H, W, 3) uint8, or (H, W) for grey images.

    Raises:
        ImageError: a format other than JPEG/PNG, empty data, bytes that do not decode, or a header that claims more
            than MAX_DECODED_PIXELS pixels (checked before decoding).
    """
    fmt = str(msg.format).lower()
    if not any(name in fmt for name in COMPRESSED_FORMATS):
        raise ImageError(topic, "format", f"is {msg.format!r}", "'jpeg' or 'png' (image_transport style names work)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(topic, "data", "is empty", f"{fmt} bytes")
    try:
        with PILImage.open(io.BytesIO(data.tobytes())) as img:
            width, height = img.size
            if width * height > MAX_DECODED_PIXELS:
                raise ImageError(topic, "data", f"claims {width}x{height} pixels",
                                 f"at most {MAX_DECODED_PIXELS} pixels (a decompression bomb is not decoded)")
            img.load()
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            pixels = np.asarray(img)
    except ImageError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise ImageError(topic, "data", f"claims too many pixels: {exc}",
                         f"at most {MAX_DECODED_PIXELS} pixels (a decompression bomb is not decoded)") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, SyntaxError, struct.error, ...
        raise ImageError(topic, "data", f"does not decode as {fmt}: {type(exc).__name__}: {exc}",
                         f"valid {fmt} bytes") from exc
    if pixels.size == 0:
        raise ImageError(topic, "data", "decodes to an empty image", "a non-empty image")
    return pixels


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB (H, W, 3) or grey (H, W) uint8 image."""
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def compressed_image_msg(data: bytes, stamp_ns: int, frame_id: str, fmt: str = "jpeg",
                         factory: MessageFactory | None = None) -> Any:
    """A CompressedImage carrying already-encoded bytes (e.g. nuScenes JPEGs passed through)."""
    factory = factory or default_factory()
    return factory("sensor_msgs/msg/CompressedImage", header=factory.header(stamp_ns, frame_id), format=fmt,
                   data=np.frombuffer(data, dtype=np.uint8))


def array_to_image(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str,
                   factory: MessageFactory | None = None) -> Any:
    """A sensor_msgs/Image of `pixels` laid out as `encoding` expects (rgb8 input for rgb8/bgr8)."""
    factory = factory or default_factory()
    if encoding not in ENCODINGS:
        raise ImageError("<image>", "encoding", f"is {encoding!r}", f"one of {', '.join(ENCODINGS)}")
    channels, dtype = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    if encoding in ("bgr8", "bgra8"):
        pixels = pixels[..., [2, 1, 0, 3][:channels]]
    pixels = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
    height, width = pixels.shape[:2]
    return factory("sensor_msgs/msg/Image", header=factory.header(stamp_ns, frame_id), height=height,
                   width=width, encoding=encoding, is_bigendian=False,
                   step=width * channels * dtype.itemsize, data=pixels.reshape(-1).view(np.uint8))
