"""The host's threading policy (runtime/threads.py): pools limited at start, libraries loaded later included."""
import json
import os
import subprocess
import sys

from perception3d.runtime.threads import process_thread_count

PROBE = """
import json, numpy
from threadpoolctl import threadpool_info
from perception3d.runtime.threads import apply_thread_policy
applied = apply_thread_policy({count})
import torch  # loaded after the policy: reads the environment
torch_threads = torch.get_num_threads()
pools = [p["num_threads"] for p in threadpool_info()]
from perception3d.core.models.runner import TorchRunner
from perception3d.core.models.options import RunnerOptions
TorchRunner(torch.nn.Linear(1, 1), RunnerOptions("cpu"))  # a learned node with threads: 0
print(json.dumps({{"applied": applied, "pools": pools,
                   "torch": torch_threads, "inference": torch.get_num_threads()}}))
"""


def probe(count: int) -> dict:
    env = {"PATH": "/usr/bin:/bin"}  # no OMP_NUM_THREADS etc. from the caller
    out = subprocess.run([sys.executable, "-c", PROBE.format(count=count)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_thread_limits_numpy_blas_and_a_torch_imported_later():
    result = probe(1)
    assert result["pools"] and set(result["pools"]) == {1}
    assert result["torch"] == 1
    assert result["applied"]["OMP_NUM_THREADS"] == 1


def test_a_learned_node_with_threads_0_runs_inference_on_every_core_whatever_the_policy():
    assert probe(1)["inference"] == os.cpu_count()


def test_zero_leaves_the_libraries_defaults():
    cores = len(os.sched_getaffinity(0))
    result = probe(0)
    assert result["applied"] == {}
    assert result["torch"] == cores  # torch's default: one thread per core


def test_a_process_with_several_nodes_takes_the_largest_count_and_zero_wins():
    assert process_thread_count([{"process_threads": 1}, {"process_threads": 3}]) == 3
    assert process_thread_count([{"process_threads": 2}, {"process_threads": 0}]) == 0
    assert process_thread_count([]) == 0
