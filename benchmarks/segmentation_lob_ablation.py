"""LOB ablation of the learned segmentation (issue 12): the same SegNet, schedule and data trained with and without
2DDATA's Local Object Branch (and its distillation), several training seeds each, scored on held-out caches.

    python benchmarks/segmentation_lob_ablation.py --cache A B --val-cache HELD_OUT --runs RUNS_DIR \
        [--seeds 0 1 2] [--arms lob nolob] [--epochs 5] [--batch 4] [--points 12000] [--threads 1] [--train-only]

Trains the runs that RUNS_DIR does not hold yet (so an interrupted ablation resumes where it stopped, and several
processes with --train-only and different --seeds/--arms can share the training), then scores every
checkpoint with the project's scorer on the labelled sweeps of --val-cache, and writes
benchmarks/results/segmentation_lob_ablation.{md,json}: mIoU over all 16 lidarseg classes, the object classes
(barrier .. truck) and the stuff classes (driveable_surface .. vegetation) as mean +- spread (half the max-min
range) over seeds, and every run's figures.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from perception3d.bench.common import format_table, write_results
from perception3d.core.classes import LIDARSEG_CLASSES
from perception3d.core.models.checkpoint import load_checkpoint, read_checkpoint
from perception3d.core.models.segnet import SegNetConfig
from perception3d.eval.confusion import mean_iou
from perception3d.train.data.dataset import SweepDataset
from perception3d.train.segmentation import SegmentationData, evaluate, train_segmentation
from perception3d.train.trainer import TrainConfig

OBJECT_CLASSES = list(range(1, 11))
STUFF_CLASSES = list(range(11, 17))
ARMS = {"lob": ("with LOB", True), "nolob": ("without LOB", False)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, nargs="+", required=True, help="training sweep caches")
    parser.add_argument("--val-cache", type=Path, nargs="+", required=True, help="held-out sweep caches")
    parser.add_argument("--runs", type=Path, required=True, help="directory of the runs' checkpoints and logs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--train-only", action="store_true", help="train the missing runs, score and write nothing")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--points", type=int, default=12000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.runs.mkdir(parents=True, exist_ok=True)
    val = [SweepDataset(c, past_sweeps=0, images=False) for c in args.val_cache]
    results: dict[str, list[dict]] = {ARMS[arm][0]: [] for arm in args.arms}
    for seed in args.seeds:
        for key in args.arms:
            arm, lob = ARMS[key]
            path = args.runs / f"{key}_seed{seed}.pt"
            if not path.exists() or read_checkpoint(path).get("train_state", {}).get("optimizer") is not None:
                config = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, device="cpu", seed=seed,
                                     checkpoint_every=20, validate_every=args.epochs)  # the record gets held-out mIoU
                train_segmentation(args.cache, path, SegNetConfig(lob=lob), config, args.val_cache, resume=True,
                                   data=SegmentationData(points=args.points), progress=False,
                                   command=("benchmarks/segmentation_lob_ablation.py ran the equivalent of: "
                                            f"perception3d train segmentation --cache {' '.join(map(str, args.cache))}"
                                            f" --out {path} --epochs {args.epochs} --batch {args.batch} --lr "
                                            f"{args.lr} --points {args.points} --seed {seed} --threads "
                                            f"{args.threads} --device cpu --validate-every {args.epochs} --val-cache "
                                            f"{' '.join(map(str, args.val_cache))}{'' if lob else ' --no-lob'}"))
            if args.train_only:
                continue
            network, _ = load_checkpoint(path, expected_model="segmentation")
            record = read_checkpoint(path)["record"]
            started = time.monotonic()
            score = evaluate(network, val, torch.device("cpu"), progress=False)
            results[arm].append({
                "seed": seed, "checkpoint": str(path), "train_wall_s": record.get("wall_s"),
                "miou": score.miou(), "object_miou": mean_iou(score.confusion, OBJECT_CLASSES),
                "stuff_miou": mean_iou(score.confusion, STUFF_CLASSES), "iou_per_class": score.per_class_iou(),
                "eval_wall_s": round(time.monotonic() - started, 1)})
            print(f"{arm} seed {seed}: mIoU {results[arm][-1]['miou']:.3f}", flush=True)
    if args.train_only:
        return 0
    rows = []
    for arm, runs in results.items():
        cells = []
        for key in ("miou", "object_miou", "stuff_miou"):
            values = np.array([r[key] for r in runs])
            cells.append(f"{values.mean():.3f} ± {(values.max() - values.min()) / 2:.3f}")
        rows.append([arm, len(runs), *cells, ", ".join(f"{r['miou']:.3f}" for r in runs)])
    table = format_table(["training", "seeds", "mIoU (16 classes)", "object mIoU", "stuff mIoU", "mIoU per seed"],
                         rows)
    classes = LIDARSEG_CLASSES[1:]
    per_class = format_table(["run", *classes], [[f"{arm} seed {r['seed']}", *(f"{r['iou_per_class'][c]:.3f}"
                                                                                for c in classes)]
                                                 for arm, runs in results.items() for r in runs])
    notes = (f"Training: caches {', '.join(map(str, args.cache))}; {args.epochs} epochs, batch {args.batch}, Adam lr "
             f"{args.lr} cosine, {args.points} points per sweep, {args.threads} CPU thread(s); seeds "
             f"{', '.join(map(str, args.seeds))} (initialisation, order, augmentation). Held-out: "
             f"{', '.join(map(str, args.val_cache))} (a world seed no run trained on), every labelled sweep, all its "
             "points, scored with eval.semantic (as `perception3d eval`). Spread = half the range over seeds. The LOB "
             "only changes training (inference runs the 3D branch alone in both arms).\n\nIoU per class and run:\n\n"
             + per_class)
    write_results(args.out, "segmentation_lob_ablation", "Learned segmentation: LOB ablation", table,
                  {"args": {k: str(v) for k, v in vars(args).items()}, "runs": results}, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
