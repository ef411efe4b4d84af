"""The whole offline chain on one dataroot split: convert -> replay the perception graph -> score -> pictures.

Shared by `perception3d demo`, the end-to-end acceptance tests and `perception3d bench scores`, so all three
measure the same thing. Imports every layer (like cli.py); nothing imports it but them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .data.convert import convert
from .data.nuscenes_io import open_nuscenes
from .data.simulated_2d import PRESETS
from .data.synth import SynthConfig, synthesize
from .eval.keyframes import split_scenes
from .eval.report import EvalReport, evaluate
from .runtime.bag import ReplaySummary
from .runtime.graph import FULL_GRAPH
from .runtime.replay_processes import replay_in_processes
from .viz.bag_frame import load_frame
from .viz.figure import render_frame

GEOMETRIC_NODES = ("detection3d", "segmentation", "occupancy")
TASKS = ("det", "seg", "occ")
LEARNED_2D = "detector2d"  # run_preset's `preset` for the graph's own 2D detector instead of a simulated stream


@dataclass
class PresetRun:
    """What one 2D preset produced: input and output bags, replay summaries, scores and pictures."""

    preset: str
    input_bags: list[Path]
    output_bags: list[Path]
    summaries: list[ReplaySummary]
    report: EvalReport
    pictures: list[Path] = field(default_factory=list)


def synthetic_dataroot(out: Path, scenes: int = 1, seconds: float = 8.0, seed: int = 0,
                       progress: bool = True) -> Path:
    """A synthetic nuScenes dataroot; with one scene, that scene is the `synth_val` split."""
    return synthesize(out, SynthConfig(scenes=scenes, seconds=seconds, seed=seed), progress=progress)


def run_preset(dataroot: Path, version: str, split: str, preset: str, work: Path, pictures: int = 0,
               config: Path | None = None, progress: bool = True) -> PresetRun:
    """Convert the split's scenes with the simulated 2D preset, replay the geometric graph (its two node groups in
    worker processes on a machine of two cores or more: runtime.replay_processes), score, draw.

    preset LEARNED_2D ('detector2d') converts without simulated detections and replays the full graph, so the
    geometric nodes read the 2D boxes of the detector2d node (its shipped checkpoint by default).

    Layout under `work`: bags/<preset>/<scene>, out/<preset>/<scene>, eval/<preset>/, frames/<preset>_kfN.png.
    `pictures` keyframes (spread over the first scene) are drawn.
    """
    nusc = open_nuscenes(dataroot, version)
    scenes = split_scenes(nusc, split)
    simulated = None if preset == LEARNED_2D else PRESETS[preset]
    inputs = convert(dataroot, version, work / "bags" / preset, scenes, simulated, progress=progress)
    graph = FULL_GRAPH.select((LEARNED_2D, *GEOMETRIC_NODES) if preset == LEARNED_2D else GEOMETRIC_NODES)
    outputs, summaries = [], []
    for bag in inputs:
        out = work / "out" / preset / bag.name
        summaries.append(replay_in_processes(bag, out, graph, config=config, progress=progress))
        outputs.append(out)
    report = evaluate(nusc, outputs, split, list(TASKS), work / "eval" / preset)
    run = PresetRun(preset, inputs, outputs, summaries, report)
    keyframes = len([s for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] == inputs[0].name])
    for i in range(pictures):
        index = (i + 1) * keyframes // (pictures + 1)
        png = work / "frames" / f"{preset}_{inputs[0].name}_kf{index:02d}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        render_frame(load_frame([outputs[0], inputs[0]], index, keyframes_only=True)).save(png)
        run.pictures.append(png)
    return run
