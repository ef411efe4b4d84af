"""Bad input never crashes the bag runtime or costs frames that do not depend on it (issue 15).

Each test replays a short synthetic bag with one message made bad the way a misbehaving driver, a glitching camera
or a full disk makes it, and checks: no exception, a typed and counted drop naming the topic and field, and every
frame that does not depend on the bad message unchanged (byte-identical to the clean replay).
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bag_mutation import at, mutated_copy, outputs_by_stamp
from perception3d.bench.robustness import png_bomb
from perception3d.cli import main as cli_main
from perception3d.core.detections import Detections3D
from perception3d.core.lift3d import bev_nms
from perception3d.msgs.bag import BagReader
from perception3d.msgs.detections import detections2d_to_msg
from perception3d.msgs.image import compressed_image_msg, encode_jpeg
from perception3d.runtime.bag import replay
from replay_fixtures import (
    CHAIN_GRAPH,
    IMAGE_SIZE,
    OBJECTS_TOPIC,
    T0,
    TEST_GRAPH,
    start_slow_replay,
    write_nuscenes_timed_bag,
)

ROOT = Path(__file__).resolve().parents[1]
LIDAR = "/LIDAR_TOP/points"
HOUR_NS = 3600 * 10**9


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A 1 s bag (20 sweeps) and its clean replay's outputs {stamp: bytes}."""
    root = tmp_path_factory.mktemp("clean")
    stamps = write_nuscenes_timed_bag(root / "bag", duration_s=1.0)
    replay(root / "bag", root / "out", TEST_GRAPH, progress=False)
    return root / "bag", stamps, outputs_by_stamp(root / "out")


@pytest.fixture(scope="module")
def clean_images(tmp_path_factory):
    """A 1 s bag with JPEG images for the camera-triggered chain, and its clean replay's outputs."""
    root = tmp_path_factory.mktemp("clean_images")
    stamps = write_nuscenes_timed_bag(root / "bag", duration_s=1.0, with_images=True)
    replay(root / "bag", root / "out", CHAIN_GRAPH, progress=False)
    return root / "bag", stamps, outputs_by_stamp(root / "out")


def replay_mutated(clean_bag: Path, tmp_path: Path, mutate, graph=TEST_GRAPH):
    bag = tmp_path / "bad"
    assert mutated_copy(clean_bag, bag, mutate) >= 1
    summary = replay(bag, tmp_path / "out", graph, progress=False)
    return summary, outputs_by_stamp(tmp_path / "out")


def drops(summary) -> dict[str, int]:
    """Every counted drop of the replay and its nodes."""
    out = dict(summary.drops)
    for runner in summary.runners:
        out.update(runner.stats.drops)
    return out


def same_except(outputs: dict[int, bytes], clean: dict[int, bytes], affected: set[int]) -> None:
    """Every clean frame not in `affected` came out byte-identical."""
    for stamp, data in clean.items():
        if stamp not in affected:
            assert outputs.get(stamp) == data, f"frame {stamp} changed or lost"


# -- crashes (a traceback before issue 15) ------------------------------------------------------------------------
def test_cloud_whose_x_field_has_count_3_is_a_counted_drop(clean, tmp_path):
    bag, stamps, reference = clean

    def vector_x(msg):
        msg.fields[0].count = 3  # x as 3 floats: still inside point_step, so the layout itself is valid

    summary, outputs = replay_mutated(bag, tmp_path, at(LIDAR, 4, vector_x))
    assert drops(summary) == {f"PointCloudError: {LIDAR} field 'fields ('x').count'": 1}
    same_except(outputs, reference, {int(stamps["lidar"][4])})
    assert int(stamps["lidar"][4]) not in outputs


@pytest.mark.parametrize("bad", ["zero_quaternion", "nan_translation"])
def test_bad_tf_is_a_counted_drop_and_costs_no_frame(clean, tmp_path, bad):
    bag, _, reference = clean

    def change(msg):
        t = msg.transforms[0].transform
        if bad == "zero_quaternion":
            t.rotation.x = t.rotation.y = t.rotation.z = t.rotation.w = 0.0
        else:
            t.translation.x = float("nan")

    summary, outputs = replay_mutated(bag, tmp_path, at("/tf", 5, change))
    field = "rotation" if bad == "zero_quaternion" else "translation"
    assert drops(summary) == {"TransformMessageError on /tf": 1}
    assert f"transforms[0].transform.{field}" in summary.last_drop["TransformMessageError on /tf"]
    # /tf at every sweep: the sweep whose transform was bad interpolates its neighbours (a constant velocity)
    assert outputs.keys() == reference.keys()


def test_png_that_claims_200_megapixels_is_a_counted_drop(clean_images, tmp_path):
    bag, stamps, reference = clean_images
    data = png_bomb(20000, 10000)  # 1x1 pixels, IHDR (and its CRC) claiming 20000x10000

    def bomb_image(msg):
        return compressed_image_msg(data, int(stamps["CAM_FRONT"][3]), "CAM_FRONT", fmt="png")

    summary, outputs = replay_mutated(bag, tmp_path, at("/CAM_FRONT/image/compressed", 3, bomb_image), CHAIN_GRAPH)
    assert drops(summary) == {"ImageError: /CAM_FRONT/image/compressed field 'data'": 1}
    assert "claims" in summary.runners[0].stats.last_error["ImageError: /CAM_FRONT/image/compressed field 'data'"]
    front = int(stamps["CAM_FRONT"][3])
    affected = {int(s) for s in stamps["lidar"] if abs(int(s) - 35_500_000 - front) <= 50_000_000}
    same_except(outputs, reference, affected)


def test_output_that_cannot_be_created_is_one_error_line_exit_3(clean, tmp_path):
    bag, _, _ = clean
    (tmp_path / "a_file").write_text("not a directory")
    proc = run_cli(["replay", str(bag), "--out", str(tmp_path / "a_file" / "out"), "--no-progress"])
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("perception3d replay: error:") and "a_file/out: cannot create the output bag" in line


def test_full_disk_is_one_error_line_exit_3_and_what_was_written_is_recoverable(tmp_path):
    bag = tmp_path / "big"
    write_nuscenes_timed_bag(bag, duration_s=4.0, points_per_sweep=3000)  # inputs copied: ~5 MB of output
    out = tmp_path / "out"
    limit = 2_500_000  # bytes a process may write (RLIMIT_FSIZE): two 1 MiB chunks, then "disk full"

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run_cli(["replay", str(bag), "--out", str(out), "--copy-inputs", "--no-progress"], preexec_fn=small_disk)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert str(out) in line and "File too large" in line and f"perception3d recover {out}" in line
    assert cli_main(["recover", str(out), "--out", str(tmp_path / "recovered")]) == 0
    with BagReader(tmp_path / "recovered") as reader:
        assert sum(1 for _ in reader.messages([LIDAR])) >= 20  # the completed chunks were kept


def run_cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "test")])}
    command = [sys.executable, "-m", "perception3d.cli", *args, "--graph-def", "replay_fixtures:TEST_GRAPH"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_signals_during_close_leave_a_complete_bag(tmp_path):
    """Ctrl-C then a burst of further signals (SIGINT and SIGTERM, every 5 ms): the output is closed anyway."""
    proc, out = start_slow_replay(tmp_path, 0.05, "--copy-inputs")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    for k in range(200):
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGTERM if k % 2 else signal.SIGINT)
        time.sleep(0.005)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "INTERRUPTED" in stdout
    assert (out / "metadata.yaml").exists()
    with BagReader(out) as reader:
        assert not reader.record_by_record and reader.message_count > 0


# -- one bad message costs only what depends on it ------------------------------------------------------------------
def test_camera_missing_from_tf_static_leaves_only_that_camera_out(clean, tmp_path):
    bag, stamps, _ = clean

    def drop_cam_back(msg):
        msg.transforms = [t for t in msg.transforms if t.child_frame_id != "CAM_BACK"]

    summary, outputs = replay_mutated(bag, tmp_path, at("/tf_static", 0, drop_cam_back))
    assert len(outputs) == len(stamps["lidar"])
    reasons = drops(summary)
    (reason,) = reasons
    assert reason.startswith("TransformError: frame 'CAM_BACK' unknown") and reasons[reason] == len(stamps["lidar"])
    with BagReader(tmp_path / "out") as reader:
        for message in reader.messages([OBJECTS_TOPIC]):
            assert sorted(d.id for d in message.decode().detections) == sorted(
                c for c in stamps if c not in ("lidar", "CAM_BACK"))


@pytest.mark.parametrize("stamp", [0, "+1h"])
def test_one_tf_stamp_out_of_range_is_dropped_not_pruning_history(clean, tmp_path, stamp):
    bag, _, reference = clean

    def restamp(msg):
        t = msg.transforms[0]
        ns = 0 if stamp == 0 else T0 + HOUR_NS
        t.header.stamp.sec, t.header.stamp.nanosec = divmod(ns, 10**9)

    config = tmp_path / "map.yaml"  # outputs in map: every frame needs /tf
    config.write_text("/**:\n  ros__parameters: {}\ncentroid:\n  ros__parameters:\n    output_frame: map\n")
    clean_out = replay(bag, tmp_path / "clean_out", TEST_GRAPH, config=config, progress=False)
    assert not drops(clean_out)
    mutated = tmp_path / "bad"
    mutated_copy(bag, mutated, at("/tf", 8, restamp))
    summary = replay(mutated, tmp_path / "out", TEST_GRAPH, config=config, progress=False)
    assert drops(summary) == {"refused /tf stamp on /tf": 1}
    assert outputs_by_stamp(tmp_path / "out").keys() == outputs_by_stamp(tmp_path / "clean_out").keys()
    del reference


@pytest.mark.parametrize("topic", ["/CAM_FRONT/detections", LIDAR])
def test_one_old_header_stamp_does_not_reset_the_synchronizer(clean, tmp_path, topic):
    bag, stamps, reference = clean

    def old(msg):
        msg.header.stamp.sec -= 3600

    index = 6
    summary, outputs = replay_mutated(bag, tmp_path, at(topic, index, old))
    sync = summary.runners[0].sync.stats
    assert sync.resets == 0 and sync.dropped == {"stamp far from message time (outlier)": 1}
    source = stamps["lidar" if topic == LIDAR else "CAM_FRONT"][index]
    affected = {int(s) for s in stamps["lidar"] if abs(int(s) - int(source)) <= 100_000_000}
    same_except(outputs, reference, affected)
    assert len(outputs) >= len(reference) - (topic == LIDAR)


def test_camera_info_that_does_not_describe_the_image_drops_that_camera(clean_images, tmp_path):
    bag, stamps, reference = clean_images

    def half_size(msg):
        msg.width, msg.height = IMAGE_SIZE[0] // 2, IMAGE_SIZE[1] // 2

    mutate = at("/CAM_BACK/camera_info", 0, half_size)

    def every_info(topic, index, message):  # the driver's CameraInfo is wrong for the whole drive
        return mutate(topic, 0, message) if topic == "/CAM_BACK/camera_info" else None

    summary, outputs = replay_mutated(bag, tmp_path, every_info, CHAIN_GRAPH)
    imagebox, centroid = summary.runners
    reason = "ImageError: /CAM_BACK/image/compressed field 'width/height'"
    assert imagebox.stats.drops == {reason: len(stamps["CAM_BACK"])}
    assert "CameraInfo size 8x6" in imagebox.stats.last_error[reason]
    assert len(outputs) == len(reference) and centroid.sync.stats.missing["CAM_BACK"] == len(reference)


def test_2d_boxes_are_checked_one_by_one(tmp_path):
    from perception3d.core.detections import Detections2D
    from perception3d.msgs.detections import checked_detections2d

    dets = Detections2D(np.array([[10, 10, 50, 50], [10, 10, 50, 50], [10, 10, 50, 50], [-100, 10, 50, 2000],
                                  [700, 10, 900, 50], [10, 10, 50, 50], [10, 10, 50, 50]], dtype=float),
                        ["car", "car", "car", "truck", "bus", "spaceship", ""], [0.9, 7.5, -1.0, 0.8, 0.7, 0.6, 0.5],
                        "CAM_FRONT", 5)
    msg = detections2d_to_msg(dets)
    out, dropped = checked_detections2d(msg, "/CAM_FRONT/detections", (640, 480), {}, ("car", "truck", "bus"), 100)
    assert list(out.class_ids) == ["car", "truck"]
    np.testing.assert_allclose(out.boxes_xyxy[1], [0, 10, 50, 480])  # clipped to the image
    assert dropped == {"score outside [0, 1]": 2, "unknown class id 'spaceship'": 1, "unknown class id ''": 1,
                       "box of zero or negative size (after clipping to the image)": 1}
    many = Detections2D(np.tile([10.0, 10, 50, 50], (20, 1)), ["car"] * 20, np.linspace(0.1, 0.9, 20), "c", 5)
    out, dropped = checked_detections2d(detections2d_to_msg(many), "/t", None, {}, ("car",), 5)
    np.testing.assert_allclose(out.scores, np.linspace(0.1, 0.9, 20)[-5:])
    assert dropped == {"more than 5 boxes in one message (lowest scores dropped)": 15}


def test_2d_box_checks_read_the_best_finite_hypothesis_and_reject_non_finite_geometry():
    from perception3d.core.detections import Detections2D
    from perception3d.msgs.detections import checked_detections2d

    dets = Detections2D(np.tile([10.0, 10, 50, 50], (4, 1)), ["car"] * 4, [0.5] * 4, "CAM_FRONT", 5)
    msg = detections2d_to_msg(dets)
    first = msg.detections[0].results[0]
    nan_truck, low_bus = (type(first)(hypothesis=type(first.hypothesis)(class_id=c, score=s), pose=first.pose)
                          for c, s in (("truck", float("nan")), ("bus", 0.25)))
    msg.detections[0].results = [nan_truck, first, low_bus]  # NaN ranks last: the car at 0.5 is read
    msg.detections[1].results = [nan_truck]  # its only hypothesis has no finite score
    msg.detections[2].bbox.size_x = float("inf")
    msg.detections[3].bbox.center.position.y = float("nan")
    out, dropped = checked_detections2d(msg, "/CAM_FRONT/detections", None, {}, ("car", "truck", "bus"), 100)
    assert list(out.class_ids) == ["car"] and list(out.scores) == [0.5]
    assert list(dropped.items()) == [("score outside [0, 1]", 1), ("box with a non-finite centre or size", 2)]


def test_unknown_class_ids_are_counted_per_id_in_the_summary(clean, tmp_path):
    bag, _, _ = clean

    def relabel(msg):
        msg.detections[0].results[0].hypothesis.class_id = "unicorn"

    summary, _ = replay_mutated(bag, tmp_path, at("/CAM_FRONT/detections", 2, relabel))
    reason = "box dropped: /CAM_FRONT/detections: unknown class id 'unicorn'"
    assert list(drops(summary)) == [reason]  # counted in each sweep the image serves (one or two)
    assert reason in summary.format()
    assert any(reason in key for key in summary.runners[0].health(1.0)[2])


def test_nms_of_20000_boxes_stays_small():
    rng = np.random.default_rng(0)
    n = 20_000
    dets = Detections3D(rng.uniform(-50, 50, (n, 3)), np.tile([4.5, 1.9, 1.6], (n, 1)), rng.uniform(-3, 3, n),
                        ["car"] * n, rng.uniform(0, 1, n), "base_link", 0)
    tracemalloc.start()
    kept = bev_nms(dets, 0.3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # an N x N x 2 float64 array alone is 6.4 GB
    assert 0 < len(kept) < n


def test_nms_keeps_what_greedy_nms_keeps():
    """Against a direct greedy NMS: highest score first, suppressed by any kept same-class box it overlaps (or, for a
    class of thin footprint, whose centre is nearer than the class's short side)."""
    from perception3d.core.boxes import bev_iou
    from perception3d.core.classes import SIZE_PRIOR_WLH

    def merge_distance(cls):
        short, long = sorted(SIZE_PRIOR_WLH[cls][0][:2])
        return short if long >= 2 * short else 0.0

    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 40
        classes = rng.choice(["car", "barrier", "pedestrian"], n)
        sizes = np.array([[SIZE_PRIOR_WLH[c][0][1], SIZE_PRIOR_WLH[c][0][0], 1.5] for c in classes])
        dets = Detections3D(rng.uniform(-8, 8, (n, 3)), sizes, rng.uniform(-3, 3, n), classes, rng.uniform(0, 1, n),
                            "base_link", 0)
        kept = []
        for i in np.argsort(-dets.scores, kind="stable"):
            same = [k for k in kept if classes[k] == classes[i]]
            gap = [np.linalg.norm(dets.centers[i, :2] - dets.centers[k, :2]) for k in same]
            iou = [bev_iou(dets.centers[i], sizes[i], dets.yaws[i:i + 1], dets.centers[k], sizes[k],
                           dets.yaws[k:k + 1])[0, 0] for k in same]
            if any(g < merge_distance(classes[i]) or u > 0.3 for g, u in zip(gap, iou)):
                continue
            kept.append(i)
        assert list(bev_nms(dets, 0.3)) == sorted(kept)


# -- accepted silently before: now a clear outcome ------------------------------------------------------------------
def test_inflated_message_count_in_metadata_is_not_an_error(clean, tmp_path):
    bag, stamps, _ = clean
    copy = tmp_path / "inflated"
    copy.mkdir()
    for file in bag.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    meta = (copy / "metadata.yaml").read_text()
    (copy / "metadata.yaml").write_text(meta.replace("message_count: ", "message_count: 9"))
    summary = replay(copy, tmp_path / "out", TEST_GRAPH, progress=False)
    assert not summary.error and len(outputs_by_stamp(tmp_path / "out")) == len(stamps["lidar"])


def test_a_wrong_size_image_costs_only_its_camera(clean_images, tmp_path):
    bag, stamps, reference = clean_images
    small = encode_jpeg(np.full((6, 8, 3), 50, np.uint8))

    def wrong_size(msg):
        return compressed_image_msg(small, int(stamps["CAM_FRONT_LEFT"][5]), "CAM_FRONT_LEFT")

    summary, outputs = replay_mutated(bag, tmp_path, at("/CAM_FRONT_LEFT/image/compressed", 5, wrong_size),
                                      CHAIN_GRAPH)
    imagebox = summary.runners[0]
    assert imagebox.stats.drops == {"ImageError: /CAM_FRONT_LEFT/image/compressed field 'width/height'": 1}
    boxes = outputs_by_stamp(tmp_path / "out", "/imagebox/CAM_FRONT/detections")
    clean_boxes = outputs_by_stamp(bag.parent / "out", "/imagebox/CAM_FRONT/detections")
    assert boxes == clean_boxes  # the other cameras of that firing cycle were detected as before
