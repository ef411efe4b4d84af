"""Any nuScenes-schema rig: a Lyft-style table set (3 LiDARs, 7 cameras of two sizes, Lyft categories, float
stamps) converts to every topic with mapped ground truth and measured camera offsets, and replays with all cameras
paired and all LiDARs merged without hand-set parameters; truncated tables give DatasetErrors naming table and
token."""
from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from lyft_data import (
    CAMERA_OFFSETS_S,
    IMAGE_SIZE,
    LIDARS,
    SWEEPS,
    VERSION,
    write_lyft_dataroot,
)
from perception3d.cli import main as cli_main
from perception3d.core.geometry import invert_transform, make_transform
from perception3d.core.sensor_timing import RIG_METADATA_KEY, RigTiming
from perception3d.core.sync import LidarSync, SyncConfig
from perception3d.data.category_map import LYFT, NUSCENES, category_map_for, load_category_map
from perception3d.data.convert import convert
from perception3d.data.nuscenes_io import open_nuscenes, timestamp_ns
from perception3d.errors import ConfigError, DatasetError
from perception3d.msgs.bag import BagReader
from perception3d.msgs.pointcloud import NUSCENES_LIDAR_DTYPE
from perception3d.nodes.base import Frame, LidarInput
from perception3d.nodes.sweep import lidar_sweep


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="p3d-any-rig-"))


@functools.cache
def lyft_root() -> Path:
    return write_lyft_dataroot(_workdir() / "lyft")


@functools.cache
def lyft_bag() -> tuple[Path, tuple[str, ...]]:
    """The converted bag (with SIMULATED 2D detections, for the replay) and what convert logged."""
    from perception3d.data.simulated_2d import PRESETS

    logged: list[str] = []
    (bag,) = convert(lyft_root(), VERSION, _workdir() / "bags", simulate_2d=PRESETS["good"], progress=False,
                     log=logged.append)
    return bag, tuple(logged)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    shutil.rmtree(_workdir(), ignore_errors=True)


def _messages(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with BagReader(bag) as reader:
        for m in reader.messages():
            out.setdefault(m.topic, []).append((m.stamp_ns, m.decode()))
    return out


def test_lyft_style_table_set_converts_to_every_lidar_and_camera_topic():
    bag, _ = lyft_bag()
    messages = _messages(bag)
    for lidar in LIDARS:
        clouds = messages[f"/{lidar}/points"]
        assert len(clouds) == SWEEPS and {c.header.frame_id for _, c in clouds} == {lidar}
    for cam, (width, height) in IMAGE_SIZE.items():
        assert len(messages[f"/{cam}/image/compressed"]) == SWEEPS
        infos = messages[f"/{cam}/camera_info"]
        assert {(i.width, i.height) for _, i in infos} == {(width, height)}
    assert {(i.width, i.height) for cam in IMAGE_SIZE for _, i in messages[f"/{cam}/camera_info"]} == \
        {(77, 64), (120, 68)}
    (static,) = messages["/tf_static"]
    children = {t.child_frame_id for t in static[1].transforms}
    assert children == set(LIDARS) | set(CAMERA_OFFSETS_S)


def test_float_timestamps_become_integer_nanoseconds_in_headers_and_metadata():
    bag, _ = lyft_bag()
    nusc = open_nuscenes(lyft_root(), VERSION)
    top = sorted((sd for sd in nusc.sample_data if sd["channel"] == "LIDAR_TOP"), key=lambda sd: sd["timestamp"])
    assert isinstance(top[0]["timestamp"], float) and top[0]["timestamp"] % 1 != 0  # the fixture is Lyft-like
    stamps = [t for t, _ in _messages(bag)["/LIDAR_TOP/points"]]
    assert stamps == [timestamp_ns(sd) for sd in top]
    assert stamps[0] == 1_557_858_039_302_414_250  # 1557858039302414.25 us, to the nanosecond
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    keyframes = json.loads(info["custom_data"]["perception3d.keyframes"])
    assert all(isinstance(k["stamp_ns"], int) for k in keyframes)
    assert [k["stamp_ns"] for k in keyframes] == stamps[::2]


def test_lyft_categories_map_to_detection_classes_and_the_rest_is_reported():
    bag, logged = lyft_bag()
    gt = _messages(bag)["/gt/detections"]
    assert len(gt) == SWEEPS // 2
    for _, msg in gt:
        classes = sorted(d.results[0].hypothesis.class_id for d in msg.detections)
        assert classes == ["car", "pedestrian", "truck"]  # of car, pedestrian, truck, other_vehicle
    (warning,) = [line for line in logged if "left out" in line]
    assert "'other_vehicle': 6" in warning and "kept 18" in warning


def test_category_map_choice_and_yaml_file(tmp_path):
    assert category_map_for(["car", "pedestrian", "other_vehicle"]) is LYFT
    assert category_map_for(["vehicle.car", "human.pedestrian.adult"]) is NUSCENES
    assert NUSCENES.detection_class("vehicle.bus.bendy") == "bus" and NUSCENES.detection_class("animal") is None
    assert NUSCENES.lidarseg_class("flat.sidewalk") == "sidewalk"
    path = tmp_path / "map.yaml"
    path.write_text("detection:\n  other_vehicle: truck\n  car: car\n  animal: null\n")
    cmap = load_category_map(path)
    assert cmap.detection_class("other_vehicle") == "truck" and cmap.lidarseg_class("other_vehicle") == "truck"
    assert cmap.detection_class("animal") is None and cmap.lidarseg_class("animal") == "ignore"
    path.write_text("detection:\n  other_vehicle: lorry\n")
    with pytest.raises(ConfigError, match="lorry"):
        load_category_map(path)
    out = tmp_path / "bags"
    logged: list[str] = []
    path.write_text("detection:\n  other_vehicle: truck\n  car: car\n  pedestrian: pedestrian\n")
    (bag,) = convert(lyft_root(), VERSION, out, progress=False, category_map=path, log=logged.append)
    (_, first), *_ = _messages(bag)["/gt/detections"]
    assert sorted(d.results[0].hypothesis.class_id for d in first.detections) == ["car", "pedestrian", "truck"]
    (truck,) = [d for d in first.detections if d.results[0].hypothesis.class_id == "truck"]
    assert truck.bbox.size.x == pytest.approx(6.0)  # the other_vehicle (6 m long), not Lyft's 7 m truck
    (warning,) = [line for line in logged if "left out" in line]
    assert "does not list" in warning and "'truck': 6" in warning  # Lyft's 'truck' is not in this map


def test_camera_offsets_are_measured_from_the_dataroot_and_recorded_in_the_bag():
    bag, logged = lyft_bag()
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    rig = RigTiming.from_json(info["custom_data"][RIG_METADATA_KEY])
    assert rig.trigger_lidar == "LIDAR_TOP" and rig.lidars[0] == "LIDAR_TOP" and set(rig.lidars) == set(LIDARS)
    assert set(rig.cameras) == set(CAMERA_OFFSETS_S) and rig.keyframes == SWEEPS // 2
    for cam, offset in CAMERA_OFFSETS_S.items():
        assert rig.camera_offsets_s[cam] == pytest.approx(offset, abs=1e-6)
    (snippet,) = [line for line in logged if "camera_offsets_s" in line]
    params = yaml.safe_load(snippet)["/**"]["ros__parameters"]
    assert params["camera_names"] == list(rig.cameras)
    assert params["sync"]["camera_offsets_s"] == pytest.approx([CAMERA_OFFSETS_S[c] for c in rig.cameras])


def _summary_row(text: str, node: str) -> dict[str, int]:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"{node} ") and re.match(rf"{node}\s+\d", ln)]
    frames_in, processed, outputs, matched, partial = (int(v) for v in line.split()[1:6])
    return {"frames_in": frames_in, "processed": processed, "outputs": outputs, "matched": matched,
            "partial": partial}


def test_replay_pairs_every_sweep_with_all_seven_cameras_without_parameters(capsys, tmp_path):
    """Acceptance 1: no --config, no --remap: cameras and offsets come from the bag's metadata."""
    bag, _ = lyft_bag()
    assert cli_main(["replay", str(bag), "--out", str(tmp_path / "out"), "--graph", "detection3d",
                     "--no-progress"]) == 0
    text = capsys.readouterr().out
    row = _summary_row(text, "detection3d")
    assert row["frames_in"] == row["processed"] == row["matched"] == SWEEPS and row["partial"] == 0
    (deltas,) = [ln for ln in text.splitlines() if "|camera - target| median/max ms" in ln]
    assert sorted(re.findall(r"(CAM_\w+) 0\.0/0\.0", deltas)) == sorted(CAMERA_OFFSETS_S)  # exact pairs, all 7
    assert "missing" not in text


def test_replay_with_a_users_config_keeps_the_users_cameras(capsys, caplog, tmp_path):
    """The user's camera_names and offsets win over the bag's rig; a camera left unpaired by them is reported with
    the parameter to change and the offset its nearest message shows."""
    bag, _ = lyft_bag()
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "camera_names": ["CAM_FRONT", "CAM_FRONT_ZOOMED"], "sync": {"camera_offsets_s": [-0.02, 0.0],
                                                                   "tolerance_s": 0.002}}}}))
    assert cli_main(["replay", str(bag), "--out", str(tmp_path / "out"), "--graph", "detection3d",
                     "--config", str(config), "--no-progress"]) == 0
    text = capsys.readouterr().out
    row = _summary_row(text, "detection3d")
    assert row["matched"] == 0 and row["partial"] == SWEEPS
    assert f"sets missing a camera: {{'CAM_FRONT_ZOOMED': {SWEEPS}}}" in text
    (warning, *_) = [r.getMessage() for r in caplog.records if "CAM_FRONT_ZOOMED missing" in r.getMessage()]
    # the nearest image is the one fired 103 ms before the next sweep, 3 ms before this one
    assert "sync.camera_offsets_s +0.0000 s" in warning and "set its entry of sync.camera_offsets_s to -0.0030" in \
        warning


def test_missing_camera_reason_names_the_parameter_and_the_measured_offset():
    sync = LidarSync(SyncConfig(("CAM_A",), offsets_ns={"CAM_A": -10_000_000}, tolerance_ns=50_000_000))
    lidar_ns = 10_000_000_000
    sync.add_camera("CAM_A", "detections", lidar_ns - 103_000_000, "image")
    sync.add_lidar(lidar_ns, "sweep")
    (synced,) = sync.flush()
    reason = synced.missing["CAM_A"]
    assert "sync.camera_offsets_s -0.0100 s" in reason and "-0.1030 s from the LiDAR stamp" in reason
    assert "to -0.1030" in reason


# ----- truncated tables (acceptance 2) ------------------------------------------------------------------------------
def _truncated_copy(tmp_path: Path, edit) -> Path:
    root = tmp_path / "truncated"
    shutil.copytree(lyft_root(), root)
    tables = {p.stem: json.loads(p.read_text()) for p in (root / VERSION).glob("*.json")}
    edit(tables)
    for name, records in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(records))
    return root


def test_partial_download_missing_a_scenes_first_sample_names_table_and_token(tmp_path):
    removed = {}

    def drop_first_sample(tables):
        first = tables["scene"][0]["first_sample_token"]
        removed["token"] = first
        tables["sample"] = [s for s in tables["sample"] if s["token"] != first]

    root = _truncated_copy(tmp_path, drop_first_sample)
    with pytest.raises(DatasetError) as err:
        convert(root, VERSION, tmp_path / "out", progress=False)
    text = str(err.value)
    assert "scene.json" in text and "first_sample_token" in text and removed["token"] in text


def test_dangling_prev_next_names_table_and_token(tmp_path):
    def dangle(tables):
        sd = next(r for r in tables["sample_data"] if r["next"])
        tables["sample_data"] = [r for r in tables["sample_data"] if r["token"] != sd["next"]]
        for r in tables["sample_data"]:  # a consistent cut except for the dangling link
            if r["prev"] not in {x["token"] for x in tables["sample_data"]}:
                r["prev"] = ""
        dangle.token = sd["token"]

    root = _truncated_copy(tmp_path, dangle)
    with pytest.raises(DatasetError, match=rf"sample_data\.json: sample_data {dangle.token} field 'next'"):
        open_nuscenes(root, VERSION)


def test_non_numeric_timestamp_is_a_dataset_error(tmp_path):
    def corrupt(tables):
        tables["ego_pose"][3]["timestamp"] = "soon"
        corrupt.token = tables["ego_pose"][3]["token"]

    root = _truncated_copy(tmp_path, corrupt)
    with pytest.raises(DatasetError, match=rf"ego_pose\.json: record {corrupt.token} has timestamp 'soon'"):
        open_nuscenes(root, VERSION)


def test_timestamp_ns_is_exact_for_int_and_float_microseconds():
    assert timestamp_ns({"timestamp": 1_533_151_603_547_590}) == 1_533_151_603_547_590_000
    assert timestamp_ns({"timestamp": 1_557_858_039_302_414.75}) == 1_557_858_039_302_414_750
    assert isinstance(timestamp_ns({"timestamp": 1.5}), int)
    assert np.int64(timestamp_ns({"timestamp": 2.25})) == 2250


# ----- several LiDARs ------------------------------------------------------------------------------------------------
class _DrivingTf:
    """map <- base_link driving along x at 10 m/s; LIDAR_A 0.5 m ahead and 1.8 m up, LIDAR_B 2 m ahead and 0.5 m
    up, yawed +90 deg."""

    STATIC = {"base_link": np.eye(4), "LIDAR_A": make_transform(np.eye(3), [0.5, 0.0, 1.8]),
              "LIDAR_B": make_transform(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                                        [2.0, 0.0, 0.5])}

    def map_from(self, frame, stamp_ns):
        return (make_transform(np.eye(3), [10.0 * stamp_ns / 1e9, 0.0, 0.0]) if frame != "map" else np.eye(4)) @ \
            (self.STATIC[frame] if frame != "map" else np.eye(4))

    def lookup(self, target, source, stamp_ns):
        return invert_transform(self.map_from(target, stamp_ns)) @ self.map_from(source, stamp_ns)


def _cloud(points_xyz):
    cloud = np.zeros(len(points_xyz), NUSCENES_LIDAR_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = np.asarray(points_xyz).T
    cloud["intensity"] = 7.0
    return cloud


def test_merged_sweep_moves_other_lidars_into_the_trigger_frame_through_the_world():
    trigger = LidarInput(1_000_000_000, "LIDAR_A", _cloud([[1.0, 2.0, 3.0]]), None)
    other = LidarInput(900_000_000, "LIDAR_B", _cloud([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), None)
    frame = Frame(trigger.stamp_ns, trigger, {}, {}, {"LIDAR_B": other})
    sweep = lidar_sweep(frame, _DrivingTf(), "base_link", [-1, -1, -1, -0.9, -0.9, -0.9], "map")
    # LIDAR_B's origin at t = 0.9 s is at map x = 9 + 2 = 11; LIDAR_A at t = 1 s is at map x = 10.5, z 1.8
    # B's x axis is base +y, so its point (1, 0, 0) is 1 m to the left
    np.testing.assert_allclose(sweep.points, [[1.0, 2.0, 3.0], [0.5, 0.0, -1.3], [0.5, 1.0, -1.3]], atol=1e-9)
    np.testing.assert_allclose(sweep.points_base[1:], [[1.0, 0.0, 0.5], [1.0, 1.0, 0.5]], atol=1e-9)
    assert sweep.merged_cloud.dtype == NUSCENES_LIDAR_DTYPE and list(sweep.merged_cloud["intensity"]) == [7.0] * 3
    np.testing.assert_allclose(sweep.merged_cloud["z"], [3.0, -1.3, -1.3], atol=1e-6)
    still = lidar_sweep(Frame(trigger.stamp_ns, trigger, {}, {}), _DrivingTf(), "base_link", [0] * 6)
    assert len(still.points) == 1 and still.merged_cloud is None


def test_replayed_lyft_bag_segments_all_three_lidars_merged(tmp_path, capsys):
    """No parameters: lidar_names come from the bag's rig; from the second sweep on, the other two LiDARs' previous
    sweeps (94 and 97 ms older) are merged, moved through map."""
    bag, _ = lyft_bag()
    out = tmp_path / "out"
    assert cli_main(["replay", str(bag), "--out", str(out), "--graph", "segmentation", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "LiDARs ['LIDAR_TOP', 'LIDAR_FRONT_LEFT', 'LIDAR_FRONT_RIGHT']" in text
    clouds = [m for _, m in _messages(out)["/perception/segmentation/pointcloud"]]
    counts = [m.width * m.height for m in clouds]
    assert counts == [64] + [192] * (SWEEPS - 1)  # the first sweep has nothing older to merge (counted drop)
    assert "LIDAR_FRONT_LEFT: no sweep to merge" in text
    inputs = _messages(bag)
    top_t, (left_t, left) = inputs["/LIDAR_TOP/points"][1][0], inputs["/LIDAR_FRONT_LEFT/points"][0]
    assert 0 < top_t - left_t < 100_000_000
    left_xyz = np.frombuffer(bytes(left.data), "<f4").reshape(-1, 5)[:, :3]
    merged = np.frombuffer(bytes(clouds[1].data), np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3,
                                                               "offsets": [0, 4, 8], "itemsize": clouds[1].point_step}))
    # identity mountings (fixture): LIDAR_FRONT_LEFT (3.6, 0.8, 0.5), LIDAR_TOP (1.2, 0, 1.8); ego at 5 m/s along x
    expected = left_xyz + [3.6 - 1.2 - 5.0 * (top_t - left_t) / 1e9, 0.8, 0.5 - 1.8]
    got = np.stack([merged["x"], merged["y"], merged["z"]], axis=1)[64:128]
    np.testing.assert_allclose(got, expected, atol=1e-4)
