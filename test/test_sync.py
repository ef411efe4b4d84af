"""LidarSync on scripted streams, checked against a brute-force nearest-stamp reference."""
from __future__ import annotations

import numpy as np
import pytest

from perception3d.core.sensor_timing import (
    CAMERA_NAMES,
    CAMERA_RATE_HZ,
    LIDAR_RATE_HZ,
    NUSCENES_CAMERA_OFFSETS_S,
    firing_stamps_ns,
)
from perception3d.core.sync import LidarSync, SyncConfig

T0 = 1_600_000_000_000_000_000
MS = 1_000_000
OFFSETS_NS = {c: int(round(o * 1e9)) for c, o in NUSCENES_CAMERA_OFFSETS_S.items()}


def make_config(**kw) -> SyncConfig:
    defaults = {"camera_names": CAMERA_NAMES, "offsets_ns": OFFSETS_NS, "tolerance_ns": 50 * MS,
                "timeout_ns": 100 * MS, "queue_size": 10}
    defaults.update(kw)
    return SyncConfig(**defaults)


def scripted(duration_s=2.0, jitter_ns=0, seed=0, camera_latency_ns=0):
    """Events (arrival_ns, kind, camera, stream, stamp_ns) of nuScenes-timed streams, in arrival order.

    Each camera sends camera_info once at the start, then detections stamped with the image stamp that arrive
    camera_latency_ns after that stamp (a detector's latency).
    """
    rng = np.random.default_rng(seed)
    end = T0 + int(duration_s * 1e9)
    lidar = firing_stamps_ns(LIDAR_RATE_HZ, T0, end, jitter_ns=jitter_ns, rng=rng)
    cams = {c: firing_stamps_ns(CAMERA_RATE_HZ, T0, end, OFFSETS_NS[c], jitter_ns, rng) for c in CAMERA_NAMES}
    events = [(int(s), "lidar", None, None, int(s)) for s in lidar]
    for c, stamps in cams.items():
        events.append((int(stamps[0]) - 1, "camera", c, "camera_info", int(stamps[0]) - 1))
        events += [(int(s) + camera_latency_ns, "camera", c, "detections", int(s)) for s in stamps]
    events.sort(key=lambda e: (e[0], e[1] != "camera"))
    return lidar, cams, events


def feed(sync: LidarSync, events, flush=True):
    out = []
    for _, kind, cam, stream, stamp in events:
        if kind == "lidar":
            out += sync.add_lidar(stamp, ("lidar", stamp))
        else:
            out += sync.add_camera(cam, stream, stamp, (cam, stream, stamp))
    if flush:
        out += sync.flush()
    return out


def brute_force(lidar_ns: int, cam_stamps, offset_ns: int, tolerance_ns: int):
    """Nearest camera stamp to lidar + offset within tolerance, earlier on ties; by scanning every stamp."""
    best = None
    for s in cam_stamps:
        d = abs(int(s) - (lidar_ns + offset_ns))
        if d <= tolerance_ns and (best is None or d < abs(best - (lidar_ns + offset_ns))):
            best = int(s)
    return best


def check_against_brute_force(sets, lidar, cams, config):
    assert [s.lidar_stamp_ns for s in sets] == [int(x) for x in lidar]
    for s in sets:
        for c in CAMERA_NAMES:
            expected = brute_force(s.lidar_stamp_ns, cams[c], config.offset(c), config.tolerance_ns)
            if expected is None:
                assert c in s.missing
            else:
                assert s.cameras[c].stamp_ns == expected, (s.lidar_stamp_ns, c)
                assert s.cameras[c].delta_ns == expected - s.lidar_stamp_ns - config.offset(c)
                assert s.cameras[c].messages["detections"] == (c, "detections", expected)


def test_nuscenes_timing_matches_every_sweep_with_nearest_images():
    lidar, cams, events = scripted()
    config = make_config()
    sync = LidarSync(config)
    sets = feed(sync, events, flush=False)
    sets += sync.flush()
    check_against_brute_force(sets, lidar, cams, config)
    assert sync.stats.matched == len(lidar) and sync.stats.partial == 0 and sync.stats.dropped_total == 0
    # with the rig's offsets every camera is within half a camera period (41.7 ms) of its target
    for c in CAMERA_NAMES:
        assert max(abs(d) for d in sync.stats.deltas_ns[c]) <= 1e9 / CAMERA_RATE_HZ / 2 + 1


def test_sets_are_emitted_without_flush_once_cameras_are_decided():
    lidar, cams, events = scripted()
    sync = LidarSync(make_config())
    sets = feed(sync, events, flush=False)
    # all but the last sweeps (whose next camera frame never comes) are out before the end of input
    assert len(sets) >= len(lidar) - 2
    assert all(s.complete for s in sets)


def test_jitter_and_detector_latency():
    lidar, cams, events = scripted(jitter_ns=4 * MS, seed=3, camera_latency_ns=30 * MS)
    config = make_config()
    sync = LidarSync(config)
    sets = feed(sync, events)
    check_against_brute_force(sets, lidar, cams, config)
    assert sync.stats.matched == len(lidar)


def test_out_of_order_arrival_gives_the_in_order_result():
    lidar, cams, events = scripted(jitter_ns=2 * MS, seed=5)
    config = make_config()
    in_order = feed(LidarSync(config), events)
    rng = np.random.default_rng(1)
    shuffled = list(events)
    for start in range(0, len(shuffled) - 4, 4):  # permute arrival inside windows of 4 messages (~20 ms)
        window = shuffled[start:start + 4]
        shuffled[start:start + 4] = [window[i] for i in rng.permutation(4)]
    out_of_order = feed(LidarSync(config), shuffled)
    assert [(s.lidar_stamp_ns, {c: m.stamp_ns for c, m in s.cameras.items()}) for s in out_of_order] == \
           [(s.lidar_stamp_ns, {c: m.stamp_ns for c, m in s.cameras.items()}) for s in in_order]


def test_camera_that_stops_gives_partial_sets_after_timeout():
    lidar, cams, events = scripted(duration_s=2.0)
    stop = T0 + 1_000 * MS
    events = [e for e in events if not (e[2] == "CAM_BACK" and e[4] > stop)]
    config = make_config()
    sync = LidarSync(config)
    sets = feed(sync, events, flush=False)
    # the timeout (message time) releases the sets; only sweeps within the timeout of the end are left pending
    assert len(sets) >= len(lidar) - int(config.timeout_ns / (1e9 / LIDAR_RATE_HZ)) - 1
    sets += sync.flush()
    cams["CAM_BACK"] = cams["CAM_BACK"][cams["CAM_BACK"] <= stop]
    check_against_brute_force(sets, lidar, cams, config)
    partial = [s for s in sets if not s.complete]
    assert partial and all(set(s.missing) == {"CAM_BACK"} for s in partial)
    assert all(len(s.cameras) == 5 for s in partial)
    assert sync.stats.partial == len(partial) == sync.stats.missing["CAM_BACK"]
    assert sync.stats.matched == len(sets) - len(partial)


def test_bag_loop_resets_and_repeats_the_first_pass():
    lidar, cams, events = scripted(duration_s=1.5)
    sync = LidarSync(make_config())
    first = feed(sync, events, flush=False)
    second = feed(sync, events, flush=True)
    assert sync.stats.resets == 1
    assert "time jump reset" in sync.stats.dropped
    key = [(s.lidar_stamp_ns, {c: m.stamp_ns for c, m in s.cameras.items()}) for s in first]
    assert [(s.lidar_stamp_ns, {c: m.stamp_ns for c, m in s.cameras.items()}) for s in second][:len(key)] == key


def test_duplicate_stamps():
    lidar, cams, events = scripted(duration_s=1.0)
    dup_lidar = next(e for e in events if e[1] == "lidar" and e[4] == int(lidar[5]))
    front4 = int(cams["CAM_FRONT"][4])
    dup_cam = next(e for e in events if e[2] == "CAM_FRONT" and e[3] == "detections" and e[4] == front4)
    i = events.index(dup_cam)
    events = events[:i + 1] + [dup_cam] + events[i + 1:]
    j = events.index(dup_lidar)
    events = events[:j + 1] + [dup_lidar] + events[j + 1:]
    sync = LidarSync(make_config())
    sets = feed(sync, events)
    assert [s.lidar_stamp_ns for s in sets] == [int(x) for x in lidar]  # one set per distinct sweep
    assert sync.stats.duplicates == 2
    assert sync.stats.dropped == {"duplicate LiDAR stamp": 1}


def test_missing_camera_info_marks_camera_missing():
    lidar, cams, events = scripted(duration_s=0.5)
    events = [e for e in events if not (e[2] == "CAM_FRONT_LEFT" and e[3] == "camera_info")]
    sets = feed(LidarSync(make_config()), events)
    assert all("camera_info" in s.missing["CAM_FRONT_LEFT"] for s in sets)
    assert all(len(s.cameras) == 5 for s in sets)


def test_queues_stay_bounded_when_lidar_is_silent():
    config = make_config(queue_size=4)
    sync = LidarSync(config)
    for k in range(200):
        sync.add_camera("CAM_FRONT", "detections", T0 + k * 83 * MS, k)
        sync.add_lidar(T0 + k * 50 * MS, k) if k % 50 == 0 else None
    queue = sync._cameras["CAM_FRONT"]
    assert len(queue.entries) <= 4 and len(sync._pending) <= 4


def test_pending_lidar_queue_overflow_is_counted():
    config = make_config(queue_size=3, timeout_ns=10**12)
    sync = LidarSync(config)
    for k in range(5):
        sync.add_lidar(T0 + k * 50 * MS, k)
    assert sync.stats.dropped == {"pending LiDAR queue full": 2}
    assert [s.lidar_stamp_ns for s in sync.flush()] == [T0 + k * 50 * MS for k in (2, 3, 4)]


def test_config_rejects_unknown_camera_offset():
    with pytest.raises(ValueError, match="CAM_X"):
        make_config(offsets_ns={"CAM_X": 0})


def test_greedy_approximate_time_reimplementation():
    from perception3d.bench.sync import GreedyApproximateTime, run_greedy, run_ours, scripted_events

    same = GreedyApproximateTime(3, queue_size=5, slop_ns=10 * MS)
    for k in range(10):
        for i in range(3):
            same.add(i, T0 + k * 100 * MS, None)
    assert same.emitted == [(T0 + k * 100 * MS,) * 3 for k in range(10)]
    events = scripted_events(3.0, jitter_ns=2 * MS)
    greedy = GreedyApproximateTime(7, queue_size=10, slop_ns=50 * MS)
    for stamp, index, _ in events:
        greedy.add(index, stamp, None)
    used = [s for combo in greedy.emitted for s in combo[1:]]
    assert len(used) == len(set(used))  # a matched message is consumed
    assert all(max(c) - min(c) < 50 * MS for c in greedy.emitted)
    sweeps = sum(1 for e in events if e[1] == 0)
    cam_frames = min(sum(1 for e in events if e[1] == i) for i in range(1, 7))
    assert len(greedy.emitted) <= cam_frames < sweeps
    assert run_ours(events, 50 * MS, 100 * MS, 10) == (sweeps, sweeps)
    assert run_greedy(events, 50 * MS, 10)[0] == len(greedy.emitted)


def test_builtin_camera_offsets_are_the_rig_files(rig):
    from perception3d.core.sensor_timing import NUSCENES_CAMERA_OFFSETS_S

    assert {name: cam["camera_offset_s"] for name, cam in rig["cameras"].items()} == NUSCENES_CAMERA_OFFSETS_S


def test_a_camera_info_recorded_after_its_detections_still_joins_the_sweep():
    """Issue 16: a one-sweep bag whose CameraInfo comes after the camera's detections at the same stamp. The camera
    stays undecided until its CameraInfo arrives (or the timeout passes), so the set keeps it."""
    sync = LidarSync(make_config(camera_names=("CAM_FRONT",), offsets_ns={"CAM_FRONT": 0}))
    assert sync.add_lidar(T0, "sweep") == []
    assert sync.add_camera("CAM_FRONT", "detections", T0, "boxes") == []  # complete keyed stream, no info yet
    (emitted,) = sync.add_camera("CAM_FRONT", "camera_info", T0, "info")
    assert emitted.missing == {} and emitted.cameras["CAM_FRONT"].messages == {"detections": "boxes",
                                                                                "camera_info": "info"}
    # Without any CameraInfo the sweep still goes out at the timeout, the camera named missing.
    sync = LidarSync(make_config(camera_names=("CAM_FRONT",), offsets_ns={"CAM_FRONT": 0}))
    sync.add_lidar(T0, "sweep")
    assert sync.add_camera("CAM_FRONT", "detections", T0, "boxes") == []
    (emitted,) = sync.advance(T0 + 100 * MS)
    assert emitted.missing == {"CAM_FRONT": "no camera_info received yet"}
