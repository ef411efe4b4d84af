"""`perception3d bench SUITE [--out DIR]`: run benchmark suites and record their figures."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# suite -> module with run(out_dir: Path) -> Path (the written markdown)
SUITES: dict[str, str] = {
    "msgs": "perception3d.bench.msgs",
    "sync": "perception3d.bench.sync",
    "synth": "perception3d.bench.synth",
    "convert": "perception3d.bench.convert",
    "algo": "perception3d.bench.algo",
    "graph": "perception3d.bench.graph",
    "scores": "perception3d.bench.scores",
    "detector2d": "perception3d.bench.detector2d",
    "learned": "perception3d.bench.learned",
    "robustness": "perception3d.bench.robustness",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=[*SUITES, "all"], help="which benchmark suite to run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="directory for <suite>.md and <suite>.json (default: benchmarks/results)")


def run(args: argparse.Namespace) -> int:
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    for suite in suites:
        path = importlib.import_module(SUITES[suite]).run(args.out)
        print(path.read_text())
        print(f"recorded in {path}")
    return 0
