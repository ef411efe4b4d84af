"""`export_occupancy`: the ONNX file of a learned occupancy checkpoint (the node's contract, OccFusionInference, with
the model name and config as metadata; every per-voxel axis dynamic), as `perception3d export occupancy` and
`perception3d bench learned` write it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .export import export_model
from .occfusion import INPUT_NAMES, OUTPUT_NAMES, OccFusionInference
from .occfusion_inputs import CAMERA_CHANNELS, lidar_channel_count


def export_occupancy(checkpoint: Path, out: Path, example: dict | None = None) -> Path:
    """Write the ONNX file of an occupancy checkpoint, traced on one frame of train.occupancy.cache_keyframes (default:
    a few empty voxels; every per-voxel axis is dynamic)."""
    model, _ = load_checkpoint(checkpoint, expected_model="occupancy")
    if example is None:
        fine = model.config.fine_grid
        side = fine.shape[0] // 2
        example = {"bev": np.zeros((1, lidar_channel_count(fine), side, side), np.float32),
                   "fused_index": np.arange(8), "camera": np.zeros((8, CAMERA_CHANNELS), np.float32),
                   "lidar_parents": np.arange(8), "fine_state": np.zeros((2, fine.num_voxels), np.float32)}
    inputs = tuple(torch.from_numpy(np.asarray(example[k], dtype=np.float32 if k == "fine_state" else None))
                   for k in INPUT_NAMES)
    dynamic = {"fused_index": {0: "voxels"}, "camera": {0: "voxels"}, "lidar_parents": {0: "parents"},
               **{name: {0: "refined"} for name in OUTPUT_NAMES[2:]}}
    return export_model(OccFusionInference(model), model, inputs, out, INPUT_NAMES, OUTPUT_NAMES, dynamic)
