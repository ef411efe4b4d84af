"""Camera firing-cycle sets for batched 2D detection, on nuScenes timing."""
import numpy as np
import pytest

from perception3d.core.camera_sets import CameraSetCollector
from perception3d.core.sensor_timing import CAMERA_NAMES, NUSCENES_CAMERA_OFFSETS_S

PERIOD_NS = 83_333_333


def nuscenes_images(cycles, drop=(), jitter_ns=0, seed=0):
    """(camera, stamp) of `cycles` firing cycles in stamp order, as a bag delivers them."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(cycles):
        base = 1_000_000_000 + k * PERIOD_NS
        for cam in CAMERA_NAMES:
            if (k, cam) in drop:
                continue
            jitter = int(rng.integers(-jitter_ns, jitter_ns + 1)) if jitter_ns else 0
            items.append((cam, base + int(NUSCENES_CAMERA_OFFSETS_S[cam] * 1e9) + jitter))
    return sorted(items, key=lambda item: item[1])


def collect(items, window_ns=60_000_000):
    collector = CameraSetCollector(CAMERA_NAMES, window_ns)
    sets = []
    for cam, stamp in items:
        sets += collector.add(cam, stamp, f"{cam}@{stamp}")
    return sets + collector.flush(), collector


def test_each_cycle_becomes_one_complete_set_of_its_own_images():
    items = nuscenes_images(10, jitter_ns=2_000_000)
    sets, collector = collect(items)
    assert len(sets) == 10 and collector.complete == 10 and collector.partial == 0
    for s in sets:
        stamps = [stamp for stamp, _ in s.images.values()]
        assert max(stamps) - min(stamps) < 50_000_000  # one firing cycle (~43 ms spread)
        assert s.stamp_ns == min(stamps)
        assert set(s.images) == set(CAMERA_NAMES) and not s.missing
    every = sorted(stamp for s in sets for stamp, _ in s.images.values())
    assert every == [stamp for _, stamp in items]  # every image exactly once


def test_a_missing_camera_gives_a_partial_set_without_delaying_the_next():
    items = nuscenes_images(4, drop={(1, "CAM_BACK"), (2, "CAM_FRONT")})
    sets, collector = collect(items)
    assert [s.missing for s in sets] == [(), ("CAM_BACK",), ("CAM_FRONT",), ()]
    assert collector.partial == 2
    assert sum(len(s.images) for s in sets) == len(items)


def test_a_camera_that_stops_still_lets_the_others_through():
    items = nuscenes_images(5, drop={(k, "CAM_BACK_LEFT") for k in range(2, 5)})
    sets, _ = collect(items)
    assert len(sets) == 5 and all("CAM_BACK_LEFT" in s.missing for s in sets[2:])


def test_a_bag_loop_starts_over():
    items = nuscenes_images(2)
    sets, collector = collect(items + items[:3])
    assert len(sets) == 3 and sets[-1].missing and set(sets[-1].images) == {cam for cam, _ in items[:3]}


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one camera"):
        CameraSetCollector([], 1)
    with pytest.raises(ValueError, match="unknown camera"):
        CameraSetCollector(["CAM_FRONT"], 10).add("CAM_BACK", 0, None)


def test_expire_closes_the_open_set_after_its_window_in_message_time():
    collector = CameraSetCollector(CAMERA_NAMES, 60_000_000)
    assert collector.add("CAM_FRONT", 1_000, "a") == [] and collector.open_stamp_ns == 1_000
    assert collector.expire(1_000 + 60_000_000) == []  # not past the window yet
    [closed] = collector.expire(1_000 + 60_000_001)
    assert set(closed.images) == {"CAM_FRONT"} and len(closed.missing) == 5 and collector.open_stamp_ns is None
