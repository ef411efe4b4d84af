"""The heap policy of a host process: memory a frame frees stays with the process for the next frame (issue 18).

glibc's malloc hands large blocks back to the kernel as soon as they are freed: a block above the mmap threshold
(128 KiB at start, raised to the largest such block freed so far) is unmapped, and the top of the heap is trimmed
once more than twice that threshold lies free there. A LiDAR node's frame allocates and frees tens of MB of
temporaries (the sweep in several frames, its projections into six cameras, the occupancy grid), so the next frame
faulted those pages in again: 170,000-280,000 page faults and 0.6-0.8 s of system time in one replay of the 8 s
scene, and detection3d's p95 rose with them (benchmarks/results/speed_log.md, sixth round). With fixed thresholds,
blocks up to MMAP_THRESHOLD_BYTES come from the heap and its top stays mapped up to TRIM_THRESHOLD_BYTES, so later
frames reuse pages already touched (~34,000 faults, 0.25-0.35 s). The process keeps its peak heap instead of
shrinking between frames (about the same peak on that replay: 155-158 MB before, 158-160 MB after).

Every host sets it at start, before a node allocates: the bag runtime (replay, its workers and its writing process,
demo, bench) and the ROS 2 executables. Other C libraries (musl, macOS) keep their own behaviour.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 256 << 20  # free memory at the heap's top beyond this goes back to the kernel


def keep_freed_memory() -> bool:
    """Set this process's malloc thresholds (module docstring); True where the C library took them (glibc)."""
    try:  # the C library this process already runs on (dlopen(NULL)): no search for it (find_library starts ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, TypeError, AttributeError):  # no mallopt (macOS), no dlopen(NULL) (Windows)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # both calls always: mallopt returns 1 on success, 0 where the library ignores it (musl)
    return all([mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)])
