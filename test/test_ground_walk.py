"""The compiled ground walk (core/_ground_walk.c) against a plain Python walk of the rules in core.ground's module
docstring (step 3), on candidate grids with kerbs, objects, drops, empty cells and far rings; and its input checks."""
import math

import numpy as np
import pytest

from perception3d.core import _ground_walk
from perception3d.core.ground import (
    _GRADE_CHANGE_FAR,
    _KERB_SLOPE,
    _LONG_GAP_M,
    _MAX_DROP_FACTOR,
    _NEIGHBOUR_SECTORS,
    _SLOPE_PRIOR_WEIGHT,
    GroundParams,
    _range_edges,
    _Walk,
)


def reference_walk(walk: _Walk) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(accepted, intercepts, slopes, levels) (bins, sectors) of the walk, one cell at a time in Python floats."""
    p = walk.params
    bins, sectors = walk.heights.shape
    sums = walk.sums.copy()
    accepted = np.zeros((bins, sectors), dtype=bool)
    intercepts, slopes, levels = (np.zeros((bins, sectors)) for _ in range(3))

    def line(s: int) -> tuple[float, float]:
        w, wr, wh, wrr, wrh = sums[:, s]
        mean_r, mean_h = wr / w, wh / w
        slope = (wrh - wr * mean_h + walk.prior[s]) / (wrr - wr * mean_r + _SLOPE_PRIOR_WEIGHT)
        slope = min(max(slope, -walk.max_slope), walk.max_slope)
        return mean_h - slope * mean_r, slope

    lines = [line(s) for s in range(sectors)]
    for k in range(walk.start):
        intercepts[k], slopes[k] = np.array(lines).T
    raised, last_r = [0.0] * sectors, [0.0] * sectors
    for k in range(walk.start, bins):
        sums *= walk.fades[k]
        rises, moves, backs = [], [], []
        for s in range(sectors):
            r, h, flat = walk.ranges[k, s], walk.heights[k, s], bool(walk.flat_cells[k, s])
            intercept, slope = lines[s]
            rise, gap = h - (intercept + slope * r), r - last_r[s]
            ceiling = p.max_step_m + _GRADE_CHANGE_FAR * gap
            if gap > _LONG_GAP_M and p.threshold_m < rise <= ceiling:  # a far ring: must agree with the neighbours
                ground = []
                for shift in [*range(-_NEIGHBOUR_SECTORS, 0), *range(1, _NEIGHBOUR_SECTORS + 1)]:
                    t = (s + shift) % sectors
                    g = walk.nearby_heights[k, t]
                    ground.append(lines[t][0] + lines[t][1] * walk.centre[k] if math.isnan(g) else g)
                ground.sort()
                if h - 0.5 * (ground[7] + ground[8]) > p.threshold_m:
                    rise = math.nan
            threshold = max(p.kerb_step_m, _KERB_SLOPE * gap)
            kerb_up, kerb_down = rise > threshold, rise < -threshold
            in_range = -_MAX_DROP_FACTOR * ceiling <= rise <= ceiling
            back = rise < -max(p.kerb_step_m, 0.5 * raised[s])
            up = kerb_up and rise <= p.max_step_m and flat
            moves.append(up or ((kerb_down or back) and in_range))
            accepted[k, s] = up or (in_range and (rise <= p.kerb_step_m or (flat and not kerb_up)))
            rises.append(rise)
            backs.append(back)
        for s in range(sectors):
            if moves[s]:  # the line moves onto the new level
                sums[2, s] += rises[s] * sums[0, s]
                sums[4, s] += rises[s] * sums[1, s]
                raised[s] += rises[s]
            if backs[s] or raised[s] < 0.5 * p.kerb_step_m:
                raised[s] = 0.0
            if accepted[k, s]:
                last_r[s] = walk.ranges[k, s]
                sums[:, s] += walk.observed[k, :, s]
        lines = [line(s) for s in range(sectors)]
        intercepts[k], slopes[k] = np.array(lines).T
        levels[k] = raised
    return accepted, intercepts, slopes, levels


def candidate_grid(seed: int, sectors: int = 48, max_range: float = 60.0):
    """A walk's candidates (sectors, bins): a graded road with a kerb up to a sidewalk and back down in some
    sectors, objects, deep drops, empty cells and runs of empty bins (far rings)."""
    rng = np.random.default_rng(seed)
    edges = _range_edges(max_range)
    centre = 0.5 * (edges[:-1] + edges[1:])
    bins = len(centre)
    low_r = centre[None, :] + rng.uniform(-0.2, 0.2, (sectors, bins)) * np.diff(edges)[None, :]
    lowest = -1.8 + 0.02 * low_r + rng.normal(0.0, 0.02, (sectors, bins))
    kerb_at, back_at = rng.uniform(5.0, 30.0, sectors), rng.uniform(20.0, 70.0, sectors)
    climbs = (rng.random(sectors) < 0.5)[:, None]
    on_sidewalk = (low_r > kerb_at[:, None]) & (low_r < (kerb_at + back_at)[:, None]) & climbs
    lowest += np.where(on_sidewalk, 0.15, 0.0)
    extent = np.abs(rng.normal(0.0, 0.05, (sectors, bins)))
    objects = rng.random((sectors, bins)) < 0.08
    lowest[objects] += rng.uniform(0.2, 1.5, objects.sum())
    extent[objects] = rng.uniform(0.3, 2.0, objects.sum())
    lowest[rng.random((sectors, bins)) < 0.03] -= 2.5  # below the road: outliers
    empty = rng.random((sectors, bins)) < 0.25
    run_end = 30 + int(rng.integers(7, 10))
    empty[:, 30:run_end] = True  # a run of empty bins: the next candidates are far rings (more than 8 m on)
    empty[:, run_end] = False
    lone = rng.random(sectors) < 0.3  # an object's lowest hit on a far ring: higher than its neighbours' ground
    lowest[lone, run_end] += rng.uniform(0.3, 0.45, lone.sum())
    extent[lone, run_end] = 0.0
    empty[:, :int(rng.integers(0, 4))] = True  # the first bins may hold nothing
    lowest[empty], low_r[empty], extent[empty] = np.nan, np.nan, np.nan
    seed_slope = rng.normal(0.0, 0.01, sectors)
    return lowest, low_r, extent, -1.8, seed_slope, edges


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("params", [GroundParams(), GroundParams(kerb_step_m=0.12, max_tilt_deg=3.0, memory=0.5)])
def test_compiled_walk_follows_the_rules_cell_by_cell(seed, params):
    walk = _Walk(*candidate_grid(seed), params)
    expected = reference_walk(walk)
    walk.run()
    for name, got, want in zip(("accepted", "intercepts", "slopes", "levels"),
                               (walk.accepted, walk.intercepts, walk.slopes, walk.levels), expected):
        assert np.array_equal(got, want), name
    assert walk.accepted.any() and (walk.levels > 0).any()  # the grids hold kerbs the walk climbs
    far = np.flatnonzero(np.isnan(walk.heights).all(axis=1))[-1] + 1  # the far ring after the empty run
    assert not walk.accepted[far].all() and walk.accepted[far].any()  # lone hits passed over, the road kept
    assert np.array_equal(walk.height, walk.intercepts + walk.slopes * walk.centre[:, None])


def test_compiled_walk_rejects_arrays_of_the_wrong_size():
    walk = _Walk(*candidate_grid(0), GroundParams())
    bins, sectors = walk.heights.shape
    args = [bins, sectors, walk.start, walk.fades, walk.ranges, walk.heights, walk.nearby_heights, walk.flat_cells,
            walk.observed, walk.centre, walk.sums, walk.prior, (0.08, 0.3, 0.2, 8.0, 0.03, 0.05, 3.0, 0.5, 0.2, 8),
            walk.accepted, walk.intercepts, walk.slopes, walk.levels]
    args[5] = walk.heights[:-1]
    with pytest.raises(ValueError, match="heights holds"):
        _ground_walk.walk(*args)
    args[5] = walk.heights
    args[10] = np.frombuffer(walk.sums.tobytes())  # read-only: the walk writes its sums
    with pytest.raises(TypeError):
        _ground_walk.walk(*args)
