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


def test_prepare_builds_the_free_space_table_of_the_lidar_position_so_the_first_sweep_does_not(monkeypatch):
    from perception3d.core import occupancy

    occupancy._voxel_directions.cache_clear()
    occ = node()
    assert occ.prepare(MovingEgo({0: 0.0})) is True  # static base_link -> LIDAR_TOP, the first of lidar_names
    built = occupancy._voxel_directions.cache_info()
    assert built.misses == 1 and built.currsize == 1
    occ.process(sweep(0, [[10.0, 0.0, 1.0]]), MovingEgo({0: 0.0}), StageTimer())
    first_sweep = occupancy._voxel_directions.cache_info()
    assert first_sweep.misses == 1 and first_sweep.hits == built.hits + 1  # the first sweep used the prepared table


def test_the_bag_runtime_prepares_every_node_before_its_first_frame(tmp_path, monkeypatch):
    from perception3d.core import occupancy
    from perception3d.runtime.bag import replay
    from perception3d.runtime.graph import FULL_GRAPH
    from replay_fixtures import write_nuscenes_timed_bag

    bag = tmp_path / "bag"
    write_nuscenes_timed_bag(bag, duration_s=0.2)
    occupancy._voxel_directions.cache_clear()
    misses_at_first_frame = []
    process = OccupancyNode.process

    def recording(self, frame, tf, timer):
        misses_at_first_frame.append(occupancy._voxel_directions.cache_info().misses)
        return process(self, frame, tf, timer)

    monkeypatch.setattr(OccupancyNode, "process", recording)
    summary = replay(bag, tmp_path / "out", FULL_GRAPH.select(("occupancy",)), progress=False)
    assert summary.runners[0].stats.frames_processed == len(misses_at_first_frame) > 1
    assert misses_at_first_frame[0] == 1 and occupancy._voxel_directions.cache_info().misses == 1


def test_a_node_is_asked_to_prepare_until_its_transforms_come_and_not_after_its_first_frame():
    from perception3d.errors import TransformError
    from perception3d.nodes.runner import NodeRunner
    from perception3d.runtime.graph import FULL_GRAPH

    class NoTransforms:
        def lookup(self, target, source, stamp_ns):
            raise TransformError(f"{target} <- {source}: no transforms yet")

    params = load_parameters(None, {"occupancy": OccupancyNode.parameters})["occupancy"]
    runner = NodeRunner(OccupancyNode, params, FULL_GRAPH.topics(FULL_GRAPH.node("occupancy"), params["camera_names"]),
                        NoTransforms())
    assert runner.prepare() is False and runner.prepare() is False  # asked again: not yet
    assert runner.prepare(MovingEgo({0: 0.0})) is True and runner.prepared
    later = NodeRunner(OccupancyNode, params, FULL_GRAPH.topics(FULL_GRAPH.node("occupancy"), params["camera_names"]),
                       NoTransforms())
    later.stats.frames_in = 1  # a frame came first: it built what it needed, prepare is not asked any more
    assert later.prepare() is True and not later.prepared


def test_a_prepare_that_fails_otherwise_is_logged_and_not_asked_again(monkeypatch):
    from perception3d.nodes.runner import NodeRunner
    from perception3d.runtime.graph import FULL_GRAPH

    calls, logged = [], []

    def broken(self, tf):
        calls.append(1)
        raise ValueError("grid and rig disagree")

    monkeypatch.setattr(OccupancyNode, "prepare", broken)
    params = load_parameters(None, {"occupancy": OccupancyNode.parameters})["occupancy"]
    runner = NodeRunner(OccupancyNode, params, FULL_GRAPH.topics(FULL_GRAPH.node("occupancy"), params["camera_names"]),
                        MovingEgo({0: 0.0}), log=logged.append)
    assert runner.prepare() is True and runner.prepare() is True and len(calls) == 1
    assert len(logged) == 1 and "ValueError: grid and rig disagree" in logged[0] and "first frame" in logged[0]
