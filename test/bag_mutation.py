"""Copies of test bags with chosen messages changed: the tool of the hardening and fuzz tests.

`mutated_copy(src, dst, mutate)` reads every message of `src` and writes it to `dst` (same topics, types, QoS and
log times); `mutate(topic, index_on_topic, message)` gets the msgs.bag.BagMessage (decode it to change fields) and
may return a decoded message, raw bytes to write instead of its CDR (damaged serialisation), or None to keep the
original bytes.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perception3d.msgs.bag import BagReader, BagWriter
from perception3d.msgs.typestore import typestore
from replay_fixtures import OBJECTS_TOPIC

Mutation = Callable[[str, int, Any], Any]


def mutated_copy(src: Path, dst: Path, mutate: Mutation) -> int:
    """Write the copy; returns how many messages were changed."""
    changed = 0
    seen: Counter = Counter()
    store = typestore()
    with BagReader(src) as reader, BagWriter(dst) as writer:
        for topic, msgtype in reader.topics.items():
            writer.add_topic(topic, msgtype, reader.qos_spec(topic))
        for message in reader.messages():
            index = seen[message.topic]
            seen[message.topic] += 1
            result = mutate(message.topic, index, message)
            if result is None:
                writer.write_raw(message.topic, message.stamp_ns, message.rawdata)
                continue
            changed += 1
            data = result if isinstance(result, (bytes, bytearray)) else store.serialize_cdr(result, message.msgtype)
            writer.write_raw(message.topic, message.stamp_ns, bytes(data))
    return changed


def at(topic: str, index: int, change: Callable[[Any], Any]) -> Mutation:
    """A mutation of message `index` of `topic` only: change(msg) edits it (returns None) or returns bytes/a msg."""
    def mutate(t: str, i: int, message: Any) -> Any:
        if t != topic or i != index:
            return None
        msg = message.decode()
        result = change(msg)
        return msg if result is None else result
    return mutate


def outputs_by_stamp(out: Path, topic: str = OBJECTS_TOPIC) -> dict[int, bytes]:
    """{log time: CDR bytes} of a topic of an output bag."""
    with BagReader(out) as reader:
        if topic not in reader.topics:
            return {}
        return {m.stamp_ns: bytes(m.rawdata) for m in reader.messages([topic])}
