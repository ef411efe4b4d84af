"""`perception3d view OUT [--input BAG] (--frame K | --keyframe K) --png FILE`: one frame as a picture."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", type=Path, help="output bag of `perception3d replay`")
    parser.add_argument("--input", type=Path, default=None,
                        help="the input bag that was replayed (camera images, 2D detections, ground truth)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--frame", type=int, default=None, help="index of the output frame (LiDAR sweep)")
    which.add_argument("--keyframe", type=int, default=None,
                       help="index among the frames with ground truth (annotated keyframes)")
    parser.add_argument("--png", type=Path, required=True, help="where to write the picture")


def run(args: argparse.Namespace) -> int:
    from .bag_frame import load_frame
    from .figure import render_frame

    bags = [args.output] + ([args.input] if args.input else [])
    keyframes_only = args.keyframe is not None
    index = args.keyframe if keyframes_only else (args.frame or 0)
    frame = load_frame(bags, index, keyframes_only)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    render_frame(frame).save(args.png)
    print(f"wrote {args.png}")
    return 0
