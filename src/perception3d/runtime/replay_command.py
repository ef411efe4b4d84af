"""`perception3d replay BAG --out OUT`: run graph nodes over a rosbag2 without ROS and record their outputs.

A bag written by `perception3d convert` records its rig (core.sensor_timing.RigTiming: cameras, LiDARs, measured
camera firing offsets) in its metadata. When the parameters (the --config file, or the defaults) set neither
`camera_names` nor `sync.camera_offsets_s`, replay takes both from there, and `lidar_names` (trigger first, the others
merged) when they do not set it; it reads the trigger LiDAR's topic when it is not /LIDAR_TOP/points. So any
nuScenes-schema rig replays without hand-set parameters.

Exit codes: 0 done (a damaged input is read record by record and what was skipped is listed in the summary);
2 the input or the parameters cannot be used, or reading stopped early; 3 the output bag could not be created or
finished (read-only file system, disk full: the error line names the path and what was kept); 130 interrupted
(Ctrl-C or SIGTERM; the output is closed and readable).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    parser.add_argument("--processes", type=_at_least_one, default=None, metavar="N",
                        help="run the graph's independent node groups in up to N worker processes; 1: every node in "
                             "this process. The geometric graph has two groups, detection3d and segmentation -> "
                             "occupancy. A graph whose nodes are all linked (detector2d feeding the others) runs as "
                             "a pipeline when N is given: detector2d in one worker, the others' groups in up to N - 1 "
                             "more, side by side on different frames (runtime.replay_processes). Default: the cores "
                             "this process may use, independent groups only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def bag_rig(bag: Path) -> Any:
    """The RigTiming recorded in a bag's metadata.yaml, or None when it has none.

    Raises:
        BagError: the recorded rig is malformed.
    """
    import yaml

    from ..core.sensor_timing import RIG_METADATA_KEY, RigTiming
    from ..errors import BagError

    path = Path(bag) / "metadata.yaml"
    try:
        info = yaml.safe_load(path.read_text()).get("rosbag2_bagfile_information") or {}
    except (OSError, AttributeError, yaml.YAMLError):
        return None  # not a readable rosbag2: the bag reader reports it
    text = (info.get("custom_data") or {}).get(RIG_METADATA_KEY)
    if text is None:
        return None
    try:
        return RigTiming.from_json(text)
    except ValueError as exc:
        raise BagError(f"{path}: custom_data {exc}") from exc


def _sets(doc: Mapping[str, Any], key: str) -> bool:
    """True when any section of a parameter document sets the dotted parameter `key`."""
    for section in doc.values():
        node = (section or {}).get("ros__parameters") or {}
        for part in key.split(".")[:-1]:
            node = node.get(part) or {}
        if key.split(".")[-1] in node:
            return True
    return False


def rig_parameter_file(config: Path | None, rig: Any, folder: Path) -> tuple[Path | None, list[str]]:
    """A parameter file = `config` (None: the defaults) plus the bag rig's camera_names and sync.camera_offsets_s
    (unless the config sets either) and lidar_names (unless the config sets it), written into folder, and the names
    of what it took from the rig; (None, []) when the config sets all of them itself (the user's choice wins)."""
    import yaml

    doc = yaml.safe_load(config.read_text()) if config is not None else None
    doc = dict(doc or {})
    cameras = not _sets(doc, "camera_names") and not _sets(doc, "sync.camera_offsets_s")
    lidars = not _sets(doc, "lidar_names")
    if not cameras and not lidars:
        return None, []
    shared = dict(doc.get("/**") or {})
    params = dict(shared.get("ros__parameters") or {})
    if cameras:
        params["camera_names"] = list(rig.cameras)
        params["sync"] = {**(params.get("sync") or {}),
                          "camera_offsets_s": [float(rig.camera_offsets_s[c]) for c in rig.cameras]}
    if lidars:
        params["lidar_names"] = list(rig.lidars)
    doc["/**"] = {**shared, "ros__parameters": params}
    path = folder / "parameters_with_bag_rig.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, ["camera_names", "sync.camera_offsets_s"] * cameras + ["lidar_names"] * lidars


def run(args: argparse.Namespace) -> int:
    from ..msgs.bag import interrupt_once
    from ..nodes.params import load_parameters
    from .bag import parse_remaps
    from .graph import LIDAR_TOPIC, load_graph
    from .replay_processes import replay_in_processes

    remaps = parse_remaps(args.remap)
    rig = bag_rig(args.bag)
    trigger_topic = f"/{rig.trigger_lidar}/points" if rig is not None else LIDAR_TOPIC
    if trigger_topic != LIDAR_TOPIC and LIDAR_TOPIC not in remaps:
        remaps[LIDAR_TOPIC] = trigger_topic
        print(f"replay: the bag's trigger LiDAR is {rig.trigger_lidar}: reading {trigger_topic}")
    graph = load_graph(args.graph_def).select(args.graph).with_remaps(remaps)
    config = args.config
    with tempfile.TemporaryDirectory(prefix="perception3d-replay-") as folder:
        if rig is not None:
            load_parameters(config, {n.name: n.load().parameters for n in graph.nodes})  # errors name the user's file
            merged, taken = rig_parameter_file(config, rig, Path(folder))
            if merged is not None:
                config = merged
                print(f"replay: {', '.join(taken)} from the bag metadata (perception3d.rig, measured by convert over "
                      f"{rig.keyframes} keyframes): LiDARs {list(rig.lidars)}, camera offsets "
                      + ", ".join(f"{c} {rig.camera_offsets_s[c]:+.4f} s" for c in rig.cameras))
        with interrupt_once():  # a second Ctrl-C cannot cut the closing of the output bag or this report short
            summary = replay_in_processes(args.bag, args.out, graph, args.processes, config=config,
                                          copy_inputs=args.copy_inputs, progress=not args.no_progress)
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
