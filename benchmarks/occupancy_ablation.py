"""Occupancy training runs of benchmarks/results/occupancy_training.md, back to back on one CPU thread.

Trains, with one schedule, the learned occupancy network with image fusion and LiDAR only over three seeds, with
active training off and coarse-to-fine off for one seed, and with OccFusion's pre-sampled points instead of the voxel
centre over three seeds; the keyframe inputs are computed once per pre-sampling. Checkpoints and
JSON-lines logs go to OUT/<run>.pt / .log.jsonl, wall times to OUT/runs.json. Scoring on the held-out world is
benchmarks/occupancy_scores.py.

    nice .venv/bin/python benchmarks/occupancy_ablation.py OUT CACHE [CACHE ...]
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from perception3d.core.models.occfusion import OccFusionConfig
from perception3d.train.occupancy import OccupancyTask, OccupancyTraining, cache_keyframes
from perception3d.train.trainer import TrainConfig, train

EPOCHS = 12
LR = 2e-3
FUSION = OccFusionConfig()
RUNS = {  # name -> (model config, training options, seed); in order of importance
    "fusion_s0": (FUSION, OccupancyTraining(), 0),
    "lidar_s0": (replace(FUSION, camera_fusion=False), OccupancyTraining(), 0),
    "fusion_noactive_s0": (FUSION, OccupancyTraining(active=False), 0),
    "fusion_s1": (FUSION, OccupancyTraining(), 1),
    "lidar_s1": (replace(FUSION, camera_fusion=False), OccupancyTraining(), 1),
    "fusion_s2": (FUSION, OccupancyTraining(), 2),
    "lidar_s2": (replace(FUSION, camera_fusion=False), OccupancyTraining(), 2),
    "fusion_norefine_s0": (replace(FUSION, refine=False, refine_top_k=0), OccupancyTraining(), 0),
    # OccFusion's pre-sampling (8 points per voxel) instead of the voxel centre alone
    "presampled_s0": (replace(FUSION, presample_points=8), OccupancyTraining(), 0),
    "presampled_s1": (replace(FUSION, presample_points=8), OccupancyTraining(), 1),
    "presampled_s2": (replace(FUSION, presample_points=8), OccupancyTraining(), 2),
}


def main(out: Path, caches: list[Path]) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    frames = {}  # the keyframe inputs per pre-sampling and BEV statistics (the other options do not change them)
    record_path = out / "runs.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    for name, (config, training, seed) in RUNS.items():
        if name in record:
            continue
        inputs = (config.presample_points, config.bev_statistics)
        if inputs not in frames:
            frames[inputs] = cache_keyframes(caches, replace(config, camera_fusion=True))
        start = time.monotonic()
        task = OccupancyTask(frames[inputs], config, training, caches=caches)
        result = train(task, out / f"{name}.pt", TrainConfig(epochs=EPOCHS, batch_size=1, lr=LR, device="cpu",
                                                             seed=seed, checkpoint_every=0), progress=False,
                       command=f"benchmarks/occupancy_ablation.py run {name}")
        record[name] = {"steps": result.steps, "wall_s": round(time.monotonic() - start, 1), "seed": seed,
                        "epochs": EPOCHS, "lr": LR, "config": config.to_dict(), "training": training.__dict__}
        record_path.write_text(json.dumps(record, indent=1))
        print(name, record[name]["steps"], "steps", record[name]["wall_s"], "s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
