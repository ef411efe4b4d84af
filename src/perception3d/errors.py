"""Typed errors of perception3d.

Every error about input data names where it came from (topic or file), the field, and what was expected, so a
user can fix the producer without reading our code. Nodes catch `InputError` per message, count it and go on.
"""
from __future__ import annotations


class Perception3DError(Exception):
    """Base class of every error perception3d raises on purpose."""


class InputError(Perception3DError, ValueError):
    """A message or file that cannot be used as it is.

    Attributes:
        source: topic name or file path the data came from.
        field: the offending field (dotted path), or '' for the whole message.
        expected: what a valid value looks like.
    """

    def __init__(self, source: str, field: str, problem: str, expected: str = "") -> None:
        self.source = source
        self.field = field
        self.problem = problem
        self.expected = expected
        where = f"{source}: field '{field}'" if field else f"{source}"
        text = f"{where}: {problem}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class PointCloudError(InputError):
    """A sensor_msgs/PointCloud2 whose layout is inconsistent or unsupported."""


class ImageError(InputError):
    """A sensor_msgs/Image or CompressedImage that cannot be decoded."""


class CameraInfoError(InputError):
    """A sensor_msgs/CameraInfo that does not describe a usable camera."""


class DetectionError(InputError):
    """A vision_msgs detection array that cannot be converted."""


class OccupancyGridError(InputError):
    """A perception3d_msgs/OccupancyGrid3D whose data does not match its info."""


class TransformMessageError(InputError):
    """A geometry_msgs/TransformStamped (in a tf2_msgs/TFMessage) that is not a finite rigid transform."""


class BagError(Perception3DError):
    """A rosbag2 that cannot be read or written as asked."""


class BagWriteError(BagError):
    """The output bag cannot be created or written (read-only file system, disk full); says what was kept."""


class DatasetError(Perception3DError):
    """A nuScenes dataroot that is missing tables or files, or names an unknown version or scene."""


class TransformError(Perception3DError):
    """A transform that cannot be looked up (unknown frame, or a stamp outside the buffered time)."""


class ConfigError(Perception3DError, ValueError):
    """A parameter file or value that does not fit the parameter schema."""


class ModelError(Perception3DError, ValueError):
    """A checkpoint or ONNX model that does not fit what the code expects (architecture, classes, I/O contract).

    Attributes:
        source: file path of the model.
        problem: what is wrong.
        expected: what a valid model looks like.
    """

    def __init__(self, source: str, problem: str, expected: str = "") -> None:
        self.source = source
        self.problem = problem
        self.expected = expected
        text = f"{source}: {problem}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
