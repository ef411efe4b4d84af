"""nuScenes class taxonomies: 10 detection classes, 32 fine lidarseg classes mapped to 16, occupancy labels.

Names are the lower-case strings used as vision_msgs `class_id`. Index orders follow nuscenes-devkit 1.2.0
(detection config order; lidarseg `category.json` indices; `get_fine2coarse` for 32 -> 16).
"""
from __future__ import annotations

import numpy as np

# Detection classes, in the order of nuscenes-devkit's detection_cvpr_2019 config.
DETECTION_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)

_SORTED_DETECTION_CLASSES = np.array(sorted(DETECTION_CLASSES))


def class_codes(names) -> np.ndarray:
    """Integer codes (0 ... 9) of detection class names, for matching by class: integers compare ~20x faster than the
    object arrays of names. Names outside DETECTION_CLASSES get codes of their neighbours in sorted order: keep them
    out first."""
    return np.searchsorted(_SORTED_DETECTION_CLASSES, np.asarray(names, dtype=str))


# Devkit evaluation range per detection class [m] (detection_cvpr_2019).
DETECTION_RANGE_M: dict[str, float] = {
    "car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
    "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0, "barrier": 30.0,
}

# nuScenes size prior per detection class: mean and std of (w, l, h) in metres (reference/methods.md).
SIZE_PRIOR_WLH: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "car": ((1.96, 4.63, 1.74), (0.19, 0.47, 0.25)),
    "truck": ((2.52, 6.94, 2.85), (0.45, 2.11, 0.84)),
    "construction_vehicle": ((2.82, 6.56, 3.20), (1.06, 3.17, 0.94)),
    "bus": ((2.95, 11.19, 3.49), (0.32, 2.06, 0.49)),
    "trailer": ((2.92, 12.28, 3.87), (0.55, 4.6, 0.77)),
    "barrier": ((2.51, 0.50, 0.99), (0.62, 0.17, 0.15)),
    "motorcycle": ((0.77, 2.11, 1.46), (0.16, 0.31, 0.23)),
    "bicycle": ((0.61, 1.70, 1.30), (0.16, 0.25, 0.35)),
    "pedestrian": ((0.67, 0.73, 1.77), (0.14, 0.19, 0.19)),
    "traffic_cone": ((0.41, 0.42, 1.08), (0.14, 0.15, 0.27)),
}

_SIZE_PRIOR_CLASSES = {name: i for i, name in enumerate(SIZE_PRIOR_WLH)}
_SIZE_PRIOR_TABLE = np.array(list(SIZE_PRIOR_WLH.values()))  # (classes, mean/std, wlh)


def size_priors(class_ids) -> np.ndarray:
    """(B, 2, 3): SIZE_PRIOR_WLH's mean and std of (w, l, h) [m] of each class (a KeyError for a class without
    one). One lookup per box and a table take: converting the nested tuples costs ~5 us a box."""
    return _SIZE_PRIOR_TABLE[np.array([_SIZE_PRIOR_CLASSES[c] for c in class_ids], dtype=np.int64)]


# The 32 lidarseg categories with their official indices (index = position).
LIDARSEG_FINE_CATEGORIES: tuple[str, ...] = (
    "noise",
    "animal",
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer",
    "human.pedestrian.stroller",
    "human.pedestrian.wheelchair",
    "movable_object.barrier",
    "movable_object.debris",
    "movable_object.pushable_pullable",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
    "vehicle.bicycle",
    "vehicle.bus.bendy",
    "vehicle.bus.rigid",
    "vehicle.car",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",
    "vehicle.motorcycle",
    "vehicle.trailer",
    "vehicle.truck",
    "flat.driveable_surface",
    "flat.other",
    "flat.sidewalk",
    "flat.terrain",
    "static.manmade",
    "static.other",
    "static.vegetation",
    "vehicle.ego",
)

# The 16 lidarseg evaluation classes; index 0 is 'ignore' (noise and every class the benchmark leaves out).
LIDARSEG_CLASSES: tuple[str, ...] = (
    "ignore",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
)
IGNORE_LABEL = 0

_FINE_TO_COARSE_NAMES: dict[str, str] = {
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.barrier": "barrier",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable_surface",
    "flat.other": "other_flat",
    "flat.sidewalk": "sidewalk",
    "flat.terrain": "terrain",
    "static.manmade": "manmade",
    "static.vegetation": "vegetation",
}

# Lookup table: fine index (0..31) -> evaluation index (0..16).
FINE_TO_COARSE: np.ndarray = np.array(
    [LIDARSEG_CLASSES.index(_FINE_TO_COARSE_NAMES.get(name, "ignore")) for name in LIDARSEG_FINE_CATEGORIES],
    dtype=np.uint8,
)

# Category name -> detection class, as nuscenes-devkit's category_to_detection_name.
CATEGORY_TO_DETECTION: dict[str, str] = {
    name: coarse
    for name, coarse in _FINE_TO_COARSE_NAMES.items()
    if coarse in DETECTION_CLASSES
}

# Detection class -> lidarseg evaluation index (all 10 detection classes are lidarseg classes).
DETECTION_TO_LIDARSEG: dict[str, int] = {name: LIDARSEG_CLASSES.index(name) for name in DETECTION_CLASSES}

# Occupancy labels: 0 = free, 1..16 = lidarseg evaluation classes, 255 = unknown / unobserved.
OCCUPANCY_FREE = 0
OCCUPANCY_UNKNOWN = 255
OCCUPANCY_CLASSES: dict[int, str] = {
    OCCUPANCY_FREE: "free",
    **{i: LIDARSEG_CLASSES[i] for i in range(1, len(LIDARSEG_CLASSES))},
    OCCUPANCY_UNKNOWN: "unknown",
}

# RGB colours (0..255) per lidarseg evaluation class, chosen to be distinct on a dark background.
LIDARSEG_COLORS: np.ndarray = np.array(
    [
        (120, 120, 120),  # ignore
        (255, 120, 50),  # barrier
        (255, 192, 203),  # bicycle
        (255, 255, 0),  # bus
        (0, 150, 245),  # car
        (0, 255, 255),  # construction_vehicle
        (200, 180, 0),  # motorcycle
        (255, 0, 0),  # pedestrian
        (255, 240, 150),  # traffic_cone
        (135, 60, 0),  # trailer
        (160, 32, 240),  # truck
        (255, 0, 255),  # driveable_surface
        (139, 137, 137),  # other_flat
        (75, 0, 75),  # sidewalk
        (150, 240, 80),  # terrain
        (230, 230, 250),  # manmade
        (0, 175, 0),  # vegetation
    ],
    dtype=np.uint8,
)

DETECTION_COLORS: dict[str, tuple[int, int, int]] = {
    name: tuple(int(c) for c in LIDARSEG_COLORS[DETECTION_TO_LIDARSEG[name]]) for name in DETECTION_CLASSES
}


def occupancy_colors() -> np.ndarray:
    """RGB colour table (256, 3) uint8 indexed by occupancy label; free is black, unknown grey."""
    table = np.full((256, 3), 90, dtype=np.uint8)
    table[OCCUPANCY_FREE] = (0, 0, 0)
    table[1 : len(LIDARSEG_CLASSES)] = LIDARSEG_COLORS[1:]
    return table


def parse_class_map(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """{from: to} of 'from:to' entries translating another detector's class ids (e.g. COCO 'person:pedestrian');
    an empty target ('from:') drops that class. Raises ValueError naming a malformed entry."""
    mapping = {}
    for entry in pairs:
        source, sep, target = entry.partition(":")
        if not sep or not source.strip():
            raise ValueError(f"class map entry {entry!r} is not 'from:to'")
        mapping[source.strip()] = target.strip()
    return mapping


# The 80 COCO detection classes in the order of their contiguous indices 0..79 (what YOLOv8/11, YOLOX and RT-DETR
# COCO models output), for ONNX detectors that carry no class names.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

# COCO class -> nuScenes detection class; every other COCO class has no nuScenes counterpart and is dropped.
COCO_TO_DETECTION: dict[str, str] = {
    "person": "pedestrian", "car": "car", "truck": "truck", "bus": "bus", "bicycle": "bicycle",
    "motorcycle": "motorcycle",
}
