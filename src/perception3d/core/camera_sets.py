"""Grouping the images of one camera firing cycle into a set, so a 2D detector can run all cameras in one batch.

A rig like nuScenes' fires its six cameras one after another within ~45 ms, every 83 ms (12 Hz). A set opens with
the first image after the previous set and takes each camera's first image within `window` of the opening stamp.
It closes when every camera has contributed, or when an image arrives that cannot join it (later than the window,
or a second image of a camera already in the set): then it goes out partial, the missing cameras named. Time is
message time (stamps); a stamp more than `reset_jump` before the open set's starts over (bag loop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CameraSet:
    """Images of one firing cycle: {camera: (stamp_ns, message)}, the opening stamp, and the cameras missing."""

    stamp_ns: int
    images: dict[str, tuple[int, Any]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


class CameraSetCollector:
    """Collects per-camera images into CameraSets (see module doc); feed images in arrival order."""

    def __init__(self, cameras: tuple[str, ...] | list[str], window_ns: int, reset_jump_ns: int = 1_000_000_000):
        if not cameras:
            raise ValueError("CameraSetCollector needs at least one camera")
        if window_ns <= 0:
            raise ValueError(f"window_ns must be positive, got {window_ns}")
        self.cameras = tuple(cameras)
        self.window_ns = int(window_ns)
        self.reset_jump_ns = int(reset_jump_ns)
        self._open: CameraSet | None = None
        self.complete = 0
        self.partial = 0

    def add(self, camera: str, stamp_ns: int, msg: Any) -> list[CameraSet]:
        """Add one image; returns the sets this closes (zero, one or two)."""
        if camera not in self.cameras:
            raise ValueError(f"unknown camera {camera!r}; expected one of {self.cameras}")
        out = []
        current = self._open
        if current is not None:
            jumped_back = stamp_ns < current.stamp_ns - self.reset_jump_ns
            outside = stamp_ns > current.stamp_ns + self.window_ns or stamp_ns < current.stamp_ns
            if jumped_back or outside or camera in current.images:
                out.append(self._close())
        if self._open is None:
            self._open = CameraSet(stamp_ns)
        self._open.images[camera] = (stamp_ns, msg)
        if len(self._open.images) == len(self.cameras):
            out.append(self._close())
        return out

    def expire(self, now_ns: int) -> list[CameraSet]:
        """Close the open set once message time `now_ns` is past its window (a live host's timer calls this)."""
        if self._open is not None and now_ns > self._open.stamp_ns + self.window_ns:
            return [self._close()]
        return []

    @property
    def open_stamp_ns(self) -> int | None:
        """Opening stamp of the set being collected, if any."""
        return None if self._open is None else self._open.stamp_ns

    def flush(self) -> list[CameraSet]:
        """Close the open set (end of input)."""
        return [self._close()] if self._open is not None else []

    def _close(self) -> CameraSet:
        done, self._open = self._open, None
        done.missing = tuple(c for c in self.cameras if c not in done.images)
        if done.missing:
            self.partial += 1
        else:
            self.complete += 1
        return done
