"""Geometric perception core timed on a synthetic nuScenes-sized frame: detection3d, segmentation, occupancy.

The frame is built from the real nuScenes rig (benchmarks/nuscenes-rig.json, a copy of
reference/nuscenes-rig.json): a 32-beam LiDAR (1084 azimuths x 32 beams = 34,688 returns, the nuScenes sweep
size) cast against a flat ground, a ring of walls and 350 objects, and perfect 2D boxes (projected ground truth,
clipped to the image) of the objects the LiDAR sees, about 30 per camera. `synthetic_frame` is also used by the
quality check in the tests.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.boxes import box_corners
from ..core.camera import CameraModel, project_points
from ..core.classes import DETECTION_CLASSES, DETECTION_TO_LIDARSEG, SIZE_PRIOR_WLH
from ..core.detections import Detections2D, Detections3D
from ..core.frustum import CameraView
from ..core.geometry import invert_transform, transform_points
from ..core.lift3d import detect_3d
from ..core.occupancy import default_grid, occupancy_volume
from ..core.qaf2d import lift_boxes
from ..core.segmentation import GROUND_LABEL, segment_points
from ..data.rig import RIG_PATH
from ..runtime.heap import keep_freed_memory
from .common import format_table, time_call, write_results

LIDAR_BEAMS_DEG = np.linspace(-30.67, 10.67, 32)  # HDL-32E elevation angles
LIDAR_AZIMUTHS = 1084
WALL_RADIUS_M = 48.0
WALL_LABEL = 15  # manmade


@dataclass
class Rig:
    """Sensor calibration: T_base_lidar and per camera (name, CameraModel, T_base_cam)."""

    T_base_lidar: np.ndarray
    cameras: dict[str, tuple[CameraModel, np.ndarray]]


@dataclass
class Frame:
    """A synthetic sweep: LiDAR points (LiDAR frame), per-point ground-truth labels, objects and camera views."""

    points: np.ndarray
    point_labels: np.ndarray
    point_object: np.ndarray
    objects: Detections3D
    views: list[CameraView]
    rig: Rig


def load_rig(path: Path = RIG_PATH) -> Rig:
    """The nuScenes rig file: LIDAR_TOP and camera sensor_to_ego transforms, K, image sizes."""
    raw = json.loads(Path(path).read_text())
    cams = {}
    for name, c in raw["cameras"].items():
        cams[name] = (CameraModel(np.array(c["K"]), int(c["width"]), int(c["height"]), frame_id=name),
                      np.array(c["sensor_to_ego"], dtype=np.float64))
    return Rig(np.array(raw["LIDAR_TOP"]["sensor_to_ego"], dtype=np.float64), cams)


def random_objects(n: int, seed: int = 0, max_range: float = 45.0) -> Detections3D:
    """n non-overlapping objects on the ground (base_link), classes weighted like a city street."""
    rng = np.random.default_rng(seed)
    weights = np.array([8, 1, 0.5, 0.3, 0.3, 4, 0.6, 0.6, 2, 2], dtype=np.float64)
    centers, sizes, yaws, classes = [], [], [], []
    tries = 0
    while len(centers) < n and tries < 50 * n:
        tries += 1
        name = DETECTION_CLASSES[rng.choice(len(DETECTION_CLASSES), p=weights / weights.sum())]
        mean, std = (np.asarray(v) for v in SIZE_PRIOR_WLH[name])
        wlh = np.clip(mean + 0.5 * std * rng.standard_normal(3), 0.5 * mean, 1.5 * mean)
        radius = 0.5 * np.hypot(wlh[0], wlh[1])
        r = rng.uniform(radius + 4.0, max_range)
        a = rng.uniform(-np.pi, np.pi)
        c = np.array([r * np.cos(a), r * np.sin(a), wlh[2] / 2])
        if any(np.hypot(*(c[:2] - o[:2])) < radius + rad + 0.3 for o, rad in zip(centers, [
                0.5 * np.hypot(s[0], s[1]) for s in sizes])):
            continue
        centers.append(c)
        sizes.append(np.array([wlh[1], wlh[0], wlh[2]]))
        yaws.append(rng.uniform(-np.pi, np.pi))
        classes.append(name)
    return Detections3D(np.array(centers), np.array(sizes), np.array(yaws), classes, np.ones(len(centers)),
                        "base_link", ids=[str(i) for i in range(len(centers))])


def simulate_lidar(objects: Detections3D, T_base_lidar: np.ndarray,
                   azimuths: int = LIDAR_AZIMUTHS, beams_deg: np.ndarray = LIDAR_BEAMS_DEG,
                   wall_radius: float = WALL_RADIUS_M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast every LiDAR ray against ground (z = 0 in base_link), walls (a cylinder) and the objects' boxes.

    Returns points (N, 3) in the LiDAR frame (rays that hit nothing are dropped), ground-truth lidarseg labels
    (N,) and the index of the object hit (N,) (-1 for ground / wall).
    """
    az = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)
    el = np.radians(np.asarray(beams_deg))
    aa, ee = np.meshgrid(az, el, indexing="ij")
    dirs_lidar = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], axis=-1).reshape(-1, 3)
    R = T_base_lidar[:3, :3]
    origin = T_base_lidar[:3, 3]
    dirs = dirs_lidar @ R.T
    t_best = np.full(len(dirs), np.inf)
    label = np.zeros(len(dirs), dtype=np.uint8)
    hit_obj = np.full(len(dirs), -1)
    # Ground plane z = 0.
    t = np.where(dirs[:, 2] < -1e-9, -origin[2] / np.where(dirs[:, 2] < -1e-9, dirs[:, 2], -1.0), np.inf)
    better = t < t_best
    t_best[better], label[better] = t[better], GROUND_LABEL
    # Wall cylinder x^2 + y^2 = r^2 (from inside).
    a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
    b = 2 * (origin[0] * dirs[:, 0] + origin[1] * dirs[:, 1])
    c = origin[0] ** 2 + origin[1] ** 2 - wall_radius**2
    t = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / np.maximum(2 * a, 1e-12)
    better = (a > 1e-12) & (t < t_best)
    t_best[better], label[better] = t[better], WALL_LABEL
    # Boxes by the slab method in each box frame.
    for i in range(len(objects)):
        cy, sy = np.cos(objects.yaws[i]), np.sin(objects.yaws[i])
        rot = np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1]])
        o = rot @ (origin - objects.centers[i])
        d = dirs @ rot.T
        half = objects.sizes_lwh[i] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o) / d
            t2 = (half - o) / d
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_best)
        t_best[hit] = t_near[hit]
        label[hit] = DETECTION_TO_LIDARSEG[objects.class_ids[i]]
        hit_obj[hit] = i
    keep = np.isfinite(t_best)
    points_base = origin + dirs[keep] * t_best[keep, None]
    return transform_points(invert_transform(T_base_lidar), points_base), label[keep], hit_obj[keep]


_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


def perfect_2d_boxes(objects: Detections3D, camera: CameraModel, T_base_cam: np.ndarray,
                     visible: np.ndarray | None = None, min_area_px: float = 16.0,
                     samples_per_edge: int = 24) -> Detections2D:
    """Projected ground-truth boxes clipped to the image: the extent of the box edges' points in front of the
    camera (z > 0.5 m, so boxes cut by the image plane are clipped, not dropped). Objects marked not `visible`
    ((N,) bool) get no box: a 2D detector does not see fully occluded objects."""
    corners = box_corners(objects.centers, objects.sizes_lwh, objects.yaws)  # (N, 8, 3)
    t = np.linspace(0.0, 1.0, samples_per_edge)[None, None, :, None]
    a, b = corners[:, _EDGES[:, 0]][:, :, None], corners[:, _EDGES[:, 1]][:, :, None]
    samples = (a + t * (b - a)).reshape(len(objects), -1, 3)
    cam = transform_points(invert_transform(T_base_cam), samples.reshape(-1, 3))
    proj = project_points(camera, cam)
    uv = proj.uv.reshape(len(objects), -1, 2)
    front = (cam[:, 2] > 0.5).reshape(len(objects), -1)
    big = np.where(front[..., None], uv, np.inf)
    small = np.where(front[..., None], uv, -np.inf)
    box = np.hstack([big.min(axis=1), small.max(axis=1)])
    box[:, [0, 2]] = np.clip(box[:, [0, 2]], 0, camera.width)
    box[:, [1, 3]] = np.clip(box[:, [1, 3]], 0, camera.height)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    keep = (front.sum(axis=1) >= 2) & (area >= min_area_px)
    if visible is not None:
        keep &= visible
    box = np.nan_to_num(box[keep])
    return Detections2D(box, objects.class_ids[keep], np.ones(int(keep.sum())), camera.frame_id,
                        ids=objects.ids[keep])


def synthetic_frame(n_objects: int = 350, seed: int = 0, rig: Rig | None = None,
                    min_visible_points: int = 3) -> Frame:
    """A nuScenes-sized synthetic sweep with perfect 2D boxes in the six cameras of the real rig; objects hit by
    fewer than `min_visible_points` LiDAR rays count as occluded and get no 2D box."""
    rig = rig or load_rig()
    objects = random_objects(n_objects, seed)
    points, labels, obj = simulate_lidar(objects, rig.T_base_lidar)
    visible = np.bincount(obj[obj >= 0], minlength=len(objects)) >= min_visible_points
    views = [CameraView(perfect_2d_boxes(objects, cam, T_base_cam, visible), cam, invert_transform(T_base_cam) @
                        rig.T_base_lidar) for cam, T_base_cam in rig.cameras.values()]
    return Frame(points, labels, obj, objects, views, rig)


SAMPLES = 25


def run(out_dir: Path) -> Path:
    load_start = os.getloadavg()[0]
    keep_freed_memory()  # as every host runs its nodes (runtime.heap)
    frame = synthetic_frame()
    rig = frame.rig
    grid = default_grid(0.4)
    origin = rig.T_base_lidar[:3, 3]
    points_base = transform_points(rig.T_base_lidar, frame.points)
    labels, _ = segment_points(frame.points, frame.views, rig.T_base_lidar)
    occupancy_volume(points_base, grid, origin, labels)  # warm the per-grid direction cache
    stages = {
        "detection3d (detect_3d)": lambda: detect_3d(frame.points, frame.views, rig.T_base_lidar),
        "segmentation (segment_points)": lambda: segment_points(frame.points, frame.views, rig.T_base_lidar),
        "occupancy 0.4 m (occupancy_volume)": lambda: occupancy_volume(points_base, grid, origin, labels),
    }
    rows, data = [], {}
    total_min = total_p50 = total_p95 = 0.0
    for name, fn in stages.items():
        t = time_call(fn, repeat=SAMPLES, min_time_s=0.0)
        total_min += t["min_s"]
        total_p50 += t["median_s"]
        total_p95 += t["p95_s"]
        rows.append([name, f"{t['min_s'] * 1e3:.1f}", f"{t['median_s'] * 1e3:.1f}", f"{t['p95_s'] * 1e3:.1f}"])
        data[name] = t
    rows.append(["**total**", f"**{total_min * 1e3:.1f}**", f"**{total_p50 * 1e3:.1f}**",
                 f"**{total_p95 * 1e3:.1f}**"])
    # Where detection3d spends its time: per-step medians over separate calls.
    steps: dict[str, list[float]] = {}
    for _ in range(SAMPLES):
        record: dict[str, float] = {}
        detect_3d(frame.points, frame.views, rig.T_base_lidar, timings=record)
        for key, ms in record.items():
            steps.setdefault(key, []).append(ms)
    for key, values in steps.items():
        rows.append([f"detection3d step: {key}", f"{np.min(values):.1f}", f"{np.median(values):.1f}",
                     f"{np.sort(values)[-2]:.1f}"])
    data["detection3d_steps_ms"] = {k: float(np.median(v)) for k, v in steps.items()}
    # QAF2D alone, the full search of one car box without LiDAR restrictions (the method's per-box cost).
    car = frame.views[0].detections.select(frame.views[0].detections.class_ids == "car")
    if len(car):
        cam = frame.views[0].camera
        T = invert_transform(frame.views[0].T_cam_lidar)
        t = time_call(lambda: lift_boxes(car.boxes_xyxy[:1], ["car"], cam, T), repeat=SAMPLES, min_time_s=0.0)
        rows.append(["QAF2D lift_boxes, one car box, full search (not in the total)", f"{t['min_s'] * 1e3:.1f}",
                     f"{t['median_s'] * 1e3:.1f}", f"{t['p95_s'] * 1e3:.1f}"])
        data["qaf2d_one_car_box"] = t
    n_boxes = sum(len(v.detections) for v in frame.views)
    table = format_table(["stage", "min [ms]", "p50 [ms]", "p95 [ms]"], rows)
    verdict = "meets" if total_p95 < 0.050 else "misses"
    load = os.getloadavg()[0]
    notes = (f"1-minute load average {load_start:.1f} at the start and {load:.1f} at the end of the run on "
             f"{os.cpu_count()} cores (other jobs share this machine; a load above the core count inflates every "
             "figure; min is the least disturbed sample). "
             f"Frame: {len(frame.points):,} LiDAR points, 6 cameras, {n_boxes} 2D boxes "
             f"({n_boxes / 6:.0f} per camera), {len(frame.objects)} objects. numpy, one call per stage per frame, "
             f"{SAMPLES} samples (p95 = 2nd largest). The sum of the stage p95s {verdict} the 50 ms "
             "target (LiDAR period). Occupancy excludes the one-off per-grid direction table (cached per grid and "
             "sensor origin). The detection3d step rows split its time (they are part of its row, not added to "
             "the total): ground = ground surface (core.ground.sweep_ground); support = per-camera projection, "
             "frustum depth clusters, edge depth windows and LiDAR headings; anchors = QAF2D search; "
             "choose_refine = anchor choice, KM3D refinement and scoring; merge = transform to base_link, BEV NMS "
             "and the barrier row fill.")
    data["frame"] = {"points": len(frame.points), "boxes_2d": n_boxes, "objects": len(frame.objects)}
    data["load_average_1min"] = {"start": load_start, "end": load}
    return write_results(out_dir, "algo", "Geometric perception core per frame (perception3d bench algo)", table,
                         data, notes)
