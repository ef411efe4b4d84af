"""Issue 12: the learned segmentation mode — LOB point selection, the loss on hand-built cases, ONNX parity, and the
node's learned mode end to end on a small scene (a tiny network trained for a few steps)."""
import json

import numpy as np
import pytest
import torch

from perception3d.core.box_points import CameraBoxes, point_boxes
from perception3d.core.models.bev import BevGrid, bev_input
from perception3d.core.models.export import export_segmentation
from perception3d.core.models.network_file import open_network
from perception3d.core.models.options import CPU_OPTIONS
from perception3d.core.models.segnet import (
    SEGNET_INPUTS,
    SegNet,
    SegNetConfig,
    SegNetInference,
    labels_from_probabilities,
    segnet_inputs,
)
from perception3d.errors import ConfigError, ModelError
from perception3d.nodes.params import parameter_file
from perception3d.train.lovasz import lovasz_softmax
from perception3d.train.segmentation_loss import class_weights, segmentation_loss

TINY = SegNetConfig(half_extent_m=12.8, cell_m=0.8, z_bins=4, widths=(8, 16), point_hidden=16, lob_embed=8)

# One camera looking along lidar +x (camera x = -y, y = -z, z = +x), 100 px focal length, 200 x 100 image.
T_CAMERA_LIDAR = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
K = np.array([[100.0, 0, 100], [0, 100, 50], [0, 0, 1]])


def _lob(points, boxes, classes, cameras=None, valid=(True,)):
    """Box class of each point for boxes in one or more identical cameras (cameras[i]: camera of box i)."""
    cameras = np.zeros(len(classes), int) if cameras is None else np.asarray(cameras)
    boxes, classes = np.asarray(boxes, float).reshape(-1, 4), np.asarray(classes)
    views = [CameraBoxes(K, T_CAMERA_LIDAR, 200, 100, boxes[cameras == c], classes[cameras == c],
                         np.full(int(np.sum(cameras == c)), 0.5 + 0.1 * c)) for c in range(len(valid)) if valid[c]]
    return point_boxes(np.asarray(points, float), views)[0]


def test_lob_points_take_the_nearest_box_and_skip_the_rest():
    # Pixel u = 100 - 100 y / x, v = 50 - 100 z / x.
    points = [[10.0, 0.0, 0.0],    # u 100, v 50: inside both boxes
              [20.0, 0.0, 0.0],    # same pixel, farther: inside both boxes
              [5.0, -0.4, 0.0],    # u 108: inside box 0 only
              [10.0, 3.0, 0.0],    # u 70: inside box 1 only
              [30.0, 2.0, 0.0],    # u 93.3: inside box 1 only
              [10.0, 9.0, 0.0],    # u 10: in no box
              [-10.0, 0.0, 0.0]]   # behind the camera
    # Median depth of box 0's points (10, 20, 5) is 10 m, of box 1's (10, 20, 10, 30) 15 m: shared points take box 0.
    boxes = [[95, 40, 110, 60], [60, 40, 105, 60]]
    assert _lob(points, boxes, [3, 0]).tolist() == [3, 3, 3, 0, 0, -1, -1]
    # A box of no detection class (-1) is not used; an invalid camera sees nothing.
    assert _lob(points, boxes, [-1, 0]).tolist() == [0, 0, -1, 0, 0, -1, -1]
    assert _lob(points, boxes, [3, 0], valid=(False,)).tolist() == [-1] * 7


def test_lob_box_of_the_camera_that_sees_it_is_nearer_wins():
    # The same pixel box in two cameras (same pose): box 0 holds the far point only in camera 0, box 1 (camera 1)
    # holds the near and the far point; the far point's nearest box by median depth is box 1.
    points = [[10.0, 0.0, 0.0], [30.0, 0.4, 0.0]]  # u 100 and 98.7
    boxes = [[98, 45, 99, 55], [98, 45, 101, 55]]
    assert _lob(points, boxes, [5, 2], cameras=[0, 1], valid=(True, True)).tolist() == [2, 2]


def test_box_prior_features_are_the_boxes_class_one_hot_times_its_score():
    config = SegNetConfig(half_extent_m=12.8, cell_m=0.8, z_bins=4, widths=(8, 16), box_prior=True)
    points = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    _, _, features = segnet_inputs(points, np.zeros(3), config, (np.array([3, -1, 0]), np.array([0.8, 0.0, 0.4])))
    assert features.shape == (3, 15) and config.point_features == 15
    prior = features[:, 5:]
    assert prior[0, 3] == pytest.approx(0.8) and prior[2, 0] == pytest.approx(0.4)
    assert np.count_nonzero(prior) == 2
    with pytest.raises(ConfigError, match="box prior"):
        segnet_inputs(points, np.zeros(3), config)
    plain = segnet_inputs(points, np.zeros(3), SegNetConfig(half_extent_m=12.8, cell_m=0.8, z_bins=4))[2]
    assert np.array_equal(plain, features[:, :5])


def test_lovasz_softmax_on_a_worked_example():
    # Worked by hand: class 0 errors (0.4, 0.3) sorted, Jaccard gradient (1, 0) -> 0.4; class 1 errors (0.4, 0.3),
    # gradient (0.5, 0.5) -> 0.35; mean 0.375.
    probabilities = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
    assert float(lovasz_softmax(probabilities, torch.tensor([0, 1]))) == pytest.approx(0.375)
    # Perfect one-hot predictions cost nothing.
    assert float(lovasz_softmax(torch.eye(2), torch.tensor([0, 1]))) == pytest.approx(0.0)


def test_class_weights_follow_the_cube_root_of_the_frequency_ratio_and_are_capped():
    assert class_weights(np.array([1000, 1, 0])).tolist() == pytest.approx([1.0, 10.0, 10.0])
    assert class_weights(np.array([800, 100])).tolist() == pytest.approx([1.0, 2.0])


def test_segmentation_loss_ignores_unlabelled_points_and_distils_only_inside_boxes():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 6, 3, generator=rng, requires_grad=True)
    lob_logits = torch.randn(1, 6, 3, generator=rng, requires_grad=True)
    labels = torch.tensor([[1, 2, 3, 0, 0, 1]])
    box_class = torch.tensor([[4, -1, 2, 4, -1, -1]])
    weights = torch.ones(3)
    loss, parts = segmentation_loss(logits, lob_logits, labels, box_class, weights)
    loss.backward()
    # Ignored points (label 0) get no gradient in either branch; the LOB learns only from in-box labelled points.
    assert torch.all(logits.grad[0, 3:5] == 0) and torch.all(lob_logits.grad[0, [1, 3, 4, 5]] == 0)
    assert torch.any(lob_logits.grad[0, [0, 2]] != 0)
    assert set(parts) == {"seg_3d", "seg_lob", "distill"}
    # The 3D term alone is the weighted CE + Lovász over the labelled points.
    plain, _ = segmentation_loss(logits, None, labels, box_class, weights)
    assert parts["seg_3d"] == pytest.approx(float(plain.detach()))
    # When the LOB predicts what the 3D branch does, the distillation term is 0.
    _, same = segmentation_loss(logits, logits, labels, box_class, weights)
    assert same["distill"] == pytest.approx(0.0, abs=1e-6)


def test_bev_input_counts_points_per_height_bin_and_cell():
    grid = BevGrid(half_extent_m=1.6, cell_m=0.4, z_min_m=-1.0, z_max_m=1.0, z_bins=2)
    points = np.array([[0.1, 0.1, -0.5], [0.2, 0.3, 0.5], [0.3, 0.2, 0.6], [5.0, 0.0, 0.0]])  # last: off the grid
    image = bev_input(points, np.array([10.0, 20.0, 30.0, 99.0]), grid)
    row = col = 4  # x, y in [0, 0.4)
    assert image[0, row, col] == pytest.approx(np.log1p(1)) and image[1, row, col] == pytest.approx(np.log1p(2))
    assert image[2, row, col] == pytest.approx(20.0)  # mean intensity
    assert image[3, row, col] == pytest.approx(0.5) and image[4, row, col] == pytest.approx(1.6)  # low, high
    assert image[:, :, :].sum() == pytest.approx(image[:, row, col].sum())


def test_bev_input_equals_a_point_by_point_computation():
    # Many cells, some points below and above the height bins, some off the grid; every channel of every cell.
    grid = BevGrid(half_extent_m=6.4, cell_m=0.8, z_min_m=-1.0, z_max_m=2.0, z_bins=3)
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform(-7.5, 7.5, (400, 2)), rng.uniform(-1.5, 2.5, (400, 1))], axis=1)
    intensity = rng.uniform(0, 255, 400)
    expected = np.zeros((grid.channels, grid.size, grid.size))
    low, high = {}, {}
    for (x, y, z), value in zip(points, intensity):
        col, row = int(np.floor((x + 6.4) / 0.8)), int(np.floor((y + 6.4) / 0.8))
        if not (0 <= col < grid.size and 0 <= row < grid.size):
            continue
        z_bin = int(np.floor((z + 1.0) / 3.0 * 3))
        if 0 <= z_bin < 3:
            expected[z_bin, row, col] += 1
        expected[3, row, col] += value
        low[row, col], high[row, col] = min(low.get((row, col), np.inf), z), max(high.get((row, col), -np.inf), z)
    count = np.zeros((grid.size, grid.size))
    for (x, y, _) in points:
        col, row = int(np.floor((x + 6.4) / 0.8)), int(np.floor((y + 6.4) / 0.8))
        if 0 <= col < grid.size and 0 <= row < grid.size:
            count[row, col] += 1
    expected[:3] = np.log1p(expected[:3])
    expected[3] = np.where(count > 0, expected[3] / np.maximum(count, 1), 0.0)
    for (row, col), z in low.items():
        expected[4, row, col], expected[5, row, col] = z + 1.0, high[row, col] + 1.0
    image = bev_input(points, intensity, grid)
    assert image.dtype == np.float32 and np.count_nonzero(count) > 100
    np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-5)


def _random_sweep(seed, n=3000):
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.uniform(-14, 14, (n, 2)), rng.uniform(-2, 3, (n, 1))], axis=1)
    return points, rng.uniform(0, 255, n)


def test_onnx_export_gives_the_torch_labels(tmp_path):
    torch.manual_seed(0)
    network = SegNet(TINY).eval()
    for module in network.modules():  # non-trivial batch-norm statistics, so the export must carry them
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = export_segmentation(network, tmp_path / "seg.onnx")
    onnx_model = open_network("onnx", path, "segmentation", SegNetInference, SEGNET_INPUTS, CPU_OPTIONS)
    assert onnx_model.config == TINY
    torch_inference = SegNetInference(network)
    same = total = 0
    for seed in range(3):
        inputs = segnet_inputs(*_random_sweep(seed), TINY)
        with torch.inference_mode():
            expected = torch_inference(*(torch.from_numpy(x)[None] for x in inputs))[0].numpy()
        probabilities = onnx_model.run(*(x[None] for x in inputs))[0][0]
        assert probabilities.shape == expected.shape == (3000, 16)
        same += int(np.sum(labels_from_probabilities(probabilities)[0] == labels_from_probabilities(expected)[0]))
        total += len(expected)
    assert same / total >= 0.995
    with pytest.raises(ModelError, match="perception3d.model"):
        open_network("onnx", path, "occupancy", SegNetInference, SEGNET_INPUTS, CPU_OPTIONS)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny SegNet trained for 3 steps on the tiny synthetic dataroot (with the LOB and 'good' 2D boxes)."""
    from perception3d.train.data.build import BuildOptions, build_cache
    from perception3d.train.segmentation import SegmentationData, train_segmentation
    from perception3d.train.trainer import TrainConfig
    from synth_data import VERSION, tiny_dataroot

    work = tmp_path_factory.mktemp("seg")
    build_cache(tiny_dataroot(), VERSION, "all", work / "cache", BuildOptions(past_sweeps=0, boxes2d="good"),
                progress=False)
    result = train_segmentation([work / "cache"], work / "seg.pt", TINY,
                                TrainConfig(epochs=1, batch_size=2, max_steps=3, device="cpu"),
                                data=SegmentationData(points=1500), progress=False)
    first_step = json.loads((work / "seg.log.jsonl").read_text().splitlines()[0])
    assert result.steps == 3 and {"seg_3d", "seg_lob", "distill"} <= set(first_step.get("parts", first_step))
    return result.checkpoint


def test_learned_mode_replays_and_labels_every_usable_point_as_the_network_does(tiny_checkpoint, tmp_path):
    from perception3d.core.geometry import transform_points
    from perception3d.core.models.checkpoint import load_checkpoint
    from perception3d.core.tf_buffer import TfBuffer
    from perception3d.msgs.bag import BagReader
    from perception3d.msgs.pointcloud import pointcloud2_to_array, xyz
    from perception3d.msgs.tf import add_tf_message
    from perception3d.nodes.sweep import EGO_BOX_PARAM
    from perception3d.runtime.bag import replay
    from perception3d.runtime.graph import FULL_GRAPH
    from perception3d.train.segmentation import predict_labels
    from synth_data import tiny_bags

    config = tmp_path / "learned.yaml"
    config.write_text(parameter_file({"segmentation": {"mode": "learned", "model_path": str(tiny_checkpoint),
                                                        "device": "cpu"}}))
    out = tmp_path / "out"
    summary = replay(tiny_bags()[0], out, FULL_GRAPH.select(("segmentation", "occupancy")), config=config,
                     progress=False)
    tf = TfBuffer()
    with BagReader(tiny_bags()[0]) as reader:
        for message in reader.messages(["/tf_static"]):
            add_tf_message(tf, message.decode(), static=True)
        sweeps = len(list(reader.messages(["/LIDAR_TOP/points"])))
    with BagReader(out) as reader:
        clouds = [m.decode() for m in reader.messages(["/perception/segmentation/pointcloud"])]
        grids = list(reader.messages(["/perception/occupancy/grid"]))
    assert len(clouds) == sweeps == len(grids) and summary is not None  # occupancy reads the learned labels
    network, _ = load_checkpoint(tiny_checkpoint, expected_model="segmentation")
    lo, hi = np.array(EGO_BOX_PARAM.default[:3]), np.array(EGO_BOX_PARAM.default[3:])
    for msg in clouds[:3]:
        cloud = pointcloud2_to_array(msg)
        points = transform_points(tf.lookup("base_link", msg.header.frame_id, 0), xyz(cloud, dtype="f8"))
        usable = ~np.all((points >= lo) & (points <= hi), axis=1)
        expected, scores = predict_labels(network, points[usable], cloud["intensity"][usable], torch.device("cpu"))
        assert np.array_equal(cloud["label"][usable], expected)  # every usable point labelled 1..16
        assert np.all(cloud["label"][~usable] == 0)
        assert np.allclose(cloud["score"][usable], scores, atol=1e-5) and np.all(scores >= 1 / 16)


def test_the_shipped_checkpoint_is_the_learned_modes_default_and_runs_on_an_empty_sweep():
    from perception3d.core.models.checkpoint import read_checkpoint
    from perception3d.core.models.shipped import SHIPPED_SEGMENTATION
    from perception3d.nodes.params import load_parameters
    from perception3d.nodes.segmentation import SegmentationNode

    payload = read_checkpoint(SHIPPED_SEGMENTATION)  # weights_only load
    assert payload["model"] == "segmentation" and "train_state" in payload and payload["record"]["command"]
    assert all(t.dtype == torch.float16 for t in payload["state_dict"].values() if t.is_floating_point())
    params = load_parameters(None, {"segmentation": SegmentationNode.parameters})["segmentation"]
    node = SegmentationNode({**params, "mode": "learned", "device": "cpu"})  # model_path '' = the shipped one
    assert node.model_state() == "learned mode: torch model shipped checkpoint"
    labels, scores = node.segment_learned(np.zeros((0, 3)), np.zeros(0, np.float32))
    assert labels.shape == scores.shape == (0,)


def test_a_box_prior_model_reads_the_matched_cameras_boxes_in_the_replay(tmp_path):
    """A model trained with --box-prior takes each point's 2D box from the frame's cameras: the node builds that input
    from the synchronized CameraInfo + detections (core.box_points) and labels every usable point."""
    from dataclasses import replace

    from perception3d.core.models.checkpoint import save_checkpoint
    from perception3d.msgs.bag import BagReader
    from perception3d.msgs.pointcloud import pointcloud2_to_array
    from perception3d.runtime.bag import replay
    from perception3d.runtime.graph import FULL_GRAPH
    from synth_data import tiny_bags

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "prior.pt", SegNet(replace(TINY, box_prior=True)))
    config = tmp_path / "prior.yaml"
    config.write_text(parameter_file({"segmentation": {"mode": "learned", "model_path": str(tmp_path / "prior.pt"),
                                                        "device": "cpu"}}))
    replay(tiny_bags()[1], tmp_path / "out", FULL_GRAPH.select(("segmentation",)), config=config, progress=False)
    with BagReader(tmp_path / "out") as reader:
        clouds = [pointcloud2_to_array(m.decode()) for m in reader.messages(["/perception/segmentation/pointcloud"])]
    assert clouds and all(np.isin(c["label"][c["score"] > 0], np.arange(1, 17)).all() for c in clouds)
    assert np.mean([np.mean(c["label"] > 0) for c in clouds]) > 0.9
