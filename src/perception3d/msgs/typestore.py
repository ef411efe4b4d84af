"""The rosbags typestore: ROS 2 Humble standard messages plus vision_msgs 4.1.1 and perception3d_msgs.

Definitions are registered from `.msg` files. vision_msgs ships inside this package (definitions/vision_msgs);
perception3d_msgs is read from its one source, `ros2_ws/src/perception3d_msgs/msg/` (a source checkout), from the
copy setup.py places in the built package, or from an installed ROS 2 package on AMENT_PREFIX_PATH.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..errors import Perception3DError

_DEFINITIONS = Path(__file__).resolve().parent / "definitions"
_SOURCE_CHECKOUT_MSGS = Path(__file__).resolve().parents[3] / "ros2_ws" / "src" / "perception3d_msgs" / "msg"

EXTRA_PACKAGES = ("vision_msgs", "perception3d_msgs")


def message_directories(package: str) -> list[Path]:
    """Candidate directories holding `<package>`'s .msg files, most specific first."""
    candidates = []
    if package == "perception3d_msgs":
        candidates.append(_SOURCE_CHECKOUT_MSGS)
    candidates.append(_DEFINITIONS / package)
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / package / "msg")
    return candidates


def find_message_directory(package: str) -> Path:
    """The first directory of `message_directories(package)` that holds .msg files."""
    for directory in message_directories(package):
        if directory.is_dir() and any(directory.glob("*.msg")):
            return directory
    searched = ", ".join(str(d) for d in message_directories(package))
    raise Perception3DError(f"no .msg definitions found for {package}; searched {searched}")


def load_message_definitions(package: str) -> dict[str, str]:
    """Map of 'package/msg/Name' -> .msg text for every definition of `package`."""
    directory = find_message_directory(package)
    return {f"{package}/msg/{path.stem}": path.read_text() for path in sorted(directory.glob("*.msg"))}


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The process-wide typestore (built once)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    for package in EXTRA_PACKAGES:
        types = {}
        for name, text in load_message_definitions(package).items():
            types.update(get_types_from_msg(text, name))
        store.register(types)
    return store
