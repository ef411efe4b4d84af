"""`perception3d export detector2d --checkpoint CKPT --out MODEL.onnx`: write the ONNX model of a checkpoint
(contract: core.models.onnx_backend) and check that onnxruntime loads it and agrees with torch."""
from __future__ import annotations

import argparse
from pathlib import Path

MODELS = ("detector2d",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, help="which model to export")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by `train detector2d`")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..core.models.checkpoint import load_checkpoint
    from ..core.models.export import export_onnx
    from ..core.models.onnx_backend import OnnxDetector2D

    model, _ = load_checkpoint(args.checkpoint)
    path = export_onnx(model, args.out)
    onnx_model = OnnxDetector2D(path)  # validates the contract
    c = model.config
    probe = np.random.default_rng(0).random((1, 3, c.input_height, c.input_width), dtype=np.float32)
    with torch.inference_mode():
        reference = torch.sigmoid(model(torch.from_numpy(probe))["heatmap"]).numpy()
    difference = float(np.abs(onnx_model.heads(probe)[0] - reference).max())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): input 'image' float32 (N, 3, {c.input_height}, "
          f"{c.input_width}) RGB [0, 1]; outputs heatmap (N, {len(c.class_names)}, {c.output_size[0]}, "
          f"{c.output_size[1]}), size and offset (N, 2, ...); max heatmap difference to torch {difference:.2e}")
    return 0
