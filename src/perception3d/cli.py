"""The `perception3d` command. Each subcommand lives in its own module, which provides
`add_arguments(parser)` and `run(args) -> int`; heavy imports stay inside `run`."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import BagWriteError, Perception3DError

# name -> (module, one-line help). Modules are imported when the parser is built; keep their top level light.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("perception3d.demo", "the whole chain on a synthetic scene: data, replay, scores, pictures"),
    "synth": ("perception3d.data.synth_command", "write a synthetic nuScenes-schema dataroot with full ground truth"),
    "convert": ("perception3d.data.convert_command", "convert nuScenes scenes into rosbag2 (MCAP) files"),
    "replay": ("perception3d.runtime.replay_command", "run graph nodes over a rosbag2 without ROS, record outputs"),
    "recover": ("perception3d.runtime.recover_command",
                "rewrite a damaged or unfinished rosbag2 (MCAP) into a readable one, keeping every intact message"),
    "eval": ("perception3d.eval.command", "score replay outputs against a dataroot's ground truth"),
    "view": ("perception3d.viz.command", "draw one frame of a replay (BEV + six cameras) into a PNG"),
    "dataset": ("perception3d.train.dataset_command", "build a cache of training samples (one per LiDAR sweep)"),
    "train": ("perception3d.train.train_command", "train a learned model (detector2d or a LiDAR node's model)"),
    "export": ("perception3d.train.export_command", "export a trained model to ONNX"),
    "params": ("perception3d.runtime.params_command", "parameter schema, default file and README tables"),
    "bench": ("perception3d.bench.command", "run a benchmark suite and record its figures"),
    "doctor": ("perception3d.runtime.doctor_command", "check a ROS 2 machine before launching: ROS packages, torch and "
                                                      "device, parameter file, checkpoint (each problem with its fix)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception3d",
        description="Camera + LiDAR 3D perception for ROS 2: offline tools (data, replay, evaluation, benchmarks).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, for records (e.g. a checkpoint's training command)
    try:
        return int(args._run(args) or 0)
    except BagWriteError as exc:
        print(f"perception3d {args.command}: error: {exc}", file=sys.stderr)
        return 3
    except Perception3DError as exc:
        print(f"perception3d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perception3d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
