"""Small hand-written dataroots for the dataset-build tests: nuScenes-schema scenes of one keyframe and no sweeps
(like the first sample of a v1.0-mini scene), and a Lyft Level 5 style one (its channels, category names, float
timestamps, no lidarseg, no num_lidar_pts). Geometry is chosen so that expected values can be worked by hand."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from perception3d.core.geometry import matrix_to_quat_wxyz
from perception3d.data.schema import attribute_records, category_records, make_token, visibility_records

NUSCENES_VERSION = "v1.0-mini"
LYFT_VERSION = "v1.01-train"
T0_US = 1_532_402_927_647_951


def yaw_wxyz(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


# Optical camera looking along ego +x (camera x = ego -y, y = ego -z, z = ego +x), and along ego -x.
CAM_FRONT_R = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
CAM_BACK_R = np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]])
K_SMALL = [[50.0, 0, 32.0], [0, 50.0, 18.0], [0, 0, 1]]


def _jpeg(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class Tables:
    """Table records and files of a hand-written dataroot."""

    def __init__(self, root: Path, version: str) -> None:
        self.root, self.version = root, version
        self.tables = {name: [] for name in ("category", "attribute", "visibility", "instance", "sensor",
                                             "calibrated_sensor", "ego_pose", "log", "scene", "sample", "sample_data",
                                             "sample_annotation", "map")}
        self.extra: dict[str, list] = {}

    def add(self, table: str, **record) -> dict:
        self.tables.setdefault(table, []).append(record)
        return record

    def file(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def chain(self, table: str, records: list[dict]) -> None:
        for i, rec in enumerate(records):
            rec["prev"] = records[i - 1]["token"] if i else ""
            rec["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""

    def finish(self, splits: dict | None = None) -> Path:
        folder = self.root / self.version
        folder.mkdir(parents=True, exist_ok=True)
        for name, records in self.tables.items():
            (folder / f"{name}.json").write_text(json.dumps(records))
        if splits:
            (folder / "splits.json").write_text(json.dumps(splits))
        png = io.BytesIO()
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(png, format="PNG")
        for rec in self.tables["map"]:
            self.file(rec["filename"], png.getvalue())
        return self.root


# ---------------------------------------------------------------------------------------------------------------
# nuScenes schema, one keyframe per scene, no sweeps
# Ego at global (100, 200, 0) heading +y (yaw 90 deg); LIDAR_TOP at ego (0.9, 0, 1.8) yawed -90 deg (x right,
# y forward, as nuScenes). Annotations (global): car A (100, 210, 1) yaw 90 deg -> lidar (0, 9.1, -0.8) yaw 90 deg;
# car B (95, 200, 1) yaw 0 -> lidar (-5, -0.9, -0.8) yaw 0; pedestrian (103, 205, 0.9) -> lidar (3, 4.1, -0.9);
# an animal (no detection class). Scene 1 has 100 points, scene 2 80.
NUSCENES_ANNOTATIONS = (("vehicle.car", (100.0, 210.0, 1.0), np.pi / 2, (1.9, 4.5, 1.6), "vehicle.moving"),
                        ("vehicle.car", (95.0, 200.0, 1.0), 0.0, (1.8, 4.2, 1.5), "vehicle.parked"),
                        ("human.pedestrian.adult", (103.0, 205.0, 0.9), 0.3, (0.7, 0.7, 1.8), "pedestrian.standing"),
                        ("animal", (98.0, 190.0, 0.4), 0.0, (0.4, 0.8, 0.6), ""))
NUSCENES_EXPECTED_LIDAR = {0: ((0.0, 9.1, -0.8), np.pi / 2), 1: ((-5.0, -0.9, -0.8), 0.0),
                           2: ((3.0, 4.1, -0.9), 0.3 + 0.0)}  # index in NUSCENES_ANNOTATIONS -> centre, yaw
NUSCENES_POINTS = (100, 80)


def write_nuscenes_keyframes(root: Path) -> Path:
    """Two scenes of one sample each: LIDAR_TOP, CAM_FRONT, CAM_BACK keyframes, lidarseg, no sweeps."""
    t = Tables(root, NUSCENES_VERSION)
    t.tables["category"] = category_records(0)
    t.tables["attribute"] = attribute_records(0)
    t.tables["visibility"] = visibility_records()
    categories = {r["name"]: r["token"] for r in t.tables["category"]}
    attributes = {r["name"]: r["token"] for r in t.tables["attribute"]}
    calib = {"LIDAR_TOP": ((0.9, 0.0, 1.8), yaw_wxyz(-np.pi / 2), []),
             "CAM_FRONT": ((1.5, 0.0, 1.5), matrix_to_quat_wxyz(CAM_FRONT_R).tolist(), K_SMALL),
             "CAM_BACK": ((-1.0, 0.0, 1.5), matrix_to_quat_wxyz(CAM_BACK_R).tolist(), K_SMALL)}
    for ch in calib:
        modality = "lidar" if ch.startswith("LIDAR") else "camera"
        t.add("sensor", token=make_token("sensor", ch), channel=ch, modality=modality)
    map_rec = t.add("map", token=make_token("map"), log_tokens=[], category="semantic_prior", filename="maps/m.png")
    for s, n_points in enumerate(NUSCENES_POINTS):
        log = t.add("log", token=make_token("log", s), logfile=f"n015-{s}", vehicle="n015", date_captured="2018-07-24",
                    location="singapore-onenorth")
        map_rec["log_tokens"].append(log["token"])
        stamp = T0_US + s * 10**9
        sample = t.add("sample", token=make_token("sample", s), timestamp=stamp, scene_token=make_token("scene", s),
                       prev="", next="")
        t.add("scene", token=make_token("scene", s), log_token=log["token"], nbr_samples=1, name=f"scene-{61 + s:04d}",
              first_sample_token=sample["token"], last_sample_token=sample["token"], description="one keyframe")
        for ch, (translation, rotation, K) in calib.items():
            cs = t.add("calibrated_sensor", token=make_token("calib", s, ch), sensor_token=make_token("sensor", ch),
                       translation=list(translation), rotation=list(rotation), camera_intrinsic=K)
            sd_stamp = stamp if ch == "LIDAR_TOP" else stamp - 20_000
            token = make_token("sd", s, ch)
            t.add("ego_pose", token=token, timestamp=sd_stamp, translation=[100.0, 200.0 + 50 * s, 0.0],
                  rotation=yaw_wxyz(np.pi / 2))
            if ch == "LIDAR_TOP":
                filename = f"samples/{ch}/n015-{s}__{ch}__{sd_stamp}.pcd.bin"
                points = np.random.default_rng(s).uniform(-20, 20, (n_points, 5)).astype(np.float32)
                t.file(filename, points.tobytes())
                seg = f"lidarseg/{NUSCENES_VERSION}/{token}_lidarseg.bin"
                t.file(seg, np.full(n_points, 17, np.uint8).tobytes())  # vehicle.car
                t.add("lidarseg", token=token, sample_data_token=token, filename=seg)
                size = (0, 0)
            else:
                filename = f"samples/{ch}/n015-{s}__{ch}__{sd_stamp}.jpg"
                t.file(filename, _jpeg(64, 36, s))
                size = (64, 36)
            t.add("sample_data", token=token, sample_token=sample["token"], ego_pose_token=token,
                  calibrated_sensor_token=cs["token"], timestamp=sd_stamp, fileformat=filename.rsplit(".", 1)[-1],
                  is_key_frame=True, height=size[1], width=size[0], filename=filename, prev="", next="")
        for a, (category, centre, yaw, wlh, attribute) in enumerate(NUSCENES_ANNOTATIONS):
            shift = np.array([0.0, 50.0 * s, 0.0])
            inst = make_token("instance", s, a)
            ann = make_token("ann", s, a)
            t.add("instance", token=inst, category_token=categories[category], nbr_annotations=1,
                  first_annotation_token=ann, last_annotation_token=ann)
            t.add("sample_annotation", token=ann, sample_token=sample["token"], instance_token=inst,
                  visibility_token="4", attribute_tokens=[attributes[attribute]] if attribute else [],
                  translation=(np.array(centre) + shift).tolist(), size=list(wlh), rotation=yaw_wxyz(yaw),
                  prev="", next="", num_lidar_pts=5 + a, num_radar_pts=0)
    return t.finish({"mini_like": ["scene-0061", "scene-0062"]})


# ---------------------------------------------------------------------------------------------------------------
# Lyft Level 5 style: one scene, two samples 0.2 s apart with one LIDAR_TOP sweep between them; LIDAR_FRONT_LEFT /
# _RIGHT keyframes only; CAM_FRONT (64x48, at 10 Hz) and CAM_FRONT_ZOOMED (80x34, keyframes only). Float
# timestamps in sample, sample_data and ego_pose. Ego drives +x at 10 m/s from the origin. Annotations: a car
# moving from (10, 0, 1) to (12, 0, 1) turning from yaw 0 to 0.2, a parked other_vehicle, a pedestrian.
LYFT_CATEGORIES = ("car", "pedestrian", "other_vehicle", "bicycle")
LYFT_POINTS = 50
LYFT_ANNOTATIONS = (("car", ((10.0, 0.0, 1.0), (12.0, 0.0, 1.0)), (0.0, 0.2), "object_action_driving_straight_forward"),
                    ("other_vehicle", ((-5.0, 6.0, 1.5), (-5.0, 6.0, 1.5)), (1.0, 1.0), "object_action_parked"),
                    ("pedestrian", ((4.0, -6.0, 0.9), (4.2, -6.0, 0.9)), (0.0, 0.0), "object_action_walking"))


def write_lyft_style(root: Path) -> Path:
    t = Tables(root, LYFT_VERSION)
    for name in LYFT_CATEGORIES:
        t.add("category", token=make_token("lyft-cat", name), name=name, description=name)
    for name in sorted({a[3] for a in LYFT_ANNOTATIONS}):
        t.add("attribute", token=make_token("lyft-attr", name), name=name, description=name)
    channels = {"LIDAR_TOP": "lidar", "LIDAR_FRONT_LEFT": "lidar", "LIDAR_FRONT_RIGHT": "lidar",
                "CAM_FRONT": "camera", "CAM_FRONT_ZOOMED": "camera"}
    sizes = {"CAM_FRONT": (64, 48), "CAM_FRONT_ZOOMED": (80, 34)}
    for ch, modality in channels.items():
        t.add("sensor", token=make_token("lyft-sensor", ch), channel=ch, modality=modality)
    log = t.add("log", token=make_token("lyft-log"), logfile="", vehicle="a004", date_captured="2019-05-14",
                location="Palo Alto")
    t.add("map", token=make_token("lyft-map"), log_tokens=[log["token"]], category="semantic_prior",
          filename="maps/map_raster_palo_alto.png")
    t0 = 1.5578580393024148e15  # [us], a float as in Lyft's tables
    samples = [t.add("sample", token=make_token("lyft-sample", k), timestamp=t0 + k * 2e5,
                     scene_token=make_token("lyft-scene")) for k in range(2)]
    t.chain("sample", samples)
    t.add("scene", token=make_token("lyft-scene"), log_token=log["token"], nbr_samples=2, name="host-a004-scene-1",
          first_sample_token=samples[0]["token"], last_sample_token=samples[1]["token"], description="")
    schedule = {"LIDAR_TOP": [0.0, 0.1, 0.2], "LIDAR_FRONT_LEFT": [0.0, 0.2], "LIDAR_FRONT_RIGHT": [0.0, 0.2],
                "CAM_FRONT": [-0.01, 0.09, 0.19], "CAM_FRONT_ZOOMED": [-0.01, 0.19]}
    for ch, times in schedule.items():
        w, h = sizes.get(ch, (0, 0))
        cs = t.add("calibrated_sensor", token=make_token("lyft-calib", ch), sensor_token=make_token("lyft-sensor", ch),
                   translation=[1.0, 0.0, 1.8], rotation=(matrix_to_quat_wxyz(CAM_FRONT_R).tolist() if ch in sizes
                                                          else [1.0, 0.0, 0.0, 0.0]),
                   camera_intrinsic=K_SMALL if ch in sizes else [])
        records = []
        for j, dt in enumerate(times):
            stamp = t0 + dt * 1e6
            key = dt in (0.0, 0.2, -0.01, 0.19)
            token = make_token("lyft-sd", ch, j)
            t.add("ego_pose", token=token, timestamp=stamp, translation=[10.0 * dt, 0.0, 0.0],
                  rotation=[1.0, 0.0, 0.0, 0.0])
            if ch in sizes:
                filename = f"images/host-a004_{ch.lower()}_{int(stamp)}.jpeg"
                t.file(filename, _jpeg(w, h, j))
            else:
                filename = f"lidar/host-a004_{ch.lower()}_{int(stamp)}.bin"
                points = np.random.default_rng(j).uniform(-20, 20, (LYFT_POINTS, 5)).astype(np.float32)
                t.file(filename, points.tobytes())
            records.append(t.add("sample_data", token=token, sample_token=samples[0 if dt < 0.15 else 1]["token"],
                                 ego_pose_token=token, calibrated_sensor_token=cs["token"], timestamp=stamp,
                                 fileformat=filename.rsplit(".", 1)[-1], is_key_frame=key, height=h, width=w,
                                 filename=filename))
        t.chain("sample_data", records)
    for a, (category, centres, yaws, attribute) in enumerate(LYFT_ANNOTATIONS):
        inst = make_token("lyft-instance", a)
        anns = [t.add("sample_annotation", token=make_token("lyft-ann", a, k), sample_token=samples[k]["token"],
                      instance_token=inst, attribute_tokens=[make_token("lyft-attr", attribute)],
                      translation=list(centres[k]), size=[1.9, 4.6, 1.7], rotation=yaw_wxyz(yaws[k]))
                for k in range(2)]
        t.chain("sample_annotation", anns)
        t.add("instance", token=inst, category_token=make_token("lyft-cat", category), nbr_annotations=2,
              first_annotation_token=anns[0]["token"], last_annotation_token=anns[1]["token"])
    return t.finish()
