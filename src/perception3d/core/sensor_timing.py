"""Sensor firing times of the nuScenes rig, for scripted streams (tests, benchmarks, synthetic bags).

nuScenes LIDAR_TOP spins at 20 Hz; the six cameras run at 12 Hz and fire when the LiDAR sweeps past their field of
view, so a camera's stamp is the LiDAR stamp plus a per-camera offset. The offsets below are the camera minus
LIDAR_TOP stamps of one keyframe of log n015-2018-07-24-11-22-45+0800 (shared/reference/nuscenes-rig.json).

Other rigs: `perception3d convert` measures each camera's offset from the dataroot's own stamps and records it
with the rig's sensors in the bag metadata (`RigTiming`), which `replay` uses when no parameters set them.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LIDAR_RATE_HZ = 20.0
CAMERA_RATE_HZ = 12.0
NUSCENES_CAMERA_OFFSETS_S: dict[str, float] = {
    "CAM_FRONT": -0.0355,
    "CAM_FRONT_RIGHT": -0.0276,
    "CAM_FRONT_LEFT": -0.0431,
    "CAM_BACK": -0.0104,
    "CAM_BACK_LEFT": -0.0005,
    "CAM_BACK_RIGHT": -0.0201,
}
CAMERA_NAMES: tuple[str, ...] = tuple(NUSCENES_CAMERA_OFFSETS_S)


def firing_stamps_ns(rate_hz: float, start_ns: int, end_ns: int, offset_ns: int = 0, jitter_ns: int = 0,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Sorted int64 stamps [ns] of a sensor firing at rate_hz from start_ns + offset_ns up to end_ns.

    jitter_ns adds uniform noise in [-jitter_ns, jitter_ns] to each stamp (rng required then); stamps stay unique.
    """
    period = 1e9 / rate_hz
    count = int(np.floor((end_ns - start_ns - offset_ns) / period)) + 1
    stamps = start_ns + offset_ns + np.round(np.arange(max(count, 0)) * period).astype(np.int64)
    if jitter_ns:
        if rng is None:
            raise ValueError("firing_stamps_ns: jitter_ns needs an rng")
        stamps = stamps + rng.integers(-jitter_ns, jitter_ns + 1, size=stamps.shape)
    return np.unique(stamps)


# Bag metadata key (rosbag2 custom_data) under which `perception3d convert` records the rig of a bag.
RIG_METADATA_KEY = "perception3d.rig"


@dataclass(frozen=True)
class RigTiming:
    """The sensors of a recorded rig and the measured camera firing offsets, as `convert` writes them into a bag.

    Attributes:
        trigger_lidar: the LiDAR channel whose sweeps trigger processing and give output stamps.
        lidars: every LiDAR channel (topic `/<channel>/points`), trigger first.
        cameras: every camera channel (topics `/<channel>/image/compressed`, `/<channel>/camera_info`).
        camera_offsets_s: {camera: median over keyframes of camera stamp - trigger LiDAR stamp [s]}.
        keyframes: how many keyframes the medians are taken over.
    """

    trigger_lidar: str
    lidars: tuple[str, ...]
    cameras: tuple[str, ...]
    camera_offsets_s: Mapping[str, float]
    keyframes: int

    def to_json(self) -> str:
        return json.dumps({"trigger_lidar": self.trigger_lidar, "lidars": list(self.lidars),
                           "cameras": list(self.cameras), "camera_offsets_s": dict(self.camera_offsets_s),
                           "keyframes": self.keyframes})

    @classmethod
    def from_json(cls, text: str) -> RigTiming:
        """Parse `to_json` output; ValueError naming the missing or malformed field."""
        try:
            raw = json.loads(text)
            cameras = tuple(str(c) for c in raw["cameras"])
            offsets = {c: float(raw["camera_offsets_s"][c]) for c in cameras}
            return cls(str(raw["trigger_lidar"]), tuple(str(x) for x in raw["lidars"]), cameras, offsets,
                       int(raw["keyframes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{RIG_METADATA_KEY}: malformed ({type(exc).__name__}: {exc}); expected JSON with "
                             "trigger_lidar, lidars, cameras, camera_offsets_s {camera: s}, keyframes") from exc

    def parameter_snippet(self) -> str:
        """The shared section of a ROS 2 parameter file that sets these cameras and offsets."""
        offsets = ", ".join(f"{self.camera_offsets_s[c]:.4f}" for c in self.cameras)
        return (f"# cameras and firing offsets (camera - {self.trigger_lidar} stamp, median of {self.keyframes} "
                f"keyframes) for a ROS 2 parameter file:\n"
                f"/**:\n  ros__parameters:\n    camera_names: [{', '.join(self.cameras)}]\n"
                f"    sync:\n      camera_offsets_s: [{offsets}]\n")


def median_offsets_s(deltas_ns: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """{camera: median of its (camera - LiDAR) stamp differences [ns], in seconds rounded to 0.1 ms}."""
    return {camera: round(float(np.median(np.asarray(d, np.int64))) / 1e9, 4) for camera, d in deltas_ns.items() if
            len(d)}
