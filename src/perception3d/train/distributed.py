"""Data-parallel training under `torchrun`: process group, device per rank, and the pieces that make N processes on
N shares of a batch take the same step as one process on the whole batch.

`torchrun --nproc_per_node N -m perception3d.cli train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; without them the
trainer runs as one process (world size 1) and every function here is the identity. NCCL is used on CUDA, gloo on
CPU. Equal steps need three things besides DistributedDataParallel's gradient averaging:
- the same samples: every process draws the global order from one seeded sampler and takes every N-th index;
- loss normalisers (e.g. the number of positive heatmap cells) summed over all processes (`mean_over_ranks`), not
  counted per process;
- batch-norm statistics over the global batch: torch's SyncBatchNorm on CUDA, `GlobalBatchNorm` on CPU (torch's
  SyncBatchNorm refuses CPU tensors). Both keep BatchNorm's state_dict keys, so checkpoints are unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a (possibly one-process) training run.

    Attributes:
        rank: index of this process, 0..world_size-1; rank 0 logs, validates and writes checkpoints.
        world_size: number of processes.
        device: this process's torch device (cuda:LOCAL_RANK under torchrun on GPUs).
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start_processes(device: torch.device) -> Processes:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU), else a one-process run."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes(0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world_size, device)


def stop_processes(processes: Processes) -> None:
    """Leave the process group (after the last collective call)."""
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(processes: Processes) -> None:
    """Wait until every process gets here (e.g. while rank 0 validates)."""
    if processes.distributed:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over all processes; the tensor itself in a one-process run.

    A loss `sum_over_my_samples / mean_over_ranks(my_count)`, averaged over processes by DDP, equals the one-process
    loss `sum_over_all_samples / count_over_all_samples`.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the gradient of a sum over processes is the sum of the gradients."""

    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        total = value.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are the mean and variance over every process's batch (CPU, gloo).

    Per channel, each process contributes its count, sum and sum of squares; one differentiable all-reduce adds
    them, so the forward pass and the gradients are those of one BatchNorm2d over the global batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        moments = torch.cat([count, x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))])
        moments = _SumOverRanks.apply(moments)
        n = moments[0]
        mean = moments[1:1 + x.shape[1]] / n
        var = moments[1 + x.shape[1]:] / n - mean * mean  # biased, as BatchNorm normalises with
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var.detach() * n / (n - 1))
        shape = (1, -1, 1, 1)
        scale = self.weight.view(shape) * torch.rsqrt(var.view(shape) + self.eps)
        return (x - mean.view(shape)) * scale + self.bias.view(shape)


def global_batch_norm(model: nn.Module, processes: Processes) -> nn.Module:
    """The model with every BatchNorm2d computing statistics over the global batch (a no-op for one process)."""
    if not processes.distributed:
        return model
    if processes.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats).to(child.weight.device)
            replacement.load_state_dict(child.state_dict())
            setattr(model, name, replacement)
        else:
            global_batch_norm(child, processes)
    return model


def wrap(model: nn.Module, processes: Processes) -> nn.Module:
    """DistributedDataParallel around the model in a multi-process run; the model itself otherwise."""
    if not processes.distributed:
        return model
    device_ids = [processes.device.index] if processes.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
