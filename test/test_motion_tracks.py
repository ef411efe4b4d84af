"""core.motion_tracks: velocities, headings and motion attributes for geometric detection3d from the last sweeps."""
import numpy as np

from perception3d.core.detections import Detections3D
from perception3d.core.motion_tracks import MIN_SPAN_S, SIDE_ON_DEG, MotionTrackParams, MotionTracks
from perception3d.nodes.detection3d import message_ids
from turned_ego import EGO_YAW, SWEEP_NS, ego_pose, in_base

CAR_SIZE = (4.6, 1.9, 1.7)


def seen(k: int, objects: list[tuple[str, np.ndarray, float]], velocities=None, lengths=None) -> Detections3D:
    """Sweep k's detections in the base frame: (class, world xy [m], world yaw [rad]) per object; CAR_SIZE, or
    lengths (N,) [m] with its width and height."""
    centers = in_base(k, [[*xy, 0.8] for _, xy, _ in objects])
    n = len(objects)
    sizes = np.tile(CAR_SIZE, (n, 1))
    if lengths is not None:
        sizes[:, 0] = lengths
    return Detections3D(centers, sizes, np.array([yaw for *_, yaw in objects]) - EGO_YAW,
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


def test_a_car_that_passed_side_on_keeps_the_length_it_showed_once_it_is_seen_end_on():
    """An oncoming car 3 m to the side of the ego's path passes it at t = 1 s. Seen end-on, its detections have the
    class's mean length with the end nearest the ego in place (as core.segments fits them); seen side-on, its true
    length; in sweeps 5-9, ahead, its box is fitted across it (its face's width as its length, a quarter turn off its
    travel), which must not count as a side-on view. A parked car passed the same way (the fusion's velocity 0)
    keeps its boxes as they are."""
    tracks = MotionTracks(MotionTrackParams(), "map")
    mean_length, moving_length, parked_length = 4.63, 5.2, 4.0
    ego_speed = 6.0  # turned_ego's
    half_side_on = 3.0 / np.tan(np.radians(SIDE_ON_DEG))  # how far ahead or behind a car 3 m aside is seen side-on
    for k in range(40):
        t = k * SWEEP_NS * 1e-9
        ego_xy = np.array([ego_speed * t, 1.0])
        oncoming = np.array([14.0 - 8.0 * t, -2.0])  # heading -x, 3 m to the right of the ego's path
        parked = np.array([8.0, 4.0])  # heading +x, 3 m to the left
        truth = [(oncoming, moving_length, [-1.0, 0.0]), (parked, parked_length, [1.0, 0.0])]
        places, lengths = [], []
        for xy, length, axis in truth:
            if abs(xy[0] - ego_xy[0]) <= half_side_on:
                places.append(xy), lengths.append(length)
            else:  # the near end kept: the centre moves towards the ego by half the missing length
                towards_ego = np.sign(ego_xy[0] - xy[0]) * np.abs(np.array(axis))
                places.append(xy + towards_ego * (length - mean_length) / 2), lengths.append(mean_length)
        across = 5 <= k <= 9
        if across:
            places[0], lengths[0] = oncoming, CAR_SIZE[1]
        dets = seen(k, [("car", places[0], np.pi / 2 if across else np.pi), ("car", places[1], 0.0)],
                    velocities=[[np.nan, np.nan], [0.0, 0.0]], lengths=lengths)
        out = tracks.follow(dets, ego_pose(k), k * SWEEP_NS)
        behind = oncoming[0] - ego_xy[0] < -half_side_on
        if not behind:  # ahead (no side-on view yet) or side-on: its own box
            np.testing.assert_array_equal(out.centers[0], dets.centers[0])
            assert out.sizes_lwh[0, 0] == lengths[0]
        else:  # behind, end-on: the length it showed, and so its true centre
            np.testing.assert_allclose(out.sizes_lwh[0, 0], moving_length, atol=1e-9)
            np.testing.assert_allclose(out.centers[0], in_base(k, [[*oncoming, 0.8]])[0], atol=1e-9)
        np.testing.assert_array_equal(out.centers[1], dets.centers[1])  # standing: the fusion's place stays
        np.testing.assert_array_equal(out.sizes_lwh[1], dets.sizes_lwh[1])
    assert behind and out.ids[0] == "1"  # the last sweeps saw it behind, on one track


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
