"""How a node runs its model (device, precision, threads): the options every learned node builds from its
parameters (nodes.learned), torch-free so that declaring those parameters imports no torch."""
from __future__ import annotations

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
        threads: CPU threads for inference (torch intra-op / onnxruntime intra-op; 0 = the library's default).
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
