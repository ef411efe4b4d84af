"""tf2_msgs/TFMessage <-> 4x4 transforms."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..core.geometry import matrix_to_quat_xyzw, transform_from_quat_xyzw
from ..core.tf_buffer import TfBuffer
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


def tf_message_to_transforms(msg: Any) -> list[tuple[str, str, int, np.ndarray]]:
    """(parent, child, stamp_ns, T_parent_child) for each transform of a TFMessage."""
    out = []
    for t in msg.transforms:
        tr, rot = t.transform.translation, t.transform.rotation
        T = transform_from_quat_xyzw([tr.x, tr.y, tr.z], [rot.x, rot.y, rot.z, rot.w])
        out.append((str(t.header.frame_id), str(t.child_frame_id), stamp_to_ns(t.header.stamp), T))
    return out


def add_tf_message(buffer: TfBuffer, msg: Any, static: bool) -> None:
    """Store every transform of a TFMessage (from /tf_static when static) in the buffer."""
    for parent, child, stamp, T in tf_message_to_transforms(msg):
        buffer.set_transform(parent, child, stamp, T, static=static)
