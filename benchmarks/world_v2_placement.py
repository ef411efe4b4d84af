"""Detection-only devkit scores and placement errors by range on the worlds of world_v2_scores.py (issue 16), with
the synthesized worlds and their converted bags kept in a work folder, so that comparing checkouts or parameters
replays detection3d alone (a few minutes per world and preset on 2 cores, against world_v2_scores' full graph).

Per world and preset: the devkit's AP of the class and the car ATE (nuscenes-devkit, detection_cvpr_2019, the same
keyframes as world_v2_scores). Then every annotated object of the class that the devkit scores is matched to the
nearest prediction of its class in its keyframe: per range from the ego, the share placed within 0.5 m and the mean
error along and across the object's long side (a barrier's long side runs along its row; a car's along its heading);
per number of LiDAR returns inside the annotated box, the objects' share and the share placed within 0.5 m; per
nuScenes attribute (parked, moving, ...) and range, the mean error and its part along the ray from the ego, per scene
and over all scenes of a world version; per scene, the tracks that carry the most error; with --placed-groups, the
class's devkit ATE with each group of PLACED_GROUPS (moving; parked near and far) placed on its annotations.

    PYTHONPATH=<checkout>/src .venv/bin/python benchmarks/world_v2_placement.py WORK [--out benchmarks/results] \
        [--name world_v2_placement] [--class barrier] [--presets perfect good] [--worlds 1:7 2:8] \
        [--rendered-visibility] [--placed-groups]

`--rendered-visibility` synthesizes the world v1 worlds with world v2's rendered visibility (their own folders in
WORK): world v1's simulated 2D detector otherwise takes occlusion from the boxes' rectangles, world v2's from
the rendered depth, so this scores both worlds behind the same kind of 2D detector.

The presets good-misses, good-jitter and good-false are the good preset with one kind of error only (missed
objects, jittered edges, false positives with class confusion): run beside perfect and good, they split what each
kind costs.

WORK is created on the first run and reused (same worlds, same bags); each run replays into WORK/replays/<name>,
emptied first. The tables go to <out>/<name>.md and .json.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from world_v2_scores import PRESETS, SPLIT, WORLDS, world_root  # the scored worlds (a sibling script)

from perception3d.bench.common import format_table, write_results
from perception3d.core.geometry import quat_xyzw_to_yaw
from perception3d.data.convert import convert
from perception3d.data.nuscenes_io import open_nuscenes
from perception3d.data.simulated_2d import PRESETS as NOISE_MODELS
from perception3d.eval.keyframes import split_scenes
from perception3d.eval.report import evaluate
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH

# The good preset with one of its kinds of error only (the others as perfect), to split what each costs:
# missed objects (a base rate, per 10 m and by occlusion), jittered box edges, false positives and class confusion.
_NO_MISSES = {"miss_base": 0.0, "miss_per_10m": 0.0, "miss_occlusion": 0.0}
_NO_JITTER = {"jitter_px": 0.0, "jitter_rel": 0.0}
_NO_FALSE = {"false_positives_per_image": 0.0, "class_confusion": 0.0}
GOOD_PARTS = {"good-misses": {**_NO_JITTER, **_NO_FALSE}, "good-jitter": {**_NO_MISSES, **_NO_FALSE},
              "good-false": {**_NO_MISSES, **_NO_JITTER}}


def noise_model(preset: str):
    """The simulated 2D detector of a preset: one of data.simulated_2d's, or one of GOOD_PARTS."""
    if preset in GOOD_PARTS:
        return dataclasses.replace(NOISE_MODELS["good"], name=preset, **GOOD_PARTS[preset])
    return NOISE_MODELS[preset]


RANGES_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 50.0))
RETURNS = ((1, 3), (3, 6), (6, 15), (15, None))  # LiDAR returns inside the annotated box (the devkit's num_pts)
PLACED_M = 0.5


def cached_root(work: Path, version: int, seed: int, rendered_visibility: bool = False) -> Path:
    """The dataroot of one world, synthesized once in work (rendered_visibility: world v1 with world v2's rendered
    visibility, which the simulated 2D detector takes its occlusion from, in a folder of its own)."""
    rendered = rendered_visibility and version == 1
    marker = work / f"v{version}_seed{seed}{'_rendered_visibility' if rendered else ''}" / "dataroot.txt"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(world_root(marker.parent, version, seed, 20.0, True if rendered else None)))
    return Path(marker.read_text())


def cached_bags(root: Path, nusc, preset: str) -> list[Path]:
    """The converted bags of a world's dataroot (nusc: its tables) with one preset, made once beside it."""
    bag_dir = root.parent / "bags" / preset
    if not (bag_dir / "done").exists():
        convert(root, "v1.0-synth", bag_dir, split_scenes(nusc, SPLIT), noise_model(preset), progress=False)
        (bag_dir / "done").write_text("")
    return sorted(p for p in bag_dir.iterdir() if p.is_dir())


def devkit_evaluator(nusc, replays: Path) -> DetectionEval:
    """A fresh devkit DetectionEval (detection_cvpr_2019, SPLIT) of the detections that `evaluate` wrote for a replay
    folder (its eval/detection/results_nusc.json)."""
    return DetectionEval(nusc, config_factory("detection_cvpr_2019"),
                         str(replays / "eval" / "detection" / "results_nusc.json"), eval_set=SPLIT,
                         output_dir=str(replays / "eval" / "detection"), verbose=False)


def nearest_predictions(evaluator, detection_class: str):
    """(sample token, annotated box, x-y offset [m] (2,) to the nearest prediction of its class in its keyframe, or
    None when the keyframe has none) of every object of the class that the devkit scores."""
    for token in evaluator.gt_boxes.sample_tokens:
        found = np.array([b.translation[:2] for b in evaluator.pred_boxes[token]
                          if b.detection_name == detection_class]).reshape(-1, 2)
        for box in evaluator.gt_boxes[token]:
            if box.detection_name != detection_class:
                continue
            offset = found - np.array(box.translation[:2])
            yield token, box, offset[np.argmin(np.hypot(*offset.T))] if len(found) else None


def box_yaw(box) -> float:
    """A devkit box's yaw [rad] (its rotation is the quaternion (w, x, y, z))."""
    return quat_xyzw_to_yaw(np.roll(box.rotation, -1))


def placement_by_range(matches: list) -> list[dict]:
    """Per RANGES_M, of the `nearest_predictions` matches: objects of the class the devkit scores, share within
    PLACED_M of the nearest prediction, mean error along / across the long side [m] (of the objects within 2 m of
    one)."""
    rows = []  # (ego distance, error, along the long side, across it)
    for _, box, nearest in matches:
        if nearest is None:
            rows.append((box.ego_dist, np.inf, np.nan, np.nan))
            continue
        w, length = box.size[:2]  # devkit sizes are (w, l, h); l lies along the yaw
        yaw = box_yaw(box)
        long_yaw = yaw if length >= w else yaw + np.pi / 2
        along = abs(nearest @ [np.cos(long_yaw), np.sin(long_yaw)])
        across = abs(nearest @ [-np.sin(long_yaw), np.cos(long_yaw)])
        rows.append((box.ego_dist, float(np.hypot(*nearest)), along, across))
    r = np.array(rows).reshape(-1, 4)
    out = []
    for low, high in RANGES_M:
        band = r[(r[:, 0] >= low) & (r[:, 0] < high)]
        near = band[band[:, 1] < 2.0]
        out.append({"range_m": [low, high], "objects": len(band),
                    "placed_share": float(np.mean(band[:, 1] < PLACED_M)) if len(band) else float("nan"),
                    "along_m": float(near[:, 2].mean()) if len(near) else float("nan"),
                    "across_m": float(near[:, 3].mean()) if len(near) else float("nan")})
    return out


def placement_by_returns(matches: list) -> list[dict]:
    """Per RETURNS bucket, of the `nearest_predictions` matches: objects of the class the devkit scores, their share
    of all of them, and the share placed within PLACED_M of the nearest prediction."""
    rows = np.array([(box.num_pts, np.inf if nearest is None else np.hypot(*nearest))
                     for _, box, nearest in matches]).reshape(-1, 2)
    out = []
    for low, high in RETURNS:
        band = rows[(rows[:, 0] >= low) & (rows[:, 0] < (np.inf if high is None else high))]
        out.append({"returns": [low, high], "objects": len(band),
                    "object_share": len(band) / len(rows) if len(rows) else float("nan"),
                    "placed_share": float(np.mean(band[:, 1] < PLACED_M)) if len(band) else float("nan")})
    return out


MOTION_RANGES_M = ((0.0, 20.0), (20.0, 50.0))


def matched_within_2m(matches: list):
    """(sample token, annotated box, error [m], its part along the ray from the ego [m], positive: placed too far) of
    the `nearest_predictions` matches whose nearest prediction lies within 2 m."""
    for token, box, nearest in matches:
        if nearest is None or np.hypot(*nearest) >= 2.0:
            continue
        ray = np.asarray(box.ego_translation[:2], dtype=float)
        yield token, box, float(np.hypot(*nearest)), float(nearest @ ray / np.linalg.norm(ray))


def placement_by_motion(matches: list) -> list[dict]:
    """Per nuScenes attribute (vehicle.parked, vehicle.moving, ...; '' for classes without one) and MOTION_RANGES_M,
    of the `nearest_predictions` matches within 2 m of one: objects, mean error [m] and mean error along the ray from
    the ego [m] (positive: placed too far)."""
    rows = [(box.attribute_name, box.ego_dist, error, along) for _, box, error, along in matched_within_2m(matches)]
    out = []
    for attribute in sorted({r[0] for r in rows}):
        for low, high in MOTION_RANGES_M:
            band = np.array([r[1:] for r in rows if r[0] == attribute and low <= r[1] < high]).reshape(-1, 3)
            if len(band):
                out.append({"attribute": attribute, "range_m": [low, high], "objects": len(band),
                            "error_m": float(band[:, 1].mean()), "along_ray_m": float(band[:, 2].mean())})
    return out


PLACED_GROUPS = (("vehicle.moving", (0.0, 50.0)), ("vehicle.parked", (0.0, 20.0)), ("vehicle.parked", (20.0, 50.0)))


def ate_with_group_placed(evaluator, detection_class: str, attribute: str, range_m: tuple[float, float]) -> float:
    """The devkit's translation error (ATE) [m] of the class (evaluator: a fresh DetectionEval of the replay) after
    the nearest prediction of its class within 2 m of each annotated object with `attribute` at range_m [m] from the
    ego is moved onto it (x, y): how much of the ATE that group of objects carries."""
    for token in evaluator.gt_boxes.sample_tokens:
        predictions = [b for b in evaluator.pred_boxes[token] if b.detection_name == detection_class]
        for box in evaluator.gt_boxes[token]:
            if (not predictions or box.detection_name != detection_class or box.attribute_name != attribute
                    or not range_m[0] <= box.ego_dist < range_m[1]):
                continue
            distance = [np.hypot(*np.subtract(p.translation[:2], box.translation[:2])) for p in predictions]
            nearest = predictions[int(np.argmin(distance))]
            if min(distance) < 2.0:
                nearest.translation = (box.translation[0], box.translation[1], nearest.translation[2])
    metrics, _ = evaluator.evaluate()
    return float(metrics.get_label_tp(detection_class, "trans_err"))


WORST_TRACKS = 3


def worst_tracks(nusc, matches: list, count: int = WORST_TRACKS) -> list[dict]:
    """The `count` annotated tracks whose `nearest_predictions` matches within 2 m sum the largest error: per track its
    instance token (first 8 characters), attribute, keyframes matched, range span [m], mean error and mean error
    along the ray from the ego [m], length [m] and its share of the summed error of all matches. One object followed
    through a whole scene (a long car ahead seen end-on, whose length no view shows) can carry a good part of a
    scene's car error."""
    tracks: dict[str, list] = {}
    total = 0.0
    for token, box, error, along in matched_within_2m(matches):
        # the devkit's box keeps no instance: its annotation is the keyframe's one at its place
        own = min((nusc.get("sample_annotation", a) for a in nusc.get("sample", token)["anns"]),
                  key=lambda a: np.hypot(*np.subtract(a["translation"][:2], box.translation[:2])))
        total += error
        tracks.setdefault(own["instance_token"], []).append(
            (box.attribute_name, box.ego_dist, error, along, box.size[1]))
    ranked = sorted(tracks.items(), key=lambda item: -sum(m[2] for m in item[1]))[:count]
    return [{"instance": instance[:8], "attribute": found[0][0], "keyframes": len(found),
             "range_m": [min(m[1] for m in found), max(m[1] for m in found)],
             "error_m": float(np.mean([m[2] for m in found])), "along_ray_m": float(np.mean([m[3] for m in found])),
             "length_m": float(found[0][4]), "error_share": sum(m[2] for m in found) / total}
            for instance, found in ranked]


def scenes_by_version(worlds: dict) -> dict[int, list[str]]:
    """{world version: the names of its scenes} (worlds: {name: (version, seed)}), for the versions with more than
    one scene: those whose figures are also pooled."""
    names: dict[int, list[str]] = {}
    for name, (version, _) in worlds.items():
        names.setdefault(version, []).append(name)
    return {version: names[version] for version in sorted(names) if len(names[version]) > 1}


def motion_over_scenes(worlds: dict, presets: list, results: dict) -> dict:
    """`placement_by_motion` bands pooled over the scenes of each world version and preset (object-weighted means),
    named like 'world v2, 3 scenes, good 2D'; only for versions with more than one scene."""
    pooled = {}
    for version, names in scenes_by_version(worlds).items():
        for preset in presets:
            bands = {}
            for name in names:
                for p in results[f"{name}, {preset} 2D"]["placement_by_motion"]:
                    key = (p["attribute"], tuple(p["range_m"]))
                    n, error, along = bands.get(key, (0, 0.0, 0.0))
                    bands[key] = (n + p["objects"], error + p["objects"] * p["error_m"],
                                  along + p["objects"] * p["along_ray_m"])
            pooled[f"world v{version}, {len(names)} scenes, {preset} 2D"] = [
                {"attribute": attribute, "range_m": list(band), "objects": n, "error_m": error / n,
                 "along_ray_m": along / n} for (attribute, band), (n, error, along) in sorted(bands.items())]
    return pooled


def world_seed(text: str) -> tuple[int, int]:
    """'VERSION:SEED' (e.g. '2:9') as (version, seed)."""
    version, _, seed = text.partition(":")
    if version not in ("1", "2") or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected VERSION:SEED with VERSION 1 or 2, e.g. 2:9")
    return int(version), int(seed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="world_v2_placement")
    parser.add_argument("--class", dest="detection_class", default="barrier")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=[*NOISE_MODELS, *GOOD_PARTS],
                        help="2D presets (perfect, good, poor; good-misses, good-jitter, good-false: the good "
                             "preset with one kind of error only)")
    parser.add_argument("--worlds", nargs="+", type=world_seed, metavar="VERSION:SEED",
                        help="worlds to score, e.g. 1:6 2:9 (default: world_v2_scores' 1:7 2:8)")
    parser.add_argument("--placed-groups", action="store_true",
                        help="also the class's devkit ATE with each of PLACED_GROUPS placed on its annotations "
                             "(a devkit run per group, scene and preset)")
    parser.add_argument("--rendered-visibility", action="store_true",
                        help="world v1 worlds with world v2's 2D occlusion (`perception3d synth "
                             "--rendered-visibility`): both worlds' simulated 2D detectors then miss objects alike")
    args = parser.parse_args()
    rendered = " (rendered occlusion)" if args.rendered_visibility else ""  # of world v1 (cached_root)
    worlds = {f"world v{v}{rendered if v == 1 else ''}, seed {s}": (v, s)
              for v, s in (WORLDS.values() if args.worlds is None else args.worlds)}
    load_start, started = os.getloadavg()[0], time.strftime("%H:%M UTC", time.gmtime())
    shutil.rmtree(args.work / "replays" / args.name, ignore_errors=True)  # a re-run's bags are never overwritten
    results = {}
    for world, (version, seed) in worlds.items():
        root = cached_root(args.work, version, seed, args.rendered_visibility)
        nusc = open_nuscenes(root, "v1.0-synth")
        for preset in args.presets:
            bags = cached_bags(root, nusc, preset)
            replays = args.work / "replays" / args.name / f"v{version}_seed{seed}_{preset}"
            for bag in bags:
                replay(bag, replays / bag.name, FULL_GRAPH.select(("detection3d",)), progress=False)
            report = evaluate(nusc, [replays / bag.name for bag in bags], SPLIT, ["det"], replays / "eval")
            evaluator = devkit_evaluator(nusc, replays)
            det = report.detection
            matches = list(nearest_predictions(evaluator, args.detection_class))
            name = f"{world}, {preset} 2D"
            results[name] = {"class_ap": det.class_ap, "map_present": det.map_present,
                             "car_ate_m": det.class_tp_errors["car"]["trans_err"],
                             "class_tp_error": det.class_tp_errors[args.detection_class]["trans_err"],
                             "placement": placement_by_range(matches),
                             "placement_by_returns": placement_by_returns(matches),
                             "placement_by_motion": placement_by_motion(matches),
                             "worst_tracks": worst_tracks(nusc, matches)}
            if args.placed_groups:
                results[name]["ate_with_group_placed"] = {
                    f"{attribute} {low:.0f}-{high:.0f} m": ate_with_group_placed(
                        devkit_evaluator(nusc, replays), args.detection_class, attribute, (low, high))
                    for attribute, (low, high) in PLACED_GROUPS}
            print(f"{name}: done", flush=True)
    c = args.detection_class
    rows = [[name, f"{p['range_m'][0]:.0f}-{p['range_m'][1]:.0f}", p["objects"], f"{p['placed_share']:.2f}",
             f"{p['along_m']:.2f}", f"{p['across_m']:.2f}"]
            for name, r in results.items() for p in r["placement"] if p["objects"]]
    table = format_table(["graph", f"{c} AP", "pedestrian AP", "mAP (present)", "car ATE [m]"],
                         [[name, f"{r['class_ap'][c]:.4f}", f"{r['class_ap']['pedestrian']:.4f}",
                           f"{r['map_present']:.4f}", f"{r['car_ate_m']:.4f}"] for name, r in results.items()])
    table += "\n\n" + format_table(["graph", "range [m]", f"{c}s scored", f"placed within {PLACED_M} m",
                                     "error along the long side [m]", "across it [m]"], rows)
    rows = [[name, f"{p['returns'][0]}-{p['returns'][1] - 1}" if p["returns"][1] else f">= {p['returns'][0]}",
             p["objects"], f"{p['object_share']:.2f}", f"{p['placed_share']:.2f}"]
            for name, r in results.items() for p in r["placement_by_returns"] if p["objects"]]
    table += "\n\n" + format_table(["graph", "LiDAR returns in the box", f"{c}s scored", "share of them",
                                     f"placed within {PLACED_M} m"], rows)
    pooled = motion_over_scenes(worlds, args.presets, results)
    by_motion = {**{name: r["placement_by_motion"] for name, r in results.items()}, **pooled}
    rows = [[name, p["attribute"] or "(none)", f"{p['range_m'][0]:.0f}-{p['range_m'][1]:.0f}", p["objects"],
             f"{p['error_m']:.2f}", f"{p['along_ray_m']:+.2f}"]
            for name, bands in by_motion.items() for p in bands]
    table += "\n\n" + format_table(["graph", "attribute", "range [m]", f"{c}s within 2 m", "mean error [m]",
                                     "along the ray from the ego [m]"], rows)
    rows = [[name, t["instance"], t["attribute"] or "(none)", t["keyframes"],
             f"{t['range_m'][0]:.0f}-{t['range_m'][1]:.0f}", f"{t['error_m']:.2f}", f"{t['along_ray_m']:+.2f}",
             f"{t['length_m']:.2f}", f"{t['error_share']:.2f}"]
            for name, r in results.items() for t in r["worst_tracks"]]
    table += "\n\n" + format_table(["graph", "track", "attribute", "keyframes", "range [m]", "mean error [m]",
                                     "along the ray [m]", "length [m]", "share of the scene's error"], rows)
    placed = {name: r["ate_with_group_placed"] for name, r in results.items() if "ate_with_group_placed" in r}
    if placed:
        groups = list(next(iter(placed.values())))
        rows = [[name, f"{results[name]['class_tp_error']:.4f}", *(f"{by_group[g]:.4f}" for g in groups)]
                for name, by_group in placed.items()]
        for version, scenes in scenes_by_version(worlds).items():
            for preset in args.presets:
                names = [f"{scene}, {preset} 2D" for scene in scenes]
                rows.append([f"world v{version}, mean of {len(names)} scenes, {preset} 2D",
                             f"{np.mean([results[n]['class_tp_error'] for n in names]):.4f}",
                             *(f"{np.mean([placed[n][g] for n in names]):.4f}" for g in groups)])
        table += "\n\n" + format_table(["graph", f"{c} ATE [m]", *(f"... with {g} placed" for g in groups)], rows)
    notes = (f"Run {started} to {time.strftime('%H:%M UTC', time.gmtime())}; 1-minute load average {load_start:.1f} at "
             f"the start and {os.getloadavg()[0]:.1f} at the end (scores do not depend on it). detection3d alone with "
             "default parameters, one 20 s scene per world (world_v2_scores' scenes unless --worlds names others). "
             "Every annotated object of the class that the devkit scores is matched to the nearest prediction of its "
             "class in its keyframe; the errors are means over those within 2 m of one, the share counts all of them. "
             "The third table splits the same objects by the LiDAR returns inside their annotated box (the devkit's "
             "num_pts, every range); the fourth those within 2 m of a prediction by their nuScenes attribute "
             "(parked, moving, ...) and range, with the mean error along the ray from the ego (positive: too far); "
             f"the fifth, per scene, the {WORST_TRACKS} tracks whose matches sum the most error, with their share of "
             "the scene's summed error. With --placed-groups a last table gives the class's devkit ATE after the "
             "nearest prediction (within 2 m) of each annotated object of a group is moved onto it: how much of the "
             "ATE each group carries.")
    path = write_results(args.out, args.name, f"detection3d placement on world v1 and world v2 ({c})", table,
                         {**results, "placement_by_motion over scenes": pooled}, notes)
    print(table)
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
