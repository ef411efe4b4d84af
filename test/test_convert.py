"""nuScenes -> rosbag2 conversion, checked with the mcap readers (independent of our bag code) and the devkit."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from mcap_ros2.reader import read_ros2_messages
from scipy.spatial.transform import Rotation

from perception3d.core.camera import CameraModel
from perception3d.core.detections import Detections3D
from perception3d.errors import DatasetError
from synth_data import VERSION, scratch, tiny_bags, tiny_dataroot, tiny_nusc


@pytest.fixture(scope="module")
def decoded():
    """{bag path: [(topic, log_time_ns, ros_msg)]} decoded by mcap-ros2-support."""
    out = {}
    for bag in tiny_bags():
        (mcap,) = bag.glob("*.mcap")
        out[bag] = [(m.channel.topic, m.log_time_ns, m.ros_msg) for m in read_ros2_messages(str(mcap))]
    return out


def _matrix(transform) -> np.ndarray:
    T = np.eye(4)
    r, t = transform.rotation, transform.translation
    T[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def test_bags_replay_in_time_order_with_header_stamps_equal_to_log_times(decoded):
    nusc = tiny_nusc()
    for bag, messages in decoded.items():
        scene = next(s for s in nusc.scene if s["name"] == bag.name)
        stamps = [t for _, t, _ in messages]
        assert stamps == sorted(stamps)
        for topic, t, msg in messages:
            if hasattr(msg, "header"):
                assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == t, topic
        counts = {}
        for topic, _, _ in messages:
            counts[topic] = counts.get(topic, 0) + 1
        sds = [sd for sd in nusc.sample_data
               if nusc.get("sample", sd["sample_token"])["scene_token"] == scene["token"]]
        assert counts["/LIDAR_TOP/points"] == sum(sd["channel"] == "LIDAR_TOP" for sd in sds)
        assert counts["/CAM_FRONT/image/compressed"] == sum(sd["channel"] == "CAM_FRONT" for sd in sds)
        assert counts["/tf"] == len({sd["timestamp"] for sd in sds})
        assert counts["/gt/detections"] == counts["/gt/keyframes"] == scene["nbr_samples"]
        assert counts["/tf_static"] == 1


def test_transforms_put_the_lidar_points_of_each_gt_box_inside_it(decoded):
    """Acceptance 3: only bag content: /tf_static, /tf, points and /gt/detections at each keyframe. As a control,
    the map -> base_link of the previous keyframe (0.5 s earlier) must put far fewer points in the boxes."""
    nusc = tiny_nusc()
    checked = total_right = total_stale = 0
    for _bag, messages in decoded.items():
        (static,) = [m for topic, _, m in messages if topic == "/tf_static"]
        T_ego_lidar = next(_matrix(t.transform) for t in static.transforms
                           if (t.header.frame_id, t.child_frame_id) == ("base_link", "LIDAR_TOP"))
        tf = {t: _matrix(m.transforms[0].transform) for topic, t, m in messages if topic == "/tf"}
        clouds = {t: m for topic, t, m in messages if topic == "/LIDAR_TOP/points"}
        previous = None
        for topic, t, msg in messages:
            if topic != "/gt/detections":
                continue
            cloud = clouds[t]
            assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"] and cloud.point_step == 20
            pts = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 5)[:, :3]
            assert msg.header.frame_id == "map"
            sample_token = _sample_at(nusc, t)
            for det in msg.detections:
                ann = next(a for a in nusc.sample_annotation
                           if a["instance_token"] == det.id and a["sample_token"] == sample_token)
                if ann["num_lidar_pts"] < 10:
                    continue
                right = _points_in_detection(pts, tf[t] @ T_ego_lidar, det)
                assert right >= 0.95 * ann["num_lidar_pts"], det.results[0].hypothesis.class_id
                total_right += right
                if previous is not None:
                    total_stale += _points_in_detection(pts, tf[previous] @ T_ego_lidar, det)
                checked += 1
            previous = t
    assert checked > 20
    assert total_stale < 0.5 * total_right


def _points_in_detection(points_lidar, T_map_lidar, det) -> int:
    g = points_lidar @ T_map_lidar[:3, :3].T + T_map_lidar[:3, 3]
    c, s, q = det.bbox.center.position, det.bbox.size, det.bbox.center.orientation
    local = (g - (c.x, c.y, c.z)) @ Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    return int(np.all(np.abs(local) <= np.array([s.x, s.y, s.z]) / 2 + 0.1, axis=1).sum())


def _sample_at(nusc, stamp_ns):
    return next(s["token"] for s in nusc.sample if s["timestamp"] * 1000 == stamp_ns)


def test_keyframe_index_maps_lidar_stamps_to_sample_tokens(decoded):
    nusc = tiny_nusc()
    for bag, messages in decoded.items():
        topic_index = [(t, json.loads(m.data)) for topic, t, m in messages if topic == "/gt/keyframes"]
        for t, entry in topic_index:
            sample = nusc.get("sample", entry["sample_token"])
            assert nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["token"] == entry["lidar_sd_token"]
            assert sample["timestamp"] * 1000 == t and entry["scene"] == bag.name
        custom = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
        assert [(e["stamp_ns"], e["sample_token"]) for e in json.loads(custom["perception3d.keyframes"])] == \
            [(t, e["sample_token"]) for t, e in topic_index]
        assert json.loads(custom["perception3d.simulated_2d"])["simulated"] is True


def test_images_pass_through_and_camera_info_follows_calibration(decoded):
    nusc = tiny_nusc()
    messages = next(iter(decoded.values()))
    by_stamp = {(sd["channel"], sd["timestamp"] * 1000): sd for sd in nusc.sample_data}
    images = [(t, m) for topic, t, m in messages if topic == "/CAM_BACK/image/compressed"]
    infos = {t: m for topic, t, m in messages if topic == "/CAM_BACK/camera_info"}
    for t, img in images[:5]:
        sd = by_stamp[("CAM_BACK", t)]
        assert bytes(img.data) == (tiny_dataroot() / sd["filename"]).read_bytes() and img.format == "jpeg"
        K = np.asarray(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"])
        info = infos[t]
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K)
        np.testing.assert_allclose(np.reshape(info.p, (3, 4)), np.hstack([K, np.zeros((3, 1))]))
        np.testing.assert_allclose(np.reshape(info.r, (3, 3)), np.eye(3))
        assert len(info.d) == 0 and (info.width, info.height) == (1600, 900)
        assert info.header.frame_id == img.header.frame_id == "CAM_BACK"


def test_simulated_detections_follow_ground_truth(decoded):
    """The 'good' preset's boxes: stamped like their image, most carry an instance id whose projected GT box
    they overlap; every GT box that is large and unoccluded-ish shows up at the keyframes."""
    messages = next(iter(decoded.values()))
    stamps = {t for topic, t, _ in messages if topic == "/CAM_FRONT/image/compressed"}
    dets = [(t, m) for topic, t, m in messages if topic == "/CAM_FRONT/detections"]
    assert {t for t, _ in dets} == stamps
    with_id = sum(bool(d.id) for _, m in dets for d in m.detections)
    total = sum(len(m.detections) for _, m in dets)
    assert total > 0 and with_id / total > 0.8
    assert all(m.header.frame_id == "CAM_FRONT" for _, m in dets)


def _gt_scene(n=60, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.column_stack([rng.uniform(-8, 8, n), rng.uniform(-3, 1, n), rng.uniform(8, 40, n)])
    return Detections3D(centers, np.tile([0.6, 0.6, 1.7], (n, 1)), np.zeros(n), ["pedestrian"] * n, np.ones(n),
                        "map", 0, ids=[f"i{k}" for k in range(n)])


def test_noise_model_presets_behave_as_documented():
    from perception3d.data.simulated_2d import PRESETS, project_boxes, simulate_detections

    camera = CameraModel(K=[[1266.0, 0, 800], [0, 1266.0, 450], [0, 0, 1]], width=1600, height=900, frame_id="cam")
    # Boxes far apart (one per image) so occlusion plays no part: the camera looks along +z of 'map' here.
    T_cam_map = np.eye(4)
    T_cam_map[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # map x right, z up -> optical x right, y down
    results = {}
    for name, model in PRESETS.items():
        rng = np.random.default_rng(1)
        found = errors = fps = n = 0
        for k in range(150):
            gt = _gt_scene(1, k)
            gt.centers[:, [1, 2]] = gt.centers[:, [2, 1]]  # depth along map y
            rects, _ = project_boxes(gt, T_cam_map, camera)
            d = simulate_detections(gt, T_cam_map, camera, model, rng, 7)
            n += np.isfinite(rects[0, 0])
            hits = d.ids == "i0"
            found += hits.sum()
            fps += (d.ids == "").sum()
            if hits.any():
                errors += np.abs(d.boxes_xyxy[hits][0] - rects[0]).mean()
            assert d.stamp_ns == 7 and d.frame_id == "cam"
        results[name] = (found / n, errors / max(found, 1), fps / 150)
    assert results["perfect"] == (1.0, 0.0, 0.0)
    assert results["good"][0] > results["poor"][0] and results["good"][1] < results["poor"][1]
    assert 0.1 < results["good"][2] < 0.6 and 1.4 < results["poor"][2] < 2.7  # Poisson means 0.3 and 2.0


def test_occluded_objects_are_missed_more_often():
    from perception3d.data.simulated_2d import NoiseModel2D, visible_fractions

    camera = CameraModel(K=[[1000.0, 0, 800], [0, 1000.0, 450], [0, 0, 1]], width=1600, height=900)
    rects = np.array([[100.0, 100, 300, 300], [200, 100, 400, 300], [1000, 100, 1100, 200]])
    depth = np.array([20.0, 10.0, 15.0])
    vis = visible_fractions(rects, depth, camera)
    assert vis[1] == pytest.approx(1.0) and vis[2] == pytest.approx(1.0)
    assert 0.4 < vis[0] < 0.6  # half of box 0 lies behind the nearer box 1
    assert NoiseModel2D("x", 0, 0, 0, 0, 0.5, 0, 0, 1, 0, 0).describe()["simulated"] is True


# ----- bad input and interruption ---------------------------------------------------------------------------------
def test_unknown_scene_and_existing_output_are_errors():
    from perception3d.data.convert import convert

    out = scratch("convert-errors")
    with pytest.raises(DatasetError, match="scene-9999"):
        convert(tiny_dataroot(), VERSION, out, scenes=["scene-9999"], progress=False)
    with pytest.raises(DatasetError, match="exists already"):
        convert(tiny_dataroot(), VERSION, tiny_bags()[0].parent, scenes=[tiny_bags()[0].name], progress=False)


def test_corrupt_point_file_stops_conversion_naming_it_and_keeps_finished_bags(monkeypatch):
    from perception3d.data import convert as convert_module
    from perception3d.msgs.bag import BagReader

    root = scratch("convert-corrupt") / "root"
    shutil.copytree(tiny_dataroot(), root, copy_function=os.link)
    nusc = tiny_nusc()
    second = nusc.scene[1]
    last = nusc.get("sample", second["last_sample_token"])
    path = root / nusc.get("sample_data", last["data"]["LIDAR_TOP"])["filename"]
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:-3])
    out = scratch("convert-corrupt") / "bags"
    with pytest.raises(DatasetError, match=path.name):
        convert_module.convert(root, VERSION, out, progress=False)
    first = out / nusc.scene[0]["name"]
    with BagReader(first) as reader:
        assert reader.message_count > 0 and "/gt/keyframes" in reader.topics
    partial = out / f"{second['name']}.partial"
    with BagReader(partial) as reader:  # closed cleanly up to the bad file
        assert sum(1 for _ in reader.messages(["/LIDAR_TOP/points"])) > 0
    assert not (out / second["name"]).exists()


def test_interrupted_conversion_leaves_written_bags_readable(monkeypatch):
    from perception3d.data import convert as convert_module
    from perception3d.msgs.bag import BagReader

    real = convert_module.read_lidar_points
    calls = {"n": 0}

    def interrupt_late(path):
        calls["n"] += 1
        if calls["n"] == 70:  # the tiny scenes have 50 sweeps each: this is midway through the second
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(convert_module, "read_lidar_points", interrupt_late)
    out = scratch("convert-interrupted")
    with pytest.raises(KeyboardInterrupt):
        convert_module.convert(tiny_dataroot(), VERSION, out, progress=False)
    names = [s["name"] for s in tiny_nusc().scene]
    with BagReader(out / names[0]) as reader:
        assert sum(1 for _ in reader.messages(["/LIDAR_TOP/points"])) == 50
    with BagReader(out / f"{names[1]}.partial") as reader:
        assert sum(1 for _ in reader.messages(["/LIDAR_TOP/points"])) == 19


def test_cli_synth_and_convert(capsys):
    from perception3d.cli import main
    from perception3d.msgs.bag import BagReader

    root = scratch("cli") / "root"
    assert main(["synth", "--out", str(root), "--scenes", "1", "--seconds", "0.5", "--seed", "5",
                 "--render-scale", "0.05", "--occupancy-range", "-8", "-8", "-2", "8", "8", "2",
                 "--occupancy-voxel", "0.5"]) == 0
    assert main(["convert", "--dataroot", str(root), "--version", VERSION, "--scene", "scene-synth-0001",
                 "--out", str(scratch("cli") / "bags"), "--simulate-2d", "poor"]) == 0
    with BagReader(scratch("cli") / "bags" / "scene-synth-0001") as reader:
        assert reader.topics["/CAM_FRONT/detections"] == "vision_msgs/msg/Detection2DArray"
        assert reader.offered_qos("/tf_static")[0].durability.name == "TRANSIENT_LOCAL"
        assert reader.offered_qos("/LIDAR_TOP/points")[0].reliability.name == "BEST_EFFORT"
        assert sum(1 for _ in reader.messages(["/gt/keyframes"])) == 1
    from perception3d.data.occupancy_gt import load_occupancy, occupancy_relpath
    (occ,) = (root / "occupancy" / VERSION).iterdir()
    assert load_occupancy(occ)[1].shape == (32, 32, 8) and occ.name.endswith("_occupancy.npz")
    assert occupancy_relpath(VERSION, "x") == f"occupancy/{VERSION}/x_occupancy.npz"
    capsys.readouterr()
    assert main(["convert", "--dataroot", str(root), "--version", VERSION, "--scene", "scene-0061",
                 "--out", str(scratch("cli") / "bags2")]) == 2
    assert "scene-0061" in capsys.readouterr().err


def test_interpolated_ground_truth_between_keyframes():
    from perception3d.data.nuscenes_io import interpolate_annotations

    def dets(centers, yaws, ids):
        n = len(ids)
        return Detections3D(np.asarray(centers, float), np.ones((n, 3)), yaws, ["car"] * n, np.ones(n), "map",
                            ids=ids)

    k0 = dets([[0, 0, 0], [5, 5, 0]], [np.pi - 0.1, 0.0], ["a", "gone"])
    k1 = dets([[10, 2, 0], [20, 0, 0]], [-np.pi + 0.1, 0.0], ["a", "new"])
    track = [(1_000_000_000, k0), (1_500_000_000, k1)]
    mid, extrapolated = interpolate_annotations(track, 1_100_000_000)  # 20 % of the way
    assert list(mid.ids) == ["a", "gone"] and mid.stamp_ns == 1_100_000_000
    np.testing.assert_allclose(mid.centers[0], [2.0, 0.4, 0.0])
    assert np.cos(mid.yaws[0] - (np.pi - 0.06)) == pytest.approx(1.0)  # across +-pi, not through 0
    np.testing.assert_allclose(mid.centers[1], [5, 5, 0])  # only in the nearer keyframe, velocity unknown: kept
    assert list(extrapolated) == [False, True]
    late, _ = interpolate_annotations([(1_000_000_000, k0), (1_500_000_000, k1)], 1_400_000_000)
    assert list(late.ids) == ["a", "new"]
    after, extrapolated = interpolate_annotations([(1_000_000_000, k0), (1_500_000_000, k1)], 2_000_000_000)
    np.testing.assert_array_equal(after.centers, k1.centers)
    assert extrapolated.all()
    k1.velocities[:] = [[2.0, -1.0], [np.nan, np.nan]]  # known velocity: moved at it past the last keyframe
    after, _ = interpolate_annotations([(1_000_000_000, k0), (1_500_000_000, k1)], 2_000_000_000)
    np.testing.assert_allclose(after.centers, [[11, 1.5, 0], [20, 0, 0]])
    np.testing.assert_allclose(k1.centers, [[10, 2, 0], [20, 0, 0]])  # the keyframe boxes are not modified


def test_interpolation_pairs_each_instance_with_itself_in_both_keyframes():
    """Instances listed in different orders in the two keyframes are each interpolated between their own boxes."""
    from perception3d.data.nuscenes_io import interpolate_annotations

    def dets(ids, x, yaw_deg, vx):
        n = len(ids)
        centers = np.stack([x, np.arange(n, dtype=float), np.zeros(n)], axis=1)
        return Detections3D(centers, np.ones((n, 3)), np.radians(yaw_deg), ["car"] * n, np.ones(n), "map",
                            velocities=np.stack([vx, np.zeros(n)], axis=1), ids=ids)

    ids0, ids1 = ["c", "a", "b"], ["b", "c", "a", "d"]
    x0, x1 = {"c": 0.0, "a": 10.0, "b": 20.0}, {"b": 30.0, "c": 5.0, "a": 40.0, "d": 0.0}
    yaw0, yaw1 = {"c": 0.0, "a": 10.0, "b": 20.0}, {"b": 40.0, "c": 10.0, "a": 30.0, "d": 0.0}
    k0 = dets(ids0, [x0[i] for i in ids0], [yaw0[i] for i in ids0], [1.0, np.nan, 3.0])
    k1 = dets(ids1, [x1[i] for i in ids1], [yaw1[i] for i in ids1], [4.0, 2.0, 6.0, 0.0])
    for t_ns, order in ((1_150_000_000, ids0), (1_350_000_000, ids1)):  # 30 % and 70 % of the way
        w = (t_ns - 1_000_000_000) / 500_000_000
        boxes, extrapolated = interpolate_annotations([(1_000_000_000, k0), (1_500_000_000, k1)], t_ns)
        assert list(boxes.ids) == order
        for row, ident in enumerate(order):
            if ident == "d":  # only in the second keyframe: moved from it at its velocity
                assert extrapolated[row] and boxes.centers[row, 0] == 0.0
                continue
            assert not extrapolated[row]
            assert boxes.centers[row, 0] == pytest.approx((1 - w) * x0[ident] + w * x1[ident])
            assert np.degrees(boxes.yaws[row]) == pytest.approx((1 - w) * yaw0[ident] + w * yaw1[ident])
        velocity = dict(zip(order, boxes.velocities[:, 0]))
        assert velocity["a"] == pytest.approx(6.0)  # unknown in the first keyframe: the second's
        assert velocity["c"] == pytest.approx((1 - w) * 1.0 + w * 2.0)
        assert velocity["b"] == pytest.approx((1 - w) * 3.0 + w * 4.0)
