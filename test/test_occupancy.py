"""Occupancy by voxel vote and range-image ray casting, and OccFusion pre-sampling, against brute force."""
import numpy as np
import pytest

from perception3d.core.classes import OCCUPANCY_FREE, OCCUPANCY_UNKNOWN
from perception3d.core.occupancy import (
    UNLABELLED_OCCUPIED_CLASS,
    default_grid,
    occupancy_volume,
    occupied_voxels,
    presample_voxels,
)
from perception3d.core.voxels import VoxelGrid
from perception3d.errors import PointCloudError

SENSOR = np.array([0.1, 0.05, 1.8])


def lookup(volume, grid, points):
    idx, inside = grid.voxel_indices(points)
    assert inside.all()
    return volume[idx[:, 0], idx[:, 1], idx[:, 2]]


@pytest.fixture(scope="module")
def wall_scene():
    grid = default_grid(0.4)
    y, z = np.meshgrid(np.arange(-5.0, 5.0, 0.05), np.arange(-1.0, 2.5, 0.05), indexing="ij")
    wall = np.stack([np.full(y.size, 20.0), y.ravel(), z.ravel()], axis=1)
    return grid, wall, occupancy_volume(wall, grid, SENSOR)


def test_wall_occupied_free_in_front_unobserved_behind(wall_scene):
    grid, wall, volume = wall_scene
    assert volume.shape == grid.shape and volume.dtype == np.uint8
    assert np.all(lookup(volume, grid, wall) == UNLABELLED_OCCUPIED_CLASS)
    # Brute force: sample every 37th ray at 5 cm from 3 m after the sensor to 1 m before the hit. (Closer than
    # ~3 m a voxel's centre can point where no beam returned, and voxels the rays along the wall's silhouette only
    # graze point past it: such voxels stay unobserved, see the module doc; the silhouette rays are left out.)
    interior = (np.abs(wall[:, 1]) < 4.0) & (wall[:, 2] > -0.5) & (wall[:, 2] < 2.0)
    rays = wall[interior][::37]
    t = np.arange(0.0, 1.0, 0.0025)
    samples = []
    for p in rays:
        length = np.linalg.norm(p - SENSOR)
        keep = (t * length > 3.0) & (t * length < length - 1.0)
        samples.append(SENSOR + t[keep, None] * (p - SENSOR))
    samples = np.vstack(samples)
    assert np.mean(lookup(volume, grid, samples) == OCCUPANCY_FREE) > 0.99
    # Behind the wall, in its shadow: unobserved.
    y, z = np.meshgrid(np.arange(-3.0, 3.0, 0.4), np.arange(0.0, 1.5, 0.4), indexing="ij")
    behind = np.stack([np.full(y.size, 26.0), y.ravel(), z.ravel()], axis=1)
    assert np.all(lookup(volume, grid, behind) == OCCUPANCY_UNKNOWN)
    # Directions without any return (behind the sensor) are unobserved too.
    assert np.all(lookup(volume, grid, np.array([[-10.0, 0.0, 1.0], [0.0, -20.0, 0.5]])) == OCCUPANCY_UNKNOWN)
    counts = np.bincount(volume.ravel(), minlength=256)
    assert counts[OCCUPANCY_FREE] > 0 and counts[UNLABELLED_OCCUPIED_CLASS] > 0


def test_flat_order_matches_the_grid_message_index(wall_scene):
    grid, wall, volume = wall_scene
    idx, _ = grid.voxel_indices(wall)
    flat = volume.ravel(order="F")
    assert np.all(flat[grid.flat_index(idx)] == volume[idx[:, 0], idx[:, 1], idx[:, 2]])


def test_occupied_voxels_are_the_class_voxels_in_message_order():
    rng = np.random.default_rng(4)
    labels = rng.choice([OCCUPANCY_FREE, OCCUPANCY_UNKNOWN, 1, 7, 16], size=(5, 6, 7), p=[0.4, 0.4, 0.1, 0.05, 0.05])
    volume = labels.astype(np.uint8).transpose(2, 1, 0)  # [x, y, z] view of message-ordered labels, as the nodes'
    occupied = occupied_voxels(volume)
    expected = np.argwhere((volume >= 1) & (volume <= 16))
    assert len(occupied) == len(expected) > 0
    assert sorted(map(tuple, occupied)) == sorted(map(tuple, expected))
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, volume.shape)
    assert np.all(np.diff(grid.flat_index(occupied)) > 0)  # message order: x fastest, then y, then z
    assert np.array_equal(occupied_voxels(np.ascontiguousarray(volume)), occupied)  # any memory layout
    with pytest.raises(TypeError, match="uint8"):
        occupied_voxels(volume.astype(np.int64))


def test_majority_vote_labels():
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 4, 4))
    sensor = np.array([0.05, 0.05, 0.05])
    points = np.array([
        [1.2, 1.2, 1.2], [1.5, 1.5, 1.5], [1.7, 1.1, 1.3], [1.4, 1.6, 1.2], [1.3, 1.3, 1.8], [1.9, 1.9, 1.9],
        [2.5, 0.5, 0.5], [2.6, 0.6, 0.5],  # only ignore labels
        [0.5, 2.5, 0.5], [0.6, 2.6, 0.5],  # a 4 / 7 tie
    ])
    labels = np.array([4, 4, 7, 0, 0, 0, 0, 0, 7, 4])
    volume = occupancy_volume(points, grid, sensor, labels, unlabelled_class=13)
    assert volume[1, 1, 1] == 4  # 2 x car beats 1 x pedestrian; the 3 ignore points do not vote
    assert volume[2, 0, 0] == 13  # occupied, class unknown -> the configured fallback
    assert volume[0, 2, 0] == 4  # ties go to the lower class index
    assert occupancy_volume(points, grid, sensor)[1, 1, 1] == UNLABELLED_OCCUPIED_CLASS
    with pytest.raises(ValueError):
        occupancy_volume(points, grid, sensor, labels, unlabelled_class=0)
    with pytest.raises(ValueError):
        occupancy_volume(points, grid, sensor, np.full(len(points), 17))


def test_majority_vote_equals_a_per_voxel_count_on_random_points():
    """Many voxels with few points and labels from a small set (ties, ignore-only voxels), against a count per
    voxel: the most frequent label 1..16, the lower one on ties, the fallback where all are 0."""
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (6, 5, 4))
    sensor = np.array([-0.5, -0.5, -0.5])
    rng = np.random.default_rng(3)
    for trial in range(20):
        points = rng.uniform(0.0, [6.0, 5.0, 4.0], (int(rng.integers(1, 300)), 3))
        labels = rng.choice([0, 2, 5, 9] if trial % 2 else np.arange(17), len(points))
        volume = occupancy_volume(points, grid, sensor, labels, unlabelled_class=13)
        idx, _ = grid.voxel_indices(points)
        for voxel in {tuple(v) for v in idx}:
            votes = np.bincount(labels[(idx == voxel).all(axis=1)], minlength=17)[1:]
            expected = 1 + int(np.argmax(votes)) if votes.max() > 0 else 13
            assert volume[voxel] == expected, (trial, voxel, votes)


def test_past_sweeps_fill_only_what_the_current_sweep_does_not_see_free(wall_scene):
    grid, wall, _ = wall_scene
    past = np.array([[10.0, 0.0, 0.5],  # in front of the wall: seen free now (a moving object's trail)
                     [30.0, 0.0, 0.5]])  # hidden behind the wall now
    volume = occupancy_volume(wall, grid, SENSOR, past_points=past, past_labels=np.array([4, 7]),
                              labels=np.full(len(wall), 15))
    assert lookup(volume, grid, past).tolist() == [OCCUPANCY_FREE, 7]
    assert np.all(lookup(volume, grid, wall) == 15)


def fps_brute_force_ok(points, picks):
    """Each pick after the first is a point farthest (min distance) from the earlier picks."""
    for k in range(1, len(picks)):
        dist_all = np.min(np.linalg.norm(points[:, None] - picks[None, :k], axis=2), axis=1)
        dist_pick = np.min(np.linalg.norm(picks[k] - picks[:k], axis=1))
        if not np.isclose(dist_pick, dist_all.max()):
            return False
    return True


def test_presampling_exact_counts_bounds_fps_and_determinism():
    rng = np.random.default_rng(0)
    grid = VoxelGrid((-4.0, -4.0, -2.0), 0.8, (10, 10, 5))
    dense = rng.uniform([0.0, 0.0, 0.0], [0.8, 0.8, 0.8], (200, 3)) + [0.0, 0.0, -0.4]  # 200 points in 1 voxel
    sparse = np.array([[2.1, 2.1, 0.1], [2.2, 2.3, 0.2], [-3.9, 3.9, -1.9]])  # 2 + 1 points
    exact = rng.uniform(0.0, 0.8, (8, 3)) + [-1.6, 0.0, -0.4]  # exactly N
    outside = np.array([[100.0, 0.0, 0.0]])
    points = np.vstack([dense, sparse, exact, outside])
    voxels, samples, real = presample_voxels(points, grid, num_points=8, seed=3)
    assert len(voxels) == 4 and samples.shape == (4, 8, 3) and real.shape == (4, 8)
    lower = np.asarray(grid.origin) + voxels * grid.resolution
    assert np.all((samples >= lower[:, None]) & (samples <= lower[:, None] + grid.resolution))
    by_voxel = {tuple(v): i for i, v in enumerate(voxels.tolist())}
    d = by_voxel[tuple(grid.voxel_indices(dense[:1])[0][0])]
    assert real[d].all()
    assert all(np.any(np.all(dense == p, axis=1)) for p in samples[d])  # FPS picks are input points
    assert len(np.unique(samples[d], axis=0)) == 8
    assert fps_brute_force_ok(dense, samples[d])
    s = by_voxel[tuple(grid.voxel_indices(sparse[:1])[0][0])]
    assert real[s].sum() == 2 and np.allclose(samples[s][real[s]], sparse[:2])
    e = by_voxel[tuple(grid.voxel_indices(exact[:1])[0][0])]
    assert real[e].all() and np.allclose(np.sort(samples[e], axis=0), np.sort(exact, axis=0))
    again = presample_voxels(points, grid, num_points=8, seed=3)
    assert np.array_equal(again[1], samples) and np.array_equal(again[0], voxels)
    other = presample_voxels(points, grid, num_points=8, seed=4)[1]
    assert not np.array_equal(other[s][~real[s]], samples[s][~real[s]])
    with pytest.raises(ValueError):
        presample_voxels(points, grid, num_points=0)


def reference_fps(points: np.ndarray, first: int, num_points: int) -> np.ndarray:
    """Farthest point sampling of one voxel's points, one point at a time: the next pick is the first point (input
    order) whose distance to the nearest pick is the largest."""
    picks = [first]
    nearest = np.full(len(points), np.inf)
    for _ in range(num_points - 1):
        for i, p in enumerate(points):
            nearest[i] = min(nearest[i], float(np.sum((p - points[picks[-1]]) ** 2)))
        best = max(nearest)
        picks.append(next(i for i in range(len(points)) if nearest[i] == best))
    return points[picks]


def test_presampling_all_voxels_at_once_equals_one_voxel_at_a_time_with_ties():
    """Voxels of very different point counts sampled together (the vectorised FPS) pick exactly what a per-voxel loop
    picks from the same first point, ties included (lattice points and duplicates: equal distances go to the first
    point in input order)."""
    rng = np.random.default_rng(1)
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 4, 2))
    lattice = np.stack(np.meshgrid(*[np.arange(0.1, 1.0, 0.2)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    groups = [lattice + [2.0, 0.0, 0.0],  # 125 points, many equal distances
              np.vstack([rng.uniform(0.0, 1.0, (5, 3))] * 3) + [0.0, 1.0, 1.0],  # 15 points, each thrice
              rng.uniform(0.0, 1.0, (9, 3)) + [3.0, 3.0, 0.0],  # one more than N
              rng.uniform(0.0, 1.0, (40, 3)) + [1.0, 2.0, 1.0],
              rng.uniform(0.0, 1.0, (3, 3))]  # fewer than N: not sampled
    points = np.vstack([g[rng.permutation(len(g))] for g in groups])[rng.permutation(sum(map(len, groups)))]
    voxels, samples, real = presample_voxels(points, grid, num_points=8, seed=5)
    checked = 0
    for v, picked, is_real in zip(voxels, samples, real):
        mine = points[np.all(grid.voxel_indices(points)[0] == v, axis=1)]  # input order
        if len(mine) <= 8:
            continue
        assert is_real.all()
        first = int(np.flatnonzero(np.all(mine == picked[0], axis=1))[0])
        np.testing.assert_array_equal(picked, reference_fps(mine, first, 8))
        checked += 1
    assert checked == 4


def test_non_finite_points_are_dropped_and_bad_shapes_rejected(wall_scene):
    grid, wall, volume = wall_scene
    with_nan = np.vstack([[[np.nan, 0.0, 0.0]], wall, [[np.inf, 1.0, 0.0]]])
    assert np.array_equal(occupancy_volume(with_nan, grid, SENSOR), volume)
    # the caller's voxel indices of all rows (the node's, shared with its confidence) give the same volume
    labels = np.arange(len(with_nan)) % 3
    with np.errstate(invalid="ignore"):  # the non-finite rows' indices are garbage, and dropped
        binned = grid.voxel_indices(with_nan)
    assert np.array_equal(occupancy_volume(with_nan, grid, SENSOR, labels, binned=binned),
                          occupancy_volume(with_nan, grid, SENSOR, labels))
    with pytest.raises(PointCloudError, match="occupancy_volume"):
        occupancy_volume(wall[:, :2], grid, SENSOR)


def test_an_empty_sweep_is_all_unknown_and_builds_no_direction_table():
    """A warm-up's empty sweep (the learned node's, at start) must not build and keep a 10 MB table for a sensor
    position that no sweep has."""
    from perception3d.core import occupancy

    grid = VoxelGrid.from_range((-3.2, -3.2, -1.6, 3.2, 3.2, 1.6), 0.4)
    occupancy._voxel_directions.cache_clear()
    volume = occupancy_volume(np.zeros((0, 3)), grid, np.zeros(3))
    assert (volume == OCCUPANCY_UNKNOWN).all() and occupancy._voxel_directions.cache_info().currsize == 0
    occupancy_volume(np.array([[2.0, 0.0, 0.0]]), grid, np.zeros(3))
    assert occupancy._voxel_directions.cache_info().currsize == 1


def test_closer_than_is_the_per_voxel_comparison_across_chunks():
    from perception3d.core import occupancy

    rng = np.random.default_rng(3)
    size = 2 * occupancy.FREE_TEST_CHUNK + 17  # two full chunks and a partial one
    nearest = rng.uniform(-1.0, 50.0, 500).astype(np.float32)
    voxel_bin = rng.integers(0, len(nearest), size).astype(np.int32)
    voxel_range = rng.uniform(0.0, 60.0, size).astype(np.float32)
    voxel_range[:100] = nearest[voxel_bin[:100]]  # ties: not closer
    expected = voxel_range < nearest[voxel_bin]
    assert np.array_equal(occupancy._closer_than(voxel_range, voxel_bin, nearest), expected)
    assert not occupancy._closer_than(voxel_range[:0], voxel_bin[:0], nearest).size


def test_sorted_keys_sorts_like_np_sort():
    from perception3d.core import occupancy

    rng = np.random.default_rng(4)
    key = np.concatenate([rng.integers(0, 2**31 - 1, 5000), rng.integers(0, 70000, 5000), [0, 2**31 - 1, 65535, 65536]])
    key = rng.permutation(key).astype(np.int32)  # duplicates, both halves' extremes, runs across the 16-bit boundary
    assert np.array_equal(occupancy._sorted_keys(key), np.sort(key))
    assert occupancy._sorted_keys(key[:0]).size == 0
