"""rosbag2 reading (MCAP or sqlite3, metadata v8/v9) and writing (MCAP, metadata v8), ROS-free via rosbags.

The writer closes the bag properly (chunk index, footer, metadata.yaml) when leaving its `with` block for any
reason, an exception or Ctrl-C included, so whatever was written before stays readable by `ros2 bag`, Foxglove
and the `mcap` readers.
"""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from ..errors import BagError
from .qos import OUTPUT, QosSpec
from .typestore import typestore

BAG_VERSION = 8  # rosbag2 metadata version that Humble reads (Jazzy reads 8 and 9)


def rosbags_qos(spec: QosSpec) -> Qos:
    """The rosbags Qos record of a QosSpec (KEEP_LAST, automatic liveliness, infinite deadlines)."""
    infinite = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=spec.depth,
        reliability=QosReliability.RELIABLE if spec.reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if spec.transient_local else QosDurability.VOLATILE,
        deadline=infinite,
        lifespan=infinite,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=infinite,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """Writes a rosbag2 (MCAP storage, metadata v8); use as a context manager.

    Topics are added on first write with the QoS given there (or declared beforehand with `add_topic`).
    Header stamps are the caller's business; `stamp_ns` is the bag's receive/log time.
    """

    def __init__(self, path: str | Path, custom_data: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; choose a new output path (bags are never overwritten)")
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._connections: dict[str, Any] = {}
        self._msgtypes: dict[str, str] = {}
        self._store = typestore()
        self._open = False
        self.count = 0

    def open(self) -> BagWriter:
        self._writer.open()
        self._open = True
        return self

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write index, footer and metadata.yaml; safe to call twice."""
        if self._open:
            self._open = False
            self._writer.close()

    def add_topic(self, topic: str, msgtype: str, qos: QosSpec = OUTPUT) -> None:
        """Declare a topic with its type and the QoS its publisher offers."""
        if topic in self._connections:
            if self._msgtypes[topic] != msgtype:
                raise BagError(f"topic {topic} was added as {self._msgtypes[topic]}, cannot also write {msgtype}")
            return
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self._store, serialization_format="cdr",
            offered_qos_profiles=[rosbags_qos(qos)])
        self._msgtypes[topic] = msgtype

    def write(self, topic: str, stamp_ns: int, msg: Any, qos: QosSpec = OUTPUT) -> None:
        """Serialize (CDR) and write a rosbags message; the topic is added on first use."""
        msgtype = msg.__msgtype__
        self.add_topic(topic, msgtype, qos)
        self.write_raw(topic, stamp_ns, self._store.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        """Write already-serialized CDR bytes on a topic declared with `add_topic`."""
        if not self._open:
            raise BagError(f"{self.path}: write after close")
        self._writer.write(self._connections[topic], int(stamp_ns), data)
        self.count += 1


@dataclass(frozen=True)
class BagMessage:
    """One message of a bag: topic, log time [ns], type name, and the raw CDR bytes (decoded on demand)."""

    topic: str
    stamp_ns: int
    msgtype: str
    rawdata: bytes

    def decode(self) -> Any:
        return typestore().deserialize_cdr(self.rawdata, self.msgtype)


class BagReader:
    """Reads a rosbag2 directory (MCAP or sqlite3, metadata v8 or v9) in log-time order; a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag (expected a rosbag2 directory with metadata.yaml)")
        if self.path.is_file():
            raise BagError(f"{self.path}: is a file; pass the rosbag2 directory that holds it and metadata.yaml")
        try:
            self._reader = AnyReader([self.path], default_typestore=typestore())
        except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
            raise BagError(f"{self.path}: not a readable rosbag2: {exc}") from exc

    def __enter__(self) -> BagReader:
        try:
            self._reader.open()
        except Exception as exc:
            raise BagError(f"{self.path}: cannot open: {exc}") from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """{topic: message type} of the bag."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    def offered_qos(self, topic: str) -> list[Any]:
        """The QoS profiles recorded for a topic (rosbags Qos records)."""
        for c in self._reader.connections:
            if c.topic == topic:
                return list(getattr(c.ext, "offered_qos_profiles", []))
        raise BagError(f"{self.path}: no topic {topic}")

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages in log-time order, optionally of some topics only.

        Raises:
            BagError: a requested topic is missing, or the storage is truncated or corrupt.
        """
        connections = self._reader.connections
        if topics is not None:
            wanted = set(topics)
            missing = wanted - {c.topic for c in connections}
            if missing:
                raise BagError(f"{self.path}: missing topic(s) {sorted(missing)}; it has {sorted(self.topics)}")
            connections = [c for c in connections if c.topic in wanted]
        try:
            for connection, timestamp, rawdata in self._reader.messages(connections=connections):
                yield BagMessage(connection.topic, int(timestamp), connection.msgtype, rawdata)
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as exc:
            raise BagError(f"{self.path}: cannot read further (truncated or corrupt storage?): {exc}") from exc


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so open bags get closed cleanly."""
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
