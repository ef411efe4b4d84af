"""The sweep context shared per sweep by the nodes of one process (nodes.shared_sweep, issue 18): the ground surface
and the 2D boxes' frustum clusters."""
from __future__ import annotations

import numpy as np
import pytest

from perception3d.bench.algo import synthetic_frame
from perception3d.bench.graph import write_frame_bag
from perception3d.core.detections import Detections2D
from perception3d.core.frustum import CameraView, ClusterParams
from perception3d.core.ground import GroundParams, sweep_ground
from perception3d.core.ground_contact import GroundContact
from perception3d.core.lift3d import LiftParams, detect_3d
from perception3d.core.segmentation import segment_points
from perception3d.core.view_frustums import view_frustums
from perception3d.msgs.bag import BagReader
from perception3d.msgs.topics import OBJECTS_TOPIC, SEGMENTATION_TOPIC
from perception3d.nodes import detection3d as detection3d_node
from perception3d.nodes import segmentation as segmentation_node
from perception3d.nodes import shared_sweep
from perception3d.nodes.shared_sweep import SharedSweep
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame()


def test_the_same_sweep_is_computed_once_and_any_other_input_again(frame):
    shared = SharedSweep(size=2)
    T = frame.rig.T_base_lidar
    first = shared.get(frame.points, T, GroundParams(), "LIDAR_TOP", 1)
    assert shared.get(frame.points.copy(), T, GroundParams(), "LIDAR_TOP", 1) is first and shared.computed == 1
    assert np.array_equal(first.split.is_ground, sweep_ground(frame.points, T).is_ground)
    moved = frame.points.copy()
    moved[0, 2] += 0.01
    others = [(moved, T, GroundParams(), "LIDAR_TOP", 1),
              (frame.points, T, GroundParams(kerb_step_m=0.1), "LIDAR_TOP", 1),
              (frame.points, T, GroundParams(), "LIDAR_TOP", 2), (frame.points, T, GroundParams(), "lidar_2", 1)]
    for args in others:
        assert shared.get(*args) is not first
    assert shared.computed == 1 + len(others)
    assert shared.get(frame.points, T, GroundParams(), "LIDAR_TOP", 1) is not first  # evicted: only 2 kept


def _copied(views):
    """Equal views built anew, as a second node builds them from the same messages."""
    return [CameraView(Detections2D(v.detections.boxes_xyxy.copy(), v.detections.class_ids.copy(),
                                    v.detections.scores.copy()), v.camera, v.T_cam_lidar.copy()) for v in views]


def test_frustums_are_computed_once_for_equal_views_and_cluster_choice_and_again_otherwise(frame):
    context = SharedSweep().get(frame.points, frame.rig.T_base_lidar, GroundParams(), "LIDAR_TOP", 1)
    lift, segmentation = LiftParams().cluster, ClusterParams()
    assert lift != segmentation  # detection3d cuts clusters into segments, segmentation does not: still shared
    first = context.frustums(frame.views, lift)
    assert context.frustums(_copied(frame.views), segmentation) is first and context.frustums_computed == 1
    moved = _copied(frame.views)
    moved[2].detections.boxes_xyxy[0, 0] += 1.0
    assert context.frustums(moved, segmentation) is not first
    assert context.frustums(frame.views, ClusterParams(gap_m=1.0)) is not first
    assert context.frustums_computed == 3
    objects = frame.points[~context.split.is_ground]
    assert len(first) == 6 and all(f is not None for f in first)
    assert np.array_equal(first[0].cloud.uv, view_frustums(objects, frame.views[:1], lift)[0].cloud.uv)


def test_a_given_split_and_frustums_give_the_outputs_of_computing_them_and_others_are_refused(frame):
    T = frame.rig.T_base_lidar
    split = sweep_ground(frame.points, T)
    frustums = view_frustums(frame.points[~split.is_ground], frame.views, LiftParams().cluster,
                             GroundContact.of(split, T, GroundParams()))
    alone = detect_3d(frame.points, frame.views, T)
    given = detect_3d(frame.points, frame.views, T, split=split, frustums=frustums)
    assert len(alone) > 0 and np.array_equal(alone.centers, given.centers)
    assert np.array_equal(alone.scores, given.scores)
    labels, scores = segment_points(frame.points, frame.views, T)
    labels_given, scores_given = segment_points(frame.points, frame.views, T, split=split, frustums=frustums)
    assert np.array_equal(labels, labels_given) and np.array_equal(scores, scores_given)
    with pytest.raises(ValueError, match="ground split"):
        detect_3d(frame.points[1:], frame.views, T, params=LiftParams(), split=split)
    with pytest.raises(ValueError, match="view frustums of 5 cameras given for 6"):
        segment_points(frame.points, frame.views, T, split=split, frustums=frustums[:5])


def test_detection3d_and_segmentation_in_one_process_compute_each_sweep_s_ground_and_frustums_once(tmp_path,
                                                                                                  monkeypatch):
    write_frame_bag(tmp_path / "frames", sweeps=4)
    calls = []
    monkeypatch.setattr(shared_sweep, "view_frustums", lambda *args: calls.append(1) or view_frustums(*args))
    fresh = SharedSweep()  # not the process's: an earlier test may have replayed sweeps of the same stamps and points
    monkeypatch.setattr(detection3d_node, "SHARED_SWEEP", fresh)
    monkeypatch.setattr(segmentation_node, "SHARED_SWEEP", fresh)
    replay(tmp_path / "frames", tmp_path / "out", FULL_GRAPH.select(("detection3d", "segmentation")), progress=False)
    assert fresh.computed == 4 and len(calls) == 4
    with BagReader(tmp_path / "out") as bag:
        topics = [message.topic for message in bag.messages([OBJECTS_TOPIC, SEGMENTATION_TOPIC])]
    assert sorted(topics) == sorted([OBJECTS_TOPIC, SEGMENTATION_TOPIC] * 4)
