"""`perception3d dataset build` and SweepDataset: one sample per LiDAR sweep, interpolated boxes against the
synthetic world's truth, hand-written nuScenes (one keyframe, no sweeps) and Lyft-style dataroots, cache reuse,
2D boxes from a detector2d bag, and augmentation that keeps points, boxes and cameras consistent."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from dataset_fixtures import (
    LYFT_ANNOTATIONS,
    LYFT_POINTS,
    LYFT_VERSION,
    NUSCENES_ANNOTATIONS,
    NUSCENES_EXPECTED_LIDAR,
    NUSCENES_POINTS,
    NUSCENES_VERSION,
    write_lyft_style,
    write_nuscenes_keyframes,
)
from perception3d.cli import main
from perception3d.core.boxes import box_corners, points_in_box, wlh_to_lwh
from perception3d.core.classes import DETECTION_CLASSES, FINE_TO_COARSE
from perception3d.core.geometry import transform_points, wrap_angle
from perception3d.data.occupancy_gt import load_occupancy, occupancy_relpath
from perception3d.data.schema import make_token
from perception3d.data.synth import EPOCH_US, SYNTH_VERSION, SynthConfig, synthesize
from perception3d.data.world import World
from perception3d.train.data.augment3d import (
    Augment3DConfig,
    apply_global_transform,
    augment_images,
    random_global_transform,
)
from perception3d.train.data.dataset import SweepDataset, collate

SEED = 3


def _build(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["dataset", "build", "--no-progress", *map(str, args)]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 1 s synthetic scene (20 sweeps, 2 keyframes) built with small images and 2 past sweeps."""
    root = synthesize(tmp_path_factory.mktemp("synth") / "dataroot",
                      SynthConfig(scenes=1, seconds=1.0, seed=SEED, render_scale=0.1, workers=1,
                                  occupancy_range=(-12.8, -12.8, -2.0, 12.8, 12.8, 1.2), occupancy_voxel=0.8),
                      progress=False)
    cache = tmp_path_factory.mktemp("synth-cache")
    assert main(["dataset", "build", "--no-progress", "--dataroot", str(root), "--version", SYNTH_VERSION,
                 "--split", "synth_val", "--out", str(cache), "--images", "small", "--past-sweeps", "2"]) == 0
    return root, SweepDataset(cache)


def _table(root, version, name):
    return json.loads((root / version / f"{name}.json").read_text())


def _lidar_records(root, version):
    channel = {s["token"]: s["channel"] for s in _table(root, version, "sensor")}
    sensor = {c["token"]: channel[c["sensor_token"]] for c in _table(root, version, "calibrated_sensor")}
    return [sd for sd in _table(root, version, "sample_data") if sensor[sd["calibrated_sensor_token"]] == "LIDAR_TOP"]


def test_synthetic_samples_are_the_lidar_sweeps_and_interpolated_boxes_match_the_world(synthetic):
    root, data = synthetic
    sweeps = sorted(_lidar_records(root, SYNTH_VERSION), key=lambda sd: sd["timestamp"])
    assert len(data) == len(sweeps) == 20
    samples = [data[i] for i in range(len(data))]
    assert [s["lidar_token"] for s in samples] == [sd["token"] for sd in sweeps]
    assert [s["is_key_frame"] for s in samples] == [sd["is_key_frame"] for sd in sweeps]
    assert sum(s["is_key_frame"] for s in samples) == 2

    world = World(SEED, 0, 1.0)
    track = {make_token(SEED, 0, "instance", j): j for j in range(len(world.tracks))}
    velocities = world.object_velocities()
    checked = {"interpolated": 0, "extrapolated": 0, "held": 0}
    single = {r["token"] for r in _table(root, SYNTH_VERSION, "instance") if r["nbr_annotations"] == 1}
    for s in samples:
        if s["is_key_frame"]:
            continue
        t = (s["timestamp_us"] - EPOCH_US) * 1e-6
        centers, sizes_lwh, yaws = world.object_states(t)
        T = s["T_global_lidar"]
        global_centers = transform_points(T, s["boxes_center"])
        heading = np.stack([np.cos(s["boxes_yaw"]), np.sin(s["boxes_yaw"]), np.zeros(len(s["boxes_yaw"]))], 1)
        global_yaws = np.arctan2(*(heading @ T[:3, :3].T)[:, [1, 0]].T)
        global_vel = s["boxes_velocity"] @ T[:2, :2].T
        for b, instance in enumerate(s["boxes_instance"]):
            j = track[instance]
            assert DETECTION_CLASSES[s["boxes_class"][b]] == world.tracks[j].detection_class
            np.testing.assert_allclose(wlh_to_lwh(s["boxes_size_wlh"][b]), sizes_lwh[j], atol=1e-4)
            assert abs(np.degrees(wrap_angle(global_yaws[b] - yaws[j]))) < 1.0
            if s["boxes_extrapolated"][b] and np.isnan(global_vel[b]).any():
                # annotated in one keyframe only, so no velocity: kept at that keyframe's pose, and flagged
                assert instance in single
                checked["held"] += 1
                continue
            assert np.linalg.norm(global_centers[b] - centers[j]) < 0.05
            np.testing.assert_allclose(global_vel[b], velocities[j], atol=0.05)
            checked["extrapolated" if s["boxes_extrapolated"][b] else "interpolated"] += 1
    # between the keyframes boxes are interpolated; after the last keyframe they are moved at their velocity
    assert checked["interpolated"] > 500 and checked["extrapolated"] > 500
    assert checked["held"] < 0.05 * sum(checked.values())


def test_past_sweeps_are_moved_into_the_current_lidar_frame_with_their_time_lag(synthetic):
    _, data = synthetic
    s5, s4, s3 = data[5], data[4], data[3]
    lags = s5["points"][:, 4]
    np.testing.assert_allclose(np.unique(lags), [0.0, 0.05, 0.1], atol=1e-6)
    assert np.all(lags[:s5["num_points_current"]] == 0)
    for past in (s4, s3):  # a past sweep's points in global = that sweep's own points in global
        rows = np.isclose(lags, (s5["timestamp_us"] - past["timestamp_us"]) * 1e-6)
        moved = transform_points(s5["T_global_lidar"], s5["points"][rows, :3])
        own = transform_points(past["T_global_lidar"], past["points"][:past["num_points_current"], :3])
        np.testing.assert_allclose(moved, own, atol=1e-3)
        assert np.abs(s5["points"][rows, :3] - past["points"][:past["num_points_current"], :3]).max() > 0.2  # ego moved
    assert data[0]["points"].shape[0] == data[0]["num_points_current"]  # the first sweep has no past


def test_keyframes_carry_lidarseg_and_occupancy_from_the_dataroot(synthetic):
    root, data = synthetic
    lidarseg = {r["sample_data_token"]: r["filename"] for r in _table(root, SYNTH_VERSION, "lidarseg")}
    for i in range(len(data)):
        s = data[i]
        assert s["has_lidarseg"] == s["is_key_frame"] == ("occupancy" in s)
        if s["is_key_frame"]:
            fine = np.fromfile(root / lidarseg[s["lidar_token"]], np.uint8)
            np.testing.assert_array_equal(s["lidarseg"], FINE_TO_COARSE[fine])
            labels, grid, meta = load_occupancy(root / occupancy_relpath(SYNTH_VERSION, s["lidar_token"]))
            np.testing.assert_array_equal(s["occupancy"], labels)
            np.testing.assert_array_equal(s["occupancy_observed"], meta["observed"])
            assert s["occupancy_voxel_size"] == grid.resolution


def test_perfect_2d_boxes_are_the_3d_boxes_projected_into_the_small_images(synthetic):
    _, data = synthetic
    s = data[10]  # the second keyframe
    assert s["cam_valid"].all() and len(s["boxes2d_xyxy"]) > 20
    matched = []
    for c in range(len(s["cameras"])):
        image = s["images"][c]
        assert (image.shape[1], image.shape[0]) == tuple(s["cam_image_size"][c])
        np.testing.assert_allclose(s["cam_scale"][c], [0.25, 0.25], atol=0.002)
        corners = box_corners(s["boxes_center"], wlh_to_lwh(s["boxes_size_wlh"]), s["boxes_yaw"])
        cam = transform_points(s["cam_T_camera_lidar"][c], corners.reshape(-1, 3)).reshape(-1, 8, 3)
        for box in s["boxes2d_xyxy"][s["boxes2d_camera"] == c]:
            best = 0.0
            for k in np.flatnonzero((cam[:, :, 2] > 0.1).all(1)):
                uv = cam[k] @ s["cam_K"][c].T
                uv = uv[:, :2] / uv[:, 2:]
                proj = np.concatenate([uv.min(0), uv.max(0)]).clip(0, [*s["cam_image_size"][c]] * 2)
                inter = np.prod(np.clip(np.minimum(proj[2:], box[2:]) - np.maximum(proj[:2], box[:2]), 0, None))
                union = np.prod(proj[2:] - proj[:2]) + np.prod(box[2:] - box[:2]) - inter
                best = max(best, inter / union if union > 0 else 0.0)
            matched.append(best)
    # boxes of objects cut by the image border or moving during the camera's offset to the sweep match less well
    assert np.median(matched) > 0.85 and np.mean(np.array(matched) > 0.5) > 0.9


@pytest.fixture()
def nuscenes_root(tmp_path):
    return write_nuscenes_keyframes(tmp_path / "nuscenes")


def test_nuscenes_dataroot_of_single_keyframes_without_sweeps(nuscenes_root, tmp_path, capsys):
    out = _build(capsys, "--dataroot", nuscenes_root, "--version", NUSCENES_VERSION, "--split", "mini_like",
                 "--out", tmp_path / "cache", "--images", "small")
    data = SweepDataset(tmp_path / "cache")
    assert len(data) == 2 and data.past_sweeps == 9
    for s, n_points in zip((data[0], data[1]), NUSCENES_POINTS):
        assert s["is_key_frame"] and s["points"].shape == (n_points, 5) and s["has_lidarseg"]
        assert np.all(s["lidarseg"] == 4)  # fine 17 vehicle.car -> 4 car
        assert s["cam_valid"].all() and s["images"][0].shape == (9, 16, 3)
        by_instance = dict(zip(s["boxes_instance"], range(len(s["boxes_instance"]))))
        assert len(by_instance) == 3  # the animal has no detection class
        scene = int(s["scene"][-2:]) - 61
        for a, (centre, yaw) in NUSCENES_EXPECTED_LIDAR.items():
            b = by_instance[make_token("instance", scene, a)]
            np.testing.assert_allclose(s["boxes_center"][b], centre, atol=1e-5)
            assert wrap_angle(s["boxes_yaw"][b] - yaw) == pytest.approx(0.0, abs=1e-6)
            np.testing.assert_allclose(s["boxes_size_wlh"][b], NUSCENES_ANNOTATIONS[a][3], atol=1e-6)
            assert data.attributes[s["boxes_attribute"][b]] == NUSCENES_ANNOTATIONS[a][4]
            assert s["boxes_num_lidar_pts"][b] == 5 + a and np.isnan(s["boxes_velocity"][b]).all()
    summary = data.manifest["summary"]
    assert summary["samples"] == 2 and summary["keyframes"] == 2
    assert summary["boxes_per_class"] == {"car": 4, "pedestrian": 2}
    assert summary["skipped_categories"] == {"animal": 2} and summary["unknown_categories"] == {}
    assert summary["points_per_sweep"] == {"mean": 90.0, "min": 80, "max": 100}
    assert "samples 2  keyframes 2" in out and "car 4, pedestrian 2" in out and "mean 90  min 80  max 100" in out
    assert "animal 2" in out and "WARNING" not in out


def test_lyft_style_dataroot(tmp_path, capsys):
    root = write_lyft_style(tmp_path / "lyft")
    out = _build(capsys, "--dataroot", root, "--version", LYFT_VERSION, "--split", "all", "--out", tmp_path / "c",
                 "--images", "full", "--past-sweeps", "2")
    data = SweepDataset(tmp_path / "c")
    assert len(data) == 3 and [data[i]["is_key_frame"] for i in range(3)] == [True, False, True]
    assert data.cameras == ["CAM_FRONT", "CAM_FRONT_ZOOMED"]
    for i in range(3):
        s = data[i]
        assert s["points"].shape == ((i + 1) * LYFT_POINTS, 5)
        np.testing.assert_allclose(sorted(np.unique(s["points"][:, 4])), [0.0, 0.1, 0.2][:i + 1], atol=1e-6)
        assert s["cam_valid"].all() and not s["has_lidarseg"]
        assert [im.shape for im in s["images"]] == [(48, 64, 3), (34, 80, 3)]
        assert isinstance(s["timestamp_us"], int)
    np.testing.assert_allclose(data[1]["T_global_lidar"][:3, 3], [2.0, 0.0, 1.8])  # ego at 10 m/s, 0.1 s later
    # Every annotation is either a box of its detection class or counted as skipped, never silently dropped.
    summary = data.manifest["summary"]
    keyframe_boxes = len(data[0]["boxes_class"]) + len(data[2]["boxes_class"])
    assert keyframe_boxes + sum(summary["skipped_categories"].values()) == 2 * len(LYFT_ANNOTATIONS)
    for category, count in summary["unknown_categories"].items():
        assert f"{category} {count}" in out.split("WARNING")[1]
    s = data[1]  # the sweep halfway between the keyframes
    for a, (category, centres, yaws, _) in enumerate(LYFT_ANNOTATIONS):
        if category in summary["skipped_categories"]:
            continue
        b = list(s["boxes_instance"]).index(make_token("lyft-instance", a))  # once Lyft names map to classes
        np.testing.assert_allclose(transform_points(s["T_global_lidar"], s["boxes_center"][b:b + 1])[0],
                                   np.mean(centres, axis=0), atol=1e-3)
        assert s["boxes_yaw"][b] == pytest.approx(np.mean(yaws), abs=1e-4)  # LiDAR axes = ego axes = global axes


def _tree_digest(folder):
    return {p.relative_to(folder): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cache_is_reused_and_rebuilds_only_what_changed(nuscenes_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["--dataroot", nuscenes_root, "--version", NUSCENES_VERSION, "--split", "mini_like", "--out", cache]
    assert "2 scene(s) built, 0 up to date" in _build(capsys, *args)
    before = _tree_digest(cache)
    assert "0 scene(s) built, 2 up to date" in _build(capsys, *args)
    after = _tree_digest(cache)
    assert {p: h for p, (h, _) in after.items()} == {p: h for p, (h, _) in before.items()}  # byte-identical
    scene_files = [p for p in before if p.parts[0] == "scenes"]
    assert scene_files and all(after[p][1] == before[p][1] for p in scene_files)  # not rewritten
    lidar = next((nuscenes_root / "samples" / "LIDAR_TOP").glob("n015-1__*"))
    os.utime(lidar, ns=(lidar.stat().st_atime_ns, lidar.stat().st_mtime_ns + 10**9))
    assert "1 scene(s) built, 1 up to date" in _build(capsys, *args)
    assert _tree_digest(cache)[next(p for p in scene_files if "scene-0061" in str(p))] == \
        before[next(p for p in scene_files if "scene-0061" in str(p))]
    assert "2 scene(s) built, 0 up to date" in _build(capsys, *args, "--boxes2d", "good")
    assert json.loads((cache / "manifest.json").read_text())["options"]["boxes2d"] == "good"
    assert "0 scene(s) built, 2 up to date" in _build(capsys, *args, "--boxes2d", "good", "--past-sweeps", "3")
    assert SweepDataset(cache).past_sweeps == 3  # read time only: no scene is rebuilt for it
    assert "1 scene(s) built" not in _build(capsys, "--dataroot", nuscenes_root, "--version", NUSCENES_VERSION,
                                            "--split", "all", "--out", cache, "--boxes2d", "good",
                                            "--past-sweeps", "3")


def test_2d_boxes_from_a_detector2d_bag_are_matched_by_image_stamp(nuscenes_root, tmp_path, capsys):
    from perception3d.core.detections import Detections2D
    from perception3d.msgs.bag import BagWriter
    from perception3d.msgs.detections import detections2d_to_msg

    front = next(sd for sd in _table(nuscenes_root, NUSCENES_VERSION, "sample_data")
                 if sd["filename"].startswith("samples/CAM_FRONT/n015-0"))
    stamp_ns = front["timestamp"] * 1000
    dets = Detections2D([[4, 5, 20, 30], [30, 2, 60, 20]], ["car", "pedestrian"], [0.9, 0.4], "CAM_FRONT", stamp_ns)
    with BagWriter(tmp_path / "replay" / "scene-0061") as bag:
        bag.write("/perception/CAM_FRONT/detections", stamp_ns, detections2d_to_msg(dets))
        other = Detections2D([[1, 1, 9, 9]], ["car"], [1.0], "CAM_FRONT", stamp_ns + 1)  # no image has this stamp
        bag.write("/perception/CAM_FRONT/detections", stamp_ns + 1, detections2d_to_msg(other))
    out = _build(capsys, "--dataroot", nuscenes_root, "--version", NUSCENES_VERSION, "--split", "mini_like",
                 "--out", tmp_path / "cache", "--boxes2d", tmp_path / "replay")
    data = SweepDataset(tmp_path / "cache")
    s = data[0]
    np.testing.assert_allclose(s["boxes2d_xyxy"], dets.boxes_xyxy)
    assert list(s["boxes2d_camera"]) == [data.cameras.index("CAM_FRONT")] * 2
    assert [DETECTION_CLASSES[k] for k in s["boxes2d_class"]] == ["car", "pedestrian"]
    np.testing.assert_allclose(s["boxes2d_score"], [0.9, 0.4], rtol=1e-6)
    assert len(data[1]["boxes2d_xyxy"]) == 0
    assert data.manifest["summary"]["images_without_boxes2d"] == 3 and "without 2D boxes in the bag 3" in out
    assert main(["dataset", "build", "--no-progress", "--dataroot", str(nuscenes_root), "--version",
                 NUSCENES_VERSION, "--split", "mini_like", "--out", str(tmp_path / "c2"), "--boxes2d",
                 str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def _pixels(sample, c, points_lidar):
    cam = transform_points(sample["cam_T_camera_lidar"][c], points_lidar)
    uv = cam @ sample["cam_K"][c].T
    return uv[:, :2] / uv[:, 2:], cam[:, 2]


def _inside(sample, b, margin):
    """Mask of the sample's points inside its box b grown by margin [m]."""
    return points_in_box(sample["points"], sample["boxes_center"][b], wlh_to_lwh(sample["boxes_size_wlh"][b]),
                         sample["boxes_yaw"][b], margin)


def test_augmentation_keeps_points_boxes_and_cameras_consistent(synthetic):
    _, data = synthetic
    s = data[10]
    c = s["cameras"].index("CAM_FRONT")
    rng = np.random.default_rng(0)
    checked = 0
    busiest = np.argsort([-_inside(s, b, 0.0).sum() for b in range(len(s["boxes_center"]))])[:12]
    for flips in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        config = Augment3DConfig(rotation_range=1.0, flip_y_probability=flips[0], flip_x_probability=flips[1],
                                 scale_range=(0.9, 1.1))
        A = random_global_transform(rng, config)
        assert np.sign(np.linalg.det(A[:3, :3])) == (-1) ** sum(flips)
        aug = apply_global_transform(s, A)
        uv0, depth0 = _pixels(s, c, s["points"][:, :3])
        uv1, depth1 = _pixels(aug, c, aug["points"][:, :3])
        front = depth0 > 1
        assert front.sum() > 1000
        np.testing.assert_allclose(uv1[front], uv0[front], atol=1e-2)  # same pixels (float32 points)
        np.testing.assert_allclose(aug["points"][:, 3:], s["points"][:, 3:])
        for b in busiest:  # the same points fall in each box (up to 1 mm: many lie on faces)
            assert np.all(_inside(aug, b, 1e-3)[_inside(s, b, -1e-3)])
            assert np.all(_inside(s, b, 1e-3)[_inside(aug, b, -1e-3)])
            checked += int(_inside(s, b, -1e-3).sum())
        back = transform_points(aug["T_global_lidar"], aug["boxes_center"])  # boxes back in global: unchanged
        np.testing.assert_allclose(back, transform_points(s["T_global_lidar"], s["boxes_center"]), atol=1e-3)
        vel = aug["boxes_velocity"] @ aug["T_global_lidar"][:2, :2].T
        np.testing.assert_allclose(vel, s["boxes_velocity"] @ s["T_global_lidar"][:2, :2].T, atol=1e-4)
        np.testing.assert_allclose(aug["T_augment"], A)
    assert checked > 1000
    scaled = augment_images(s, np.random.default_rng(1), Augment3DConfig(image_scale_range=(0.6, 0.6)))
    for k, image in enumerate(scaled["images"]):
        assert (image.shape[1], image.shape[0]) == tuple(scaled["cam_image_size"][k])
        assert image.shape[:2] != s["images"][k].shape[:2] and not np.array_equal(scaled["cam_K"][k], s["cam_K"][k])
    uv0, depth0 = _pixels(s, c, s["points"][:, :3])
    uv1, _ = _pixels(scaled, c, s["points"][:, :3])
    sx, sy = scaled["cam_image_size"][c] / s["cam_image_size"][c]
    front = depth0 > 1
    np.testing.assert_allclose(uv1[front], uv0[front] * [sx, sy] + [(sx - 1) / 2, (sy - 1) / 2], atol=1e-6)
    mine = s["boxes2d_camera"] == c
    np.testing.assert_allclose(scaled["boxes2d_xyxy"][mine],
                               s["boxes2d_xyxy"][mine] * [sx, sy, sx, sy] + [(sx - 1) / 2, (sy - 1) / 2] * 2,
                               atol=1e-4)


def test_collate_concatenates_ragged_fields_with_batch_indices(synthetic):
    _, data = synthetic
    samples = [data[0], data[5], data[10]]
    batch = collate(samples)
    assert batch["points"].shape[0] == sum(len(s["points"]) for s in samples)
    np.testing.assert_array_equal(np.bincount(batch["points_batch"]), [len(s["points"]) for s in samples])
    np.testing.assert_array_equal(np.bincount(batch["boxes_batch"], minlength=3),
                                  [len(s["boxes_class"]) for s in samples])
    assert batch["cam_T_camera_lidar"].shape == (3, len(data.cameras), 4, 4)
    assert list(batch["is_key_frame"]) == [True, False, True] and batch["sample_token"][1] == samples[1]["sample_token"]
    assert len(batch["images"]) == 3 and isinstance(batch["occupancy"], list)
