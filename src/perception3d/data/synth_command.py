"""`perception3d synth --out DIR [--scenes N] [--first-scene F] [--seconds S] [--seed K] [--world-version V]
[--rendered-visibility]`: write a synthetic nuScenes dataroot."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new dataroot directory (must not exist or be empty)")
    parser.add_argument("--scenes", type=int, default=2, help="number of scenes (default 2)")
    parser.add_argument("--first-scene", type=int, default=1,
                        help="number of the first scene written (default 1): scene-synth-0007 of a dataroot written "
                             "with --first-scene 7 holds exactly the files of scene 7 of one written from 1")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each scene [s] (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files (default 0)")
    parser.add_argument("--world-version", type=int, choices=(1, 2), default=1,
                        help="synthetic world version: 1 = the original straight road (default), 2 = hard cases "
                             "(touching rows, groups, clutter, ...); recorded in each scene's description")
    parser.add_argument("--rendered-visibility", action=argparse.BooleanOptionalAction, default=None,
                        help="record each object's rendered visible fraction per camera image (visibility2d), which "
                             "the converter's simulated 2D detector then takes its occlusion from instead of the "
                             "boxes' rectangles; default: world version 2 records it, version 1 does not")
    parser.add_argument("--version", default="v1.0-synth", help="version folder name (default v1.0-synth)")
    parser.add_argument("--occupancy-range", type=float, nargs=6, default=None,
                        metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                        help="occupancy volume range in base_link [m] (default -51.2 -51.2 -5 51.2 51.2 3)")
    parser.add_argument("--occupancy-voxel", type=float, default=None, help="occupancy voxel size [m] (default 0.4)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes rendering camera images (default min(4, CPU count); 1 = no pool); the "
                             "output does not depend on it")
    parser.add_argument("--render-scale", type=float, default=None,
                        help="camera ray-casting resolution relative to 1600x900 before upsampling (default 0.4)")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .synth import SynthConfig, synthesize

    if args.first_scene < 1:
        raise ConfigError(f"--first-scene {args.first_scene}: scenes are numbered from 1")
    config = SynthConfig(scenes=args.scenes, first_scene=args.first_scene - 1, seconds=args.seconds, seed=args.seed,
                         version=args.version, world_version=args.world_version,
                         rendered_visibility=args.rendered_visibility)
    if args.occupancy_range is not None:
        config.occupancy_range = tuple(args.occupancy_range)
    if args.occupancy_voxel is not None:
        config.occupancy_voxel = args.occupancy_voxel
    if args.workers is not None:
        config.workers = max(1, args.workers)
    if args.render_scale is not None:
        config.render_scale = args.render_scale
    out = synthesize(args.out, config)
    print(f"wrote {config.scenes} scene(s) of {config.seconds:g} s to {out} (version {config.version})")
    return 0
