"""QAF2D and cross-modal RoI ablations of the learned detection3d (issue 11), with the geometric mode beside them.

    python benchmarks/detection3d_ablation.py --runs RUNS_DIR --val-cache HELD_OUT --val-split SPLIT \
        [--detector2d-cache HELD_OUT_WITH_DETECTOR2D_BOXES] [--out benchmarks/results]

RUNS_DIR holds finished checkpoints named `<arm>_seed<N>.pt` (arms: anchors = QAF2D anchor queries + camera RoI,
learned = the anchors replaced by as many learned queries, nocamera = anchors with LiDAR RoI only), each trained
with `perception3d train detection3d` on the same data and schedule (the runs' records say which). Every checkpoint
and the geometric mode (core.lift3d.detect_3d, the same 2D boxes and sweeps) are scored on the keyframes of
--val-cache with nuscenes-devkit (eval.detection) for each 2D input: `good` (the held-out cache's own simulated boxes),
`poor` (boxes simulated afresh from the ground truth with the poor preset, seed 0) and, with --detector2d-cache (the
same scene built with `dataset build --boxes2d <detector2d replay bag>`), the graph's own detector2d. Figures: NDS and
mAP over the classes present, AP of objects beyond 30 m and beyond 40 m (devkit ego distance; mean over the classes
present there), mAVE and mAAE; mean +- spread (half the max-min range) over seeds. Writes
benchmarks/results/detection3d_ablation.{md,json}.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch

from perception3d.bench.common import format_table, write_results
from perception3d.core.camera import CameraModel
from perception3d.core.classes import DETECTION_CLASSES
from perception3d.core.detections import Detections2D
from perception3d.core.frustum import CameraView
from perception3d.core.geometry import invert_transform
from perception3d.core.lift3d import detect_3d
from perception3d.core.models.checkpoint import load_checkpoint, read_checkpoint
from perception3d.train.data.dataset import SweepDataset
from perception3d.train.detection3d import cache_nuscenes, frame_cameras, predict, score

ARMS = {"anchors": "QAF2D anchor queries + camera RoI", "learned": "learned queries + camera RoI",
        "nocamera": "QAF2D anchor queries, LiDAR RoI only"}
FAR_M = (30.0, 40.0)


def geometric(caches: list[SweepDataset], boxes2d: str) -> dict:
    """The geometric mode's global-frame detections per keyframe token, from the same sweeps and 2D boxes."""
    rng = np.random.default_rng(0)
    out = {}
    for dataset in caches:
        for i in dataset.indices_where("is_key_frame"):
            sample = dataset[int(i)]
            views = [CameraView(Detections2D(c.boxes_xyxy, [DETECTION_CLASSES[k] if k >= 0 else "other"
                                                            for k in c.classes], c.scores),
                                CameraModel(c.K, c.width, c.height), c.T_camera_points @ sample["T_ego_lidar"])
                     for c in frame_cameras(sample, boxes2d, rng)]  # for points in `lidar`
            points = sample["points"][:sample["num_points_current"], :3].astype(np.float64)
            dets = detect_3d(points, views, sample["T_ego_lidar"], "base_link")
            T_global_ego = sample["T_global_lidar"] @ invert_transform(sample["T_ego_lidar"])
            out[sample["sample_token"]] = dets.transformed(T_global_ego, "map")
    return out


def figures(nusc, predictions: dict, split: str) -> dict[str, float]:
    report = score(nusc, predictions, split)
    present = report.present_classes
    result = {"NDS": report.nds_present, "mAP": report.map_present,
              "mAVE": float(np.nanmean([report.class_tp_errors[c]["vel_err"] for c in present])),
              "mAAE": float(np.nanmean([report.class_tp_errors[c]["attr_err"] for c in present]))}
    for far in FAR_M:
        result[f"AP >{far:.0f} m"] = score(nusc, predictions, split, far).map_present
    return result


def _mean_spread(values: list[float]) -> str:
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="directory of <arm>_seed<N>.pt checkpoints")
    parser.add_argument("--val-cache", type=Path, required=True, help="held-out sweep cache (its own 2D boxes: good)")
    parser.add_argument("--val-split", required=True, help="split of the held-out cache's dataroot to score")
    parser.add_argument("--detector2d-cache", type=Path, help="the held-out scene with detector2d's 2D boxes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = {"good": ([SweepDataset(args.val_cache, past_sweeps=0, images=False)], "cache"),
              "poor": ([SweepDataset(args.val_cache, past_sweeps=0, images=False)], "poor")}
    if args.detector2d_cache:
        inputs["detector2d"] = ([SweepDataset(args.detector2d_cache, past_sweeps=0, images=False)], "cache")
    nusc = cache_nuscenes(inputs["good"][0][0])
    runs = sorted(p for p in args.runs.glob("*_seed*.pt") if re.fullmatch(r"(\w+)_seed(\d+)\.pt", p.name)
                  and p.name.split("_seed")[0] in ARMS
                  and read_checkpoint(p).get("train_state", {}).get("optimizer") is None)
    data: dict = {"geometric": {}, "runs": {}}
    for name, (caches, boxes2d) in inputs.items():
        data["geometric"][name] = figures(nusc, geometric(caches, boxes2d), args.val_split)
        print("geometric", name, data["geometric"][name], flush=True)
    for path in runs:
        network, _ = load_checkpoint(path, expected_model="detection3d")
        record = read_checkpoint(path)["record"]
        data["runs"][path.stem] = {"command": record.get("command"), "figures": {}}
        for name, (caches, boxes2d) in inputs.items():
            predictions = predict(network, caches, torch.device("cpu"), boxes2d, progress=False)
            data["runs"][path.stem]["figures"][name] = figures(nusc, predictions, args.val_split)
            print(path.stem, name, data["runs"][path.stem]["figures"][name], flush=True)
    metrics = list(next(iter(data["geometric"].values())))
    rows = []
    for name in inputs:
        rows.append([name, "geometric", "-", *(f"{data['geometric'][name][m]:.3f}" for m in metrics)])
        for arm, label in ARMS.items():
            seeds = [r for r in data["runs"] if r.split("_seed")[0] == arm]
            if seeds:
                rows.append([name, label, str(len(seeds)),
                             *(_mean_spread([data["runs"][r]["figures"][name][m] for r in seeds]) for m in metrics)])
    table = format_table(["2D input", "detection3d", "seeds", *metrics], rows)
    notes = (f"Held-out: {args.val_cache} ({args.val_split}), scored with nuscenes-devkit over the classes present. "
             "Every learned run: the same network, data and schedule (records in the JSON), differing only in the "
             "arm and the training seed; mean ± spread (half the max-min range) over seeds. 'AP >N m': the devkit's AP "
             "on the ground truth and predictions at least N m from the ego vehicle, mean over the classes present "
             "there. The geometric mode has no velocity (written as 0, so its mAVE is that of a zero guess) and no "
             "attribute (its mAAE is 1).")
    write_results(args.out, "detection3d_ablation", "detection3d: QAF2D anchor and cross-modal RoI ablations",
                  table, data, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
