"""core.standing_memory: standing objects placed by all their views, the nearest weighing most (issue 16)."""
import numpy as np
import pytest

from perception3d.core import standing_memory
from perception3d.core.classes import class_codes
from perception3d.core.standing_memory import StandingMemory

SWEEP_NS = 50_000_000  # 20 Hz
CAR, BARRIER = class_codes(["car", "barrier"])
ALONG_X = np.array([[1.0, 0.0]])  # a view's long side along world x


def along_x(count: int) -> np.ndarray:
    """Long sides (count, 2) along world x."""
    return np.repeat(ALONG_X, count, axis=0)


def seen_at(memory: StandingMemory, ranges: np.ndarray, bias_at_range, code: int = CAR) -> float:
    """One object standing at world x = 0 seen once per sweep at each range [m], its view off along x by
    bias_at_range(range) +- 0.1 m of sweep-to-sweep noise; the x of the last place the memory gave."""
    for k, r in enumerate(ranges):
        xy = np.array([[bias_at_range(r) + 0.1 * (-1) ** k, 0.0]])
        placed = memory.place(xy, np.array([code]), np.array([r]), ALONG_X, k * SWEEP_NS)
    return float(placed[0, 0])


def hidden_front(r: float) -> float:
    """Beyond 20 m the returns lie on the cabin, 0.9 m behind the face (world v2's far parked cars)."""
    return 0.9 if r >= 20.0 else 0.0


def test_a_parked_car_the_ego_has_passed_keeps_the_place_its_near_views_gave():
    ranges = np.linspace(5.0, 40.0, 120)  # 6 m/s for 6 s: from beside the ego to 40 m behind it
    placed = seen_at(StandingMemory(gate_m=1.0, remember_s=2.0), ranges, hidden_front)
    assert abs(placed) < 0.2  # its last view alone is 0.8 m off


def test_an_approached_object_s_far_views_give_way_to_its_near_ones(monkeypatch):
    def growing(r: float) -> float:  # far views err more the farther they are, near ones not at all
        return 0.03 * (r - 5.0)

    approach = np.linspace(40.0, 5.0, 120)
    assert abs(seen_at(StandingMemory(1.0, 2.0), approach, growing)) < 0.08
    monkeypatch.setattr(standing_memory, "APPROACH_EXPONENT", 0.0)  # far views not discounted: their bias stays
    assert abs(seen_at(StandingMemory(1.0, 2.0), approach, growing)) > 0.15


def test_two_barriers_closer_than_the_gate_keep_their_own_places():
    memory = StandingMemory(gate_m=1.0, remember_s=2.0)
    codes, ranges = np.array([BARRIER, BARRIER]), np.array([10.0, 10.0])
    for k in range(10):
        memory.place(np.array([[0.0, 0.0], [0.8, 0.0]]), codes, ranges, along_x(2), k * SWEEP_NS)
    # the first barrier's view jitters to 0.45 m, nearer the second one's place: matched one to one, nearest first
    placed = memory.place(np.array([[0.45, 0.0], [0.8, 0.0]]), codes, ranges, along_x(2), 10 * SWEEP_NS)
    assert placed[0, 0] == pytest.approx(0.45 / 11)
    assert placed[1, 0] == pytest.approx(0.8)


def test_a_far_view_matches_within_a_gate_that_grows_with_its_range():
    """A barrier seen at 5 m, then 1.4 m off along its row from 25 m away (beyond gate_m, within 0.06 x 25 m): matched,
    its near views place it. The same view from 8 m away (gate 1 m) is another barrier, at its own place."""
    for view_range, expected in ((25.0, 1.4 / 126), (8.0, 1.4)):
        memory = StandingMemory(gate_m=1.0, remember_s=2.0)
        for k in range(5):
            memory.place(np.zeros((1, 2)), np.array([BARRIER]), np.array([5.0]), ALONG_X, k * SWEEP_NS)
        placed = memory.place(np.array([[1.4, 0.0]]), np.array([BARRIER]), np.array([view_range]), ALONG_X,
                              5 * SWEEP_NS)
        # five views from 5 m weighing 1/5^2 each, the one from 25 m 1/25^2: 125 to 1
        assert placed[0, 0] == pytest.approx(expected, abs=0.01)


def test_an_object_unseen_for_longer_than_remember_s_is_forgotten():
    for gap_s, expected in ((1.0, 0.0), (3.0, 0.5)):
        memory = StandingMemory(gate_m=1.0, remember_s=2.0)
        for k in range(20):
            memory.place(np.zeros((1, 2)), np.array([CAR]), np.array([5.0]), ALONG_X, k * SWEEP_NS)
        back_ns = 19 * SWEEP_NS + int(gap_s * 1e9)
        placed = memory.place(np.array([[0.5, 0.0]]), np.array([CAR]), np.array([30.0]), ALONG_X, back_ns)
        assert placed[0, 0] == pytest.approx(expected, abs=0.01)  # remembered: the 5 m views weigh 36x more


def test_views_of_another_class_are_not_matched():
    memory = StandingMemory(gate_m=1.0, remember_s=2.0)
    memory.place(np.zeros((1, 2)), np.array([CAR]), np.array([5.0]), ALONG_X, 0)
    placed = memory.place(np.array([[0.3, 0.0], [0.3, 0.0]]), np.array([BARRIER, CAR]), np.array([30.0, 30.0]),
                          along_x(2), SWEEP_NS)
    assert placed[0, 0] == pytest.approx(0.3)  # a new barrier
    assert placed[1, 0] == pytest.approx(0.3 / 37)  # the car: views weighing 1/5^2 (at 0) and 1/30^2


def passed_car(memory: StandingMemory) -> None:
    """A parked car at the origin, long side along world x, placed by ten views from 5 m."""
    for k in range(10):
        memory.place(np.zeros((1, 2)), np.array([CAR]), np.array([5.0]), ALONG_X, k * SWEEP_NS)


def test_a_far_view_along_a_remembered_car_s_length_takes_its_place_without_moving_it():
    """World v2 seed 8 with good 2D boxes: a parked car placed within 0.1 m by its near views was seen 1.1-2.2 m along
    its length from 15-23 m behind the ego for a second. Such a view is that car's (its long gate reaches half a
    car length, 2.08 m), is placed where the near views put it, and moves nothing, however many come."""
    memory = StandingMemory(gate_m=1.0, remember_s=2.0)
    passed_car(memory)
    for k in range(10, 30):
        placed = memory.place(np.array([[1.9, 0.2]]), np.array([CAR]), np.array([20.0]), ALONG_X, k * SWEEP_NS)
        assert placed[0] == pytest.approx([0.0, 0.0])
    assert len(memory.code) == 1


@pytest.mark.parametrize("xy, view_range, long_axis", [
    ((0.2, 1.9), 20.0, ALONG_X),  # across the car's length: a car parked beside it
    ((1.9, 0.2), 20.0, np.array([[0.0, 1.0]])),  # the view's own long side runs across: it is not along it
    ((2.5, 0.0), 20.0, ALONG_X),  # beyond half a car length
    ((1.9, 0.2), 3.0, ALONG_X),  # nearer than the car's nearest view
])
def test_views_outside_the_long_gate_are_other_objects(xy, view_range, long_axis):
    memory = StandingMemory(gate_m=1.0, remember_s=2.0)
    passed_car(memory)
    placed = memory.place(np.array([xy]), np.array([CAR]), np.array([view_range]), long_axis, 10 * SWEEP_NS)
    assert placed[0] == pytest.approx(xy)
    assert len(memory.code) == 2


def test_a_barrier_s_gate_stays_round():
    """Barriers of a row stand end to end 1.5-3 m apart: half of a barrier a std shorter than the mean (0.95 m) is
    within gate_m, so a far view 1.2 m along a remembered barrier's row is another barrier."""
    memory = StandingMemory(gate_m=1.0, remember_s=2.0)
    memory.place(np.zeros((1, 2)), np.array([BARRIER]), np.array([5.0]), ALONG_X, 0)
    placed = memory.place(np.array([[1.2, 0.0]]), np.array([BARRIER]), np.array([10.0]), ALONG_X, SWEEP_NS)
    assert placed[0] == pytest.approx([1.2, 0.0])
