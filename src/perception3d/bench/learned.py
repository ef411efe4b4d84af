"""Latency of every learned node, per backend: torch CPU, onnxruntime CPU, and torch CUDA (fp32 and fp16) when a GPU
is present.

- detector2d: through the node's `process` (six 1600x900 images a frame, the shipped checkpoint; decoding excluded,
  pre + infer + post included), p50 / p95 over FRAMES frames after warm-up.
- The LiDAR nodes with a learned mode (LIDAR_NODES): the bag of bench.graph (40 nuScenes-sized sweeps) replayed
  through the node alone in geometric mode and per learned backend, the variants in turn for ROUNDS rounds (a load
  that drifts during the run reaches every variant alike); p50 / p95 over all rounds' sweeps of the node's total
  (decoding, synchronization and output messages included, as bench graph measures) and the ratio of learned to
  geometric (target: at most 2).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..core.camera import CameraModel
from ..core.models.checkpoint import load_checkpoint
from ..core.models.export import export_detection3d, export_onnx, export_segmentation
from ..core.models.occfusion_export import export_occupancy
from ..core.models.shipped import SHIPPED_CHECKPOINT, SHIPPED_DETECTION3D, SHIPPED_OCCUPANCY, SHIPPED_SEGMENTATION
from ..nodes.base import CameraInput, Frame, NodeDefinition, StageTimer
from ..nodes.detector2d import Detector2DNode
from ..nodes.params import load_parameters, parameter_file
from ..runtime.bag import replay
from ..runtime.graph import FULL_GRAPH
from .common import format_table, write_results
from .graph import write_frame_bag

FRAMES = 20
ROUNDS = 3  # replays of the frames bag per LiDAR node variant, interleaved with the other variants'
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
WIDTH, HEIGHT = 1600, 900
K = np.array([[1266.0, 0.0, 816.0], [0.0, 1266.0, 491.0], [0.0, 0.0, 1.0]])


def _camera_frame(stamp_ns: int) -> Frame:
    """Six 1600x900 camera images with their CameraInfo (random pixels: latency does not depend on content)."""
    rng = np.random.default_rng(stamp_ns)
    cameras = {name: CameraInput(name, stamp_ns, i, name, camera=CameraModel(K, WIDTH, HEIGHT, frame_id=name),
                                 image=rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
               for i, name in enumerate(CAMERAS)}
    return Frame(stamp_ns, None, cameras, {})


def _detector2d_onnx(directory: Path) -> Path:
    return export_onnx(load_checkpoint(SHIPPED_CHECKPOINT)[0], directory / "detector2d.onnx")


# node -> (definition, frame builder, writer of its shipped model as ONNX)
LEARNED_NODES: dict[str, tuple[type[NodeDefinition], Callable[[int], Frame], Callable[[Path], Path]]] = {
    "detector2d": (Detector2DNode, _camera_frame, _detector2d_onnx),
}


def _segmentation_onnx(directory: Path) -> Path:
    return export_segmentation(load_checkpoint(SHIPPED_SEGMENTATION, expected_model="segmentation")[0],
                               directory / "segmentation.onnx")


def _occupancy_onnx(directory: Path) -> Path:
    return export_occupancy(SHIPPED_OCCUPANCY, directory / "occupancy.onnx")


def _detection3d_onnx(directory: Path) -> Path:
    return export_detection3d(load_checkpoint(SHIPPED_DETECTION3D, expected_model="detection3d")[0],
                              directory / "detection3d.onnx")


# LiDAR node with a learned mode -> writer of its shipped model as ONNX
LIDAR_NODES: dict[str, Callable[[Path], Path]] = {
    "segmentation": _segmentation_onnx,
    "occupancy": _occupancy_onnx,
    "detection3d": _detection3d_onnx,
}


def replay_totals(node: str, frames_bag: Path, work: Path, overrides: dict) -> list[float]:
    """`node`'s total ms per sweep when the frames bag is replayed through it alone with parameters `overrides` (the
    node's section of a parameter file)."""
    config = work / f"{node}_{len(list(work.glob('*.yaml')))}.yaml"
    config.write_text(parameter_file({node: overrides}))
    summary = replay(frames_bag, work / config.stem, FULL_GRAPH.select((node,)), config=config, progress=False)
    (runner,) = summary.runners
    return list(runner.stats.timings_ms["total"])


def node_latency(definition: type[NodeDefinition], make_frame: Callable[[int], Frame], overrides: dict,
                 frames: int = FRAMES) -> dict[str, float]:
    """p50 / p95 / max seconds of `process` per frame for a node built with default parameters plus overrides."""
    params = load_parameters(None, {definition.name: definition.parameters})[definition.name]
    node = definition({**params, "camera_names": list(CAMERAS), **overrides})
    inputs = [make_frame(1_000 + k) for k in range(frames)]
    node.process(inputs[0], None, StageTimer())  # warm-up beyond the node's own
    samples = []
    for frame in inputs:
        start = time.perf_counter()
        node.process(frame, None, StageTimer())
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return {"p50_s": float(np.percentile(samples, 50)), "p95_s": float(np.percentile(samples, 95)),
            "max_s": float(max(samples)), "frames": frames}


def run(out_dir: Path) -> Path:
    load_before = os.getloadavg()[0]
    rows, data = [], {"torch_threads": torch.get_num_threads(), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (definition, make_frame, write_onnx) in LEARNED_NODES.items():
            variants = {"torch CPU fp32": {"backend": "torch", "device": "cpu"},
                        "onnxruntime CPU": {"backend": "onnx", "device": "cpu",
                                            "model_path": str(write_onnx(Path(tmp)))}}
            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name()
                variants[f"torch CUDA fp32 ({gpu})"] = {"backend": "torch", "device": "cuda"}
                variants[f"torch CUDA fp16 ({gpu})"] = {"backend": "torch", "device": "cuda", "precision": "fp16"}
            for variant, overrides in variants.items():
                stats = node_latency(definition, make_frame, overrides)
                data["rows"][f"{name} {variant}"] = stats
                rows.append([name, variant, f"{stats['p50_s'] * 1e3:.1f} ms", f"{stats['p95_s'] * 1e3:.1f} ms",
                             f"{1.0 / stats['p50_s']:.1f} Hz"])
        frames_bag = Path(tmp) / "frames"
        write_frame_bag(frames_bag)
        for name, write_onnx in LIDAR_NODES.items():
            onnx_file = str(write_onnx(Path(tmp)))
            variants = {"geometric": {"mode": "geometric"},
                        "learned, torch CPU fp32, 1 thread": {"mode": "learned", "backend": "torch", "device": "cpu",
                                                              "threads": 1},
                        "learned, onnxruntime CPU, 1 thread": {"mode": "learned", "backend": "onnx", "device": "cpu",
                                                               "model_path": onnx_file, "threads": 1},
                        "learned, onnxruntime CPU, default threads": {"mode": "learned", "backend": "onnx",
                                                                      "device": "cpu", "model_path": onnx_file}}
            if torch.cuda.is_available():
                variants["learned, torch CUDA fp32"] = {"mode": "learned", "backend": "torch", "device": "cuda"}
                variants["learned, torch CUDA fp16"] = {"mode": "learned", "backend": "torch", "device": "cuda",
                                                        "precision": "fp16"}
            totals: dict[str, list[float]] = {variant: [] for variant in variants}
            for _ in range(ROUNDS):
                for variant, overrides in variants.items():
                    totals[variant] += replay_totals(name, frames_bag, Path(tmp), overrides)
            geometric_p95 = float(np.percentile(totals["geometric"], 95))
            for variant, values in totals.items():
                p50, p95 = np.percentile(values, [50, 95])
                stats = {"p50_ms": float(p50), "p95_ms": float(p95), "frames": len(values),
                         "p95_vs_geometric": float(p95) / geometric_p95}
                data["rows"][f"{name} {variant}"] = stats
                rows.append([name, variant, f"{stats['p50_ms']:.1f} ms", f"{stats['p95_ms']:.1f} ms",
                             f"{1e3 / stats['p50_ms']:.1f} Hz ({stats['p95_vs_geometric']:.2f}x geometric p95)"])
    load_after = os.getloadavg()[0]
    data["load_average_1min"] = [load_before, load_after]
    table = format_table(["node", "backend", "p50", "p95", "rate at p50"], rows)
    notes = (f"detector2d: through the node's `process` (pre + infer + post), {FRAMES} frames after warm-up, default "
             "parameters (shipped checkpoint; the ONNX row runs its export), six 1600x900 RGB images per frame, one "
             "batch. LiDAR nodes: bench graph's 40 nuScenes-sized sweeps (34,688 points) replayed through the node "
             f"alone (decoding, synchronization and messages included), geometric and learned in turn for {ROUNDS} "
             f"rounds ({ROUNDS * 40} sweeps per row), the "
             "shipped checkpoint (the ONNX rows run its export); the ratio compares p95s. '1 thread' sets the node's "
             "`threads` parameter: a LiDAR node shares the cores with the other nodes, and a library's default pool "
             "(one thread per core) spins against them. "
             f"torch with {data['torch_threads']} intra-op threads, onnxruntime with its default. 1-minute "
             f"load average {load_before:.1f} before and {load_after:.1f} after, on {os.cpu_count()} cores: on a "
             "shared machine these are upper bounds. No GPU row means no GPU was present.")
    return write_results(out_dir, "learned", "Learned nodes, latency per frame (perception3d bench learned)", table,
                         data, notes)
