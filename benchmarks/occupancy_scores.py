"""Scores of the occupancy runs of benchmarks/occupancy_ablation.py on the held-out synthetic world (seed 7, never
trained on), for benchmarks/results/occupancy_training.md.

1. Every run's checkpoint on the keyframes of a sweep cache of the held-out dataroot (the network's own inputs, the
   same OccupancyScore as `perception3d eval`): IoU, mIoU, per-class IoU; mean and spread over seeds.
2. With --graph CHECKPOINT: the full geometric graph replayed on the held-out scene with the `good` 2D preset
   (pipeline.run_preset, as `perception3d bench scores`), once with occupancy geometric and once with occupancy
   learned (that checkpoint), both scored by `perception3d eval`.

    nice .venv/bin/python benchmarks/occupancy_scores.py RUNS_DIR VAL_CACHE DATAROOT [--graph CHECKPOINT]
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

from perception3d.core.models.checkpoint import load_checkpoint
from perception3d.core.models.occfusion import OccFusionInference, OccFusionNet
from perception3d.core.models.options import CPU_OPTIONS
from perception3d.core.models.runner import TorchRunner
from perception3d.pipeline import run_preset
from perception3d.train.occupancy import cache_keyframes, for_config, score_frames

CONFIG = Path(__file__).resolve().parents[1] / "config" / "perception3d.yaml"
# scored besides the runs: a run's weights with a config change at inference only
INFERENCE_VARIANTS = {"fusion_s0, coarse-to-fine off at inference": ("fusion_s0", {"refine": False})}


def score_runs(runs: Path, cache: Path) -> dict:
    """{run: {iou, miou, per_class_iou}} of every checkpoint in runs/ (runs.json order)."""
    record = json.loads((runs / "runs.json").read_text())
    frames, out = {}, {}  # the keyframe inputs per pre-sampling and BEV statistics
    models = {name: (name, {}) for name in record}
    models.update({k: v for k, v in INFERENCE_VARIANTS.items() if v[0] in record})
    for name, (run, change) in models.items():
        model, _ = load_checkpoint(runs / f"{run}.pt", expected_model="occupancy")
        if change:
            changed = OccFusionNet(replace(model.config, **change))
            changed.load_state_dict(model.state_dict())
            model = changed.eval()
        inputs = (model.config.presample_points, model.config.bev_statistics)
        if inputs not in frames:
            # inputs with camera evidence; for_config zeroes it for the LiDAR-only runs
            frames[inputs] = cache_keyframes([cache], replace(model.config, camera_fusion=True), progress=False)
        score = score_frames(TorchRunner(OccFusionInference(model), CPU_OPTIONS),
                             for_config(frames[inputs], model.config), model.config.fine_grid)
        out[name] = {"iou": score.iou(), "miou": score.miou(), "per_class_iou": score.per_class_iou(),
                     "keyframes": len(frames[inputs])}
        print(f"{name}: IoU {out[name]['iou']:.3f} mIoU {out[name]['miou']:.3f}", flush=True)
    return out


def summary(scores: dict) -> dict:
    """Mean and spread (max - min) of IoU and mIoU over the seeds of the fusion, pre-sampled fusion and LiDAR-only
    runs."""
    out = {}
    for group in ("fusion", "presampled", "lidar"):
        names = [n for n in scores if re.fullmatch(rf"{group}_s\d+", n)]
        if names:
            out[group] = {metric: {"mean": float(np.mean([scores[n][metric] for n in names])),
                                   "spread": float(np.ptp([scores[n][metric] for n in names])), "runs": names}
                          for metric in ("iou", "miou")}
    return out


def graph_scores(checkpoint: Path, dataroot: Path) -> dict:
    """bench-scores style replay of the held-out scene ('good' 2D), occupancy geometric vs learned."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="p3d-occ-scores-") as tmp:
        for mode in ("geometric", "learned"):
            doc = yaml.safe_load(CONFIG.read_text())
            doc["occupancy"]["ros__parameters"].update(mode=mode, model_path=str(checkpoint), device="cpu",
                                                       threads=1)
            config = Path(tmp) / f"{mode}.yaml"
            config.write_text(yaml.safe_dump(doc))
            report = run_preset(dataroot, "v1.0-synth", "synth_val", "good", Path(tmp) / mode, config=config,
                                progress=False).report
            occ = report.occupancy
            out[mode] = {"iou": occ.iou(), "miou": occ.miou(), "per_class_iou": occ.per_class_iou(),
                         "keyframes": report.keyframes}
            print(f"graph, occupancy {mode}: IoU {occ.iou():.3f} mIoU {occ.miou():.3f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("val_cache", type=Path)
    parser.add_argument("dataroot", type=Path)
    parser.add_argument("--graph", type=Path, default=None)
    parser.add_argument("--skip-runs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result_path = args.runs / "scores.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if not args.skip_runs:
        result["runs"] = score_runs(args.runs, args.val_cache)
        result["summary"] = summary(result["runs"])
        result_path.write_text(json.dumps(result, indent=1))
    if args.graph is not None:
        result["graph"] = graph_scores(args.graph, args.dataroot)
        result_path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result.get("summary", {}), indent=1))


if __name__ == "__main__":
    main()
