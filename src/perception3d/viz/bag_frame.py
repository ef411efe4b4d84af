"""Assemble one frame's FrameData from a replay's output bag and the input bag it came from."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.detections import Detections2D
from ..core.geometry import invert_transform, transform_points
from ..core.tf_buffer import TfBuffer
from ..errors import BagError
from ..msgs.bag import BagMessage, BagReader
from ..msgs.camera_info import camera_info_to_model
from ..msgs.detections import msg_to_detections2d, msg_to_detections3d
from ..msgs.image import compressed_image_to_array, image_to_array
from ..msgs.markers import with_motion
from ..msgs.occupancy import occupancy_msg_to_volume
from ..msgs.pointcloud import pointcloud2_to_array, xyz
from ..msgs.tf import add_tf_message
from ..msgs.topics import OBJECT_MOTION_TOPIC, OBJECTS_TOPIC, OCCUPANCY_GRID_TOPIC, SEGMENTATION_TOPIC
from .figure import CameraFrame, FrameData

GT_DETECTIONS = "/gt/detections"
LIDAR = "/LIDAR_TOP/points"
OUTPUT_TOPICS = (OBJECTS_TOPIC, SEGMENTATION_TOPIC, OCCUPANCY_GRID_TOPIC)


def _cameras(topics: Sequence[str]) -> list[str]:
    return sorted({t.split("/")[1] for t in topics if t.startswith("/CAM_") and t.endswith("/camera_info")})


def _scan(bags: Sequence[Path]) -> tuple[dict[str, list[BagMessage]], dict[str, str], TfBuffer]:
    """Small topics (outputs, ground truth, calibration, 2D detections) of all bags, and their transforms."""
    wanted: dict[str, list[BagMessage]] = defaultdict(list)
    topics: dict[str, str] = {}
    tf = TfBuffer()
    for bag in bags:
        with BagReader(bag) as reader:
            topics.update(reader.topics)
            tf.cache_time_ns = max(tf.cache_time_ns, reader.end_ns - reader.start_ns + 1)
            kept = (*OUTPUT_TOPICS, OBJECT_MOTION_TOPIC, GT_DETECTIONS, "/tf", "/tf_static")
            small = [t for t in reader.topics if t in kept
                     or t.endswith("/camera_info") or ("/CAM_" in t and t.endswith("/detections"))]
            for message in reader.messages(small):
                if message.topic in ("/tf", "/tf_static"):
                    add_tf_message(tf, message.decode(), static=message.topic == "/tf_static")
                else:
                    wanted[message.topic].append(message)
    return wanted, topics, tf


def frame_stamps(small: dict[str, list[BagMessage]], keyframes_only: bool) -> list[int]:
    """Stamps of the frames the outputs cover (those with a ground-truth message when keyframes_only)."""
    topic = next((t for t in OUTPUT_TOPICS if small.get(t)), None)
    if topic is None:
        raise BagError(f"no perception output ({', '.join(OUTPUT_TOPICS)}) in the given bags")
    stamps = sorted({m.stamp_ns for m in small[topic]})
    if keyframes_only:
        gt = {m.stamp_ns for m in small.get(GT_DETECTIONS, [])}
        stamps = [s for s in stamps if s in gt]
        if not stamps:
            raise BagError(f"no output frame has a {GT_DETECTIONS} message; pass the input bag with --input")
    return stamps


def detections_of_image(messages: Sequence[BagMessage], image_stamp_ns: int) -> Detections2D | None:
    """The 2D detections whose header stamp is the image's, among Detection2DArray messages of its camera.

    Recorded and simulated detections are logged at the image stamp; the detector2d node's at its firing cycle's
    time, a few ms off for all but one camera, so the header stamp decides, among the messages logged nearest.
    """
    nearest = sorted(messages, key=lambda m: abs(m.stamp_ns - image_stamp_ns))[:3]
    return next((d for d in (msg_to_detections2d(m.decode()) for m in nearest) if d.stamp_ns == image_stamp_ns), None)


def _at(messages: list[BagMessage], stamp_ns: int):
    return next((m.decode() for m in messages if m.stamp_ns == stamp_ns), None)


def _nearest_raw(bags: Sequence[Path], topics: Sequence[str], stamp_ns: int) -> dict[str, BagMessage]:
    """Per topic, the message whose log time is nearest to stamp_ns (one pass; payloads decoded by the caller)."""
    best: dict[str, BagMessage] = {}
    for bag in bags:
        with BagReader(bag) as reader:
            present = [t for t in topics if t in reader.topics]
            for message in reader.messages(present) if present else ():
                current = best.get(message.topic)
                if current is None or abs(message.stamp_ns - stamp_ns) < abs(current.stamp_ns - stamp_ns):
                    best[message.topic] = message
    return best


def load_frame(bags: Sequence[str | Path], frame: int = 0, keyframes_only: bool = False,
               base_frame: str = "base_link", world_frame: str = "map") -> FrameData:
    """FrameData of the `frame`-th output frame (of the keyframes with ground truth when keyframes_only)."""
    bags = [Path(b) for b in bags]
    small, topics, tf = _scan(bags)
    stamps = frame_stamps(small, keyframes_only)
    if not -len(stamps) <= frame < len(stamps):
        raise BagError(f"frame {frame} out of range: the outputs cover {len(stamps)} frame(s)")
    stamp = stamps[frame]
    T_world_base = tf.lookup(world_frame, base_frame, stamp)
    data = FrameData(title=f"frame {frame} of {len(stamps)}  stamp {stamp / 1e9:.3f} s")

    objects = _at(small.get(OBJECTS_TOPIC, []), stamp)
    if objects is not None:
        data.predictions = msg_to_detections3d(objects, OBJECTS_TOPIC)
        motion = _at(small.get(OBJECT_MOTION_TOPIC, []), stamp)
        if motion is not None:
            data.predictions = with_motion(data.predictions, motion)
    gt = _at(small.get(GT_DETECTIONS, []), stamp)
    if gt is not None:
        boxes = msg_to_detections3d(gt, GT_DETECTIONS)
        data.ground_truth = boxes.transformed(tf.lookup(base_frame, boxes.frame_id, stamp), base_frame)
    grid_msg = _at(small.get(OCCUPANCY_GRID_TOPIC, []), stamp)
    if grid_msg is not None:
        volume, grid, _, _ = occupancy_msg_to_volume(grid_msg, OCCUPANCY_GRID_TOPIC)
        data.occupancy = (np.array(volume), grid)
    cloud = _at(small.get(SEGMENTATION_TOPIC, []), stamp)
    raw_topics = [] if cloud is not None else [LIDAR]
    cameras = _cameras(topics)
    raw_topics += [f"/{c}/image/compressed" for c in cameras]
    raw = _nearest_raw(bags, raw_topics, stamp)
    if cloud is None and LIDAR in raw and raw[LIDAR].stamp_ns == stamp:
        cloud = raw[LIDAR].decode()
    if cloud is not None:
        points = pointcloud2_to_array(cloud, SEGMENTATION_TOPIC)
        T_base_cloud = tf.lookup(base_frame, cloud.header.frame_id, stamp)
        data.points = transform_points(T_base_cloud, xyz(points, "f8"))
        if "label" in points.dtype.names:
            data.point_labels = np.asarray(points["label"])
    for cam in cameras:
        image_msg = raw.get(f"/{cam}/image/compressed")
        info = small.get(f"/{cam}/camera_info")
        if image_msg is None or not info:
            continue
        image_stamp = image_msg.stamp_ns
        decoded = image_msg.decode()
        pixels = compressed_image_to_array(decoded) if hasattr(decoded, "format") else image_to_array(decoded)
        model = camera_info_to_model(min(info, key=lambda m: abs(m.stamp_ns - image_stamp)).decode())
        T_cam_base = invert_transform(tf.lookup(world_frame, model.frame_id, image_stamp)) @ T_world_base
        det_msgs = small.get(f"/{cam}/detections") or small.get(f"/perception/{cam}/detections") or []
        data.cameras[cam] = CameraFrame(pixels, model, T_cam_base, detections_of_image(det_msgs, image_stamp))
    return data

