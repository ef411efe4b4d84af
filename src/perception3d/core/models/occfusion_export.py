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
from .occfusion_inputs import network_inputs


def export_occupancy(checkpoint: Path, out: Path, example: dict | None = None) -> Path:
    """Write the ONNX file of an occupancy checkpoint, traced on one frame of train.occupancy.cache_keyframes (default:
    the inputs of a sweep of a few returns ahead of the sensor; every per-voxel axis is dynamic)."""
    model, _ = load_checkpoint(checkpoint, expected_model="occupancy")
    if example is None:
        config = model.config
        points = np.array([[5.0, 0.0, 0.0], [10.0, 2.0, 0.5], [20.0, -3.0, 1.0], [-8.0, 4.0, -1.0]])
        example, _ = network_inputs(points, np.zeros(len(points)), np.zeros(3), [], config.fine_grid,
                                    config.presample_points, config.camera_fusion, config.bev_statistics)
    inputs = tuple(torch.from_numpy(np.asarray(example[k])) for k in INPUT_NAMES)
    dynamic = {"observed_index": {0: "observed"}, "fused_rows": {0: "voxels"}, "camera": {0: "voxels"},
               "parent_rows": {0: "parents"}, **{name: {0: "observed"} for name in OUTPUT_NAMES[:2]},
               **{name: {0: "refined"} for name in OUTPUT_NAMES[2:]}}
    return export_model(OccFusionInference(model), model, inputs, out, INPUT_NAMES, OUTPUT_NAMES, dynamic)
