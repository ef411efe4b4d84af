"""rosbag2 reading (MCAP or sqlite3, metadata v8/v9) and writing (MCAP, metadata v8), ROS-free via rosbags.

The writer closes the bag properly (chunk index, footer, metadata.yaml) when leaving its `with` block for any
reason, an exception or Ctrl-C included, so whatever was written before stays readable by `ros2 bag`, Foxglove
and the `mcap` readers.
"""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from ..errors import BagError, BagWriteError
from .mcap_records import McapChannel, McapDamage, McapWalk
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
        """Create the bag directory and the MCAP file.

        Raises:
            BagWriteError: the path cannot be created (read-only filesystem, no permission, a file in the way).
        """
        try:
            self._writer.open()
        except OSError as exc:
            raise BagWriteError(f"{self.path}: cannot create the output bag: {exc.strerror or exc}; nothing was "
                                f"written") from exc
        self._open = True
        return self

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Write index, footer and metadata.yaml; safe to call twice. SIGINT and SIGTERM are held back until the
        bag is closed, so a second Ctrl-C cannot leave it without its summary.

        Raises:
            BagWriteError: the disk filled up or the file system failed while finishing the bag.
        """
        if self._open:
            self._open = False
            with signals_deferred():
                try:
                    self._writer.close()
                except OSError as exc:
                    raise BagWriteError(
                        f"{self.path}: cannot finish the output bag after {self.count} messages: "
                        f"{exc.strerror or exc}; the messages of its completed chunks are kept: "
                        f"`perception3d recover {self.path}` makes it readable") from exc

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
        try:
            self._writer.write(self._connections[topic], int(stamp_ns), data)
        except OSError as exc:
            raise BagWriteError(
                f"{self.path}: cannot write: {exc.strerror or exc} after {self.count} messages; the messages of its "
                f"completed chunks are kept: `perception3d recover {self.path}` makes it readable") from exc
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
    """Reads a rosbag2 directory (MCAP or sqlite3, metadata v8 or v9); a context manager.

    Two ways of reading an MCAP bag:
    - indexed (default for a complete bag): rosbags' reader, messages in log-time order through the summary index;
    - record by record (`tolerant=True`, and automatically when the bag lacks metadata.yaml or its summary cannot be
      read): msgs.mcap_records walks the file from the start, reads every intact message before and after damage
      (truncation, overwritten bytes, a writer killed before closing) in file order, checks chunk CRCs when present,
      and lists what it skipped in `damage`. Topics, counts and times then come from that walk (one extra pass at
      open), not from metadata.yaml.
    """

    def __init__(self, path: str | Path, tolerant: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag (expected a rosbag2 directory with metadata.yaml)")
        if self.path.is_file():
            raise BagError(f"{self.path}: is a file; pass the rosbag2 directory that holds it and metadata.yaml")
        self._mcap_files = sorted(self.path.glob("*.mcap"))
        self._reader = None
        self.damage: list[McapDamage] = []
        self._walk_index: _WalkIndex | None = None
        if tolerant and self._mcap_files:
            return
        try:
            self._reader = AnyReader([self.path], default_typestore=typestore())
        except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
            if not self._mcap_files:
                raise BagError(f"{self.path}: not a readable rosbag2: {exc}") from exc

    @property
    def record_by_record(self) -> bool:
        """True when the bag is read with the damage-tolerant record walk (see the class docstring)."""
        return self._reader is None

    def __enter__(self) -> BagReader:
        if self._reader is not None:
            try:
                self._reader.open()
                return self
            except Exception as exc:
                if not self._mcap_files:
                    raise BagError(f"{self.path}: cannot open: {exc}") from exc
                self._reader = None
        self._walk_index = _WalkIndex()
        for _ in self._walk(set(), self._walk_index):  # the index pass: no payload is copied out
            pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """{topic: message type} of the bag."""
        if self._reader is None:
            return dict(self._walk_index.topics)
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self._reader is not None else self._walk_index.start_ns

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time) if self._reader is not None else self._walk_index.end_ns

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count) if self._reader is not None else self._walk_index.count

    def offered_qos(self, topic: str) -> list[Any]:
        """The QoS profiles recorded for a topic (rosbags Qos records)."""
        if self._reader is None:
            raise BagError(f"{self.path}: read record by record; use qos_spec({topic!r})")
        for c in self._reader.connections:
            if c.topic == topic:
                return list(getattr(c.ext, "offered_qos_profiles", []))
        raise BagError(f"{self.path}: no topic {topic}")

    def qos_spec(self, topic: str) -> QosSpec:
        """The QosSpec of the first QoS profile recorded for a topic (OUTPUT when none was recorded)."""
        if topic not in self.topics:
            raise BagError(f"{self.path}: no topic {topic}")
        if self._reader is not None:
            profiles = self.offered_qos(topic)
            if not profiles:
                return OUTPUT
            q = profiles[0]
            return QosSpec(q.reliability == QosReliability.RELIABLE, q.durability == QosDurability.TRANSIENT_LOCAL,
                           int(q.depth) or OUTPUT.depth)
        text = self._walk_index.qos.get(topic, "")
        try:
            profiles = yaml.safe_load(text) if text else None
            q = profiles[0]
            return QosSpec(int(q["reliability"]) == QosReliability.RELIABLE.value,
                           int(q["durability"]) == QosDurability.TRANSIENT_LOCAL.value,
                           int(q["depth"]) or OUTPUT.depth)
        except (yaml.YAMLError, TypeError, KeyError, IndexError, ValueError):
            return OUTPUT

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages in log-time order (file order when read record by record), optionally of some topics only.

        Raises:
            BagError: a requested topic is missing, or (indexed reading) the storage is truncated or corrupt.
        """
        if topics is not None:
            wanted = set(topics)
            missing = wanted - set(self.topics)
            if missing:
                raise BagError(f"{self.path}: missing topic(s) {sorted(missing)}; it has {sorted(self.topics)}")
        else:
            wanted = None
        if self._reader is None:
            yield from self._walk(wanted, None)
            return
        connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        try:
            for connection, timestamp, rawdata in self._reader.messages(connections=connections):
                yield BagMessage(connection.topic, int(timestamp), connection.msgtype, rawdata)
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as exc:
            raise BagError(f"{self.path}: cannot read further (truncated or corrupt storage?): {exc}") from exc

    def _walk(self, wanted: set[str] | None, index: _WalkIndex | None) -> Iterator[BagMessage]:
        """Messages of every MCAP file, record by record (only the payloads of `wanted` topics are read; None:
        all); `index` (the pass at open) collects every message's topic and time, and the damage."""
        for file in self._mcap_files:
            walk = McapWalk(file)
            for channel, log_time, data in walk.messages(wanted):
                if index is not None:
                    index.add(channel, log_time)
                if data is not None:
                    yield BagMessage(channel.topic, log_time, channel.msgtype, data)
            if index is not None:
                index.files_complete &= walk.complete
                self.damage += [McapDamage(d.offset, f"{file.name}: {d.problem}", d.skipped_bytes)
                                for d in walk.damage]
                if walk.orphan_messages:
                    self.damage.append(McapDamage(0, f"{file.name}: {walk.orphan_messages} messages of a channel "
                                                  f"whose definition was lost", 0))


@dataclass
class _WalkIndex:
    """What the record walk at open learns: topics, types, QoS text, message count and time range."""

    topics: dict[str, str] = field(default_factory=dict)
    qos: dict[str, str] = field(default_factory=dict)
    count: int = 0
    start_ns: int = 0
    end_ns: int = 0
    files_complete: bool = True

    def add(self, channel: McapChannel, log_time: int) -> None:
        if channel.topic not in self.topics:
            self.topics[channel.topic] = channel.msgtype
            self.qos[channel.topic] = channel.metadata.get("offered_qos_profiles", "")
        self.start_ns = log_time if not self.count else min(self.start_ns, log_time)
        self.end_ns = max(self.end_ns, log_time)
        self.count += 1


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM are only recorded; on leaving it they are raised again (in order), so
    a signal cannot cut short what the block does (closing a bag). Does nothing outside the main thread."""
    received: list[int] = []
    try:
        previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in INTERRUPT_SIGNALS}
    except ValueError:  # not the main thread: signals are delivered to the main thread anyway
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in received:
            signal.raise_signal(s)


@contextlib.contextmanager
def interrupt_once() -> Iterator[None]:
    """Within the block the first SIGINT or SIGTERM raises KeyboardInterrupt (so open bags get closed cleanly);
    later ones are ignored: the program is already stopping, and a second Ctrl-C must not cut its clean-up short.
    After an interrupt both signals stay ignored (SIG_IGN, which outlives the interpreter's own shutdown) until
    the process exits (a command's last step), so its exit status stays the one it chose (130)."""
    interrupted = []

    def _raise(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        for s in INTERRUPT_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = {s: signal.signal(s, _raise) for s in INTERRUPT_SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        if not interrupted:
            for s, handler in previous.items():
                signal.signal(s, handler)


# the former name (SIGTERM only): interrupt_once covers SIGINT as well
sigterm_as_interrupt = interrupt_once
