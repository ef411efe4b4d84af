"""Copies of test bags with chosen messages changed: the tool of the hardening and fuzz tests.

`mutated_copy(src, dst, mutate)` (bench.robustness, which runs the same attacks) reads every message of `src` and
writes it to `dst` (same topics, types, QoS and log times); `mutate(topic, index_on_topic, message)` gets the
msgs.bag.BagMessage (decode it to change fields) and may return a decoded message, raw bytes to write instead of its
CDR (damaged serialisation), or None to keep the original bytes.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from perception3d.bench.robustness import Mutation, mutate_at, mutated_copy
from perception3d.msgs.bag import BagReader
from replay_fixtures import OBJECTS_TOPIC

__all__ = ["at", "mutated_copy", "outputs_by_stamp"]


def at(topic: str, index: int, change: Callable[[Any], Any]) -> Mutation:
    """A mutation of message `index` of `topic` only: change(msg) edits it (returns None) or returns bytes/a msg."""
    return mutate_at(topic, [index], change)


def outputs_by_stamp(out: Path, topic: str = OBJECTS_TOPIC) -> dict[int, bytes]:
    """{log time: CDR bytes} of a topic of an output bag."""
    with BagReader(out) as reader:
        if topic not in reader.topics:
            return {}
        return {m.stamp_ns: bytes(m.rawdata) for m in reader.messages([topic])}
