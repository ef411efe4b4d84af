"""Where the geometric detection3d loses objects on world v2, feature by feature (issue 16).

For one detection class, the core `detect_3d` (default parameters, perfect 2D boxes: the annotations projected into
every camera, bench.algo.perfect_2d_boxes) runs on simulated sweeps of one world seed at 2 s steps, and each
annotated object of the class within 40 m holding at least 5 returns is matched to the nearest detection of its
class; the table gives the share of objects placed within 0.5 m, between 0.5 and 2 m, and beyond. Rows: world v1,
world v1 with one of world v2's features switched on (`data.world.WorldStyle`), and world v2. This is a diagnosis,
not a score (the devkit's AP is in world_v2_scores.py): the boxes are amodal and ignore occlusion, and there is no
NMS-level matching.

    .venv/bin/python benchmarks/world_v2_diagnosis.py car [--seed 8]

`--pairs FEATURE` (a name of FEATURES) pairs each object with itself instead: where the feature leaves the layout as
it is (composite shapes, non-planar ground, clutter for vehicles), world v1 and world v1 with that feature alone hold
the same tracks, so per object and sweep (1 s steps, the seeds given to --pair-seeds, objects within 50 m) it prints
the placement of both and lists the objects whose error the feature raised most, with the error's parts along the
object's long side, across it and along the line of sight, the size errors, range and returns. (Rows rearrange the
layout: few objects pair.)

    .venv/bin/python benchmarks/world_v2_diagnosis.py car --pairs "composite shapes" [--pair-seeds 5 6]

`--causes VERSION:SEED ...` counts, per world (1 s steps, objects within 40 m holding 5 returns or more), the
objects placed 0.5 m off or more by whose returns lie in their nearest detection's footprint (grown by 0.25 m):
none, their own (the fit), unannotated ones (clutter), or another annotated object's, nearer or farther from the ego
(a pedestrian's group member, a row's next barrier).

    .venv/bin/python benchmarks/world_v2_diagnosis.py pedestrian --causes 1:5 1:6 2:9 2:10
"""
from __future__ import annotations

import argparse
import dataclasses
from collections import Counter

import numpy as np

from perception3d.bench.algo import load_rig, perfect_2d_boxes
from perception3d.core.detections import Detections3D
from perception3d.core.frustum import CameraView
from perception3d.core.geometry import invert_transform, transform_points
from perception3d.core.lift3d import LiftParams, detect_3d
from perception3d.data.lidar import LidarSimulator
from perception3d.data.rig import load_rig as load_sensor_rig
from perception3d.data.world import WORLD_STYLES, World

V2 = WORLD_STYLES[2]
FEATURES = {  # world v2's features, each alone on world v1
    "rows and bumper-to-bumper cars": dict(rows=V2.rows, parked_car_gap_m=V2.parked_car_gap_m),
    "non-planar ground": dict(terrain=True),
    "composite shapes": dict(composite=True),
    "curved road": dict(curve_radius_m=V2.curve_radius_m),
    "clutter (and the wider sidewalk)": dict(clutter=True, sidewalk_outer_m=V2.sidewalk_outer_m,
                                             walk_lanes_y=V2.walk_lanes_y, standing_y=V2.standing_y,
                                             pole_y=V2.pole_y),
}
MAX_RANGE_M, MIN_POINTS = 40.0, 5
MISPLACED_M, CAUSE_MARGIN_M = 0.5, 0.25


def placement_errors(world: World, detection_class: str, times: np.ndarray) -> np.ndarray:
    """BEV distance [m] from each visible annotated object of the class to the nearest detection of its class."""
    return np.array([match["error"] for match in placements(world, detection_class, times).values()])


def placements(world: World, detection_class: str, times: np.ndarray, max_range_m: float = MAX_RANGE_M
               ) -> dict[tuple[float, int], dict[str, float | str]]:
    """Per (time [s], track index) of each visible annotated object of the class (within max_range_m [m] and
    MIN_POINTS returns), its nearest detection of the class: BEV distance `error` [m] (inf without one), the error's
    parts along the object's long side, across it and along the line of sight from the ego [m], the detection's
    length and width less the object's [m], the object's range [m], its returns, |cos| of its heading against
    the line of sight (1: seen end-on), and, for an object placed MISPLACED_M or more off, the `cause`: whose
    returns lie in that detection's footprint (`_cause`)."""
    camera_rig, sensor_rig = load_rig(), load_sensor_rig()
    simulator = LidarSimulator(sensor_rig.lidar)
    T_base_lidar = sensor_rig.lidar.T_ego_sensor
    classes = np.array([track.detection_class for track in world.tracks])
    matches = {}
    for t in times:
        sweep = simulator.sweep(world, float(t), np.random.default_rng(int(t * 10)))
        T_base_global = invert_transform(world.ego_pose(float(t)))
        centers, sizes, yaws = world.object_states(float(t))
        centers = transform_points(T_base_global, centers)
        yaws = yaws + np.arctan2(T_base_global[1, 0], T_base_global[0, 0])
        returns = np.bincount(sweep.instances[sweep.instances >= 0], minlength=len(world.tracks))
        shown = np.flatnonzero((np.hypot(centers[:, 0], centers[:, 1]) < max_range_m) & (returns >= MIN_POINTS))
        truth = Detections3D(centers[shown], sizes[shown], yaws[shown], classes[shown], np.ones(len(shown)),
                             "base_link")
        views = [CameraView(perfect_2d_boxes(truth, camera, T_base_camera), camera,
                            invert_transform(T_base_camera) @ T_base_lidar)
                 for camera, T_base_camera in camera_rig.cameras.values()]
        dets = detect_3d(sweep.points[:, :3], views, T_base_lidar, params=LiftParams(min_score=0.05))
        points_base = transform_points(T_base_lidar, sweep.points[:, :3])
        mine = dets.class_ids == detection_class
        found, found_size, found_yaw = dets.centers[mine, :2], dets.sizes_lwh[mine], dets.yaws[mine]
        for i in shown[classes[shown] == detection_class]:
            if not len(found):
                matches[float(t), int(i)] = {"error": np.inf}
                continue
            distance = np.linalg.norm(found - centers[i, :2], axis=1)
            j = int(np.argmin(distance))
            offset, long_side = found[j] - centers[i, :2], np.array([np.cos(yaws[i]), np.sin(yaws[i])])
            sight = centers[i, :2] / np.linalg.norm(centers[i, :2])
            matches[float(t), int(i)] = {
                "error": float(distance[j]), "along": float(offset @ long_side),
                "across": float(offset @ [-long_side[1], long_side[0]]), "sight": float(offset @ sight),
                "length": float(found_size[j, 0] - sizes[i, 0]), "width": float(found_size[j, 1] - sizes[i, 1]),
                "range": float(np.linalg.norm(centers[i, :2])), "returns": int(returns[i]),
                "end_on": float(abs(long_side @ sight))}
            if distance[j] >= MISPLACED_M:
                footprint = (found[j], found_size[j, :2], found_yaw[j])
                matches[float(t), int(i)]["cause"] = _cause(i, footprint, points_base[:, :2], sweep.instances,
                                                             classes, centers)
    return matches


def _cause(track: int, footprint: tuple[np.ndarray, np.ndarray, float], points_xy: np.ndarray, instances: np.ndarray,
           classes: np.ndarray, centers: np.ndarray) -> str:
    """Whose returns (points_xy (N, 2) in the base frame [m], their track indices `instances`, -1 unannotated) lie
    in the footprint (centre (2,) [m], length and width (2,) [m], yaw [rad]) of the detection placed for `track`,
    grown by CAUSE_MARGIN_M on each side: "no return", "its own returns" (the fit misplaced it), "unannotated
    returns" (clutter), or "a nearer (farther) CLASS's returns" (another annotated object, nearer or farther from
    the ego than the track; centers (T, 3) [m])."""
    centre, (length, width), yaw = footprint
    offset = points_xy - centre
    along = offset @ [np.cos(yaw), np.sin(yaw)]
    across = offset @ [-np.sin(yaw), np.cos(yaw)]
    inside = (np.abs(along) <= 0.5 * length + CAUSE_MARGIN_M) & (np.abs(across) <= 0.5 * width + CAUSE_MARGIN_M)
    near = instances[inside]
    if len(near) == 0:
        return "no return"
    if np.mean(near == track) > 0.5:
        return "its own returns"
    if np.mean(near < 0) > 0.5:
        return "unannotated returns"
    other = int(np.bincount(near[near >= 0]).argmax())
    side = "nearer" if np.hypot(*centers[other, :2]) < np.hypot(*centers[track, :2]) else "farther"
    return f"a {side} {classes[other]}'s returns"


def paired(detection_class: str, feature: str, seeds: list[int], shown: int = 25) -> None:
    """Print how world v1 with one of FEATURES changes each object's placement (module docstring, --pairs)."""
    times = np.arange(1.0, 19.0, 1.0)
    with_feature = dataclasses.replace(WORLD_STYLES[1], **FEATURES[feature])
    pairs = []
    for seed in seeds:
        before = placements(World(seed, 0, 20.0, WORLD_STYLES[1]), detection_class, times, 50.0)
        after = placements(World(seed, 0, 20.0, with_feature), detection_class, times, 50.0)
        pairs += [(seed, key, before[key], after[key]) for key in sorted(before.keys() & after.keys())
                  if np.isfinite(before[key]["error"]) and np.isfinite(after[key]["error"])]
    errors = np.array([[a["error"], b["error"]] for _, _, a, b in pairs]).reshape(-1, 2)
    near = np.all(errors < 4.0, axis=1)
    print(f"{detection_class}, seeds {seeds}, world v1 -> v1 + {feature}: {len(pairs)} objects matched in both; "
          f"within 0.5 m {np.mean(errors[:, 0] < 0.5):.3f} -> {np.mean(errors[:, 1] < 0.5):.3f}; mean error "
          f"(both within 4 m) {errors[near, 0].mean():.3f} -> {errors[near, 1].mean():.3f} m")
    print("seed time track | error along across sight dlength dwidth (v1) | the same with the feature | range "
          "returns end-on")
    parts = ("error", "along", "across", "sight", "length", "width")
    for seed, (t, track), a, b in sorted(pairs, key=lambda p: p[2]["error"] - p[3]["error"])[:shown]:
        print(f"{seed} {t:4.0f} {track:4d} | " + " ".join(f"{a[k]:+.2f}" for k in parts) + " | "
              + " ".join(f"{b[k]:+.2f}" for k in parts) + f" | {b['range']:5.1f} {b['returns']:4d} {b['end_on']:.2f}")


def causes(detection_class: str, worlds: list[tuple[int, int]]) -> None:
    """Print, per world (version, seed), how many objects of the class were placed MISPLACED_M or more off and
    whose returns lie at their nearest detection (module docstring, --causes)."""
    times = np.arange(1.0, 19.0, 1.0)
    for version, seed in worlds:
        found = placements(World(seed, 0, 20.0, WORLD_STYLES[version]), detection_class, times)
        off = Counter(match["cause"] for match in found.values() if "cause" in match)
        print(f"world v{version}, seed {seed}: {len(found)} {detection_class} objects, "
              f"{np.mean([match['error'] < MISPLACED_M for match in found.values()]):.3f} within {MISPLACED_M} m; "
              f"of the {sum(off.values())} placed farther off, at their nearest detection:", flush=True)
        for cause, count in off.most_common():
            print(f"  {count:4d}  {cause}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("detection_class")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--pairs", choices=sorted(FEATURES), help="pair each object with itself in world v1 and "
                        "world v1 with this feature alone")
    parser.add_argument("--pair-seeds", type=int, nargs="+", default=[5, 6])
    parser.add_argument("--causes", nargs="+", metavar="VERSION:SEED",
                        help="count whose returns lie at the detections of the objects placed 0.5 m off or more, "
                        "per world, e.g. 1:5 2:9")
    args = parser.parse_args()
    if args.causes:
        causes(args.detection_class, [tuple(int(v) for v in world.split(":")) for world in args.causes])
        return
    if args.pairs:
        paired(args.detection_class, args.pairs, args.pair_seeds)
        return
    times = np.arange(1.0, 19.0, 2.0)
    styles = {"world v1": WORLD_STYLES[1],
              **{f"world v1 + {name}": dataclasses.replace(WORLD_STYLES[1], **switches)
                 for name, switches in FEATURES.items()},
              "world v2": V2}
    print(f"{args.detection_class}, seed {args.seed}: share of objects placed within 0.5 m / 0.5-2 m / beyond")
    for name, style in styles.items():
        errors = placement_errors(World(args.seed, 0, 20.0, style), args.detection_class, times)
        if len(errors) == 0:
            print(f"  {name:42s} no object")
            continue
        shares = [np.mean(errors < 0.5), np.mean((errors >= 0.5) & (errors < 2.0)), np.mean(errors >= 2.0)]
        print(f"  {name:42s} {shares[0]:.2f} / {shares[1]:.2f} / {shares[2]:.2f}  ({len(errors)} objects)",
              flush=True)


if __name__ == "__main__":
    main()
