"""The learned networks run on whatever device their inputs are on: every tensor a network makes while it runs names
its device or derives from a tensor it has (`new_zeros`, `full_like`, ...). A factory call without a device makes a
CPU tensor, which a CUDA run then mixes with its CUDA tensors: the learned occupancy node stopped so at its first
sweep on a lent GPU. CI has no GPU, so this is checked on CPU, on every factory call made under a network's
`forward` while each learned node runs bench graph's sweeps (and detector2d a six-camera frame), and under the
forward or the loss of a training step of each learned LiDAR model (its batches are made on the CPU and moved)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from perception3d.bench.graph import write_frame_bag
from perception3d.bench.learned import LEARNED_NODES, LIDAR_NODES, node_latency, replay_totals

FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.tensor, torch.as_tensor,
             torch.linspace, torch.eye, torch.rand, torch.randn, torch.randint}
PACKAGE = str(Path(__file__).resolve().parents[1] / "src" / "perception3d")


def _package_frames():
    """This package's frames of the current stack, innermost first."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            yield frame
        frame = frame.f_back


class DevicelessFactories(TorchFunctionMode):
    """Records (function, file:line) of each tensor factory called without `device` under a package function named
    in `under` (a network's forward; a training task's loss, which runs on the trainer's device)."""

    def __init__(self, under: tuple[str, ...] = ("forward",)) -> None:
        super().__init__()
        self.under = under
        self.calls: set[tuple[str, str]] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            frames = list(_package_frames())
            if frames and any(f.f_code.co_name in self.under for f in frames):
                where = f"{Path(frames[0].f_code.co_filename).name}:{frames[0].f_lineno}"
                self.calls.add((func.__name__, where))
        return func(*args, **kwargs)


# two networks, compiled as if they were package code: the check looks at the package's frames only
EXAMPLE = """
import torch

class WithoutDevice(torch.nn.Module):
    def forward(self, x):
        return x + torch.zeros(x.shape)

class OnTheInputsDevice(torch.nn.Module):
    def forward(self, x):
        return x + torch.zeros(x.shape, device=x.device) + x.new_zeros(x.shape) + torch.full_like(x, 2.0)

def outside_forward():
    return torch.zeros(3)
"""


def test_the_check_records_a_factory_without_a_device_under_a_package_forward_only():
    example = {}
    exec(compile(EXAMPLE, f"{PACKAGE}/core/models/example.py", "exec"), example)
    x = torch.ones(2)
    with DevicelessFactories() as mode:
        example["OnTheInputsDevice"]()(x)
        example["outside_forward"]()  # e.g. a buffer made in __init__: Module.to moves it
    assert mode.calls == set()
    with DevicelessFactories() as mode:
        example["WithoutDevice"]()(x)
    assert mode.calls == {("zeros", "example.py:6")}


@pytest.mark.slow
def test_every_learned_node_makes_its_tensors_on_the_device_of_its_inputs(tmp_path):
    bag = tmp_path / "frames"
    write_frame_bag(bag, sweeps=2)
    with DevicelessFactories() as mode:
        for node in LIDAR_NODES:
            totals = replay_totals(node, bag, tmp_path, {"mode": "learned", "backend": "torch", "device": "cpu"})
            assert len(totals) == 2, node  # every sweep processed: none dropped by an error
        definition, make_frame, _ = LEARNED_NODES["detector2d"]
        node_latency(definition, make_frame, {"backend": "torch", "device": "cpu"}, frames=1)
    assert mode.calls == set(), sorted(mode.calls)


@pytest.mark.slow
def test_a_training_step_of_every_learned_lidar_model_makes_its_tensors_on_the_trainers_device(tmp_path):
    from perception3d.core.models.occfusion import OccFusionConfig
    from perception3d.train.data.build import BuildOptions, build_cache
    from perception3d.train.detection3d import train_detection3d
    from perception3d.train.occupancy import OccupancyTask, OccupancyTraining, cache_keyframes
    from perception3d.train.segmentation import SegmentationData, train_segmentation
    from perception3d.train.trainer import TrainConfig, train
    from synth_data import VERSION, tiny_dataroot
    from test_detection3d_learned import TINY as DETECTION3D
    from test_occupancy_learned import TINY as OCCUPANCY
    from test_segmentation_learned import TINY as SEGMENTATION

    cache = tmp_path / "cache"
    build_cache(tiny_dataroot(), VERSION, "all", cache, BuildOptions(past_sweeps=0, boxes2d="good"), progress=False)
    one_step = TrainConfig(epochs=1, batch_size=1, max_steps=1, device="cpu")
    occupancy = OccFusionConfig(**OCCUPANCY)
    with DevicelessFactories(under=("forward", "loss")) as mode:
        assert train_segmentation([cache], tmp_path / "seg.pt", SEGMENTATION, one_step,
                                  data=SegmentationData(points=1500), progress=False).steps == 1
        assert train_detection3d([cache], tmp_path / "det.pt", DETECTION3D, one_step, progress=False).steps == 1
        task = OccupancyTask(cache_keyframes([cache], occupancy, progress=False), occupancy, OccupancyTraining(),
                             caches=[cache])
        train(task, tmp_path / "occ.pt", one_step, progress=False)
    assert (tmp_path / "occ.pt").is_file()
    assert mode.calls == set(), sorted(mode.calls)
