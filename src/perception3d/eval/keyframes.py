"""Keyframes of a nuScenes split and the perception outputs a replay wrote for them.

A keyframe is identified by its LIDAR_TOP sample_data timestamp (us -> ns): outputs carry the stamp of the sweep
they came from, so an output's header stamp names its keyframe exactly.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.nuscenes_io import timestamp_ns
from ..errors import DatasetError
from ..msgs.bag import BagReader
from ..msgs.factory import stamp_to_ns


@dataclass(frozen=True)
class Keyframe:
    """One annotated sample: tokens, scene name and LiDAR stamp [ns]."""

    sample_token: str
    lidar_token: str
    scene: str
    stamp_ns: int


ALL_SPLIT = "all"  # every scene of the table set (e.g. Lyft, which ships no splits)


def split_scenes(nusc: Any, split: str) -> list[str]:
    """Scene names of a split: 'all', nuscenes-devkit's predefined ones or `<dataroot>/<version>/splits.json`.

    Raises:
        DatasetError: the split is neither, or splits.json is missing or malformed.
    """
    from nuscenes.utils.splits import get_scenes_of_split

    if split == ALL_SPLIT:
        return [scene["name"] for scene in nusc.scene]
    try:
        return list(get_scenes_of_split(split, nusc))
    except (FileNotFoundError, ValueError, AssertionError) as exc:
        path = Path(nusc.dataroot) / nusc.version / "splits.json"
        raise DatasetError(f"split {split!r} is neither a devkit split nor usable from {path}: {exc}") from exc


def split_keyframes(nusc: Any, split: str) -> list[Keyframe]:
    """The keyframes of every scene of a split, in time order."""
    scenes = set(split_scenes(nusc, split))
    out = []
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])["name"]
        if scene in scenes:
            lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            out.append(Keyframe(sample["token"], lidar["token"], scene, timestamp_ns(lidar)))
    return sorted(out, key=lambda k: k.stamp_ns)


def outputs_at_stamps(bags: Iterable[str | Path], topics: Sequence[str], stamps: set[int]) -> dict[str, dict]:
    """{topic: {header stamp [ns]: message}} of the bags' messages on `topics` whose header stamp is in `stamps`
    (a MarkerArray, which has no header, by its first marker's; an empty one is skipped).

    Topics a bag does not have are skipped (the caller reports what is missing).
    """
    found: dict[str, dict] = {topic: {} for topic in topics}
    for bag in bags:
        with BagReader(bag) as reader:
            present = [t for t in topics if t in reader.topics]
            for item in reader.messages(present) if present else ():
                if item.stamp_ns not in stamps:
                    continue
                msg = item.decode()
                header = msg.header if hasattr(msg, "header") else msg.markers[0].header if msg.markers else None
                if header is not None:
                    found[item.topic][stamp_to_ns(header.stamp)] = msg
    return found
