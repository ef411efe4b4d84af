"""How a node runs its model (device, precision, threads): the options every learned node builds from its
parameters (nodes.learned), torch-free so that declaring those parameters imports no torch."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import ConfigError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class RunnerOptions:
    """How a node runs its model.

    Attributes:
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        precision: 'fp32', or 'fp16' (torch backend on CUDA).
        threads: CPU threads for inference (torch intra-op / onnxruntime intra-op; 0 = one per core this process
            may use: `usable_cores`).
    """

    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.threads < 0:
            raise ConfigError(f"threads {self.threads}: expected 0 (default) or more")


DEFAULT_OPTIONS = RunnerOptions()
CPU_OPTIONS = RunnerOptions("cpu")


def usable_cores() -> list[int]:
    """The cores this process may run on (its CPU affinity: taskset, a container's cpuset, a replay worker's share),
    or all of them where the system does not tell."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))
