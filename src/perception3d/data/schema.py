"""The nuScenes schema as written by the synthetic generator: table names, tokens and the fixed tables.

Fixed tables follow nuscenes-devkit 1.2.0: `category` holds all 32 lidarseg categories with their official
`index` (the devkit's lidarseg code needs the full list), `attribute` the 8 nuScenes attributes, `visibility`
the 4 levels with tokens "1".."4".
"""
from __future__ import annotations

import hashlib

from ..core.classes import LIDARSEG_FINE_CATEGORIES

TABLES: tuple[str, ...] = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor",
                           "ego_pose", "log", "scene", "sample", "sample_data", "sample_annotation", "map")
ATTRIBUTES: tuple[str, ...] = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider",
                               "cycle.without_rider", "pedestrian.sitting_lying_down", "pedestrian.standing",
                               "pedestrian.moving")
# (token, level, lower bound of the visible fraction)
VISIBILITY_LEVELS: tuple[tuple[str, str, float], ...] = (
    ("1", "v0-40", 0.0), ("2", "v40-60", 0.4), ("3", "v60-80", 0.6), ("4", "v80-100", 0.8))


def make_token(*parts: object) -> str:
    """A deterministic 32-hex token from its parts (seed, table, keys...)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def visibility_token(fraction: float) -> str:
    """Visibility token ("1".."4") of a visible fraction in [0, 1]."""
    token = VISIBILITY_LEVELS[0][0]
    for tok, _, lower in VISIBILITY_LEVELS:
        if fraction >= lower:
            token = tok
    return token


def category_records(seed: int) -> list[dict]:
    return [{"token": make_token(seed, "category", name), "name": name, "description": f"nuScenes {name}",
             "index": i} for i, name in enumerate(LIDARSEG_FINE_CATEGORIES)]


def attribute_records(seed: int) -> list[dict]:
    return [{"token": make_token(seed, "attribute", name), "name": name, "description": name}
            for name in ATTRIBUTES]


def visibility_records() -> list[dict]:
    return [{"token": tok, "level": level, "description": f"visibility of whole object is {level[1:]} %"}
            for tok, level, _ in VISIBILITY_LEVELS]
