"""Where a sample's 2D boxes come from: the simulated detector's noise presets (`perfect`, `good`, `poor`:
data/simulated_2d.py, on the ground truth at the image's own time), or a rosbag2 written by a replay with
detector2d (its `/perception/<camera>/detections`, or `/<camera>/detections`), matched to each image by the header
stamp = the image's timestamp.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from ...core.camera import CameraModel
from ...core.detections import Detections2D, Detections3D
from ...data.simulated_2d import PRESETS, simulate_detections
from ...errors import DatasetError
from ...msgs.bag import BagReader
from ...msgs.detections import msg_to_detections2d

_DETECTIONS_TOPIC = re.compile(r"^(?:/perception)?/([^/]+)/detections$")
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"


class SimulatedBoxes2D:
    """The simulated 2D detector with one noise preset; each image gets its own seeded random stream, so a scene
    rebuilt alone gives the same boxes."""

    def __init__(self, preset: str, seed: int) -> None:
        if preset not in PRESETS:
            raise DatasetError(f"unknown 2D box preset {preset!r}; expected one of {sorted(PRESETS)} or a bag path")
        self.model, self.seed = PRESETS[preset], seed

    def boxes(self, image_token: str, stamp_ns: int, camera: CameraModel, T_camera_global: np.ndarray,
              gt_global: Detections3D, visible: np.ndarray | None = None) -> Detections2D | None:
        """Simulated detections of one image; `visible`: the boxes' rendered visible fractions, where the dataroot
        has them (`data.visibility2d`)."""
        digest = int(hashlib.sha256(image_token.encode()).hexdigest()[:12], 16)
        rng = np.random.default_rng([self.seed, digest])
        return simulate_detections(gt_global, T_camera_global, camera, self.model, rng, stamp_ns, visible)


class BagBoxes2D:
    """Detector2d outputs of one bag, or of every bag in a directory, by (camera channel, header stamp [ns])."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.bags()  # fail early on a wrong path
        self._by_stamp: dict[tuple[str, int], Detections2D] | None = None

    def _read(self) -> dict[tuple[str, int], Detections2D]:
        by_stamp = {}
        for bag in self.bags():
            with BagReader(bag) as reader:
                topics = [t for t, kind in reader.topics.items() if kind == DETECTIONS_TYPE
                          and _DETECTIONS_TOPIC.match(t)]
                for item in reader.messages(topics) if topics else ():
                    dets = msg_to_detections2d(item.decode(), item.topic)
                    by_stamp[(_DETECTIONS_TOPIC.match(item.topic).group(1), dets.stamp_ns)] = dets
        if not by_stamp:
            raise DatasetError(f"{self.path}: no {DETECTIONS_TYPE} on /perception/<camera>/detections or "
                               "/<camera>/detections in its bag(s); expected the output bag of a replay with "
                               "detector2d")
        return by_stamp

    def bags(self) -> list[Path]:
        """The bag directories: `path` itself when it holds metadata.yaml, else its sub-directories that do."""
        if (self.path / "metadata.yaml").is_file():
            return [self.path]
        bags = sorted(p.parent for p in self.path.glob("*/metadata.yaml"))
        if not bags:
            raise DatasetError(f"{self.path}: --boxes2d is neither a preset ({', '.join(PRESETS)}) nor a rosbag2 "
                               "directory or a directory of them (no metadata.yaml found)")
        return bags

    def source_files(self) -> list[Path]:
        """Every file of the bags (their stamps go into the scene keys)."""
        return [f for bag in self.bags() for f in sorted(bag.iterdir()) if f.is_file()]

    def boxes(self, image_token: str, stamp_ns: int, camera: CameraModel, T_camera_global: np.ndarray,
              gt_global: Detections3D, visible: np.ndarray | None = None) -> Detections2D | None:
        """The detections stamped with this image's stamp, or None when the bag has none for it (the bags are
        read on the first call; `visible` plays no part in a detector's output)."""
        if self._by_stamp is None:
            self._by_stamp = self._read()
        return self._by_stamp.get((camera.frame_id, stamp_ns))


def boxes2d_source(spec: str, seed: int) -> SimulatedBoxes2D | BagBoxes2D:
    """A preset name or a bag path."""
    return SimulatedBoxes2D(spec, seed) if spec in PRESETS else BagBoxes2D(Path(spec))
