"""nuScenes-schema dataroot (nuScenes, Lyft Level 5, synthetic) -> one rosbag2 (MCAP, metadata v8) per scene,
ROS-free through `msgs.bag.BagWriter`. Any rig: every LiDAR and camera channel of the scene becomes topics.

Topics (frames are upper-case channel names; header stamp = sample_data timestamp [us] as integer ns = log time):
  /tf_static                 tf2_msgs/TFMessage            base_link -> each sensor (calibrated_sensor), latched
  /tf                        tf2_msgs/TFMessage            map -> base_link at every sample_data ego pose
  /<LIDAR>/points            sensor_msgs/PointCloud2       x, y, z, intensity, ring float32 in that LiDAR's frame,
                                                           one topic per LiDAR channel (LIDAR_TOP, LIDAR_FRONT_LEFT..)
  /<CAM>/image/compressed    sensor_msgs/CompressedImage   the JPEG bytes passed through, any camera name and size
  /<CAM>/camera_info         sensor_msgs/CameraInfo        K, P = [K|0], R = I, empty D
  /gt/detections             vision_msgs/Detection3DArray  keyframe boxes in map; class_id = detection class (through
                                                           the category map), id = instance token, score 1
  /gt/keyframes              std_msgs/String               JSON {sample_token, lidar_sd_token, scene} at the
                                                           keyframe stamp of the trigger LiDAR
  /<CAM>/detections          vision_msgs/Detection2DArray  SIMULATED 2D detections (only with simulate_2d; occlusion
                                                           from the rendered visibility where the dataroot has it)
The trigger LiDAR (whose keyframes index the samples and whose sweeps trigger the LiDAR nodes) is LIDAR_TOP when the
rig has one, else the LiDAR channel with the most sweeps in the scene.
Bag custom_data: perception3d.keyframes (JSON list of {stamp_ns, sample_token, lidar_sd_token, scene}),
perception3d.rig (core.sensor_timing.RigTiming: LiDARs, cameras and each camera's median firing offset to the
trigger LiDAR over the scene's keyframes; `replay` uses it when no parameters set cameras or offsets),
perception3d.source, and perception3d.simulated_2d (the noise model, marked simulated) when present.
An interrupted conversion (Ctrl-C, SIGTERM, a corrupt file) leaves the finished scene bags intact; the bag being
written is closed cleanly (readable) and renamed `<scene>.partial`.
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..core.geometry import invert_transform
from ..core.sensor_timing import RIG_METADATA_KEY, RigTiming, median_offsets_s
from ..errors import DatasetError
from ..msgs.bag import BagWriter, sigterm_as_interrupt
from ..msgs.camera_info import camera_model_to_camera_info
from ..msgs.detections import detections2d_to_msg, detections3d_to_msg
from ..msgs.factory import default_factory
from ..msgs.image import compressed_image_msg
from ..msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2
from ..msgs.qos import LATCHED, OUTPUT, SENSOR, TF
from ..msgs.tf import tf_message, transform_stamped
from .category_map import NUSCENES, CategoryCounts, CategoryMap, category_map_for
from .nuscenes_io import (
    camera_model,
    data_path,
    ego_pose,
    interpolate_annotations,
    open_nuscenes,
    read_lidar_points,
    sample_annotations,
    scene_by_name,
    scene_sample_data,
    sensor_extrinsics,
    timestamp_ns,
)
from .simulated_2d import NoiseModel2D, simulate_detections
from .visibility2d import RenderedVisibility

MAP_FRAME, EGO_FRAME = "map", "base_link"
TRIGGER_LIDAR = "LIDAR_TOP"  # the trigger LiDAR when the rig has it
KEYFRAME_TOPIC, GT_TOPIC = "/gt/keyframes", "/gt/detections"
_LOG = logging.getLogger("perception3d")


def convert(dataroot: str | Path, version: str, out: str | Path, scenes: list[str] | None = None,
            simulate_2d: NoiseModel2D | None = None, seed: int = 0, progress: bool = True,
            category_map: str | Path | None = None, log: Callable[[str], None] | None = None) -> list[Path]:
    """Convert the named scenes (all when None) into `<out>/<scene name>/` bags; returns their paths.

    category_map: 'nuscenes', 'lyft' or a YAML file (data.category_map); None picks the built-in map that lists
    most of the dataset's categories. log: receives the report of annotations left out (one warning) and the
    ROS parameter snippet of the measured camera offsets (default: the 'perception3d' logger).

    Raises:
        DatasetError: bad dataroot, version or scene name, truncated tables, missing or corrupt files.
        ConfigError: an unusable category map file.
        BagError: an output bag exists already.
    """
    nusc = open_nuscenes(dataroot, version)
    records = [scene_by_name(nusc, name) for name in scenes] if scenes else list(nusc.scene)
    cmap = category_map_for((c["name"] for c in nusc.category), category_map)
    counts = CategoryCounts()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, rigs = [], []
    with sigterm_as_interrupt():
        for scene in records:
            path, rig = convert_scene(nusc, scene, out, simulate_2d, seed, progress, cmap, counts)
            written.append(path)
            rigs.append(rig)
    warning = counts.warning(cmap.name)
    if warning:
        (log or _LOG.warning)(f"convert: {warning}")
    if rigs:
        (log or _LOG.info)(_combined_rig(rigs).parameter_snippet())
    return written


def convert_scene(nusc: Any, scene: dict, out: Path, simulate_2d: NoiseModel2D | None = None, seed: int = 0,
                  progress: bool = True, category_map: CategoryMap | None = None,
                  counts: CategoryCounts | None = None) -> tuple[Path, RigTiming]:
    """Write one scene's bag to `<out>/<scene name>` (renamed `<scene name>.partial` if writing stops early);
    returns its path and its measured rig. Annotations are counted into `counts` by category."""
    final = out / scene["name"]
    if final.exists():
        raise DatasetError(f"{final}: exists already; remove it or choose another --out")
    partial = out / f"{scene['name']}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    sample_datas = scene_sample_data(nusc, scene)
    trigger = _trigger_lidar(nusc, scene, sample_datas)
    keyframes = _keyframes(nusc, scene, trigger, category_map or NUSCENES, counts)
    rig = _measure_rig(nusc, sample_datas, keyframes, trigger)
    index = [{"stamp_ns": k["stamp_ns"], "sample_token": k["sample_token"], "lidar_sd_token": k["lidar_sd_token"],
              "scene": scene["name"]} for k in keyframes]
    custom = {"perception3d.keyframes": json.dumps(index), RIG_METADATA_KEY: rig.to_json(),
              "perception3d.source": json.dumps({"dataroot": str(nusc.dataroot), "version": nusc.version,
                                                 "scene": scene["name"]})}
    if simulate_2d is not None:
        custom["perception3d.simulated_2d"] = json.dumps(simulate_2d.describe())
    try:
        with BagWriter(final, custom_data=custom) as bag:
            _write_scene(bag, nusc, scene, sample_datas, keyframes, simulate_2d, seed, progress)
    except BaseException:  # Ctrl-C, SIGTERM or bad input: the writer has closed the bag; mark it partial
        if final.exists():
            final.rename(partial)
        raise
    return final, rig


def _write_scene(bag: BagWriter, nusc: Any, scene: dict, sample_datas: list[dict], keyframes: list[dict],
                 simulate_2d: NoiseModel2D | None, seed: int, progress: bool) -> None:
    """All messages of one scene in time order (at equal stamps the /tf message comes first)."""
    factory = default_factory()
    _declare_topics(bag, sample_datas, simulate_2d is not None)
    gt_by_lidar = {k["lidar_sd_token"]: k for k in keyframes}
    gt_track = [(k["stamp_ns"], k["boxes"]) for k in keyframes]
    rng = np.random.default_rng([seed, int(scene["token"][:8], 16)])  # tokens are hex
    rendered = RenderedVisibility.load(nusc.dataroot, nusc.version, scene["token"]) if simulate_2d else None
    first_ns = timestamp_ns(sample_datas[0])
    statics = {}
    for sd in sample_datas:
        statics.setdefault(sd["channel"], sensor_extrinsics(nusc, sd))
    bag.write("/tf_static", first_ns, tf_message(
        [transform_stamped(T, EGO_FRAME, ch, first_ns, factory) for ch, T in statics.items()], factory), LATCHED)
    cameras: dict[str, Any] = {}
    last_tf_stamp = None
    for sd in tqdm(sample_datas, desc=scene["name"], unit="msg", disable=not progress, leave=False):
        stamp_ns = timestamp_ns(sd)
        channel = sd["channel"]
        T_global_ego = ego_pose(nusc, sd)
        if stamp_ns != last_tf_stamp:
            bag.write("/tf", stamp_ns, tf_message(
                [transform_stamped(T_global_ego, MAP_FRAME, EGO_FRAME, stamp_ns, factory)], factory), TF)
            last_tf_stamp = stamp_ns
        if sd["sensor_modality"] == "lidar":
            points = read_lidar_points(data_path(nusc, sd))
            cloud = np.ascontiguousarray(points).view(NUSCENES_LIDAR_DTYPE).reshape(-1)
            bag.write(f"/{channel}/points", stamp_ns, array_to_pointcloud2(cloud, stamp_ns, channel, factory),
                      SENSOR)
            if sd["token"] in gt_by_lidar:
                key = gt_by_lidar[sd["token"]]
                bag.write(GT_TOPIC, stamp_ns, detections3d_to_msg(key["boxes"], factory), OUTPUT)
                text = json.dumps({"sample_token": key["sample_token"], "lidar_sd_token": sd["token"],
                                   "scene": scene["name"]})
                bag.write(KEYFRAME_TOPIC, stamp_ns, factory("std_msgs/msg/String", data=text), OUTPUT)
        elif sd["sensor_modality"] == "camera":
            camera = cameras.setdefault(channel, camera_model(nusc, sd))
            jpeg = data_path(nusc, sd).read_bytes()
            bag.write(f"/{channel}/image/compressed", stamp_ns,
                      compressed_image_msg(jpeg, stamp_ns, channel, factory=factory), SENSOR)
            bag.write(f"/{channel}/camera_info", stamp_ns, camera_model_to_camera_info(camera, stamp_ns, factory),
                      SENSOR)
            if simulate_2d is not None:
                gt, _ = interpolate_annotations(gt_track, stamp_ns)
                T_cam_global = invert_transform(T_global_ego @ sensor_extrinsics(nusc, sd))
                visible = rendered.fractions(sd["token"], gt.ids) if rendered is not None else None
                dets = simulate_detections(gt, T_cam_global, camera, simulate_2d, rng, stamp_ns, visible)
                bag.write(f"/{channel}/detections", stamp_ns, detections2d_to_msg(dets, factory), OUTPUT)


def _trigger_lidar(nusc: Any, scene: dict, sample_datas: list[dict]) -> str:
    """LIDAR_TOP when the scene has it, else the LiDAR channel with the most sweeps (then by name)."""
    counts: dict[str, int] = {}
    for sd in sample_datas:
        if sd["sensor_modality"] == "lidar":
            counts[sd["channel"]] = counts.get(sd["channel"], 0) + 1
    if not counts:
        raise DatasetError(f"{Path(nusc.dataroot) / nusc.version}/sample_data.json: scene {scene['name']} "
                           f"({scene['token']}) has no LiDAR sample_data (expected at least one LiDAR channel)")
    if TRIGGER_LIDAR in counts:
        return TRIGGER_LIDAR
    return min(counts, key=lambda ch: (-counts[ch], ch))


def _keyframes(nusc: Any, scene: dict, trigger: str, category_map: CategoryMap,
               counts: CategoryCounts | None) -> list[dict]:
    """Per sample of the scene: its token, the trigger LiDAR's keyframe token and stamp [ns], GT boxes in map."""
    out = []
    token = scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        if trigger not in sample["data"]:
            raise DatasetError(f"{Path(nusc.dataroot) / nusc.version}/sample_data.json: sample {token} has no "
                               f"{trigger} keyframe")
        lidar = nusc.get("sample_data", sample["data"][trigger])
        boxes, _ = sample_annotations(nusc, token, category_map, counts)
        boxes.stamp_ns = timestamp_ns(lidar)
        out.append({"sample_token": token, "lidar_sd_token": lidar["token"], "stamp_ns": boxes.stamp_ns,
                    "boxes": boxes, "data": sample["data"]})
        token = sample["next"]
    return out


def _measure_rig(nusc: Any, sample_datas: list[dict], keyframes: list[dict], trigger: str) -> RigTiming:
    """The scene's LiDARs and cameras, and each camera's median keyframe stamp minus the trigger LiDAR's."""
    channels = sorted({sd["channel"] for sd in sample_datas})
    modality = {sd["channel"]: sd["sensor_modality"] for sd in sample_datas}
    cameras = [ch for ch in channels if modality[ch] == "camera"]
    lidars = [trigger] + [ch for ch in channels if modality[ch] == "lidar" and ch != trigger]
    deltas: dict[str, list[int]] = {cam: [] for cam in cameras}
    for key in keyframes:
        for cam in cameras:
            if cam in key["data"]:
                deltas[cam].append(timestamp_ns(nusc.get("sample_data", key["data"][cam])) - key["stamp_ns"])
    offsets = median_offsets_s(deltas)
    return RigTiming(trigger, tuple(lidars), tuple(cameras), {c: offsets.get(c, 0.0) for c in cameras},
                     len(keyframes))


def _combined_rig(rigs: list[RigTiming]) -> RigTiming:
    """One rig for several scenes: the cameras of all, offsets weighted by each scene's keyframes."""
    cameras = tuple(sorted({c for r in rigs for c in r.cameras}))
    offsets = {}
    for cam in cameras:
        weights = [(r.camera_offsets_s[cam], r.keyframes) for r in rigs if cam in r.camera_offsets_s]
        offsets[cam] = round(sum(o * n for o, n in weights) / max(1, sum(n for _, n in weights)), 4)
    lidars = tuple(dict.fromkeys(ch for r in rigs for ch in r.lidars))
    return RigTiming(rigs[0].trigger_lidar, lidars, cameras, offsets, sum(r.keyframes for r in rigs))


def _declare_topics(bag: BagWriter, sample_datas: list[dict], simulated: bool) -> None:
    bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", LATCHED)
    bag.add_topic("/tf", "tf2_msgs/msg/TFMessage", TF)
    channels = sorted({sd["channel"] for sd in sample_datas})
    for ch in channels:
        modality = next(sd["sensor_modality"] for sd in sample_datas if sd["channel"] == ch)
        if modality == "lidar":
            bag.add_topic(f"/{ch}/points", "sensor_msgs/msg/PointCloud2", SENSOR)
        elif modality == "camera":
            bag.add_topic(f"/{ch}/image/compressed", "sensor_msgs/msg/CompressedImage", SENSOR)
            bag.add_topic(f"/{ch}/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR)
            if simulated:
                bag.add_topic(f"/{ch}/detections", "vision_msgs/msg/Detection2DArray", OUTPUT)
    bag.add_topic(GT_TOPIC, "vision_msgs/msg/Detection3DArray", OUTPUT)
    bag.add_topic(KEYFRAME_TOPIC, "std_msgs/msg/String", OUTPUT)
