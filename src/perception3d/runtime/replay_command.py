"""`perception3d replay BAG --out OUT`: run graph nodes over a rosbag2 without ROS and record their outputs.

Exit codes: 0 done (a damaged input is read record by record and what was skipped is listed in the summary);
2 the input or the parameters cannot be used, or reading stopped early; 3 the output bag could not be created or
finished (read-only file system, disk full: the error line names the path and what was kept); 130 interrupted
(Ctrl-C or SIGTERM; the output is closed and readable).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_CODES = "exit codes: 0 done, 2 unusable input or parameters, 3 output not writable (disk full, read-only), " \
             "130 interrupted"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES
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
    from ..msgs.bag import interrupt_once
    from .bag import parse_remaps, replay
    from .graph import load_graph

    graph = load_graph(args.graph_def).select(args.graph).with_remaps(parse_remaps(args.remap))
    with interrupt_once():  # a second Ctrl-C cannot cut the closing of the output bag or this report short
        summary = replay(args.bag, args.out, graph, config=args.config, copy_inputs=args.copy_inputs,
                         progress=not args.no_progress)
        print(summary.format())
    if summary.output_error:
        print(f"perception3d replay: error: {summary.output_error}", file=sys.stderr)
        return 3
    if summary.interrupted:
        return 130
    if summary.error:
        print(f"perception3d replay: error: {summary.error}", file=sys.stderr)
        return 2
    return 0
