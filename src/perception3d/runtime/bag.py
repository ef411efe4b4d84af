"""ROS-free bag runtime: replay a rosbag2 through nodes of the graph and record their outputs in a new MCAP bag.

MCAP input is read record by record (msgs.bag.BagReader tolerant mode: every intact message before and after damage,
in file order = log-time order for a recorder's bag; the damaged regions go into the summary), sqlite3 through
rosbags in log-time order. /tf and /tf_static fill a core.tf_buffer.TfBuffer first; every other message goes to the
NodeRunners subscribed to its topic; what a node publishes is written (log time = source stamp) and handed on to
downstream nodes of the graph. /tf and /tf_static are copied into the output (all inputs with copy_inputs), so
the output bag alone opens in Foxglove or RViz. The output bag is closed properly on Ctrl-C, SIGTERM (inside
msgs.bag.interrupt_once) or an exception, so what was written stays readable; a message that does not decode or a
transform that is refused is a counted drop (ReplaySummary.drop, with its topic, position and log time), and an
output that cannot be written (disk full, read-only) ends the replay with `output_error`.
"""
from __future__ import annotations

import functools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core.sync import SyncStats
from ..core.tf_buffer import TfBuffer
from ..errors import BagError, BagWriteError, ConfigError, TransformError
from ..msgs.bag import BagMessage, BagReader, BagWriter
from ..msgs.qos import LATCHED, SENSOR, TF, QosSpec
from ..msgs.tf import add_tf_message
from ..nodes.base import NodeDefinition
from ..nodes.params import load_parameters
from ..nodes.runner import NodeRunner, NodeStats, Published, settle_garbage_collector
from .graph import TF_STATIC_TOPIC, TF_TOPIC, Graph
from .heap import keep_freed_memory
from .threads import apply_thread_policy, process_thread_count


@dataclass
class RunnerReport:
    """A node runner's name and counters: what a replay in worker processes (runtime.replay_processes) brings
    back of each runner."""

    name: str
    stats: NodeStats
    sync_stats: SyncStats | None

    @classmethod
    def of(cls, runner: NodeRunner) -> RunnerReport:
        return cls(runner.name, runner.stats, runner.sync.stats if runner.sync else None)


@dataclass
class ReplaySummary:
    """What a replay did: messages in/out, per-node frames, sync counts, timings, drops and warnings."""

    input_bag: str
    output_bag: str
    messages_in: int = 0
    messages_out: int = 0
    interrupted: bool = False
    error: str = ""  # why reading stopped early (truncated or corrupt input); outputs so far are kept
    output_error: str = ""  # why the output bag could not be written or finished (disk full, read-only)
    runners: list[NodeRunner | RunnerReport] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)  # replay-level drops (undecodable messages, refused /tf)
    last_drop: dict[str, str] = field(default_factory=dict)  # reason -> the last such drop, with its bag position
    damage: list[str] = field(default_factory=list)  # damaged regions of the input skipped by the record reader
    warnings: list[str] = field(default_factory=list)
    wall_s: float = 0.0  # the replay's wall-clock time, set-up and closing included [s]
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time (user + system, all threads) [s] per process

    def cpu_line(self) -> str:
        """'time: W s wall, C s CPU (process c, ...)': how many cores the replay kept busy, and where."""
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.cpu_s.items())
        return f"time: {self.wall_s:.1f} s wall, {sum(self.cpu_s.values()):.1f} s CPU ({parts})"

    def drop(self, reason: str, text: str) -> None:
        """Count one replay-level drop; `text` names the message (topic, bag position, log time) and the error."""
        self.drops[reason] += 1
        self.last_drop[reason] = text

    def format(self) -> str:
        """The end-of-replay report as text."""
        state = (f"FAILED to write the output ({self.output_error})" if self.output_error
                 else "INTERRUPTED, output holds what was written so far" if self.interrupted
                 else f"STOPPED by an input error ({self.error}); output holds what was written so far"
                 if self.error else "done")
        lines = [f"replay {state}: {self.input_bag} -> {self.output_bag}",
                 f"messages read: {self.messages_in}, written: {self.messages_out}"]
        if self.cpu_s:
            lines.append(self.cpu_line())
        if self.damage:
            lines.append(f"input damaged: {len(self.damage)} region(s) skipped, every intact message before and "
                         f"after was read:")
            lines += [f"  {d}" for d in self.damage]
        lines += [f"warning: {w}" for w in self.warnings]
        header = (f"{'node':<14} {'frames in':>9} {'processed':>9} {'outputs':>8} {'matched':>8} {'partial':>8} "
                  f"{'sync drop':>9} {'p50 ms':>8} {'p95 ms':>8} {'cpu p95':>8}")
        lines += [header, "-" * len(header)]
        reports = [r if isinstance(r, RunnerReport) else RunnerReport.of(r) for r in self.runners]
        for r in reports:
            s = r.sync_stats
            p50, p95 = r.stats.percentiles_ms()
            lines.append(
                f"{r.name:<14} {r.stats.frames_in:>9} {r.stats.frames_processed:>9} {r.stats.outputs:>8} "
                f"{s.matched if s else '-':>8} {s.partial if s else '-':>8} {s.dropped_total if s else '-':>9} "
                f"{_ms(p50):>8} {_ms(p95):>8} {_ms(r.stats.percentiles_ms('cpu')[1]):>8}")
        for r in reports:
            stages = ", ".join("{} {}/{}".format(stage, *map(_ms, r.stats.percentiles_ms(stage)))
                               for stage in ("pre", "infer", "post") if r.stats.timings_ms[stage])
            if stages:
                lines.append(f"{r.name} stages p50/p95 ms: {stages}")
            if s := r.sync_stats:
                deltas = s.delta_summary_ms()
                if deltas:
                    lines.append(f"{r.name} |camera - target| median/max ms: " + ", ".join(
                        f"{cam} {med:.1f}/{mx:.1f}" for cam, (med, mx) in deltas.items()))
                missing = {c: n for c, n in s.missing.items() if n}
                if missing:
                    lines.append(f"{r.name} sets missing a camera: {missing}")
                for reason, n in s.dropped.items():
                    lines.append(f"{r.name} sync dropped {n}: {reason}")
            for reason, n in r.stats.drops.items():
                lines.append(f"{r.name} dropped {n}: {reason} (last: {r.stats.last_error[reason]})")
        for reason, n in self.drops.items():
            lines.append(f"replay dropped {n}: {reason} (last: {self.last_drop[reason]})")
        return "\n".join(lines)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _check_inputs(runners: Sequence[NodeRunner], bag_topics: Mapping[str, str], produced: set[str],
                  bag_path: Path) -> list[str]:
    """Fail on a missing LiDAR topic or a wrong type; return warnings for cameras missing from the bag."""
    warnings = []
    for runner in runners:
        missing_cams: dict[str, list[str]] = defaultdict(list)
        for topic, port in runner.inputs.items():
            if topic in produced:
                continue
            if topic not in bag_topics:
                if port.camera is None:
                    raise BagError(f"{bag_path}: node {runner.name} needs LiDAR topic {topic}, which the bag lacks; "
                                   f"it has {sorted(bag_topics)} (use --remap {topic}:=<bag topic>)")
                missing_cams[port.camera].append(topic)
            elif bag_topics[topic] not in port.msgtypes:
                raise BagError(f"{bag_path}: topic {topic} has type {bag_topics[topic]}; node {runner.name} "
                               f"expects {' or '.join(port.msgtypes)} on it")
        cameras_with_inputs = {p.camera for p in runner.inputs.values() if p.camera is not None}
        if cameras_with_inputs and set(missing_cams) == cameras_with_inputs:
            raise BagError(f"{bag_path}: node {runner.name}: no camera topic is in the bag (e.g. "
                           f"{next(iter(missing_cams.values()))[0]}); it has {sorted(bag_topics)}")
        for camera, topics in missing_cams.items():
            warnings.append(f"{runner.name}: {camera} topics {topics} are not in the bag; {camera} will be marked "
                            f"missing in every set")
    return warnings


def _load_transforms(reader: BagReader, tf_topics: Sequence[str], tf: TfBuffer, summary: ReplaySummary) -> None:
    """Fill the buffer with every /tf_static and /tf transform of the bag before the data pass.

    A frame is processed some time after its LiDAR sweep (when its cameras are decided); /tf may come at a lower
    rate (the nuScenes converter writes it at 2 Hz keyframes), so the buffer must already hold the transform after
    the sweep stamp to interpolate. Transforms are small; loading them first costs one extra pass over the index.
    A message that does not decode, or a transform that is malformed or refused (an outlier stamp), is a counted
    drop: the other transforms of the message and of the bag are kept.
    """
    tf.cache_time_ns = max(tf.cache_time_ns, reader.end_ns - reader.start_ns + 1)
    for position, message in enumerate(reader.messages(tf_topics)):
        decoded = _decode(message, position, summary)
        if decoded is None:
            continue
        try:
            errors = add_tf_message(tf, decoded, static=message.topic == TF_STATIC_TOPIC, topic=message.topic)
        except Exception as exc:  # a TFMessage whose fields are not what the type says: a bug the policy survives
            errors = [exc]
        for exc in errors:
            kind = "refused /tf stamp" if isinstance(exc, TransformError) else type(exc).__name__
            summary.drop(f"{kind} on {message.topic}",
                         f"{message.topic} #{position} of that topic at log time {message.stamp_ns}: {exc}")


class LoadedTransforms:
    """The transform lookups of a replay, each answered once (TransformLookup over a TfBuffer).

    The replay loads every transform of the bag into the buffer before the data pass and adds none during it, so an
    answer never changes; the runner's camera placement check and each node ask for the same (target, source,
    stamp) again (the geometric graph on the 8 s scene: 6080 lookups, 896 distinct). The MEMO_SIZE most recently
    used answers are kept and handed out as copies; a lookup that fails is not kept (it raises again).
    """

    MEMO_SIZE = 1024

    def __init__(self, buffer: TfBuffer) -> None:
        self.buffer = buffer
        self._answer = functools.lru_cache(maxsize=self.MEMO_SIZE)(buffer.lookup)  # raising calls are not kept

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        return self._answer(target_frame, source_frame, stamp_ns).copy()


def _decode(message: BagMessage, position: int, summary: ReplaySummary) -> Any | None:
    """The decoded message, or None after counting it as undecodable (with its topic, position and log time)."""
    try:
        return message.decode()
    except Exception as exc:  # rosbags raises assorted errors on corrupt CDR
        summary.drop(f"undecodable message on {message.topic} ({type(exc).__name__})",
                     f"message #{position} at log time {message.stamp_ns}: {exc}")
        return None


def graph_parameters(graph: Graph, config: str | Path | None
                     ) -> tuple[dict[str, type[NodeDefinition]], dict[str, dict[str, Any]]]:
    """({node: definition}, {node: parameters}) of the graph's nodes with the parameter file `config` (None: the
    defaults).

    Raises:
        NodeNotImplementedError, NodeDependencyError, ConfigError: a node that cannot load, bad parameters.
    """
    definitions = {node.name: node.load() for node in graph.nodes}
    params = load_parameters(config, {name: d.parameters for name, d in definitions.items()},
                             other_nodes=graph.known_names)
    return definitions, params


class OutputSink(Protocol):
    """Where the data pass writes: the output BagWriter, or a worker process's pipe to the writing process
    (runtime.replay_processes)."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def add_topic(self, topic: str, msgtype: str, qos: QosSpec) -> None: ...

    def write(self, topic: str, stamp_ns: int, msg: Any, qos: QosSpec) -> None: ...

    def write_raw(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None: ...


class MessageFeed(Protocol):
    """Messages published outside this process that the data pass hands to its nodes as if published here, and where
    it has got to (runtime.replay_processes: the outputs of an upstream worker, and that worker's own progress)."""

    def before(self, position: int) -> list[tuple[str, Any]]:
        """(topic, message) pairs to hand over before the bag's message number `position` (from 0)."""
        ...

    def before_flush(self) -> list[tuple[str, Any]]:
        """(topic, message) pairs to hand over after the bag's last message, before the nodes flush."""
        ...


@dataclass
class NodeSet:
    """The node runners of a replay (upstream first), their shared transforms, and who subscribes to what."""

    runners: list[NodeRunner]
    tf: TfBuffer
    subscribers: dict[str, list[NodeRunner]]
    produced: set[str]  # the topics the runners publish

    @classmethod
    def build(cls, graph: Graph, config: str | Path | None, log: Callable[[str], None] | None) -> NodeSet:
        """Load the graph's node definitions and parameters, set this process's thread and heap policies
        (runtime.threads, runtime.heap) and create the runners.

        Raises:
            NodeNotImplementedError, NodeDependencyError, ConfigError: a node that cannot load, bad parameters.
        """
        definitions, params = graph_parameters(graph, config)
        apply_thread_policy(process_thread_count(params.values()))  # before a node loads its model
        keep_freed_memory()
        tf = TfBuffer()
        lookups = LoadedTransforms(tf)
        runners = [NodeRunner(definitions[node.name], params[node.name],
                              graph.topics(node, params[node.name]["camera_names"]), lookups, log=log)
                   for node in graph.nodes]
        subscribers: dict[str, list[NodeRunner]] = defaultdict(list)
        for runner in runners:
            for topic in runner.inputs:
                subscribers[topic].append(runner)
        return cls(runners, tf, subscribers, {topic for r in runners for topic, _ in r.outputs.values()})

    def start(self, reader: BagReader, summary: ReplaySummary) -> list[str]:
        """Check the bag against the runners' inputs, load its transforms and prepare the nodes; returns the bag's
        transform topics.

        Raises:
            BagError: the bag lacks the LiDAR topic or every camera topic of a node, or has a topic of a wrong type.
        """
        summary.damage = [str(d) for d in reader.damage]
        summary.warnings += _check_inputs(self.runners, reader.topics, self.produced, reader.path)
        tf_topics = [t for t in (TF_STATIC_TOPIC, TF_TOPIC) if t in reader.topics]
        if not tf_topics:
            summary.warnings.append("the bag has neither /tf nor /tf_static: frames needing a transform are dropped")
        _load_transforms(reader, tf_topics, self.tf, summary)
        for runner in self.runners:
            runner.prepare()
        settle_garbage_collector()
        return tf_topics

    def read_topics(self, reader: BagReader) -> set[str]:
        """The bag's topics that some runner subscribes to."""
        return set(self.subscribers) & set(reader.topics)


def replay(bag_path: str | Path, out_path: str | Path, graph: Graph, config: str | Path | None = None,
           copy_inputs: bool = False, progress: bool = True,
           log: Callable[[str], None] | None = None) -> ReplaySummary:
    """Run the nodes of `graph` over a bag in this process and write their outputs (plus /tf, /tf_static) into
    out_path (runtime.replay_processes.replay_in_processes runs independent node groups in processes of their own).

    Args:
        bag_path: input rosbag2 directory (MCAP or sqlite3).
        out_path: output rosbag2 directory to create (MCAP); must not exist.
        graph: the (sub)graph to run, upstream nodes first (runtime.graph.FULL_GRAPH.select(...)).
        config: parameter file (config/perception3d.yaml layout); None = defaults.
        copy_inputs: also copy every input topic the nodes read into the output.
        progress: show a tqdm progress bar.
        log: where node warnings go (default: the 'perception3d' logger).

    Raises:
        NodeNotImplementedError, ConfigError: a node that does not exist yet, or bad parameters (before reading).
        BagError: unreadable/truncated input, missing LiDAR topic, wrong message type, existing output path.
    Returns the summary; `summary.interrupted` is True after Ctrl-C / SIGTERM and `summary.error` says why reading
    stopped on a truncated or corrupt input; in both cases the output is closed cleanly and keeps what was written.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    bag_path, out_path = Path(bag_path), Path(out_path)
    nodes = NodeSet.build(graph, config, log)
    summary = ReplaySummary(str(bag_path), str(out_path), runners=list(nodes.runners))
    writer = output_bag(bag_path, out_path, graph)

    with BagReader(bag_path, tolerant=True) as reader:
        tf_topics = nodes.start(reader, summary)
        read_set = set(tf_topics) | nodes.read_topics(reader)
        try:
            run_messages(reader, writer, nodes, read_set, read_set if copy_inputs else set(tf_topics), progress,
                         summary)
        except BagWriteError as exc:
            summary.output_error = str(exc)
    summary.cpu_s["replay"] = time.process_time() - cpu_started
    summary.wall_s = time.perf_counter() - started
    return summary


def output_bag(bag_path: Path, out_path: Path, graph: Graph) -> BagWriter:
    """The (not yet opened) output bag of a replay of graph's nodes over bag_path, which records both in its
    metadata.

    Raises:
        BagError: out_path exists (bags are never overwritten).
    """
    return BagWriter(out_path, custom_data={"perception3d.source_bag": bag_path.name,
                                            "perception3d.nodes": ",".join(node.name for node in graph.nodes)})


def add_copied_topics(writer: OutputSink, reader: BagReader, copied: set[str]) -> None:
    """Declare the input topics copied into the output, with the QoS their recorders use."""
    for topic in sorted(copied):
        qos = LATCHED if topic == TF_STATIC_TOPIC else TF if topic == TF_TOPIC else SENSOR
        writer.add_topic(topic, reader.topics[topic], qos)


def run_messages(reader: BagReader, writer: OutputSink, nodes: NodeSet, read_set: set[str], copied: set[str],
                 progress: bool, summary: ReplaySummary, feed: MessageFeed | None = None) -> None:
    """The data pass: every message of read_set to the nodes that subscribe to it, their outputs into the writer;
    the messages of `copied` are also written as they are. `feed`: messages from outside handed to the subscribers
    (not written) before each bag message and before the nodes flush."""
    from tqdm import tqdm

    with writer:
        add_copied_topics(writer, reader, copied)

        def publish(items: list[Published]) -> None:
            for item in items:
                writer.add_topic(item.topic, item.msgtype, item.qos)
                writer.write(item.topic, item.stamp_ns, item.msg, item.qos)
                summary.messages_out += 1
                for downstream in nodes.subscribers.get(item.topic, []):
                    publish(downstream.on_message(item.topic, item.msg))

        def hand_over(items: list[tuple[str, Any]]) -> None:
            for topic, msg in items:
                for runner in nodes.subscribers.get(topic, []):
                    publish(runner.on_message(topic, msg))

        labels_written = False
        bar = tqdm(total=reader.message_count, unit="msg", desc="replay", disable=not progress)
        try:
            for position, message in enumerate(reader.messages()):  # all topics: the count tells a short read
                summary.messages_in += 1
                bar.update()
                if feed is not None:
                    hand_over(feed.before(position))
                if message.topic not in read_set:
                    continue
                if message.topic in copied:
                    writer.write_raw(message.topic, message.stamp_ns, message.rawdata)
                    summary.messages_out += 1
                if message.topic in (TF_TOPIC, TF_STATIC_TOPIC):
                    continue  # loaded beforehand
                msg = _decode(message, position, summary)
                if msg is None:
                    continue
                if not labels_written:
                    labels_written = True
                    for runner in nodes.runners:
                        publish(runner.label_infos(message.stamp_ns))
                for runner in nodes.subscribers[message.topic]:
                    publish(runner.on_message(message.topic, msg))
            if not reader.record_by_record and summary.messages_in < reader.message_count:
                summary.error = (f"{reader.path}: storage ended after {summary.messages_in} of "
                                 f"{reader.message_count} messages (truncated or corrupt?)")
            if feed is not None:
                hand_over(feed.before_flush())
            for runner in nodes.runners:  # upstream first: its last outputs reach downstream before they flush
                publish(runner.flush())
        except KeyboardInterrupt:
            summary.interrupted = True
        except BagWriteError:
            raise
        except BagError as exc:
            summary.error = str(exc)
        finally:
            bar.close()


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    """{from: to} of '--remap from:=to' arguments.

    Raises:
        ConfigError: an item without ':='.
    """
    out = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise ConfigError(f"--remap {item!r}: expected FROM:=TO, e.g. /LIDAR_TOP/points:=/lidar/points")
        out[source] = target
    return out
