"""Top view of one keyframe's semantic occupancy: ground truth | geometric mode | learned mode, with a class legend.
A column shows the class of its topmost occupied voxel; black: observed and free; grey: nothing observed. The ground
truth is drawn on the voxels its keyframe sweep observed, the voxels the scores count.

    python benchmarks/occupancy_picture.py --dataroot ROOT --version v1.0-synth --split synth_val --keyframe 20 \
        --geometric OUT_BAG --learned OUT_BAG --out picture.png

The bags are replay outputs of the same converted scene, one with occupancy `mode: geometric` and one with
`mode: learned` (e.g. `pipeline.run_preset` with two configs); the keyframe is an index into the split's keyframes in
time order, and each mode's grid is the message stamped with it (as `perception3d eval` scores it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perception3d.core.classes import OCCUPANCY_CLASSES, OCCUPANCY_FREE, OCCUPANCY_UNKNOWN, occupancy_colors
from perception3d.data.nuscenes_io import open_nuscenes
from perception3d.data.occupancy_gt import load_occupancy, occupancy_relpath
from perception3d.eval.keyframes import outputs_at_stamps, split_keyframes
from perception3d.msgs.occupancy import occupancy_msg_to_volume
from perception3d.msgs.topics import OCCUPANCY_GRID_TOPIC
from perception3d.viz.bev import BevView, draw_ego, occupancy_top_view
from perception3d.viz.figure import draw_legend, side_by_side

LEGEND_WIDTH = 170
UNOBSERVED_COLOR = (35, 35, 35)  # occupancy_top_view's colour of a column with nothing observed


def panel(volume: np.ndarray, grid, view: BevView, title: str) -> Image.Image:
    picture = Image.fromarray(occupancy_top_view(volume, grid, view))
    draw_ego(picture, view)
    ImageDraw.Draw(picture).text((8, 8), title, fill=(255, 255, 255))
    return picture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataroot", type=Path, required=True)
    parser.add_argument("--version", default="v1.0-synth")
    parser.add_argument("--split", default="synth_val")
    parser.add_argument("--keyframe", type=int, default=0, help="index into the split's keyframes, in time order")
    parser.add_argument("--geometric", type=Path, required=True, help="replay output bag, geometric occupancy")
    parser.add_argument("--learned", type=Path, required=True, help="replay output bag, learned occupancy")
    parser.add_argument("--half-extent", type=float, default=40.0, help="metres shown around the vehicle")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    nusc = open_nuscenes(args.dataroot, args.version)
    keyframe = split_keyframes(nusc, args.split)[args.keyframe]
    truth, grid, meta = load_occupancy(args.dataroot / occupancy_relpath(args.version, keyframe.lidar_token))
    volumes = {"ground truth (observed voxels)": np.where(meta["observed"], truth, OCCUPANCY_UNKNOWN).astype(np.uint8)}
    for title, bag in (("geometric mode", args.geometric), ("learned mode", args.learned)):
        at_keyframe = outputs_at_stamps([bag], [OCCUPANCY_GRID_TOPIC], {keyframe.stamp_ns})
        (message,) = at_keyframe[OCCUPANCY_GRID_TOPIC].values()
        volume, mode_grid, _, _ = occupancy_msg_to_volume(message, OCCUPANCY_GRID_TOPIC)
        if not mode_grid.matches(grid):
            raise SystemExit(f"{bag}: occupancy grid {mode_grid} differs from the ground truth's {grid}")
        volumes[title] = volume
    view = BevView(half_extent_m=args.half_extent, px_per_m=8.0)
    panels = [panel(volume, grid, view, title) for title, volume in volumes.items()]
    colors = occupancy_colors()
    legend = Image.new("RGB", (LEGEND_WIDTH, view.size_px), (70, 70, 70))  # black (free) shows on it
    entries = [("free", tuple(colors[OCCUPANCY_FREE])), ("unobserved", UNOBSERVED_COLOR)]
    entries += [(name, tuple(int(v) for v in colors[label])) for label, name in OCCUPANCY_CLASSES.items()
                if label not in (OCCUPANCY_FREE, OCCUPANCY_UNKNOWN)]
    draw_legend(ImageDraw.Draw(legend), 8, 10, entries)
    side_by_side([*panels, legend]).save(args.out)
    print(f"wrote {args.out} ({keyframe.scene}, keyframe {args.keyframe}, stamp {keyframe.stamp_ns})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
