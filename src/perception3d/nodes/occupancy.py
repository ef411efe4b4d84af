"""occupancy: 3D semantic occupancy on the OpenOccupancy grid, geometric or learned.

Geometric mode: the sweep (plus optionally a few past sweeps, ego-motion compensated through the world frame) is
voxelized in base_frame; free space comes from casting the LiDAR rays; occupied voxels take the majority label of their
points when the input cloud carries a `label` field (the graph feeds the segmentation node's output here when it runs);
voxels no ray reached stay 255 (unknown). Outputs the dense grid, a PointCloud2 of occupied voxel centres with
their label, and a throttled RViz CUBE_LIST.

Learned mode (`mode: learned`): the OccFusion-style network of core.models.occfusion (a checkpoint, or its ONNX
export) labels every voxel the sweep observed (a return or a ray in it; the others stay 255) from the sweep and the
matched cameras' 2D detections, fused without depth at the occupied coarse voxels (their centres, or points
pre-sampled in them: the checkpoint's presample_points); the voxel cloud's confidence is the network's softmax score.
Point labels of the input cloud and past_sweeps are not used.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..core.classes import (
    LIDARSEG_CLASSES,
    OCCUPANCY_CLASSES,
    occupancy_colors,
)
from ..core.geometry import invert_transform, transform_points
from ..core.models.shipped import SHIPPED_OCCUPANCY
from ..core.occupancy import (
    OPENOCCUPANCY_RANGE,
    UNLABELLED_OCCUPIED_CLASS,
    occupancy_volume,
    occupied_voxels,
    prepare_free_space,
)
from ..core.voxels import VoxelGrid
from ..errors import ConfigError
from ..msgs.markers import voxel_markers
from ..msgs.occupancy import volume_to_occupancy_msg
from ..msgs.pointcloud import array_to_pointcloud2
from .base import Frame, NodeDefinition, OutputSpec, StageTimer, TransformLookup
from .learned import LEARNED_MODEL_PARAMS, model_file, runner_options
from .params import Param
from .sweep import EGO_BOX_PARAM, LEARNED_MODE_PARAM, WORLD_FRAME_PARAM, camera_boxes, lidar_sweep

VOXEL_DTYPE = np.dtype({"names": ["x", "y", "z", "label", "confidence"], "formats": ["<f4", "<f4", "<f4", "u1", "<f4"],
                        "offsets": [0, 4, 8, 12, 16], "itemsize": 20})


class OccupancyNode(NodeDefinition):
    name = "occupancy"
    description = "3D semantic occupancy: dense grid, occupied voxel centres, RViz cubes"
    parameters = (
        LEARNED_MODE_PARAM,
        Param("grid.range_m", "float_array", list(OPENOCCUPANCY_RANGE),
              "grid extent in base_frame [xmin, ymin, zmin, xmax, ymax, zmax] [m]", -200.0, 200.0),
        Param("grid.resolution_m", "float", 0.4, "voxel edge length [m]", 0.05, 5.0),
        Param("past_sweeps", "int", 0,
              "earlier sweeps accumulated (through world_frame) into occupied voxels the current sweep does not "
              "see as free", 0, 20),
        Param("unlabelled_class", "string", LIDARSEG_CLASSES[UNLABELLED_OCCUPIED_CLASS],
              "class of occupied voxels none of whose points carries a label (or when the input has no labels)",
              choices=LIDARSEG_CLASSES[1:]),
        Param("markers.every_n", "int", 5, "publish the CUBE_LIST marker every n-th sweep (0 = never)", 0, 1000,
              read_only=False),
        Param("markers.max_voxels", "int", 60000, "cubes beyond this many are left out of the marker", 1, 10**7,
              read_only=False),
        EGO_BOX_PARAM,
        WORLD_FRAME_PARAM,
        *LEARNED_MODEL_PARAMS,
    )
    camera_streams = ("camera_info", "detections")
    outputs = (
        OutputSpec("~/output/grid", "perception3d_msgs/msg/OccupancyGrid3D", label_classes=OCCUPANCY_CLASSES,
                   description="dense labels: 0 free, 1..16 lidarseg classes, 255 unknown; base_frame"),
        OutputSpec("~/output/voxels", "sensor_msgs/msg/PointCloud2", label_classes=OCCUPANCY_CLASSES,
                   description="occupied voxel centres x, y, z (float32) + label (uint8) + confidence (float32; "
                               "geometric: share of the voxel's points in this sweep labelled with its class, 0 for "
                               "the unlabelled fallback class and for voxels seen in past sweeps only; learned: the "
                               "network's softmax score of the label)"),
        OutputSpec("~/output/markers", "visualization_msgs/msg/MarkerArray",
                   description="occupied voxels as one CUBE_LIST coloured by class (throttled)"),
    )

    def __init__(self, params, factory=None) -> None:
        super().__init__(params, factory)
        p = self.params
        self.grid = VoxelGrid.from_range(tuple(p["grid.range_m"]), p["grid.resolution_m"])
        self.unlabelled = LIDARSEG_CLASSES.index(p["unlabelled_class"])
        if p["past_sweeps"] and not p["world_frame"]:
            raise ConfigError("occupancy: past_sweeps > 0 needs a world_frame to compensate the ego motion")
        self.history: deque = deque(maxlen=p["past_sweeps"] or None)
        self.frames = 0
        self.last_stamp_ns: int | None = None
        self.voxel_row = np.empty(self.grid.num_voxels, dtype=np.int32)  # _confidence's row table, one per voxel
        self.network = None
        if p["mode"] == "learned":  # the model modules (torch) load only here: a geometric node never needs them
            from ..core.models.network_file import open_network
            from ..core.models.occfusion import INPUT_NAMES, OccFusionInference

            self.network = open_network(p["backend"], model_file(p, SHIPPED_OCCUPANCY), "occupancy", OccFusionInference,
                                        INPUT_NAMES, runner_options(p))
            if not self.network.config.fine_grid.matches(self.grid):
                raise ConfigError(f"occupancy: the model's grid {self.network.config.fine_grid} differs from "
                                  f"grid.range_m / grid.resolution_m {self.grid}")
            if p["warm_up"]:
                self._learned_volume(np.zeros((0, 3)), np.zeros(0), np.zeros(3), [])

    def prepare(self, tf: TransformLookup) -> bool:
        """The free-space test's direction table (core.occupancy.prepare_free_space) for the trigger LiDAR's position
        in base_frame, from its static transform: its frame is taken to be its name (the first of lidar_names), as
        `perception3d convert` writes it; when the sweeps name another frame, their first sweep builds the table."""
        T_base_lidar = tf.lookup(self.params["base_frame"], self.params["lidar_names"][0], 0)
        prepare_free_space(self.grid, T_base_lidar[:3, 3])
        return True

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        if self.network is not None:
            return self._process_learned(frame, tf, timer)
        p = self.params
        with timer.stage("pre"):
            sweep = lidar_sweep(frame, tf, p["base_frame"], p["ego_box_m"])
            names = frame.lidar.points.dtype.names
            labels = np.asarray(frame.lidar.points["label"])[sweep.usable] if "label" in names else None
            points = sweep.usable_rows(sweep.points_base)
            if self.last_stamp_ns is not None and frame.stamp_ns < self.last_stamp_ns:
                self.history.clear()  # time jumped back (bag loop): older sweeps are not the past any more
            self.last_stamp_ns = frame.stamp_ns
            past_points, past_labels, T_world_base = self._past(tf, frame.stamp_ns)
        with timer.stage("infer"):
            binned = self.grid.voxel_indices(points)  # for the vote and the confidence
            volume = occupancy_volume(points, self.grid, sweep.T_base_lidar[:3, 3], labels, past_points, past_labels,
                                      self.unlabelled, binned=binned)
        with timer.stage("post"):
            if p["past_sweeps"]:
                self.history.append((transform_points(T_world_base, points), labels))
            occupied = occupied_voxels(volume)
            out = self._outputs(volume, occupied, self._confidence(volume, occupied, labels, binned), frame.stamp_ns)
        return out

    def _process_learned(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list:
        p = self.params
        with timer.stage("pre"):
            sweep = lidar_sweep(frame, tf, p["base_frame"], p["ego_box_m"])
            statistics = self.network.config.bev_statistics  # the only input that reads the intensity
            intensity = sweep.usable_rows(sweep.intensity).astype(np.float64) if statistics else None
            cameras = camera_boxes(frame, tf, p["world_frame"], invert_transform(sweep.T_base_lidar))
        volume, occupied, scores = self._learned_volume(sweep.usable_rows(sweep.points_base), intensity,
                                                        sweep.T_base_lidar[:3, 3], cameras, timer)
        with timer.stage("post"):
            return self._outputs(volume, occupied, scores, frame.stamp_ns)

    def _learned_volume(self, points: np.ndarray, intensity: np.ndarray | None, sensor_origin: np.ndarray,
                        cameras: list, timer: StageTimer | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's uint8 [x, y, z] label volume of one sweep (base frame), its occupied voxels (M, 3) and their
        scores (M,)."""
        from ..core.models import occfusion_inputs
        from ..core.models.occfusion import INPUT_NAMES

        timer = timer or StageTimer()
        config = self.network.config
        with timer.stage("pre"):
            inputs, observed = occfusion_inputs.network_inputs(points, intensity, sensor_origin, cameras, self.grid,
                                                               config.presample_points, config.camera_fusion,
                                                               config.bev_statistics)
        with timer.stage("infer"):
            coarse_label, coarse_score, fine_index, fine_label, fine_score = self.network.run(
                *(inputs[name] for name in INPUT_NAMES))
        with timer.stage("post"):
            fine_index, observed_index = fine_index.astype(np.int64), inputs["observed_index"]
            volume = occfusion_inputs.fine_volume(observed_index, coarse_label, fine_index, fine_label, observed,
                                                  self.grid)
            occupied = occupied_voxels(volume)
            refined = fine_label > 0  # the occupied voxels among the refined: only those are asked for their score
            return volume, occupied, occfusion_inputs.voxel_scores(occupied, observed_index, coarse_score,
                                                                   fine_index[refined], fine_score[refined], self.grid)

    def _past(self, tf: TransformLookup, stamp_ns: int):
        """Earlier sweeps moved into the current base frame, their labels, and T_world_base now."""
        if not self.params["past_sweeps"]:
            return None, None, None
        T_world_base = tf.lookup(self.params["world_frame"], self.params["base_frame"], stamp_ns)
        if not self.history:
            return None, None, T_world_base
        T_base_world = invert_transform(T_world_base)
        points = np.concatenate([transform_points(T_base_world, pts) for pts, _ in self.history])
        if any(lab is None for _, lab in self.history):
            return points, None, T_world_base
        return points, np.concatenate([lab for _, lab in self.history]), T_world_base

    def _confidence(self, volume: np.ndarray, occupied: np.ndarray, labels: np.ndarray | None,
                    binned: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Per occupied voxel: the share of this sweep's points in it whose label is the voxel's class (binned: the
        points' grid.voxel_indices).

        Every voxel holding a point of this sweep is occupied (occupancy_volume gives it a class): a point's row
        among the occupied voxels is read from a table over the grid (`voxel_row`) that holds each occupied voxel's
        row, written for this sweep; its other entries are left from earlier sweeps and never read."""
        idx, inside = binned
        if labels is None or not len(idx):
            return np.zeros(len(occupied), dtype=np.float32)
        # flat indices of all points, then the inside ones: a 1-D compress, not a mask over (N, 3) rows (~3x faster)
        flat = self.grid.flat_index(idx).compress(inside)
        voxel_class = volume.reshape(-1, order="F")  # flat order of grid.flat_index (core.occupancy)
        agree = np.asarray(labels)[inside] == voxel_class[flat]
        # a table lookup, not a binary search of the occupied voxels per point (~15x faster)
        self.voxel_row[self.grid.flat_index(occupied)] = np.arange(len(occupied), dtype=np.int32)
        row = self.voxel_row[flat]
        total = np.bincount(row, minlength=len(occupied))
        agreeing = np.bincount(row[agree], minlength=len(occupied))
        return (agreeing / np.maximum(total, 1)).astype(np.float32)

    def _outputs(self, volume: np.ndarray, occupied: np.ndarray, confidence: np.ndarray, stamp_ns: int) -> list:
        """Grid, voxel cloud (occupied voxels (M, 3) with their confidence (M,)) and throttled markers."""
        frame_id = self.params["base_frame"]
        voxel_labels = volume[tuple(occupied.T)]
        centers = self.grid.centers(occupied)
        voxels = np.zeros(len(occupied), dtype=VOXEL_DTYPE)
        voxels["x"], voxels["y"], voxels["z"] = centers[:, 0], centers[:, 1], centers[:, 2]
        voxels["label"] = voxel_labels
        voxels["confidence"] = confidence
        out = [("~/output/grid", volume_to_occupancy_msg(volume, self.grid, stamp_ns, frame_id, self.factory)),
               ("~/output/voxels", array_to_pointcloud2(voxels, stamp_ns, frame_id, self.factory))]
        every_n = self.params["markers.every_n"]
        if every_n and self.frames % every_n == 0:
            keep = slice(0, self.params["markers.max_voxels"])
            out.append(("~/output/markers", voxel_markers(centers[keep], voxel_labels[keep], occupancy_colors(),
                                                          self.grid.resolution, stamp_ns, frame_id,
                                                          factory=self.factory)))
        self.frames += 1
        return out
