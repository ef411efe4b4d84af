"""A small table set in the nuScenes schema as Lyft Level 5 writes it: its channel names (3 LiDARs, 7 cameras of two
image sizes, CAM_FRONT_ZOOMED included), its category names (`car`, `other_vehicle`, ...), float microsecond
timestamps and 64-hex tokens. Small point clouds and images; cameras fire long before the LiDAR (down to -103 ms),
unlike nuScenes.

Timing: every sensor at 10 Hz; sweep k of LIDAR_TOP at T0 + k * 0.1 s (+ a fractional microsecond, as in Lyft);
the other LiDARs a few ms later; camera c's image k at LIDAR_TOP sweep k + CAMERA_OFFSETS_S[c]. Every second sweep
is a keyframe (5 Hz samples). The ego drives along x at 5 m/s. Four objects in front of the car, one of each of
ANNOTATED_CATEGORIES, annotated at every sample.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from perception3d.core.geometry import make_transform, matrix_to_quat_wxyz
from perception3d.data.writer import DatarootWriter
from perception3d.msgs.image import encode_jpeg

VERSION = "v1.0-lyft-test"
SCENE = "host-a004-lidar0-1232905117299287546-1232905142299287546"
T0_US = 1_557_858_039_302_414.25  # Lyft's timestamps are floats (float64 resolves 0.25 us at this size)
LIDARS = {"LIDAR_TOP": (0.0, (1.2, 0.0, 1.8)), "LIDAR_FRONT_LEFT": (0.003, (3.6, 0.8, 0.5)),
          "LIDAR_FRONT_RIGHT": (0.006, (3.6, -0.8, 0.5))}  # channel: (stamp offset [s], mounting xyz [m])
CAMERA_OFFSETS_S = {"CAM_FRONT": -0.020, "CAM_FRONT_ZOOMED": -0.103, "CAM_FRONT_LEFT": -0.045,
                    "CAM_FRONT_RIGHT": -0.030, "CAM_BACK": -0.060, "CAM_BACK_LEFT": -0.080,
                    "CAM_BACK_RIGHT": -0.070}
CAMERA_YAW_DEG = {"CAM_FRONT": 0, "CAM_FRONT_ZOOMED": 0, "CAM_FRONT_LEFT": 55, "CAM_FRONT_RIGHT": -55,
                  "CAM_BACK": 180, "CAM_BACK_LEFT": 110, "CAM_BACK_RIGHT": -110}
# Lyft images are 1224x1024 (1920x1080 for CAM_FRONT_ZOOMED); here 1/16 of that, intrinsics scaled alike.
IMAGE_SIZE = {cam: (120, 68) if cam == "CAM_FRONT_ZOOMED" else (77, 64) for cam in CAMERA_OFFSETS_S}
LYFT_CATEGORIES = ("car", "pedestrian", "animal", "other_vehicle", "bus", "motorcycle", "truck", "emergency_vehicle",
                   "bicycle")
# (category, centre in the ego frame at t = 0 [m], size w, l, h [m])
ANNOTATED_CATEGORIES = (("car", (15.0, 2.0, 0.8), (1.9, 4.6, 1.6)), ("pedestrian", (12.0, -3.0, 0.9), (0.7, 0.7, 1.8)),
                        ("truck", (25.0, -1.0, 1.5), (2.5, 7.0, 3.0)),
                        ("other_vehicle", (20.0, 5.0, 1.2), (2.2, 6.0, 2.4)))
SWEEPS = 12
KEYFRAME_EVERY = 2
SPEED_MPS = 5.0
# optical (x right, y down, z forward) -> ego (x forward, y left, z up)
_R_EGO_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def token(*parts: object) -> str:
    """A 64-hex token, as Lyft's."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _rz(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _pose(T: np.ndarray) -> dict:
    return {"translation": T[:3, 3].tolist(), "rotation": matrix_to_quat_wxyz(T[:3, :3]).tolist()}


def _ego(t_s: float) -> np.ndarray:
    return make_transform(np.eye(3), [100.0 + SPEED_MPS * t_s, 50.0, 0.0])


def write_lyft_dataroot(root: Path) -> Path:
    """Write the table set and its files under root; returns root."""
    w = DatarootWriter(root, VERSION)
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    w.write_bytes("maps/map_raster_palo_alto.png", png.getvalue())
    categories = {name: w.add("category", {"token": token("category", name), "name": name, "description": name})
                  for name in LYFT_CATEGORIES}
    w.add("attribute", {"token": token("attribute", "moving"), "name": "object_action_driving_straight_forward",
                        "description": ""})
    for level in ("1", "2", "3", "4"):
        w.add("visibility", {"token": level, "level": f"v{level}", "description": ""})
    log = w.add("log", {"token": token("log"), "logfile": "host-a004", "vehicle": "a004",
                        "date_captured": "2019-05-14", "location": "Palo Alto"})
    w.add("map", {"token": token("map"), "log_tokens": [log["token"]], "category": "semantic_prior",
                  "filename": "maps/map_raster_palo_alto.png"})
    scene_token = token("scene")
    n_samples = SWEEPS // KEYFRAME_EVERY
    samples = [token("sample", s) for s in range(n_samples)]

    def stamp_us(t_s: float) -> float:
        return T0_US + round(t_s * 1e6)

    for s, tok in enumerate(samples):
        w.add("sample", {"token": tok, "timestamp": stamp_us(s * KEYFRAME_EVERY * 0.1), "scene_token": scene_token,
                         "prev": samples[s - 1] if s else "", "next": samples[s + 1] if s + 1 < n_samples else ""})
    w.add("scene", {"token": scene_token, "name": SCENE, "description": "lyft-style test scene",
                    "log_token": log["token"], "nbr_samples": n_samples, "first_sample_token": samples[0],
                    "last_sample_token": samples[-1]})

    def chain(channel: str, modality: str, T_ego_sensor: np.ndarray, K: np.ndarray | None, size: tuple[int, int],
              offset_s: float, write_file) -> None:
        sensor = w.add("sensor", {"token": token("sensor", channel), "channel": channel, "modality": modality})
        calib = w.add("calibrated_sensor", {"token": token("calib", channel), "sensor_token": sensor["token"],
                                            **_pose(T_ego_sensor),
                                            "camera_intrinsic": K.tolist() if K is not None else []})
        tokens = [token("sd", channel, k) for k in range(SWEEPS)]
        for k, tok in enumerate(tokens):
            t = k * 0.1 + offset_s
            filename = write_file(k, t)
            w.add("ego_pose", {"token": tok, "timestamp": stamp_us(t), **_pose(_ego(t))})
            w.add("sample_data", {
                "token": tok, "sample_token": samples[min(k // KEYFRAME_EVERY, n_samples - 1)], "ego_pose_token": tok,
                "calibrated_sensor_token": calib["token"], "filename": filename,
                "fileformat": "jpeg" if modality == "camera" else "bin", "width": size[0], "height": size[1],
                "timestamp": stamp_us(t), "is_key_frame": k % KEYFRAME_EVERY == 0,
                "prev": tokens[k - 1] if k else "", "next": tokens[k + 1] if k + 1 < SWEEPS else ""})

    for channel, (offset_s, xyz) in LIDARS.items():
        def lidar_file(k, t, channel=channel):
            rng = np.random.default_rng([k, len(channel)])
            points = np.zeros((64, 5), np.float32)
            points[:, 0], points[:, 1] = rng.uniform(-30, 30, 64), rng.uniform(-30, 30, 64)
            points[:, 2], points[:, 3], points[:, 4] = rng.uniform(-1.5, 1.0, 64), rng.uniform(0, 100, 64), k % 32
            name = f"lidar/host-a004_{channel}_{k}.bin"
            w.write_bytes(name, points.tobytes())
            return name

        chain(channel, "lidar", make_transform(np.eye(3), xyz), None, (0, 0), offset_s, lidar_file)
    for cam, offset_s in CAMERA_OFFSETS_S.items():
        width, height = IMAGE_SIZE[cam]
        focal = 0.8 * width * (3.0 if cam == "CAM_FRONT_ZOOMED" else 1.0)
        K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
        T = make_transform(_rz(np.radians(CAMERA_YAW_DEG[cam])) @ _R_EGO_OPTICAL, [1.5, 0.0, 1.6])

        def image_file(k, t, cam=cam, width=width, height=height):
            name = f"images/host-a004_{cam}_{k}.jpeg"
            w.write_bytes(name, encode_jpeg(np.full((height, width, 3), 20 * k % 255, np.uint8)))
            return name

        chain(cam, "camera", T, K, (width, height), offset_s, image_file)
    for i, (name, center, size) in enumerate(ANNOTATED_CATEGORIES):
        inst = token("instance", i)
        anns = [token("ann", i, s) for s in range(n_samples)]
        w.add("instance", {"token": inst, "category_token": categories[name]["token"], "nbr_annotations": n_samples,
                           "first_annotation_token": anns[0], "last_annotation_token": anns[-1]})
        for s, ann in enumerate(anns):
            T_global = _ego(0.0) @ make_transform(_rz(0.1 * i), center)  # objects stand still in the world
            w.add("sample_annotation", {
                "token": ann, "sample_token": samples[s], "instance_token": inst, "attribute_tokens": [],
                "visibility_token": "4", **_pose(T_global), "size": list(size), "num_lidar_pts": 10,
                "num_radar_pts": 0, "prev": anns[s - 1] if s else "", "next": anns[s + 1] if s + 1 < n_samples else ""})
    w.finish({})
    (root / VERSION / "splits.json").unlink()  # Lyft ships none
    return root
