"""The synthetic dataroot: read back through nuscenes-devkit itself (independent of our writer)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion

from perception3d.core.classes import CATEGORY_TO_DETECTION, DETECTION_CLASSES, DETECTION_RANGE_M, FINE_TO_COARSE
from perception3d.data.occupancy_gt import load_occupancy, occupancy_relpath
from perception3d.errors import DatasetError
from synth_data import VERSION, scratch, tiny_dataroot, tiny_nusc


@pytest.fixture(scope="module")
def nusc():
    return tiny_nusc()


def _devkit_transform(record) -> np.ndarray:
    """4x4 from a calibrated_sensor / ego_pose record, through pyquaternion (not our geometry code)."""
    T = np.eye(4)
    T[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    T[:3, 3] = record["translation"]
    return T


def test_detection_eval_gives_ap_one_for_every_present_class(nusc, tmp_path):
    from nuscenes.eval.common.loaders import add_center_dist, get_samples_of_custom_split, load_gt_of_sample_tokens
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.eval.detection.evaluate import DetectionEval

    gt = load_gt_of_sample_tokens(nusc, get_samples_of_custom_split("synth_val", nusc), DetectionBox)
    results = {tok: [{"sample_token": tok, "translation": list(b.translation), "size": list(b.size),
                      "rotation": list(b.rotation), "velocity": list(b.velocity), "detection_name": b.detection_name,
                      "detection_score": 1.0, "attribute_name": b.attribute_name}
                     for b in gt[tok] if b.num_pts > 0] for tok in gt.sample_tokens}
    gt = add_center_dist(nusc, gt)
    present = {b.detection_name for b in gt.all if b.num_pts > 0 and b.ego_dist < DETECTION_RANGE_M[b.detection_name]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": {"use_camera": True, "use_lidar": True, "use_radar": False,
                                         "use_map": False, "use_external": False}, "results": results}))
    metrics, _ = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), eval_set="synth_val",
                               output_dir=str(tmp_path), verbose=False).evaluate()
    assert len(present) >= 6, present
    for cls in present:
        for threshold, ap in metrics._label_aps[cls].items():
            assert ap == pytest.approx(1.0), (cls, threshold, ap)
    # Boxes moved by 5 m must not match: the AP above is earned, not an artefact of the setup.
    for boxes in results.values():
        for b in boxes:
            b["translation"][0] += 5.0
    path.write_text(json.dumps({"meta": {"use_camera": True, "use_lidar": True, "use_radar": False,
                                         "use_map": False, "use_external": False}, "results": results}))
    shifted, _ = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), eval_set="synth_val",
                               output_dir=str(tmp_path), verbose=False).evaluate()
    assert np.mean([shifted._label_aps[c][0.5] for c in present]) < 0.2


def test_devkit_sees_all_sensors_tables_and_splits(nusc):
    assert {s["channel"] for s in nusc.sensor} == {"LIDAR_TOP", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT",
                                                   "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"}
    assert [c["name"] for c in sorted(nusc.category, key=lambda c: c["index"])][:3] == \
        ["noise", "animal", "human.pedestrian.adult"]
    assert len(nusc.category) == 32
    splits = json.loads((tiny_dataroot() / VERSION / "splits.json").read_text())
    assert sorted(splits["synth_train"] + splits["synth_val"]) == sorted(s["name"] for s in nusc.scene)
    for sample in nusc.sample:
        assert len(sample["data"]) == 7
        assert len(sample["anns"]) > 0


def test_sensor_timing_follows_the_rig(nusc, rig_json):
    for scene in nusc.scene:
        sample = nusc.get("sample", scene["first_sample_token"])
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        stamps = []
        sd = lidar
        while sd["next"]:
            stamps.append(sd["timestamp"])
            sd = nusc.get("sample_data", sd["next"])
        assert np.all(np.diff(stamps) == 50_000)  # 20 Hz
        while sample:
            lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            assert sample["timestamp"] == lidar["timestamp"]
            for ch, spec in rig_json["cameras"].items():
                cam = nusc.get("sample_data", sample["data"][ch])
                assert cam["timestamp"] - lidar["timestamp"] == pytest.approx(spec["camera_offset_s"] * 1e6, abs=1)
                assert cam["next"] == "" or nusc.get("sample_data", cam["next"])["timestamp"] - cam["timestamp"] in \
                    (83_333, 83_334)  # 12 Hz
            sample = nusc.get("sample", sample["next"]) if sample["next"] else None
    for sd in nusc.sample_data:
        assert nusc.get("ego_pose", sd["ego_pose_token"])["timestamp"] == sd["timestamp"]


@pytest.fixture(scope="module")
def rig_json():
    from perception3d.data.rig import RIG_PATH
    return json.loads(RIG_PATH.read_text())


def test_sweeps_look_like_an_hdl32e(nusc):
    lidar_sds = [sd for sd in nusc.sample_data if sd["channel"] == "LIDAR_TOP"][:5]
    elevations = np.linspace(-30.67, 10.67, 32)
    for sd in lidar_sds:
        raw = np.fromfile(tiny_dataroot() / sd["filename"], dtype=np.float32).reshape(-1, 5)
        assert 25_000 < len(raw) <= 32 * 1085
        ring = raw[:, 4].astype(int)
        assert set(np.unique(ring)) <= set(range(32))
        assert raw[:, 3].min() >= 0 and raw[:, 3].max() <= 255
        elevation = np.degrees(np.arctan2(raw[:, 2], np.hypot(raw[:, 0], raw[:, 1])))
        assert np.abs(elevation - elevations[ring]).max() < 0.01


def test_lidar_points_project_inside_the_2d_boxes_of_their_objects(nusc):
    """Acceptance 2: object-labelled keyframe points, projected with the dataroot's calibration (devkit classes,
    pyquaternion), fall inside the clipped projection of a box of their own category."""
    inside = total = 0
    object_fine = {i for i, n in enumerate(nusc.lidarseg_idx2name_mapping.values()) if n in CATEGORY_TO_DETECTION}
    for sample in nusc.sample:
        lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pc = LidarPointCloud.from_file(str(tiny_dataroot() / lidar_sd["filename"]))
        seg = nusc.get("lidarseg", lidar_sd["token"])
        labels = np.fromfile(tiny_dataroot() / seg["filename"], dtype=np.uint8)
        T_global_lidar = _devkit_transform(nusc.get("ego_pose", lidar_sd["ego_pose_token"])) @ \
            _devkit_transform(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
        pts_global = pc.points[:3].T @ T_global_lidar[:3, :3].T + T_global_lidar[:3, 3]
        boxes = [nusc.get_box(t) for t in sample["anns"]]
        for ch in ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"):
            cam_sd = nusc.get("sample_data", sample["data"][ch])
            calib = nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])
            T_global_ego = _devkit_transform(nusc.get("ego_pose", cam_sd["ego_pose_token"]))
            T_cam_global = np.linalg.inv(T_global_ego @ _devkit_transform(calib))
            K = np.asarray(calib["camera_intrinsic"])
            rects = []
            for box in boxes:
                corners = box.corners()  # (3, 8) global
                cam = T_cam_global[:3, :3] @ corners + T_cam_global[:3, 3:4]
                front = cam[2] > 0.1
                if not front.any():
                    rects.append(None)
                    continue
                uv = view_points(cam[:, front], K, normalize=True)[:2]
                rects.append((np.clip(uv[0].min(), 0, 1600), np.clip(uv[1].min(), 0, 900),
                              np.clip(uv[0].max(), 0, 1600), np.clip(uv[1].max(), 0, 900), box.name))
            cam_pts = pts_global @ T_cam_global[:3, :3].T + T_cam_global[:3, 3]
            uv = view_points(cam_pts.T, K, normalize=True)[:2].T
            sel = (cam_pts[:, 2] > 1.0) & (uv[:, 0] >= 0) & (uv[:, 0] < 1600) & (uv[:, 1] >= 0) & (uv[:, 1] < 900)
            sel &= np.isin(labels, list(object_fine))
            for p, fine in zip(uv[sel], labels[sel]):
                name = nusc.lidarseg_idx2name_mapping[int(fine)]
                total += 1
                inside += any(r is not None and r[4] == name and r[0] <= p[0] <= r[2] and r[1] <= p[1] <= r[3]
                              for r in rects)
    assert total > 500
    assert inside / total >= 0.95, (inside, total)


def test_labels_and_point_counts_agree_with_the_boxes(nusc):
    """Points inside each annotated box (global frame) carry its category, and their count is num_lidar_pts."""
    agree = labelled = 0
    ground_labels = min(i for i, n in nusc.lidarseg_idx2name_mapping.items() if n.startswith("flat."))
    for sample in nusc.sample:
        lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pts = np.fromfile(tiny_dataroot() / lidar_sd["filename"], dtype=np.float32).reshape(-1, 5)[:, :3]
        labels = np.fromfile(tiny_dataroot() / nusc.get("lidarseg", lidar_sd["token"])["filename"], np.uint8)
        T = _devkit_transform(nusc.get("ego_pose", lidar_sd["ego_pose_token"])) @ \
            _devkit_transform(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
        g = pts @ T[:3, :3].T + T[:3, 3]
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            box = nusc.get_box(token)
            local = (g - box.center) @ box.rotation_matrix
            half = np.array([box.wlh[1], box.wlh[0], box.wlh[2]]) / 2
            in_box = np.all(np.abs(local) <= half + 0.05, axis=1)  # 5 cm margin for the range noise ...
            in_box &= labels < ground_labels  # ... which also reaches ground returns around the footprint
            count = int(in_box.sum())
            assert abs(count - ann["num_lidar_pts"]) <= max(3, 0.1 * ann["num_lidar_pts"]), (ann, count)
            names = [nusc.lidarseg_idx2name_mapping[int(v)] for v in labels[in_box]]
            agree += sum(n == ann["category_name"] for n in names)
            labelled += len(names)
    assert labelled > 1000 and agree / labelled > 0.97


def test_occupancy_volumes_hold_the_objects_and_free_space(nusc):
    car = 4
    driveable = next(i for i, n in nusc.lidarseg_idx2name_mapping.items() if n == "flat.driveable_surface")
    checked = 0
    for sample in nusc.sample:
        lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        labels, grid, meta = load_occupancy(tiny_dataroot() / occupancy_relpath(VERSION, lidar_sd["token"]))
        assert grid.shape == (256, 256, 20) and grid.resolution == pytest.approx(0.4)
        assert meta["sample_token"] == sample["token"] and meta["frame"] == "base_link"
        assert set(np.unique(labels)) <= set(range(17)) | {255}
        T_ego_global = np.linalg.inv(_devkit_transform(nusc.get("ego_pose", lidar_sd["ego_pose_token"])))
        np.testing.assert_allclose(np.linalg.inv(T_ego_global), meta["T_global_ego"], atol=1e-6)
        for token in sample["anns"]:
            box = nusc.get_box(token)
            c = T_ego_global[:3, :3] @ box.center + T_ego_global[:3, 3]
            idx, ok = grid.voxel_indices(c[None])
            if ok[0] and CATEGORY_TO_DETECTION.get(box.name) == "car":
                assert labels[tuple(idx[0])] == car
                checked += 1
        # Space the LiDAR looked through is free: voxels halfway between the sensor and its ground returns.
        T_ego_lidar = _devkit_transform(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
        pts = np.fromfile(tiny_dataroot() / lidar_sd["filename"], dtype=np.float32).reshape(-1, 5)[:, :3]
        seg = np.fromfile(tiny_dataroot() / nusc.get("lidarseg", lidar_sd["token"])["filename"], np.uint8)
        ground = pts[seg == driveable] @ T_ego_lidar[:3, :3].T + T_ego_lidar[:3, 3]
        midpoints = (ground + T_ego_lidar[:3, 3]) / 2
        idx, ok = grid.voxel_indices(midpoints)
        assert ok.sum() > 1000
        assert np.mean(labels[idx[ok, 0], idx[ok, 1], idx[ok, 2]] == 0) > 0.95
        # Everything below the ground layer is unobserved.
        assert np.all(labels[:, :, :12] == 255)
        # The observation mask holds every voxel a ray crossed and every voxel holding a return, nothing else.
        observed = meta["observed"]
        assert np.all(observed[labels == 0])
        all_pts = pts @ T_ego_lidar[:3, :3].T + T_ego_lidar[:3, 3]
        idx, ok = grid.voxel_indices(all_pts)
        assert np.all(observed[idx[ok, 0], idx[ok, 1], idx[ok, 2]])
        occupied = (labels != 0) & (labels != 255)
        assert 0.01 < observed[occupied].mean() < 0.9  # surfaces seen, occluded interiors and far sides not
    assert checked > 5


def _files(root: Path) -> dict[Path, bytes]:
    """{path relative to root: bytes} of every file of a dataroot."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rounded(value):
    """A JSON value with every float at 12 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def test_same_seed_gives_identical_files_and_another_seed_differs():
    """Byte-identical dataroots for one seed, with or without render workers; another seed changes them."""
    from perception3d.data.synth import SynthConfig, synthesize

    def build(name, seed, workers=2):
        return synthesize(scratch(name) / "root", SynthConfig(scenes=1, seconds=0.5, seed=seed, render_scale=0.05,
                                                               occupancy_range=(-10, -10, -2, 10, 10, 2),
                                                               workers=workers), progress=False)

    a, b, c = _files(build("a", 11)), _files(build("b", 11, workers=1)), _files(build("c", 12))
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)  # also independent of the worker pool
    assert any(a[k] != c.get(k) for k in a)
    # World version 1 (the default) writes what main's code wrote before world versions existed (b05537d). The JPEG
    # bytes depend on the installed Pillow's libjpeg, so they are named, not hashed (b05537d's code and this one
    # give the same JPEG bytes on one machine). The tables are hashed with their floats at 12 significant digits:
    # the cameras' calibration quaternions come out of a BLAS matrix product whose last bit depends on the OpenBLAS
    # kernel. The LiDAR files' x, y, z and intensity depend on the kernel beyond the last bit: OpenBLAS picks the
    # kernel by processor (Haswell on the AMD EPYC machines here, which set OPENBLAS_CORETYPE=Haswell; Prescott on
    # an Intel Xeon it does not recognise), and between those two points move by up to 2.5 mm and a few intensities
    # by more. So their ring column is hashed with the rest, and their points are compared by their means and
    # spreads, at tolerances 100x the two kernels' differences. The expected values are main's: with
    # OPENBLAS_CORETYPE=Haswell this code gives the digest of all the files' bytes that b05537d's code gave
    # (42aaed8e64e2...), and these figures.
    digest = hashlib.sha256()
    clouds = []
    for k in sorted(a):
        digest.update(str(k).encode())
        if k.suffix == ".json":
            digest.update(json.dumps(_rounded(json.loads(a[k])), sort_keys=True).encode())
        elif k.name.endswith(".pcd.bin"):
            cloud = np.frombuffer(a[k], dtype=np.float32).reshape(-1, 5)  # x, y, z, intensity, ring
            digest.update(cloud[:, 4].tobytes())
            clouds.append(cloud.astype(np.float64))
        elif k.suffix != ".jpg":
            digest.update(a[k])
    assert digest.hexdigest() == "9774f844409726bd425bbad37eda419cdc46cec8c85862414fdf4179e6852f3c"
    points = np.concatenate(clouds)
    assert len(clouds) == 10 and len(points) == 331243
    np.testing.assert_allclose(points[:, :3].mean(axis=0), [0.0347080216, -0.8170711776, -0.7086444640], atol=1e-6)
    np.testing.assert_allclose(points[:, :3].std(axis=0), [8.5067252179, 11.3878077154, 1.7478644835], atol=1e-6)
    assert points[:, 3].mean() == pytest.approx(25.26333, abs=0.01)


def test_a_later_scene_written_alone_has_the_files_it_has_in_a_whole_dataroot():
    from perception3d.data.synth import SynthConfig, synthesize

    def build(name, **kwargs):
        return _files(synthesize(scratch(name) / "root", SynthConfig(seconds=0.5, seed=11, render_scale=0.05, workers=1,
                                                                      occupancy_range=(-10, -10, -2, 10, 10, 2),
                                                                      **kwargs), progress=False))

    whole, alone = build("whole", scenes=2), build("second_alone", scenes=1, first_scene=1)
    data = [k for k in alone if k.suffix != ".json"]  # the tables list the scenes written
    assert len(data) > 20 and all(whole.get(k) == alone[k] for k in data)
    scenes = json.loads(alone[Path("v1.0-synth/scene.json")])
    assert [scene["name"] for scene in scenes] == ["scene-synth-0002"]
    assert scenes == [scene for scene in json.loads(whole[Path("v1.0-synth/scene.json")])
                      if scene["name"] == "scene-synth-0002"]


def test_rendered_visibility_adds_its_files_to_a_version_1_dataroot_and_changes_no_other():
    """`--rendered-visibility` on world v1: the same dataroot as without, plus each scene's visibility2d file with a
    visible fraction for every camera image and instance, in [0, 1] and above 0 for some of them."""
    from perception3d.cli import main
    from perception3d.data.nuscenes_io import open_nuscenes
    from perception3d.data.visibility2d import RenderedVisibility, visibility_relpath

    def build(name, *flags):
        root = scratch(name) / "root"
        assert main(["synth", "--out", str(root), "--scenes", "1", "--seconds", "0.5", "--seed", "11",
                     "--render-scale", "0.05", "--workers", "1", "--occupancy-range", "-10", "-10", "-2", "10", "10",
                     "2", *flags]) == 0
        return root

    plain_root, rendered_root = build("plain"), build("rendered", "--rendered-visibility")
    plain, rendered = _files(plain_root), _files(rendered_root)
    nusc = open_nuscenes(rendered_root, "v1.0-synth")
    (scene,) = nusc.scene
    added = Path(visibility_relpath("v1.0-synth", scene["token"]))
    assert set(rendered) - set(plain) == {added} and all(rendered[k] == plain[k] for k in plain)
    visibility = RenderedVisibility.load(rendered_root, "v1.0-synth", scene["token"])
    cameras = [sd["token"] for sd in nusc.sample_data if sd["sensor_modality"] == "camera"]
    instances = [inst["token"] for inst in nusc.instance]
    fractions = np.array([visibility.fractions(sd, instances) for sd in cameras])
    assert fractions.shape == (len(cameras), len(instances)) and len(cameras) > 20
    assert np.all((fractions >= 0) & (fractions <= 1)) and np.any(fractions > 0)
    assert RenderedVisibility.load(plain_root, "v1.0-synth", scene["token"]) is None


# ----- bad input ---------------------------------------------------------------------------------------------------
def _linked_copy(name):
    """A hard-linked copy of the tiny dataroot whose files can be replaced without touching the original."""
    dst = scratch(name) / "root"
    if not dst.exists():
        shutil.copytree(tiny_dataroot(), dst, copy_function=os.link)
    return dst


def test_missing_table_names_the_file():
    from perception3d.data.nuscenes_io import open_nuscenes

    root = _linked_copy("missing-table")
    (root / VERSION / "sample_annotation.json").unlink()
    with pytest.raises(DatasetError, match="sample_annotation.json"):
        open_nuscenes(root, VERSION)


def test_unknown_version_and_scene_are_named():
    from perception3d.data.nuscenes_io import open_nuscenes, scene_by_name

    with pytest.raises(DatasetError, match="v1.0-mini.*v1.0-synth"):
        open_nuscenes(tiny_dataroot(), "v1.0-mini")
    with pytest.raises(DatasetError, match="scene-0103.*scene-synth-0001"):
        scene_by_name(tiny_nusc(), "scene-0103")


def test_corrupt_point_file_names_the_file():
    from perception3d.data.nuscenes_io import read_lidar_points

    root = _linked_copy("corrupt-pcd")
    path = next((root / "samples" / "LIDAR_TOP").iterdir())
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:-7])
    with pytest.raises(DatasetError, match=path.name):
        read_lidar_points(path)
    nan = np.frombuffer(data, np.float32).copy()
    nan[5] = np.nan
    path.unlink()
    path.write_bytes(nan.tobytes())
    with pytest.raises(DatasetError, match="non-finite"):
        read_lidar_points(path)
    assert FINE_TO_COARSE.size == 32 and len(DETECTION_CLASSES) == 10


def test_object_tracks_never_overlap_and_cover_all_classes():
    from perception3d.core.boxes import bev_corners, bev_intersection_area
    from perception3d.data.world import World

    for seed in range(4):
        world = World(seed, 0, 20.0)
        assert {t.detection_class for t in world.tracks} == set(DETECTION_CLASSES)
        for t in np.arange(0.0, 20.5, 2.5):
            corners = bev_corners(*world.object_states(t))
            overlap = bev_intersection_area(corners, corners)
            np.fill_diagonal(overlap, 0.0)
            assert overlap.max() < 1e-6, (seed, t)


def test_devkit_velocities_match_the_world_tracks(nusc):
    """Annotations form instance tracks: nuscenes-devkit's box_velocity (finite differences of the annotated
    centres) equals the constant velocity of the simulated object."""
    from perception3d.data.schema import make_token
    from perception3d.data.synth import scene_name
    from perception3d.data.world import World
    from synth_data import TINY

    compared = moving = 0
    for index in range(TINY["scenes"]):
        world = World(TINY["seed"], index, TINY["seconds"])
        velocities = world.object_velocities()
        token_to_track = {make_token(TINY["seed"], index, "instance", j): j for j in range(len(world.tracks))}
        scene = next(s for s in nusc.scene if s["name"] == scene_name(index))
        for inst in nusc.instance:
            j = token_to_track.get(inst["token"])
            if j is None or inst["nbr_annotations"] < 2:
                continue
            ann = nusc.get("sample_annotation", inst["first_annotation_token"])
            assert nusc.get("sample", ann["sample_token"])["scene_token"] == scene["token"]
            np.testing.assert_allclose(nusc.box_velocity(ann["token"])[:2], velocities[j], atol=1e-3)
            compared += 1
            moving += np.hypot(*velocities[j]) > 0.5
    assert compared > 50 and moving > 10


def test_lidarseg_eval_scores_the_labels_themselves_perfectly(nusc, tmp_path, monkeypatch):
    """nuscenes-devkit LidarSegEval accepts the 32-class category table: the keyframe labels mapped to the 16
    classes score mIoU 1.0 (its split lookup only knows the hard-coded names, so it is pointed at our split)."""
    import nuscenes.eval.lidarseg.evaluate as lidarseg_evaluate
    from nuscenes.eval.common.loaders import get_samples_of_custom_split

    tokens = get_samples_of_custom_split("synth_val", nusc)
    monkeypatch.setattr(lidarseg_evaluate, "get_samples_in_eval_set", lambda nusc, eval_set: tokens)
    folder = tmp_path / "lidarseg" / "synth_val"
    folder.mkdir(parents=True)
    for token in tokens:
        lidar_token = nusc.get("sample", token)["data"]["LIDAR_TOP"]
        fine = np.fromfile(tiny_dataroot() / nusc.get("lidarseg", lidar_token)["filename"], np.uint8)
        coarse = FINE_TO_COARSE[fine]
        assert coarse.min() >= 1  # every synthetic return belongs to one of the 16 evaluated classes
        coarse.tofile(folder / f"{lidar_token}_lidarseg.bin")
    metrics = lidarseg_evaluate.LidarSegEval(nusc, str(tmp_path), "synth_val", verbose=False).evaluate()
    assert metrics["miou"] == pytest.approx(1.0)
