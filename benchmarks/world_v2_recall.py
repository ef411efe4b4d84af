"""How much of each class the simulated 2D stream gives detection3d at all, on world v1 and world v2 (issue 16,
acceptance 1): the ceiling any 2D-guided lifting has, beside the AP it reached.

The worlds, presets and conversion of benchmarks/world_v2_scores.py (one 20 s scene each, world v1 seed 7 and
world v2 seed 8, `perfect` and `good` simulated 2D, the converter's default seed). Per keyframe, the ground-truth
objects the devkit scores (a detection class, at most the class's range from the ego in x-y, at least one LiDAR or
radar point) are counted, and found when a 2D box of the keyframe's six camera images carries the object's
instance token (the simulated detector's box id) and its class. Every 3D box detection3d lifts comes from one 2D
box, so the share found (2D recall) bounds its recall, and the devkit's AP (precision above 0.1 averaged over the
recall points above 0.1, divided by 0.9) is then at most (recall - 0.1) / 0.9 at each distance threshold.

    nice .venv/bin/python benchmarks/world_v2_recall.py [--out benchmarks/results] [--seconds 20]
"""
from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
from world_v2_scores import PRESETS, SPLIT, WORLDS, world_root  # the scored worlds (a sibling script)

from perception3d.bench.common import format_table, write_results
from perception3d.core.classes import DETECTION_CLASSES, DETECTION_RANGE_M
from perception3d.data.category_map import NUSCENES
from perception3d.data.convert import convert
from perception3d.data.nuscenes_io import open_nuscenes
from perception3d.data.simulated_2d import PRESETS as NOISE_MODELS
from perception3d.eval.keyframes import split_scenes
from perception3d.msgs.bag import BagReader
from perception3d.msgs.detections import msg_to_detections2d

MIN_RECALL = 0.1  # the devkit's detection_cvpr_2019 AP clipping (min_precision 0.1 cancels in the ceiling)


def boxes_by_stamp(bags: list[Path]) -> dict[int, set[tuple[str, str]]]:
    """{image stamp [ns]: {(box id, class)}} of every Detection2DArray in the bags."""
    found: dict[int, set[tuple[str, str]]] = collections.defaultdict(set)
    for bag in bags:
        with BagReader(bag) as reader:
            topics = [topic for topic, msgtype in reader.topics.items() if msgtype.endswith("Detection2DArray")]
            for message in reader.messages(topics):
                dets = msg_to_detections2d(message.decode(), message.topic)
                found[dets.stamp_ns].update(zip(dets.ids.tolist(), dets.class_ids.tolist()))
    return found


def recall_2d(nusc, scenes: list[str], boxes: dict[int, set[tuple[str, str]]]) -> dict[str, tuple[int, int]]:
    """{class: (objects with a 2D box of their class, objects the devkit scores)} over the scenes' keyframes."""
    total, found = collections.Counter(), collections.Counter()
    for sample in nusc.sample:
        if nusc.get("scene", sample["scene_token"])["name"] not in scenes:
            continue
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        ego_xy = np.array(nusc.get("ego_pose", lidar["ego_pose_token"])["translation"][:2])
        seen = set().union(*(boxes.get(int(nusc.get("sample_data", token)["timestamp"]) * 1000, set())
                             for channel, token in sample["data"].items() if channel.startswith("CAM")))
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            cls = NUSCENES.detection_class(ann["category_name"])
            if cls is None or ann["num_lidar_pts"] + ann["num_radar_pts"] == 0 or \
                    np.hypot(*(np.array(ann["translation"][:2]) - ego_xy)) > DETECTION_RANGE_M[cls]:
                continue
            total[cls] += 1
            found[cls] += (ann["instance_token"], cls) in seen
    return {cls: (found[cls], total[cls]) for cls in DETECTION_CLASSES if total[cls]}


def ap_ceiling(recall: float) -> float:
    """The devkit AP of detections with precision 1 up to `recall` and none beyond: each recall point between
    MIN_RECALL and recall counts 1 (its precision less the minimum precision, divided by one less that minimum),
    the points above recall 0, averaged over the points above MIN_RECALL."""
    return max(recall - MIN_RECALL, 0.0) / (1.0 - MIN_RECALL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    scores_path = args.out / "world_v2_scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    rows, data = [], {}
    with tempfile.TemporaryDirectory(prefix="p3d-world-v2-recall-") as tmp:
        for world, (version, seed) in WORLDS.items():
            root = world_root(Path(tmp), version, seed, args.seconds)
            nusc = open_nuscenes(root, "v1.0-synth")
            scenes = split_scenes(nusc, SPLIT)
            for preset in PRESETS:
                bags = convert(root, "v1.0-synth", Path(tmp) / f"bags_v{version}_{preset}", scenes,
                               NOISE_MODELS[preset], progress=False)
                name = f"{world}, {preset} 2D"
                counts = recall_2d(nusc, scenes, boxes_by_stamp(bags))
                achieved = scores.get(name, {}).get("class_ap", {})
                for cls, (found, total) in counts.items():
                    rows.append([name, cls, f"{found} / {total}", f"{found / total:.3f}",
                                 f"{ap_ceiling(found / total):.3f}",
                                 f"{achieved[cls]:.3f}" if cls in achieved else "-"])
                data[name] = {cls: {"found": f, "objects": t} for cls, (f, t) in counts.items()}
                print(name, {cls: round(f / t, 3) for cls, (f, t) in counts.items()}, flush=True)
    table = format_table(["world, 2D preset", "class", "objects with a 2D box", "2D recall",
                          "AP ceiling (recall - 0.1) / 0.9", "AP reached (world_v2_scores.md)"], rows)
    notes = ("Objects: keyframe ground truth within the class's range with at least one LiDAR or radar point, as "
             "the devkit scores them. The ceiling assumes perfect precision and placement; a 3D box can only come "
             "from a 2D box, so a class whose ceiling on world v2 lies below the AP reached on world v1 cannot reach "
             "that AP on world v2 through better lifting.")
    path = write_results(args.out, "world_v2_recall", "2D recall per class on world v1 and world v2 (issue 16)",
                         table, data, notes)
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
