"""`perception3d export <model> --checkpoint CKPT --out MODEL.onnx`: write the ONNX model of a checkpoint, check that
onnxruntime loads it, and compare it with torch.

detector2d (contract: core.models.onnx_backend): detections on random input or, with --dataroot/--version/--split,
on the first --verify camera images of a split. segmentation (inputs bev, coords, point_features; output
probabilities): point labels on the first --verify labelled sweeps of --cache (default: random clouds); the export
passes when at least LABEL_AGREEMENT of the points get the same label. occupancy (core.models.occfusion
.OccFusionInference): the share of voxels whose label is the same through onnxruntime and torch on the first --verify
keyframes of --cache (exit status 1 below PARITY). detection3d (core.models.detr3d.Detr3DInference): on the first
--verify keyframes of --cache (their cached 2D boxes), every query that scores at least SCORE_THRESHOLD through either
backend must have the same class and a bird's-eye-view IoU of at least AGREEMENT_IOU between the two backends' boxes.
The LiDAR models carry their model name and config in the ONNX metadata."""
from __future__ import annotations

import argparse
from pathlib import Path

MODELS = ("detector2d", "segmentation", "occupancy", "detection3d")
# IoU at which a torch and an ONNX box count as the same detection (issue 6, acceptance 2).
AGREEMENT_IOU = 0.99
# Share of points with the same label from torch and ONNX that a segmentation export must reach (issue 12).
LABEL_AGREEMENT = 0.995
# share of voxels with the same label through ONNX and torch an occupancy export must reach (issue 13, acceptance 4)
PARITY = 0.995
SCORE_THRESHOLD = 0.05  # detection3d: queries compared (the node's default score_threshold)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, help="which model to export")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by `perception3d train`")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--dataroot", type=Path, help="nuScenes-schema dataroot with images to compare on")
    parser.add_argument("--version", help="table version of --dataroot")
    parser.add_argument("--split", help="split of --dataroot whose images are compared")
    parser.add_argument("--cache", type=Path,
                        help="segmentation / occupancy: sweep cache whose labelled sweeps / keyframes are compared on")
    parser.add_argument("--verify", type=int, default=20, help="images, sweeps or keyframes compared (default 20)")


def run(args: argparse.Namespace) -> int:
    runs = {"segmentation": _export_segmentation, "occupancy": _export_occupancy, "detector2d": _export_detector2d,
            "detection3d": _export_detection3d}
    return runs[args.model](args)


def _export_segmentation(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..core.box_points import point_boxes
    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.export import export_segmentation
    from ..core.models.network_file import open_network
    from ..core.models.options import CPU_OPTIONS
    from ..core.models.segnet import SEGNET_INPUTS, SegNetInference, labels_from_probabilities, segnet_inputs
    from .data.dataset import SweepDataset, sample_camera_boxes
    from .segmentation import sweep_in_ego

    network, _ = load_checkpoint(args.checkpoint, expected_model="segmentation")
    path = export_segmentation(network, args.out)
    onnx_model = open_network("onnx", path, "segmentation", SegNetInference, SEGNET_INPUTS, CPU_OPTIONS)
    torch_model = open_network("torch", args.checkpoint, "segmentation", SegNetInference, SEGNET_INPUTS, CPU_OPTIONS)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.cache is not None:
        dataset = SweepDataset(args.cache, past_sweeps=0, images=False)
        samples = [dataset[int(i)] for i in dataset.indices_where("has_lidarseg")[:args.verify]]
        sweeps = [(*sweep_in_ego(s), point_boxes(s["points"][:s["num_points_current"]], sample_camera_boxes(s)))
                  for s in samples]
    else:
        rng = np.random.default_rng(0)
        sweeps = [(rng.uniform(-60, 60, (30000, 3)) * [1, 1, 0.05], rng.uniform(0, 255, 30000),
                   (rng.integers(-1, 10, 30000), rng.random(30000))) for _ in range(args.verify)]
    same = total = 0
    with torch.inference_mode():
        for points, intensity, boxes in sweeps:
            inputs = [x[None] for x in segnet_inputs(points, intensity, network.config, boxes)]
            from_torch, _ = labels_from_probabilities(torch_model.run(*inputs)[0][0])
            from_onnx, _ = labels_from_probabilities(onnx_model.run(*inputs)[0][0])
            same, total = same + int(np.sum(from_torch == from_onnx)), total + len(points)
    agreement = same / max(total, 1)
    print(f"{len(sweeps)} sweeps{' of ' + str(args.cache) if args.cache else ' (random clouds)'}: {agreement:.4%} of "
          f"{total} points have the same label from torch and ONNX (needed: {LABEL_AGREEMENT:.1%})")
    return 0 if agreement >= LABEL_AGREEMENT else 1


def _export_detector2d(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.export import export_onnx
    from ..core.models.inference import TorchDetector2D
    from ..core.models.onnx_backend import OnnxDetector2D
    from ..errors import ConfigError
    from ..eval.backend_agreement import compare_detections

    model, _ = load_checkpoint(args.checkpoint)
    path = export_onnx(model, args.out)
    onnx_detector = OnnxDetector2D(path)  # validates the contract
    torch_detector = TorchDetector2D(model, "cpu")
    c = model.config
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): input 'image' float32 (N, 3, {c.input_height}, "
          f"{c.input_width}) RGB [0, 1]; outputs heatmap (N, {len(c.class_names)}, {c.output_size[0]}, "
          f"{c.output_size[1]}), size and offset (N, 2, ...)")
    probe = np.random.default_rng(0).random((1, 3, c.input_height, c.input_width), dtype=np.float32)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(torch_detector.heads(probe),
                                                                  onnx_detector.heads(probe)))
    print(f"largest head difference to torch on random input: {difference:.2e}")
    if args.dataroot is None:
        return 0
    if not (args.version and args.split):
        raise ConfigError("--dataroot needs --version and --split to pick the images to compare on")
    from .nuscenes_boxes import NuScenesCameraBoxes

    dataset = NuScenesCameraBoxes(args.dataroot, args.version, args.split)
    images = [dataset[i][0] for i in range(min(args.verify, len(dataset)))]
    from_torch, from_onnx = [], []
    for start in range(0, len(images), 6):
        from_torch += torch_detector.detect(images[start:start + 6])
        from_onnx += onnx_detector.detect(images[start:start + 6])
    agreement = compare_detections(from_torch, from_onnx, AGREEMENT_IOU)
    print(f"{len(images)} images of {args.split!r}: {agreement.matched} of {agreement.count_a} torch / "
          f"{agreement.count_b} ONNX detections matched at IoU >= {AGREEMENT_IOU}, "
          f"{agreement.images_agreeing}/{agreement.images} images identical, "
          f"largest score difference {agreement.max_score_difference:.2e}")
    if agreement.count_a == agreement.count_b == 0:
        print("no detections above the score threshold on these images: the comparison shows nothing")
    return 0 if agreement.all_agree else 1


def occupancy_parity(checkpoint: Path, onnx_path: Path, frames: list[dict]) -> float:
    """Share of the fine voxels of `frames` whose label is the same through onnxruntime and torch."""
    from ..core.models.network_file import open_network
    from ..core.models.occfusion import INPUT_NAMES, OccFusionInference
    from ..core.models.options import CPU_OPTIONS
    from .occupancy import frame_volume

    torch_model = open_network("torch", checkpoint, "occupancy", OccFusionInference, INPUT_NAMES, CPU_OPTIONS)
    onnx_model = open_network("onnx", onnx_path, "occupancy", OccFusionInference, INPUT_NAMES, CPU_OPTIONS)
    fine = torch_model.config.fine_grid
    same = sum(int((frame_volume(torch_model.run, f, fine) == frame_volume(onnx_model.run, f, fine)).sum())
               for f in frames)
    return same / (fine.num_voxels * len(frames))


def _export_occupancy(args: argparse.Namespace) -> int:
    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.occfusion_export import export_occupancy
    from ..errors import ConfigError
    from .occupancy import cache_keyframes

    if args.cache is None:
        raise ConfigError("export occupancy needs --cache: a sweep cache with occupancy keyframes to compare on")
    config = load_checkpoint(args.checkpoint, expected_model="occupancy")[0].config
    frames = cache_keyframes([args.cache], config, progress=False, limit=max(args.verify, 1))
    path = export_occupancy(args.checkpoint, args.out, frames[0])
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    share = occupancy_parity(args.checkpoint, path, frames)
    print(f"{len(frames)} keyframes of {args.cache}: {share:.4%} of voxels have the same label through onnxruntime "
          f"and torch (required {PARITY:.1%})")
    return 0 if share >= PARITY else 1


def detection3d_parity(first: tuple, second: tuple, threshold: float = SCORE_THRESHOLD) -> tuple[int, int]:
    """(queries that agree, queries compared) of two backends' outputs (boxes, class probabilities, ...) of one
    frame (batch 1): compared are the queries scoring at least threshold through either; they agree when their best
    classes are the same and their boxes' BEV IoU is at least AGREEMENT_IOU."""
    import numpy as np

    from ..core.boxes import bev_iou

    (boxes_a, probabilities_a), (boxes_b, probabilities_b) = (
        (np.asarray(o[0][0], np.float64), np.asarray(o[1][0])) for o in (first, second))
    compared = np.flatnonzero((probabilities_a.max(1) >= threshold) | (probabilities_b.max(1) >= threshold))
    a, b = boxes_a[compared], boxes_b[compared]
    iou = np.array([bev_iou(a[i, :3], a[i, 3:6], a[i, 6], b[i, :3], b[i, 3:6], b[i, 6])[0, 0]
                    for i in range(len(compared))])
    same_class = probabilities_a[compared].argmax(1) == probabilities_b[compared].argmax(1)
    return int(np.sum(same_class & (iou >= AGREEMENT_IOU))), len(compared)


def _export_detection3d(args: argparse.Namespace) -> int:
    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.detr3d import DETR3D_INPUTS, Detr3DInference
    from ..core.models.export import export_detection3d
    from ..core.models.network_file import open_network
    from ..core.models.options import CPU_OPTIONS
    from ..errors import ConfigError
    from .data.dataset import SweepDataset
    from .detection3d import PAST_STEPS, frame_cameras, frame_inputs, past_points

    if args.cache is None:
        raise ConfigError("export detection3d needs --cache: a sweep cache whose keyframes are compared on")
    network, _ = load_checkpoint(args.checkpoint, expected_model="detection3d")
    path = export_detection3d(network, args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    models = [open_network(backend, file, "detection3d", Detr3DInference, DETR3D_INPUTS, CPU_OPTIONS)
              for backend, file in (("torch", args.checkpoint), ("onnx", path))]
    dataset = SweepDataset(args.cache, past_sweeps=0, images=False)
    agree = compared = 0
    for i in dataset.indices_where("is_key_frame")[:args.verify]:
        sample = dataset[int(i)]
        inputs = [x[None] for x in frame_inputs(sample, past_points(dataset, int(i), PAST_STEPS[1], sample),
                                                 frame_cameras(sample, "cache"), network.config)]
        a, n = detection3d_parity(*(m.run(*inputs) for m in models))
        agree, compared = agree + a, compared + n
    print(f"{min(args.verify, len(dataset.indices_where('is_key_frame')))} keyframes of {args.cache}: {agree} of "
          f"{compared} boxes scoring >= {SCORE_THRESHOLD} agree between torch and onnxruntime (same class, BEV IoU "
          f">= {AGREEMENT_IOU})")
    return 0 if agree == compared else 1
