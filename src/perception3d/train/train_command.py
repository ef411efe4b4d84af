"""`perception3d train <model> ...`: train a learned model with the shared trainer (train.trainer).

detector2d trains on the keyframe camera images of a nuScenes-schema dataroot (or a cache) and validates with AP@0.5
per class on --val-split. segmentation trains on the labelled sweeps of one or more sweep caches (`perception3d
dataset build`; their --boxes2d feed the Local Object Branch) and validates with lidarseg mIoU on --val-cache.
occupancy trains on the keyframes with occupancy ground truth of one or more sweep caches and validates IoU / mIoU on
--val-cache. detection3d trains on every sweep of one or more sweep caches (2D boxes simulated from the 3D ground
truth, `good` and `poor` mixed) and validates NDS / mAP with nuscenes-devkit on the keyframes of --val-cache, scored on
--val-split of that cache's dataroot. The trainer's options (epochs, batch, lr, device, amp, resume, init, seed,
validate-every, max-steps, workers, threads) are the same for every model; the same command runs data-parallel under
`torchrun --nproc_per_node N -m perception3d.cli train ...`.
"""
from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import replace
from pathlib import Path

MODELS = ("detector2d", "segmentation", "occupancy", "detection3d")
NEW_MODEL_CONTEXT_DILATIONS = (2, 4)  # what the shipped checkpoint has (benchmarks/results/detector2d_training.md)


def _size(text: str) -> tuple[int, int] | None:
    if text == "full":
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 704x416") from exc
    return width, height


def _dilations(text: str) -> tuple[int, ...]:
    error = argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated by commas, e.g. 2,4")
    try:
        dilations = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise error from exc
    if any(d < 1 for d in dilations):
        raise error
    return dilations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, help="which model to train")
    parser.add_argument("--dataroot", type=Path, help="nuScenes-schema dataroot (or --cache)")
    parser.add_argument("--version", help="table version of --dataroot, e.g. v1.0-mini or v1.0-synth")
    parser.add_argument("--split", help="training split of --dataroot (devkit name or a name in splits.json)")
    parser.add_argument("--val-split", default=None, help="validation split of --dataroot (default: no validation)")
    parser.add_argument("--cache", type=Path, nargs="+", default=None,
                        help="train from sweep caches (`perception3d dataset build`) instead of --dataroot; "
                             "detector2d takes one, built with --images small|full and --boxes2d perfect; "
                             "segmentation takes one or more (their --boxes2d feed the Local Object Branch)")
    parser.add_argument("--val-cache", type=Path, nargs="+", default=None,
                        help="validate on these sweep caches (with --cache)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (and resume from)")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training images (default 30)")
    parser.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=8,
                        help="samples per optimizer step over all processes (default 8)")
    parser.add_argument("--lr", type=float, default=1e-3, help="initial Adam learning rate (default 1e-3)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", help="mixed precision (float16 autocast), CUDA only")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop after this many optimizer steps; the checkpoint stays resumable (default 0: none)")
    parser.add_argument("--width", type=int, default=32, help="backbone width (default 32)")
    parser.add_argument("--context-dilations", type=_dilations, default=None,
                        help="dilation of each context block after the deepest stage (default 2,4 for a new model, "
                             "those of --init otherwise; with --init, adding them widens that checkpoint)")
    parser.add_argument("--input-size", type=_size, default=(704, 416),
                        help="network input WIDTHxHEIGHT, multiples of 32 (default 704x416)")
    parser.add_argument("--crop", type=_size, default=(352, 224),
                        help="train on random WIDTHxHEIGHT crops of the augmented input, multiples of 32, or 'full' "
                             "(default 352x224: objects keep their inference scale and a CPU step costs about 1/5 "
                             "of a full 704x416 one; crops rarely hold a near object whole, so finish with a few "
                             "'full' epochs from the cropped run's checkpoint, --init)")
    parser.add_argument("--min-visibility", type=int, default=2, choices=(1, 2, 3, 4),
                        help="lowest nuScenes visibility level of a training box (default 2: 40-60 %%)")
    parser.add_argument("--validate-every", type=int, default=1,
                        help="epochs between validations; the last epoch is always validated (default 1)")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    parser.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's weights (fine-tuning; fresh optimizer and schedule); its "
                             "architecture replaces --width and --input-size. 'shipped' = the package's checkpoint")
    parser.add_argument("--eval-only", action="store_true",
                        help="do not train: score the checkpoint --out on --val-split (default: --split)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of the training process (default 0: torch's default)")
    parser.add_argument("--no-lob", action="store_true",
                        help="segmentation: train without the Local Object Branch and its distillation (ablation)")
    parser.add_argument("--box-prior", action="store_true",
                        help="segmentation: the network also reads each point's 2D box class x score, at training "
                             "and at run time (not 2DDATA's method; the node then needs 2D boxes)")
    parser.add_argument("--points", type=int, default=12000,
                        help="segmentation: points drawn from each training sweep (default 12000, the shipped "
                             "checkpoint's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    occupancy = parser.add_argument_group("occupancy")
    occupancy.add_argument("--lidar-only", action="store_true",
                           help="train the same network with zero camera evidence (fusion ablation)")
    occupancy.add_argument("--no-active", action="store_true",
                           help="every epoch a plain pass (no re-training on the hardest frames)")
    occupancy.add_argument("--no-refine", action="store_true",
                           help="no coarse-to-fine refinement: fine labels are the coarse ones upsampled")
    occupancy.add_argument("--presample-points", type=int, default=0,
                           help="camera evidence read at N points pre-sampled per non-empty voxel (OccFusion's "
                                "pre-sampling; 8 scores higher, ~3.7 ms more per sweep) instead of the voxel centre "
                                "(0, the default and the shipped checkpoint's)")
    occupancy.add_argument("--bev-statistics", action="store_true",
                           help="the BEV image also holds per height bin the log point count, and the mean intensity "
                                "and lowest / highest point (~1.1 ms more per sweep; off in the shipped checkpoint)")
    detection3d = parser.add_argument_group("detection3d")
    detection3d.add_argument("--learned-queries", action="store_true",
                             help="replace the QAF2D anchor queries by as many learned queries (QAF2D ablation)")
    detection3d.add_argument("--no-camera", action="store_true",
                             help="no camera RoI attention: LiDAR RoI only (cross-modal ablation)")


def _train_config(args: argparse.Namespace):
    from .trainer import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, amp=args.amp,
                       checkpoint_every=args.checkpoint_every, validate_every=args.validate_every, seed=args.seed,
                       num_workers=args.workers, max_steps=args.max_steps)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    runs = {"segmentation": _run_segmentation, "occupancy": _run_occupancy, "detector2d": _run_detector2d,
            "detection3d": _run_detection3d}
    return runs[args.model](args)


def _run_segmentation(args: argparse.Namespace) -> int:
    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.runner import resolve_device
    from ..core.models.segnet import SegNetConfig
    from ..errors import ConfigError
    from . import run_log
    from .data.dataset import SweepDataset
    from .segmentation import SegmentationData, evaluate, train_segmentation

    if args.eval_only:
        caches = args.val_cache or args.cache
        if not caches:
            raise ConfigError("segmentation --eval-only: give --val-cache (or --cache)")
        network, _ = load_checkpoint(args.out, expected_model="segmentation")
        score = evaluate(network, [SweepDataset(c, past_sweeps=0, images=False) for c in caches],
                         resolve_device(args.device))
        print(f"lidarseg mIoU of {args.out}: {score.miou():.3f}")
        for name, iou in score.per_class_iou().items():
            print(f"  {name:<22}{iou:.3f}")
        return 0
    if not args.cache:
        raise ConfigError("segmentation trains from sweep caches: give --cache (built by `perception3d dataset build`)")
    init = args.init
    model_config = load_checkpoint(init, expected_model="segmentation")[0].config if init else \
        SegNetConfig(lob=not args.no_lob, box_prior=args.box_prior)
    result = train_segmentation(args.cache, args.out, model_config, _train_config(args), args.val_cache or (),
                                resume=args.resume, init=init, data=SegmentationData(points=args.points),
                                command=shlex.join(["perception3d", *args.argv]))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {result.checkpoint} after {result.steps} steps (log {run_log.log_path(result.checkpoint)})")
        if result.metrics:
            print(f"validation lidarseg mIoU {result.metrics['miou']:.3f}")
    return 0


def _run_detector2d(args: argparse.Namespace) -> int:
    from ..core.models.centernet import CenterNetConfig
    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.inference import TorchDetector2D
    from ..core.models.shipped import SHIPPED_CHECKPOINT
    from ..errors import ConfigError
    from . import run_log
    from .data.camera_images import CachedCameraImages
    from .detector2d import SCORED_CLASSES, VALIDATION_DECODE, Detector2DData, evaluate, format_scores, train_detector2d
    from .nuscenes_boxes import NuScenesCameraBoxes

    if args.cache is None and not (args.dataroot and args.version and args.split):
        raise ConfigError("give --dataroot, --version and --split, or --cache")
    for option in ("cache", "val_cache"):
        if getattr(args, option) and len(getattr(args, option)) > 1:
            raise ConfigError(f"detector2d: --{option.replace('_', '-')} takes one cache")

    def images(split: str | None, caches: list[Path] | None):
        """(image, boxes) pairs of a cache, or of a dataroot split; None when neither is given."""
        if caches:
            return CachedCameraImages(caches[0])
        if args.cache is None and split is not None:
            return NuScenesCameraBoxes(args.dataroot, args.version, split, min_visibility=args.min_visibility)
        return None

    if args.eval_only:
        dataset = images(args.val_split or args.split, args.val_cache or args.cache)
        detector = TorchDetector2D.from_checkpoint(args.out, args.device, VALIDATION_DECODE)
        ap = evaluate(detector, dataset, args.batch_size)
        print(f"AP@0.5 of {args.out} on {len(dataset)} images:")
        print(format_scores(ap.per_class(), SCORED_CLASSES))
        return 0

    train_set, val_set = images(args.split, args.cache), images(args.val_split, args.val_cache)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun: one process reports
    if main_process:
        print(f"training on {len(train_set)} images" + (f", validating on {len(val_set)}" if val_set else ""))
    init = SHIPPED_CHECKPOINT if str(args.init) == "shipped" else args.init
    model_config = (load_checkpoint(init)[0].config if init else
                    CenterNetConfig(width=args.width, input_width=args.input_size[0], input_height=args.input_size[1],
                                    context_dilations=NEW_MODEL_CONTEXT_DILATIONS))
    if args.context_dilations is not None:
        model_config = replace(model_config, context_dilations=args.context_dilations)
    config = _train_config(args)
    command = shlex.join(["perception3d", *args.argv])
    result = train_detector2d(train_set, args.out, model_config, config, val_set, resume=args.resume, init=init,
                              data=Detector2DData(crop_size=args.crop, validation_batch=args.batch_size),
                              command=command)
    if not main_process:
        return 0
    print(f"wrote {result.checkpoint} after {result.steps} steps (log {run_log.log_path(result.checkpoint)})")
    if result.metrics:
        print("validation AP@0.5:")
        print(format_scores(result.metrics["ap_per_class"], SCORED_CLASSES))
    return 0


def _run_occupancy(args: argparse.Namespace) -> int:
    from ..core.models.occfusion import OccFusionConfig
    from ..errors import ConfigError
    from . import run_log
    from .occupancy import OccupancyTask, OccupancyTraining, cache_keyframes
    from .trainer import train

    if args.cache is None or args.batch_size != 1:
        raise ConfigError("occupancy trains from --cache (one or more caches) with --batch 1")
    model_config = OccFusionConfig(camera_fusion=not args.lidar_only,
                                   refine_top_k=0 if args.no_refine else OccFusionConfig.refine_top_k,
                                   refine=not args.no_refine, presample_points=args.presample_points,
                                   bev_statistics=args.bev_statistics)
    caches = list(args.cache)
    task = OccupancyTask(cache_keyframes(caches, model_config), model_config,
                         OccupancyTraining(active=not args.no_active),
                         cache_keyframes(args.val_cache, model_config) if args.val_cache else [], caches)
    config = _train_config(args)
    print(f"training on {len(task.samples)} keyframes" +
          (f", validating on {len(task.val_frames)}" if task.val_frames else ""))
    result = train(task, args.out, config, resume=args.resume, init=args.init,
                   command=shlex.join(["perception3d", *args.argv]))
    print(f"wrote {result.checkpoint} after {result.steps} steps (log {run_log.log_path(result.checkpoint)})")
    if result.metrics:
        print(f"validation IoU {result.metrics['iou']:.3f} mIoU {result.metrics['miou']:.3f}")
    return 0


def _run_detection3d(args: argparse.Namespace) -> int:
    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.detr3d import Detr3DConfig
    from ..core.models.runner import resolve_device
    from ..errors import ConfigError
    from . import run_log
    from .data.dataset import SweepDataset
    from .detection3d import evaluate, train_detection3d

    split = args.val_split or "val"
    if args.eval_only:
        caches = args.val_cache or args.cache
        if not caches:
            raise ConfigError("detection3d --eval-only: give --val-cache (or --cache) and --val-split")
        network, _ = load_checkpoint(args.out, expected_model="detection3d")
        report = evaluate(network, [SweepDataset(c, past_sweeps=0, images=False) for c in caches], split,
                          resolve_device(args.device))
        print(f"detection of {args.out} on {split}:\n{report.table()}")
        return 0
    if not args.cache:
        raise ConfigError("detection3d trains from sweep caches: give --cache (built by `perception3d dataset build`)")
    init = args.init
    model_config = load_checkpoint(init, expected_model="detection3d")[0].config if init else \
        Detr3DConfig(anchor_queries_learned=args.learned_queries, use_camera=not args.no_camera)
    result = train_detection3d(args.cache, args.out, model_config, _train_config(args), args.val_cache or (), split,
                               resume=args.resume, init=init, command=shlex.join(["perception3d", *args.argv]))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {result.checkpoint} after {result.steps} steps (log {run_log.log_path(result.checkpoint)})")
        if result.metrics:
            print(f"validation NDS {result.metrics['nds']:.3f} mAP {result.metrics['map']:.3f}")
    return 0
