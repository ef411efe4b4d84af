"""The nuScenes sensor rig (vehicle n015): LIDAR_TOP and six cameras, loaded from the packaged facts file.

`nuscenes-rig.json` (package data) holds sensor->ego 4x4 transforms rounded to 4 decimals, camera intrinsics,
rates and the camera firing offsets relative to the LiDAR keyframe. Rotations are re-orthonormalised on load so
that they convert to unit quaternions exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError

RIG_PATH = Path(__file__).with_name("nuscenes-rig.json")
LIDAR_CHANNEL = "LIDAR_TOP"
# Channel order of nuScenes' CAMERA list (devkit), also the order cameras are written in.
CAMERA_CHANNELS: tuple[str, ...] = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT",
                                    "CAM_FRONT_LEFT")


def orthonormalize(T: np.ndarray) -> np.ndarray:
    """The rigid transform nearest to a 4x4 whose rotation part was rounded (SVD projection onto SO(3))."""
    T = np.array(T, dtype=np.float64)
    U, _, Vt = np.linalg.svd(T[:3, :3])
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    T[:3, :3] = R
    return T


@dataclass(frozen=True)
class LidarSpec:
    """LIDAR_TOP: sensor frame x right, y forward, z up (as given by T_ego_sensor, never assumed)."""

    channel: str
    T_ego_sensor: np.ndarray
    rate_hz: float
    beams: int


@dataclass(frozen=True)
class CameraSpec:
    """One camera: optical frame (x right, y down, z forward), intrinsics K [px], image size, rate [Hz] and
    firing offset [s] relative to the LIDAR_TOP keyframe stamp."""

    channel: str
    K: np.ndarray
    width: int
    height: int
    T_ego_sensor: np.ndarray
    rate_hz: float
    offset_s: float


@dataclass(frozen=True)
class Rig:
    lidar: LidarSpec
    cameras: dict[str, CameraSpec]


def load_rig(path: str | Path = RIG_PATH) -> Rig:
    """Read a rig JSON (default: the packaged nuScenes rig).

    Raises:
        DatasetError: the file is missing or lacks a field.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        lidar_raw = raw[LIDAR_CHANNEL]
        lidar = LidarSpec(LIDAR_CHANNEL, orthonormalize(lidar_raw["sensor_to_ego"]), float(lidar_raw["rate_hz"]),
                          int(lidar_raw["beams"]))
        cameras = {}
        for channel in CAMERA_CHANNELS:
            c = raw["cameras"][channel]
            cameras[channel] = CameraSpec(channel, np.asarray(c["K"], dtype=np.float64), int(c["width"]),
                                          int(c["height"]), orthonormalize(c["sensor_to_ego"]),
                                          float(c["rate_hz"]), float(c["camera_offset_s"]))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the rig file: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: rig file lacks or mangles {exc} (expected the nuscenes-rig.json layout)") from exc
    return Rig(lidar, cameras)
