"""Per-node latency of the geometric graph on nuScenes-sized frames, and the replay real-time factor.

Latency: a bag of 40 identical nuScenes-sized sweeps (34,688-ray HDL-32E sweep of ~350 objects, the six cameras of
the real rig with ~30 perfect 2D boxes each; bench.algo's frame) is replayed through detection3d + segmentation +
occupancy with `runtime.bag.replay`, so the figures include message decoding, synchronization and output messages,
exactly as a replay or the ROS host runs them. Real-time factor: a converted 8 s synthetic scene (JPEG images,
simulated 'good' 2D detections) replayed the same way, then with the graph's two node groups in two worker processes
(runtime.replay_processes).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..core.detections import Detections2D
from ..core.sensor_timing import NUSCENES_CAMERA_OFFSETS_S
from ..msgs.bag import BagWriter
from ..msgs.camera_info import camera_model_to_camera_info
from ..msgs.detections import detections2d_to_msg
from ..msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2
from ..msgs.qos import LATCHED, SENSOR, TF
from ..msgs.tf import tf_message, transform_stamped
from ..runtime.bag import ReplaySummary, replay
from ..runtime.graph import FULL_GRAPH
from ..runtime.replay_processes import replay_in_processes
from .algo import Frame, synthetic_frame
from .common import format_table, write_results

SWEEPS = 40
NODES = ("detection3d", "segmentation", "occupancy")
START_NS = 1_600_000_000_000_000_000
PERIOD_NS = 50_000_000
REPLAY_PROCESSES = (1, 2)


def write_frame_bag(path: Path, sweeps: int = SWEEPS, frame: Frame | None = None) -> int:
    """A bag of `sweeps` copies of a frame (default bench.algo's synthetic frame) at 20 Hz; returns the number of 2D
    boxes per frame."""
    frame = frame or synthetic_frame()
    rig = frame.rig
    cloud = np.zeros(len(frame.points), dtype=NUSCENES_LIDAR_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = frame.points.T
    views = {view.camera.frame_id: view for view in frame.views}
    with BagWriter(path) as bag:
        statics = [transform_stamped(rig.T_base_lidar, "base_link", "LIDAR_TOP", START_NS)]
        statics += [transform_stamped(T, "base_link", name, START_NS) for name, (_, T) in rig.cameras.items()]
        bag.write("/tf_static", START_NS, tf_message(statics), LATCHED)
        first = START_NS - PERIOD_NS  # the cameras fire before the first sweep: cover their stamps too
        bag.write("/tf", first, tf_message([transform_stamped(np.eye(4), "map", "base_link", first)]), TF)
        for k in range(sweeps):
            stamp = START_NS + k * PERIOD_NS
            bag.write("/tf", stamp, tf_message([transform_stamped(np.eye(4), "map", "base_link", stamp)]), TF)
            for name, (camera, _) in rig.cameras.items():
                cam_stamp = stamp + int(NUSCENES_CAMERA_OFFSETS_S[name] * 1e9)
                dets = views[name].detections
                bag.write(f"/{name}/camera_info", cam_stamp, camera_model_to_camera_info(camera, cam_stamp), SENSOR)
                bag.write(f"/{name}/detections", cam_stamp,
                          detections2d_to_msg(Detections2D(dets.boxes_xyxy, dets.class_ids, dets.scores, name,
                                                           cam_stamp)), SENSOR)
            bag.write("/LIDAR_TOP/points", stamp, array_to_pointcloud2(cloud, stamp, "LIDAR_TOP"), SENSOR)
            bag.write("/tf", stamp + PERIOD_NS // 2,
                      tf_message([transform_stamped(np.eye(4), "map", "base_link", stamp + PERIOD_NS // 2)]), TF)
    return sum(len(v.detections) for v in frame.views)


def _scene_replays(work: Path) -> dict[int, dict]:
    """{processes: {'scene_s', 'wall_s', 'real_time_factor', 'cpu_s': {process: s}, 'time': the summary's
    cpu_line}} of a converted 8 s synthetic scene replayed in this process (1) and with the graph's two node groups
    in two worker processes (2), one after the other."""
    from ..data.convert import convert
    from ..data.simulated_2d import PRESETS
    from ..pipeline import synthetic_dataroot

    root = synthetic_dataroot(work / "root", 1, 8.0, 3, progress=False)
    [bag] = convert(root, "v1.0-synth", work / "bags", simulate_2d=PRESETS["good"], progress=False)
    out = {}
    for processes in REPLAY_PROCESSES:
        summary = replay_in_processes(bag, work / f"out{processes}", FULL_GRAPH.select(NODES), processes,
                                      progress=False)
        out[processes] = {"scene_s": 8.0, "wall_s": summary.wall_s, "real_time_factor": 8.0 / summary.wall_s,
                          "cpu_s": summary.cpu_s, "time": summary.cpu_line(), "nodes": _sweep_times(summary)}
    return out


def _sweep_times(summary: ReplaySummary) -> dict[str, dict[str, float]]:
    """Per node of a replay, and for the nodes together per sweep (when each ran every sweep): the frames, the p50,
    p95 and greatest wall-clock time and the p50 and p95 CPU time [ms]."""
    series = {name: {runner.name: np.asarray(runner.stats.timings_ms[name]) for runner in summary.runners}
              for name in ("total", "cpu")}
    for times in series.values():
        if len({len(t) for t in times.values()}) == 1:
            times["all"] = np.sum(list(times.values()), axis=0)
    return {name: {"frames": len(t), "p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)),
                   "max_ms": float(t.max()), "cpu_p50_ms": float(np.percentile(series["cpu"][name], 50)),
                   "cpu_p95_ms": float(np.percentile(series["cpu"][name], 95))}
            for name, t in series["total"].items() if len(t)}


def run(out_dir: Path) -> Path:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="p3d-bench-graph-") as tmp:
        work = Path(tmp)
        boxes = write_frame_bag(work / "frames")
        summary = replay(work / "frames", work / "frames_out", FULL_GRAPH.select(NODES), progress=False)
        replays = _scene_replays(work)
    rows, data, totals, cpu_totals = [], {}, np.zeros(SWEEPS), np.zeros(SWEEPS)
    for runner in summary.runners:
        stats = runner.stats
        total, cpu = np.asarray(stats.timings_ms["total"]), np.asarray(stats.timings_ms["cpu"])
        totals[: len(total)] += total
        cpu_totals[: len(cpu)] += cpu
        p50, p95 = stats.percentiles_ms()
        cpu_p50, cpu_p95 = stats.percentiles_ms("cpu")
        first = float(total[0])  # everything a node builds lazily lands here
        stages = {s: stats.percentiles_ms(s) for s in ("pre", "infer", "post")}
        rows.append([runner.name, stats.frames_processed, f"{p50:.1f}", f"{p95:.1f}", f"{cpu_p50:.1f} / {cpu_p95:.1f}",
                     f"{first:.1f}"] + [f"{stages[s][0]:.1f} / {stages[s][1]:.1f}" for s in ("pre", "infer", "post")])
        data[runner.name] = {"p50_ms": p50, "p95_ms": p95, "cpu_p50_ms": cpu_p50, "cpu_p95_ms": cpu_p95,
                             "first_frame_ms": first, "stages_p50_p95_ms": stages, "frames": stats.frames_processed}
    p50_all, p95_all = np.percentile(totals, 50), np.percentile(totals, 95)
    cpu_p50_all, cpu_p95_all = np.percentile(cpu_totals, 50), np.percentile(cpu_totals, 95)
    rows.append(["**all three, per frame**", SWEEPS, f"{p50_all:.1f}", f"{p95_all:.1f}",
                 f"{cpu_p50_all:.1f} / {cpu_p95_all:.1f}", f"{totals[0]:.1f}", "", "", ""])
    data["all"] = {"p50_ms": p50_all, "p95_ms": p95_all, "cpu_p50_ms": cpu_p50_all, "cpu_p95_ms": cpu_p95_all}
    data["replay"] = replays[1]
    data["replay_two_processes"] = replays[2]
    table = format_table(["node", "frames", "p50 ms", "p95 ms", "CPU p50 / p95 ms", "first frame ms", "pre p50 / p95",
                          "infer p50 / p95", "post p50 / p95"], rows)
    scene = replays[1]["nodes"]
    table += "\n\nThe 8 s scene's sweeps, replayed in one process (below):\n\n" + format_table(
        ["node", "sweeps", "p50 ms", "p95 ms", "greatest ms", "CPU p50 / p95 ms"],
        [["**all three, per sweep**" if name == "all" else name, t["frames"], f"{t['p50_ms']:.1f}",
          f"{t['p95_ms']:.1f}", f"{t['max_ms']:.1f}", f"{t['cpu_p50_ms']:.1f} / {t['cpu_p95_ms']:.1f}"]
         for name, t in scene.items()])
    verdict = "meets" if p95_all < 50.0 else "misses"
    wait_ms = max(abs(d["p95_ms"] - d["cpu_p95_ms"]) for d in [*(data[n] for n in NODES), *scene.values()])
    notes = (f"Frames: one sweep of 34,688 LiDAR rays, 6 cameras with {boxes} 2D boxes ({boxes / 6:.0f} per "
             f"camera), {SWEEPS} times. The p95 of "
             f"the three nodes together {verdict} the 50 ms target (the LiDAR period). 'pre' is transforms and point "
             "selection, 'infer' the geometric algorithm, 'post' building output messages (occupancy publishes its "
             "CUBE_LIST marker every 5th sweep, which dominates its post p95). The nodes run in one process, as "
             "`perception3d replay --processes 1` and perception3d_graph run them: detection3d computes each "
             "sweep's ground surface and its boxes' frustum clusters, and segmentation reuses them "
             "(nodes.shared_sweep). 'first frame' is the "
             "first sweep's total, with whatever a node builds on its first sweep. Replay real-time factor on an 8 s "
             "synthetic scene with JPEG images and simulated 2D detections (reading and writing included): "
             f"{replays[1]['real_time_factor']:.2f}x ({replays[1]['time']}) in one process; "
             f"{replays[2]['real_time_factor']:.2f}x ({replays[2]['time']}) with detection3d and segmentation -> "
             "occupancy in two worker processes (`perception3d replay --processes 2`, runtime.replay_processes; "
             "segmentation then computes the ground itself; the writer process copies /tf and writes the bag), run "
             "right after. 2x real time on two cores needs at most 8 s of CPU for the scene, all of it in parallel. "
             "'p50 / p95 ms' are wall-clock; 'CPU' is the process's CPU time per frame, which leaves out the time a "
             f"frame waited for a core: in this run the nodes' p95 wall-clock and CPU times differ by at most "
             f"{wait_ms:.1f} ms (so where the p95 moves between runs on a shared virtual machine, the CPU time moves "
             "with it: the work itself ran slower). "
             "The scene's 160 sweeps differ from one another (what stands beside the vehicle, how many 2D boxes "
             "there are): its second table gives the nodes' times over them in the one-process replay, reading and "
             f"writing left out. Load average at start: {load:.1f}.")
    return write_results(out_dir, "graph", "Geometric graph latency (perception3d bench graph)", table, data, notes)
