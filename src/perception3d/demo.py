"""`perception3d demo`: the main job on the embedded default, for a new user, in one command.

Generates a short synthetic nuScenes scene, converts it to a rosbag2 with simulated 2D detections, replays the
geometric perception graph without ROS, scores it against the ground truth and draws a few frames, all into one
folder, then says where everything is.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from .data.simulated_2d import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything (default demo_out)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the synthetic scene [s] (default 8)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="good",
                        help="simulated 2D detector quality (default good)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--pictures", type=int, default=3, help="keyframes to draw (default 3)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from .pipeline import run_preset, synthetic_dataroot

    out: Path = args.out
    if out.exists():
        if not args.force:
            print(f"perception3d demo: {out} exists; pass --force to replace it or choose another --out")
            return 2
        shutil.rmtree(out)
    start = time.perf_counter()
    print(f"[1/4] synthetic nuScenes scene ({args.seconds:g} s, seed {args.seed}) -> {out / 'dataroot'}")
    dataroot = synthetic_dataroot(out / "dataroot", 1, args.seconds, args.seed)
    print(f"[2/4] convert with the simulated '{args.preset}' 2D detector, [3/4] replay the graph, [4/4] score")
    result = run_preset(dataroot, "v1.0-synth", "synth_val", args.preset, out, pictures=args.pictures)
    scores = out / "scores.md"
    scores.write_text(f"# perception3d demo: synthetic scene, simulated 2D preset '{args.preset}'\n\n"
                      + result.report.markdown() + "\n")
    for summary in result.summaries:
        print(summary.format())
    print(result.report.markdown())
    print(f"\ndone in {time.perf_counter() - start:.0f} s. Everything is in {out}/:")
    print(f"  input bag (open in Foxglove):  {result.input_bags[0]}")
    print(f"  output bag (perception):       {result.output_bags[0]}")
    print(f"  scores:                        {scores}")
    for png in result.pictures:
        print(f"  picture:                       {png}")
    return 0
