"""NodeRunner behaviour that the replay tests do not reach: output checks, throttled logs, health levels."""
from __future__ import annotations

import time

import numpy as np
import pytest

from perception3d.core.tf_buffer import TfBuffer
from perception3d.errors import ConfigError
from perception3d.msgs.detections import detections3d_to_msg
from perception3d.msgs.pointcloud import array_to_pointcloud2
from perception3d.nodes.base import NodeDefinition, OutputSpec
from perception3d.nodes.params import resolve_node_parameters
from perception3d.nodes.runner import NodeRunner, ThrottledLog
from replay_fixtures import T0, CentroidNode, sweep_points


class LidarOnly(NodeDefinition):
    name = "lidaronly"
    outputs = (OutputSpec("~/output/objects", "vision_msgs/msg/Detection3DArray"),)
    stamp_offset_ns = 0
    port = "~/output/objects"

    def process(self, frame, tf, timer):
        from perception3d.core.detections import Detections3D

        dets = Detections3D(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), [], np.zeros(0), "base_link",
                            frame.stamp_ns + self.stamp_offset_ns)
        return [(self.port, detections3d_to_msg(dets, self.factory))]


def runner_for(definition, **kw):
    params = resolve_node_parameters(None, definition.name, definition.parameters)
    return NodeRunner(definition, params, definition.ports_as_topics(params["camera_names"]), TfBuffer(), **kw)


def cloud(k):
    return array_to_pointcloud2(sweep_points(k), T0 + k * 50_000_000, "LIDAR_TOP")


def test_lidar_only_node_runs_per_sweep_and_outputs_are_checked():
    runner = runner_for(LidarOnly)
    assert runner.sync is None
    (out,) = runner.on_message("~/input/pointcloud", cloud(0))
    assert out.topic == "~/output/objects" and out.stamp_ns == T0

    class WrongStamp(LidarOnly):
        stamp_offset_ns = 1

    with pytest.raises(ValueError, match="stamped .* instead of the source stamp"):
        runner_for(WrongStamp).on_message("~/input/pointcloud", cloud(0))

    class WrongPort(LidarOnly):
        port = "~/output/other"

    with pytest.raises(ValueError, match="undeclared port"):
        runner_for(WrongPort).on_message("~/input/pointcloud", cloud(0))


def test_cpu_time_per_frame_leaves_out_waiting_and_counts_work():
    """timings_ms['cpu'] is the CPU the frame used, 'total' its wall-clock time: a frame that waits (for a core
    other work holds, here a sleep) shows the wait in the total only."""

    class Waits(LidarOnly):
        def process(self, frame, tf, timer):
            time.sleep(0.03)
            return super().process(frame, tf, timer)

    class Works(LidarOnly):
        def process(self, frame, tf, timer):
            start = time.process_time()
            while time.process_time() - start < 0.02:
                pass
            return super().process(frame, tf, timer)

    waits, works = runner_for(Waits), runner_for(Works)
    waits.on_message("~/input/pointcloud", cloud(0))
    works.on_message("~/input/pointcloud", cloud(0))
    (wait_total,), (wait_cpu,) = waits.stats.timings_ms["total"], waits.stats.timings_ms["cpu"]
    (work_total,), (work_cpu,) = works.stats.timings_ms["total"], works.stats.timings_ms["cpu"]
    assert wait_total >= 30.0 and wait_cpu < 10.0
    assert work_cpu >= 20.0 and work_total >= work_cpu - 1.0


def test_check_definition_rejects_inconsistent_nodes():
    class NoName(LidarOnly):
        name = ""

    class BadStream(LidarOnly):
        camera_streams = ("depth",)

    class CameraWithDetections(LidarOnly):
        trigger = "camera"
        camera_streams = ("image", "detections")

    for cls, message in ((NoName, "name is empty"), (BadStream, "unknown"), (CameraWithDetections, "'image'")):
        with pytest.raises(TypeError, match=message):
            cls.check_definition()


def test_throttled_log_counts_what_it_holds_back():
    lines, now = [], [0.0]
    log = ThrottledLog(lines.append, 5.0, clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 6.0):
        now[0] = t
        log("camera_info", "waiting for camera_info of CAM_FRONT")
    log("other", "another problem")
    assert lines == ["waiting for camera_info of CAM_FRONT",
                     "waiting for camera_info of CAM_FRONT (2 similar messages suppressed)", "another problem"]


def test_health_levels():
    warnings = []
    runner = runner_for(CentroidNode, log=warnings.append)
    level, _, values = runner.health(1.0)
    assert level == "OK" and values["sync matched"] == "0"
    for k in range(6):  # sweeps without any camera: partial sets after the timeout
        runner.on_message("~/input/pointcloud", cloud(k))
    level, summary, values = runner.health(1.0)
    # no transforms in the buffer: every frame is dropped -> ERROR; the partial sets are in the values
    assert level == "ERROR" and "none processed" in summary
    assert int(values["sync partial"]) >= 3 and values["CAM_FRONT missing"] == values["sync partial"]
    assert any(k.startswith("dropped: TransformError") for k in values)
    assert any("CAM_FRONT missing from the set" in w for w in warnings)
    level, _, _ = runner.health(1.0)
    assert level == "OK"  # nothing new in the window


def test_timing_history_is_bounded():
    from perception3d.nodes.runner import TIMING_WINDOW, NodeStats

    stats = NodeStats()
    for i in range(TIMING_WINDOW + 10):
        stats.timings_ms["total"].append(float(i))
    assert len(stats.timings_ms["total"]) == TIMING_WINDOW
    assert stats.timings_ms["total"][0] == 10.0  # the oldest were dropped, the percentiles cover the newest


def test_class_map_translates_an_external_detectors_labels():
    from perception3d.core.classes import parse_class_map
    from perception3d.core.detections import Detections2D

    mapping = parse_class_map(["person:pedestrian", " bus : bus", "kite:"])
    dets = Detections2D(np.zeros((4, 4)), ["person", "car", "kite", "bus"], [0.9, 0.8, 0.7, 0.6])
    out = dets.with_class_map(mapping)
    assert list(out.class_ids) == ["pedestrian", "car", "bus"] and list(out.scores) == [0.9, 0.8, 0.6]
    with pytest.raises(ValueError, match="'oops' is not 'from:to'"):
        parse_class_map(["oops"])
    params = resolve_node_parameters(None, CentroidNode.name, CentroidNode.parameters)
    params["detections.class_map"] = ["broken"]
    with pytest.raises(ConfigError, match="detections.class_map"):
        NodeRunner(CentroidNode, params, CentroidNode.ports_as_topics(params["camera_names"]), TfBuffer())


def _image_box_runner(cameras):
    from replay_fixtures import ImageBoxNode

    params = resolve_node_parameters(None, ImageBoxNode.name, ImageBoxNode.parameters)
    params["camera_names"] = list(cameras)
    return NodeRunner(ImageBoxNode, params, ImageBoxNode.ports_as_topics(cameras), TfBuffer()), params


def _camera_messages(name, stamp_ns):
    from perception3d.core.camera import CameraModel
    from perception3d.msgs.camera_info import camera_model_to_camera_info
    from perception3d.msgs.image import compressed_image_msg, encode_jpeg

    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    return (compressed_image_msg(encode_jpeg(np.full((48, 64, 3), 90, np.uint8)), stamp_ns, name),
            camera_model_to_camera_info(CameraModel(K, 64, 48, frame_id=name), stamp_ns))


def test_a_camera_info_arriving_just_after_its_image_keeps_the_camera_in_its_firing_cycle():
    """Issue 16: a CameraInfo stamped like its image but recorded after it (one-sweep bags) used to cost the
    camera ('no camera_info yet'); the cycle now waits for it up to sync.timeout_s."""
    cameras = ("CAM_FRONT", "CAM_BACK")
    runner, _ = _image_box_runner(cameras)
    out = []
    messages = {name: _camera_messages(name, T0) for name in cameras}
    for name in cameras:  # both images first: the firing cycle is complete before any CameraInfo
        out += runner.on_message(f"~/input/{name}/image", messages[name][0])
    assert out == [] and runner.stats.frames_processed == 0
    out += runner.on_message("~/input/CAM_FRONT/camera_info", messages["CAM_FRONT"][1])
    assert out == []  # CAM_BACK's CameraInfo is still due
    out += runner.on_message("~/input/CAM_BACK/camera_info", messages["CAM_BACK"][1])
    assert sorted(p.topic for p in out) == ["~/output/CAM_BACK/detections", "~/output/CAM_FRONT/detections"]
    assert runner.stats.drops == {}


def test_a_camera_whose_info_never_comes_goes_missing_after_the_timeout_and_the_rest_runs():
    cameras = ("CAM_FRONT", "CAM_BACK")
    runner, params = _image_box_runner(cameras)
    front = _camera_messages("CAM_FRONT", T0)
    runner.on_message("~/input/CAM_FRONT/camera_info", front[1])
    out = runner.on_message("~/input/CAM_FRONT/image", front[0])
    out += runner.on_message("~/input/CAM_BACK/image", _camera_messages("CAM_BACK", T0)[0])
    assert out == []
    out = runner.advance(T0 + int(params["sync.timeout_s"] * 1e9))
    assert [p.topic for p in out] == ["~/output/CAM_FRONT/detections"]
    assert runner.stats.drops == {"CAM_BACK: no camera_info yet": 1}
