"""Generate a synthetic dataroot in the exact nuScenes schema (tables, samples/, sweeps/, lidarseg, maps,
splits.json) plus per-keyframe occupancy volumes, from the `World`, the `LidarSimulator` and `CameraRenderer`s.

Timing (scene time t = 0 at the first LiDAR sweep): LIDAR_TOP at 20 Hz, every 10th sweep a keyframe (2 Hz); each
camera at 12 Hz, firing at t = camera_offset_s + j / 12, so every 6th image coincides with a keyframe (at its
rig offset before the LiDAR stamp). Every sample_data has its own ego pose (token = sample_data token). Splits:
`<version>/splits.json` holds `synth_train` and `synth_val` (the last ceil(N/5) scenes are val). The world version
(`world.WORLD_STYLES`) is recorded in each scene's description ("synthetic urban road (world v2), seed K"; version 1
keeps the original "synthetic urban road, seed K"). Worlds with `rendered_visibility` (v2, or any version with
`SynthConfig.rendered_visibility`) also write each scene's rendered per-image visible fractions (`visibility2d`); the
rest of the dataroot is the same with or without them.
"""
from __future__ import annotations

import math
import multiprocessing
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..core.boxes import lwh_to_wlh
from ..core.geometry import matrix_to_quat_wxyz, quat_xyzw_to_wxyz, yaw_to_quat_xyzw
from ..core.voxels import VoxelGrid
from ..errors import DatasetError
from .lidar import LidarSimulator
from .occupancy_gt import DEFAULT_RANGE, DEFAULT_VOXEL_SIZE, ground_truth_volume, occupancy_arrays, occupancy_relpath
from .render import CameraRenderer
from .rig import LIDAR_CHANNEL, Rig, load_rig
from .schema import attribute_records, category_records, make_token, visibility_records, visibility_token
from .visibility2d import visibility_relpath
from .world import WORLD_STYLES, World, WorldStyle
from .writer import DatarootWriter

SYNTH_VERSION = "v1.0-synth"
TRAIN_SPLIT, VAL_SPLIT = "synth_train", "synth_val"
KEYFRAME_EVERY = 10  # LiDAR sweeps per keyframe (20 Hz -> 2 Hz)
EPOCH_US = 1_600_000_000_000_000  # first scene's start [us since the Unix epoch]
SCENE_SPACING_US = 1_000_000_000  # scenes start 1000 s apart


@dataclass
class SynthConfig:
    """Parameters of `synthesize` (units: seconds, metres)."""

    scenes: int = 2
    first_scene: int = 0  # index of the first scene written: the world of a scene depends only on seed and index
    seconds: float = 20.0
    seed: int = 0
    version: str = SYNTH_VERSION
    occupancy_range: tuple[float, ...] = DEFAULT_RANGE
    occupancy_voxel: float = DEFAULT_VOXEL_SIZE
    render_scale: float = 0.4
    annotation_range_m: float = 70.0
    world_version: int = 1
    rendered_visibility: bool | None = None  # record visibility2d: None = as the world version does (v2 only)
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    rig: Rig = field(default_factory=load_rig)

    def world_style(self) -> WorldStyle:
        """The world version's style, with `rendered_visibility` where it is given."""
        style = WORLD_STYLES[self.world_version]
        if self.rendered_visibility is None:
            return style
        return replace(style, rendered_visibility=self.rendered_visibility)


def scene_name(index: int) -> str:
    return f"scene-synth-{index + 1:04d}"


def scene_description(seed: int, world_version: int) -> str:
    """The scene table's description, which records the world version (version 1 is not named)."""
    world = "" if world_version == 1 else f" (world v{world_version})"
    return f"synthetic urban road{world}, seed {seed}"


def synthesize(out: str | Path, config: SynthConfig, progress: bool = True) -> Path:
    """Write a dataroot at `out` (which must not exist or be empty); returns its path."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not empty; choose a new dataroot directory")
    writer = DatarootWriter(out, config.version)
    seed = config.seed
    for rec in category_records(seed):
        writer.add("category", rec)
    for rec in attribute_records(seed):
        writer.add("attribute", rec)
    for rec in visibility_records():
        writer.add("visibility", rec)
    channels = [LIDAR_CHANNEL, *config.rig.cameras]
    for ch in channels:
        writer.add("sensor", {"token": make_token(seed, "sensor", ch), "channel": ch,
                              "modality": "lidar" if ch == LIDAR_CHANNEL else "camera"})
    map_token = make_token(seed, "map")
    map_record = writer.add("map", {"token": map_token, "log_tokens": [], "category": "semantic_prior",
                                    "filename": f"maps/{map_token}.png"})
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(writer.path(map_record["filename"]))
    names = []
    pool = multiprocessing.get_context("fork").Pool(config.workers) if config.workers > 1 else None
    try:
        for i in range(config.first_scene, config.first_scene + config.scenes):
            log_token = SceneGenerator(writer, config, i, pool).run(progress)
            map_record["log_tokens"].append(log_token)
            names.append(scene_name(i))
    finally:
        if pool is not None:
            pool.terminate()
    n_val = math.ceil(len(names) / 5)
    writer.finish({TRAIN_SPLIT: names[:len(names) - n_val], VAL_SPLIT: names[len(names) - n_val:]})
    return out


class SceneGenerator:
    """Writes one scene: log, calibration, samples, sample_data with files, annotations, lidarseg, occupancy."""

    def __init__(self, writer: DatarootWriter, config: SynthConfig, index: int, pool=None) -> None:
        self.w, self.cfg, self.index, self.pool = writer, config, index, pool
        self.seed = config.seed
        self.world = World(config.seed, index, config.seconds, config.world_style())
        self.name = scene_name(index)
        self.logfile = f"synth-{config.seed:04d}-{index + 1:04d}"
        self.start_us = EPOCH_US + index * SCENE_SPACING_US
        self.grid = VoxelGrid.from_range(tuple(config.occupancy_range), config.occupancy_voxel)
        # per keyframe: object centres, sizes, yaws, LiDAR point counts, visibility, within annotation range
        self._facts: list[tuple] = []
        self._visible_2d: list[tuple[str, np.ndarray]] = []  # (camera sample_data token, visible fractions)

    def tok(self, *parts: object) -> str:
        return make_token(self.seed, self.index, *parts)

    def stamp_us(self, t: float) -> int:
        return self.start_us + int(round(t * 1e6))

    def run(self, progress: bool) -> str:
        rig, cfg, w = self.cfg.rig, self.cfg, self.w
        log_token = self.tok("log")
        w.add("log", {"token": log_token, "logfile": self.logfile, "vehicle": "n015-synth",
                      "date_captured": "2020-09-13", "location": "synth-town"})
        self.calib = {}
        for ch, T in [(LIDAR_CHANNEL, rig.lidar.T_ego_sensor)] + [(c, s.T_ego_sensor) for c, s in
                                                                    rig.cameras.items()]:
            self.calib[ch] = w.add("calibrated_sensor", {
                "token": self.tok("calib", ch), "sensor_token": make_token(self.seed, "sensor", ch),
                "translation": T[:3, 3].tolist(), "rotation": matrix_to_quat_wxyz(T[:3, :3]).tolist(),
                "camera_intrinsic": rig.cameras[ch].K.tolist() if ch in rig.cameras else []})
        n_sweeps = int(round(cfg.seconds * rig.lidar.rate_hz))
        n_samples = math.ceil(n_sweeps / KEYFRAME_EVERY)
        self.sample_period = KEYFRAME_EVERY / rig.lidar.rate_hz  # [s]
        self.sample_times = [k * self.sample_period for k in range(n_samples)]
        self.sample_tokens = [self.tok("sample", s) for s in range(n_samples)]
        for s, t in enumerate(self.sample_times):
            w.add("sample", {"token": self.sample_tokens[s], "timestamp": self.stamp_us(t),
                             "scene_token": self.tok("scene"),
                             "prev": self.sample_tokens[s - 1] if s > 0 else "",
                             "next": self.sample_tokens[s + 1] if s + 1 < n_samples else ""})
        w.add("scene", {"token": self.tok("scene"), "log_token": log_token, "nbr_samples": n_samples,
                        "first_sample_token": self.sample_tokens[0], "last_sample_token": self.sample_tokens[-1],
                        "name": self.name, "description": scene_description(self.seed, self.world.style.version)})
        cam_frames = {ch: int(round(cfg.seconds * spec.rate_hz)) for ch, spec in rig.cameras.items()}
        total = n_sweeps + sum(cam_frames.values())
        with tqdm(total=total, desc=self.name, unit="frame", disable=not progress, leave=False) as bar:
            # the pool renders the images while the LiDAR runs here
            images = {ch: self._start_camera(c, spec) for c, (ch, spec) in enumerate(rig.cameras.items())}
            self._lidar(n_sweeps, bar)
            for ch, spec in rig.cameras.items():
                self._finish_camera(ch, spec, images[ch], bar)
        if self._visible_2d:
            w.write_npz(visibility_relpath(cfg.version, self.tok("scene")), {
                "sample_data_token": np.array([tok for tok, _ in self._visible_2d]),
                "instance_token": np.array([self.tok("instance", j) for j in range(len(self.world.tracks))]),
                "visible": np.array([v for _, v in self._visible_2d], np.float16).reshape(len(self._visible_2d), -1)})
        return log_token

    def _sample_data(self, ch: str, tokens: list[str], times: list[float], keys: list[bool], files: list[str],
                     size: tuple[int, int], fileformat: str) -> None:
        """sample_data + ego_pose records of one channel's chain."""
        for i, (token, t, key, filename) in enumerate(zip(tokens, times, keys, files)):
            s = min(max(int(round(t / self.sample_period)), 0), len(self.sample_tokens) - 1)  # nearest sample
            T = self.world.ego_pose(t)
            self.w.add("ego_pose", {"token": token, "timestamp": self.stamp_us(t), "translation": T[:3, 3].tolist(),
                                    "rotation": matrix_to_quat_wxyz(T[:3, :3]).tolist()})
            self.w.add("sample_data", {
                "token": token, "sample_token": self.sample_tokens[s], "ego_pose_token": token,
                "calibrated_sensor_token": self.calib[ch]["token"], "timestamp": self.stamp_us(t),
                "fileformat": fileformat, "is_key_frame": key, "height": size[1], "width": size[0],
                "filename": filename, "prev": tokens[i - 1] if i > 0 else "",
                "next": tokens[i + 1] if i + 1 < len(tokens) else ""})

    def _lidar(self, n_sweeps: int, bar) -> None:
        sim = LidarSimulator(self.cfg.rig.lidar)
        period = 1.0 / self.cfg.rig.lidar.rate_hz
        tokens = [self.tok("sd", LIDAR_CHANNEL, k) for k in range(n_sweeps)]
        times = [k * period for k in range(n_sweeps)]
        keys = [k % KEYFRAME_EVERY == 0 for k in range(n_sweeps)]
        files = []
        for k, t in enumerate(times):
            folder = "samples" if keys[k] else "sweeps"
            filename = f"{folder}/{LIDAR_CHANNEL}/{self.logfile}__{LIDAR_CHANNEL}__{self.stamp_us(t)}.pcd.bin"
            files.append(filename)
            sweep = sim.sweep(self.world, t, np.random.default_rng([self.seed, self.index, 0, k]),
                              with_visibility=keys[k])
            self.w.write_bytes(filename, sweep.points.tobytes())
            if keys[k]:
                self._keyframe(k // KEYFRAME_EVERY, t, tokens[k], sweep)
            bar.update(1)
        self._sample_data(LIDAR_CHANNEL, tokens, times, keys, files, (0, 0), "pcd")
        self._annotations()

    def _keyframe(self, s: int, t: float, lidar_token: str, sweep) -> None:
        """lidarseg labels, occupancy, and the per-keyframe annotation facts (range, points, visibility)."""
        version = self.cfg.version
        seg_file = f"lidarseg/{version}/{lidar_token}_lidarseg.bin"
        self.w.write_bytes(seg_file, sweep.labels.tobytes())
        self.w.add("lidarseg", {"token": lidar_token, "sample_data_token": lidar_token, "filename": seg_file})
        T_global_ego = self.world.ego_pose(t)
        volume, observed = ground_truth_volume(self.world, t, T_global_ego, sweep.T_global_sensor,
                                               sweep.points[:, :3], self.grid, sweep.labels)
        arrays = occupancy_arrays(volume, observed, self.grid, T_global_ego, self.sample_tokens[s], lidar_token)
        self.w.write_npz(occupancy_relpath(version, lidar_token), arrays)
        centers, sizes, yaws = self.world.object_states(t)
        n_pts = np.bincount(sweep.instances[sweep.instances >= 0], minlength=len(centers))
        in_range = np.hypot(*(centers[:, :2] - T_global_ego[:2, 3]).T) <= self.cfg.annotation_range_m
        self._facts.append((centers, sizes, yaws, n_pts, sweep.visibility, in_range))

    def _annotations(self) -> None:
        """instance + sample_annotation records: each track is annotated over the contiguous run of samples
        from the first to the last one that sees it within annotation range."""
        in_range = np.array([f[5] for f in self._facts])  # (samples, tracks)
        categories = {r["name"]: r["token"] for r in self.w.tables["category"]}
        attributes = {r["name"]: r["token"] for r in self.w.tables["attribute"]}
        for j, track in enumerate(self.world.tracks):
            seen = np.flatnonzero(in_range[:, j])
            if seen.size == 0:
                continue
            samples = list(range(seen[0], seen[-1] + 1))
            ann_tokens = [self.tok("ann", j, s) for s in samples]
            inst_token = self.tok("instance", j)
            self.w.add("instance", {"token": inst_token, "category_token": categories[track.category],
                                    "nbr_annotations": len(samples), "first_annotation_token": ann_tokens[0],
                                    "last_annotation_token": ann_tokens[-1]})
            for i, s in enumerate(samples):
                centers, sizes, yaws, n_pts, visible, _ = self._facts[s]
                self.w.add("sample_annotation", {
                    "token": ann_tokens[i], "sample_token": self.sample_tokens[s], "instance_token": inst_token,
                    "visibility_token": visibility_token(float(visible[j])),
                    "attribute_tokens": [attributes[track.attribute]] if track.attribute else [],
                    "translation": centers[j].tolist(), "size": lwh_to_wlh(sizes[j]).tolist(),
                    "rotation": quat_xyzw_to_wxyz(yaw_to_quat_xyzw(yaws[j])).tolist(),
                    "prev": ann_tokens[i - 1] if i > 0 else "", "next": ann_tokens[i + 1] if i + 1 < len(samples)
                    else "", "num_lidar_pts": int(n_pts[j]), "num_radar_pts": 0})

    def _camera_times(self, spec) -> tuple[list[float], list[bool]]:
        n_frames = int(round(self.cfg.seconds * spec.rate_hz))
        per_key = int(round(spec.rate_hz * KEYFRAME_EVERY / self.cfg.rig.lidar.rate_hz))  # 6 images per sample
        return [spec.offset_s + j / spec.rate_hz for j in range(n_frames)], [j % per_key == 0 for j in range(n_frames)]

    def _start_camera(self, c: int, spec):
        """An iterator of the channel's (JPEG bytes, visible fractions or None) in frame order (rendered by the
        worker pool when there is one)."""
        times, _ = self._camera_times(spec)
        jobs = [(self.seed, self.index, self.cfg.seconds, self.world.style, spec, self.cfg.render_scale, t,
                 (self.seed, self.index, 1 + c, j)) for j, t in enumerate(times)]
        if self.pool is None:
            return map(_render_job, jobs)
        return self.pool.imap(_render_job, jobs, chunksize=4)

    def _finish_camera(self, ch: str, spec, images, bar) -> None:
        times, keys = self._camera_times(spec)
        tokens = [self.tok("sd", ch, j) for j in range(len(times))]
        files = []
        for j, (t, (jpeg, visible)) in enumerate(zip(times, images)):
            folder = "samples" if keys[j] else "sweeps"
            filename = f"{folder}/{ch}/{self.logfile}__{ch}__{self.stamp_us(t)}.jpg"
            files.append(filename)
            self.w.write_bytes(filename, jpeg)
            if visible is not None:
                self._visible_2d.append((tokens[j], visible))
            bar.update(1)
        self._sample_data(ch, tokens, times, keys, files, (spec.width, spec.height), "jpg")


_RENDER_CACHE: dict = {}


def _render_job(job) -> tuple[bytes, np.ndarray | None]:
    """One camera image as JPEG bytes, with the tracks' visible fractions where the world style records them; the
    world and renderer are rebuilt once per process and scene."""
    seed, index, seconds, style, spec, scale, t, frame_seed = job
    key = (seed, index, seconds, style, spec.channel, scale)
    if _RENDER_CACHE.get("key") != key:
        world_key = (seed, index, seconds, style)
        world = _RENDER_CACHE["world"] if _RENDER_CACHE.get("world_key") == world_key else \
            World(seed, index, seconds, style)
        _RENDER_CACHE.update(key=key, world_key=world_key, world=world, renderer=CameraRenderer(spec, scale, seed))
    renderer, world, rng = _RENDER_CACHE["renderer"], _RENDER_CACHE["world"], np.random.default_rng(frame_seed)
    if world.style.rendered_visibility:
        return renderer.render_jpeg_visibility(world, t, rng)
    return renderer.render_jpeg(world, t, rng), None
