"""The ground surface shared per sweep by the nodes of one process (nodes.shared_ground, issue 18)."""
from __future__ import annotations

import numpy as np
import pytest

from perception3d.bench.algo import synthetic_frame
from perception3d.bench.graph import write_frame_bag
from perception3d.core.ground import GroundParams, sweep_ground
from perception3d.core.lift3d import LiftParams, detect_3d
from perception3d.core.segmentation import segment_points
from perception3d.msgs.bag import BagReader
from perception3d.nodes.shared_ground import SHARED_GROUND, SharedGround
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH, SEGMENTATION_TOPIC


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame()


def test_the_same_sweep_is_computed_once_and_any_other_input_again(frame):
    shared = SharedGround(size=2)
    T = frame.rig.T_base_lidar
    first = shared.get(frame.points, T, GroundParams(), "LIDAR_TOP", 1)
    assert shared.get(frame.points.copy(), T, GroundParams(), "LIDAR_TOP", 1) is first and shared.computed == 1
    assert np.array_equal(first.is_ground, sweep_ground(frame.points, T).is_ground)
    moved = frame.points.copy()
    moved[0, 2] += 0.01
    others = [(moved, T, GroundParams(), "LIDAR_TOP", 1),
              (frame.points, T, GroundParams(kerb_step_m=0.1), "LIDAR_TOP", 1),
              (frame.points, T, GroundParams(), "LIDAR_TOP", 2), (frame.points, T, GroundParams(), "lidar_2", 1)]
    for args in others:
        assert shared.get(*args) is not first
    assert shared.computed == 1 + len(others)
    assert shared.get(frame.points, T, GroundParams(), "LIDAR_TOP", 1) is not first  # evicted: only 2 kept


def test_a_given_split_gives_the_outputs_of_computing_it_and_one_of_another_sweep_is_refused(frame):
    T = frame.rig.T_base_lidar
    split = sweep_ground(frame.points, T)
    alone = detect_3d(frame.points, frame.views, T)
    given = detect_3d(frame.points, frame.views, T, split=split)
    assert len(alone) > 0 and np.array_equal(alone.centers, given.centers)
    assert np.array_equal(alone.scores, given.scores)
    labels, scores = segment_points(frame.points, frame.views, T)
    labels_given, scores_given = segment_points(frame.points, frame.views, T, split=split)
    assert np.array_equal(labels, labels_given) and np.array_equal(scores, scores_given)
    with pytest.raises(ValueError, match="ground split"):
        detect_3d(frame.points[1:], frame.views, T, params=LiftParams(), split=split)


def test_detection3d_and_segmentation_in_one_process_compute_each_sweep_s_ground_once(tmp_path):
    write_frame_bag(tmp_path / "frames", sweeps=4)
    before = SHARED_GROUND.computed
    replay(tmp_path / "frames", tmp_path / "out", FULL_GRAPH.select(("detection3d", "segmentation")), progress=False)
    assert SHARED_GROUND.computed - before == 4
    with BagReader(tmp_path / "out") as bag:
        topics = [message.topic for message in bag.messages(["/perception/objects", SEGMENTATION_TOPIC])]
    assert sorted(topics) == sorted(["/perception/objects", SEGMENTATION_TOPIC] * 4)
