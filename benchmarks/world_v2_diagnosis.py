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

    .venv/bin/python benchmarks/world_v2_diagnosis.py pedestrian --causes 1:5 1:6 2:9 2:10 [--list]

`--list` prints each of those objects too (time, track, error, its part along the line of sight, range, returns,
cause), and `--trace VERSION:SEED:TIME:TRACK` shows how the frustum points of that object's 2D boxes are taken:
per camera, its box's estimate and support, then its points grouped by annotated object (-1: unannotated), whether
they are covered by a lower box of the kind, on the box's object cluster or next cluster, and on its segment; and
the boxes overlapping it with whose points their segments hold.

    .venv/bin/python benchmarks/world_v2_diagnosis.py pedestrian --trace 2:9:8:299
"""
from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from typing import NamedTuple

import numpy as np

from perception3d.bench.algo import load_rig, perfect_2d_boxes
from perception3d.core.boxes import intersection_2d
from perception3d.core.classes import size_priors
from perception3d.core.detections import Detections3D
from perception3d.core.frustum import CameraView, object_points
from perception3d.core.geometry import invert_transform, transform_points
from perception3d.core.ground import sweep_ground
from perception3d.core.ground_contact import GroundContact
from perception3d.core.lift3d import LiftParams, detect_3d, segment_growth
from perception3d.core.view_frustums import view_frustums
from perception3d.data.lidar import LidarSimulator, LidarSweep
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


class _Frame(NamedTuple):
    """One simulated sweep of a world at time t [s], the ego's base frame: the sweep, each track's centre (T, 3) [m],
    size (T, 3) [m], yaw (T,) [rad] and returns (T,), its detection class (T,), the tracks shown (within the range,
    MIN_POINTS returns or more), the cameras' views with the shown tracks' perfect 2D boxes, the cameras' names and
    poses T_base_camera, and T_base_lidar."""

    sweep: LidarSweep
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    returns: np.ndarray
    classes: np.ndarray
    shown: np.ndarray
    views: list[CameraView]
    camera_names: list[str]
    T_base_cameras: list[np.ndarray]
    T_base_lidar: np.ndarray


def _frame(world: World, t: float, max_range_m: float = MAX_RANGE_M) -> _Frame:
    camera_rig, sensor_rig = load_rig(), load_sensor_rig()
    T_base_lidar = sensor_rig.lidar.T_ego_sensor
    classes = np.array([track.detection_class for track in world.tracks])
    sweep = LidarSimulator(sensor_rig.lidar).sweep(world, t, np.random.default_rng(int(t * 10)))
    T_base_global = invert_transform(world.ego_pose(t))
    centers, sizes, yaws = world.object_states(t)
    centers = transform_points(T_base_global, centers)
    yaws = yaws + np.arctan2(T_base_global[1, 0], T_base_global[0, 0])
    returns = np.bincount(sweep.instances[sweep.instances >= 0], minlength=len(world.tracks))
    shown = np.flatnonzero((np.hypot(centers[:, 0], centers[:, 1]) < max_range_m) & (returns >= MIN_POINTS))
    truth = Detections3D(centers[shown], sizes[shown], yaws[shown], classes[shown], np.ones(len(shown)), "base_link")
    views = [CameraView(perfect_2d_boxes(truth, camera, T_base_camera), camera,
                        invert_transform(T_base_camera) @ T_base_lidar)
             for camera, T_base_camera in camera_rig.cameras.values()]
    return _Frame(sweep, centers, sizes, yaws, returns, classes, shown, views, list(camera_rig.cameras),
                  [T_base_camera for _, T_base_camera in camera_rig.cameras.values()], T_base_lidar)


def placements(world: World, detection_class: str, times: np.ndarray, max_range_m: float = MAX_RANGE_M
               ) -> dict[tuple[float, int], dict[str, float | str]]:
    """Per (time [s], track index) of each visible annotated object of the class (within max_range_m [m] and
    MIN_POINTS returns), its nearest detection of the class: BEV distance `error` [m] (inf without one), the error's
    parts along the object's long side, across it and along the line of sight from the ego [m], the detection's
    length and width less the object's [m], the object's range [m], its returns, |cos| of its heading against
    the line of sight (1: seen end-on), and, for an object placed MISPLACED_M or more off, the `cause`: whose
    returns lie in that detection's footprint (`_cause`)."""
    matches = {}
    for t in times:
        f = _frame(world, float(t), max_range_m)
        centers, sizes, yaws, classes = f.centers, f.sizes, f.yaws, f.classes
        dets = detect_3d(f.sweep.points[:, :3], f.views, f.T_base_lidar, params=LiftParams(min_score=0.05))
        points_base = transform_points(f.T_base_lidar, f.sweep.points[:, :3])
        mine = dets.class_ids == detection_class
        found, found_size, found_yaw = dets.centers[mine, :2], dets.sizes_lwh[mine], dets.yaws[mine]
        for i in f.shown[classes[f.shown] == detection_class]:
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
                "range": float(np.linalg.norm(centers[i, :2])), "returns": int(f.returns[i]),
                "end_on": float(abs(long_side @ sight))}
            if distance[j] >= MISPLACED_M:
                footprint = (found[j], found_size[j, :2], found_yaw[j])
                matches[float(t), int(i)]["cause"] = _cause(i, footprint, points_base[:, :2], f.sweep.instances,
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


def causes(detection_class: str, worlds: list[tuple[int, int]], listed: bool = False) -> None:
    """Print, per world (version, seed), how many objects of the class were placed MISPLACED_M or more off and
    whose returns lie at their nearest detection (module docstring, --causes); listed: each of them too."""
    times = np.arange(1.0, 19.0, 1.0)
    for version, seed in worlds:
        found = placements(World(seed, 0, 20.0, WORLD_STYLES[version]), detection_class, times)
        off = Counter(match["cause"] for match in found.values() if "cause" in match)
        print(f"world v{version}, seed {seed}: {len(found)} {detection_class} objects, "
              f"{np.mean([match['error'] < MISPLACED_M for match in found.values()]):.3f} within {MISPLACED_M} m; "
              f"of the {sum(off.values())} placed farther off, at their nearest detection:", flush=True)
        for cause, count in off.most_common():
            print(f"  {count:4d}  {cause}")
        if listed:
            print("  time track | error [m] along the line of sight [m] | range [m] returns | whose returns")
            for (t, track), match in sorted(found.items()):
                if "cause" in match:
                    print(f"  {t:4.0f} {track:5d} | {match['error']:5.2f} {match['sight']:+6.2f} | "
                          f"{match['range']:5.1f} {match['returns']:4d} | {match['cause']}")


def trace(version: int, seed: int, t: float, track: int) -> None:
    """Print, for each camera holding the track's perfect 2D box at time t [s], how its frustum's points are taken
    (module docstring, --trace): per group of points of one annotated object (or unannotated, -1), whether they are
    covered by a lower box of the kind, on the box's object cluster or its next one, and on the box's object
    segment, with their depths [m] and image columns [px]; then the other boxes overlapping it and whose points
    their segments hold. The clusters are core.view_frustums' (those detection and segmentation share); the segments
    are core.frustum.object_points' per camera with detection's segment gap per class (core.lift3d.segment_growth),
    without its low fronts and joined cameras."""
    f = _frame(World(seed, 0, 20.0, WORLD_STYLES[version]), t)
    if track not in f.shown:
        print(f"track {track} is not shown at {t} s (beyond {MAX_RANGE_M} m or under {MIN_POINTS} returns)")
        return
    params = LiftParams(min_score=0.05)
    points = f.sweep.points[:, :3]
    ground = sweep_ground(points, f.T_base_lidar, params.ground)
    instances = f.sweep.instances[~ground.is_ground]
    frustums = view_frustums(points[~ground.is_ground], f.views, params.cluster,
                             GroundContact.of(ground, f.T_base_lidar, params.ground))
    alone = Detections3D(f.centers[[track]], f.sizes[[track]], f.yaws[[track]], f.classes[[track]], np.ones(1),
                         "base_link")
    for name, view, T_base_camera, frustum in zip(f.camera_names, f.views, f.T_base_cameras, frustums):
        own = perfect_2d_boxes(alone, view.camera, T_base_camera)
        if frustum is None or not len(own):
            continue
        boxes = frustum.dets.boxes_xyxy
        b = np.flatnonzero(np.all(np.abs(boxes - own.boxes_xyxy[0]) < 0.5, axis=1))
        if not len(b):
            continue
        b = int(b[0])
        c = frustum.clusters
        growth = segment_growth(frustum.dets.class_ids, size_priors(frustum.dets.class_ids), params)
        held = object_points(c, boxes, params.cluster, None, None, *growth)
        print(f"{name}: box {b} {np.round(boxes[b], 1).tolist()}, box-height estimate "
              f"{c.expected_depth[b]:.2f} m, support {held.support[b]}")
        pairs = np.flatnonzero(c.box == b)
        whose = instances[frustum.cloud.index[c.point[pairs]]]
        depth, column = c.depth[pairs], c.u[pairs]
        flags = np.stack([whose, c.covered[pairs], c.in_cluster[pairs], c.in_next_cluster[pairs],
                          held.on_object[pairs]], axis=1).astype(np.int64)
        groups, group_of = np.unique(flags, axis=0, return_inverse=True)
        order = np.argsort([depth[group_of == g].min() for g in range(len(groups))])
        print("    object (class)             covered cluster next segment | points depth [m] columns [px]")
        for g in order:
            inst, covered, in_cluster, in_next, on = groups[g]
            d, u = depth[group_of == g], column[group_of == g]
            label = f"{inst} ({f.classes[inst]})" if inst >= 0 else "-1 (unannotated)"
            print(f"    {label:26s} {covered:7d} {in_cluster:7d} {in_next:4d} {on:7d} | {len(d):6d} "
                  f"{d.min():5.2f}-{d.max():5.2f} {u.min():4.0f}-{u.max():4.0f}")
        overlap = np.flatnonzero(intersection_2d(boxes, boxes[b])[:, 0] > 0)
        for o in overlap[overlap != b]:
            on = np.flatnonzero((c.box == o) & held.on_object)
            objects = Counter(instances[frustum.cloud.index[c.point[on]]].tolist())
            print(f"  overlapping box {o} ({frustum.dets.class_ids[o]}) {np.round(boxes[o], 1).tolist()}: "
                  f"segment of {held.support[o]} points, by object {dict(objects.most_common(4))}")


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
    parser.add_argument("--list", action="store_true", help="with --causes: list each object placed 0.5 m off")
    parser.add_argument("--trace", metavar="VERSION:SEED:TIME:TRACK",
                        help="how the frustum points of one object's 2D boxes are taken, e.g. 2:9:5:286")
    args = parser.parse_args()
    if args.trace:
        version, seed, t, track = args.trace.split(":")
        trace(int(version), int(seed), float(t), int(track))
        return
    if args.causes:
        causes(args.detection_class, [tuple(int(v) for v in world.split(":")) for world in args.causes], args.list)
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
