"""core.motion_tracks: velocities, headings and motion attributes for geometric detection3d from the last sweeps."""
import numpy as np

from perception3d.core.detections import Detections3D
from perception3d.core.motion_tracks import MIN_SPAN_S, MotionTrackParams, MotionTracks
from perception3d.nodes.detection3d import message_ids
from turned_ego import EGO_YAW, SWEEP_NS, ego_pose, in_base

CAR_SIZE = (4.6, 1.9, 1.7)


def seen(k: int, objects: list[tuple[str, np.ndarray, float]], velocities=None) -> Detections3D:
    """Sweep k's detections in the base frame: (class, world xy [m], world yaw [rad]) per object."""
    centers = in_base(k, [[*xy, 0.8] for _, xy, _ in objects])
    n = len(objects)
    return Detections3D(centers, np.tile(CAR_SIZE, (n, 1)), np.array([yaw for *_, yaw in objects]) - EGO_YAW,
                        [c for c, *_ in objects], np.full(n, 0.8), "base_link", k * SWEEP_NS, velocities)


def world_velocity(dets: Detections3D) -> np.ndarray:
    return dets.velocities @ ego_pose(0)[:2, :2].T


def test_a_car_driving_by_gets_its_velocity_over_the_ground_and_faces_its_travel():
    rng = np.random.default_rng(0)
    tracks = MotionTracks(MotionTrackParams(), "map")
    velocity = np.array([-8.0, 2.0])  # oncoming, drifting left: the ego's own 6 m/s must not enter
    travel = np.arctan2(velocity[1], velocity[0])
    for k in range(20):
        xy = np.array([40.0, -4.0]) + velocity * k * SWEEP_NS * 1e-9 + rng.normal(0.0, 0.15, 2)
        dets = seen(k, [("car", xy, travel + np.pi + rng.normal(0.0, 0.05))])  # the box fitted back to front
        out = tracks.follow(dets, ego_pose(k), k * SWEEP_NS)
    np.testing.assert_allclose(world_velocity(out)[0], velocity, atol=0.4)
    assert np.cos(out.yaws[0] + EGO_YAW - travel) > np.cos(0.15)
    assert out.attributes[0] == "vehicle.moving"
    np.testing.assert_array_equal(out.centers, dets.centers)  # the place stays the sweep's


def test_cars_passing_each_other_keep_their_own_velocities():
    tracks = MotionTracks(MotionTrackParams(), "map")
    ids = []
    for k in range(30):  # they pass at sweep 15, 1.8 m apart across: within each other's gate (2 m)
        t = k * SWEEP_NS * 1e-9
        out = tracks.follow(seen(k, [("car", np.array([20.0 + 10.0 * (t - 0.75), 0.0]), 0.0),
                                     ("car", np.array([20.0 - 10.0 * (t - 0.75), 1.8]), np.pi)]),
                            ego_pose(k), k * SWEEP_NS)
        ids.append(tuple(out.ids))
    np.testing.assert_allclose(world_velocity(out), [[10.0, 0.0], [-10.0, 0.0]], atol=0.05)
    assert set(ids) == {("1", "2")}  # each keeps its track's id from the first sweep to the last


def test_standing_objects_are_parked_or_standing_and_a_walker_faces_where_it_walks():
    tracks = MotionTracks(MotionTrackParams(), "map")
    for k in range(20):
        walker = np.array([15.0, 6.0]) + np.array([0.0, -1.3]) * k * SWEEP_NS * 1e-9  # crossing the road
        dets = seen(k, [("car", np.array([25.0, -4.0]), 0.0), ("bicycle", np.array([12.0, -5.0]), 1.0),
                        ("pedestrian", walker, 0.4)],
                    velocities=[[0.0, 0.0], [np.nan, np.nan], [np.nan, np.nan]])  # the car: the fusion's standing
        out = tracks.follow(dets, ego_pose(k), k * SWEEP_NS)
    assert list(out.attributes) == ["vehicle.parked", "cycle.without_rider", "pedestrian.moving"]
    np.testing.assert_allclose(world_velocity(out), [[0.0, 0.0], [0.0, 0.0], [0.0, -1.3]], atol=1e-6)
    assert np.cos(out.yaws[2] + EGO_YAW + np.pi / 2) > np.cos(1e-6)  # walking along -y of the world
    np.testing.assert_allclose(out.yaws[:2], dets.yaws[:2])  # not moving: not turned


def test_no_velocity_until_a_track_spans_its_minimum_and_none_for_barriers():
    tracks = MotionTracks(MotionTrackParams(), "map")
    young = int(MIN_SPAN_S * 1e9 / SWEEP_NS)  # sweeps 0 .. young - 1 span less than MIN_SPAN_S
    for k in range(young + 1):
        car = np.array([20.0 + 5.0 * k * SWEEP_NS * 1e-9, -4.0])
        out = tracks.follow(seen(k, [("car", car, 0.0), ("barrier", np.array([10.0, 5.0]), 0.0)]),
                            ego_pose(k), k * SWEEP_NS)
        if k < young:
            assert np.isnan(out.velocities).all() and list(out.attributes) == ["", ""]
    np.testing.assert_allclose(world_velocity(out)[0], [5.0, 0.0], atol=1e-6)
    assert np.isnan(out.velocities[1]).all() and out.attributes[1] == ""  # followed (it has an id), never moving
    assert list(out.ids) == ["1", "2"]


def test_tracks_are_forgotten_when_the_replay_restarts_and_without_a_pose_nothing_changes():
    tracks = MotionTracks(MotionTrackParams(), "map")
    for k in range(10):
        tracks.follow(seen(k, [("car", np.array([20.0 + 0.5 * k, -4.0]), 0.0)]), ego_pose(k), k * SWEEP_NS)
    restarted = tracks.follow(seen(0, [("car", np.array([20.0, -4.0]), 0.0)]), ego_pose(0), 0)
    assert np.isnan(restarted.velocities).all()  # a velocity from the earlier run would be 10 m/s
    dets = seen(1, [("car", np.array([20.5, -4.0]), 0.0)])
    unchanged = tracks.follow(dets, None, SWEEP_NS)
    assert unchanged is dets
    off = MotionTracks(MotionTrackParams(window_s=0.0), "map")
    assert off.follow(dets, ego_pose(1), SWEEP_NS) is dets


def test_an_object_seen_again_after_its_track_was_forgotten_gets_a_new_id():
    tracks = MotionTracks(MotionTrackParams(window_s=1.0), "map")
    parked = [("car", np.array([20.0, -4.0]), 0.0)]
    first = tracks.follow(seen(0, parked), ego_pose(0), 0)
    again = tracks.follow(seen(5, parked), ego_pose(5), 5 * SWEEP_NS)  # 0.25 s later: the same track
    later = tracks.follow(seen(40, parked), ego_pose(40), 40 * SWEEP_NS)  # 1.75 s unseen: forgotten
    restarted = tracks.follow(seen(0, parked), ego_pose(0), 0)  # a replay restart: forgotten, ids not reused
    assert [d.ids[0] for d in (first, again, later, restarted)] == ["1", "1", "2", "3"]


def test_a_message_keeps_its_track_ids_and_numbers_the_other_boxes_above_them():
    ids = np.array(["7", "", "3", ""], dtype=object)  # e.g. classes left out of tracking.classes
    assert list(message_ids(ids)) == ["7", "8", "3", "9"]
    assert list(message_ids(np.array(["", ""], dtype=object))) == ["1", "2"]  # learned mode, tracking off
