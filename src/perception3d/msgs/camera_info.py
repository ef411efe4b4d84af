"""sensor_msgs/CameraInfo <-> core.camera.CameraModel, validated once on arrival."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.camera import CameraModel
from ..errors import CameraInfoError
from .factory import MessageFactory, default_factory

# distortion model -> number of coefficients in D
DISTORTION_MODELS: dict[str, int] = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def camera_info_to_model(msg: Any, topic: str = "<unknown topic>") -> CameraModel:
    """A validated CameraModel from a CameraInfo.

    Empty D (with any or no distortion model) means a rectified image, as nuScenes publishes. An all-zero P is
    replaced by [K|0].

    Raises:
        CameraInfoError: zero size, non-finite or singular K, an unknown distortion model or a D of wrong length.
    """
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise CameraInfoError(topic, "width/height", f"is {width}x{height}", "the positive image size in pixels")
    K = np.asarray(msg.k, dtype=np.float64)
    if K.size != 9 or not np.all(np.isfinite(K)):
        raise CameraInfoError(topic, "k", f"is {K.tolist()}", "9 finite values, row-major 3x3")
    K = K.reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(np.linalg.det(K)) < 1e-9:
        raise CameraInfoError(topic, "k", f"is singular or has non-positive focal lengths: {K.tolist()}",
                              "[fx 0 cx; 0 fy cy; 0 0 1] with fx, fy > 0")
    D = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    model = str(msg.distortion_model)
    if D.size:
        if model not in DISTORTION_MODELS:
            raise CameraInfoError(topic, "distortion_model", f"is {model!r}",
                                  f"one of {', '.join(DISTORTION_MODELS)}")
        expected = DISTORTION_MODELS[model]
        if D.size < expected or (model != "rational_polynomial" and D.size != expected):
            raise CameraInfoError(topic, "d", f"has {D.size} coefficients", f"{expected} for {model}")
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not np.any(P):
        P = None
    elif not np.all(np.isfinite(P)):
        raise CameraInfoError(topic, "p", "has non-finite values", "a finite 3x4 projection matrix")
    return CameraModel(K=K, width=width, height=height, D=D, distortion_model=model,
                       P=P, frame_id=str(msg.header.frame_id))


def camera_model_to_camera_info(camera: CameraModel, stamp_ns: int,
                                factory: MessageFactory | None = None) -> Any:
    """A CameraInfo for a camera model: R = identity (indices 0, 4, 8), P from the model ([K|0] by default)."""
    factory = factory or default_factory()
    return factory(
        "sensor_msgs/msg/CameraInfo",
        header=factory.header(stamp_ns, camera.frame_id),
        height=camera.height,
        width=camera.width,
        distortion_model=camera.distortion_model,
        d=camera.D,
        k=camera.K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=camera.P.reshape(-1),
    )
