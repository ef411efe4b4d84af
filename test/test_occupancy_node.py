"""The occupancy node: past sweeps are carried through the world frame into the current base frame."""
import numpy as np
import pytest

from perception3d.core.classes import OCCUPANCY_UNKNOWN
from perception3d.core.geometry import invert_transform, make_transform
from perception3d.errors import ConfigError
from perception3d.msgs.occupancy import occupancy_msg_to_volume
from perception3d.msgs.pointcloud import NUSCENES_LIDAR_DTYPE, pointcloud2_to_array
from perception3d.nodes.base import Frame, LidarInput, StageTimer
from perception3d.nodes.occupancy import OccupancyNode
from perception3d.nodes.params import load_parameters

T_BASE_LIDAR = make_transform(np.eye(3), [0.0, 0.0, 1.8])


class MovingEgo:
    """TransformLookup test double: static base_link -> LIDAR_TOP, map -> base_link moving along +x."""

    def __init__(self, x_at_stamp: dict[int, float]) -> None:
        self.x_at_stamp = x_at_stamp

    def lookup(self, target, source, stamp_ns):
        transforms = {("base_link", "LIDAR_TOP"): T_BASE_LIDAR,
                      ("map", "base_link"): make_transform(np.eye(3), [self.x_at_stamp[stamp_ns], 0.0, 0.0])}
        if (target, source) in transforms:
            return transforms[(target, source)]
        return invert_transform(transforms[(source, target)])


def sweep(stamp_ns, points_base):
    pts = np.zeros(len(points_base), dtype=NUSCENES_LIDAR_DTYPE)
    lidar = np.asarray(points_base, dtype=np.float64) - T_BASE_LIDAR[:3, 3]
    pts["x"], pts["y"], pts["z"] = lidar.T
    return Frame(stamp_ns, LidarInput(stamp_ns, "LIDAR_TOP", pts, None), {}, {})


def node(**overrides):
    params = load_parameters(None, {"occupancy": OccupancyNode.parameters})["occupancy"]
    params.update({"markers.every_n": 0, **overrides})
    return OccupancyNode(params)


def grid_of(outputs):
    msg = dict(outputs)["~/output/grid"]
    volume, grid, _, frame = occupancy_msg_to_volume(msg)
    assert frame == "base_link"
    return volume, grid


def test_a_past_sweep_lands_where_the_world_point_is_now():
    tf = MovingEgo({0: 0.0, 100: 2.0})
    occ = node(past_sweeps=2)
    post = (10.0, 5.0, 0.6)  # a world point seen only by the first sweep
    occ.process(sweep(0, [post]), tf, StageTimer())
    volume, grid = grid_of(occ.process(sweep(100, [(3.0, -5.0, 0.6)]), tf, StageTimer()))
    idx, inside = grid.voxel_indices(np.array([[post[0] - 2.0, post[1], post[2]]]))  # the ego moved 2 m forward
    assert inside[0] and volume[tuple(idx[0])] not in (0, OCCUPANCY_UNKNOWN)
    stale, _ = grid.voxel_indices(np.array([post]))  # not where it was in the old base frame
    assert volume[tuple(stale[0])] in (0, OCCUPANCY_UNKNOWN)


def test_without_past_sweeps_only_the_current_sweep_counts():
    tf = MovingEgo({0: 0.0, 100: 2.0})
    occ = node(past_sweeps=0)
    occ.process(sweep(0, [(10.0, 5.0, 0.6)]), tf, StageTimer())
    volume, grid = grid_of(occ.process(sweep(100, [(3.0, -5.0, 0.6)]), tf, StageTimer()))
    idx, _ = grid.voxel_indices(np.array([[8.0, 5.0, 0.6]]))
    assert volume[tuple(idx[0])] in (0, OCCUPANCY_UNKNOWN)


def test_a_time_jump_back_forgets_the_past():
    tf = MovingEgo({0: 0.0, 100: 2.0, 50: 1.0})
    occ = node(past_sweeps=2)
    occ.process(sweep(0, [(10.0, 5.0, 0.6)]), tf, StageTimer())
    occ.process(sweep(100, [(3.0, -5.0, 0.6)]), tf, StageTimer())
    volume, grid = grid_of(occ.process(sweep(50, [(3.0, -5.0, 0.6)]), tf, StageTimer()))  # bag loop
    idx, _ = grid.voxel_indices(np.array([[9.0, 5.0, 0.6]]))
    assert volume[tuple(idx[0])] in (0, OCCUPANCY_UNKNOWN)


def test_past_sweeps_need_a_world_frame():
    with pytest.raises(ConfigError, match="world_frame"):
        node(past_sweeps=1, world_frame="")


def test_voxel_confidence_is_the_share_of_points_with_the_voxel_class():
    tf = MovingEgo({0: 0.0})
    labelled = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "u1")])
    pts = np.zeros(4, dtype=labelled)
    # three points in one 0.4 m voxel (two car = 4, one truck = 10) and one car point alone in another
    pts["x"], pts["y"], pts["z"] = [10.05, 10.1, 10.15, 20.1], [5.05, 5.1, 5.15, 5.1], [-1.2, -1.2, -1.2, -1.2]
    pts["label"] = [4, 4, 10, 4]
    outputs = dict(node().process(Frame(0, LidarInput(0, "LIDAR_TOP", pts, None), {}, {}), tf, StageTimer()))
    voxels = pointcloud2_to_array(outputs["~/output/voxels"])
    by_x = {round(float(v["x"])): (int(v["label"]), float(v["confidence"])) for v in voxels}
    assert by_x[10] == (4, pytest.approx(2 / 3)) and by_x[20] == (4, 1.0)
