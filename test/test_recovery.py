"""Damaged bags: replay and `perception3d recover` read at least as many LiDAR sweeps as the `mcap` library's own
non-seeking (record-by-record) reader, on truncated, zeroed-middle and SIGKILLed bags; the recovered bag is a
complete rosbag2 (summary, index, metadata.yaml)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader

from perception3d.bench.robustness import mcap_reference_count
from perception3d.cli import main as cli_main
from perception3d.msgs.bag import BagReader
from perception3d.runtime.bag import replay
from replay_fixtures import OBJECTS_TOPIC, TEST_GRAPH, write_nuscenes_timed_bag

ROOT = Path(__file__).resolve().parents[1]
LIDAR = "/LIDAR_TOP/points"
POINTS = 3000  # 60 kB sweeps: the 4 s bag spans 5 MCAP chunks, so whole chunks survive each kind of damage




@pytest.fixture(scope="module")
def clean_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "bag"
    stamps = write_nuscenes_timed_bag(path, duration_s=4.0, points_per_sweep=POINTS)
    return path, stamps


def damaged_copy(clean: Path, target: Path, damage: str) -> Path:
    (mcap_file,) = clean.glob("*.mcap")
    data = mcap_file.read_bytes()
    n = len(data)
    payload = {"truncated_50": data[: n // 2], "truncated_90": data[: n * 9 // 10], "last_1k": data[:-1024],
               "zeroed_middle": data[: n // 2] + bytes(400_000) + data[n // 2 + 400_000:]}[damage]
    target.mkdir()
    (target / mcap_file.name).write_bytes(payload)
    if damage != "truncated_50":  # one of them without metadata.yaml, as a killed recorder leaves it
        (target / "metadata.yaml").write_bytes((clean / "metadata.yaml").read_bytes())
    return target


def killed_writer_bag(target: Path) -> Path:
    """A bag whose writer process was SIGKILLed before closing it (no summary, no metadata.yaml)."""
    code = ("import os, signal\n"
            "from perception3d.msgs.bag import BagWriter\n"
            "BagWriter.close = lambda self: os.kill(os.getpid(), signal.SIGKILL)\n"
            "from replay_fixtures import write_nuscenes_timed_bag\n"
            f"write_nuscenes_timed_bag({str(target)!r}, duration_s=4.0, points_per_sweep={POINTS})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "test")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (target / "metadata.yaml").exists()
    return target


def objects_in(out: Path) -> int:
    (mcap_file,) = out.glob("*.mcap")
    with mcap_file.open("rb") as f:
        return sum(1 for _, channel, _ in make_reader(f).iter_messages() if channel.topic == OBJECTS_TOPIC)


@pytest.mark.parametrize("damage", ["truncated_50", "truncated_90", "last_1k", "zeroed_middle", "sigkill"])
def test_damaged_bag_gives_at_least_what_the_mcap_reader_recovers(clean_bag, tmp_path, damage):
    clean, stamps = clean_bag
    bag = (killed_writer_bag(tmp_path / "bag") if damage == "sigkill"
           else damaged_copy(clean, tmp_path / "bag", damage))
    (mcap_file,) = bag.glob("*.mcap")
    reference = mcap_reference_count(mcap_file, LIDAR)
    assert 0 < reference < len(stamps["lidar"]) or damage == "last_1k"

    summary = replay(bag, tmp_path / "out", TEST_GRAPH, progress=False)
    frames = objects_in(tmp_path / "out")
    assert frames >= reference and not summary.error and not summary.output_error
    assert summary.damage and "input damaged" in summary.format()
    if damage == "zeroed_middle":  # sweeps after the damage are read too, not only those before it
        assert frames > reference

    recovered = tmp_path / "recovered"
    assert cli_main(["recover", str(bag), "--out", str(recovered)]) == 0
    with BagReader(recovered) as reader:  # a complete bag: rosbags' indexed reader opens it
        assert not reader.record_by_record
        lidar = sum(1 for _ in reader.messages([LIDAR]))
        assert reader.qos_spec("/tf_static").transient_local and not reader.qos_spec(LIDAR).reliable
    assert lidar >= reference and lidar >= frames
    (recovered_file,) = recovered.glob("*.mcap")
    with recovered_file.open("rb") as f:
        assert make_reader(f).get_summary() is not None


def test_recover_of_a_clean_bag_keeps_every_message(clean_bag, tmp_path, capsys):
    clean, _ = clean_bag
    assert cli_main(["recover", str(clean), "--out", str(tmp_path / "copy")]) == 0
    assert "the input had no damage" in capsys.readouterr().out
    with BagReader(clean) as a, BagReader(tmp_path / "copy") as b:
        assert a.message_count == b.message_count and a.topics == b.topics
        assert [(m.topic, m.stamp_ns, m.rawdata) for m in a.messages()] == \
            [(m.topic, m.stamp_ns, bytes(m.rawdata)) for m in b.messages()]


def test_chunk_crc_mismatch_skips_the_chunk(tmp_path):
    from mcap.writer import CompressionType, Writer

    from perception3d.msgs.mcap_records import McapWalk

    path = tmp_path / "crc.mcap"
    with path.open("wb") as f:  # the mcap library's writer stores chunk CRCs (rosbags writes 0: none)
        writer = Writer(f, chunk_size=200, compression=CompressionType.NONE)
        writer.start()
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        channel = writer.register_channel("/text", "cdr", schema)
        for k in range(20):
            writer.add_message(channel, log_time=k, data=bytes([k]) * 50, publish_time=k)
        writer.finish()
    data = bytearray(path.read_bytes())
    hit = data.find(bytes([7]) * 50)
    data[hit + 10] ^= 0xFF  # a flipped bit inside a message payload: only the CRC can tell
    path.write_bytes(bytes(data))
    walk = McapWalk(path)
    payloads = [payload for _, _, payload in walk.messages()]
    assert bytes([7]) * 50 not in payloads and len(payloads) < 20 and bytes([19]) * 50 in payloads
    assert any("CRC mismatch" in d.problem for d in walk.damage)


def test_walk_copies_out_only_the_payloads_asked_for_and_skips_a_damaged_record_inside_an_intact_chunk(tmp_path):
    from perception3d.msgs.bag import BagWriter
    from perception3d.msgs.factory import default_factory
    from perception3d.msgs.mcap_records import McapWalk

    f = default_factory()
    with BagWriter(tmp_path / "bag") as bag:  # rosbags writes uncompressed chunks without CRCs
        for k in range(30):
            bag.write("/a" if k % 3 else "/b", k, f("std_msgs/msg/String", data=f"message {k:02d}"))
    (path,) = (tmp_path / "bag").glob("*.mcap")
    every = [(channel.topic, t, payload) for channel, t, payload in McapWalk(path).messages()]
    assert len(every) == 30 and all(payload is not None for *_, payload in every)
    only_b = [(channel.topic, t, payload) for channel, t, payload in McapWalk(path).messages({"/b"})]
    assert only_b == [(topic, t, payload if topic == "/b" else None) for topic, t, payload in every]

    data = bytearray(path.read_bytes())
    hit = data.find(b"message 13") - 4 - 4 - 22 - 9  # CDR header, string length, message fields, record header
    assert data[hit] == 0x05  # the Message record of message 13
    data[hit] = 0x77
    path.write_bytes(bytes(data))
    walk = McapWalk(path)
    texts = [bytes(payload) for _, _, payload in walk.messages({"/a"}) if payload is not None]
    assert len(texts) == 19 and not any(b"message 13" in t for t in texts) and any(b"message 14" in t for t in texts)
    assert any("unreadable record" in d.problem for d in walk.damage)
