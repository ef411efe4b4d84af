"""Why geometric detection3d places far cars of world v2 too far (issue 16): a diagnosis on a world_v2_placement run.

For every car the devkit scores within 2 m of a car prediction (the nearest one in its keyframe), seen end-on (|cos|
of the angle between its heading and the line of sight from the ego at least 0.7: parked cars along the road, most
of them) and at least MIN_RANGE_M away, it splits the cars into those placed more than FAR_M too far along the line
of sight and the others, and counts each car's keyframe LiDAR returns inside its annotated box by height: below the
top of world v2's car body (BODY_TOP_FRACTION of the box height above its centre, data.world.PART_SHAPES) or above
it (the cabin). A car whose returns all lie above its body was seen over the cars parked nearer: its nearest return
is the cabin's, which world v2 insets from the box's ends.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/world_v2_hidden_bodies.py WORK NAME [--world v2_seed8]

WORK and NAME: the work folder and the --name of a world_v2_placement.py run that replayed the world's perfect-2D
bags (its devkit results are read from WORK/replays/NAME/<world>_perfect/eval/detection).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from world_v2_placement import box_yaw, nearest_predictions
from world_v2_scores import SPLIT

from perception3d.core.boxes import points_in_box
from perception3d.core.geometry import transform_points
from perception3d.data.nuscenes_io import data_path, ego_pose, open_nuscenes, read_lidar_points, sensor_extrinsics

MIN_RANGE_M = 25.0
FAR_M = 0.5
END_ON_COS = 0.7
BODY_TOP_FRACTION = 0.05  # world v2's car body spans -0.5 .. +0.05 of the box height around its centre


def returns_by_height(nusc, sample_token: str, box) -> tuple[int, int]:
    """(returns at body height, returns above it) of the keyframe sweep inside a devkit box (5 cm margin)."""
    record = nusc.get("sample_data", nusc.get("sample", sample_token)["data"]["LIDAR_TOP"])
    points = read_lidar_points(data_path(nusc, record))[:, :3]
    world = transform_points(ego_pose(nusc, record) @ sensor_extrinsics(nusc, record), points)
    w, length, h = box.size  # devkit sizes are (w, l, h)
    inside = points_in_box(world, box.translation, (length, w, h), box_yaw(box), margin=0.05)
    body = world[inside, 2] - box.translation[2] < BODY_TOP_FRACTION * h
    return int(body.sum()), int((~body).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("name")
    parser.add_argument("--world", default="v2_seed8", help="the world folder in WORK (e.g. v1_seed7, v2_seed8)")
    args = parser.parse_args()
    nusc = open_nuscenes(Path((args.work / args.world / "dataroot.txt").read_text()), "v1.0-synth")
    results = args.work / "replays" / args.name / f"{args.world}_perfect" / "eval" / "detection"
    evaluator = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(results / "results_nusc.json"),
                              eval_set=SPLIT, output_dir=str(results), verbose=False)
    groups: dict[str, list[tuple[int, int]]] = {"far": [], "other": []}
    for token, box, nearest in nearest_predictions(evaluator, "car"):
        if nearest is None or box.ego_dist < MIN_RANGE_M or np.hypot(*nearest) > 2.0:
            continue
        sight = np.array(box.ego_translation[:2]) / np.hypot(*box.ego_translation[:2])
        yaw = box_yaw(box)
        if abs(np.cos(yaw) * sight[0] + np.sin(yaw) * sight[1]) < END_ON_COS:
            continue
        groups["far" if nearest @ sight > FAR_M else "other"].append(returns_by_height(nusc, token, box))
    for group, counts in groups.items():
        c = np.array(counts).reshape(-1, 2)
        print(f"{args.world}, cars seen end-on beyond {MIN_RANGE_M:.0f} m, placed "
              f"{'more than' if group == 'far' else 'at most'} {FAR_M} m too far: {len(c)}; with no return at body "
              f"height: {np.mean(c[:, 0] == 0) if len(c) else float('nan'):.2f}; median returns at body height "
              f"{np.median(c[:, 0]) if len(c) else float('nan'):.0f}, above it "
              f"{np.median(c[:, 1]) if len(c) else float('nan'):.0f}")


if __name__ == "__main__":
    main()
