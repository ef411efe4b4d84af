"""Learned occupancy (issue 13): depth-free camera evidence on pre-sampled points, free-voxel loss subsampling,
coarse-to-fine candidates, active training, ONNX parity, and the node's learned mode replayed on a small scene."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from perception3d.core.box_points import DETECTION_MAP_SIZE, CameraBoxes, detection_maps, may_see, project
from perception3d.core.classes import DETECTION_CLASSES, OCCUPANCY_FREE, OCCUPANCY_UNKNOWN
from perception3d.core.models import occfusion_inputs as inputs
from perception3d.core.models.bev import BevUNet, bev_input
from perception3d.core.models.checkpoint import load_checkpoint
from perception3d.core.models.occfusion import (
    CHILD_OFFSETS,
    OccFusionConfig,
    OccFusionNet,
    free_relative,
    occupied_confidence,
)
from perception3d.core.occupancy import free_voxels, presample_voxels
from perception3d.core.voxels import VoxelGrid
from perception3d.train.lovasz import lovasz_softmax
from perception3d.train.occupancy import coarse_target, hard_frame_table, loss_voxels

CONFIG = Path(__file__).resolve().parents[1] / "config" / "perception3d.yaml"
SMALL_RANGE = (-12.8, -12.8, -5.0, 12.8, 12.8, 3.0)  # fine 64 x 64 x 20, coarse 32 x 32 x 10
TINY = {"widths": (8, 16), "voxel_features": 4, "refine_top_k": 20, "refine_hidden": 8, "presample_points": 4}
# Optical camera at the base origin looking along base +x (camera x = base -y, y = base -z, z = base +x).
FORWARD = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
K = np.array([[100.0, 0, 100], [0, 100, 50], [0, 0, 1]])


def camera(boxes=(), classes=(), scores=(), T=FORWARD) -> CameraBoxes:
    return CameraBoxes(K, T, 200, 100, np.array(boxes, dtype=float).reshape(-1, 4),
                              np.array(classes, dtype=np.int64), np.array(scores, dtype=float))


def test_projection_masks_points_behind_outside_and_too_close():
    points = np.array([[10.0, 0, 0], [-10.0, 0, 0], [10.0, 30.0, 0], [0.2, 0, 0], [10.0, -5.0, 2.5]])
    uv, _, seen = project(points, camera())
    assert seen.tolist() == [True, False, False, False, True]
    np.testing.assert_allclose(uv[0], [100, 50])
    np.testing.assert_allclose(uv[4], [150, 25])  # 5 m to the right (base -y) and 2.5 m up at 10 m


def test_may_see_culls_only_spheres_with_no_seen_point():
    rng = np.random.default_rng(7)
    centres = rng.uniform([-15.0, -15.0, -4.0], [15.0, 15.0, 4.0], (400, 3))
    centres[:20] = [[0.4 + 0.05 * k, 0.0, 0.0] for k in range(20)]  # around the near limit, ahead
    radii = rng.uniform(0.05, 0.8, len(centres))
    directions = rng.normal(size=(len(centres), 200, 3))
    inside = centres[:, None] + directions / np.linalg.norm(directions, axis=2, keepdims=True) * \
        (radii[:, None, None] * rng.uniform(0, 1, (len(centres), 200, 1)) ** (1 / 3))
    cameras = [camera(T=FORWARD), camera(T=FORWARD @ np.diag([-1.0, -1, 1, 1]))]
    kept = may_see(centres, radii, cameras)
    assert kept.shape == (len(centres), 2)
    for c, cam in enumerate(cameras):
        seen = project(inside.reshape(-1, 3), cam)[2].reshape(len(centres), -1).any(axis=1)
        assert not (seen & ~kept[:, c]).any()  # conservative: a culled sphere has no seen point
        assert (~kept[:, c]).sum() > len(centres) / 2 and kept[:, c].sum() >= seen.sum() > 10  # and it does cull


def test_stacked_maps_are_read_bilinearly_each_clamped_at_its_own_border():
    rng = np.random.default_rng(3)
    maps = rng.random((3, 2, 4, 5)).astype(np.float32)  # three cameras' maps, 2 channels of 4 x 5 cells
    cells = np.array([[2.5, 1.5], [2.0, 2.5], [10.0, 10.0], [-3.0, 3.9]])
    index = np.array([1, 2, 0, 1])
    values = inputs.sample_bilinear(maps, index, cells)
    np.testing.assert_allclose(values[0], maps[1, :, 1, 2])  # a cell centre: that cell
    np.testing.assert_allclose(values[1], (maps[2, :, 2, 1] + maps[2, :, 2, 2]) / 2)  # between two columns
    np.testing.assert_allclose(values[2], maps[0, :, 3, 4])  # beyond the corner: the corner cell of its own map
    np.testing.assert_allclose(values[3], maps[1, :, 3, 0])  # left of the last row: not the next map's first row


def test_detection_maps_hold_the_best_score_of_each_class_and_ignore_other_classes_and_cameras():
    car, ped = DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("pedestrian")
    wide = CameraBoxes(K, FORWARD, 400, 100, np.array([[-50.0, 50, 100, 300]]), np.array([ped]), np.array([0.7]))
    maps = detection_maps([camera([[0, 0, 100, 100], [50, 0, 200, 100], [0, 0, 200, 100]], [car, car, -1],
                                  [0.4, 0.9, 1.0]), wide, camera()])
    cols, rows = DETECTION_MAP_SIZE
    assert maps.shape == (3, len(DETECTION_CLASSES), rows, cols)
    assert maps[0, car, rows // 2, 2] == pytest.approx(0.4) and maps[0, car, rows // 2, cols - 2] == pytest.approx(0.9)
    assert maps[0, car, rows // 2, cols // 2 - 2] == pytest.approx(0.9)  # overlap: the higher score
    assert maps[0, ped].max() == 0 and np.delete(maps[0], car, axis=0).max() == 0
    # the wide camera's box, cut by its image's left and bottom borders: its own columns (a quarter of 400 px)
    expected = np.zeros((rows, cols), dtype=np.float32)
    expected[rows // 2:, :cols // 4] = 0.7
    np.testing.assert_array_equal(maps[1, ped], expected)
    assert np.delete(maps[1], ped, axis=0).max() == 0 and maps[2].max() == 0 and detection_maps([]).shape[0] == 0


def test_camera_evidence_averages_over_the_cameras_that_see_a_voxel_only():
    car = DETECTION_CLASSES.index("car")
    boxed = camera([[0, 0, 200, 100]], [car], [0.8])
    backward = FORWARD @ np.diag([-1.0, -1, 1, 1])  # looks along base -x
    samples = np.array([[[10.0, 0, 0]] * 2, [[-10.0, 0, 0]] * 2, [[0, 10.0, 0]] * 2])  # ahead, behind, left
    evidence = inputs.camera_evidence(samples, [boxed, camera(T=backward)])
    assert evidence.shape == (3, inputs.CAMERA_CHANNELS)
    assert evidence[0, car] == pytest.approx(0.8) and evidence[0, -1] == 1  # only the front camera sees it
    assert evidence[1, car] == 0 and evidence[1, -1] == 1  # the rear camera sees it, no box there
    assert evidence[2].max() == 0  # no camera sees it
    # the same voxel seen by both cameras (a camera turned back onto the front) averages 0.8 and 0
    both = inputs.camera_evidence(samples[:1], [boxed, camera()])
    assert both[0, car] == pytest.approx(0.4)


def reference_camera_evidence(samples: np.ndarray, cameras: list) -> np.ndarray:
    """camera_evidence one voxel, camera and point at a time, bilinear reads by hand."""
    cols, rows = DETECTION_MAP_SIZE
    out = np.zeros((len(samples), inputs.CAMERA_CHANNELS))
    for v, points in enumerate(samples):
        per_camera = []
        for cam in cameras:
            (maps,) = detection_maps([cam])
            uv, _, seen = project(points, cam)
            reads = []
            for (u, w), visible in zip(uv, seen):
                if not visible:
                    continue
                x = min(max(u * cols / cam.width - 0.5, 0), cols - 1)
                y = min(max(w * rows / cam.height - 0.5, 0), rows - 1)
                x0, y0 = min(int(x), cols - 2), min(int(y), rows - 2)
                fx, fy = x - x0, y - y0
                reads.append((maps[:, y0, x0] * (1 - fx) + maps[:, y0, x0 + 1] * fx) * (1 - fy)
                             + (maps[:, y0 + 1, x0] * (1 - fx) + maps[:, y0 + 1, x0 + 1] * fx) * fy)
            if reads:
                per_camera.append(np.mean(reads, axis=0))
        if per_camera:
            out[v, :-1], out[v, -1] = np.mean(per_camera, axis=0), 1.0
    return out


def test_camera_evidence_equals_a_voxel_by_voxel_reference():
    """Voxels seen by no camera, by one, by both, partly (some points outside the image or behind), boxes that
    overlap and a class that is not used."""
    car, ped = DETECTION_CLASSES.index("car"), DETECTION_CLASSES.index("pedestrian")
    front = camera([[20, 10, 120, 90], [90, 0, 200, 60], [0, 0, 50, 50]], [car, ped, -1], [0.7, 0.9, 1.0])
    left = camera([[60, 20, 160, 80]], [car], [0.5], T=FORWARD @ np.array([[0.0, 1, 0, 0], [-1, 0, 0, 0],
                                                                              [0, 0, 1, 0], [0, 0, 0, 1]]))
    rng = np.random.default_rng(2)
    samples = rng.uniform([-12.0, -12.0, -3.0], [12.0, 12.0, 3.0], (60, 4, 3))
    samples[:10, :, 0], samples[:10, :, 1] = 10.0, rng.uniform(-3.0, 3.0, (10, 4))  # seen by the front camera
    back = camera([[0, 0, 200, 100]], [ped], [0.6], T=FORWARD @ np.diag([-1.0, -1, 1, 1]))
    twin = camera([[0, 0, 100, 100]], [car], [0.3])  # the front camera's pose: its voxels are seen twice
    cameras = [front, left, back, twin]
    for points in (samples, samples[:, :1]):  # several samples per voxel (culled per camera), one (all cameras at once)
        evidence = inputs.camera_evidence(points, cameras)
        reference = reference_camera_evidence(points, cameras)
        assert 0 < reference[:, -1].sum() < len(points) and reference[:, car].max() > 0 and reference[:, ped].max() > 0
        np.testing.assert_allclose(evidence, reference, rtol=1e-6, atol=1e-7)


def test_fused_voxels_are_the_non_empty_coarse_voxels_with_exactly_n_samples_inside():
    fine = VoxelGrid.from_range(SMALL_RANGE, 0.4)
    coarse = inputs.coarse_grid(fine)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform([-12, -12, -4], [12, 12, 2], (300, 3)), np.full((40, 3), 1.1)])
    index, evidence = inputs.fused_voxels(points, [camera()], fine, 4, use_cameras=True)
    idx, inside = coarse.voxel_indices(points)
    assert sorted(index.tolist()) == sorted(set(coarse.flat_index(idx[inside]).tolist()))
    voxels, samples, _ = presample_voxels(points, coarse, 4)
    assert samples.shape == (len(index), 4, 3)
    lower = np.asarray(coarse.origin) + voxels * coarse.resolution
    assert np.all((samples >= lower[:, None]) & (samples <= lower[:, None] + coarse.resolution))
    assert evidence.shape == (len(index), inputs.CAMERA_CHANNELS) and evidence[:, -1].any()
    _, lidar_only = inputs.fused_voxels(points, [camera()], fine, 4, use_cameras=False)
    assert not lidar_only.any()


def test_without_pre_sampling_the_evidence_is_read_at_the_non_empty_voxels_centres():
    fine = VoxelGrid.from_range(SMALL_RANGE, 0.4)
    coarse = inputs.coarse_grid(fine)
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform([-12, -12, -4], [12, 12, 2], (300, 3)), rng.uniform(6, 10, (80, 3)),
                             [[30.0, 0, 0]]])  # the last one outside the grid
    car = DETECTION_CLASSES.index("car")
    front = camera([[20, 10, 120, 90], [90, 0, 200, 60]], [car, car], [0.7, 0.9])
    index, evidence = inputs.fused_voxels(points, [front], fine, 0, use_cameras=True)
    idx, inside = coarse.voxel_indices(points)
    assert index.tolist() == sorted(set(coarse.flat_index(idx[inside]).tolist()))
    voxels = np.stack(np.unravel_index(index, coarse.shape[::-1])[::-1], axis=1)  # (z, y, x) -> (x, y, z)
    reference = reference_camera_evidence(coarse.centers(voxels)[:, None], [front])
    assert 0 < reference[:, -1].sum() < len(index) and reference[:, car].max() > 0
    np.testing.assert_allclose(evidence, reference, rtol=1e-6, atol=1e-7)
    # network_inputs passes the voxels holding returns from lidar_inputs' occupied shares: the same voxels
    lidar = inputs.lidar_inputs(points, None, np.zeros(3), fine, False)
    held_index, held_evidence = inputs.fused_voxels(points, [front], fine, 0, True, holding=lidar.shares(fine)[0] > 0)
    np.testing.assert_array_equal(held_index, index)
    np.testing.assert_array_equal(held_evidence, evidence)


def test_voxel_indices_of_flat_indices_invert_flat_index():
    grid = VoxelGrid.from_range(SMALL_RANGE, 0.4)
    voxels = np.random.default_rng(4).integers(0, grid.shape, (500, 3))
    assert np.array_equal(grid.indices_of(grid.flat_index(voxels)), voxels)


def test_the_fine_binning_halved_is_the_coarse_binning_even_on_voxel_borders():
    """network_inputs bins the sweep once at the fine grid and halves the indices for the coarse one."""
    fine = VoxelGrid.from_range(SMALL_RANGE, 0.4)
    coarse = inputs.coarse_grid(fine)
    rng = np.random.default_rng(1)
    borders = np.stack(np.meshgrid(*(np.arange(-14, 14, 0.4),) * 2, np.arange(-5.2, 3.4, 0.4)), -1).reshape(-1, 3)
    points = np.concatenate([borders, borders + 1e-12, borders - 1e-12, rng.uniform(-14, 14, (2000, 3))])
    fine_idx, fine_inside = fine.voxel_indices(points)
    coarse_idx, coarse_inside = coarse.voxel_indices(points)
    assert np.array_equal(fine_inside, coarse_inside) and 0 < fine_inside.sum() < len(points)
    assert np.array_equal(fine_idx[fine_inside] >> 1, coarse_idx[coarse_inside])
    binned = fine.voxel_indices(points)
    for a, b in zip(presample_voxels(points, coarse, 4, 3), presample_voxels(points, coarse, 4, 3,
                                                                             (binned[0] >> 1, binned[1]))):
        assert np.array_equal(a, b)


def test_loss_keeps_every_known_occupied_voxel_a_share_of_the_free_ones_and_no_unknown():
    target = torch.tensor([OCCUPANCY_FREE] * 20000 + [4] * 50 + [OCCUPANCY_UNKNOWN] * 1000, dtype=torch.uint8)
    keep = loss_voxels(target, 0.1, torch.Generator().manual_seed(0))
    kept = target[keep]
    assert (kept == 4).sum() == 50 and not (kept == OCCUPANCY_UNKNOWN).any()
    assert 1700 < int((kept == OCCUPANCY_FREE).sum()) < 2300


def test_coarse_target_prefers_any_occupied_child_then_free_then_unknown():
    fine = VoxelGrid.from_range((-0.8, -0.8, 0.0, 0.8, 0.8, 0.8), 0.4)  # 4 x 4 x 2 fine, 2 x 2 x 1 coarse
    volume = np.full(fine.shape, OCCUPANCY_UNKNOWN, dtype=np.uint8)
    volume[0:2, 0:2, :] = OCCUPANCY_FREE
    volume[0, 0, 0] = 4
    volume[2:4, 0:2, :] = OCCUPANCY_FREE  # all free
    volume[0:2, 2:4, 0] = OCCUPANCY_FREE
    volume[0, 2, 0], volume[1, 2, 0], volume[0, 3, 0] = 7, 7, 4  # majority 7
    flat = volume.transpose(2, 1, 0).reshape(-1)
    assert coarse_target(flat, fine).tolist() == [4, OCCUPANCY_FREE, 7, OCCUPANCY_UNKNOWN]


def test_lidar_parents_are_the_occupied_voxels_and_their_vertical_neighbours_inside_the_grid():
    fine = VoxelGrid.from_range(SMALL_RANGE, 0.4)
    sx, sy, sz = inputs.coarse_grid(fine).shape
    layer = sx * sy
    holding = np.zeros((sz, sy, sx), dtype=bool)
    holding.reshape(-1)[[5, 5 + layer * 4, 7 + layer * (sz - 1)]] = True
    parents = inputs.lidar_parents(holding)
    assert parents.tolist() == sorted({5, 5 + layer, 5 + layer * 3, 5 + layer * 4, 5 + layer * 5,
                                       7 + layer * (sz - 2), 7 + layer * (sz - 1)})


def tiny_network(**overrides) -> OccFusionNet:
    torch.manual_seed(0)
    return OccFusionNet(OccFusionConfig(point_cloud_range=SMALL_RANGE, **{**TINY, **overrides})).eval()


def test_refinement_takes_the_lidar_parents_and_the_top_k_uncertain_non_free_voxels():
    net = tiny_network(refine_top_k=2)
    logits = torch.zeros(net.num_coarse, 17)
    logits[:, 0] = 10.0  # confidently free ...
    logits[[3, 4, 5, 6], 4] = torch.tensor([1.0, 3.0, 0.5, 2.0])  # ... except four car voxels, 5 least sure
    logits[[3, 4, 5, 6], 0] = 0.0
    _, occupied, score = occupied_confidence(free_relative(logits))
    assert occupied.tolist() == [3, 4, 5, 6]
    parents = net.refine_parents(occupied, score, torch.tensor([5]))
    assert parents.tolist() == [5, 3, 6]  # 5 already a LiDAR parent, then the two most uncertain others
    candidates = occupied[1:]  # voxel 3 not a candidate (forward leaves out the unobserved voxels so)
    assert net.refine_parents(candidates, score, torch.tensor([5])).tolist() == [5, 6, 4]
    assert tiny_network(refine=False).refine_parents(occupied, score, torch.tensor([5])).numel() == 0
    # more slots than candidates: no confidently free voxel fills the rest, among all voxels or a few rows
    wide = tiny_network(refine_top_k=5)
    assert wide.refine_parents(occupied, score, torch.tensor([5])).tolist() == [5, 3, 6, 4]
    _, occupied_rows, row_score = occupied_confidence(free_relative(logits[2:8]))  # rows 0..5: voxels 2..7
    assert wide.refine_parents(occupied_rows, row_score, torch.tensor([3])).tolist() == [3, 1, 4, 2]


def test_occupied_confidence_scores_the_non_free_rows_with_their_softmax_maximum_and_the_free_ones_zero():
    generator = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(50, 17, generator=generator)
    logits[::4, 0] = 20.0  # free rows among them
    logits[1, [0, 5]] = 30.0  # a tie of the free class and class 5: free (argmax takes the first)
    logits[2, [3, 7]] = 30.0  # a tie of two classes: the first
    logits[5] = logits[5] * 300  # large logits: no overflow
    label, occupied, score = occupied_confidence(free_relative(logits))
    probabilities = torch.softmax(logits.double(), dim=1).float()
    assert torch.equal(label, probabilities.argmax(dim=1)) and label[1] == 0 and label[2] == 3
    assert torch.equal(occupied, torch.nonzero(label > 0).reshape(-1)) and 0 < len(occupied) < 50
    expected = torch.where(label > 0, probabilities.max(dim=1).values, torch.zeros(50))
    assert torch.allclose(score, expected, atol=1e-6)


def bev_observing(observation: torch.Tensor, fine: VoxelGrid, generator: torch.Generator | None = None,
                  statistics: bool = False) -> torch.Tensor:
    """A random BEV image whose children-share channels are those of a fine observation (fine voxels,) (0 unobserved,
    1 free, 2 occupied), as lidar_inputs writes them (its last channels)."""
    side = fine.shape[0] // 2
    bev = torch.rand(1, inputs.lidar_channel_count(fine, statistics), side, side, generator=generator)
    shares = np.concatenate([inputs.children_share(observation.numpy() == state, fine) for state in (2, 1)])
    bev[0, -len(shares):] = torch.from_numpy(shares)
    return bev


@pytest.mark.parametrize("statistics", [False, True])
def test_observed_parents_have_a_fine_child_hit_or_crossed(statistics):
    net = tiny_network(bev_statistics=statistics)
    fine = net.config.fine_grid
    observation = torch.zeros(fine.num_voxels, dtype=torch.uint8)
    observation[1] = 2  # fine (1, 0, 0) occupied: child of coarse 0
    observation[2 * net.fine_side + 2] = 1  # fine (2, 2, 0) free: child of coarse (1, 1, 0)
    observation[fine.flat_index(np.array([[63, 63, 19]]))[0]] = 1  # the last fine voxel: the last coarse one
    observed = net.observed_parents(bev_observing(observation, fine, statistics=statistics))
    assert torch.nonzero(observed).reshape(-1).tolist() == [0, net.side + 1, net.num_coarse - 1]


@pytest.mark.parametrize("statistics", [False, True])
def test_observed_parents_are_the_parents_of_the_voxels_a_sweep_observed(statistics):
    net = tiny_network(bev_statistics=statistics)
    fine = net.config.fine_grid
    rng = np.random.default_rng(2)
    points = rng.uniform([-14, -14, -6], [14, 14, 4], (300, 3))  # some outside the grid
    lidar = inputs.lidar_inputs(points, rng.uniform(0, 255, 300), np.array([0.0, 0.0, 1.8]), fine, statistics)
    sx, sy, sz = fine.shape
    expected = lidar.observed.reshape(sz // 2, 2, sy // 2, 2, sx // 2, 2).any(axis=(1, 3, 5)).reshape(-1)
    assert 0 < expected.sum() < len(expected)
    assert np.array_equal(net.observed_parents(torch.from_numpy(lidar.bev[None])).numpy(), expected)


def test_eval_mode_corrects_the_free_prior_for_the_subsampled_free_voxels():
    net = tiny_network(coarse_free_keep=0.1, fine_free_keep=0.5)
    fine = net.config.fine_grid
    args = (torch.rand(1, inputs.lidar_channel_count(fine, False), 32, 32), torch.tensor([0, 9]),
            torch.rand(2, inputs.CAMERA_CHANNELS), torch.tensor([0, 9]), torch.ones(fine.num_voxels))
    with torch.no_grad():
        trained, evaluated = net.train()(*args), net.eval()(*args)
    shift = evaluated["coarse_logits"] - net.eval().coarse_head(net.voxel_features(*args[:3]))
    assert torch.allclose(shift[:, 0], torch.full((net.num_coarse,), float(np.log(10))), atol=1e-5)
    assert torch.allclose(shift[:, 1:], torch.zeros(net.num_coarse, 16), atol=1e-5)
    assert trained["coarse_logits"].shape == evaluated["coarse_logits"].shape


def test_infer_gives_forwards_labels_at_the_observed_voxels_and_refines_only_their_observed_children():
    net = tiny_network(refine_top_k=30, coarse_free_keep=1.0)
    fine = net.config.fine_grid
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # untrained: a strong random head so that the labels vary from voxel to voxel
        net.coarse_head.weight.copy_(10 * torch.randn(net.coarse_head.weight.shape, generator=generator))
    fused, camera_features = torch.tensor([0, 9, 40]), torch.rand(3, inputs.CAMERA_CHANNELS, generator=generator)
    lidar_parents = torch.tensor([0, 9, 40, 41])
    observation = torch.randint(0, 3, (fine.num_voxels,), generator=generator, dtype=torch.uint8)
    observation[torch.rand(fine.num_voxels, generator=generator) > 0.06] = 0  # 3 % occupied, 3 % free
    observation[[0, 18, 80]] = 2  # a return in each fused voxel (coarse 0, 9, 40: fine (0, 0), (18, 0), (16, 1))
    observation[net.refine(torch.zeros(1, net.config.voxel_features), lidar_parents[3:], observation)[0]] = 0
    bev = bev_observing(observation, fine, generator)
    lidar = inputs.LidarInputs(bev[0].numpy(), observation.numpy(), observation.numpy() > 0)
    rows = inputs.observed_rows(lidar, fine, fused.numpy(), lidar_parents.numpy())
    with torch.no_grad():
        full = net(bev, fused, camera_features, lidar_parents, observation)  # every voxel
        label, score, fine_index, fine_label, fine_score = net.infer(
            bev, *(torch.from_numpy(rows[k]) for k in ("observed_index", "height_end", "fused_rows")),
            camera_features, torch.from_numpy(rows["parent_rows"]), observation)
    observed = net.observed_parents(bev)
    seen = torch.from_numpy(rows["observed_index"])
    assert torch.equal(seen, torch.nonzero(observed).reshape(-1)) and 0 < len(seen) < net.num_coarse
    assert (full["coarse_label"][~observed] > 0).any() and len(torch.unique(label)) > 3
    assert torch.equal(label, full["coarse_label"][seen]) and torch.allclose(score, full["coarse_score"][seen])
    assert (score[label == 0] == 0).all() and (score[label > 0] > 1 / 17).all()  # scored: the non-free rows
    # forward refines the children of every parent; infer those of the observed parents that the sweep observed
    child_observed = observation.numpy() > 0
    child = full["fine_index"]
    parent_of = child // 2 % net.side + net.side * (
        child // (2 * net.fine_side) % net.side + net.side * (child // (2 * net.fine_side ** 2)))
    kept = observed[parent_of] & torch.from_numpy(child_observed[full["fine_index"].numpy()])
    assert 0 < kept.sum() < len(kept) and not observed[parent_of].all()
    expected_score, expected_label = torch.softmax(full["fine_logits"][kept], dim=1).max(dim=1)
    expected_score[expected_label == 0] = 0.0  # only non-free voxels are scored
    expected = dict(zip(full["fine_index"][kept].tolist(), zip(expected_label.tolist(), expected_score.tolist())))
    assert sorted(fine_index.tolist()) == sorted(expected)
    for index, child_label, child_score in zip(fine_index.tolist(), fine_label.tolist(), fine_score.tolist()):
        assert child_label == expected[index][0] and child_score == pytest.approx(expected[index][1], abs=1e-5)


def test_a_unet_without_its_dead_inputs_reads_only_the_weighted_channels_and_gives_the_same_features():
    torch.manual_seed(0)
    unet = BevUNet(13, (8, 16)).eval()
    dead = [0, 4, 12]
    with torch.no_grad():
        unet.stem[0][0].weight[:, dead] = 0.0
        unet.stem[0][1].running_mean.uniform_(-1, 1)  # eval-mode batch norm away from the identity
    image = torch.randn(2, 13, 16, 16)
    pruned = unet.without_dead_inputs()
    kept = sorted(set(range(13)) - set(dead))
    assert pruned.stem[0][0].in_channels == 16 and len(pruned.input_channels) == 16  # 10 used, padded to 16
    assert sorted(set(pruned.input_channels.tolist())) == kept and unet.input_channels is None
    loud = image.clone()
    loud[:, dead] = 1e6  # the dead channels are never read
    with torch.no_grad():
        assert torch.allclose(pruned(loud), unet(image), atol=1e-5)
        all_weighted = BevUNet(13, (8, 16)).eval()
        assert all_weighted.without_dead_inputs().input_channels is None
    assert pruned.to("meta").input_channels.device.type == "meta"  # a buffer: it moves with the module (CUDA)
    assert "input_channels" not in pruned.state_dict()  # and checkpoints do not hold it


def test_children_are_the_eight_fine_voxels_inside_their_parent():
    net = tiny_network()
    fine = net.config.fine_grid
    coarse = inputs.coarse_grid(fine)
    parents = torch.tensor([0, 37, net.num_coarse - 1])
    fine_index, logits = net.refine(torch.zeros(len(parents), net.config.voxel_features), parents,
                                    torch.zeros(fine.num_voxels))
    assert fine_index.shape == (24,) and logits.shape == (24, 17) and len(set(fine_index.tolist())) == 24
    sx, sy, _ = fine.shape
    f = fine_index.numpy()
    children = fine.centers(np.stack([f % sx, (f // sx) % sy, f // (sx * sy)], axis=1))
    c = parents.numpy().repeat(len(CHILD_OFFSETS))
    cx, cy = coarse.shape[:2]
    lower = np.asarray(coarse.origin) + np.stack([c % cx, (c // cx) % cy, c // (cx * cy)], axis=1) * 0.8
    assert np.all((children > lower) & (children < lower + 0.8))


def test_fine_volume_upsamples_coarse_labels_overwrites_refined_ones_and_hides_unobserved():
    fine = VoxelGrid.from_range((-0.8, -0.8, 0.0, 0.8, 0.8, 0.8), 0.4)
    coarse_voxels, coarse_label = np.array([0, 2, 3]), np.array([4, 6, 11])  # coarse voxel 1 observed by none
    observed = np.ones(fine.num_voxels, dtype=bool)
    observed[fine.flat_index(np.array([[3, 3, 1], [2, 0, 0], [3, 0, 1]]))] = False  # the last two: children of 1
    refined = fine.flat_index(np.array([[1, 1, 1]]))
    volume = inputs.fine_volume(coarse_voxels, coarse_label, refined, np.array([7]), observed, fine)
    assert volume[0, 0, 0] == 4 and volume[1, 1, 1] == 7 and volume[0, 2, 0] == 6 and volume[2, 3, 0] == 11
    assert volume[3, 3, 1] == volume[2, 0, 0] == volume[3, 0, 1] == OCCUPANCY_UNKNOWN
    score = inputs.voxel_scores(np.array([[0, 1, 0], [1, 1, 1], [2, 3, 0], [1, 2, 1]]), coarse_voxels,
                                np.array([0.9, 0.7, 0.6]), refined, np.array([0.5]), fine)
    assert score.tolist() == pytest.approx([0.9, 0.5, 0.6, 0.7])


def test_voxel_scores_are_those_of_the_labels_fine_volume_writes_at_every_voxel():
    """Repeated refined voxels (a parent refined twice) keep the last score, as fine_volume keeps the last label."""
    rng = np.random.default_rng(3)
    fine = VoxelGrid.from_range((-1.6, -1.6, 0.0, 1.6, 1.6, 1.6), 0.4)  # 8 x 8 x 4, coarse 4 x 4 x 2
    coarse = rng.random(fine.num_voxels // 8).astype(np.float32)
    refined = np.concatenate([rng.choice(fine.num_voxels, 40, replace=False), [5, 5, 77]])
    refined_score = rng.random(len(refined)).astype(np.float32)
    sx, sy, sz = fine.shape
    # the score volume by the same upsample-and-overwrite as the labels: fine_volume on scores scaled to 0..250
    every = np.arange(len(coarse))
    labels = inputs.fine_volume(every, (coarse * 250).astype(np.uint8), refined,
                                (refined_score * 250).astype(np.uint8), np.ones(fine.num_voxels, dtype=bool), fine)
    voxels = np.argwhere(np.ones(fine.shape, dtype=bool))
    scores = inputs.voxel_scores(voxels, every, coarse, refined, refined_score, fine)
    np.testing.assert_array_equal((scores * 250).astype(np.uint8), labels[tuple(voxels.T)])
    assert scores[fine.flat_index(voxels) == 5] == refined_score[-2]


def test_active_training_repeats_the_hardest_frames_on_odd_epochs():
    losses = np.array([0.1, 5.0, 0.2, 3.0, 0.3, 0.4, 4.0, 0.5, 0.6, 0.05])
    assert hard_frame_table(losses, 2, 0, 0.3).tolist() == list(range(10))
    table = hard_frame_table(losses, 1, 0, 0.3)
    assert len(table) == 10 and set(table.tolist()) == {1, 3, 6}
    assert hard_frame_table(np.full(10, np.nan), 1, 0, 0.3).tolist() == list(range(10))


def test_lovasz_is_zero_for_a_perfect_prediction_and_grows_with_errors():
    labels = torch.tensor([0, 0, 1, 2, 2])
    perfect = torch.nn.functional.one_hot(labels, 3).float()
    assert float(lovasz_softmax(perfect, labels)) == pytest.approx(0.0)
    wrong = perfect.roll(1, dims=1)
    assert float(lovasz_softmax(wrong, labels)) > float(lovasz_softmax(0.5 * perfect + 0.5 / 3, labels)) > 0


# --- the node end to end, and export parity, on the tiny synthetic scene --------------------------------------------


@functools.cache
def tiny_model():
    """(checkpoint, cache) of a tiny occupancy network trained a few steps on the tiny synthetic dataroot."""
    from perception3d.cli import main
    from synth_data import VERSION, scratch, tiny_dataroot

    work = scratch("occupancy_learned")
    cache = work / "cache"
    assert main(["dataset", "build", "--no-progress", "--dataroot", str(tiny_dataroot()), "--version", VERSION,
                 "--split", "synth_train", "--out", str(cache), "--past-sweeps", "0", "--boxes2d", "good"]) == 0
    from perception3d.train.occupancy import OccupancyTask, OccupancyTraining, cache_keyframes
    from perception3d.train.trainer import TrainConfig, train

    config = OccFusionConfig(**TINY)
    task = OccupancyTask(cache_keyframes([cache], config, progress=False), config, OccupancyTraining(),
                         caches=[cache])
    train(task, work / "tiny.pt", TrainConfig(epochs=1, batch_size=1, max_steps=4, device="cpu"), progress=False)
    return work / "tiny.pt", cache


def test_export_keeps_the_labels_of_the_torch_network(tmp_path):
    from perception3d.core.models.occfusion_export import export_occupancy
    from perception3d.train.export_command import PARITY, occupancy_parity
    from perception3d.train.occupancy import cache_keyframes

    checkpoint, cache = tiny_model()
    frames = cache_keyframes([cache], load_checkpoint(checkpoint, expected_model="occupancy")[0].config,
                             progress=False, limit=3)
    path = export_occupancy(checkpoint, tmp_path / "tiny.onnx", frames[0])
    assert occupancy_parity(checkpoint, path, frames) >= PARITY
    # a file exported while fine_observation was float32 runs on the node's uint8 input, with the same labels
    float_state = {**frames[0], "fine_observation": frames[0]["fine_observation"].astype(np.float32)}
    older = export_occupancy(checkpoint, tmp_path / "float_state.onnx", float_state)
    import onnxruntime

    assert [i.type for i in onnxruntime.InferenceSession(str(older)).get_inputs()][-1] == "tensor(float)"
    assert occupancy_parity(checkpoint, older, frames) >= PARITY


def test_learned_mode_replays_and_labels_exactly_the_voxels_the_sweep_observed(tmp_path):
    from perception3d.msgs.bag import BagReader
    from perception3d.msgs.occupancy import occupancy_msg_to_volume
    from perception3d.msgs.pointcloud import pointcloud2_to_array
    from perception3d.runtime.bag import replay
    from perception3d.runtime.graph import FULL_GRAPH
    from synth_data import tiny_bags

    checkpoint, _ = tiny_model()
    bag = tiny_bags()[0]
    grids = {}
    for mode in ("geometric", "learned"):
        config = tmp_path / f"{mode}.yaml"
        doc = yaml.safe_load(CONFIG.read_text())
        doc["occupancy"]["ros__parameters"].update(mode=mode, model_path=str(checkpoint), device="cpu")
        config.write_text(yaml.safe_dump(doc))
        replay(bag, tmp_path / mode, FULL_GRAPH.select(["occupancy"]), config=config, progress=False)
        with BagReader(tmp_path / mode) as reader:
            grids[mode] = [occupancy_msg_to_volume(m.decode())[0]
                           for m in reader.messages(["/perception/occupancy/grid"])]
            voxels = [pointcloud2_to_array(m.decode()) for m in reader.messages(["/perception/occupancy/voxels"])]
    with BagReader(bag) as reader:
        sweeps = len(list(reader.messages(["/LIDAR_TOP/points"])))
    assert len(grids["learned"]) == len(grids["geometric"]) == sweeps > 0
    for learned, geometric in zip(grids["learned"], grids["geometric"]):
        np.testing.assert_array_equal(learned == OCCUPANCY_UNKNOWN, geometric == OCCUPANCY_UNKNOWN)
        assert set(np.unique(learned).tolist()) <= set(range(17)) | {OCCUPANCY_UNKNOWN}
    assert all(len(v) == 0 or ((v["confidence"] > 0) & (v["confidence"] <= 1)).all() for v in voxels)


@pytest.mark.parametrize("statistics", [False, True])
def test_lidar_inputs_give_each_coarse_voxel_the_share_of_its_fine_voxels_hit_or_crossed(statistics):
    fine = VoxelGrid.from_range(SMALL_RANGE, 0.4)
    points = np.array([[1.0, 1.0, 0.1], [1.3, 1.1, 0.1], [10.1, -3.0, 1.0]])  # two fine voxels of one coarse one
    intensity = np.array([255.0, 0, 0])
    lidar = inputs.lidar_inputs(points, intensity, np.array([0.0, 0, 1.8]), fine, statistics)
    bins = inputs.bev_grid(fine).channels if statistics else 0  # the statistics come first
    assert lidar.bev.shape[0] == inputs.lidar_channel_count(fine, statistics)
    np.testing.assert_array_equal(lidar.bev[:bins], bev_input(points, intensity / 255, inputs.bev_grid(fine))[:bins])
    z = inputs.coarse_grid(fine).shape[2]
    occupied_share = lidar.bev[bins:bins + z]
    coarse = inputs.coarse_grid(fine)
    (cx, cy, cz), = coarse.voxel_indices(points[:1])[0]
    assert occupied_share[cz, cy, cx] == pytest.approx(2 / 8)
    assert occupied_share.sum() == pytest.approx(3 / 8)
    hit = np.zeros(fine.num_voxels, dtype=bool)
    hit[fine.flat_index(fine.voxel_indices(points)[0])] = True
    free = free_voxels(points, fine, np.array([0.0, 0, 1.8]), 0.2) & ~hit  # crossed by a ray, no return in it
    assert hit.sum() == 3 and free.sum() > 0
    np.testing.assert_array_equal(lidar.fine_observation, np.where(hit, 2, free.astype(np.uint8)))
    np.testing.assert_array_equal(lidar.bev[bins + z:], inputs.children_share(free, fine))
    np.testing.assert_array_equal(lidar.observed, hit | free)


def test_the_shipped_checkpoint_is_the_default_model_and_a_grid_it_was_not_trained_for_is_refused():
    from perception3d.core.models.shipped import SHIPPED_OCCUPANCY
    from perception3d.errors import ConfigError
    from perception3d.nodes.occupancy import OccupancyNode
    from perception3d.nodes.params import load_parameters

    assert SHIPPED_OCCUPANCY.stat().st_size < 20 * 2**20
    params = {**load_parameters(None, {"occupancy": OccupancyNode.parameters})["occupancy"], "camera_names": [],
              "mode": "learned", "device": "cpu", "warm_up": False}
    node = OccupancyNode(params)
    assert node.network.config.fine_grid.matches(node.grid) and node.network.config.camera_fusion
    with pytest.raises(ConfigError, match="grid"):
        OccupancyNode({**params, "grid.resolution_m": 0.8})
