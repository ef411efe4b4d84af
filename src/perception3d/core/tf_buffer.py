"""A small time-indexed transform tree (the ROS-free stand-in for a tf2 Buffer).

Edges map child frame -> (parent frame, transform). Static edges (/tf_static) hold for all time; dynamic edges
(/tf) keep a stamped history of `cache_time_ns` and are interpolated between the two neighbouring stamps (linear
translation, slerp rotation: core.geometry.interpolate_transform). Lookups are at the data's own stamp; like tf2
there is no extrapolation beyond the buffered history, except `max_extrapolation_ns` (default 0) at either end.

One bad stamp must not cost the history: a dynamic transform stamped more than `outlier_jump_ns` before the oldest
or after the newest stamp of its edge (a driver's stamp 0, a clock an hour ahead) is refused (TransformError) until
`jump_confirm` consecutive stamps agree on the new time; then a jump forward continues the history and a jump back
(a bag loop) restarts it. Likewise a /tf transform that gives a frame another parent is held back until
`jump_confirm` of them agree with no transform from the old parent in between (one message with swapped or mistyped
frame ids must not cut a frame off the tree); a transform that would move a frame between /tf and /tf_static, or
close a loop, is refused. A new /tf_static transform replaces the old one, as in tf2.
"""
from __future__ import annotations

import bisect

import numpy as np

from ..errors import TransformError
from .geometry import interpolate_transform, invert_transform, matrix_to_quat_xyzw


class _History:
    def __init__(self, parent: str) -> None:
        self.parent = parent
        self.stamps: list[int] = []
        self.transforms: list[tuple[np.ndarray, np.ndarray]] = []  # (T, its rotation's quaternion xyzw) per stamp
        self.held: list[tuple[int, np.ndarray]] = []  # consecutive refused (stamp, T) that agree with each other

    def insert(self, stamp_ns: int, T: np.ndarray, cache_time_ns: int, outlier_jump_ns: int, jump_confirm: int,
               child: str) -> None:
        if self.stamps and not self.stamps[0] - outlier_jump_ns <= stamp_ns <= self.stamps[-1] + outlier_jump_ns:
            if self.held and abs(stamp_ns - self.held[-1][0]) > outlier_jump_ns:
                self.held = []
            self.held.append((stamp_ns, T))
            if len(self.held) < jump_confirm:
                raise TransformError(
                    f"{self.parent} -> {child}: stamp {stamp_ns} ns is more than {outlier_jump_ns / 1e9:g} s outside "
                    f"the history {self.stamps[0]}..{self.stamps[-1]} ns; held back as an outlier (a time jump is "
                    f"accepted once {jump_confirm} consecutive stamps agree)")
            held, self.held = self.held[:-1], []
            if stamp_ns < self.stamps[0]:  # time went backwards (bag loop): start over
                self.stamps, self.transforms = [], []
            for stamp, T_held in held:
                self._add(stamp, T_held, cache_time_ns)
        self.held = []
        self._add(stamp_ns, T, cache_time_ns)

    def _add(self, stamp_ns: int, T: np.ndarray, cache_time_ns: int) -> None:
        if self.stamps and stamp_ns < self.stamps[-1] - cache_time_ns:  # time went backwards (bag loop)
            self.stamps, self.transforms = [], []
        i = bisect.bisect_left(self.stamps, stamp_ns)
        pose = (T, matrix_to_quat_xyzw(T[:3, :3]))  # converted once here, not at every interpolating lookup
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.transforms[i] = pose
        else:
            self.stamps.insert(i, stamp_ns)
            self.transforms.insert(i, pose)
        keep_from = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_time_ns)
        del self.stamps[:keep_from], self.transforms[:keep_from]

    def at(self, stamp_ns: int, child: str, max_extrapolation_ns: int) -> np.ndarray:
        first, last = self.stamps[0], self.stamps[-1]
        if stamp_ns < first - max_extrapolation_ns or stamp_ns > last + max_extrapolation_ns:
            raise TransformError(f"{self.parent} -> {child}: no transform at {stamp_ns} ns; /tf has "
                                 f"{first}..{last} ns (lookups at a stamp outside the received /tf are not "
                                 f"extrapolated)")
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.transforms[i][0]
        if i == 0:
            return self.transforms[0][0]
        if i == len(self.stamps):
            return self.transforms[-1][0]
        s0, s1 = self.stamps[i - 1], self.stamps[i]
        (T0, q0), (T1, q1) = self.transforms[i - 1], self.transforms[i]
        return interpolate_transform(T0, T1, (stamp_ns - s0) / (s1 - s0), q0, q1)


class TfBuffer:
    """Static and dynamic transforms; `lookup(target, source, stamp_ns)` returns T_target_source (4x4)."""

    def __init__(self, cache_time_ns: int = 30_000_000_000, max_extrapolation_ns: int = 0,
                 outlier_jump_ns: int = 10_000_000_000, jump_confirm: int = 3) -> None:
        self.cache_time_ns = int(cache_time_ns)
        self.max_extrapolation_ns = int(max_extrapolation_ns)
        self.outlier_jump_ns = int(outlier_jump_ns)
        self.jump_confirm = int(jump_confirm)
        self._static: dict[str, tuple[str, np.ndarray]] = {}
        self._dynamic: dict[str, _History] = {}
        self._moves: dict[str, tuple[tuple[str, bool], int]] = {}  # child -> ((new parent, static), times asked)

    @property
    def frames(self) -> set[str]:
        """Every frame named by a received transform."""
        out = set(self._static) | set(self._dynamic)
        out |= {p for p, _ in self._static.values()} | {h.parent for h in self._dynamic.values()}
        return out

    def set_transform(self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray,
                      static: bool = False) -> None:
        """Add one transform mapping child coordinates into parent (from /tf_static when static).

        Raises:
            TransformError: T is not a finite 4x4 matrix, parent == child, the transform would close a loop, or it
                is held back as an outlier stamp or a change of parent (module doc).
        """
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise TransformError(f"{parent} -> {child}: transform is not a finite 4x4 matrix")
        if parent == child or child in self._ancestors(parent):
            raise TransformError(f"{parent} -> {child}: would close a loop in the transform tree; refused")
        self._check_move(parent, child, static)
        if static:
            self._dynamic.pop(child, None)
            self._static[child] = (parent, T)
            return
        history = self._dynamic.get(child)
        if history is None or history.parent != parent:
            self._static.pop(child, None)
            history = self._dynamic[child] = _History(parent)
        history.insert(int(stamp_ns), T, self.cache_time_ns, self.outlier_jump_ns, self.jump_confirm, child)

    def _ancestors(self, frame: str) -> set[str]:
        """Frames above `frame` in the tree (its parent, the parent's parent, ...)."""
        out: set[str] = set()
        while True:
            parent = self._static[frame][0] if frame in self._static else (
                self._dynamic[frame].parent if frame in self._dynamic else None)
            if parent is None or parent in out:
                return out
            out.add(parent)
            frame = parent

    def _check_move(self, parent: str, child: str, static: bool) -> None:
        """Raise TransformError for a transform that moves `child` between /tf and /tf_static, or (held back until
        confirmed) changes the parent of a /tf frame."""
        current = ((self._static[child][0], True) if child in self._static else
                   (self._dynamic[child].parent, False) if child in self._dynamic else None)
        if current is None or current == (parent, static):
            self._moves.pop(child, None)
            return
        kind = {True: "/tf_static", False: "/tf"}
        if current[1] != static:
            raise TransformError(f"{parent} -> {child}: {child} is on {kind[current[1]]} (parent {current[0]}); a "
                                 f"transform on {kind[static]} cannot move it; refused")
        if static:
            return
        asked, times = self._moves.get(child, ((parent, static), 0))
        times = times + 1 if asked == (parent, static) else 1
        if times < self.jump_confirm:
            self._moves[child] = ((parent, static), times)
            raise TransformError(f"{parent} -> {child}: {child} has parent {current[0]} on {kind[current[1]]}; a "
                                 f"change to {parent} on {kind[static]} is held back (accepted once "
                                 f"{self.jump_confirm} consecutive transforms agree)")
        del self._moves[child]

    def clear_dynamic(self) -> None:
        """Forget /tf history (static transforms stay), e.g. after a time jump."""
        self._dynamic.clear()

    def _parent(self, frame: str) -> str | None:
        if frame in self._static:
            return self._static[frame][0]
        return self._dynamic[frame].parent if frame in self._dynamic else None

    def _chain(self, frame: str) -> list[str]:
        """frame, its parent, ... up to its root."""
        chain = [frame]
        while (parent := self._parent(chain[-1])) is not None:
            if parent in chain:
                raise TransformError(f"transform loop through frame {parent!r}")
            chain.append(parent)
        return chain

    def _up_to(self, chain: list[str], stamp_ns: int) -> np.ndarray:
        """T_last_first of a chain of frames (each the parent of the one before) at stamp_ns."""
        T = np.eye(4)
        for frame in chain[:-1]:
            if frame in self._static:
                T_parent_frame = self._static[frame][1]
            else:
                T_parent_frame = self._dynamic[frame].at(stamp_ns, frame, self.max_extrapolation_ns)
            T = T_parent_frame @ T
        return T

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        """4x4 T_target_source at stamp_ns, through the two frames' lowest common ancestor (as tf2's BufferCore walks
        the tree): frames joined by /tf_static edges alone answer at any stamp, whatever /tf holds above them.

        Raises:
            TransformError: an unknown frame, frames in separate trees, or a stamp outside the /tf history.
        """
        known = self.frames
        for frame in (target_frame, source_frame):
            if frame not in known:
                raise TransformError(f"frame {frame!r} unknown (looking up {target_frame} <- {source_frame}); "
                                     f"known frames: {sorted(known)}")
        chain_t, chain_s = self._chain(target_frame), self._chain(source_frame)
        if chain_t[-1] != chain_s[-1]:
            raise TransformError(f"{target_frame} (tree {chain_t[-1]}) and {source_frame} (tree {chain_s[-1]}) are "
                                 f"not connected")
        on_target_side = set(chain_t)
        common = next(frame for frame in chain_s if frame in on_target_side)
        T_common_target = self._up_to(chain_t[:chain_t.index(common) + 1], stamp_ns)
        T_common_source = self._up_to(chain_s[:chain_s.index(common) + 1], stamp_ns)
        return invert_transform(T_common_target) @ T_common_source
