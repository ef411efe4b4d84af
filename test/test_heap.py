"""The host's heap policy (runtime/heap.py): a frame's freed temporaries stay mapped for the next frame."""
import platform
import subprocess
import sys

import pytest

from perception3d.runtime.bag import NodeSet
from perception3d.runtime.graph import FULL_GRAPH

# Frames of 10 blocks of 4 MiB alive at once, then all freed; the minor page faults of 5 frames after 3 warm-up
# frames (in a process of its own: the policy is process-wide).
PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "policy":
    from perception3d.runtime.heap import keep_freed_memory
    assert keep_freed_memory()
def frame():
    blocks = [np.ones(1 << 19) for _ in range(10)]
    del blocks
for _ in range(3):
    frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    frame()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the policy sets glibc's malloc")


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc_only
def test_frames_reuse_the_pages_earlier_frames_freed():
    pages_per_frame = 10 * (4 << 20) // 4096
    assert page_faults("default") > pages_per_frame  # glibc trims the freed heap top: frames fault it in again
    assert page_faults("policy") < pages_per_frame // 10


def test_a_replay_host_sets_the_policy_when_it_builds_its_nodes(monkeypatch):
    calls = []
    monkeypatch.setattr("perception3d.runtime.bag.keep_freed_memory", lambda: calls.append("heap") or True)
    NodeSet.build(FULL_GRAPH.select(["occupancy"]), None, None)
    assert calls == ["heap"]
