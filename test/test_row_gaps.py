"""core.row_gaps: the barriers that a row of detected barriers implies where its 2D boxes were missed (issue 16)."""
import numpy as np

from perception3d.core.detections import Detections3D
from perception3d.core.row_gaps import (
    _WIDTHS,
    END_GAP_M,
    FOOTPRINT_MARGIN_M,
    GAP_SLACK,
    MAX_FILLED,
    MIN_RETURNS,
    SCORE_FACTOR,
    _end_candidates,
    _fill_counts,
    _free_sides,
    _gap_candidates,
    _occupied,
    _Returns,
    _Row,
    fill_row_gaps,
)

WIDTH_M = 2.0  # a barrier's extent along its row (its width: nuScenes barriers stand across their heading)
ROW_Y_M = -5.5  # the row runs along x, 5.5 m to the right


def row(slots, scores=None, y=ROW_Y_M):
    """Barrier detections in the row's slots (slot k centred at x = 10 + 2 k m), heading across the row."""
    slots = np.asarray(slots, dtype=float)
    n = len(slots)
    return Detections3D(np.column_stack([10.0 + WIDTH_M * slots, np.full(n, y), np.full(n, 0.5)]),
                        np.tile([0.7, WIDTH_M, 1.0], (n, 1)), np.full(n, np.pi / 2), ["barrier"] * n,
                        np.full(n, 0.9) if scores is None else scores, "base_link")


def wall(x0, x1, y=ROW_Y_M, height=0.6, step=0.1):
    """Returns on the near face of a wall from x0 to x1 [m] (xy (N, 2)) and their heights above the ground (N,)."""
    x = np.arange(x0 + step / 2, x1, step)
    return np.column_stack([x, np.full(len(x), y + 0.35)]), np.full(len(x), height)


def added(before, after):
    """The boxes that fill_row_gaps appended: (centres (K, 3), sizes (K, 3), scores (K,))."""
    return after.centers[len(before):], after.sizes_lwh[len(before):], after.scores[len(before):]


def test_a_barrier_missing_between_two_of_a_row_is_filled_where_its_returns_are():
    dets = row([0, 1, 3, 4], scores=np.array([0.9, 0.8, 0.7, 0.9]))
    xy, height = wall(9.0, 19.0)  # the wall of all five barriers
    centres, sizes, scores = added(dets, fill_row_gaps(dets, xy, height))
    assert len(centres) == 1
    np.testing.assert_allclose(centres[0], [14.0, ROW_Y_M, 0.5], atol=1e-9)
    np.testing.assert_allclose(sizes[0], [0.7, WIDTH_M, 1.0], atol=1e-9)
    assert scores[0] == SCORE_FACTOR * 0.7  # the lower neighbour's, no image saw it


def test_two_missing_barriers_share_their_gap():
    dets = row([0, 3])
    xy, height = wall(9.0, 17.0)
    centres, sizes, _ = added(dets, fill_row_gaps(dets, xy, height))
    np.testing.assert_allclose(np.sort(centres[:, 0]), [12.0, 14.0], atol=1e-9)
    np.testing.assert_allclose(sizes[:, 1], WIDTH_M, atol=1e-9)


def test_a_far_missed_barrier_with_two_returns_on_its_face_is_filled_and_one_return_is_not_enough():
    """A missed barrier far along a row holds few returns (rings 0.6 m apart at 25 m, a grazing angle): two on its
    face fill its gap (five were needed before); a single return is no surface."""
    dets = row([0, 1, 3, 4])
    xy, height = np.vstack([wall(9.0, 13.0)[0], wall(15.0, 19.0)[0]]), np.r_[wall(9.0, 13.0)[1], wall(15.0, 19.0)[1]]
    two = np.array([[13.7, ROW_Y_M + 0.35], [14.4, ROW_Y_M + 0.35]])
    centres, _, _ = added(dets, fill_row_gaps(dets, np.vstack([xy, two]), np.r_[height, 0.5, 0.7]))
    np.testing.assert_allclose(centres, [[14.0, ROW_Y_M, 0.5]], atol=1e-9)
    assert len(fill_row_gaps(dets, np.vstack([xy, two[:1]]), np.r_[height, 0.5])) == len(dets)


def test_a_gap_without_returns_or_with_returns_too_high_or_too_low_stays_empty():
    """Where the row parts (the LiDAR sees through the gap), or the returns in the gap are a truck's body above the
    barriers' height or kerb stones below it, the row is not filled."""
    dets = row([0, 1, 3, 4])
    for x0, x1 in [(9.0, 13.0), (15.0, 19.0)]:  # the detected barriers' walls only
        xy, height = wall(x0, x1)
        assert len(fill_row_gaps(dets, xy, height)) == len(dets)
    for height_m in (1.8, 0.1):
        xy, height = wall(9.0, 19.0, height=height_m)
        xy, height = np.vstack([xy, wall(9.0, 13.0)[0]]), np.r_[height, wall(9.0, 13.0)[1]]
        xy, height = np.vstack([xy, wall(15.0, 19.0)[0]]), np.r_[height, wall(15.0, 19.0)[1]]
        assert len(fill_row_gaps(dets, xy, height)) == len(dets), height_m


def test_a_narrower_barrier_missing_between_wide_ones_is_filled_with_the_gap_as_its_width():
    """Barriers of one row differ in width: a 1.8 m gap between two 3.1 m barriers is no multiple of theirs (within
    GAP_SLACK), but it holds one barrier of the class's widths (nuScenes: 2.51 +- 0.62 m)."""
    dets = Detections3D(np.array([[10.0, ROW_Y_M, 0.5], [14.9, ROW_Y_M, 0.5]]), np.tile([0.7, 3.1, 1.0], (2, 1)),
                        np.full(2, np.pi / 2), ["barrier"] * 2, np.full(2, 0.9), "base_link")
    xy, height = wall(8.45, 16.45)
    centres, sizes, _ = added(dets, fill_row_gaps(dets, xy, height))
    assert len(centres) == 1
    np.testing.assert_allclose(centres[0, :2], [12.45, ROW_Y_M], atol=1e-9)
    np.testing.assert_allclose(sizes[0, 1], 1.8, atol=1e-9)


def test_a_gap_that_holds_no_whole_barrier_stays_empty():
    dets = row([0, 1.5])  # 1 m between their ends: half a barrier
    xy, height = wall(9.0, 14.0)
    assert len(fill_row_gaps(dets, xy, height)) == len(dets)


def test_barriers_of_two_parallel_rows_are_no_neighbours():
    """Two barriers 4 m apart along x but 1.5 m apart across stand in different rows: no barrier is put between them
    (as neighbours they would have a gap of one barrier); each row continues on its own line."""
    dets = Detections3D(np.array([[10.0, ROW_Y_M, 0.5], [14.0, ROW_Y_M - 1.5, 0.5]]),
                        np.tile([0.7, WIDTH_M, 1.0], (2, 1)), np.full(2, np.pi / 2), ["barrier"] * 2, np.full(2, 0.9),
                        "base_link")
    first, second = wall(11.0, 13.0), wall(11.0, 13.0, y=ROW_Y_M - 1.5)
    centres, sizes, _ = added(dets, fill_row_gaps(dets, np.vstack([first[0], second[0]]), np.r_[first[1], second[1]]))
    np.testing.assert_allclose(np.sort(centres[:, 1]), [ROW_Y_M - 1.5, ROW_Y_M], atol=1e-9)
    np.testing.assert_allclose(np.sort(centres[:, 0]), [11.95, 12.05], atol=1e-9)
    np.testing.assert_allclose(sizes[:, 1], WIDTH_M, atol=1e-9)


def test_a_lone_barrier_continues_on_both_sides_where_its_row_goes_on():
    dets = row([2])
    xy, height = wall(11.0, 17.0)  # one barrier's wall on each side of slot 2 (x 13-15)
    centres, _, scores = added(dets, fill_row_gaps(dets, xy, height))
    np.testing.assert_allclose(np.sort(centres[:, 0]), [11.95, 16.05], atol=1e-9)
    assert np.all(scores == SCORE_FACTOR * 0.9)


def test_a_row_continues_past_its_end_over_returns_that_fill_a_barrier_but_not_over_a_post():
    dets = row([0, 1, 2])
    xy, height = wall(9.0, 17.0)  # the wall runs on for one barrier past slot 2
    centres, _, scores = added(dets, fill_row_gaps(dets, xy, height))
    assert len(centres) == 1
    assert abs(centres[0, 0] - 16.05) < 1e-9 and abs(centres[0, 1] - ROW_Y_M) < 1e-9
    assert scores[0] == SCORE_FACTOR * 0.9
    # a post 0.4 m wide past the end: returns in one half of the footprint only
    xy, height = wall(9.0, 15.0)
    post, post_height = wall(15.6, 16.0, height=1.0, step=0.05)
    assert len(post) >= MIN_RETURNS
    assert len(fill_row_gaps(dets, np.vstack([xy, post]), np.r_[height, post_height])) == len(dets)


def test_a_row_end_seen_by_one_return_in_each_half_is_filled_and_by_one_return_alone_is_not():
    """A far barrier past a row's end, seen along the row behind the nearer ones, holds a return or two."""
    dets = row([0, 1, 2])
    xy, height = wall(9.0, 15.0)  # the row's own three barriers (x 9-15)
    far = np.array([[15.6, ROW_Y_M + 0.35], [16.5, ROW_Y_M + 0.35]])  # one in each half of the next footprint
    centres, _, _ = added(dets, fill_row_gaps(dets, np.vstack([xy, far]), np.r_[height, 0.6, 0.6]))
    assert len(centres) == 1 and abs(centres[0, 0] - 16.05) < 1e-9
    assert len(fill_row_gaps(dets, np.vstack([xy, far[:1]]), np.r_[height, 0.6])) == len(dets)


def test_a_row_end_grows_by_two_barriers_at_most_and_not_into_another_detection():
    dets = row([0, 1])
    xy, height = wall(9.0, 21.0)  # returns for four barriers past slot 1
    centres, _, scores = added(dets, fill_row_gaps(dets, xy, height))
    assert len(centres) == 2 and np.all(centres[:, 0] > 11.0)
    assert np.all(np.sort(scores) == [SCORE_FACTOR**2 * 0.9, SCORE_FACTOR * 0.9])  # the second from the first
    car = Detections3D(np.array([[14.5, ROW_Y_M, 0.8]]), np.array([[4.5, 1.9, 1.6]]), [0.0], ["car"], [0.8],
                       "base_link")
    both = Detections3D(np.vstack([dets.centers, car.centers]), np.vstack([dets.sizes_lwh, car.sizes_lwh]),
                        np.r_[dets.yaws, car.yaws], list(dets.class_ids) + ["car"], np.r_[dets.scores, car.scores],
                        "base_link")
    assert len(fill_row_gaps(both, xy, height)) == len(both)  # the car stands where the row would go on


def test_a_row_of_narrow_barriers_continues_past_its_end_too():
    """0.8 m barriers: the row's own last barrier stands within 0.5 m of the continuation's footprint and must not count
    as a detection standing there."""
    n = 3
    dets = Detections3D(np.column_stack([10.0 + 0.8 * np.arange(n), np.full(n, ROW_Y_M), np.full(n, 0.5)]),
                        np.tile([0.5, 0.8, 1.0], (n, 1)), np.full(n, np.pi / 2), ["barrier"] * n, np.full(n, 0.9),
                        "base_link")
    xy, height = wall(9.6, 12.8, step=0.05)  # one more barrier's wall past the third
    centres, _, _ = added(dets, fill_row_gaps(dets, xy, height))
    assert len(centres) == 1 and abs(centres[0, 0] - 12.45) < 1e-9


def rows_of_barriers(rng):
    """Barrier detections in two to four rows at random headings (some turned a half turn, some jittered, some missing)
    among a few cars: for the helpers' tests."""
    centres, sizes, yaws, classes = [], [], [], []
    for _ in range(rng.integers(2, 5)):
        yaw = rng.choice([0.0, np.pi / 2, rng.uniform(-np.pi, np.pi)])
        along, position = np.array([-np.sin(yaw), np.cos(yaw)]), 0.0
        origin, width = rng.uniform(-20, 20, 2), rng.choice([2.0, 2.5, 0.8])
        for _ in range(rng.integers(2, 8)):
            position += width + rng.choice([0.0, 0.05])
            if rng.random() < 0.6:
                centres.append([*(origin + position * along + rng.normal(0, 0.03, 2) * (rng.random() < 0.5)), 0.5])
                sizes.append([0.7, width, 1.0])
                yaws.append(yaw + np.pi * (rng.random() < 0.2))
                classes.append("barrier")
    for _ in range(rng.integers(0, 4)):
        centres.append([*rng.uniform(-30, 30, 2), 0.8])
        sizes.append([4.5, 1.9, 1.6])
        yaws.append(rng.uniform(-np.pi, np.pi))
        classes.append("car")
    return Detections3D(np.array(centres), np.array(sizes), np.array(yaws), classes, np.full(len(classes), 0.9),
                        "base_link")


def projected(vector, direction):
    return vector[0] * direction[0] + vector[1] * direction[1]


def test_gap_candidates_are_each_pairs_barriers_from_its_first_end_on():
    rng = np.random.default_rng(3)
    for _ in range(100):
        dets = rows_of_barriers(rng)
        barriers = _Row.of(dets)
        i, j = barriers.neighbours(dets)
        expected = []
        for a, b in zip(i, j):
            offset = projected(barriers.centre[b] - barriers.centre[a], barriers.along[a])
            size = 0.5 * (barriers.width[a] + barriers.width[b])
            gap = abs(offset) - size
            k = _fill_counts(np.array([gap]), np.array([size]))[0]
            for m in range(k):
                centre = barriers.centre[a] + np.sign(offset) * barriers.along[a] * (
                    0.5 * barriers.width[a] + (m + 0.5) * (gap / k))
                expected.append([*centre, gap / k, a, b])
        candidates = _gap_candidates(barriers, i, j)
        np.testing.assert_array_equal(
            np.column_stack([candidates.centre, candidates.width, candidates.first, candidates.second]),
            np.reshape(expected, (-1, 5)))


def test_end_candidates_are_each_barriers_free_sides():
    rng = np.random.default_rng(4)
    for _ in range(100):
        dets = rows_of_barriers(rng)
        barriers = _Row.of(dets)
        i, j = barriers.neighbours(dets)
        expected = []
        for b in range(len(barriers.index)):
            others = np.r_[j[i == b], i[j == b]]
            taken = [np.sign(projected(barriers.centre[o] - barriers.centre[b], barriers.along[b])) for o in others]
            for side in (1.0, -1.0):
                if side not in taken:
                    centre = barriers.centre[b] + side * barriers.along[b] * (barriers.width[b] + END_GAP_M)
                    expected.append([*centre, barriers.width[b], b, b])
        candidates = _end_candidates(barriers, i, j)
        np.testing.assert_array_equal(
            np.column_stack([candidates.centre, candidates.width, candidates.first, candidates.second]),
            np.reshape(expected, (-1, 5)))


def test_free_sides_are_those_without_a_neighbour():
    """A barrier with neighbours on both sides, one with one on its - side, one without: as the neighbours' offsets
    along each barrier's row say."""
    dets = row([0, 1, 2, 5])
    barriers = _Row.of(dets)
    free = _free_sides(barriers, *barriers.neighbours(dets))  # slots 2 and 5 are neighbours too: nothing between
    assert barriers.along[0, 0] < 0  # the row runs along -x (heading +y): its + side toward lower slots
    np.testing.assert_array_equal(free, [[True, False], [False, False], [False, False], [False, True]])


def test_occupied_is_any_other_detection_near_the_continuation():
    rng = np.random.default_rng(5)
    for _ in range(50):
        dets = rows_of_barriers(rng)
        barriers = _Row.of(dets)
        b = rng.integers(0, len(barriers.index), 10)
        centre = barriers.centre[b] + rng.normal(0, 3, (10, 2))
        expected = []
        for c, n in zip(centre, b):
            standing = np.delete(dets.centers[:, :2], barriers.index[n], axis=0) - c
            expected.append(any(abs(projected(s, barriers.along[n])) <= 0.5 * barriers.width[n] + 0.5
                                and abs(projected(s, barriers.heading[n])) <= 0.5 * barriers.length[n] + 0.5
                                for s in standing))
        np.testing.assert_array_equal(_occupied(dets, barriers, b, centre), expected)


def footprint_counts(xy, usable, centre, along, across, width, length):
    """(C, 2) how many usable finite returns xy (N, 2) lie in each footprint, and of them ahead of its centre, as
    testing every one of them counts them."""
    half_width, half_length = 0.5 * width - FOOTPRINT_MARGIN_M, 0.5 * length + FOOTPRINT_MARGIN_M
    expected = []
    for c in range(len(centre)):
        relative = xy[usable & np.isfinite(xy).all(axis=1)] - centre[c]
        ahead = projected(relative.T, along[c])
        inside = (np.abs(ahead) <= half_width[c]) & (np.abs(projected(relative.T, across[c])) <= half_length[c])
        expected.append((np.count_nonzero(inside), np.count_nonzero(inside & (ahead > 0))))
    return np.array(expected)


def test_footprint_counts_are_those_of_all_returns_to_the_last_bit():
    """Returns on the very edges of 200 footprints at random headings (and footprints beyond all returns) are counted
    in them as testing every usable finite return of the sweep counts them."""
    rng = np.random.default_rng(0)
    n = 200
    yaw = rng.uniform(-np.pi, np.pi, n)
    along = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)
    across = np.stack([along[:, 1], -along[:, 0]], axis=1)
    centre, width, length = rng.uniform(-20, 20, (n, 2)), rng.choice([2.0, 2.5, 1.3], n), rng.choice([0.7, 0.5], n)
    half_width, half_length = 0.5 * width - FOOTPRINT_MARGIN_M, 0.5 * length + FOOTPRINT_MARGIN_M
    t, s = rng.choice([-1.0, 1.0], (n, 12)) * half_width[:, None], rng.uniform(-1, 1, (n, 12)) * half_length[:, None]
    on_ends = centre[:, None] + t[..., None] * along[:, None] + s[..., None] * across[:, None]
    t, s = rng.uniform(-1, 1, (n, 12)) * half_width[:, None], rng.choice([-1.0, 1.0], (n, 12)) * half_length[:, None]
    on_sides = centre[:, None] + t[..., None] * along[:, None] + s[..., None] * across[:, None]
    xy = np.vstack([on_ends.reshape(-1, 2), on_sides.reshape(-1, 2), rng.uniform(-25, 25, (3000, 2)),
                    [[np.nan, 1.0], [np.inf, 2.0], [3.0, -np.inf]]])
    usable = rng.random(len(xy)) < 0.9
    centre[:5] = [[-40, 0], [40, 0], [0, -40], [0, 40], [-40, 40]]  # beyond all returns
    expected = footprint_counts(xy, usable, centre, along, across, width, length)
    assert expected[:, 0].min() == 0 and np.median(expected[:, 0]) > 10
    for order in "CF":
        count, ahead = _Returns.of(np.asarray(xy, order=order), usable).in_footprints(centre, along, across, width,
                                                                                        length)
        np.testing.assert_array_equal(np.column_stack([count, ahead]), expected)
    assert np.all(_Returns.of(xy, np.zeros(len(xy), dtype=bool)).in_footprints(
        centre, along, across, width, length)[0] == 0)


def test_footprint_counts_on_a_wall_narrower_than_a_footprint():
    """Returns on one line (a single row of the search grid) counted in footprints that reach past it on both sides."""
    xy, _ = wall(-20.0, 20.0, y=-0.05)  # at y = 0.3 m
    centre = np.column_stack([np.linspace(-21.0, 21.0, 60), np.zeros(60)])
    along, across = np.tile([1.0, 0.0], (60, 1)), np.tile([0.0, -1.0], (60, 1))
    width, length = np.full(60, 2.0), np.full(60, 0.7)
    count, ahead = _Returns.of(xy, np.ones(len(xy), dtype=bool)).in_footprints(centre, along, across, width, length)
    expected = footprint_counts(xy, np.ones(len(xy), dtype=bool), centre, along, across, width, length)
    assert expected[:, 0].max() > 10
    np.testing.assert_array_equal(np.column_stack([count, ahead]), expected)


def test_fill_counts_follow_the_gap_rule_gap_by_gap():
    rng = np.random.default_rng(2)
    size = rng.choice([0.8, 2.0, 2.5, 3.1, rng.uniform(0.5, 4.0)], 2000)
    gap = np.where(rng.random(2000) < 0.5, rng.uniform(-1.0, 12.0, 2000),  # and on the rule's edges:
                   size * rng.choice([0.5, 1.5, 2.5, 0.6, 1.4, 1.6, 2.4], 2000))
    expected = []
    for g, s in zip(gap, size):
        k = int(round(g / s))
        if not 1 <= k <= MAX_FILLED or abs(g - k * s) > GAP_SLACK * s:
            k = int(np.ceil(g / _WIDTHS[1]))
            if not 1 <= k <= MAX_FILLED or g / k < _WIDTHS[0]:
                k = 0
        expected.append(k)
    np.testing.assert_array_equal(_fill_counts(gap, size), expected)
