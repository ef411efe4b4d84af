"""2D detector latency for one six-camera frame (1600x900 RGB each) at the default 704x416 input: letterboxing,
network forward (torch CPU, onnxruntime CPU, torch CUDA when present), decoding, and end-to-end `detect`; and the
detector2d node's resident memory over a run of frames (it must not grow)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..core.camera import CameraModel
from ..core.models.centernet import CenterNet
from ..core.models.checkpoint import load_checkpoint
from ..core.models.decode import DecodeParams, decode_detections
from ..core.models.export import export_onnx
from ..core.models.inference import TorchDetector2D
from ..core.models.onnx_backend import OnnxDetector2D
from ..core.models.preprocess import letterbox_batch
from ..core.models.shipped import SHIPPED_CHECKPOINT
from ..core.tf_buffer import TfBuffer
from ..msgs.image import compressed_image_msg, encode_jpeg
from ..nodes.base import CameraInput, Frame, StageTimer
from ..nodes.detector2d import Detector2DNode
from ..nodes.params import load_parameters
from ..nodes.runner import NodeRunner
from .common import format_table, resident_memory_mib, time_call, write_results

CAMERA_COUNT, WIDTH, HEIGHT = 6, 1600, 900


REPEAT = 9
MEMORY_FRAMES = 100  # node frames between the two resident-memory readings


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def run(out_dir: Path) -> Path:
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    config = load_checkpoint(SHIPPED_CHECKPOINT)[0].config  # the shipped architecture, random weights
    model = CenterNet(config).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(CAMERA_COUNT)]
    batch, scales = letterbox_batch(images, config.input_width, config.input_height)
    sizes = [(WIDTH, HEIGHT)] * CAMERA_COUNT
    rows, data = [], {"config": config.to_dict(), "torch_threads": torch.get_num_threads()}

    def record(name: str, stats: dict[str, float]) -> None:
        rows.append([name, _ms(stats["median_s"]), _ms(stats["min_s"]), _ms(stats["p95_s"]),
                     _ms(stats["median_s"] / CAMERA_COUNT)])
        data[name] = stats

    jpegs = camera_jpegs(rng)
    for setting in (1, 0):
        assemble, threads = frame_assembly(jpegs, setting)
        record(f"JPEG decoding into the node's frame, image_decode_threads {setting} ({threads} "
               f"thread{'s' if threads > 1 else ''})", time_call(assemble, repeat=REPEAT))
    record("letterbox 6 x 1600x900 -> (6, 3, 416, 704)",
           time_call(lambda: letterbox_batch(images, config.input_width, config.input_height), repeat=REPEAT))
    torch_cpu = TorchDetector2D(model, "cpu")
    heads = torch_cpu.heads(batch)
    threads = torch.get_num_threads()
    record(f"torch CPU forward ({threads} threads)",
           time_call(lambda: torch_cpu.heads(batch), repeat=REPEAT, min_time_s=0.0))
    torch.set_num_threads(1)  # on a loaded machine one thread can beat several (no waiting for busy cores)
    record("torch CPU forward (1 thread)", time_call(lambda: torch_cpu.heads(batch), repeat=REPEAT, min_time_s=0.0))
    torch.set_num_threads(threads)
    # worst-case decode: threshold 0, so all top-100 peaks per image go through NMS
    worst = DecodeParams(score_threshold=0.0)
    record("decode (top-100 per image, NMS)", time_call(
        lambda: decode_detections(*heads, scales, sizes, config.class_names, config.input_height, worst),
        repeat=REPEAT))
    record(f"torch CPU detect (end to end, {threads} threads)",
           time_call(lambda: torch_cpu.detect(images), repeat=REPEAT, min_time_s=0.0))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_cpu = OnnxDetector2D(export_onnx(model, Path(tmp) / "detector2d.onnx"))
        record("onnxruntime CPU forward", time_call(lambda: onnx_cpu.heads(batch), repeat=REPEAT, min_time_s=0.0))
        record("onnxruntime CPU detect (end to end)",
               time_call(lambda: onnx_cpu.detect(images), repeat=REPEAT, min_time_s=0.0))
    if torch.cuda.is_available():
        torch_gpu = TorchDetector2D(CenterNet(config).eval(), "cuda")

        def gpu_forward():
            torch_gpu.heads(batch)
            torch.cuda.synchronize()

        def gpu_letterbox():
            torch_gpu.letterbox(images, None)
            torch.cuda.synchronize()

        record("letterbox on the GPU (uint8 up through a pinned buffer)", time_call(gpu_letterbox, repeat=REPEAT))
        record(f"torch CUDA forward ({torch.cuda.get_device_name()})", time_call(gpu_forward, repeat=REPEAT))
        record("torch CUDA detect (end to end)", time_call(lambda: torch_gpu.detect(images), repeat=REPEAT))
    data["node_memory"] = node_memory(images)
    data["load_average_1min"] = [load_before, os.getloadavg()[0]]
    table = format_table(["stage (six cameras, one frame)", "median", "min", "p95", "median per camera"], rows)
    notes = (f"Model: the shipped checkpoint's architecture (width {config.width}, neck {config.neck_channels}, "
             f"context dilations {list(config.context_dilations)}, input {config.input_width}x{config.input_height}, "
             f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters), random weights (latency does "
             "not depend on them; decode timed at its worst case, score threshold 0). onnxruntime with its default "
             "threads. "
             f"JPEG decoding: six {WIDTH}x{HEIGHT} JPEGs of a street-like picture (quality 90, "
             f"{np.mean([len(j) for j in jpegs]) / 1e3:.0f} kB each) into the frame the node gets (NodeRunner, "
             "CameraInfo checks included), one after another or side by side on image_decode_threads threads (0: one "
             "per core the process may use); it precedes the node's own timings. "
             "'end to end' = letterbox + forward + decode of the six images in one batch. The build machine's CPU "
             f"is shared with other jobs (1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
             f"after, on {os.cpu_count()} cores), so medians are upper bounds and 'min' is the closest to an idle "
             f"machine; {REPEAT} samples per row. Node memory (the detector2d node with the shipped checkpoint, "
             f"torch backend, six 1600x900 images a frame): resident {data['node_memory']['after_warm_up_mib']:.0f} "
             f"MiB after warm-up, {data['node_memory']['after_frames_mib']:.0f} MiB after {MEMORY_FRAMES} more "
             f"frames ({data['node_memory']['growth_mib']:+.1f} MiB).")
    return write_results(out_dir, "detector2d", "2D detector, six-camera frame (perception3d bench detector2d)",
                         table, data, notes)


def camera_jpegs(rng: np.random.Generator) -> list[bytes]:
    """Six 1600x900 JPEGs (quality 90) of a street-like picture: a sky and road gradient, blocks of colour (cars,
    buildings) and sensor noise; a camera's JPEG decodes in about the time of these (noise alone costs several
    times more)."""
    row = np.arange(HEIGHT, dtype=np.float64)[:, None, None]
    background = np.where(row < HEIGHT // 2, [150.0, 180.0, 220.0], [90.0, 90.0, 95.0]) + row / HEIGHT * 30.0
    jpegs = []
    for _ in range(CAMERA_COUNT):
        picture = np.broadcast_to(background, (HEIGHT, WIDTH, 3)).copy()
        for _ in range(40):
            x, y = int(rng.integers(0, WIDTH - 200)), int(rng.integers(HEIGHT // 3, HEIGHT - 100))
            picture[y:y + int(rng.integers(40, 200)), x:x + int(rng.integers(60, 300))] = rng.integers(0, 256, 3)
        picture += rng.normal(0.0, 4.0, picture.shape)
        jpegs.append(encode_jpeg(np.clip(picture, 0, 255).astype(np.uint8)))
    return jpegs


def frame_assembly(jpegs: list[bytes], decode_threads: int) -> tuple[Callable[[], object], int]:
    """A call that builds the detector2d runner's frame (its CameraInputs) from the JPEGs and their CameraInfos with
    the image_decode_threads parameter `decode_threads`, and how many threads that decodes on."""
    names = [f"CAM_{i}" for i in range(len(jpegs))]
    params = load_parameters(None, {"detector2d": Detector2DNode.parameters})["detector2d"]
    params.update({"camera_names": names, "device": "cpu", "warm_up": False, "image_decode_threads": decode_threads})
    runner = NodeRunner(Detector2DNode, params, Detector2DNode.ports_as_topics(names), TfBuffer())
    K = np.array([[1266.0, 0.0, 800.0], [0.0, 1266.0, 450.0], [0.0, 0.0, 1.0]])
    matches = [(name, i, 0, {"image": compressed_image_msg(jpeg, i, name),
                             "camera_info": CameraModel(K, WIDTH, HEIGHT, frame_id=name)})
               for i, (name, jpeg) in enumerate(zip(names, jpegs))]

    def assemble() -> dict:
        cameras = runner._usable_cameras({}, matches)  # the step that decodes a camera set's images
        if len(cameras) != len(jpegs):
            raise RuntimeError(f"decoding benchmark: {len(cameras)} of {len(jpegs)} images decoded")
        return cameras

    return assemble, min(runner.decode_threads, len(jpegs))


def node_memory(images: list[np.ndarray]) -> dict[str, float]:
    """Resident memory of a detector2d node (default parameters) after warm-up and after MEMORY_FRAMES frames [MiB]."""
    names = [f"CAM_{i}" for i in range(len(images))]
    params = load_parameters(None, {"detector2d": Detector2DNode.parameters})["detector2d"]
    node = Detector2DNode({**params, "camera_names": names, "device": "cpu"})
    cameras = {name: CameraInput(name, 0, i, name, image=image) for i, (name, image) in enumerate(zip(names, images))}

    def run_frames(count: int) -> None:
        for k in range(count):
            node.process(Frame(k, None, cameras, {}), None, StageTimer())

    run_frames(5)
    before = resident_memory_mib()
    run_frames(MEMORY_FRAMES)
    after = resident_memory_mib()
    return {"after_warm_up_mib": before, "after_frames_mib": after, "growth_mib": after - before,
            "frames": MEMORY_FRAMES}
