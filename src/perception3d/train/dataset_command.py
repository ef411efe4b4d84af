"""`perception3d dataset build --dataroot D --version V --split S|all --out CACHE [--past-sweeps N]
[--images none|small|full] [--boxes2d perfect|good|poor|BAG]`: the sweep-level training cache (train/data/)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build or update a cache of training samples, one per LiDAR sweep",
                           description="Build or update a cache of training samples, one per LiDAR sweep; only "
                                       "scenes whose inputs or options changed are rebuilt.")
    build.add_argument("--dataroot", type=Path, required=True, help="nuScenes-schema dataroot (nuScenes, Lyft, synth)")
    build.add_argument("--version", required=True, help="table version, e.g. v1.0-mini or v1.0-synth")
    build.add_argument("--split", required=True,
                       help="devkit split, a name in <version>/splits.json, or 'all' for every scene")
    build.add_argument("--out", type=Path, required=True, help="cache directory (created or updated)")
    build.add_argument("--past-sweeps", type=int, default=9,
                       help="earlier LiDAR sweeps stacked into each sample, with a time-lag channel (default 9)")
    build.add_argument("--images", choices=("none", "small", "full"), default="none",
                       help="camera images: none, small (JPEG draft decoding, ~1/4 per side) or full (default none)")
    build.add_argument("--boxes2d", default="perfect",
                       help="2D boxes: simulated detector preset perfect, good or poor, or a detector2d output "
                            "bag (or directory of bags) matched by image stamp (default perfect)")
    build.add_argument("--seed", type=int, default=0, help="seed of the simulated 2D detector's noise (default 0)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .data.build import BuildOptions, build_cache
    from .data.summary import format_summary

    options = BuildOptions(past_sweeps=args.past_sweeps, images=args.images, boxes2d=args.boxes2d, seed=args.seed)
    report = build_cache(args.dataroot, args.version, args.split, args.out, options, progress=not args.no_progress)
    print(f"{args.out}: {len(report.rebuilt)} scene(s) built, {len(report.reused)} up to date")
    print(format_summary(report.manifest["summary"]))
    return 0
