"""`perception3d convert --dataroot DIR --version V [--scene NAME ...] --out OUTDIR [--simulate-2d PRESET]
[--category-map nuscenes|lyft|FILE]`: one rosbag2 (MCAP) per scene of a nuScenes-schema dataroot (nuScenes, Lyft
Level 5, ...). Prints a ROS 2 parameter snippet with the cameras and their measured firing offsets."""
from __future__ import annotations

import argparse
from pathlib import Path

SIMULATE_2D_PRESETS = ("perfect", "good", "poor")  # = simulated_2d.PRESETS, kept here so the parser stays light


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataroot", type=Path, required=True,
                        help="nuScenes-schema dataroot (holds <version>/): nuScenes, Lyft Level 5, ...")
    parser.add_argument("--version", required=True, help="e.g. v1.0-mini, v1.0-trainval, v1.0-synth")
    parser.add_argument("--scene", nargs="+", default=None, metavar="NAME", help="scene names (default: all)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the per-scene bags")
    parser.add_argument("--simulate-2d", choices=SIMULATE_2D_PRESETS, default=None,
                        help="also write SIMULATED /CAM_*/detections from ground truth with this noise preset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated 2D detector (default 0)")
    parser.add_argument("--category-map", default=None, metavar="nuscenes|lyft|FILE",
                        help="dataset category -> detection class map: a built-in one or a YAML file (default: the "
                             "built-in map that lists most of the dataset's categories)")


def run(args: argparse.Namespace) -> int:
    from .convert import convert
    from .simulated_2d import PRESETS

    model = PRESETS[args.simulate_2d] if args.simulate_2d else None
    bags = convert(args.dataroot, args.version, args.out, args.scene, model, args.seed,
                   category_map=args.category_map, log=print)
    for bag in bags:
        print(f"wrote {bag}")
    return 0
