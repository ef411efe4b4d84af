"""detection3d's learned mode: QAF2D's class-restricted matching, the DETR loss, decoding, the sweep history, ONNX
parity and the node in a replay."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from perception3d.core.box_points import CameraBoxes
from perception3d.core.classes import DETECTION_CLASSES
from perception3d.core.detections import Detections3D
from perception3d.core.models.detr3d import (
    ANCHOR_FEATURES,
    ATTRIBUTES,
    DETR3D_INPUTS,
    STATE,
    Detr3D,
    Detr3DConfig,
    Detr3DInference,
)
from perception3d.core.models.detr3d_inputs import anchor_rows, decode
from perception3d.core.models.export import export_detection3d
from perception3d.core.models.network_file import open_network
from perception3d.core.models.options import CPU_OPTIONS
from perception3d.msgs.markers import motion_markers, motion_of_markers, with_motion
from perception3d.nodes.detection3d import SweepHistory
from perception3d.nodes.params import parameter_file
from perception3d.train.detection3d import Detection3DData, augmentation, detection_loss, match, turned_yaws
from perception3d.train.export_command import detection3d_parity

TINY = Detr3DConfig(half_extent_m=12.8, widths=(8, 16), d_model=16, heads=2, ffn=32, heatmap_queries=8,
                    anchor_queries=4)
CAR, PEDESTRIAN = DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("pedestrian")


def _state(x: float, y: float) -> np.ndarray:
    row = np.zeros(STATE)
    row[:2], row[3:6], row[7] = (x, y), np.log([4.0, 2.0, 1.5]), 1.0
    return row


def test_anchor_queries_take_only_ground_truth_of_their_2d_boxes_class():
    # query 0: a heatmap query far from everything; 1: a car anchor on the pedestrian; 2: a padded anchor there too
    states = np.stack([_state(20, 20), _state(0, 0), _state(0, 0)])
    truth = np.stack([_state(0, 0), _state(10, 0)])
    truth_class = np.array([PEDESTRIAN, CAR])
    rows, cols = match(np.zeros((3, 10)), states, np.array([-1, CAR, -1]), np.array([False, False, True]), truth,
                       truth_class)
    # unrestricted, the car anchor would take the pedestrian it sits on (cost 0) and the heatmap query the car
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 0, 1: 1}
    rows, cols = match(np.zeros((3, 10)), states, np.array([-1, -1, -1]), np.array([False, False, True]), truth,
                       truth_class)
    assert dict(zip(rows.tolist(), cols.tolist())) == {1: 0, 0: 1}


def _camera(yaw_deg: float, rng: np.random.Generator, count: int) -> CameraBoxes:
    """A 1600x900 camera at the base frame's origin looking along yaw, with `count` random car and pedestrian boxes
    standing on the ground 1.5 m below it (8-40 m away), and one box in five a thin strip that fits no anchor."""
    yaw = math.radians(yaw_deg)
    forward, left = np.array([math.cos(yaw), math.sin(yaw), 0.0]), np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    T = np.eye(4)
    T[:3, :3] = np.stack([-left, [0.0, 0.0, -1.0], forward])  # optical frame: x right, y down, z forward
    K = np.array([[1266.0, 0.0, 800.0], [0.0, 1266.0, 450.0], [0.0, 0.0, 1.0]])
    classes = rng.choice([DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("pedestrian")], count)
    depth = rng.uniform(8.0, 40.0, count)
    height = np.where(classes == DETECTION_CLASSES.index("car"), 1.6, 1.75)
    width = np.where(classes == DETECTION_CLASSES.index("car"), rng.uniform(1.9, 4.5, count), 0.7)
    u = rng.uniform(300.0, 1300.0, count)
    bottom = 450.0 + 1266.0 * 1.5 / depth
    boxes = np.stack([u - 633.0 * width / depth, bottom - 1266.0 * height / depth, u + 633.0 * width / depth,
                      bottom], axis=1)
    strip = np.arange(count) % 5 == 4
    boxes[strip, 2] = boxes[strip, 0] + 600.0
    boxes[strip, 3] = boxes[strip, 1] + 3.0
    return CameraBoxes(K, T, 1600, 900, boxes, classes, rng.permutation(count) / count + rng.uniform(0, 0.01))


def test_anchor_rows_are_the_best_scored_boxes_with_anchors_whatever_the_row_count():
    """Rows are lifted in rounds; the rows of a few queries must be the first rows of as many queries as boxes (one
    round that lifts every box), in 2D score order, boxes without an anchor skipped."""
    rng = np.random.default_rng(3)
    cameras = [_camera(0.0, rng, 23), _camera(180.0, rng, 17)]
    every_box = anchor_rows(cameras, Detr3DConfig(anchor_queries=40))
    valid = every_box[:, 10] == 1.0
    assert 25 <= valid.sum() < 40 and not valid[valid.sum():].any()  # the strips have no anchor
    assert np.all(np.diff(every_box[valid, 9]) < 0)  # best 2D score first
    for queries in (1, 6, 13, 30):
        np.testing.assert_array_equal(anchor_rows(cameras, Detr3DConfig(anchor_queries=queries)),
                                      every_box[:queries])


def _focal(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return 0.25 * (1 - p) ** 2 * -math.log(p) if target else 0.75 * p ** 2 * -math.log(1 - p)


def test_loss_of_a_hand_built_frame():
    logits = torch.full((1, 2, 10), -2.0)
    logits[0, 0, CAR] = 1.0
    states = torch.from_numpy(np.stack([_state(3.5, 0), _state(-15, 5)])[None]).float()
    truth = np.zeros((1, 3, STATE), np.float32)
    truth[0, 0] = _state(3.0, 0)
    truth[0, 0, 8:10] = (0.2, -0.1)  # displacement [m] between the sweeps
    out = {"heatmap": torch.full((1, 10, 4, 4), -30.0), "states": [states], "class_logits": [logits],
           "attribute_logits": [torch.zeros(1, 2, len(ATTRIBUTES))], "padding": torch.zeros(1, 2, dtype=torch.bool),
           "anchor_class": torch.full((1, 2), -1)}
    batch = {"heatmap": torch.zeros(1, 10, 4, 4), "truth_state": torch.from_numpy(truth),
             "truth_class": torch.tensor([[CAR, -1, -1]]), "truth_attribute": torch.tensor([[2, -1, -1]]),
             "truth_moving_known": torch.tensor([[True, False, False]])}
    total, parts = detection_loss(out, batch)
    expected_class = _focal(1.0, 1) + 9 * _focal(-2.0, 0) + 10 * _focal(-2.0, 0)
    assert parts["classification"] == pytest.approx(expected_class, rel=1e-5)
    assert parts["box"] == pytest.approx(0.5 + 0.2 + 0.1, rel=1e-5)  # centre x 0.5 m off, displacement not predicted
    assert parts["attribute"] == pytest.approx(math.log(len(ATTRIBUTES)), rel=1e-5)
    assert parts["heatmap"] < 1e-9
    assert float(total) == pytest.approx(2 * expected_class + 0.25 * 0.8 + 0.2 * math.log(8), rel=1e-5)
    batch["truth_moving_known"][0, 0] = False  # unknown velocity: no displacement term
    assert detection_loss(out, batch)[1]["box"] == pytest.approx(0.5, rel=1e-5)


def test_decode_keeps_confident_queries_with_velocities_and_their_class_groups_attribute():
    boxes = np.array([[10, 2, 0.8, 4.5, 1.9, 1.6, 0.3, 1.0, -0.5],
                      [5, -3, 0.9, 0.7, 0.7, 1.8, 0.0, 0.0, 0.25],
                      [8, 8, 0.5, 0.5, 2.5, 1.0, 0.0, 0.0, 0.0]], np.float32)
    probabilities = np.zeros((3, 10), np.float32)
    probabilities[0, CAR], probabilities[1, PEDESTRIAN], probabilities[2, DETECTION_CLASSES.index("barrier")] = \
        0.3, 0.9, 0.01
    attributes = np.zeros((3, len(ATTRIBUTES)), np.float32)
    attributes[:, ATTRIBUTES.index("pedestrian.moving")] = 0.6  # likeliest overall, but no car attribute
    attributes[:, ATTRIBUTES.index("vehicle.parked")] = 0.3
    dets = decode(boxes, probabilities, attributes, Detr3DConfig(), 0.05, 0.5, "base_link", 7)
    assert list(dets.class_ids) == ["pedestrian", "car"]  # best first, the barrier below the threshold
    assert list(dets.attributes) == ["pedestrian.moving", "vehicle.parked"]
    assert np.allclose(dets.velocities, [[0.0, 0.5], [2.0, -1.0]])  # displacement / 0.5 s
    assert np.allclose(dets.sizes_lwh[1], [4.5, 1.9, 1.6]) and dets.yaws[1] == pytest.approx(0.3)
    assert np.isnan(decode(boxes, probabilities, attributes, Detr3DConfig(), 0.05, None).velocities).all()


def test_sweep_history_moves_the_sweep_nearest_the_lag_into_the_current_base_frame():
    history = SweepHistory(lag_s=0.25)

    def pose(x: float) -> np.ndarray:
        T = np.eye(4)
        T[0, 3] = x
        return T

    point = np.array([[10.0, 1.0, 0.5]])  # a static point 10 m ahead at t = 0
    for k in range(6):  # 20 Hz, driving +x at 4 m/s
        history.add(k * 50_000_000, pose(0.2 * k), point - [0.2 * k, 0, 0], np.full(1, 7.0))
    points, intensity, lag = history.earlier(6 * 50_000_000, pose(1.2))
    assert lag == pytest.approx(0.25)  # the sweep at t = 50 ms (0.25 s old), not the newest one
    assert np.allclose(points, [[8.8, 1.0, 0.5]]) and intensity[0] == 7.0  # where the static point is now
    assert history.earlier(20 * 50_000_000, pose(4.0)) == (None, None, None)  # nothing half to twice the lag old
    history.add(0, pose(0.0), point, np.zeros(1))  # time went back: the old sweeps are forgotten
    assert len(history.sweeps) == 1


def test_augmentation_mirrors_and_rotates_headings_like_points():
    for seed in range(4):
        A = augmentation(np.random.default_rng(seed), Detection3DData())
        nose = A[:2, :2] @ np.array([np.cos(0.4), np.sin(0.4)])
        assert turned_yaws(A, np.array([0.4]))[0] == pytest.approx(math.atan2(nose[1], nose[0]))


def test_motion_markers_carry_velocity_and_attribute_by_detection_id():
    dets = Detections3D([[1, 2, 0.5], [4, 0, 0.5]], [[4, 2, 1.5]] * 2, [0, 0], ["car", "car"], [0.9, 0.8], "base_link",
                        5, [[1.5, -0.5], [np.nan, np.nan]], ["1", "2"], ["vehicle.moving", ""])
    motion = motion_of_markers(motion_markers(dets))
    assert set(motion) == {"1"}  # no arrow without a velocity
    velocity, attribute = motion["1"]
    assert np.allclose(velocity, [1.5, -0.5]) and attribute == "vehicle.moving"
    unknown = replace(dets, velocities=np.full((2, 2), np.nan), attributes=np.array(["", ""], dtype=object))
    joined = with_motion(unknown, motion_markers(dets))  # what eval and the pictures read back
    np.testing.assert_array_equal(joined.velocities, dets.velocities)
    assert list(joined.attributes) == ["vehicle.moving", ""] and np.isnan(unknown.velocities).all()


def _random_inputs(config: Detr3DConfig, cameras: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    grid = config.grid
    bev = (rng.random((1, 2 * grid.channels, grid.size, grid.size)) * (rng.random((1, 1, grid.size, grid.size))
                                                                      > 0.8)).astype(np.float32)
    anchors = np.zeros((1, config.anchor_queries, ANCHOR_FEATURES), np.float32)
    anchors[0, :2] = [[5, 1, 0.8, 1.5, 0.7, 0.5, 0, 1, CAR, 0.8, 1], [-3, 4, 0.9, 0.3, 0.3, 0.6, 1, 0, 5, 0.6, 1]]
    maps = rng.random((1, cameras, 10, config.map_rows, config.map_cols)).astype(np.float32)
    K = np.array([[100.0, 0, 200], [0, 100, 110], [0, 0, 1]])
    T_camera_base = np.array([[0.0, -1, 0, 0], [0, 0, -1, 1.5], [1, 0, 0, 0]])  # optical frame looking along +x
    to_grid = np.array([[2 / 400, 0, -1], [0, 2 / 225, -1], [0, 0, 1]])  # pixels -> grid_sample coordinates
    projection = to_grid @ K @ T_camera_base
    return bev, anchors, maps, np.repeat(projection[None, None].astype(np.float32), cameras, axis=1)


def test_onnx_export_gives_the_torch_boxes(tmp_path):
    torch.manual_seed(0)
    network = Detr3D(TINY).eval()
    for module in network.modules():  # non-trivial batch-norm statistics, so the export must carry them
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = export_detection3d(network, tmp_path / "det.onnx")
    onnx_model = open_network("onnx", path, "detection3d", Detr3DInference, DETR3D_INPUTS, CPU_OPTIONS)
    assert onnx_model.config == TINY
    torch_inference = Detr3DInference(network)
    for seed, cameras in ((0, 6), (1, 2)):  # the camera count is a dynamic axis
        inputs = _random_inputs(TINY, cameras, seed)
        with torch.inference_mode():
            expected = tuple(o.numpy() for o in torch_inference(*(torch.from_numpy(x) for x in inputs)))
        outputs = onnx_model.run(*inputs)
        assert outputs[0].shape == (1, TINY.queries, 9) and outputs[1].shape == (1, TINY.queries, 10)
        assert not outputs[1][0, TINY.heatmap_queries + 2:].any()  # padded anchors never score
        agree, compared = detection3d_parity(expected, outputs, threshold=1e-6)
        assert agree == compared == TINY.heatmap_queries + 2


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny Detr3D trained for 2 steps on the tiny synthetic dataroot."""
    from perception3d.train.data.build import BuildOptions, build_cache
    from perception3d.train.detection3d import train_detection3d
    from perception3d.train.trainer import TrainConfig
    from synth_data import VERSION, tiny_dataroot

    work = tmp_path_factory.mktemp("det3d")
    build_cache(tiny_dataroot(), VERSION, "all", work / "cache", BuildOptions(past_sweeps=0, boxes2d="good"),
                progress=False)
    result = train_detection3d([work / "cache"], work / "det.pt", TINY,
                               TrainConfig(epochs=1, batch_size=2, max_steps=2, device="cpu"), progress=False)
    first_step = json.loads((work / "det.log.jsonl").read_text().splitlines()[0])
    assert result.steps == 2 and {"heatmap", "classification", "box", "attribute"} <= set(first_step.get("parts",
                                                                                                          first_step))
    return result.checkpoint


def test_learned_mode_replays_with_velocities_keyed_by_detection_id(tiny_checkpoint, tmp_path):
    from perception3d.msgs.bag import BagReader
    from perception3d.msgs.detections import msg_to_detections3d
    from perception3d.runtime.bag import replay
    from perception3d.runtime.graph import FULL_GRAPH
    from synth_data import tiny_bags

    config = tmp_path / "learned.yaml"
    config.write_text(parameter_file({"detection3d": {"mode": "learned", "model_path": str(tiny_checkpoint),
                                                       "device": "cpu", "score_threshold": 0.0}}))
    replay(tiny_bags()[0], tmp_path / "out", FULL_GRAPH.select(("detection3d",)), config=config, progress=False)
    with BagReader(tiny_bags()[0]) as reader:
        sweeps = len(list(reader.messages(["/LIDAR_TOP/points"])))
    with BagReader(tmp_path / "out") as reader:
        objects = [msg_to_detections3d(m.decode()) for m in reader.messages(["/perception/objects"])]
        motion = [motion_of_markers(m.decode()) for m in reader.messages(["/perception/objects/motion"])]
    assert len(objects) == len(motion) == sweeps
    # every query of the tiny model scores above 0: all heatmap queries and the anchors of the frame's 2D boxes
    assert all(TINY.heatmap_queries <= len(d) <= TINY.queries for d in objects)
    assert all(set(d.class_ids) <= set(DETECTION_CLASSES) and np.isfinite(d.centers).all() for d in objects)
    # no earlier sweep for the first frames (lag 0.25 s at 20 Hz), then a velocity for every box, by its id
    assert motion[0] == {} and all(set(m) == set(d.ids) for m, d in zip(motion[8:], objects[8:]))


def test_the_learned_node_refuses_a_model_of_another_kind(tmp_path):
    from perception3d.core.models.shipped import SHIPPED_SEGMENTATION
    from perception3d.errors import ModelError
    from perception3d.nodes.detection3d import Detection3DNode
    from perception3d.nodes.params import load_parameters

    params = load_parameters(None, {"detection3d": Detection3DNode.parameters})["detection3d"]
    with pytest.raises(ModelError, match="detection3d"):
        Detection3DNode({**params, "mode": "learned", "device": "cpu", "model_path": str(SHIPPED_SEGMENTATION)})


def test_the_shipped_checkpoint_is_the_learned_modes_default_and_runs_without_points_or_boxes():
    from perception3d.core.models.checkpoint import read_checkpoint
    from perception3d.core.models.shipped import SHIPPED_DETECTION3D
    from perception3d.nodes.detection3d import Detection3DNode
    from perception3d.nodes.params import load_parameters

    payload = read_checkpoint(SHIPPED_DETECTION3D)  # weights_only load
    assert payload["model"] == "detection3d" and payload["record"]["command"]
    assert not payload["config"]["anchor_queries_learned"] and payload["config"]["use_camera"]  # QAF2D anchors
    assert all(t.dtype == torch.float16 for t in payload["state_dict"].values() if t.is_floating_point())
    params = load_parameters(None, {"detection3d": Detection3DNode.parameters})["detection3d"]
    node = Detection3DNode({**params, "mode": "learned", "device": "cpu"})  # model_path '' = the shipped one
    assert node.model_state() == "learned mode: torch model shipped checkpoint"
    dets = node.detect_learned(np.zeros((0, 3)), np.zeros(0, np.float32), (None, None, None), [])
    assert set(dets.class_ids) <= set(DETECTION_CLASSES) and np.isnan(dets.velocities).all()


def test_fp16_autocasts_the_network_and_keeps_its_boxes():
    """precision 'fp16' autocasts (core.models.runner): float16 matrix products meet the network's own float32
    geometry (sine encodings, box points) without a dtype clash; a network cast whole to half stopped so at its first
    sweep on a GPU. CPU autocast takes the code path of CUDA's; the runner's CUDA-only check is passed by turning
    half precision on after it is built."""
    from perception3d.core.models.runner import TorchRunner

    torch.manual_seed(0)
    network = Detr3DInference(Detr3D(TINY).eval())
    fp32, fp16 = TorchRunner(network, CPU_OPTIONS), TorchRunner(network, CPU_OPTIONS)
    fp16.half = True
    inputs = _random_inputs(TINY, 6, 0)
    expected, outputs = fp32(*inputs), fp16(*inputs)
    assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in outputs)
    assert not np.array_equal(outputs[0], expected[0])  # float16 products did run
    # the two anchor queries (an untrained heatmap's near-equal peaks may swap places under float16 rounding)
    anchors = slice(TINY.heatmap_queries, TINY.heatmap_queries + 2)
    agree, compared = detection3d_parity(*((o[0][:, anchors], o[1][:, anchors]) for o in (expected, outputs)),
                                         threshold=1e-6)
    assert agree == compared == 2
