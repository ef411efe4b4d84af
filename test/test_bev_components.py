"""Bird's-eye-view pieces (core.bev_components): points whose cells touch, 8-connected, are one piece, found in a
window around an object."""
import numpy as np
from scipy import ndimage

from perception3d.core.bev_components import BevCells, connected_in_windows

CELL = 0.15


def _scene():
    """A car of points, its neighbour bumper to bumper with one empty cell column between, two points touching the
    car's corner cell diagonally, and two far points."""
    car = np.stack(np.meshgrid(np.arange(0.0, 4.5, 0.1), np.arange(0.0, 1.8, 0.1)), -1).reshape(-1, 2)
    neighbour = car + [4.5 + 2 * CELL, 0.0]
    diagonal = np.array([[-0.5 * CELL, -0.5 * CELL], [-1.5 * CELL, -1.5 * CELL]])
    far = np.array([[20.0, -20.0], [-30.0, 7.0]])
    return np.concatenate([car, neighbour, diagonal, far]), len(car)


def _connected(cells, seed, centre, reach_m):
    """One window's piece (connected_in_windows with a single window)."""
    grown, count, _ = connected_in_windows(cells, np.asarray(seed), np.array([len(seed)]), np.array([centre]),
                                           np.array([reach_m]))
    assert count.tolist() == [len(grown)]
    return grown


def test_touching_cells_are_one_piece_and_a_gap_of_one_cell_separates():
    xy, n = _scene()
    centre = np.array([2.0, 0.9])
    grown = _connected(BevCells(xy, CELL), [3], centre, 8.0)
    assert np.array_equal(grown, np.r_[np.arange(n), 2 * n, 2 * n + 1])  # the car and the diagonal pair, sorted
    grown = _connected(BevCells(xy, CELL), [n + 1], centre, 8.0)
    assert np.array_equal(grown, np.arange(n, 2 * n))  # the neighbour alone; the far points lie outside the window


def test_the_window_bounds_the_piece_and_seeds_outside_it_take_no_part():
    xy, n = _scene()
    grown = _connected(BevCells(xy, CELL), [0], np.array([0.0, 0.0]), 2.0)
    assert len(grown) and np.all(np.abs(xy[grown]) < 2.0)  # the car's part within 2 m of (0, 0) only
    assert len(_connected(BevCells(xy, CELL), [len(xy) - 1], np.array([0.0, 0.0]), 2.0)) == 0


def test_no_points_or_no_seed_give_nothing():
    empty = BevCells(np.zeros((0, 3)), CELL)
    assert len(_connected(empty, np.zeros(0, dtype=np.int64), np.zeros(2), 5.0)) == 0
    xy, _ = _scene()
    assert len(_connected(BevCells(xy, CELL), np.zeros(0, dtype=np.int64), np.array([2.0, 0.9]), 8.0)) == 0


def _one_window(cells, seed, centre, reach_m):
    """The straightforward computation for one window: its raster labelled by scipy.ndimage."""
    near = np.flatnonzero((np.abs(cells.x - centre[0]) < reach_m) & (np.abs(cells.y - centre[1]) < reach_m))
    if len(near) == 0:
        return near
    cell_x, cell_y = cells.cell_x[near] - cells.cell_x[near].min(), cells.cell_y[near] - cells.cell_y[near].min()
    occupied = np.zeros((cell_x.max() + 1, cell_y.max() + 1), dtype=bool)
    occupied[cell_x, cell_y] = True
    label = ndimage.label(occupied, structure=np.ones((3, 3), dtype=bool))[0][cell_x, cell_y]
    return near[np.isin(label, label[np.isin(near, seed)])]


def test_many_windows_at_once_give_each_window_s_piece():
    rng = np.random.default_rng(7)
    for trial in range(20):
        xy = rng.uniform(-6.0, 6.0, size=(int(rng.integers(0, 800)), 2))
        cells = BevCells(xy, 0.3)
        windows = int(rng.integers(1, 6))
        seeds = [rng.choice(len(xy), size=min(len(xy), int(rng.integers(0, 4))), replace=False) for _ in
                 range(windows)]
        centres = rng.uniform(-6.0, 6.0, size=(windows, 2))
        reach = rng.uniform(0.2, 5.0, size=windows)
        grown, count, own = connected_in_windows(cells, np.concatenate([np.zeros(0, dtype=np.int64)] + seeds),
                                                 np.array([len(s) for s in seeds]), centres, reach)
        parts = np.split(grown, np.cumsum(count)[:-1])
        flags = np.split(own, np.cumsum(count)[:-1])
        for part, flag, seed, centre, r in zip(parts, flags, seeds, centres, reach):
            assert np.array_equal(part, _one_window(cells, seed, centre, r)), trial
            assert np.array_equal(flag, np.isin(part, seed)), trial
