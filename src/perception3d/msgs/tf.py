"""tf2_msgs/TFMessage <-> 4x4 transforms."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..core.geometry import matrix_to_quat_xyzw, transform_from_quat_xyzw
from ..core.tf_buffer import TfBuffer
from ..errors import Perception3DError, TransformError, TransformMessageError
from .factory import MessageFactory, default_factory, stamp_to_ns


def transform_stamped(T_parent_child: np.ndarray, parent: str, child: str, stamp_ns: int,
                      factory: MessageFactory | None = None) -> Any:
    """geometry_msgs/TransformStamped for the 4x4 transform mapping `child` coordinates into `parent`."""
    factory = factory or default_factory()
    T = np.asarray(T_parent_child, dtype=np.float64)
    q = matrix_to_quat_xyzw(T[:3, :3])
    return factory(
        "geometry_msgs/msg/TransformStamped",
        header=factory.header(stamp_ns, parent),
        child_frame_id=child,
        transform=factory(
            "geometry_msgs/msg/Transform",
            translation=factory("geometry_msgs/msg/Vector3", x=T[0, 3], y=T[1, 3], z=T[2, 3]),
            rotation=factory("geometry_msgs/msg/Quaternion", x=q[0], y=q[1], z=q[2], w=q[3])))


def tf_message(transforms: Iterable[Any], factory: MessageFactory | None = None) -> Any:
    """tf2_msgs/TFMessage of TransformStamped messages."""
    factory = factory or default_factory()
    return factory("tf2_msgs/msg/TFMessage", transforms=list(transforms))


def tf_message_to_transforms(msg: Any, topic: str = "/tf") -> list[tuple[str, str, int, np.ndarray]]:
    """(parent, child, stamp_ns, T_parent_child) for each transform of a TFMessage.

    Raises:
        TransformMessageError: the first transform with empty or equal frame ids, a non-finite translation or a
            non-finite or zero quaternion (add_tf_message keeps the good transforms of a message instead).
    """
    return [transform_of(t, topic, i) for i, t in enumerate(msg.transforms)]


def transform_of(t: Any, topic: str, index: int) -> tuple[str, str, int, np.ndarray]:
    """(parent, child, stamp_ns, T_parent_child) of the TransformStamped at `index` of a TFMessage on `topic`."""
    where = f"transforms[{index}]"
    parent, child = str(t.header.frame_id), str(t.child_frame_id)
    if not parent or not child or parent == child:
        raise TransformMessageError(topic, f"{where}.header.frame_id/child_frame_id", f"are {parent!r}/{child!r}",
                                    "two different, non-empty frame ids")
    tr, rot = t.transform.translation, t.transform.rotation
    translation = np.array([tr.x, tr.y, tr.z], dtype=np.float64)
    q = np.array([rot.x, rot.y, rot.z, rot.w], dtype=np.float64)
    if not np.isfinite(translation).all():
        raise TransformMessageError(topic, f"{where}.transform.translation", f"is {translation.tolist()}",
                                    "finite metres")
    if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
        raise TransformMessageError(topic, f"{where}.transform.rotation", f"is {q.tolist()} (x, y, z, w)",
                                    "a finite, non-zero (unit) quaternion")
    return parent, child, stamp_to_ns(t.header.stamp), transform_from_quat_xyzw(translation, q)


def add_tf_message(buffer: TfBuffer, msg: Any, static: bool, topic: str = "/tf") -> list[Perception3DError]:
    """Store every valid transform of a TFMessage (from /tf_static when static) in the buffer.

    One bad transform costs only itself: returns the errors of the transforms left out (TransformMessageError for
    a malformed one, TransformError for one the buffer refused, e.g. a stamp jump it holds as an outlier).
    """
    errors: list[Perception3DError] = []
    for i, t in enumerate(msg.transforms):
        try:
            parent, child, stamp, T = transform_of(t, topic, i)
            buffer.set_transform(parent, child, stamp, T, static=static)
        except (TransformMessageError, TransformError) as exc:
            errors.append(exc)
    return errors
