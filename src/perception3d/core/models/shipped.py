"""The checkpoints shipped with the package (package data in weights/), by node; torch-free, so that a node can name
its default model without importing torch (a geometric-mode node never loads one)."""
from __future__ import annotations

from pathlib import Path

_WEIGHTS = Path(__file__).resolve().parent / "weights"
# The checkpoint shipped with the package (benchmarks/results/detector2d_training.md says how it was trained).
SHIPPED_CHECKPOINT = _WEIGHTS / "detector2d_synth.pt"
# segmentation's shipped checkpoint (benchmarks/results/segmentation_training.md says how it was trained).
SHIPPED_SEGMENTATION = _WEIGHTS / "segmentation_synth.pt"
# The same network trained with the optional box prior (a model_path for nodes that have 2D boxes; same record file).
SHIPPED_SEGMENTATION_BOX_PRIOR = _WEIGHTS / "segmentation_boxprior_synth.pt"
# occupancy's shipped checkpoint (benchmarks/results/occupancy_training.md says how it was trained).
SHIPPED_OCCUPANCY = _WEIGHTS / "occupancy_synth.pt"
# detection3d's shipped checkpoint (benchmarks/results/detection3d_training.md says how it was trained).
SHIPPED_DETECTION3D = _WEIGHTS / "detection3d_synth.pt"
