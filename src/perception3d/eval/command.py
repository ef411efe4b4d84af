"""`perception3d eval --dataroot DIR --version V --bag OUT [OUT ...] --split NAME [--task det seg occ]`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TASKS = ("det", "seg", "occ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes dataroot with the ground truth")
    parser.add_argument("--version", default="v1.0-synth", help="dataset version (default v1.0-synth)")
    parser.add_argument("--bag", type=Path, nargs="+", required=True,
                        help="output bag(s) of `perception3d replay` covering the split's scenes")
    parser.add_argument("--split", default="synth_val", help="split to score (devkit name or splits.json entry)")
    parser.add_argument("--task", nargs="+", choices=TASKS, default=list(TASKS), help="what to score (default all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for scores.md, scores.json and the devkit's files (default: beside the bag)")


def run(args: argparse.Namespace) -> int:
    from ..data.nuscenes_io import open_nuscenes
    from .report import evaluate

    out = args.out or args.bag[0].parent / f"{args.bag[0].name}_eval"
    out.mkdir(parents=True, exist_ok=True)
    nusc = open_nuscenes(args.dataroot, args.version)
    report = evaluate(nusc, args.bag, args.split, list(args.task), out)
    text = report.markdown()
    (out / "scores.md").write_text(text + "\n")
    (out / "scores.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    print(text)
    print(f"\nwritten to {out / 'scores.md'} and scores.json")
    return 0
