"""The ground surface (core.ground) on a sloped, crowned street with kerbs, and on the flat synthetic worlds."""
import numpy as np
import pytest

from perception3d.bench.algo import synthetic_frame
from perception3d.core.classes import FINE_TO_COARSE, LIDARSEG_CLASSES
from perception3d.core.geometry import transform_points
from perception3d.core.ground import GroundParams, fit_ground_plane, fit_ground_surface, sweep_ground
from perception3d.core.segmentation import segment_points
from perception3d.data.lidar import LidarSimulator
from perception3d.data.rig import load_rig
from perception3d.data.world import World
from road_scene import CAR, KERB_FACE, ROAD, SIDEWALK_TOP, T_BASE_LIDAR, WALL, ground_height, road_height, road_sweep

DRIVEABLE, SIDEWALK = LIDARSEG_CLASSES.index("driveable_surface"), LIDARSEG_CLASSES.index("sidewalk")
BANDS = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0), (40.0, 50.0)]


@pytest.fixture(scope="module")
def street():
    points, kind, exact = road_sweep()
    base = transform_points(T_BASE_LIDAR, points)
    horizontal = np.hypot(*(base[:, :2] - T_BASE_LIDAR[:2, 3]).T)
    labels, _ = segment_points(points, [], T_BASE_LIDAR)
    return points, kind, exact, horizontal, labels


def test_road_is_driveable_out_to_50_m_on_a_sloped_crowned_street(street):
    _, kind, _, horizontal, labels = street
    for lo, hi in BANDS:
        road = (kind == ROAD) & (horizontal >= lo) & (horizontal < hi)
        assert road.sum() >= 50, (lo, hi)  # every band holds enough road returns to judge
        assert np.mean(labels[road] == DRIVEABLE) >= 0.9, (lo, hi, np.mean(labels[road] == DRIVEABLE))


def test_one_plane_fails_the_same_street(street):
    # The single RANSAC plane: the road beyond 30 m, 0.4-1.2 m above the ego's level, is not ground.
    points, kind, _, horizontal, _ = street
    _, on_plane = fit_ground_plane(points, T_BASE_LIDAR[2, :3])
    for lo, hi in BANDS[3:]:
        road = (kind == ROAD) & (horizontal >= lo) & (horizontal < hi)
        assert np.mean(on_plane[road]) < 0.9, (lo, hi)


def test_sidewalks_beyond_kerbs_are_sidewalk_not_road(street):
    _, kind, _, horizontal, labels = street
    sidewalk = kind == SIDEWALK_TOP
    assert sidewalk.sum() > 1000
    assert np.mean(labels[sidewalk] == DRIVEABLE) < 0.05
    # Within 20 m the kerb is seen as a step along the scan; further out, rings are too far apart to tell a kerb
    # from the road's grade, and the sidewalk is labelled by what it continues from.
    near = sidewalk & (horizontal < 20.0)
    assert np.mean(labels[near] == SIDEWALK) > 0.95
    # The kerb face is ground (road at its foot, sidewalk in its upper part), never left unlabelled.
    face = kind == KERB_FACE
    assert face.sum() > 100 and np.mean(np.isin(labels[face], [DRIVEABLE, SIDEWALK])) > 0.95


def test_cars_and_walls_do_not_become_ground(street):
    _, kind, exact, _, labels = street
    above = exact[:, 2] - road_height(exact[:, 0], exact[:, 1])
    for what, floor in ((CAR, 0.3), (WALL, 0.5)):  # walls stand on the 0.15 m (+ fall) sidewalks
        high = (kind == what) & (above > floor)
        assert high.sum() > 100 and np.mean(np.isin(labels[high], [DRIVEABLE, SIDEWALK])) < 0.01, what


def test_surface_height_follows_the_road(street):
    points, kind, exact, horizontal, _ = street
    T = T_BASE_LIDAR
    surface = fit_ground_surface(transform_points(T, points), T[:2, 3])
    for lo, hi in BANDS:
        road = (kind == ROAD) & (horizontal >= lo) & (horizontal < hi)
        error = surface.height_at(exact[road, :2]) - ground_height(exact[road, 0], exact[road, 1])
        assert np.median(np.abs(error)) < 0.05, (lo, hi)


def test_no_ground_without_points():
    split = sweep_ground(np.zeros((2, 3)), T_BASE_LIDAR)
    assert split.surface is None and not split.is_ground.any() and not split.raised.any()


def test_flat_synthetic_frame_keeps_the_plane_labels():
    # bench algo's frame: flat ground, walls, 80 objects. The surface agrees with the old single plane on >= 99 %
    # of the points, and matches the ray-cast truth at least as well.
    frame = synthetic_frame(n_objects=80, seed=3)
    T = frame.rig.T_base_lidar
    split = sweep_ground(frame.points, T)
    _, on_plane = fit_ground_plane(frame.points, T[2, :3])
    truth = frame.point_labels == DRIVEABLE
    assert np.mean(split.is_ground == on_plane) > 0.99
    assert _iou(split.is_ground, truth) >= _iou(on_plane, truth) - 0.005
    assert split.raised.sum() < 10  # no kerbs in a flat world


def test_synthetic_world_sweep_driveable_no_worse_than_the_plane():
    rig = load_rig()
    world = World(0, 0, 2.0)
    sweep = LidarSimulator(rig.lidar).sweep(world, 1.0, np.random.default_rng(0))
    truth = FINE_TO_COARSE[sweep.labels] == DRIVEABLE
    T = rig.lidar.T_ego_sensor
    labels, _ = segment_points(sweep.points[:, :3], [], T)
    _, on_plane = fit_ground_plane(sweep.points[:, :3], T[2, :3], GroundParams().threshold_m)
    assert _iou(labels == DRIVEABLE, truth) >= _iou(on_plane, truth) - 0.01


def _iou(a, b):
    return np.sum(a & b) / max(1, np.sum(a | b))


def test_an_object_between_two_far_rings_is_not_ground_but_a_rise_all_sectors_see_is():
    """A far car's lowest hit in the 30 m gap between two rings on flat ground is an object (its neighbours' lines
    say the road is at 0 there); the same rise in every sector is the road climbing."""
    from perception3d.core.ground import _range_edges, _Walk

    edges = _range_edges(90.0)
    centre = 0.5 * (edges[:-1] + edges[1:])
    sectors, bins = 60, len(edges) - 1
    ring = (centre < 40.0) | (centre > 70.0)  # candidates in these bins only: the rings' gap lies between
    car = int(np.argmin(np.abs(centre - 64.0)))
    lowest = np.where(ring, 0.0, np.nan)[None].repeat(sectors, axis=0)
    extent = np.full((sectors, bins), 0.05)

    def walk(lowest):
        low_r = np.where(np.isnan(lowest), np.nan, centre[None])
        w = _Walk(lowest, low_r, extent, 0.0, np.zeros(sectors), edges, GroundParams())
        w.run()
        return w

    lone = lowest.copy()
    lone[10, car] = 0.8  # the car's lowest hit, 0.8 m up: within what a 30 m gap admits as grade (0.3 + 0.03 x 30)
    w = walk(lone)
    assert not w.accepted[car, 10] and abs(w.height[car, 10]) < 0.05
    assert w.accepted[ring, 10].all()  # the road beyond the car is still ground
    climbing = lowest.copy()
    climbing[:, car] = 0.8
    w = walk(climbing)
    assert w.accepted[car].all() and np.all(w.height[car] > 0.4)


@pytest.mark.parametrize("fall", [0.02, 0.03])
def test_a_ray_meets_the_surface_where_its_height_equals_the_ground_s(fall):
    """A ground rising 3 % outwards from the sensor (heights and slopes set cell by cell): a ray from 1.5 m falling
    2 % meets it at 1.5 / 0.05 = 30 m, one falling 3 % at 25 m, one rising 1 % at 75 m; one rising 4 % never."""
    from perception3d.core.ground import GroundSurface, _range_edges

    surface = GroundSurface.blank(np.zeros(2), _range_edges(80.0), 360)
    centre = 0.5 * (surface.edges[:-1] + surface.edges[1:])
    surface.height[:] = 0.03 * centre
    surface.slope[:] = 0.03
    direction = np.array([[np.cos(a), np.sin(a), -fall] for a in (0.3, 2.0)] + [[1.0, 0.0, 0.01], [0.0, 1.0, 0.04]])
    hits = surface.ray_hits(np.tile([0.0, 0.0, 1.5], (4, 1)), direction)
    np.testing.assert_allclose(hits[:3], [1.5 / (fall + 0.03)] * 2 + [75.0], atol=1e-6)
    assert np.isnan(hits[3])


def test_holes_between_two_accepted_candidates_on_one_level_take_the_line_between_them():
    """The hole filling against a cell-by-cell loop, on random accepted cells, levels and candidates."""
    from perception3d.core.ground import GroundSurface, _fill_between_candidates, _range_edges

    rng = np.random.default_rng(0)
    surface = GroundSurface.blank(np.zeros(2), _range_edges(60.0), 40)
    sectors, bins = surface.height.shape
    centre = 0.5 * (surface.edges[:-1] + surface.edges[1:])
    surface.accepted[:] = rng.random((sectors, bins)) < 0.4
    surface.raised[:] = np.where(rng.random((sectors, bins)) < 0.2, 0.15, 0.0)
    surface.height[:], surface.slope[:] = rng.normal(size=(2, sectors, bins))
    lowest = rng.normal(size=(sectors, bins))
    low_r = centre + rng.uniform(-0.2, 0.2, (sectors, bins))
    height, slope = surface.height.copy(), surface.slope.copy()
    for s in range(sectors):
        accepted = np.flatnonzero(surface.accepted[s])
        for b, a in zip(accepted[:-1], accepted[1:]):
            if surface.raised[s, b] == surface.raised[s, a]:
                line = (lowest[s, a] - lowest[s, b]) / max(low_r[s, a] - low_r[s, b], 1e-6)
                height[s, b + 1:a] = lowest[s, b] + line * (centre[b + 1:a] - low_r[s, b])
                slope[s, b + 1:a] = line
    assert np.sum(height != surface.height) > 100  # holes on one level
    _fill_between_candidates(surface, surface.accepted, lowest, low_r, centre)
    np.testing.assert_array_equal(surface.height, height)
    np.testing.assert_array_equal(surface.slope, slope)


@pytest.mark.parametrize("edges", [None, np.r_[0.7, 0.8, 2.0, np.cumsum(np.full(30, 0.37)) + 2.0]])
def test_range_bins_by_the_lookup_table_are_those_of_a_search_of_the_edges(edges):
    """The range bins of ranges on, next to, between and beyond the edges (and NaN) are those of searchsorted."""
    from perception3d.core.ground import GroundSurface, _range_edges

    surface = GroundSurface.blank(np.zeros(2), _range_edges(87.3) if edges is None else edges, 8)
    edges = surface.edges
    rng = np.random.default_rng(4)
    r = np.r_[edges, np.nextafter(edges, np.inf), np.nextafter(edges, 0.0), rng.uniform(0.0, edges[-1] + 5.0, 5000),
              0.0, edges[-1] * 3, 1e300, np.inf, np.nan]
    np.testing.assert_array_equal(surface._range_bins(r),
                                  np.clip(np.searchsorted(edges, r, side="right") - 1, 0, len(edges) - 2))
