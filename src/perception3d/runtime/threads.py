"""The threading policy of a host process: how many threads the numeric libraries' pools may use.

A LiDAR node's numpy work is meant to run on one thread per node; the pools that OpenBLAS, OpenMP (torch's libgomp)
and MKL start by default (one thread per core) only help large matrix products, and on a machine whose cores the
nodes already share their workers spin against each other and against the nodes (measured in
benchmarks/results/threads.md: most of a replay's system time). So every host sets the pools at start from the
`process_threads` parameter, before it loads a model:

- libraries already loaded (numpy's BLAS) are limited through threadpoolctl;
- libraries loaded later (torch, onnxruntime's OpenMP builds) read OMP_NUM_THREADS / OPENBLAS_NUM_THREADS /
  MKL_NUM_THREADS, which are set here (the parameter wins over the environment);
- torch's intra-op pool, when torch is already imported, is set with torch.set_num_threads.

A learned node's own `threads` parameter still sets its inference session (torch intra-op / onnxruntime intra-op;
0 = one per core the process may use, core.models.options.usable_cores): measured, a replay that runs detector2d's
torch model on one thread takes 126 s instead of 96 s.
A process that runs several nodes (replay, bench) applies the largest count they ask for, and the libraries' defaults
when any of them asks for 0.
A node that takes images also decodes each camera firing cycle's JPEGs on a pool of its own (`image_decode_threads`,
nodes.runner): Pillow's decoder runs without the GIL, outside these libraries' pools.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def process_thread_count(node_params: Iterable[Mapping[str, Any]]) -> int:
    """The pool size for a process running nodes with these parameters: the largest `process_threads`, or 0 (the
    libraries' defaults) when any node asks for 0 or there are no nodes."""
    counts = [int(p["process_threads"]) for p in node_params]
    return 0 if not counts or 0 in counts else max(counts)


def apply_thread_policy(count: int) -> dict[str, Any]:
    """Limit the numeric libraries' thread pools of this process to `count` threads (0: leave the defaults).

    Returns what was set ({} for 0): the environment variables and, per already loaded library, its new size.
    """
    if count <= 0:
        return {}
    from threadpoolctl import threadpool_info, threadpool_limits

    for name in THREAD_ENVIRONMENT:
        os.environ[name] = str(count)
    threadpool_limits(limits=count)
    applied: dict[str, Any] = {name: count for name in THREAD_ENVIRONMENT}
    applied.update({f"{pool['internal_api']} ({pool['prefix']})": pool["num_threads"] for pool in threadpool_info()})
    torch = sys.modules.get("torch")  # only when something already imported it; a later import reads the environment
    if torch is not None:
        torch.set_num_threads(count)
        applied["torch intra-op"] = torch.get_num_threads()
    return applied
