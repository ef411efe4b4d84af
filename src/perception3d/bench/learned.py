"""Latency of every learned node through the node itself (`process` on nuScenes-sized frames: decoding excluded,
pre + infer + post included), per backend: torch CPU, onnxruntime CPU, and torch CUDA (fp32 and fp16) when a GPU is
present. p50 / p95 over FRAMES frames after warm-up. The learned nodes today: detector2d (six 1600x900 images a
frame, the shipped checkpoint) and occupancy (bench.algo's synthetic sweep of 34,688 rays with the 2D boxes of six
cameras, the shipped checkpoint; its geometric mode is timed in the same run, on the same frames, beside it)."""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..core.camera import CameraModel
from ..core.geometry import invert_transform
from ..core.models.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from ..core.models.export import export_onnx
from ..core.models.occfusion_export import export_occupancy
from ..msgs.pointcloud import NUSCENES_LIDAR_DTYPE
from ..nodes.base import CameraInput, Frame, LidarInput, NodeDefinition, StageTimer, TransformLookup
from ..nodes.detector2d import Detector2DNode
from ..nodes.occupancy import SHIPPED_OCCUPANCY, OccupancyNode
from ..nodes.params import load_parameters
from .algo import load_rig, synthetic_frame
from .common import format_table, write_results

FRAMES = 20
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


def _lidar_frame(stamp_ns: int) -> Frame:
    """bench.algo's synthetic sweep (LIDAR_TOP frame) with each camera's CameraInfo and perfect 2D boxes."""
    sweep = synthetic_frame(seed=stamp_ns % 7)
    cloud = np.zeros(len(sweep.points), dtype=NUSCENES_LIDAR_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = sweep.points.T
    cameras = {view.camera.frame_id: CameraInput(view.camera.frame_id, stamp_ns, 0, view.camera.frame_id,
                                                 camera=view.camera, detections=view.detections)
               for view in sweep.views}
    return Frame(stamp_ns, LidarInput(stamp_ns, "LIDAR_TOP", cloud, None), cameras, {})


class RigTransforms:
    """The nuScenes rig's static transforms (base_link, LIDAR_TOP, cameras), with map = base_link at every stamp."""

    def __init__(self) -> None:
        rig = load_rig()
        self.T_base = {"base_link": np.eye(4), "map": np.eye(4), "LIDAR_TOP": rig.T_base_lidar,
                       **{name: T for name, (_, T) in rig.cameras.items()}}

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        return invert_transform(self.T_base[target_frame]) @ self.T_base[source_frame]


def _occupancy_onnx(directory: Path) -> Path:
    return export_occupancy(SHIPPED_OCCUPANCY, directory / "occupancy.onnx")


# node -> (definition, frame builder, writer of its shipped model as ONNX, transforms or None)
LEARNED_NODES: dict[str, tuple[type[NodeDefinition], Callable[[int], Frame], Callable[[Path], Path],
                               Callable[[], TransformLookup] | None]] = {
    "detector2d": (Detector2DNode, _camera_frame, _detector2d_onnx, None),
    "occupancy": (OccupancyNode, _lidar_frame, _occupancy_onnx, RigTransforms),
}


def node_latency(definition: type[NodeDefinition], make_frame: Callable[[int], Frame], overrides: dict,
                 frames: int = FRAMES, tf: TransformLookup | None = None) -> dict[str, float]:
    """p50 / p95 / max seconds of `process` per frame for a node built with default parameters plus overrides."""
    params = load_parameters(None, {definition.name: definition.parameters})[definition.name]
    node = definition({**params, "camera_names": list(CAMERAS), **overrides})
    inputs = [make_frame(1_000 + k) for k in range(frames)]
    node.process(inputs[0], tf, StageTimer())  # warm-up beyond the node's own
    samples = []
    for frame in inputs:
        start = time.perf_counter()
        node.process(frame, tf, StageTimer())
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return {"p50_s": float(np.percentile(samples, 50)), "p95_s": float(np.percentile(samples, 95)),
            "max_s": float(max(samples)), "frames": frames}


def run(out_dir: Path) -> Path:
    load_before = os.getloadavg()[0]
    rows, data = [], {"torch_threads": torch.get_num_threads(), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (definition, make_frame, write_onnx, transforms) in LEARNED_NODES.items():
            learned = {"mode": "learned"} if name != "detector2d" else {}
            variants = {"torch CPU fp32": {"backend": "torch", "device": "cpu", **learned},
                        "onnxruntime CPU": {"backend": "onnx", "device": "cpu",
                                            "model_path": str(write_onnx(Path(tmp))), **learned}}
            if learned:
                variants["geometric (same frames)"] = {"mode": "geometric"}
            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name()
                variants[f"torch CUDA fp32 ({gpu})"] = {"backend": "torch", "device": "cuda", **learned}
                variants[f"torch CUDA fp16 ({gpu})"] = {"backend": "torch", "device": "cuda", "precision": "fp16",
                                                        **learned}
            for variant, overrides in variants.items():
                stats = node_latency(definition, make_frame, overrides, tf=transforms() if transforms else None)
                data["rows"][f"{name} {variant}"] = stats
                rows.append([name, variant, f"{stats['p50_s'] * 1e3:.1f} ms", f"{stats['p95_s'] * 1e3:.1f} ms",
                             f"{1.0 / stats['p50_s']:.1f} Hz"])
    load_after = os.getloadavg()[0]
    data["load_average_1min"] = [load_before, load_after]
    table = format_table(["node", "backend", "p50", "p95", "rate at p50"], rows)
    notes = (f"Through the node's `process` (pre + infer + post), {FRAMES} frames after warm-up, default parameters "
             "(shipped checkpoint; the ONNX row runs its export). detector2d: six 1600x900 RGB images per frame, one "
             "batch. occupancy: bench.algo's synthetic sweep (34,688 rays) and six cameras' 2D boxes; its geometric "
             f"mode runs on the same frames in the same run. torch with {data['torch_threads']} intra-op threads, "
             f"onnxruntime with its default. 1-minute load average {load_before:.1f} before and {load_after:.1f} "
             f"after, on {os.cpu_count()} cores: on a shared machine these are upper bounds. No GPU row means no GPU "
             "was present.")
    return write_results(out_dir, "learned", "Learned nodes, latency per frame (perception3d bench learned)", table,
                         data, notes)
