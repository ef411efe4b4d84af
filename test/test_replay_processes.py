"""Replay in worker processes (runtime.replay_processes): the same messages on every topic as a replay in one
process, the graph split where no topic crosses, failures and Ctrl-C handled by the writing process."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from bag_mutation import mutated_copy
from perception3d.bench.graph import write_frame_bag
from perception3d.core.models.options import usable_cores
from perception3d.errors import BagError
from perception3d.msgs.bag import BagReader
from perception3d.msgs.factory import default_factory
from perception3d.msgs.qos import SENSOR
from perception3d.nodes.params import Param
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH, LIDAR_TOPIC, Graph, GraphNode, GraphOutput
from perception3d.runtime.replay_processes import (
    _PipeWriter,
    _UpstreamFeed,
    independent_groups,
    pipeline_stages,
    replay_in_processes,
    worker_cores,
)
from replay_fixtures import (
    CHAIN_GRAPH,
    MAP_OBJECTS_TOPIC,
    OBJECTS_TOPIC,
    TWO_GROUP_GRAPH,
    CentroidNode,
    ImageBoxNode,
    start_slow_replay,
    write_nuscenes_timed_bag,
)

GEOMETRIC = ("detection3d", "segmentation", "occupancy")
CORES = [", ".join(map(str, share)) for share in worker_cores(usable_cores(), 2)]  # two workers' shares here


def test_workers_share_the_cores_out():
    assert worker_cores([0, 1], 2) == [[0], [1]]
    assert worker_cores([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert worker_cores([3], 2) == [[3], [3]]  # more workers than cores: one core each, shared
    assert worker_cores([0, 1], 3) == [[0], [1], [0]]


def messages_by_topic(bag: Path) -> dict[str, list[tuple[int, bytes]]]:
    """{topic: [(log time, CDR bytes), ...] in file order}."""
    out = defaultdict(list)
    with BagReader(bag) as reader:
        for message in reader.messages():
            out[message.topic].append((message.stamp_ns, bytes(message.rawdata)))
    return dict(out)


def test_the_geometric_graph_splits_where_no_topic_crosses():
    graph = FULL_GRAPH.select(GEOMETRIC)
    groups = independent_groups(graph)
    assert [[n.name for n in g.nodes] for g in groups] == [["detection3d"], ["segmentation", "occupancy"]]
    for group in groups:  # occupancy still reads segmentation's labelled cloud, not the raw sweep
        for node in group.nodes:
            assert group.topics(node, ["CAM_FRONT"]) == graph.topics(node, ["CAM_FRONT"])
    (whole,) = independent_groups(FULL_GRAPH)  # detector2d feeds detection3d and segmentation: one group
    assert [n.name for n in whole.nodes] == [n.name for n in FULL_GRAPH.nodes]
    assert [[n.name for n in g.nodes] for g in independent_groups(CHAIN_GRAPH)] == [["imagebox", "centroid"]]


def test_geometric_graph_in_two_processes_writes_the_same_messages(tmp_path):
    write_frame_bag(tmp_path / "frames", sweeps=3)
    graph = FULL_GRAPH.select(GEOMETRIC)
    one = replay(tmp_path / "frames", tmp_path / "one", graph, progress=False)
    two = replay_in_processes(tmp_path / "frames", tmp_path / "two", graph, 2, progress=False)
    expected, written = messages_by_topic(tmp_path / "one"), messages_by_topic(tmp_path / "two")
    assert set(written) == set(expected) and "/perception/occupancy/grid" in written
    for topic, messages in expected.items():
        assert written[topic] == messages, topic
    assert (two.messages_in, two.messages_out) == (one.messages_in, one.messages_out)
    assert [r.name for r in two.runners] == list(GEOMETRIC)
    assert [r.stats.frames_processed for r in two.runners] == [r.stats.frames_processed for r in one.runners] == [3] * 3
    assert f"nodes in worker processes: detection3d (cores {CORES[0]}); segmentation, occupancy (cores {CORES[1]})" \
        in two.format()


class OtherCentroidNode(CentroidNode):
    """A third independent test node."""

    name = "other_centroid"


THREE_GROUP_GRAPH = Graph((*TWO_GROUP_GRAPH.nodes, GraphNode(
    "other_centroid", OtherCentroidNode, inputs=TWO_GROUP_GRAPH.nodes[0].inputs,
    outputs={"~/output/objects": GraphOutput("/test/other_objects", "vision_msgs/msg/Detection3DArray",
                                             label_info=True)})))


def test_process_count_and_groups(tmp_path):
    bag = tmp_path / "bag"
    stamps = write_nuscenes_timed_bag(bag, duration_s=0.5, with_images=True)
    summary = replay_in_processes(bag, tmp_path / "out", THREE_GROUP_GRAPH, 1, progress=False)
    assert not any("worker" in w for w in summary.warnings)  # one process: runtime.bag.replay
    serial = messages_by_topic(tmp_path / "out")
    assert len(serial[OBJECTS_TOPIC]) == len(serial[MAP_OBJECTS_TOPIC]) == len(stamps["lidar"])
    summary = replay_in_processes(bag, tmp_path / "out2", THREE_GROUP_GRAPH, 2, progress=False)
    assert (f"nodes in worker processes: centroid, other_centroid (cores {CORES[0]}); map_centroid (cores "
            f"{CORES[1]})") in summary.warnings
    assert messages_by_topic(tmp_path / "out2") == serial
    assert [r.name for r in summary.runners] == ["centroid", "map_centroid", "other_centroid"]
    summary = replay_in_processes(bag, tmp_path / "out3", TWO_GROUP_GRAPH, 4, copy_inputs=True, progress=False)
    assert f"nodes in worker processes: centroid (cores {CORES[0]}); map_centroid (cores {CORES[1]})" \
        in summary.warnings
    copied = messages_by_topic(tmp_path / "out3")
    with BagReader(bag) as reader:  # the parent copies the inputs the workers read
        assert copied[LIDAR_TOPIC] == [(m.stamp_ns, bytes(m.rawdata)) for m in reader.messages([LIDAR_TOPIC])]

def test_a_linked_graph_runs_in_one_process_unless_the_number_of_processes_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr("perception3d.runtime.replay_processes.usable_cores", lambda: [0, 1])
    bag = tmp_path / "bag"
    stamps = write_nuscenes_timed_bag(bag, duration_s=0.5, with_images=True)
    summary = replay_in_processes(bag, tmp_path / "out", CHAIN_GRAPH, None, progress=False)
    assert any("all linked by topics (one group)" in w for w in summary.warnings)
    assert summary.runners[1].stats.outputs == len(stamps["lidar"])
    summary = replay_in_processes(bag, tmp_path / "out2", CHAIN_GRAPH, 2, progress=False)
    assert "nodes in worker processes: imagebox (cores 0, feeding the others); centroid (cores 1)" in summary.warnings
    assert messages_by_topic(tmp_path / "out2") == messages_by_topic(tmp_path / "out")


class SleepyImageBoxNode(ImageBoxNode):
    """The camera-triggered test node, sleeping sleep_s per firing cycle (a slow upstream stage)."""

    parameters = (Param("sleep_s", "float", 0.0, "seconds to sleep per frame", 0.0, 1.0),)

    def process(self, frame, tf, timer):
        time.sleep(self.params["sleep_s"])
        return super().process(frame, tf, timer)


IMAGEBOX, CHAIN_CENTROID = CHAIN_GRAPH.nodes
FORK_GRAPH = Graph((  # one camera-triggered source feeding two independent LiDAR nodes
    GraphNode("imagebox", SleepyImageBoxNode, inputs=IMAGEBOX.inputs, outputs=IMAGEBOX.outputs),
    CHAIN_CENTROID,
    GraphNode("other_centroid", OtherCentroidNode, inputs=CHAIN_CENTROID.inputs,
              outputs={"~/output/objects": GraphOutput("/test/other_objects", "vision_msgs/msg/Detection3DArray",
                                                       label_info=True)}),
))


def test_a_linked_graph_splits_into_its_sources_and_the_groups_they_feed():
    upstream, groups = pipeline_stages(FORK_GRAPH)
    assert [n.name for n in upstream.nodes] == ["imagebox"]
    assert [[n.name for n in g.nodes] for g in groups] == [["centroid"], ["other_centroid"]]
    upstream, groups = pipeline_stages(FULL_GRAPH)
    assert [n.name for n in upstream.nodes] == ["detector2d"]
    assert [[n.name for n in g.nodes] for g in groups] == [["detection3d"], ["segmentation", "occupancy"]]
    for group in groups:  # detection3d still reads detector2d's boxes, not the bag's; occupancy segmentation's cloud
        for node in group.nodes:
            assert group.topics(node, ["CAM_FRONT"]) == FULL_GRAPH.topics(node, ["CAM_FRONT"])
    assert pipeline_stages(FULL_GRAPH.select(["detector2d"])) == (None, [FULL_GRAPH.select(["detector2d"])])


@pytest.mark.parametrize("sleepy", [None, "imagebox", "centroid"])
def test_a_pipeline_writes_the_same_messages_as_one_process(tmp_path, sleepy):
    """Whichever stage is slower (the downstream ones wait for the upstream one, or it runs ahead of them), each
    node gets its inputs in the order of a replay in one process."""
    bag = tmp_path / "bag"
    stamps = write_nuscenes_timed_bag(bag, duration_s=1.0, with_images=True)
    config = tmp_path / "params.yaml"
    config.write_text("/**:\n  ros__parameters: {}\n" + (f"{sleepy}:\n  ros__parameters:\n    sleep_s: 0.02\n"
                                                            if sleepy else ""))
    one = replay_in_processes(bag, tmp_path / "one", FORK_GRAPH, 1, config=config, progress=False)
    expected = messages_by_topic(tmp_path / "one")
    assert len(expected["/test/other_objects"]) == len(stamps["lidar"])
    for processes in (2, 3):
        out = tmp_path / f"in_{processes}"
        summary = replay_in_processes(bag, out, FORK_GRAPH, processes, config=config, progress=False)
        assert messages_by_topic(out) == expected
        assert any("imagebox (cores" in w and "feeding the others" in w for w in summary.warnings)
        assert [(r.name, r.stats.frames_processed, r.stats.outputs) for r in summary.runners] == \
            [(r.name, r.stats.frames_processed, r.stats.outputs) for r in one.runners]
        assert len([name for name in summary.cpu_s if name.startswith("worker")]) == processes


def test_the_upstream_feed_hands_over_what_was_published_up_to_each_bag_message():
    """The upstream worker's writer tags what it publishes with the bag message it works on; the downstream worker's
    feed hands a message over before that bag message, once the upstream worker has got past it, and what the
    upstream nodes published while flushing before the downstream nodes flush."""
    results, feeds = multiprocessing.Pipe(duplex=False)
    received, sent = multiprocessing.Pipe(duplex=False)
    writer = _PipeWriter(sent, [(feeds, frozenset({"/a", "/flushed"}))])
    time_type = "builtin_interfaces/msg/Time"
    for topic in ("/a", "/b", "/flushed"):
        writer.add_topic(topic, time_type, SENSOR)

    def publish(topic, sec):
        writer.write(topic, sec, default_factory().time(sec * 1_000_000_000), SENSOR)

    assert writer.before(0) == []
    publish("/a", 10)
    publish("/b", 11)  # not read downstream: only to the writing process
    writer.before(1)
    writer.before(2)
    publish("/a", 12)
    writer.before_flush()
    publish("/flushed", 13)
    feeds.close()  # the upstream worker ends
    feed = _UpstreamFeed(results)

    def seconds(items):
        return [(topic, msg.sec) for topic, msg in items]

    assert seconds(feed.before(0)) == [("/a", 10)]
    assert seconds(feed.before(1)) == []
    assert seconds(feed.before(2)) == [("/a", 12)]
    assert seconds(feed.before(3)) == []
    assert seconds(feed.before_flush()) == [("/flushed", 13)]
    assert [received.recv()[1][0] for _ in range(4)] == ["/a", "/b", "/a", "/flushed"]  # all to the writing process


def test_an_upstream_worker_that_cannot_start_raises_its_error_and_writes_nothing(tmp_path):
    bag = tmp_path / "bag"
    write_nuscenes_timed_bag(bag, duration_s=0.2)  # no images: the image box node has no camera topic
    with pytest.raises(BagError, match="node imagebox: no camera topic is in the bag"):
        replay_in_processes(bag, tmp_path / "out", FORK_GRAPH, 3, progress=False)
    assert not (tmp_path / "out").exists()


_KILLED_WHILE_DRAWING = '''
import multiprocessing, os, signal, sys, threading
from tqdm import tqdm
from perception3d.runtime.replay_processes import own_progress_lock

def worker(sender):
    own_progress_lock()  # as every replay worker does first
    tqdm.get_lock().acquire()  # killed while one of its bars holds the lock
    sender.send("held")
    signal.pause()

tqdm.get_lock()  # the writing process has drawn bars before it forks
receiver, sender = multiprocessing.Pipe(duplex=False)
child = multiprocessing.get_context("fork").Process(target=worker, args=(sender,))
child.start()
assert receiver.recv() == "held"
child.kill()
child.join()
bar = threading.Thread(target=lambda: tqdm(total=1, disable=True).close(), daemon=True)
bar.start()
bar.join(10.0)
print("waits" if bar.is_alive() else "drawn", flush=True)
os._exit(0)
'''


def test_a_worker_killed_while_drawing_leaves_the_writing_process_its_progress_bars():
    # tqdm's default lock is a semaphore shared across a fork: taken by a worker the writing process kills (as it
    # kills workers that outlive an error), it stayed taken, and the next replay of that process hung in its bar.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _KILLED_WHILE_DRAWING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "drawn"


def test_the_summary_gives_the_cpu_time_of_each_process(tmp_path):
    bag = tmp_path / "bag"
    sweeps = len(write_nuscenes_timed_bag(bag, duration_s=0.5)["lidar"])
    config = tmp_path / "busy.yaml"
    config.write_text("/**:\n  ros__parameters: {}\ncentroid:\n  ros__parameters:\n    busy_s: 0.05\n")
    busy = sweeps * 0.05  # CPU seconds the centroid node spends, at least
    one = replay_in_processes(bag, tmp_path / "one", TWO_GROUP_GRAPH, 1, config=config, progress=False)
    assert set(one.cpu_s) == {"replay"}
    assert one.cpu_s["replay"] >= busy and one.wall_s >= busy
    two = replay_in_processes(bag, tmp_path / "two", TWO_GROUP_GRAPH, 2, config=config, progress=False)
    assert set(two.cpu_s) == {"worker centroid", "worker map_centroid", "writer"}
    assert two.cpu_s["worker centroid"] >= busy > two.cpu_s["worker map_centroid"]  # each worker counts its own
    assert two.cpu_s["writer"] < busy  # the writing process runs no node
    assert "s CPU (worker " in two.format() and "writer" in two.format()


def test_a_worker_that_cannot_start_raises_its_error_and_writes_nothing(tmp_path):
    bag = tmp_path / "bag"
    write_nuscenes_timed_bag(bag, duration_s=0.2)
    graph = TWO_GROUP_GRAPH.with_remaps({LIDAR_TOPIC: "/lidar/points"})
    with pytest.raises(BagError, match="needs LiDAR topic /lidar/points"):
        replay_in_processes(bag, tmp_path / "out", graph, 2, progress=False)
    assert not (tmp_path / "out").exists()


def children(pid: int) -> list[int]:
    """The process ids of a process's children (Linux /proc)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("stop", ["SIGINT to the replay", "SIGTERM to the replay and its workers"])
def test_interrupted_replay_in_processes_leaves_a_readable_bag(tmp_path, stop):
    proc, out = start_slow_replay(tmp_path, 0.2, "--graph-def", "replay_fixtures:TWO_GROUP_GRAPH",
                                  "--processes", "2")
    time.sleep(1.5)  # 80 sweeps at >= 200 ms each for the centroid node: still running
    if stop.startswith("SIGINT"):
        proc.send_signal(signal.SIGINT)
    else:  # as a service manager stops a process group
        if not Path(f"/proc/{proc.pid}/task/{proc.pid}/children").exists():
            proc.kill()
            pytest.skip("this kernel does not list a process's children (/proc/PID/task/PID/children)")
        workers = children(proc.pid)
        assert len(workers) == 2
        for pid in [*workers, proc.pid]:
            os.kill(pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stdout
    table = [line.split() for line in stdout.splitlines() if line.startswith(("centroid ", "map_centroid "))]
    reported = [row[0] for row in table if row[1].isdigit()]  # the node rows (name, frames in, ...)
    assert reported == ["centroid", "map_centroid"]  # each worker stopped and sent its counters
    written = messages_by_topic(out)
    assert 0 < len(written[OBJECTS_TOPIC]) < 80
    assert len(written[MAP_OBJECTS_TOPIC]) >= len(written[OBJECTS_TOPIC])  # the map node does not sleep
    with BagReader(out) as reader:
        assert reader.message_count == sum(len(m) for m in written.values())


def test_an_interrupted_pipeline_leaves_a_readable_bag_and_every_workers_counters(tmp_path):
    proc, out = start_slow_replay(tmp_path, 0.2, "--graph-def", "replay_fixtures:CHAIN_GRAPH", "--processes", "2",
                                  with_images=True)
    time.sleep(1.5)  # 80 sweeps at >= 200 ms each for the downstream centroid node: still running
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stdout and "imagebox (cores" in stdout
    table = [line.split() for line in stdout.splitlines() if line.startswith(("imagebox ", "centroid "))]
    assert [row[0] for row in table if row[1].isdigit()] == ["imagebox", "centroid"]
    written = messages_by_topic(out)
    assert 0 < len(written[OBJECTS_TOPIC]) < 80
    with BagReader(out) as reader:
        assert reader.message_count == sum(len(m) for m in written.values())


def test_bad_input_in_two_processes_is_counted_as_in_one(tmp_path):
    """A cloud that does not decode as points and an undecodable /tf message: each node counts its drop, the replay
    counts the input's once (every worker reads it), and every other frame comes out as in one process."""
    clean = tmp_path / "clean"
    write_nuscenes_timed_bag(clean, duration_s=1.0)

    def mutate(topic, index, message):
        if topic == LIDAR_TOPIC and index == 4:
            msg = message.decode()
            msg.point_step = 0
            return msg
        if topic == "/tf" and index == 5:
            return b"\x00\x01"  # not a TFMessage
        return None

    bag = tmp_path / "bad"
    assert mutated_copy(clean, bag, mutate) == 2
    one = replay_in_processes(bag, tmp_path / "one", TWO_GROUP_GRAPH, 1, progress=False)
    two = replay_in_processes(bag, tmp_path / "two", TWO_GROUP_GRAPH, 2, progress=False)
    assert messages_by_topic(tmp_path / "two") == messages_by_topic(tmp_path / "one")
    assert two.drops == one.drops and sum(one.drops.values()) == 1 and "on /tf" in next(iter(one.drops))
    assert [(r.name, dict(r.stats.drops)) for r in two.runners] == [(r.name, dict(r.stats.drops))
                                                                     for r in one.runners]
    assert all(sum(r.stats.drops.values()) == 1 for r in two.runners)


def test_a_truncated_bag_in_two_processes_keeps_every_intact_message_as_in_one(tmp_path):
    bag = tmp_path / "bag"
    write_nuscenes_timed_bag(bag, duration_s=1.0, points_per_sweep=4000)  # several MCAP chunks
    (mcap,) = bag.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size * 2 // 3])
    one = replay_in_processes(bag, tmp_path / "one", TWO_GROUP_GRAPH, 1, progress=False)
    two = replay_in_processes(bag, tmp_path / "two", TWO_GROUP_GRAPH, 2, progress=False)
    written = messages_by_topic(tmp_path / "two")
    assert written == messages_by_topic(tmp_path / "one") and 0 < len(written[OBJECTS_TOPIC]) < 20
    assert two.damage == one.damage != [] and two.messages_in == one.messages_in
