"""core.static_fusion: standing objects fused over the last second of sweeps in the world frame (issue 16)."""
import numpy as np
import pytest

from perception3d.core.detections import Detections3D
from perception3d.core.static_fusion import COASTED_SCORE_FACTOR, StaticFusion, StaticFusionParams
from turned_ego import EGO_YAW, SWEEP_NS, ego_pose, in_base

BARRIER_WORLD = np.array([30.0, -5.0, 0.5])
SIZE = np.array([0.5, 2.5, 1.0])  # a barrier: thin across its heading


def seen(k: int, world_xy_by_class: list[tuple[str, np.ndarray]], score: float = 0.8) -> Detections3D:
    """Sweep k's detections in the base frame of objects at the given world xy positions."""
    base = in_base(k, [[*xy, BARRIER_WORLD[2]] for _, xy in world_xy_by_class])
    n = len(world_xy_by_class)
    return Detections3D(base, np.tile(SIZE, (n, 1)), np.full(n, -EGO_YAW), [c for c, _ in world_xy_by_class],
                        np.full(n, score), "base_link", k * SWEEP_NS)


def in_world(dets: Detections3D, k: int) -> np.ndarray:
    return (dets.centers @ ego_pose(k)[:3, :3].T + ego_pose(k)[:3, 3])[:, :2]


def test_a_barrier_jittered_along_its_row_is_placed_at_its_mean_position_in_the_world_frame():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    offsets = 0.45 * np.where(np.arange(20) % 2 == 0, 1.0, -1.0)  # +-0.45 m along the row, sweep by sweep
    for k, off in enumerate(offsets):
        out = fusion.fuse(seen(k, [("barrier", BARRIER_WORLD[:2] + [off, 0.0])]), ego_pose(k), k * SWEEP_NS)
    error = np.linalg.norm(in_world(out, 19) - BARRIER_WORLD[:2], axis=1)
    assert len(out) == 1 and error[0] < 0.05  # the sweep alone: 0.45 m off
    np.testing.assert_array_equal(out.velocities, [[0.0, 0.0]])  # it stands
    assert out.centers[0, 2] == pytest.approx(seen(19, [("barrier", BARRIER_WORLD[:2])]).centers[0, 2])


def test_a_moving_car_is_left_where_the_sweep_put_it_and_a_pedestrian_is_not_fused():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    for k in range(20):
        car = BARRIER_WORLD[:2] + [8.0 * k * SWEEP_NS * 1e-9, 0.0]  # 8 m/s: 0.4 m a sweep, within the gate
        walker = BARRIER_WORLD[:2] + [0.3 * (k % 2), 3.0]
        dets = seen(k, [("car", car), ("pedestrian", walker)])
        out = fusion.fuse(dets, ego_pose(k), k * SWEEP_NS)
    np.testing.assert_allclose(out.centers, dets.centers)  # the car never stood 0.5 s within 1 m
    assert np.isnan(out.velocities).all()  # core.motion_tracks gives moving objects theirs


def test_a_barrier_seen_in_one_sweep_of_the_window_scores_lower_than_one_seen_in_all():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    steady = ("barrier", BARRIER_WORLD[:2])
    for k in range(19):
        fusion.fuse(seen(k, [steady]), ego_pose(k), k * SWEEP_NS)
    flicker = ("barrier", BARRIER_WORLD[:2] + [10.0, 0.0])
    out = fusion.fuse(seen(19, [steady, flicker]), ego_pose(19), 19 * SWEEP_NS)
    assert out.scores[0] == pytest.approx(0.8)  # seen in every sweep
    assert out.scores[1] == pytest.approx(0.8 * np.sqrt(1 / 20))  # 1 of the 20 sweeps in the window


def test_two_boxes_the_fusion_puts_on_one_barrier_of_a_row_are_one_and_its_neighbours_stay():
    """A row of three touching barriers (2.5 m wide, end to end along world y). In the last sweep the middle one has
    a second, lower-scored box 0.4 m along the row (a second 2D box of one image, which the sweep's NMS keeps apart):
    both are within the gate of its remembered boxes, and the fusion moves both to its mean place."""
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    row = [("barrier", BARRIER_WORLD[:2] + [0.0, y]) for y in (-2.5, 0.0, 2.5)]
    for k in range(19):
        fusion.fuse(seen(k, row), ego_pose(k), k * SWEEP_NS)
    dets = seen(19, row + [("barrier", BARRIER_WORLD[:2] + [0.0, 0.4])])
    dets.scores[3] = 0.5
    out = fusion.fuse(dets, ego_pose(19), 19 * SWEEP_NS)
    assert len(out) == 3 and list(out.scores) == pytest.approx([0.8, 0.8, 0.8])
    np.testing.assert_allclose(np.sort(in_world(out, 19)[:, 1]), BARRIER_WORLD[1] + np.array([-2.5, 0.0, 2.5]),
                               atol=0.05)


def test_a_standing_object_the_sweep_misses_is_kept_and_a_one_sweep_object_is_not():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0, coast_min_share=0.3), "map")
    parked = ("car", BARRIER_WORLD[:2] + [0.0, -3.0])
    for k in range(19):
        once = [("truck", BARRIER_WORLD[:2] + [15.0, 0.0])] if k == 17 else []
        fusion.fuse(seen(k, [parked] * (k % 3 != 0) + once), ego_pose(k), k * SWEEP_NS)
    out = fusion.fuse(seen(19, []), ego_pose(19), 19 * SWEEP_NS)
    assert list(out.class_ids) == ["car"]
    np.testing.assert_allclose(in_world(out, 19), [parked[1]], atol=1e-9)
    assert out.scores[0] == pytest.approx(COASTED_SCORE_FACTOR * 0.8)
    assert out.stamp_ns == 19 * SWEEP_NS and out.frame_id == "base_link"
    np.testing.assert_array_equal(out.velocities, [[0.0, 0.0]])


def test_a_moving_car_is_not_kept_when_the_sweep_misses_it():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    for k in range(19):
        fusion.fuse(seen(k, [("car", BARRIER_WORLD[:2] + [8.0 * k * SWEEP_NS * 1e-9, 0.0])]), ego_pose(k),
                    k * SWEEP_NS)
    assert len(fusion.fuse(seen(19, []), ego_pose(19), 19 * SWEEP_NS)) == 0


def test_no_world_pose_passes_the_sweep_through_and_a_replay_restart_forgets_the_past():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    for k in range(10):
        fusion.fuse(seen(k, [("barrier", BARRIER_WORLD[:2] + [0.6 * (k % 2), 0.0])]), ego_pose(k), k * SWEEP_NS)
    dets = seen(10, [("barrier", BARRIER_WORLD[:2] + [0.6, 0.0])])
    np.testing.assert_array_equal(fusion.fuse(dets, None, 10 * SWEEP_NS).centers, dets.centers)
    restarted = fusion.fuse(seen(0, [("barrier", BARRIER_WORLD[:2] + [0.6, 0.0])]), ego_pose(0), 0)
    np.testing.assert_allclose(in_world(restarted, 0), [BARRIER_WORLD[:2] + [0.6, 0.0]])
    assert restarted.scores[0] == pytest.approx(0.8)


def test_window_zero_turns_fusion_off():
    fusion = StaticFusion(StaticFusionParams(window_s=0.0), "map")
    for k in range(10):
        dets = seen(k, [("barrier", BARRIER_WORLD[:2] + [0.6 * (k % 2), 0.0])])
        out = fusion.fuse(dets, ego_pose(k), k * SWEEP_NS)
        np.testing.assert_array_equal(out.centers, dets.centers)
        np.testing.assert_array_equal(out.scores, dets.scores)


def test_scores_of_zero_leave_a_standing_object_where_the_sweep_put_it():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    for k in range(20):
        dets = seen(k, [("car", BARRIER_WORLD[:2] + [0.3 * (k % 2), 0.0])], score=0.0)
        out = fusion.fuse(dets, ego_pose(k), k * SWEEP_NS)
    np.testing.assert_allclose(out.centers, dets.centers)


def test_a_sweep_without_detections_counts_as_a_sweep_that_did_not_see_the_barrier():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0), "map")
    steady = ("barrier", BARRIER_WORLD[:2])
    for k in range(19):
        fusion.fuse(seen(k, [steady] if k != 5 else []), ego_pose(k), k * SWEEP_NS)
    out = fusion.fuse(seen(19, [steady]), ego_pose(19), 19 * SWEEP_NS)
    assert out.scores[0] == pytest.approx(0.8 * np.sqrt(19 / 20))


PASSED_CAR_WORLD = np.array([12.0, -4.0])  # the ego passes it at sweep 40 and leaves it 30 m behind at sweep 140


def passed_car_view(k: int) -> np.ndarray:
    """Sweep k's view of the passed car: beyond 20 m its returns lie on its cabin, 0.9 m too far along the ray from
    the ego."""
    ray = PASSED_CAR_WORLD - ego_pose(k)[:2, 3]
    return PASSED_CAR_WORLD + (0.9 * ray / np.linalg.norm(ray) if np.linalg.norm(ray) >= 20.0 else 0.0)


def test_a_parked_car_the_ego_has_passed_keeps_the_place_its_near_views_gave():
    errors = {}
    for remember_s in (2.0, 0.0):
        fusion = StaticFusion(StaticFusionParams(window_s=1.0, remember_s=remember_s), "map")
        for k in range(141):
            out = fusion.fuse(seen(k, [("car", passed_car_view(k))]), ego_pose(k), k * SWEEP_NS)
        errors[remember_s] = np.linalg.norm(in_world(out, 140)[0] - PASSED_CAR_WORLD)
    assert errors[2.0] < 0.1
    assert errors[0.0] > 0.8  # the window's second holds far views only


def test_a_passed_car_that_a_sweep_misses_is_kept_at_its_remembered_place():
    """The car above, missed by the last sweep (a far car in a row of parked cars is missed in some images): kept
    from the window's sweeps, it stands where the memory of its views puts it, not at the mean of the window's far
    views; a sweep that sees it again matches it as before."""
    fusion = StaticFusion(StaticFusionParams(window_s=1.0, remember_s=2.0), "map")
    for k in range(140):
        fusion.fuse(seen(k, [("car", passed_car_view(k))]), ego_pose(k), k * SWEEP_NS)
    missed = fusion.fuse(seen(140, []), ego_pose(140), 140 * SWEEP_NS)
    assert len(missed) == 1 and missed.scores[0] == pytest.approx(COASTED_SCORE_FACTOR * 0.8)
    assert np.linalg.norm(in_world(missed, 140)[0] - PASSED_CAR_WORLD) < 0.1
    again = fusion.fuse(seen(141, [("car", passed_car_view(141))]), ego_pose(141), 141 * SWEEP_NS)
    assert len(again) == 1 and np.linalg.norm(in_world(again, 141)[0] - PASSED_CAR_WORLD) < 0.1


def test_a_replay_restart_also_forgets_the_remembered_places():
    fusion = StaticFusion(StaticFusionParams(window_s=1.0, remember_s=2.0), "map")
    before, after = BARRIER_WORLD[:2], BARRIER_WORLD[:2] + [0.6, 0.0]
    for k in range(40):
        fusion.fuse(seen(k, [("barrier", before)]), ego_pose(k), (100 + k) * SWEEP_NS)
    for k in range(20):  # the bag played again from an earlier stamp, the barrier 0.6 m on
        out = fusion.fuse(seen(k, [("barrier", after)]), ego_pose(k), k * SWEEP_NS)
    np.testing.assert_allclose(in_world(out, 19), [after], atol=1e-6)
