"""`perception3d replay BAG --out OUT`: run graph nodes over a rosbag2 without ROS and record their outputs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input rosbag2 directory (MCAP or sqlite3)")
    parser.add_argument("--out", type=Path, required=True, help="output rosbag2 directory to create (MCAP)")
    parser.add_argument("--graph", nargs="+", default=["full"], metavar="full|NODE",
                        help="'full' (default) or the node names to run, e.g. detection3d segmentation")
    parser.add_argument("--graph-def", default="perception3d.runtime.graph:FULL_GRAPH", metavar="MODULE:NAME",
                        help="the Graph object to select nodes from (default: the full perception graph); another "
                             "one runs custom node sets")
    parser.add_argument("--config", type=Path, default=None,
                        help="parameter file (layout of config/perception3d.yaml); default: built-in defaults")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                        help="rename a topic of the graph, e.g. /LIDAR_TOP/points:=/lidar/points (repeatable)")
    parser.add_argument("--copy-inputs", action="store_true",
                        help="also copy every input topic the nodes read into the output bag (/tf and /tf_static "
                             "are always copied)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..msgs.bag import sigterm_as_interrupt
    from .bag import parse_remaps, replay
    from .graph import load_graph

    graph = load_graph(args.graph_def).select(args.graph).with_remaps(parse_remaps(args.remap))
    with sigterm_as_interrupt():
        summary = replay(args.bag, args.out, graph, config=args.config, copy_inputs=args.copy_inputs,
                         progress=not args.no_progress)
    print(summary.format())
    if summary.interrupted:
        return 130
    if summary.error:
        print(f"perception3d replay: error: {summary.error}", file=sys.stderr)
        return 2
    return 0
