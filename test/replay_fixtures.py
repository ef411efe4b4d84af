"""Test bags with nuScenes timing and a test graph of simple nodes for the bag runtime tests.

The nodes here are test fixtures, not perception: `CentroidNode` reports, per LiDAR sweep, the centroid of the
sweep in base_link (through TF at the sweep stamp) once for every camera present in the synced set, so a test can
read back which cameras were matched and whether transforms were applied.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from perception3d.core.camera import CameraModel
from perception3d.core.detections import Detections2D, Detections3D
from perception3d.core.geometry import make_transform, transform_points
from perception3d.core.sensor_timing import (
    CAMERA_NAMES,
    CAMERA_RATE_HZ,
    LIDAR_RATE_HZ,
    NUSCENES_CAMERA_OFFSETS_S,
    firing_stamps_ns,
)
from perception3d.msgs.bag import BagWriter
from perception3d.msgs.camera_info import camera_model_to_camera_info
from perception3d.msgs.detections import detections2d_to_msg, detections3d_to_msg
from perception3d.msgs.image import array_to_image, compressed_image_msg, encode_jpeg
from perception3d.msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2, xyz
from perception3d.msgs.qos import LATCHED, SENSOR, TF
from perception3d.msgs.tf import tf_message, transform_stamped
from perception3d.nodes.base import NodeDefinition, OutputSpec
from perception3d.nodes.params import Param
from perception3d.runtime.graph import LIDAR_TOPIC, Graph, GraphNode, GraphOutput

T0 = 1_533_000_000_000_000_000
IMAGE_SIZE = (16, 12)  # width, height of the test JPEGs
OBJECTS_TOPIC = "/test/objects"
# base_link <- LIDAR_TOP: the nuScenes mounting (x right, y forward) 0.94 m ahead, 1.84 m up
T_BASE_LIDAR = make_transform(np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [0.94, 0.0, 1.84])


def sweep_points(k: int, n: int = 32) -> np.ndarray:
    """n LIDAR_TOP points of sweep k (deterministic)."""
    rng = np.random.default_rng(k)
    pts = np.zeros(n, NUSCENES_LIDAR_DTYPE)
    pts["x"], pts["y"], pts["z"] = rng.uniform(-20, 20, n), rng.uniform(-20, 20, n), rng.uniform(-2, 2, n)
    return pts


def ego_pose(stamp_ns: int) -> np.ndarray:
    """map <- base_link: driving along x at 10 m/s."""
    return make_transform(np.eye(3), [10.0 * (stamp_ns - T0) / 1e9, 0.0, 0.0])


def write_nuscenes_timed_bag(path: Path, duration_s: float = 1.0, cameras=CAMERA_NAMES, camera_stop_s=None,
                             with_tf_static: bool = True, bad_sweeps=(), with_images: bool = False,
                             bad_image: tuple[str, int] | None = None, tf_every: int = 1,
                             skip_topics: tuple[str, ...] = (), points_per_sweep: int = 32,
                             raw_image_cameras: tuple[str, ...] = ()) -> dict:
    """A bag with LiDAR 20 Hz and cameras 12 Hz at the rig's offsets; returns {'lidar': stamps, camera: stamps}.

    camera_stop_s: {camera: seconds after T0 when it stops publishing}. bad_sweeps: indices of sweeps written with
    an inconsistent point_step (a malformed PointCloud2). with_images: also write IMAGE_SIZE JPEGs on
    /<camera>/image/compressed; bad_image = (camera, frame index) whose JPEG bytes are garbage. tf_every: /tf
    (map -> base_link) at every n-th sweep only (nuScenes keyframes: every 10th), always including the last one.
    skip_topics: topics left out of the bag. points_per_sweep: 32 by default; thousands make a bag of several MCAP
    chunks (1 MiB each). raw_image_cameras: cameras whose images are written as sensor_msgs/Image (rgb8) on
    /<camera>/image instead (with_images).
    """
    end = T0 + int(duration_s * 1e9)
    lidar = firing_stamps_ns(LIDAR_RATE_HZ, T0, end)
    stamps = {"lidar": lidar}
    events = [(int(s), "lidar", k) for k, s in enumerate(lidar)]
    for cam in cameras:
        cam_stamps = firing_stamps_ns(CAMERA_RATE_HZ, T0, end, int(round(NUSCENES_CAMERA_OFFSETS_S[cam] * 1e9)))
        if camera_stop_s and cam in camera_stop_s:
            cam_stamps = cam_stamps[cam_stamps < T0 + int(camera_stop_s[cam] * 1e9)]
        stamps[cam] = cam_stamps
        events += [(int(s), cam, k) for k, s in enumerate(cam_stamps)]
    events.sort()
    width, height = IMAGE_SIZE if with_images else (1600, 900)  # CameraInfo describes the images written
    scale = width / 1600
    K = np.array([[1266.4 * scale, 0, 816.3 * scale], [0, 1266.4 * scale, 491.5 * scale], [0, 0, 1]])
    camera = {c: CameraModel(K, width, height, frame_id=c) for c in cameras}
    box = np.array([[10.0, 20.0, 110.0, 220.0]]) * scale
    with BagWriter(path) as bag:
        def write(topic, stamp, msg, qos):
            if topic not in skip_topics:
                bag.write(topic, stamp, msg, qos)

        if with_tf_static:
            statics = [transform_stamped(T_BASE_LIDAR, "base_link", "LIDAR_TOP", T0)]
            statics += [transform_stamped(np.eye(4), "base_link", c, T0) for c in cameras]
            write("/tf_static", T0 - 1, tf_message(statics), LATCHED)
        for stamp, source, k in events:
            if source == "lidar" and (k % tf_every == 0 or k == len(lidar) - 1):
                write("/tf", stamp, tf_message([transform_stamped(ego_pose(stamp), "map", "base_link", stamp)]), TF)
            if source == "lidar":
                cloud = array_to_pointcloud2(sweep_points(k, points_per_sweep), stamp, "LIDAR_TOP")
                if k in bad_sweeps:
                    cloud.point_step = 0
                write(LIDAR_TOPIC, stamp, cloud, SENSOR)
            else:
                write(f"/{source}/camera_info", stamp, camera_model_to_camera_info(camera[source], stamp), SENSOR)
                pixels = np.full((*IMAGE_SIZE[::-1], 3), 10 + k % 200, np.uint8)
                if with_images and source in raw_image_cameras:
                    write(f"/{source}/image", stamp, array_to_image(pixels, "rgb8", stamp, source), SENSOR)
                elif with_images:
                    jpeg = b"not a jpeg" if bad_image == (source, k) else encode_jpeg(pixels)
                    write(f"/{source}/image/compressed", stamp, compressed_image_msg(jpeg, stamp, source), SENSOR)
                dets = Detections2D(box, ["car"], [0.9], source, stamp)
                write(f"/{source}/detections", stamp, detections2d_to_msg(dets), SENSOR)
    return stamps


def expected_centroid_base(k: int) -> np.ndarray:
    """The centroid of sweep k in base_link, computed directly from the mounting transform."""
    return transform_points(T_BASE_LIDAR, xyz(sweep_points(k))).mean(axis=0)


class CentroidNode(NodeDefinition):
    """Test node: one box per matched camera at the sweep centroid in base_link; id = camera name."""

    name = "centroid"
    description = "test fixture"
    parameters = (Param("sleep_s", "float", 0.0, "seconds to sleep per frame (slow-node tests)", 0.0, 1.0),
                  Param("busy_s", "float", 0.0, "CPU seconds to spend per frame (CPU-time tests)", 0.0, 1.0),
                  Param("output_frame", "string", "base_link", "frame of the reported centroid"))
    camera_streams = ("camera_info", "detections")
    outputs = (OutputSpec("~/output/objects", "vision_msgs/msg/Detection3DArray", label_classes=("car",)),)

    def process(self, frame, tf, timer):
        with timer.stage("pre"):
            T = tf.lookup(self.params["output_frame"], frame.lidar.frame_id, frame.stamp_ns)
            pts = transform_points(T, xyz(frame.lidar.points))
        with timer.stage("infer"):
            centroid = pts.mean(axis=0)
            time.sleep(self.params["sleep_s"])
            # this thread's CPU time: the process's counts other threads too (a reader, a library's pool), so a wait
            # on it could end before busy_s of wall-clock time has passed
            busy_until = time.thread_time() + self.params["busy_s"]
            while time.thread_time() < busy_until:
                pass
        with timer.stage("post"):
            names = sorted(frame.cameras)
            n = len(names)
            dets = Detections3D(np.tile(centroid, (n, 1)), np.ones((n, 3)), np.zeros(n), ["car"] * n, np.ones(n),
                                self.params["output_frame"], frame.stamp_ns, ids=names)
        return [("~/output/objects", detections3d_to_msg(dets, self.factory))]


CENTROID_GRAPH_NODE = GraphNode(
    "centroid", CentroidNode,
    inputs={"~/input/pointcloud": LIDAR_TOPIC, "~/input/{camera}/camera_info": "/{camera}/camera_info",
            "~/input/{camera}/detections": "/{camera}/detections"},
    outputs={"~/output/objects": GraphOutput(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray", label_info=True)})
TEST_GRAPH = Graph((CENTROID_GRAPH_NODE,))
MAP_OBJECTS_TOPIC = "/test/map_objects"


class MapCentroidNode(CentroidNode):
    """Test node: CentroidNode under another name, reporting in map by default."""

    name = "map_centroid"
    parameters = (*CentroidNode.parameters[:2],
                  Param("output_frame", "string", "map", "frame of the reported centroid"))


# two nodes that exchange no topic: two groups for a replay in worker processes (runtime.replay_processes)
TWO_GROUP_GRAPH = Graph((
    CENTROID_GRAPH_NODE,
    GraphNode("map_centroid", MapCentroidNode, inputs=CENTROID_GRAPH_NODE.inputs,
              outputs={"~/output/objects": GraphOutput(MAP_OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray",
                                                       label_info=True)}),
))


class ImageBoxNode(NodeDefinition):
    """Test node, camera-triggered: one 'car' box covering each image of a firing cycle, score = mean
    brightness / 255; remembers how many images each frame batched."""

    name = "imagebox"
    trigger = "camera"
    camera_streams = ("image", "camera_info")
    outputs = (OutputSpec("~/output/{camera}/detections", "vision_msgs/msg/Detection2DArray"),)

    batch_sizes: list[int] = []

    def process(self, frame, tf, timer):
        ImageBoxNode.batch_sizes.append(len(frame.cameras))
        out = []
        with timer.stage("infer"):
            for name, cam in frame.cameras.items():
                h, w = cam.image.shape[:2]
                dets = Detections2D(np.array([[0.0, 0.0, w, h]]), ["car"], [cam.image.mean() / 255.0], cam.frame_id,
                                    cam.stamp_ns)
                out.append((f"~/output/{name}/detections", detections2d_to_msg(dets, self.factory)))
        return out


CHAIN_GRAPH = Graph((
    GraphNode("imagebox", ImageBoxNode,
              inputs={"~/input/{camera}/image": "/{camera}/image/compressed",
                      "~/input/{camera}/camera_info": "/{camera}/camera_info"},
              outputs={"~/output/{camera}/detections": GraphOutput("/imagebox/{camera}/detections",
                                                                   "vision_msgs/msg/Detection2DArray")}),
    GraphNode("centroid", CentroidNode,
              inputs={**CENTROID_GRAPH_NODE.inputs, "~/input/{camera}/detections": "/imagebox/{camera}/detections"},
              outputs=CENTROID_GRAPH_NODE.outputs),
))


def start_slow_replay(tmp_path: Path, sleep_s: float, *extra_args: str,
                      with_images: bool = False) -> tuple[subprocess.Popen, Path]:
    """`perception3d replay` of a 4 s bag (with camera images: with_images) through TEST_GRAPH with the centroid
    node sleeping sleep_s per sweep, in a child process; returns once the output MCAP exists (the replay is then
    writing). Returns (process, output dir)."""
    bag, out, config = tmp_path / "long", tmp_path / "out", tmp_path / "slow.yaml"
    write_nuscenes_timed_bag(bag, duration_s=4.0, with_images=with_images)
    config.write_text(f"/**:\n  ros__parameters: {{}}\ncentroid:\n  ros__parameters:\n    sleep_s: {sleep_s}\n")
    test_dir = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(test_dir.parent / "src"), str(test_dir)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "perception3d.cli", "replay", str(bag), "--out", str(out), "--config", str(config),
         "--graph-def", "replay_fixtures:TEST_GRAPH", "--no-progress", *extra_args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background job (`cmd &`) ignores SIGINT, and children inherit that: restore Ctrl-C for the replay
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(out.glob("*.mcap")) and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc, out
