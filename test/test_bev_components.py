"""Bird's-eye-view pieces (core.bev_components): points whose cells touch, 8-connected, are one piece, found in a
window around an object."""
import numpy as np

from perception3d.core.bev_components import BevCells, connected_in_window

CELL = 0.15


def _scene():
    """A car of points, its neighbour bumper to bumper with one empty cell column between, two points touching the
    car's corner cell diagonally, and two far points."""
    car = np.stack(np.meshgrid(np.arange(0.0, 4.5, 0.1), np.arange(0.0, 1.8, 0.1)), -1).reshape(-1, 2)
    neighbour = car + [4.5 + 2 * CELL, 0.0]
    diagonal = np.array([[-0.5 * CELL, -0.5 * CELL], [-1.5 * CELL, -1.5 * CELL]])
    far = np.array([[20.0, -20.0], [-30.0, 7.0]])
    return np.concatenate([car, neighbour, diagonal, far]), len(car)


def test_touching_cells_are_one_piece_and_a_gap_of_one_cell_separates():
    xy, n = _scene()
    centre = np.array([2.0, 0.9])
    grown = connected_in_window(BevCells(xy, CELL), np.array([3]), centre, 8.0)
    assert np.array_equal(grown, np.r_[np.arange(n), 2 * n, 2 * n + 1])  # the car and the diagonal pair, sorted
    grown = connected_in_window(BevCells(xy, CELL), np.array([n + 1]), centre, 8.0)
    assert np.array_equal(grown, np.arange(n, 2 * n))  # the neighbour alone; the far points lie outside the window


def test_the_window_bounds_the_piece_and_seeds_outside_it_take_no_part():
    xy, n = _scene()
    grown = connected_in_window(BevCells(xy, CELL), np.array([0]), np.array([0.0, 0.0]), 2.0)
    assert len(grown) and np.all(np.abs(xy[grown]) < 2.0)  # the car's part within 2 m of (0, 0) only
    assert len(connected_in_window(BevCells(xy, CELL), np.array([len(xy) - 1]), np.array([0.0, 0.0]), 2.0)) == 0


def test_no_points_or_no_seed_give_nothing():
    empty = BevCells(np.zeros((0, 3)), CELL)
    assert len(connected_in_window(empty, np.zeros(0, dtype=np.int64), np.zeros(2), 5.0)) == 0
    xy, _ = _scene()
    assert len(connected_in_window(BevCells(xy, CELL), np.zeros(0, dtype=np.int64), np.array([2.0, 0.9]), 8.0)) == 0
