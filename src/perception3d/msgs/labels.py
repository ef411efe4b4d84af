"""vision_msgs/LabelInfo: the class map published (transient local) beside every labelled output."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .factory import MessageFactory, default_factory


def label_info_msg(classes: Sequence[str] | Mapping[int, str], stamp_ns: int, frame_id: str = "",
                   threshold: float = 0.0, factory: MessageFactory | None = None) -> Any:
    """A LabelInfo from class names (index = class id) or an explicit {id: name} map."""
    factory = factory or default_factory()
    items = classes.items() if isinstance(classes, Mapping) else enumerate(classes)
    class_map = [factory("vision_msgs/msg/VisionClass", class_id=int(i), class_name=str(name))
                 for i, name in sorted(items)]
    return factory("vision_msgs/msg/LabelInfo", header=factory.header(stamp_ns, frame_id), class_map=class_map,
                   threshold=float(threshold))


def label_info_to_dict(msg: Any) -> dict[int, str]:
    """{class id: class name} of a LabelInfo."""
    return {int(c.class_id): str(c.class_name) for c in msg.class_map}
