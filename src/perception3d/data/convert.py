"""nuScenes dataroot -> one rosbag2 (MCAP, metadata v8) per scene, ROS-free through `msgs.bag.BagWriter`.

Topics (frames are upper-case channel names; header stamp = sample_data timestamp [us] * 1000 = bag log time):
  /tf_static                 tf2_msgs/TFMessage            base_link -> each sensor (calibrated_sensor), latched
  /tf                        tf2_msgs/TFMessage            map -> base_link at every sample_data ego pose
  /LIDAR_TOP/points          sensor_msgs/PointCloud2       x, y, z, intensity, ring float32 in LIDAR_TOP
  /CAM_*/image/compressed    sensor_msgs/CompressedImage   the JPEG bytes passed through
  /CAM_*/camera_info         sensor_msgs/CameraInfo        K, P = [K|0], R = I, empty D
  /gt/detections             vision_msgs/Detection3DArray  keyframe boxes in map; class_id = detection class,
                                                           id = instance token, score 1
  /gt/keyframes              std_msgs/String               JSON {sample_token, lidar_sd_token, scene} at the
                                                           keyframe LIDAR_TOP stamp
  /CAM_*/detections          vision_msgs/Detection2DArray  SIMULATED 2D detections (only with simulate_2d)
Bag custom_data: perception3d.keyframes (JSON list of {stamp_ns, sample_token, lidar_sd_token, scene}),
perception3d.source, and perception3d.simulated_2d (the noise model, marked simulated) when present.
An interrupted conversion (Ctrl-C, SIGTERM, a corrupt file) leaves the finished scene bags intact; the bag being
written is closed cleanly (readable) and renamed `<scene>.partial`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..core.geometry import invert_transform
from ..errors import DatasetError
from ..msgs.bag import BagWriter, sigterm_as_interrupt
from ..msgs.camera_info import camera_model_to_camera_info
from ..msgs.detections import detections2d_to_msg, detections3d_to_msg
from ..msgs.factory import default_factory
from ..msgs.image import compressed_image_msg
from ..msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2
from ..msgs.qos import LATCHED, OUTPUT, SENSOR, TF
from ..msgs.tf import tf_message, transform_stamped
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
)
from .simulated_2d import NoiseModel2D, simulate_detections

MAP_FRAME, EGO_FRAME = "map", "base_link"
LIDAR_CHANNEL = "LIDAR_TOP"
KEYFRAME_TOPIC, GT_TOPIC = "/gt/keyframes", "/gt/detections"


def convert(dataroot: str | Path, version: str, out: str | Path, scenes: list[str] | None = None,
            simulate_2d: NoiseModel2D | None = None, seed: int = 0, progress: bool = True) -> list[Path]:
    """Convert the named scenes (all when None) into `<out>/<scene name>/` bags; returns their paths.

    Raises:
        DatasetError: bad dataroot, version or scene name, missing or corrupt files.
        BagError: an output bag exists already.
    """
    nusc = open_nuscenes(dataroot, version)
    records = [scene_by_name(nusc, name) for name in scenes] if scenes else list(nusc.scene)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sigterm_as_interrupt():
        for scene in records:
            written.append(convert_scene(nusc, scene, out, simulate_2d, seed, progress))
    return written


def convert_scene(nusc: Any, scene: dict, out: Path, simulate_2d: NoiseModel2D | None = None, seed: int = 0,
                  progress: bool = True) -> Path:
    """Write one scene's bag to `<out>/<scene name>`; if writing stops early it is renamed `<scene name>.partial`."""
    final = out / scene["name"]
    if final.exists():
        raise DatasetError(f"{final}: exists already; remove it or choose another --out")
    partial = out / f"{scene['name']}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    keyframes = _keyframes(nusc, scene)
    index = [{"stamp_ns": k["stamp_ns"], "sample_token": k["sample_token"], "lidar_sd_token": k["lidar_sd_token"],
              "scene": scene["name"]} for k in keyframes]
    custom = {"perception3d.keyframes": json.dumps(index),
              "perception3d.source": json.dumps({"dataroot": str(nusc.dataroot), "version": nusc.version,
                                                 "scene": scene["name"]})}
    if simulate_2d is not None:
        custom["perception3d.simulated_2d"] = json.dumps(simulate_2d.describe())
    try:
        with BagWriter(final, custom_data=custom) as bag:
            _write_scene(bag, nusc, scene, keyframes, simulate_2d, seed, progress)
    except BaseException:  # Ctrl-C, SIGTERM or bad input: the writer has closed the bag; mark it partial
        if final.exists():
            final.rename(partial)
        raise
    return final


def _write_scene(bag: BagWriter, nusc: Any, scene: dict, keyframes: list[dict],
                 simulate_2d: NoiseModel2D | None, seed: int, progress: bool) -> None:
    """All messages of one scene in time order (at equal stamps the /tf message comes first)."""
    factory = default_factory()
    sample_datas = scene_sample_data(nusc, scene)
    _declare_topics(bag, sample_datas, simulate_2d is not None)
    gt_by_lidar = {k["lidar_sd_token"]: k for k in keyframes}
    gt_track = [(k["stamp_ns"] // 1000, k["boxes"]) for k in keyframes]
    rng = np.random.default_rng([seed, int(scene["token"][:8], 16)])  # tokens are hex
    first_ns = sample_datas[0]["timestamp"] * 1000
    statics = {}
    for sd in sample_datas:
        statics.setdefault(sd["channel"], sensor_extrinsics(nusc, sd))
    bag.write("/tf_static", first_ns, tf_message(
        [transform_stamped(T, EGO_FRAME, ch, first_ns, factory) for ch, T in statics.items()], factory), LATCHED)
    cameras: dict[str, Any] = {}
    last_tf_stamp = None
    for sd in tqdm(sample_datas, desc=scene["name"], unit="msg", disable=not progress, leave=False):
        stamp_ns = sd["timestamp"] * 1000
        channel = sd["channel"]
        T_global_ego = ego_pose(nusc, sd)
        if stamp_ns != last_tf_stamp:
            bag.write("/tf", stamp_ns, tf_message(
                [transform_stamped(T_global_ego, MAP_FRAME, EGO_FRAME, stamp_ns, factory)], factory), TF)
            last_tf_stamp = stamp_ns
        if channel == LIDAR_CHANNEL:
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
                gt, _ = interpolate_annotations(gt_track, sd["timestamp"])
                T_cam_global = invert_transform(T_global_ego @ sensor_extrinsics(nusc, sd))
                dets = simulate_detections(gt, T_cam_global, camera, simulate_2d, rng, stamp_ns)
                bag.write(f"/{channel}/detections", stamp_ns, detections2d_to_msg(dets, factory), OUTPUT)


def _keyframes(nusc: Any, scene: dict) -> list[dict]:
    """Per sample of the scene: its token, LIDAR_TOP keyframe token and stamp [ns], and GT boxes in map."""
    out = []
    token = scene["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        if LIDAR_CHANNEL not in sample["data"]:
            raise DatasetError(f"{Path(nusc.dataroot) / nusc.version}/sample_data.json: sample {token} has no "
                               f"{LIDAR_CHANNEL} keyframe")
        lidar = nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
        boxes, _ = sample_annotations(nusc, token)
        boxes.stamp_ns = lidar["timestamp"] * 1000
        out.append({"sample_token": token, "lidar_sd_token": lidar["token"], "stamp_ns": lidar["timestamp"] * 1000,
                    "boxes": boxes})
        token = sample["next"]
    return out


def _declare_topics(bag: BagWriter, sample_datas: list[dict], simulated: bool) -> None:
    bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", LATCHED)
    bag.add_topic("/tf", "tf2_msgs/msg/TFMessage", TF)
    channels = sorted({sd["channel"] for sd in sample_datas})
    for ch in channels:
        modality = next(sd["sensor_modality"] for sd in sample_datas if sd["channel"] == ch)
        if ch == LIDAR_CHANNEL:
            bag.add_topic(f"/{ch}/points", "sensor_msgs/msg/PointCloud2", SENSOR)
        elif modality == "camera":
            bag.add_topic(f"/{ch}/image/compressed", "sensor_msgs/msg/CompressedImage", SENSOR)
            bag.add_topic(f"/{ch}/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR)
            if simulated:
                bag.add_topic(f"/{ch}/detections", "vision_msgs/msg/Detection2DArray", OUTPUT)
    bag.add_topic(GT_TOPIC, "vision_msgs/msg/Detection3DArray", OUTPUT)
    bag.add_topic(KEYFRAME_TOPIC, "std_msgs/msg/String", OUTPUT)
