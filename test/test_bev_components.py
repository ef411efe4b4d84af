"""Bird's-eye-view components (core.bev_components): points whose cells touch, 8-connected, are one piece."""
import numpy as np

from perception3d.core.bev_components import BevComponents


def test_touching_cells_are_one_component_and_a_gap_of_one_cell_separates():
    cell = 0.15
    car = np.stack(np.meshgrid(np.arange(0.0, 4.5, 0.1), np.arange(0.0, 1.8, 0.1)), -1).reshape(-1, 2)
    neighbour = car + [4.5 + 2 * cell, 0.0]  # bumper to bumper, one empty cell column between
    diagonal = np.array([[-0.5 * cell, -0.5 * cell], [-1.5 * cell, -1.5 * cell]])  # corner to corner with car[0]
    far = np.array([[20.0, -20.0], [-30.0, 7.0]])
    xy = np.concatenate([car, neighbour, diagonal, far])
    pieces = BevComponents.of(xy, cell)
    n = len(car)
    assert len(set(pieces.label[:n])) == 1 and len(set(pieces.label[n:2 * n])) == 1
    assert pieces.label[0] != pieces.label[n]
    assert pieces.label[2 * n] == pieces.label[2 * n + 1] == pieces.label[0]  # diagonal cells touch
    assert len({pieces.label[-1], pieces.label[-2], pieces.label[0]}) == 3
    assert np.array_equal(pieces.grow(np.array([3])), np.r_[np.arange(n), 2 * n, 2 * n + 1])
    assert np.array_equal(pieces.grow(np.array([n + 1, len(xy) - 1])), np.r_[np.arange(n, 2 * n), len(xy) - 1])
    assert len(pieces.grow(np.zeros(0, dtype=np.int64))) == 0


def test_no_points_no_components():
    pieces = BevComponents.of(np.zeros((0, 3)), 0.15)
    assert len(pieces.label) == 0 and len(pieces.grow(np.zeros(0, dtype=np.int64))) == 0
