"""core.row_gaps: the barriers that a row of detected barriers implies where its 2D boxes were missed (issue 16)."""
import numpy as np

from perception3d.core.detections import Detections3D
from perception3d.core.row_gaps import MIN_RETURNS, SCORE_FACTOR, fill_row_gaps

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
