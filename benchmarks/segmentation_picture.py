"""Top view of one keyframe's point labels: ground truth | geometric mode | learned mode, with a class legend.

    python benchmarks/segmentation_picture.py --dataroot ROOT --version v1.0-synth --keyframe 13 \
        --geometric OUT_BAG --learned OUT_BAG --out picture.png

The bags are replay outputs of the same converted scene (e.g. `pipeline.run_preset` with and without a config that
sets `segmentation: {mode: learned}`); the ground truth is the keyframe's lidarseg file (nuScenes fine classes mapped
to the 16 evaluation classes), aligned point by point with the published cloud (the node keeps the input order).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perception3d.core.classes import FINE_TO_COARSE, LIDARSEG_CLASSES, occupancy_colors
from perception3d.data.nuscenes_io import open_nuscenes, read_lidarseg
from perception3d.msgs.bag import BagReader
from perception3d.msgs.pointcloud import pointcloud2_to_array
from perception3d.viz.bev import BevView, draw_points
from perception3d.viz.figure import side_by_side

IGNORE_COLOR = (60, 60, 60)
LEGEND_WIDTH = 190


def labelled_cloud(bag: Path, stamp_ns: int) -> np.ndarray:
    """The segmentation output cloud of a replay output bag nearest to stamp_ns."""
    with BagReader(bag) as reader:
        messages = reader.messages(["/perception/segmentation/pointcloud"])
        message = min(messages, key=lambda m: abs(m.stamp_ns - stamp_ns))
        return pointcloud2_to_array(message.decode())


def panel(view: BevView, xy: np.ndarray, labels: np.ndarray, title: str) -> Image.Image:
    colors = occupancy_colors()
    image = np.full((view.size_px, view.size_px, 3), 20, np.uint8)
    draw_points(image, view, xy, np.where((labels == 0)[:, None], np.array(IGNORE_COLOR, np.uint8), colors[labels]))
    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).text((8, 8), title, fill=(255, 255, 255))
    return picture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataroot", type=Path, required=True)
    parser.add_argument("--version", default="v1.0-synth")
    parser.add_argument("--keyframe", type=int, default=0, help="keyframe index in time order")
    parser.add_argument("--geometric", type=Path, required=True, help="replay output bag, geometric segmentation")
    parser.add_argument("--learned", type=Path, required=True, help="replay output bag, learned segmentation")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    nusc = open_nuscenes(args.dataroot, args.version)
    sample = sorted(nusc.sample, key=lambda s: s["timestamp"])[args.keyframe]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    clouds = {name: labelled_cloud(bag, lidar["timestamp"] * 1000)
              for name, bag in (("geometric", args.geometric), ("learned", args.learned))}
    truth = FINE_TO_COARSE[read_lidarseg(nusc, lidar["token"], len(clouds["learned"]))]
    xy = np.stack([clouds["learned"]["x"], clouds["learned"]["y"]], axis=1)  # LiDAR frame: x forward, y left
    view = BevView(half_extent_m=40.0, px_per_m=8.0)
    panels = [panel(view, xy, truth, "ground truth"),
              panel(view, xy, clouds["geometric"]["label"], "geometric mode"),
              panel(view, xy, clouds["learned"]["label"], "learned mode")]
    legend = Image.new("RGB", (LEGEND_WIDTH, view.size_px), (20, 20, 20))
    draw = ImageDraw.Draw(legend)
    colors = occupancy_colors()
    for i, name in enumerate(LIDARSEG_CLASSES):
        color = IGNORE_COLOR if i == 0 else tuple(int(v) for v in colors[i])
        draw.rectangle([8, 10 + 18 * i, 20, 22 + 18 * i], fill=color)
        draw.text((26, 10 + 18 * i), name, fill=(255, 255, 255))
    side_by_side([*panels, legend]).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
