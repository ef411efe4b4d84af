"""The host's threading policy (runtime/threads.py): pools limited at start, libraries loaded later included."""
import json
import os
import subprocess
import sys
from pathlib import Path

from perception3d.runtime.threads import process_thread_count

PROBE = """
import json, os, numpy
if {one_core}:  # as taskset, a container's cpuset or a replay worker's share would
    os.sched_setaffinity(0, [min(os.sched_getaffinity(0))])
from threadpoolctl import threadpool_info
from perception3d.runtime.threads import apply_thread_policy
applied = apply_thread_policy({count})
import torch  # loaded after the policy: reads the environment
torch_threads = torch.get_num_threads()
pools = [p["num_threads"] for p in threadpool_info()]
from perception3d.core.models.runner import TorchRunner
from perception3d.core.models.options import RunnerOptions
TorchRunner(torch.nn.Linear(1, 1), RunnerOptions("cpu"))  # a learned node with threads: 0
from perception3d.core.models.runner import onnx_session
path = "{tmp}/linear.onnx"
torch.onnx.export(torch.nn.Linear(1, 1), (torch.zeros(1, 1),), path, dynamo=False)
session = onnx_session(path, RunnerOptions("cpu"))
print(json.dumps({{"applied": applied, "pools": pools, "torch": torch_threads, "inference": torch.get_num_threads(),
                   "onnx": session.get_session_options().intra_op_num_threads}}))
"""


def probe(count: int, tmp: Path, one_core: bool = False) -> dict:
    env = {"PATH": "/usr/bin:/bin"}  # no OMP_NUM_THREADS etc. from the caller
    code = PROBE.format(count=count, one_core=one_core, tmp=tmp)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_thread_limits_numpy_blas_and_a_torch_imported_later(tmp_path):
    result = probe(1, tmp_path)
    assert result["pools"] and set(result["pools"]) == {1}
    assert result["torch"] == 1
    assert result["applied"]["OMP_NUM_THREADS"] == 1


def test_a_learned_node_with_threads_0_runs_inference_on_every_core_whatever_the_policy(tmp_path):
    result = probe(1, tmp_path)
    assert result["inference"] == len(os.sched_getaffinity(0))
    assert result["onnx"] == (0 if len(os.sched_getaffinity(0)) == os.cpu_count() else len(os.sched_getaffinity(0)))


def test_threads_0_counts_only_the_cores_the_process_may_use(tmp_path):
    result = probe(1, tmp_path, one_core=True)
    assert result["inference"] == 1 and result["onnx"] == (1 if os.cpu_count() > 1 else 0)


def test_zero_leaves_the_libraries_defaults(tmp_path):
    cores = len(os.sched_getaffinity(0))
    result = probe(0, tmp_path)
    assert result["applied"] == {}
    assert result["torch"] == cores  # torch's default: one thread per core


def test_a_process_with_several_nodes_takes_the_largest_count_and_zero_wins():
    assert process_thread_count([{"process_threads": 1}, {"process_threads": 3}]) == 3
    assert process_thread_count([{"process_threads": 2}, {"process_threads": 0}]) == 0
    assert process_thread_count([]) == 0
