"""Reading any nuScenes-schema dataroot (nuScenes v1.0-mini/trainval/test, Lyft Level 5, the synthetic one) through
nuscenes-devkit, with clear `DatasetError`s for missing tables and files, references to records a truncated table
lacks, unknown versions and scenes, and corrupt point files.

Stamps: sample_data / sample timestamps are microseconds, integers in nuScenes and floats in Lyft; every stamp
leaves this module as integer nanoseconds (`timestamp_ns`). Categories go through a data.category_map.CategoryMap.

Frames: `global` (nuScenes) = ROS `map`; ego = `base_link`; sensors by channel name. Transforms are 4x4 T_a_b.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.boxes import wlh_to_lwh
from ..core.camera import CameraModel
from ..core.detections import Detections3D
from ..core.geometry import (
    quat_wxyz_to_matrix,
    quat_xyzw_slerp,
    quat_xyzw_to_yaw,
    transform_from_quat_wxyz,
    yaw_to_quat_xyzw,
)
from ..errors import DatasetError
from .category_map import NUSCENES, CategoryCounts, CategoryMap
from .schema import TABLES

LIDAR_POINT_FIELDS = 5  # x, y, z, intensity, ring (float32) per point in .pcd.bin

# (table, field, referenced table, may be empty) of every token reference the devkit and the converter follow.
REFERENCES: tuple[tuple[str, str, str, bool], ...] = (
    ("scene", "log_token", "log", False),
    ("scene", "first_sample_token", "sample", False),
    ("scene", "last_sample_token", "sample", False),
    ("sample", "scene_token", "scene", False),
    ("sample", "prev", "sample", True),
    ("sample", "next", "sample", True),
    ("sample_data", "sample_token", "sample", False),
    ("sample_data", "ego_pose_token", "ego_pose", False),
    ("sample_data", "calibrated_sensor_token", "calibrated_sensor", False),
    ("sample_data", "prev", "sample_data", True),
    ("sample_data", "next", "sample_data", True),
    ("sample_annotation", "sample_token", "sample", False),
    ("sample_annotation", "instance_token", "instance", False),
    ("sample_annotation", "prev", "sample_annotation", True),
    ("sample_annotation", "next", "sample_annotation", True),
    ("instance", "category_token", "category", False),
    ("calibrated_sensor", "sensor_token", "sensor", False),
)
TIMESTAMPED_TABLES = ("sample", "sample_data", "ego_pose")


def timestamp_ns(record: dict, table: str = "sample_data") -> int:
    """A record's `timestamp` (microseconds, int or float) as integer nanoseconds.

    Raises:
        DatasetError: the timestamp is missing or not a finite number.
    """
    value = record.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{table}.json: record {record.get('token')} has timestamp {value!r} (expected "
                           "microseconds, a finite number)")
    if isinstance(value, int):
        return value * 1000
    whole = math.floor(value)
    return int(whole) * 1000 + int(round((value - whole) * 1000))


def check_tables(table_dir: Path, tables: dict[str, list]) -> None:
    """Check what a partial download or truncated export breaks: every table a list of records with a token,
    every reference of REFERENCES pointing at an existing record, and numeric timestamps.

    Raises:
        DatasetError: naming the table file, the record's token, the field and the missing token.
    """
    tokens = {}
    for name, records in tables.items():
        if not isinstance(records, list) or not all(isinstance(r, dict) and "token" in r for r in records):
            raise DatasetError(f"{table_dir / name}.json: expected a JSON list of records that each have a 'token'")
        tokens[name] = {r["token"] for r in records}
    for table, field, target, optional in REFERENCES:
        for record in tables[table]:
            ref = record.get(field)
            if (ref == "" or ref is None) and optional:
                continue
            if ref not in tokens[target]:
                raise DatasetError(
                    f"{table_dir / table}.json: {table} {record['token']} field '{field}' refers to {target} "
                    f"{ref!r}, which {target}.json lacks (truncated tables or a partial download? expected every "
                    f"referenced record to be present)")
    for table in TIMESTAMPED_TABLES:
        for record in tables[table]:
            timestamp_ns(record, table)


def open_nuscenes(dataroot: str | Path, version: str, verbose: bool = False) -> Any:
    """A nuscenes.NuScenes for `<dataroot>/<version>`, after checking that the layout is complete.

    Raises:
        DatasetError: no such dataroot or version, a missing or unparsable table, a missing map file, or any
            inconsistency the devkit asserts while loading.
    """
    root = Path(dataroot)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataroot directory")
    table_dir = root / version
    if not table_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "scene.json").is_file())
        raise DatasetError(f"{table_dir}: unknown version {version!r}; this dataroot has {found or 'no versions'}")
    missing = [f"{name}.json" for name in TABLES if not (table_dir / f"{name}.json").is_file()]
    if missing:
        raise DatasetError(f"{table_dir}: missing table file(s) {', '.join(missing)} (nuScenes needs all 13)")
    tables = {}
    for name in TABLES:
        path = table_dir / f"{name}.json"
        try:
            tables[name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: unreadable table ({exc}); expected a JSON list of records") from exc
    check_tables(table_dir, tables)
    del tables
    maps = json.loads((table_dir / "map.json").read_text())
    for rec in maps:
        if not (root / rec.get("filename", "")).is_file():
            raise DatasetError(f"{root / rec.get('filename', '')}: map file listed in map.json is missing")
    from nuscenes.nuscenes import NuScenes
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=verbose)
    except Exception as exc:  # the devkit asserts and raises many unrelated types while loading
        raise DatasetError(f"{table_dir}: nuscenes-devkit cannot load it: {type(exc).__name__}: {exc}") from exc


def scene_by_name(nusc: Any, name: str) -> dict:
    """The scene record named `name`.

    Raises:
        DatasetError: no scene of that name (the message lists the available ones).
    """
    for scene in nusc.scene:
        if scene["name"] == name:
            return scene
    names = sorted(s["name"] for s in nusc.scene)
    raise DatasetError(f"{Path(nusc.dataroot) / nusc.version}: unknown scene {name!r}; available: {names}")


def data_path(nusc: Any, sample_data: dict) -> Path:
    """Absolute path of a sample_data file; raises DatasetError when it is missing."""
    path = Path(nusc.dataroot) / sample_data["filename"]
    if not path.is_file():
        raise DatasetError(f"{path}: file of sample_data {sample_data['token']} is missing")
    return path


def read_lidar_points(path: str | Path) -> np.ndarray:
    """Points (N, 5) float32 (x, y, z, intensity, ring) of a nuScenes `.pcd.bin`, in the sensor frame.

    Raises:
        DatasetError: missing file, a size that is not a whole number of 20-byte points, or non-finite xyz.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read LiDAR points: {exc}") from exc
    step = 4 * LIDAR_POINT_FIELDS
    if len(raw) % step:
        raise DatasetError(f"{path}: corrupt point file: {len(raw)} bytes is not a multiple of {step} "
                           f"(expected N x {LIDAR_POINT_FIELDS} float32: x, y, z, intensity, ring)")
    points = np.frombuffer(raw, dtype="<f4").reshape(-1, LIDAR_POINT_FIELDS)
    if not np.isfinite(points[:, :3]).all():
        bad = int(np.flatnonzero(~np.isfinite(points[:, :3]).all(1))[0])
        raise DatasetError(f"{path}: corrupt point file: point {bad} has non-finite x, y, z (expected finite metres)")
    return points


def read_lidarseg(nusc: Any, lidar_token: str, n_points: int) -> np.ndarray:
    """Fine lidarseg labels (N,) uint8 of a keyframe LiDAR sample_data; DatasetError if missing or wrong size."""
    try:  # the devkit keys lidarseg records by their sample_data token; other tables may not, so fall back
        record = nusc.get("lidarseg", lidar_token)
        record = record if record["sample_data_token"] == lidar_token else None
    except (AssertionError, AttributeError, KeyError):  # no lidarseg table, or no record with that token
        record = None
    record = record or next((r for r in getattr(nusc, "lidarseg", []) if r["sample_data_token"] == lidar_token),
                            None)
    if record is None:
        raise DatasetError(f"{Path(nusc.dataroot) / nusc.version}/lidarseg.json: no labels for {lidar_token}")
    path = Path(nusc.dataroot) / record["filename"]
    try:
        labels = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read lidarseg labels: {exc}") from exc
    if labels.size != n_points:
        raise DatasetError(f"{path}: {labels.size} labels for {n_points} points (expected one uint8 per point)")
    return labels


def ego_pose(nusc: Any, sample_data: dict) -> np.ndarray:
    """T_global_ego (4x4) at a sample_data's timestamp."""
    pose = nusc.get("ego_pose", sample_data["ego_pose_token"])
    return transform_from_quat_wxyz(pose["translation"], pose["rotation"])


def sensor_extrinsics(nusc: Any, sample_data: dict) -> np.ndarray:
    """T_ego_sensor (4x4) of a sample_data's calibrated sensor."""
    calib = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    return transform_from_quat_wxyz(calib["translation"], calib["rotation"])


def camera_model(nusc: Any, sample_data: dict) -> CameraModel:
    """Pinhole model (rectified, P = [K|0]) of a camera sample_data; frame_id is the channel."""
    calib = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    return CameraModel(K=np.asarray(calib["camera_intrinsic"]), width=int(sample_data["width"]),
                       height=int(sample_data["height"]), frame_id=sample_data["channel"])


def scene_sample_data(nusc: Any, scene: dict) -> list[dict]:
    """Every sample_data of a scene (keyframes and sweeps, all channels), sorted by timestamp then channel."""
    first = nusc.get("sample", scene["first_sample_token"])
    records = []
    for token in first["data"].values():
        sd = nusc.get("sample_data", token)
        while sd["prev"]:
            sd = nusc.get("sample_data", sd["prev"])
        while True:
            records.append(sd)
            if not sd["next"]:
                break
            sd = nusc.get("sample_data", sd["next"])
    return sorted(records, key=lambda r: (timestamp_ns(r), r["channel"]))


def sample_annotations(nusc: Any, sample_token: str, category_map: CategoryMap = NUSCENES,
                       counts: CategoryCounts | None = None) -> tuple[Detections3D, np.ndarray]:
    """Ground-truth boxes of the detection classes at a sample, in the global frame (`map`), ids = instance
    tokens, velocities from the devkit (NaN where unknown); plus num_lidar_pts (N,) of each box.

    Categories go through `category_map`; every annotation is counted into `counts` (when given) as kept, not a
    detection class, or unmapped, so callers can report what was left out.
    """
    sample = nusc.get("sample", sample_token)
    centers, sizes, yaws, classes, ids, vels, n_pts = [], [], [], [], [], [], []
    for token in sample["anns"]:
        ann = nusc.get("sample_annotation", token)
        cls = category_map.detection_class(ann["category_name"], counts)
        if cls is None:
            continue
        R = quat_wxyz_to_matrix(ann["rotation"])
        centers.append(ann["translation"])
        sizes.append(wlh_to_lwh(ann["size"]))
        yaws.append(np.arctan2(R[1, 0], R[0, 0]))
        classes.append(cls)
        ids.append(ann["instance_token"])
        vels.append(nusc.box_velocity(token)[:2])
        n_pts.append(ann.get("num_lidar_pts", -1))
    dets = Detections3D(np.asarray(centers).reshape(-1, 3), np.asarray(sizes).reshape(-1, 3), np.asarray(yaws),
                        classes, np.ones(len(classes)), "map", timestamp_ns(sample, "sample"),
                        np.asarray(vels).reshape(-1, 2), ids)
    return dets, np.asarray(n_pts, dtype=int)


def annotation_attributes(nusc: Any, sample_token: str) -> dict[str, str]:
    """{instance token: attribute name} of a sample's annotations ('' for none; the first when several)."""
    out = {}
    for token in nusc.get("sample", sample_token)["anns"]:
        ann = nusc.get("sample_annotation", token)
        tokens = ann.get("attribute_tokens") or []
        out[ann["instance_token"]] = nusc.get("attribute", tokens[0])["name"] if tokens else ""
    return out


def interpolate_annotations(keyframes: list[tuple[int, Detections3D]],
                            stamp_ns: int) -> tuple[Detections3D, np.ndarray]:
    """Ground truth at any time from the keyframe boxes (global frame, sorted by stamp [ns]), as nuScenes tooling
    interpolates sweeps; returns the boxes and a mask (N,) of those that had to be extrapolated.

    Between two keyframes the boxes are the nearer keyframe's instances. An instance annotated in both is
    interpolated: centre, size and velocity linearly, heading by quaternion slerp (shortest arc; the boxes are
    gravity-aligned, so this is the yaw quaternion's slerp). An instance annotated in only one of them, and every
    box before the first or after the last keyframe, is moved from its keyframe at its annotated velocity (constant
    velocity, the same model the interpolation assumes) and marked extrapolated; with an unknown (NaN) velocity
    it keeps its keyframe pose.
    """
    stamps = np.array([s for s, _ in keyframes], dtype=np.float64)
    k = int(np.searchsorted(stamps, stamp_ns, side="right")) - 1
    if k < 0 or k >= len(keyframes) - 1:
        s_out, out = keyframes[0] if k < 0 else keyframes[-1]
        return _advanced(out, (stamp_ns - s_out) * 1e-9, stamp_ns), np.full(len(out), stamp_ns != s_out)
    (s0, a), (s1, b) = keyframes[k], keyframes[k + 1]
    w = (stamp_ns - s0) / (s1 - s0)
    s_out, out = (s0, a) if w < 0.5 else (s1, b)
    index_a = {ident: j for j, ident in enumerate(a.ids)}
    index_b = {ident: j for j, ident in enumerate(b.ids)}
    result = _advanced(out, (stamp_ns - s_out) * 1e-9, stamp_ns)
    extrapolated = np.full(len(out), stamp_ns != s_out)
    # the instances annotated in both keyframes, all at once (the same arithmetic, element by element, as one at
    # a time: the conversion and the dataset cache spent most of their time in a loop over the boxes)
    pairs = [(i, index_a[ident], index_b[ident]) for i, ident in enumerate(out.ids)
             if ident in index_a and ident in index_b]
    if not pairs:
        return result, extrapolated
    i, j_a, j_b = np.array(pairs).T
    extrapolated[i] = False
    result.centers[i] = (1 - w) * a.centers[j_a] + w * b.centers[j_b]
    result.sizes_lwh[i] = (1 - w) * a.sizes_lwh[j_a] + w * b.sizes_lwh[j_b]
    q = quat_xyzw_slerp(yaw_to_quat_xyzw(a.yaws[j_a]), yaw_to_quat_xyzw(b.yaws[j_b]), np.full(len(i), w))
    result.yaws[i] = quat_xyzw_to_yaw(q)
    va, vb = a.velocities[j_a], b.velocities[j_b]
    result.velocities[i] = np.where(np.isnan(va), vb, np.where(np.isnan(vb), va, (1 - w) * va + w * vb))
    return result, extrapolated


def _advanced(boxes: Detections3D, dt_s: float, stamp_ns: int) -> Detections3D:
    """Copies of keyframe boxes moved by dt_s [s] at their xy velocity (unchanged where it is unknown)."""
    shift = np.nan_to_num(boxes.velocities) * dt_s
    centers = boxes.centers.copy()
    centers[:, :2] += shift
    return Detections3D(centers, boxes.sizes_lwh.copy(), boxes.yaws.copy(), boxes.class_ids.copy(),
                        boxes.scores.copy(), boxes.frame_id, int(stamp_ns), boxes.velocities.copy(),
                        boxes.ids.copy())
