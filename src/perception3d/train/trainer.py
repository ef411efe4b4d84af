"""The one training loop of every learned model: a `TrainTask` says what its model learns from; `train` does the rest.

What `train` does for every model: seeded initialisation, Adam with a cosine learning rate from `lr` to 0 over all
steps, gradient clipping, AMP on CUDA, data parallelism under torchrun (train.distributed), a tqdm bar with loss and
speed, a JSON-lines log and a PNG of the curves (train.run_log), validation through the task (which scores with the
project's own scorers, eval/), and checkpoints (core.models.checkpoint) at the end of every epoch and every
`checkpoint_every` steps. With `resume`, a run continues from `out` (weights, optimizer, step; an epoch interrupted
midway restarts from its beginning). A run that completes its epochs stores float16 weights and no optimizer; a run
stopped by `max_steps` stays resumable (float32 and optimizer). Only rank 0 logs, validates and writes files.

Samples are augmented from a generator seeded by (seed, epoch, sample index), so a resumed run and a run split over
several processes see the same augmented samples as one uninterrupted process.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.models.checkpoint import load_checkpoint, save_checkpoint
from ..core.models.runner import resolve_device
from ..errors import ConfigError, ModelError
from . import distributed
from .run_log import RunLog


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters, the same for every model.

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per optimizer step over all processes (each of N torchrun processes takes 1/N).
        lr: initial Adam learning rate (cosine decay to 0 over epochs x steps per epoch).
        weight_decay: Adam L2 weight decay.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N' (under torchrun on GPUs each process takes cuda:LOCAL_RANK).
        amp: mixed precision (float16 autocast + gradient scaling); CUDA only.
        checkpoint_every: optimizer steps between mid-epoch checkpoints (0: only at epoch ends).
        validate_every: epochs between validations (the last epoch is always validated when the task validates).
        seed: seed of initialisation, sample order and augmentation.
        num_workers: DataLoader worker processes (0: load in the training process).
        max_steps: stop after this many optimizer steps in all (0: no limit); the checkpoint stays resumable.
        grad_clip: largest gradient norm.
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    amp: bool = False
    checkpoint_every: int = 200
    validate_every: int = 1
    seed: int = 0
    num_workers: int = 0
    max_steps: int = 0
    grad_clip: float = 10.0


class SeededSamples(torch.utils.data.Dataset):
    """Base of the training sample sets whose augmentation is random: sample i of epoch e draws from
    `rng(i)`, a generator seeded by (seed, e, i) (module docstring); `train` sets `seed` and calls `set_epoch`."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])


class TrainTask:
    """What one model brings to the trainer (subclassed per model, e.g. train.detector2d.Detector2DTask)."""

    model_name: str  # core.models.registry name
    headline: str  # the validation metric printed and drawn first

    def build(self) -> nn.Module:
        """A freshly initialised network of the requested architecture."""
        raise NotImplementedError

    def initialised_from(self, path: Path) -> nn.Module:
        """The requested architecture with the weights of checkpoint `path` (fine-tuning); ModelError if unfit."""
        raise NotImplementedError

    def training_samples(self) -> torch.utils.data.Dataset:
        """Training samples as dicts of tensors; `set_epoch(e)` and `seed` fix each sample's augmentation."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of a batch and its named parts (floats, for the log)."""
        raise NotImplementedError

    def validate(self, model: nn.Module, device: torch.device, progress: bool) -> dict | None:
        """Validation metrics (JSON-able, `headline` among them) with the project's scorers; None: no val set."""
        raise NotImplementedError

    def data_summary(self) -> dict:
        """What the model was trained on (JSON-able), for the checkpoint's record."""
        raise NotImplementedError


def same_architecture(path: Path, model_name: str, model_config) -> nn.Module:
    """The network of checkpoint `path`, in train mode, for a task whose init must be a `model_name` model of exactly
    `model_config` (ModelError naming the difference otherwise)."""
    source, _ = load_checkpoint(path, model_config.class_names, expected_model=model_name)
    if source.config != model_config:
        raise ModelError(str(path), f"init checkpoint has architecture {source.config.to_dict()}",
                         f"{model_config.to_dict()}")
    return source.train()


@dataclass
class TrainResult:
    """What training produced.

    Attributes:
        checkpoint: path of the written checkpoint.
        steps: optimizer steps done in total.
        metrics: the last validation's metrics (empty without validation).
        history: one dict per validation: epoch, step, loss, and the metrics.
    """

    checkpoint: Path
    steps: int
    metrics: dict
    history: list[dict]


def lr_factor(step: int, total: int) -> float:
    """Cosine decay from 1 at step 0 to 0 at step `total`."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _hardware(device: torch.device, world_size: int) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": str(device), "device_name": name, "processes": world_size, "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads()}


def _starting_point(task: TrainTask, out: Path, resume: bool, init: Path | None) -> tuple[nn.Module, dict]:
    requested = task.build()
    if resume and out.exists():
        model, state = load_checkpoint(out, requested.config.class_names, expected_model=task.model_name)
        if model.config != requested.config:
            raise ModelError(str(out), f"resume checkpoint has architecture {model.config.to_dict()}",
                             f"{requested.config.to_dict()} as requested")
        return model, state
    if init is not None:
        return task.initialised_from(init), {"init": str(init)}
    return requested, {}


def train(task: TrainTask, out: Path, config: TrainConfig, resume: bool = False, init: Path | None = None,
          progress: bool = True, command: str = "") -> TrainResult:
    """Train task's model into checkpoint `out`; see the module docstring. command: recorded in the checkpoint."""
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        raise ConfigError(f"--amp needs a CUDA device (the run's device is {device})")
    processes = distributed.start_processes(device)
    try:
        return _train(task, Path(out), config, resume, init, progress and processes.is_main, command, processes)
    finally:
        distributed.stop_processes(processes)


def _train(task: TrainTask, out: Path, config: TrainConfig, resume: bool, init: Path | None, progress: bool,
           command: str, processes: distributed.Processes) -> TrainResult:
    device = processes.device
    if config.batch_size % processes.world_size:
        raise ConfigError(f"batch size {config.batch_size} does not split over {processes.world_size} processes")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    model, state = _starting_point(task, out, resume, init)
    model = distributed.global_batch_norm(model, processes).to(device).train()
    trained = distributed.wrap(model, processes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp)
    samples = task.training_samples()
    samples.seed = config.seed
    sampler = torch.utils.data.DistributedSampler(samples, processes.world_size, processes.rank, shuffle=True,
                                                  seed=config.seed)
    loader = torch.utils.data.DataLoader(samples, batch_size=config.batch_size // processes.world_size,
                                         sampler=sampler, num_workers=config.num_workers,
                                         pin_memory=device.type == "cuda")
    total_steps = config.epochs * len(loader)
    step, history = state.get("step", 0), list(state.get("history", []))
    start_epoch, started_from = state.get("epoch", 0), state.get("init")
    log = RunLog(out, task.headline, append=bool(resume and state)) if processes.is_main else None
    record = {"command": command, "data": task.data_summary(), "hardware": _hardware(device, processes.world_size),
              "train_config": asdict(config)}
    started = time.monotonic()

    def checkpoint(epoch_done: int, finished: bool) -> None:
        if not processes.is_main:
            return
        train_state = {"epoch": epoch_done, "step": step, "history": history, "train_config": asdict(config),
                       "init": started_from}
        if not finished:
            train_state["optimizer"] = optimizer.state_dict()
        record["metrics"] = history[-1] if history else {}
        record["wall_s"] = round(time.monotonic() - started, 1)
        save_checkpoint(out, model, train_state, half=finished, record=record)

    stopped = False
    for epoch in range(start_epoch, config.epochs):
        model.train()
        sampler.set_epoch(epoch)
        samples.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step", disable=not progress)
        losses = []
        for batch in bar:
            tick = time.monotonic()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            lr = config.lr * lr_factor(step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.float16, enabled=config.amp):
                loss, parts = task.loss(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            losses.append(float(loss.detach()))
            if log is not None:
                samples_per_s = config.batch_size / max(time.monotonic() - tick, 1e-9)
                log.step(epoch + 1, step, losses[-1], parts, lr, samples_per_s)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", samples_s=f"{samples_per_s:.1f}")
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint(epoch, finished=False)
            if config.max_steps and step >= config.max_steps:
                stopped = True
                break
        last = epoch + 1 == config.epochs
        if not stopped and (last or (epoch + 1) % max(config.validate_every, 1) == 0):
            if processes.is_main:
                metrics = task.validate(model, device, progress)
                if metrics is not None:
                    history.append({"epoch": epoch + 1, "step": step,
                                    "loss": float(np.mean(losses)) if losses else float("nan"), **metrics})
                    log.validation(history[-1])
            distributed.barrier(processes)
        if stopped:
            checkpoint(epoch, finished=False)
            break
        checkpoint(epoch + 1, finished=last)
    if log is not None:
        log.close()
    return TrainResult(out, step, history[-1] if history else {}, history)
