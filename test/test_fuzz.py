"""Fuzz suite: random mutations of every input message type through the bag runtime (issue 15, acceptance 2).

Each example takes a clean 3 s synthetic bag (LiDAR, six cameras with JPEG images but one camera with raw
sensor_msgs/Image, CameraInfo, Detection2DArray, /tf, /tf_static), picks a 0.6 s window and mutates about 50 of the
messages in it: fields of PointCloud2, CompressedImage, Image, CameraInfo, Detection2DArray and TFMessage set to
values a broken driver sends (wrong counts, sizes, encodings, NaN, zero quaternions, outlier stamps, unknown frames
and classes, decompression bombs, thousands of boxes), or the raw CDR bytes flipped, cut or replaced. The graph is
the camera-triggered test detector feeding the test centroid node, and a second centroid node on the bag's own
detections (the real detection3d node costs 20 ms a frame; its 2D boxes pass the same boundary checks). Each replay
must finish without an exception, count only typed drops (no `internal`), and give every
frame outside the window (and a margin for synchronization and interpolation) byte-identical to the clean replay.

Deterministic: hypothesis with derandomize=True and a fixed number of examples, mutation values from a seeded
generator; about a minute on two cores.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bag_mutation import mutated_copy
from perception3d.bench.robustness import png_bomb
from perception3d.msgs.bag import BagReader
from perception3d.msgs.image import encode_jpeg
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import Graph, GraphNode, GraphOutput
from replay_fixtures import CENTROID_GRAPH_NODE, CHAIN_GRAPH, T0, CentroidNode, write_nuscenes_timed_bag

KINDS = ("PointCloud2", "CompressedImage", "Image", "CameraInfo", "Detection2DArray", "TFMessage", "raw CDR")
TYPE_OF_KIND = {"PointCloud2": "sensor_msgs/msg/PointCloud2", "CompressedImage": "sensor_msgs/msg/CompressedImage",
                "Image": "sensor_msgs/msg/Image", "CameraInfo": "sensor_msgs/msg/CameraInfo",
                "Detection2DArray": "vision_msgs/msg/Detection2DArray", "TFMessage": "tf2_msgs/msg/TFMessage"}
RAW_CAMERA = "CAM_BACK"
DURATION_S = 3.0
WINDOW_NS = 1_000_000_000
MARGIN_NS = 300_000_000  # sync tolerance + offsets + timeout, camera-set window, /tf interpolation
EXAMPLES = 36
MUTATIONS_PER_EXAMPLE = (90, 110)


class BagDetectionsCentroid(CentroidNode):
    """The test centroid node under another name, on the bag's /<camera>/detections."""

    name = "centroid_bag"


GRAPH = Graph((*CHAIN_GRAPH.nodes, GraphNode(
    "centroid_bag", BagDetectionsCentroid, inputs=CENTROID_GRAPH_NODE.inputs,
    outputs={"~/output/objects": GraphOutput("/test/objects_from_bag", "vision_msgs/msg/Detection3DArray",
                                                label_info=True)}),
)).with_remaps({f"/{RAW_CAMERA}/image/compressed": f"/{RAW_CAMERA}/image"})


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_clean")
    write_nuscenes_timed_bag(root / "bag", duration_s=DURATION_S, with_images=True, raw_image_cameras=(RAW_CAMERA,))
    summary = replay(root / "bag", root / "out", GRAPH, progress=False)
    assert not summary_drops(summary)
    with BagReader(root / "bag") as reader:
        index = [(m.topic, m.stamp_ns, m.msgtype) for m in reader.messages()]
    return root / "bag", index, outputs(root / "out")


def summary_drops(summary) -> Counter:
    out = Counter(summary.drops)
    for runner in summary.runners:
        out.update(runner.stats.drops)
    return out


def outputs(out: Path) -> dict[tuple[str, int], bytes]:
    """{(topic, log time): CDR bytes} of every node output (label infos and copied /tf excluded)."""
    with BagReader(out) as reader:
        return {(m.topic, m.stamp_ns): bytes(m.rawdata) for m in reader.messages()
                if not m.topic.startswith("/tf") and not m.topic.endswith("label_info")}


# -- mutations: each edits a decoded message in place or returns raw bytes -------------------------------------------
def outlier_stamp(header, rng) -> None:
    base = rng.choice([0, T0 + 3600 * 10**9, T0 - 3600 * 10**9, (2**31 - 200) * 10**9])  # int32 seconds
    ns = int(base) + int(rng.integers(0, 100 * 10**9))  # outliers rarely agree with each other
    header.stamp.sec, header.stamp.nanosec = divmod(ns, 10**9)


def jitter_stamp(header, rng) -> None:
    ns = header.stamp.sec * 10**9 + header.stamp.nanosec + int(rng.integers(-20_000_000, 20_000_000))
    header.stamp.sec, header.stamp.nanosec = divmod(ns, 10**9)


def bad_frame(header, rng) -> None:
    header.frame_id = str(rng.choice(["", "nowhere", "map", "base_link", "LIDAR_TOP", "CAM_FRONT" * 50]))


def mutate_cloud(msg, rng):
    choice = rng.integers(13)
    field = msg.fields[int(rng.integers(len(msg.fields)))]
    if choice == 0:
        field.count = int(rng.choice([0, 3, 1000, 2**31 - 1]))
    elif choice == 1:
        field.datatype = int(rng.choice([0, 9, 255, 1, 8]))
    elif choice == 2:
        field.offset = int(rng.choice([17, 10**6, 2**31 - 1, 2**32 - 1]))
    elif choice == 3:
        field.name = str(rng.choice(["", "x", "y", "z", "ring", "é"]))
    elif choice == 4:
        msg.fields = [f for f in msg.fields if f.name != rng.choice(["x", "y", "z"])]
    elif choice == 5:
        msg.point_step = int(rng.choice([0, 1, 12, 21, 10**9]))
    elif choice == 6:
        msg.row_step = int(rng.choice([0, 1, msg.row_step - 1, msg.row_step * 2, 2**32 - 1]))
    elif choice == 7:
        msg.width, msg.height = int(rng.choice([0, 1, 2**31])), int(rng.choice([0, 1, 7, 2**31]))
    elif choice == 8:
        msg.data = msg.data[: int(rng.integers(len(msg.data)))]
    elif choice == 9:
        msg.is_bigendian = not msg.is_bigendian
    elif choice == 10:
        values = msg.data.view(np.float32).copy()
        values[rng.integers(values.size, size=5)] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
        msg.data = values.view(np.uint8)
    elif choice == 11:
        bad_frame(msg.header, rng)
    else:
        (outlier_stamp if rng.random() < 0.6 else jitter_stamp)(msg.header, rng)


PNG_BOMB = png_bomb(40000, 40000)


def mutate_compressed(msg, rng):
    choice = rng.integers(10)
    if choice == 0:
        msg.format = str(rng.choice(["", "bmp", "png", "rgb8; jpeg compressed bgr8", "jpeg" * 100]))
    elif choice == 1:
        msg.data = msg.data[: int(rng.integers(len(msg.data)))]
    elif choice == 2:
        msg.data = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8)
    elif choice == 3:
        msg.data, msg.format = np.frombuffer(PNG_BOMB, np.uint8), "png"
    elif choice == 4:  # grey JPEG of the right size
        msg.data = np.frombuffer(encode_jpeg(np.full((12, 16), 77, np.uint8)), np.uint8)
    elif choice == 5:  # colour JPEG of another size
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        msg.data = np.frombuffer(encode_jpeg(np.full((h, w, 3), 77, np.uint8)), np.uint8)
    elif choice == 6:
        data = msg.data.copy()
        data[rng.integers(2, data.size, size=8)] ^= 0xFF
        msg.data = data
    elif choice == 7:
        bad_frame(msg.header, rng)
    else:
        (outlier_stamp if rng.random() < 0.6 else jitter_stamp)(msg.header, rng)


def mutate_raw_image(msg, rng):
    choice = rng.integers(9)
    if choice == 0:
        msg.encoding = str(rng.choice(["", "yuv422", "mono16", "32FC1", "bgr8", "mono8", "rgba8", "64FC3"]))
    elif choice == 1:
        msg.step = int(rng.choice([0, 1, msg.step - 1, msg.step + 7, 2**32 - 1]))
    elif choice == 2:
        msg.height, msg.width = int(rng.choice([0, 1, msg.width, 2**31])), int(rng.choice([0, 1, msg.height, 2**31]))
    elif choice == 3:
        msg.data = msg.data[: int(rng.integers(len(msg.data)))]
    elif choice == 4:
        msg.is_bigendian = not msg.is_bigendian
    elif choice == 5:
        msg.data = np.concatenate([msg.data, rng.integers(0, 256, 1000, dtype=np.uint8)])
    elif choice == 6:
        bad_frame(msg.header, rng)
    else:
        (outlier_stamp if rng.random() < 0.6 else jitter_stamp)(msg.header, rng)


def mutate_camera_info(msg, rng):
    choice = rng.integers(9)
    if choice == 0:
        msg.width, msg.height = int(rng.choice([0, 8, 16, 2**31])), int(rng.choice([0, 6, 12, 2**31]))
    elif choice == 1:
        k = msg.k.copy()
        k[rng.integers(9, size=2)] = rng.choice([0.0, np.nan, -5.0, np.inf, 1e300])
        msg.k = k
    elif choice == 2:
        msg.d = rng.normal(size=int(rng.choice([1, 3, 4, 5, 8, 14])))
    elif choice == 3:
        msg.distortion_model = str(rng.choice(["", "fisheye", "plumb_bob", "equidistant", "rational_polynomial"]))
        msg.d = rng.normal(size=int(rng.integers(0, 9))) * 0.01
    elif choice == 4:
        p = msg.p.copy()
        p[rng.integers(12)] = rng.choice([np.nan, np.inf])
        msg.p = p
    elif choice == 5:
        msg.k = np.zeros(9)
    elif choice == 6:
        bad_frame(msg.header, rng)
    else:
        (outlier_stamp if rng.random() < 0.6 else jitter_stamp)(msg.header, rng)


def mutate_detections(msg, rng):
    choice = rng.integers(10)
    det = msg.detections[0] if msg.detections else None
    if det is None or choice == 0:  # thousands of boxes
        template = det if det is not None else None
        if template is not None:
            msg.detections = [template] * int(rng.integers(600, 3000))
    elif choice == 1:
        det.results[0].hypothesis.score = float(rng.choice([7.5, -1.0, np.nan, np.inf, 1.0000001]))
    elif choice == 2:
        det.bbox.size_x, det.bbox.size_y = float(rng.choice([-3.0, 0.0, np.nan, 1e12])), float(rng.choice([0.0, 5.0]))
    elif choice == 3:
        det.bbox.center.position.x = float(rng.choice([np.nan, -1e9, 1e9, np.inf]))
    elif choice == 4:
        det.results[0].hypothesis.class_id = str(rng.choice(["", "unicorn", "CAR", "person", "x" * 500]))
    elif choice == 5:
        det.results = []
    elif choice == 6:
        msg.detections = []
    elif choice == 7:
        bad_frame(msg.header, rng)
    else:
        (outlier_stamp if rng.random() < 0.6 else jitter_stamp)(msg.header, rng)


def mutate_tf(msg, rng):
    choice = rng.integers(9)
    t = msg.transforms[0]
    if choice == 0:
        t.transform.rotation.x = t.transform.rotation.y = t.transform.rotation.z = t.transform.rotation.w = 0.0
    elif choice == 1:
        setattr(t.transform.rotation, str(rng.choice(["x", "w"])), float(rng.choice([np.nan, np.inf, 2.0])))
    elif choice == 2:
        setattr(t.transform.translation, str(rng.choice(["x", "y", "z"])), float(rng.choice([np.nan, -np.inf, 1e9])))
    elif choice == 3:
        t.header.frame_id, t.child_frame_id = t.child_frame_id, t.header.frame_id
    elif choice == 4:
        t.child_frame_id = str(rng.choice(["", "map", "CAM_FRONT", "LIDAR_TOP", "odom"]))
    elif choice == 5:
        t.header.frame_id = str(rng.choice(["", "base_link", "odom", "CAM_BACK"]))
    elif choice == 6:
        msg.transforms = []
    elif choice == 7:
        msg.transforms = [t, t]
    else:
        outlier_stamp(t.header, rng)


def mutate_cdr(raw: bytes, rng) -> bytes:
    data = bytearray(raw)
    choice = rng.integers(4)
    if choice == 0:
        for i in rng.integers(0, len(data), size=int(rng.integers(1, 9))):
            data[i] ^= int(rng.integers(1, 256))
        return bytes(data)
    if choice == 1:
        return bytes(data[: int(rng.integers(0, len(data)))])
    if choice == 2:
        return rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
    start = int(rng.integers(0, len(data)))
    data[start:start + int(rng.integers(1, 64))] = bytes(64)[: len(data[start:start + 64])]
    return bytes(data)


MUTATORS = {"PointCloud2": mutate_cloud, "CompressedImage": mutate_compressed, "Image": mutate_raw_image,
            "CameraInfo": mutate_camera_info, "Detection2DArray": mutate_detections, "TFMessage": mutate_tf}


def run_example(clean, root: Path, start: int, plan: list[tuple[str, int]], seed: int) -> list[str]:
    """Mutate the clean bag as (start, plan, seed) say, replay it and check it (module doc); returns the kinds of
    the messages mutated."""
    bag, index, reference = clean
    first, last = index[0][1], index[-1][1]
    rng = np.random.default_rng(seed)
    window_start = first + 200_000_000 + start % (last - first - WINDOW_NS - 400_000_000)
    window = [i for i, (_, stamp, _) in enumerate(index) if window_start <= stamp < window_start + WINDOW_NS]
    chosen: dict[int, str] = {}
    for kind, pick in plan:
        candidates = [i for i in window if kind == "raw CDR" or index[i][2] == TYPE_OF_KIND[kind]]
        if candidates:
            chosen.setdefault(candidates[pick % len(candidates)], kind)
    positions = {}
    count: Counter = Counter()
    for i, (topic, _, _) in enumerate(index):
        positions[i] = count[topic]
        count[topic] += 1
    by_topic = {(index[i][0], positions[i]): kind for i, kind in chosen.items()}

    def mutate(topic, position, message):
        kind = by_topic.get((topic, position))
        if kind is None:
            return None
        if kind == "raw CDR":
            return mutate_cdr(message.rawdata, rng)
        msg = message.decode()
        MUTATORS[kind](msg, rng)
        return msg

    mutated_copy(bag, root / "bag", mutate)
    summary = replay(root / "bag", root / "out", GRAPH, progress=False)  # no exception: no crash
    drops = summary_drops(summary)
    assert not [reason for reason in drops if reason.startswith("internal")], drops
    assert not summary.error and not summary.output_error
    got = outputs(root / "out")
    affected = (window_start - MARGIN_NS, window_start + WINDOW_NS + MARGIN_NS)
    for (topic, stamp), data in reference.items():
        if not affected[0] <= stamp < affected[1]:
            assert got.get((topic, stamp)) == data, f"{topic} at {stamp} changed or lost"
    return list(chosen.values())


def test_mutated_inputs_never_crash_and_cost_only_their_own_frames(clean, tmp_path_factory):
    tally: Counter = Counter()

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
              phases=(Phase.generate,),  # no shrinking: a failing example is reported as it is
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(start=st.integers(0, 10**6),
           plan=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 10**6)),
                         min_size=MUTATIONS_PER_EXAMPLE[0], max_size=MUTATIONS_PER_EXAMPLE[1]),
           seed=st.integers(0, 2**32 - 1))
    def one_example(start, plan, seed):
        tally.update(run_example(clean, tmp_path_factory.mktemp("fuzz"), start, plan, seed))

    one_example()
    print(f"fuzz: {sum(tally.values())} mutated messages in {EXAMPLES} replays: {dict(tally)}")
    assert sum(tally.values()) >= 2000 and all(tally[kind] >= 100 for kind in KINDS), tally
