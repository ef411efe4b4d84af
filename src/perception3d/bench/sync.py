"""Sync benchmark: our LiDAR-triggered synchronizer vs message_filters' ApproximateTimeSynchronizer algorithm.

Both policies get the same 7 input streams (LIDAR_TOP 20 Hz, six cameras 12 Hz at the nuScenes rig's firing
offsets, uniform stamp jitter), in stamp order. Figures: wall time per LiDAR sweep, how many sweeps come out paired
with all six cameras, and how many come out at all (ours also emits partial sets). A second scenario stops one
camera halfway.

`GreedyApproximateTime` re-implements the algorithm of message_filters' Python ApproximateTimeSynchronizer as
ros-conventions.md section 3 describes it (written here from that description): one {stamp: msg} queue per input
trimmed to queue_size by dropping the oldest; on each arrival, the stamps within `slop` of it in every other
queue, nearest first; the first tuple of their cartesian product whose max - min < slop is emitted and only those
messages are deleted.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from ..core.sensor_timing import (
    CAMERA_NAMES,
    CAMERA_RATE_HZ,
    LIDAR_RATE_HZ,
    NUSCENES_CAMERA_OFFSETS_S,
    firing_stamps_ns,
)
from ..core.sync import LidarSync, SyncConfig
from .common import format_table, write_results

MS = 1_000_000
T0 = 1_533_000_000_000_000_000


class GreedyApproximateTime:
    """The greedy product-over-queues policy of message_filters.ApproximateTimeSynchronizer (Python)."""

    def __init__(self, num_inputs: int, queue_size: int, slop_ns: int) -> None:
        self.queues: list[dict[int, object]] = [{} for _ in range(num_inputs)]
        self.queue_size, self.slop_ns = queue_size, slop_ns
        self.emitted: list[tuple[int, ...]] = []

    def add(self, index: int, stamp_ns: int, msg: object) -> None:
        queue = self.queues[index]
        queue[stamp_ns] = msg  # a duplicate stamp overwrites
        while len(queue) > self.queue_size:
            del queue[min(queue)]
        candidates = []
        for j, other in enumerate(self.queues):
            if j == index:
                continue
            near = sorted((abs(s - stamp_ns), s) for s in other if abs(s - stamp_ns) <= self.slop_ns)
            if not near:
                return
            candidates.append([s for _, s in near])
        for combo in itertools.product(*candidates):
            stamps = [*combo[:index], stamp_ns, *combo[index:]]
            if max(stamps) - min(stamps) < self.slop_ns:
                self.emitted.append(tuple(stamps))
                for q, s in zip(self.queues, stamps):
                    del q[s]
                return


def scripted_events(duration_s: float, jitter_ns: int, seed: int = 0, stop_camera: str | None = None):
    """[(stamp, input index, camera or None)] in stamp order; index 0 = LiDAR, 1..6 = cameras."""
    rng = np.random.default_rng(seed)
    end = T0 + int(duration_s * 1e9)
    events = [(int(s), 0, None) for s in firing_stamps_ns(LIDAR_RATE_HZ, T0, end, 0, jitter_ns, rng)]
    for i, cam in enumerate(CAMERA_NAMES, start=1):
        stamps = firing_stamps_ns(CAMERA_RATE_HZ, T0, end, int(NUSCENES_CAMERA_OFFSETS_S[cam] * 1e9), jitter_ns, rng)
        if cam == stop_camera:
            stamps = stamps[stamps < T0 + int(duration_s * 1e9 / 2)]
        events += [(int(s), i, cam) for s in stamps]
    events.sort()
    return events


def run_ours(events, tolerance_ns: int, timeout_ns: int, queue_size: int) -> tuple[int, int]:
    """(sets with all six cameras, sets emitted)."""
    sync = LidarSync(SyncConfig(
        camera_names=CAMERA_NAMES, keyed_streams=("image",), latest_streams=(),
        offsets_ns={c: int(o * 1e9) for c, o in NUSCENES_CAMERA_OFFSETS_S.items()},
        tolerance_ns=tolerance_ns, timeout_ns=timeout_ns, queue_size=queue_size))
    sets = []
    for stamp, index, cam in events:
        sets += sync.add_lidar(stamp, None) if index == 0 else sync.add_camera(cam, "image", stamp, None)
    sets += sync.flush()
    return sum(s.complete for s in sets), len(sets)


def run_greedy(events, slop_ns: int, queue_size: int) -> tuple[int, int]:
    sync = GreedyApproximateTime(1 + len(CAMERA_NAMES), queue_size, slop_ns)
    for stamp, index, _ in events:
        sync.add(index, stamp, None)
    return len(sync.emitted), len(sync.emitted)


def _timed(fn, repeat: int = 3):
    """(result, best seconds) of fn over `repeat` runs."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def run(out_dir: Path) -> Path:
    duration_s, jitter_ns = 30.0, 2 * MS
    rows, data = [], []
    for scenario, stop in (("all cameras", None), ("CAM_BACK stops halfway", "CAM_BACK")):
        events = scripted_events(duration_s, jitter_ns, stop_camera=stop)
        sweeps = sum(1 for e in events if e[1] == 0)
        policies = [
            ("ours (LiDAR-triggered)", "tol 50 ms, timeout 100 ms, queue 10",
             lambda ev=events: run_ours(ev, 50 * MS, 100 * MS, 10)),
            ("message_filters greedy", "slop 30 ms, queue 10", lambda ev=events: run_greedy(ev, 30 * MS, 10)),
            ("message_filters greedy", "slop 50 ms, queue 10", lambda ev=events: run_greedy(ev, 50 * MS, 10)),
            ("message_filters greedy", "slop 100 ms, queue 10", lambda ev=events: run_greedy(ev, 100 * MS, 10)),
            ("message_filters greedy", "slop 100 ms, queue 30", lambda ev=events: run_greedy(ev, 100 * MS, 30)),
        ]
        for policy, settings, fn in policies:
            (complete, emitted), seconds = _timed(fn)
            us_per_sweep = seconds / sweeps * 1e6
            rows.append([scenario, policy, settings, sweeps, f"{complete} ({100 * complete / sweeps:.0f}%)",
                         emitted, f"{us_per_sweep:.0f}"])
            data.append({"scenario": scenario, "policy": policy, "settings": settings, "sweeps": sweeps,
                         "sweeps_with_all_cameras": complete, "sets_emitted": emitted,
                         "us_per_sweep": us_per_sweep})
    table = format_table(["scenario", "policy", "settings", "LiDAR sweeps", "sweeps with all 6 cameras",
                          "sets emitted", "µs per sweep"], rows)
    notes = (f"Streams: {duration_s:.0f} s of LIDAR_TOP at 20 Hz and six cameras at 12 Hz with the nuScenes rig's "
             f"camera - LiDAR offsets (-43.1 .. -0.5 ms), uniform jitter ±{jitter_ns / MS:.0f} ms, fed in stamp "
             "order; cost = wall time of feeding all 7 streams / LiDAR sweeps (best of 3; the machine is shared, "
             "so expect tens of percent of noise). The greedy policy deletes matched messages, so a 12 Hz camera "
             "frame can serve only one 20 Hz sweep: at most 60% of sweeps can get a full set, and one silent camera "
             "stops all output; with no per-camera offsets its slop must also exceed the cameras' 43 ms firing "
             "spread (slop 30 ms pairs nothing). Ours reuses camera frames across sweeps, applies the per-camera "
             "offsets, and emits partial sets after the timeout. Per sweep the greedy policy is cheaper at these "
             "rates (its nearest-first product usually succeeds on the first tuple); both cost microseconds against "
             "a 50 ms sweep period.")
    return write_results(out_dir, "sync", "Synchronizer: LiDAR-triggered vs message_filters ApproximateTime (greedy)",
                         table, {"runs": data}, notes)
