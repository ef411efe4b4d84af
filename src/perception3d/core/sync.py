"""LiDAR-triggered camera synchronizer, ROS-free (the SyncCore of ARCHITECTURE.md, "Synchronization").

Every LiDAR sweep opens a *pending set*. For each camera the set takes the camera message whose stamp is nearest
to `lidar_stamp + offset[camera]` (offset = camera stamp - LiDAR stamp, e.g. the shutter timing of the nuScenes
rig), if it lies within `tolerance`. A camera message is usable once all of the camera's *keyed* streams (e.g.
`detections`, or `image`) have a message with that exact stamp; *latest* streams (e.g. `camera_info`) are taken
as the most recent valid message with a stamp at or before the camera stamp (or the oldest one if none is that
old), so a static CameraInfo published once is enough.

A camera is *decided* for a pending set once no later message can be nearer: it has a usable message at or after
its target stamp, or its newest stamp is beyond `target + tolerance`. A set is emitted when all cameras are
decided (a *matched* set when every camera has a message, *partial* otherwise), or when message time (the newest
stamp seen on any input) passes `lidar_stamp + timeout`; cameras still missing then are marked missing. Sets come
out in LiDAR stamp order. One camera message may serve several sweeps (LiDAR 20 Hz, cameras 12 Hz).

Time is message time (stamps, nanoseconds), never the wall clock, so a replay at any speed syncs the same way.
Queues are bounded. A stamp more than `reset_jump` away from message time is held back: one such message (a driver's
stamp 0, a clock an hour ahead) is an outlier, dropped and counted, and changes nothing else; only when
`jump_confirm` consecutive messages agree on the new time is the jump real: a jump back (a bag loop) clears all
state, a jump forward moves message time on; the held messages are then used.
Out-of-order arrival within that window is handled by stamp-keyed queues; a duplicate stamp on a stream replaces
the earlier message (camera) or is dropped (LiDAR), and is counted.
"""
from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SyncConfig:
    """Synchronizer settings; all times in nanoseconds.

    Attributes:
        camera_names: cameras to match against each LiDAR sweep.
        keyed_streams: per-camera streams that must share one stamp to form a camera message (e.g. detections).
        latest_streams: per-camera streams taken as latest-valid (e.g. camera_info).
        offsets_ns: {camera: expected camera stamp - LiDAR stamp}; missing cameras use 0.
        tolerance_ns: largest |camera stamp - (LiDAR stamp + offset)| accepted.
        timeout_ns: how long (in message time after the LiDAR stamp) a set waits for late cameras.
        queue_size: bounded queue length per camera and for pending LiDAR sweeps.
        reset_jump_ns: a stamp this much away from message time is a jump (an outlier unless confirmed).
        jump_confirm: consecutive jumped messages that confirm a jump; a jump back then resets (bag loop).
        delta_history: how many per-camera stamp deltas are kept for statistics.
    """

    camera_names: tuple[str, ...]
    keyed_streams: tuple[str, ...] = ("detections",)
    latest_streams: tuple[str, ...] = ("camera_info",)
    offsets_ns: Mapping[str, int] = field(default_factory=dict)
    tolerance_ns: int = 50_000_000
    timeout_ns: int = 100_000_000
    queue_size: int = 10
    reset_jump_ns: int = 1_000_000_000
    jump_confirm: int = 3
    delta_history: int = 1000

    def __post_init__(self) -> None:
        if not self.camera_names:
            raise ValueError("SyncConfig.camera_names is empty; expected at least one camera")
        if not self.keyed_streams:
            raise ValueError("SyncConfig.keyed_streams is empty; expected e.g. ('detections',)")
        if set(self.keyed_streams) & set(self.latest_streams):
            raise ValueError("a stream cannot be both keyed and latest")
        unknown = set(self.offsets_ns) - set(self.camera_names)
        if unknown:
            raise ValueError(f"SyncConfig.offsets_ns names unknown camera(s) {sorted(unknown)}")
        if self.tolerance_ns < 0 or self.timeout_ns < 0 or self.queue_size < 1 or self.reset_jump_ns <= 0 \
                or self.jump_confirm < 1:
            raise ValueError("SyncConfig: tolerance_ns and timeout_ns >= 0, queue_size >= 1, reset_jump_ns > 0, "
                             "jump_confirm >= 1")

    def offset(self, camera: str) -> int:
        return int(self.offsets_ns.get(camera, 0))


@dataclass(frozen=True)
class CameraMatch:
    """The messages of one camera matched to a sweep: its stamp, stamp - target (ns), and {stream: message}."""

    stamp_ns: int
    delta_ns: int
    messages: Mapping[str, Any]


@dataclass(frozen=True)
class SyncedSet:
    """One LiDAR sweep with the cameras matched to it; `missing` = {camera: reason} for cameras left out."""

    lidar_stamp_ns: int
    lidar: Any
    cameras: Mapping[str, CameraMatch]
    missing: Mapping[str, str]

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass
class SyncStats:
    """Counters of a synchronizer. Deltas are camera stamp - (LiDAR stamp + offset), ns, most recent last."""

    matched: int = 0
    partial: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    resets: int = 0
    duplicates: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    deltas_ns: dict[str, deque] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def delta_summary_ms(self) -> dict[str, tuple[float, float]]:
        """{camera: (median |delta|, max |delta|)} in milliseconds over the kept history."""
        out = {}
        for cam, deltas in self.deltas_ns.items():
            if deltas:
                a = np.abs(np.asarray(deltas, dtype=np.float64)) / 1e6
                out[cam] = (float(np.median(a)), float(a.max()))
        return out


class _CameraQueue:
    """Stamp-keyed messages of one camera: keyed streams per stamp plus latest-valid streams."""

    def __init__(self, keyed: Sequence[str], latest: Sequence[str], size: int) -> None:
        self.keyed, self.latest, self.size = tuple(keyed), tuple(latest), size
        self.entries: dict[int, dict[str, Any]] = {}
        self.ready: list[int] = []  # sorted stamps whose keyed streams are all present
        self.latest_msgs: dict[str, list[tuple[int, Any]]] = {s: [] for s in latest}
        self.newest_ns: int | None = None

    def add(self, stream: str, stamp_ns: int, msg: Any) -> bool:
        """Store a message; returns True when it replaced one with the same stream and stamp."""
        self.newest_ns = stamp_ns if self.newest_ns is None else max(self.newest_ns, stamp_ns)
        if stream in self.latest_msgs:
            items = self.latest_msgs[stream]
            stamps = [s for s, _ in items]
            i = bisect.bisect_left(stamps, stamp_ns)
            duplicate = i < len(items) and items[i][0] == stamp_ns
            if duplicate:
                items[i] = (stamp_ns, msg)
            else:
                items.insert(i, (stamp_ns, msg))
                del items[:-self.size]
            return duplicate
        entry = self.entries.setdefault(stamp_ns, {})
        duplicate = stream in entry
        entry[stream] = msg
        if not duplicate and len(entry) == len(self.keyed):
            bisect.insort(self.ready, stamp_ns)
        while len(self.entries) > self.size:  # evict the oldest stamp
            oldest = min(self.entries)
            del self.entries[oldest]
            if self.ready and self.ready[0] == oldest:
                self.ready.pop(0)
        return duplicate

    def nearest(self, target_ns: int, tolerance_ns: int) -> int | None:
        """The ready stamp nearest to target within tolerance (the earlier one on a tie)."""
        i = bisect.bisect_left(self.ready, target_ns)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.ready):
                d = abs(self.ready[j] - target_ns)
                if d <= tolerance_ns and (best is None or d < abs(best - target_ns)):
                    best = self.ready[j]
        return best

    def latest_for(self, stream: str, stamp_ns: int) -> Any | None:
        items = self.latest_msgs[stream]
        if not items:
            return None
        i = bisect.bisect_right([s for s, _ in items], stamp_ns)
        return items[i - 1][1] if i > 0 else items[0][1]

    def prune_before(self, stamp_ns: int) -> None:
        """Forget keyed messages older than stamp_ns (no later sweep can use them)."""
        for s in [s for s in self.entries if s < stamp_ns]:
            del self.entries[s]
        self.ready = [s for s in self.ready if s >= stamp_ns]


class LidarSync:
    """LiDAR-triggered synchronizer; feed it with add_lidar / add_camera and collect the emitted SyncedSets."""

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.stats = SyncStats(
            missing={c: 0 for c in config.camera_names},
            deltas_ns={c: deque(maxlen=config.delta_history) for c in config.camera_names})
        self._held: list[tuple[int, Callable[[], None]]] = []  # jumped messages waiting for confirmation
        self._reset_state()

    def _reset_state(self) -> None:
        c = self.config
        self._cameras = {name: _CameraQueue(c.keyed_streams, c.latest_streams, c.queue_size)
                         for name in c.camera_names}
        self._pending: list[tuple[int, Any]] = []  # (lidar stamp, lidar msg), sorted
        self._now_ns: int | None = None
        self._last_emitted_ns: int | None = None

    @property
    def now_ns(self) -> int | None:
        """Message time: the newest stamp seen on any input since the last reset."""
        return self._now_ns

    def reset(self) -> None:
        """Clear queues and pending sweeps (counted as dropped 'reset'); statistics are kept."""
        for _ in self._pending:
            self.stats.drop("time jump reset")
        self.stats.resets += 1
        self._reset_state()

    def _admit(self, stamp_ns: int, add: Callable[[], None]) -> list[SyncedSet]:
        """Apply `add` (storing one message) unless its stamp jumps (module doc); returns the sets now ready."""
        c = self.config
        if self._now_ns is None or abs(stamp_ns - self._now_ns) <= c.reset_jump_ns:
            for _ in self._held:  # the held messages were outliers: time goes on as before
                self.stats.drop("stamp far from message time (outlier)")
            self._held = []
            self._now_ns = stamp_ns if self._now_ns is None else max(self._now_ns, stamp_ns)
            add()
            return self._emit_ready()
        if self._held and abs(stamp_ns - self._held[-1][0]) > c.reset_jump_ns:
            for _ in self._held:
                self.stats.drop("stamp far from message time (outlier)")
            self._held = []
        self._held.append((stamp_ns, add))
        if len(self._held) < c.jump_confirm:
            return []
        held, self._held = self._held, []
        if stamp_ns < self._now_ns:  # time went back (bag loop): start over
            self.reset()
        out = []
        for stamp, held_add in held:
            self._now_ns = stamp if self._now_ns is None else max(self._now_ns, stamp)
            held_add()
            out += self._emit_ready()
        return out

    def add_lidar(self, stamp_ns: int, msg: Any) -> list[SyncedSet]:
        """A LiDAR sweep arrived; returns the sets that became ready."""
        stamp_ns = int(stamp_ns)
        return self._admit(stamp_ns, lambda: self._add_lidar(stamp_ns, msg))

    def _add_lidar(self, stamp_ns: int, msg: Any) -> None:
        stamps = [s for s, _ in self._pending]
        i = bisect.bisect_left(stamps, stamp_ns)
        if (i < len(stamps) and stamps[i] == stamp_ns) or stamp_ns == self._last_emitted_ns:
            self.stats.duplicates += 1
            self.stats.drop("duplicate LiDAR stamp")
        elif self._last_emitted_ns is not None and stamp_ns < self._last_emitted_ns:
            self.stats.drop("LiDAR sweep older than the last emitted one")
        else:
            self._pending.insert(i, (stamp_ns, msg))
            if len(self._pending) > self.config.queue_size:
                self._pending.pop(0)
                self.stats.drop("pending LiDAR queue full")

    def add_camera(self, camera: str, stream: str, stamp_ns: int, msg: Any) -> list[SyncedSet]:
        """A message of one camera stream arrived; returns the sets that became ready."""
        if camera not in self._cameras:
            raise KeyError(f"unknown camera {camera!r}; configured cameras are {list(self.config.camera_names)}")
        if stream not in self.config.keyed_streams and stream not in self.config.latest_streams:
            raise KeyError(f"unknown stream {stream!r} for {camera}; expected one of "
                           f"{list(self.config.keyed_streams + self.config.latest_streams)}")
        stamp_ns = int(stamp_ns)

        def add() -> None:
            if self._cameras[camera].add(stream, stamp_ns, msg):
                self.stats.duplicates += 1
        return self._admit(stamp_ns, add)

    def advance(self, now_ns: int) -> list[SyncedSet]:
        """Move message time forward without a message (e.g. a ROS timer on the clock); returns ready sets.
        A time before message time changes nothing (messages, not the timer, decide a jump back)."""
        if self._now_ns is None or now_ns > self._now_ns:
            self._now_ns = int(now_ns)
        return self._emit_ready()

    def flush(self) -> list[SyncedSet]:
        """End of input: emit every pending sweep with what has arrived (cameras still missing marked)."""
        out = []
        while self._pending:
            out.append(self._emit(*self._pending.pop(0)))
        return out

    # -- matching ----------------------------------------------------------------------------------------------
    def _camera_state(self, camera: str, lidar_ns: int) -> tuple[int | None, bool]:
        """(best ready stamp or None, decided) of one camera for a sweep; a camera whose latest-valid streams
        (camera_info) have not arrived yet is undecided, as they may come just after the keyed ones."""
        queue = self._cameras[camera]
        target = lidar_ns + self.config.offset(camera)
        best = queue.nearest(target, self.config.tolerance_ns)
        decided = (best is not None and best >= target) or (
            queue.newest_ns is not None and queue.newest_ns > target + self.config.tolerance_ns)
        return best, decided and all(queue.latest_msgs[s] for s in self.config.latest_streams)

    def _emit_ready(self) -> list[SyncedSet]:
        out = []
        while self._pending:
            lidar_ns, msg = self._pending[0]
            timed_out = self._now_ns is not None and self._now_ns >= lidar_ns + self.config.timeout_ns
            if not timed_out and not all(self._camera_state(c, lidar_ns)[1] for c in self.config.camera_names):
                break
            self._pending.pop(0)
            out.append(self._emit(lidar_ns, msg))
        return out

    def _missing_reason(self, camera: str, lidar_ns: int) -> str:
        """Why a camera has no message for a sweep, with the offset its nearest message shows (the hint to set
        sync.camera_offsets_s when the rig's cameras fire at other times than configured)."""
        offset = self.config.offset(camera)
        text = (f"no message within {self.config.tolerance_ns / 1e6:.1f} ms of {lidar_ns + offset} ns (LiDAR + "
                f"sync.camera_offsets_s {offset / 1e9:+.4f} s)")
        nearest = self._cameras[camera].nearest(lidar_ns, self.config.reset_jump_ns)
        if nearest is None:
            return text
        measured_s = (nearest - lidar_ns) / 1e9
        return (f"{text}; its nearest message is {measured_s:+.4f} s from the LiDAR stamp: if {camera} fires at that "
                f"offset, set its entry of sync.camera_offsets_s to {measured_s:.4f}")

    def _emit(self, lidar_ns: int, lidar_msg: Any) -> SyncedSet:
        cameras: dict[str, CameraMatch] = {}
        missing: dict[str, str] = {}
        for name in self.config.camera_names:
            queue = self._cameras[name]
            target = lidar_ns + self.config.offset(name)
            best, _ = self._camera_state(name, lidar_ns)
            if best is None:
                missing[name] = self._missing_reason(name, lidar_ns)
                continue
            messages = dict(queue.entries[best])
            lacking = []
            for stream in self.config.latest_streams:
                latest = queue.latest_for(stream, best)
                if latest is None:
                    lacking.append(stream)
                messages[stream] = latest
            if lacking:
                missing[name] = f"no {', '.join(lacking)} received yet"
                continue
            cameras[name] = CameraMatch(best, best - target, messages)
            self.stats.deltas_ns[name].append(best - target)
        for name in missing:
            self.stats.missing[name] += 1
        if missing:
            self.stats.partial += 1
        else:
            self.stats.matched += 1
        self._last_emitted_ns = lidar_ns
        for name in self.config.camera_names:  # future sweeps are later: older camera messages are useless
            self._cameras[name].prune_before(lidar_ns + self.config.offset(name) - self.config.tolerance_ns)
        return SyncedSet(lidar_ns, lidar_msg, cameras, missing)
