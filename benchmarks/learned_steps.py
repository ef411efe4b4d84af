"""The learned graph's work outside its networks, step by step, in several checkouts alternated (issue 18).

Each checkout replays BAG through the learned graph (detector2d + detection3d, segmentation and occupancy in learned
mode, shipped checkpoints, torch on the CPU, one thread) in its own process with PYTHONPATH=<checkout>/src, after one
warm-up replay, and reads the process CPU time of the steps that run around the networks on the CPU: detector2d's
letterbox, decoding and output messages, detection3d's anchor rows and BEV images, and the networks' forward passes
(every node's, through core.models.runner.TorchRunner). Per checkout and round: the median per call [ms] of each
step and of each node's whole processing (the runner's 'total').

    .venv/bin/python benchmarks/learned_steps.py BAG /path/to/old /path/to/new [--rounds 2]

BAG: a scene converted without --simulate-2d (detector2d runs on its images). On a GPU machine the networks'
share shrinks and these steps set the rate (benchmarks/results/learned_graph.md).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from detect3d_steps import alternated, checkout_comparison

# (module, attribute) of each timed step, as the callers look them up at call time
STEPS = {
    "letterbox": ("perception3d.core.models.inference", "letterbox_batch"),
    "decode 2D": ("perception3d.core.models.inference", "decode_detections"),
    "messages 2D": ("perception3d.nodes.detector2d", "detections2d_to_msg"),
    "anchor rows": ("perception3d.core.models.detr3d_inputs", "anchor_rows"),
    "BEV images": ("perception3d.core.models.detr3d_inputs", "detr3d_bev"),
}
NODES = ("detector2d", "detection3d", "segmentation", "occupancy")


def measure(bag: Path) -> dict[str, float]:
    """{step: median ms per call} of a learned replay of bag in this process (CPU time), after a warm-up replay."""
    import importlib

    import numpy as np

    from perception3d.core.models.runner import TorchRunner
    from perception3d.nodes.params import parameter_file
    from perception3d.runtime.bag import replay
    from perception3d.runtime.graph import FULL_GRAPH

    samples: dict[str, list[float]] = defaultdict(list)

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                samples[name].append(1e3 * (time.process_time() - start))
        return wrapper

    for name, (module, attribute) in STEPS.items():
        owner = importlib.import_module(module)
        setattr(owner, attribute, timed(name, getattr(owner, attribute)))
    TorchRunner.__call__ = timed("networks (all nodes)", TorchRunner.__call__)
    sections = {"detector2d": {"device": "cpu", "threads": 1}}
    sections.update({node: {"mode": "learned", "device": "cpu", "threads": 1} for node in NODES[1:]})
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "params.yaml"
        config.write_text(parameter_file(sections))
        for round_ in range(2):
            samples.clear()
            summary = replay(bag, Path(tmp) / f"out{round_}", FULL_GRAPH.select(NODES), config=config,
                             progress=False, log=lambda _: None)
    out = {name: float(np.median(values)) for name, values in samples.items()}
    for runner in summary.runners:
        out[f"{runner.name} total"] = float(np.median(runner.stats.timings_ms["total"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bag", type=Path)
    args = checkout_comparison(parser, 2, lambda worker_args: measure(worker_args.bag))
    if args is None:
        return
    columns = [*STEPS, "networks (all nodes)", *(f"{node} total" for node in NODES)]
    print(f"| round | checkout | load | {' | '.join(columns)} |")
    print("|---" * (len(columns) + 3) + "|")
    for round_, checkout, load, medians in alternated(__file__, args.checkouts, args.rounds, str(args.bag),
                                                      "--worker"):
        cells = " | ".join(f"{medians.get(name, float('nan')):.1f}" for name in columns)
        print(f"| {round_} | {checkout} | {load:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
