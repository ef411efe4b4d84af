"""The full learned graph (detector2d + detection3d, segmentation and occupancy in learned mode) replayed in one
process on one device: per-node p50 / p95 and the rate the graph sustains (issue 18's acceptance 4: at least 30 Hz
on a lent GPU), beside the geometric LiDAR nodes behind the same detector2d.

BAG is a scene converted with camera images and no simulated 2D stream (`perception3d convert` without
--simulate-2d), so detector2d runs on every firing cycle and the LiDAR nodes read its boxes. Each variant replays
BAG ROUNDS + 1 times, in turn with the other variants; the first round warms up (cuDNN autotuning, the caching
allocator, lazy tables) and is not counted. Per sweep:

- node time: the sum of every node's processing time over the replay (the runner's `total`: synchronization of the
  frame, the node's pre / infer / post and its output messages) divided by the sweeps; its rate is the most sweeps
  per second the graph's nodes can take back to back in one process.
- replay wall: the replay's wall clock divided by the sweeps; that adds reading the bag, decoding JPEG images and
  writing the output bag, work a ROS 2 host shares with its transport.

With --processes N (N >= 2) the graph replays as a pipeline (runtime.replay_processes: detector2d in one worker
process, the LiDAR nodes' groups in up to N - 1 more, side by side on different frames, as ROS 2 runs nodes in
processes of their own): the replay wall rate is then what the graph sustains, and node time per sweep is the work
of all processes together.

    python benchmarks/learned_graph.py BAG [--device cuda] [--precision fp32 fp16] [--rounds 3] [--processes N]
        [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from perception3d.bench.common import format_table, write_results
from perception3d.nodes.params import parameter_file
from perception3d.runtime.graph import FULL_GRAPH
from perception3d.runtime.replay_processes import replay_in_processes

NODES = ("detector2d", "detection3d", "segmentation", "occupancy")
LIDAR_NODES = NODES[1:]
SWEEP_NODE = "detection3d"  # fires once per LiDAR sweep in either mode


def variant_parameters(mode: str, device: str, precision: str) -> dict[str, dict]:
    """Parameter sections of the graph: detector2d and the learned LiDAR nodes on `device` at `precision`."""
    model = {"device": device, "precision": precision}
    sections = {"detector2d": dict(model)}
    for node in LIDAR_NODES:
        sections[node] = {"mode": mode, **(model if mode == "learned" else {})}
    return sections


def replay_round(bag: Path, work: Path, sections: dict[str, dict], processes: int = 1
                 ) -> tuple[dict[str, list[float]], int, float]:
    """One replay of the graph (in `processes` processes): per-node processing times [ms], sweeps processed, wall
    clock [s]."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "params.yaml"
    config.write_text(parameter_file(sections))
    start = time.perf_counter()
    summary = replay_in_processes(bag, work / "out", FULL_GRAPH.select(NODES), processes, config=config,
                                  progress=False, log=lambda _: None)  # node warnings: the last sweep's cameras
    wall = time.perf_counter() - start
    if summary.error or summary.output_error:
        raise RuntimeError(f"replay of {bag} failed: {summary.error or summary.output_error}")
    totals = {runner.name: list(runner.stats.timings_ms["total"]) for runner in summary.runners}
    sweeps = next(r.stats.frames_processed for r in summary.runners if r.name == SWEEP_NODE)
    return totals, sweeps, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16"])
    parser.add_argument("--rounds", type=int, default=3, help="counted replays per variant (default 3)")
    parser.add_argument("--processes", type=int, default=1,
                        help="replay as a pipeline in this many processes (default 1: one process)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    variants = {f"learned {p}": variant_parameters("learned", args.device, p) for p in args.precision}
    variants["geometric (detector2d fp32)"] = variant_parameters("geometric", args.device, "fp32")
    load_before = os.getloadavg()[0]
    totals = {name: {node: [] for node in NODES} for name in variants}
    sweeps = dict.fromkeys(variants, 0)
    walls = dict.fromkeys(variants, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds + 1):
            for index, (name, sections) in enumerate(variants.items()):
                node_ms, n, wall = replay_round(args.bag, Path(tmp) / f"{round_index}_{index}", sections,
                                                args.processes)
                print(f"round {round_index} {name}: {n} sweeps, {wall:.2f} s wall", flush=True)
                if round_index == 0:
                    continue
                for node in NODES:
                    totals[name][node] += node_ms.get(node, [])
                sweeps[name] += n
                walls[name] += wall
    load_after = os.getloadavg()[0]

    rows, data = [], {"device": args.device, "rounds": args.rounds, "processes": args.processes, "variants": {}}
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    for name in variants:
        node_stats = {node: {"frames": len(values), "p50_ms": float(np.percentile(values, 50)),
                             "p95_ms": float(np.percentile(values, 95)), "sum_ms": float(np.sum(values))}
                      for node, values in totals[name].items() if values}
        node_ms_per_sweep = sum(s["sum_ms"] for s in node_stats.values()) / sweeps[name]
        wall_ms_per_sweep = walls[name] * 1e3 / sweeps[name]
        data["variants"][name] = {"nodes": node_stats, "sweeps": sweeps[name],
                                  "node_ms_per_sweep": node_ms_per_sweep, "wall_ms_per_sweep": wall_ms_per_sweep}
        cells = [f"{node_stats[n]['p50_ms']:.1f} / {node_stats[n]['p95_ms']:.1f}" for n in NODES]
        rows.append([name, *cells, f"{node_ms_per_sweep:.1f} ms ({1e3 / node_ms_per_sweep:.1f} Hz)",
                     f"{wall_ms_per_sweep:.1f} ms ({1e3 / wall_ms_per_sweep:.1f} Hz)"])
    data["load_average_1min"] = [load_before, load_after]
    table = format_table(["graph", *(f"{n} p50 / p95 ms" for n in NODES), "node time per sweep (rate)",
                          "replay wall per sweep (rate)"], rows)
    notes = (f"Device: {device_name} ({args.device}), torch {torch.__version__}. Bag: {args.bag.name}, "
             f"{sweeps[next(iter(variants))] // max(args.rounds, 1)} sweeps with six JPEG cameras; detector2d "
             f"fires on each camera firing cycle, the LiDAR nodes on each sweep. "
             + ("One process. " if args.processes == 1 else f"A pipeline in {args.processes} processes "
                "(runtime.replay_processes). ")
             + f"{args.rounds} counted replays per "
             "variant after one warm-up replay, the variants in turn. Node time per sweep: every node's processing "
             "time (the runner's total: frame, pre / infer / post, output messages) summed over the replays and "
             "divided by the sweeps. Replay wall adds reading the bag, JPEG decoding and writing the output bag. "
             f"1-minute load average {load_before:.1f} before and {load_after:.1f} after, on {os.cpu_count()} "
             "cores.")
    where = "in one process" if args.processes == 1 else f"as a pipeline in {args.processes} processes"
    path = write_results(args.out, "learned_graph", f"The full learned graph {where} (benchmarks/learned_graph.py)",
                         table, data, notes)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
