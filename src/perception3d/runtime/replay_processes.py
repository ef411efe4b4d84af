"""Replay on several cores: the graph's independent node groups, or the stages of a pipeline, each in a worker
process of its own (issue 18).

A Python process runs its nodes one after another on one core (threads do not help: the nodes' numpy work holds
the GIL most of the time; benchmarks/detect3d_threads.py). The geometric graph falls into two groups that exchange
no topic: detection3d, and segmentation -> occupancy. Each worker process reads the bag itself, runs its group
exactly as `runtime.bag.replay` runs a graph (the same NodeSet and data pass) and sends every message its nodes
publish, serialized, through a pipe; the parent process copies /tf and /tf_static (and the inputs, with copy_inputs)
and writes what the workers send into the one output bag as it arrives. Every topic holds the same messages, in
the same order, as a replay in one process: a node's outputs depend only on its inputs (segmentation then computes
the sweep's ground itself instead of reusing detection3d's, nodes.shared_sweep, with the same result). Only the
interleaving of different topics in the file differs.

A graph whose nodes are all linked by topics (detector2d feeds detection3d and segmentation) runs as a pipeline
(`pipeline_stages`): its sources (the nodes that read no topic another node publishes: detector2d) in an upstream
worker, and the other nodes' groups (detection3d; segmentation -> occupancy) in downstream workers. The upstream
worker also sends each message a downstream node reads to that worker, tagged with the number of the bag message
during which it was published, and after each bag message how far it has got. A downstream worker hands those
messages to its nodes before the same bag message, waiting for the upstream worker where it is behind: each node
receives its inputs in the order of a replay in one process, so every topic again holds the same messages, while
the workers run side by side on different sweeps. Independent groups are the bag runtime's counterpart of `ros2
launch perception3d full.launch.py process_groups:=true` (runtime.launch_plan), which starts a process per group on
ROS 2; a pipeline is how ROS 2 runs nodes in processes of their own.

Ctrl-C or SIGTERM stop the parent: it tells the workers to stop (STOP_SIGNAL: each ends its data pass as a replay in
one process does on Ctrl-C), writes what they sent before stopping, reads their reports, closes the output bag and
reports the replay interrupted. The workers ignore SIGINT and SIGTERM (a terminal or a service manager signals the
whole process group) so that only the parent decides. A worker that fails (an exception in a node's set-up, a bag
the worker cannot read) makes the parent stop the others and raise the same exception.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..core.models.options import usable_cores
from ..errors import BagWriteError, ConfigError
from ..msgs.bag import BagReader, BagWriter
from ..msgs.qos import QosSpec
from ..msgs.typestore import typestore
from .bag import (
    MessageFeed,
    NodeSet,
    ReplaySummary,
    RunnerReport,
    add_copied_topics,
    graph_parameters,
    output_bag,
    replay,
    run_messages,
)
from .graph import OUTPUT_PORT_PREFIX, TF_STATIC_TOPIC, TF_TOPIC, Graph, linked_groups
from .heap import keep_freed_memory

F_SETPIPE_SZ = 1031  # fcntl.h (Linux)
STOP_SIGNAL = signal.SIGUSR1  # the writing process to a worker: stop reading, send what you have and your report
STOP_WAIT_S = 10.0  # how long the writing process waits for the stopped workers' reports


def worker_cores(cores: Sequence[int], workers: int) -> list[list[int]]:
    """Each worker's share of the cores (every other one, dealt in turn; one each, shared in turn, when the workers
    outnumber them): a learned node's "one thread per core" (threads 0) then counts its worker's cores only, and
    workers never size their thread pools for the whole machine."""
    if workers <= len(cores):
        return [list(cores[k::workers]) for k in range(workers)]
    return [[cores[k % len(cores)]] for k in range(workers)]


def independent_groups(graph: Graph, config: str | Path | None = None) -> list[Graph]:
    """The graph split into groups of nodes that exchange no topic (runtime.graph.linked_groups), in graph order
    (a group's nodes keep their graph order and their producers, so its topics resolve as in the whole graph).

    Raises:
        NodeNotImplementedError, NodeDependencyError, ConfigError: a node that cannot load, bad parameters.
    """
    return _independent_groups(graph, _ports(graph, config))


def pipeline_stages(graph: Graph, config: str | Path | None = None) -> tuple[Graph | None, list[Graph]]:
    """A graph whose nodes are all linked by topics split into its sources, the nodes that read no topic another
    node of the graph publishes (the upstream stage), and the groups of the other nodes that exchange no topic among
    themselves (runtime.graph.linked_groups), their topics resolved as in the whole graph; (None, [graph]) where no
    node or every node is a source.

    Raises:
        NodeNotImplementedError, NodeDependencyError, ConfigError: a node that cannot load, bad parameters.
    """
    return _pipeline_stages(graph, _ports(graph, config))


def _ports(graph: Graph, config: str | Path | None) -> dict[str, dict[str, str]]:
    """{node name: {port: topic}} of every node of the graph with the parameter file `config` (Graph.topics)."""
    params = graph_parameters(graph, config)[1]
    return {node.name: graph.topics(node, params[node.name]["camera_names"]) for node in graph.nodes}


def _topics(mapping: dict[str, str], outputs: bool) -> set[str]:
    """The topics of a node's output ports (outputs) or of its input ports (not outputs)."""
    return {topic for port, topic in mapping.items() if port.startswith(OUTPUT_PORT_PREFIX) == outputs}


def _independent_groups(graph: Graph, ports: dict[str, dict[str, str]]) -> list[Graph]:
    return [graph.select(names) for names in linked_groups(ports)]


def _pipeline_stages(graph: Graph, ports: dict[str, dict[str, str]]) -> tuple[Graph | None, list[Graph]]:
    published = {name: _topics(mapping, outputs=True) for name, mapping in ports.items()}
    sources = [name for name, mapping in ports.items()
               if not any(_topics(mapping, outputs=False) & published[other] for other in ports if other != name)]
    rest = {name: mapping for name, mapping in ports.items() if name not in sources}
    if not sources or not rest:
        return None, [graph]
    return graph.select(sources), [graph.select(names).fed_by_others(sources) for names in linked_groups(rest)]


def replay_in_processes(bag_path: str | Path, out_path: str | Path, graph: Graph, processes: int | None = None,
                        config: str | Path | None = None, copy_inputs: bool = False, progress: bool = True,
                        log: Callable[[str], None] | None = None) -> ReplaySummary:
    """runtime.bag.replay with the graph's independent node groups in up to `processes` worker processes (groups
    beyond that share a worker, in turn). A graph of one group replays as a pipeline (`pipeline_stages`: its sources
    in one worker, the other nodes' groups in up to processes - 1 more) where `processes` is given, else (or where
    it has no stages) in this process. None: as many processes as the cores this process may use, and no pipeline:
    each worker gets its share of the cores, and on a small machine a learned node's network in one worker with
    half of them is slower than in one process with all (detector2d on two cores: 12.2 s in one process, 14.6 s in
    a pipeline, on a 1.2 s scene).

    Arguments, errors and the summary are runtime.bag.replay's; the summary's runners are RunnerReports, in graph
    order, and a warning says how the nodes were split.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    pipeline = processes is not None
    if processes is None:
        processes = len(usable_cores())
    if processes < 1:
        raise ConfigError(f"processes must be at least 1, got {processes}")
    forks = "fork" in multiprocessing.get_all_start_methods()
    ports = _ports(graph, config) if processes > 1 and forks else {}
    groups = _independent_groups(graph, ports) if ports else [graph]
    upstream = None
    if len(groups) == 1 and ports and pipeline:
        upstream, groups = _pipeline_stages(graph, ports)
    if upstream is None and len(groups) == 1:
        summary = replay(bag_path, out_path, graph, config, copy_inputs, progress, log)
        if processes > 1:
            names = [n.name for n in graph.nodes]
            summary.warnings.append(
                "this system cannot fork: the nodes ran in one process" if not forks else
                f"the nodes {names} are all linked by topics (one group): they ran in one process (give the number "
                "of processes to run them as a pipeline)" if not pipeline else
                f"the nodes {names} have no stages (one node, or nodes that read one another's topics in a circle): "
                "they ran in one process")
        return summary
    slots = processes - (upstream is not None)
    workers = [_merge(groups[k::slots], graph) for k in range(min(slots, len(groups)))]
    if upstream is not None:
        workers = [upstream, *workers]
    bag_path, out_path = Path(bag_path), Path(out_path)
    writer = output_bag(bag_path, out_path, graph)
    summary = ReplaySummary(str(bag_path), str(out_path))
    shares = worker_cores(usable_cores(), len(workers))
    summary.warnings.append("nodes in worker processes: " + "; ".join(
        f"{', '.join(n.name for n in group.nodes)} (cores {', '.join(map(str, share))}"
        f"{', feeding the others' if upstream is not None and k == 0 else ''})"
        for k, (group, share) in enumerate(zip(workers, shares))))
    keep_freed_memory()  # the writing process reads the workers' messages (up to 1.3 MB each) into fresh buffers
    context = multiprocessing.get_context("fork")  # the workers inherit the loaded modules and the graph
    pipes: list[Connection] = []
    processes_started: list[Any] = []
    # a pipeline: one pipe from the upstream worker to each downstream worker, with the topics it reads from it
    feeds = [(*context.Pipe(duplex=False), _fed_topics(ports, upstream, group)) for group in workers[1:]] \
        if upstream is not None else []
    for _, feed_sender, _ in feeds:
        _widen(feed_sender)  # the upstream worker may run ahead by more than a few messages
    try:
        for k, (group, share) in enumerate(zip(workers, shares)):
            receiver, sender = context.Pipe(duplex=False)
            _widen(sender)
            feed, handed_over = _feed_ends(feeds, k)
            worker = context.Process(target=_run_group, args=(bag_path, group, config, share, sender, log),
                                     kwargs=feed, daemon=True,
                                     name=f"replay {'+'.join(n.name for n in group.nodes)}")
            worker.start()
            sender.close()
            for connection in handed_over:
                connection.close()  # the worker holds them now: a worker's end tells the other that it ended
            pipes.append(receiver)
            processes_started.append(worker)
        read_topics: set[str] = set()
        for receiver in pipes:  # each worker has checked the bag and prepared its nodes
            read_topics |= _expect(receiver, "ready")
        _write(bag_path, writer, dict(zip(pipes, processes_started)), read_topics, copy_inputs, progress, summary)
    finally:
        for worker in processes_started:
            if worker.is_alive():
                worker.kill()  # it ignores SIGINT and SIGTERM
            worker.join()
    order = [n.name for n in graph.nodes]
    summary.runners.sort(key=lambda report: order.index(report.name))
    summary.cpu_s = dict(sorted(summary.cpu_s.items()))  # the workers report in the order they finish
    summary.cpu_s["writer"] = time.process_time() - cpu_started
    summary.wall_s = time.perf_counter() - started
    return summary


def _fed_topics(ports: dict[str, dict[str, str]], upstream: Graph, group: Graph) -> frozenset[str]:
    """The topics the upstream stage publishes that a downstream group's nodes read (ports: the whole graph's)."""
    published = set().union(*(_topics(ports[node.name], outputs=True) for node in upstream.nodes))
    read = set().union(*(_topics(ports[node.name], outputs=False) for node in group.nodes))
    return frozenset(published & read)


def _feed_ends(feeds: Sequence[tuple[Connection, Connection, frozenset[str]]], worker: int
               ) -> tuple[dict[str, Any], list[Connection]]:
    """_run_group's pipeline arguments for worker number `worker` (0: the upstream one) of a pipeline whose feeds are
    (receiving end, sending end, topics) per downstream worker ({} without feeds), and the ends this process hands
    over to that worker (to close once it runs). Each worker gets the other feed ends it inherits, to close."""
    if not feeds:
        return {}, []
    if worker == 0:
        senders = [sender for _, sender, _ in feeds]
        return ({"feeds_out": [(sender, topics) for _, sender, topics in feeds],
                 "inherited": [receiver for receiver, _, _ in feeds]}, senders)
    receiver, _, topics = feeds[worker - 1]
    return ({"feed_in": receiver, "feed_topics": topics,
             "inherited": [other for j, (other, _, _) in enumerate(feeds) if j != worker - 1]}, [receiver])


def _widen(pipe: Connection) -> None:
    """Give a pipe the system's largest buffer (Linux: /proc/sys/fs/pipe-max-size, 1 MiB by default; 64 KiB
    otherwise), so a large message (occupancy's 1.3 MB grid) crosses in a few reads instead of one per 64 KiB."""
    try:
        import fcntl

        size = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, size)
    except (OSError, ValueError, ImportError):
        pass  # not Linux, or not allowed: the default buffer


def _merge(groups: Sequence[Graph], graph: Graph) -> Graph:
    """One worker's nodes: the union of its groups, in graph order, fed by the nodes that feed them (the groups of a
    pipeline's downstream stage, Graph.fed_by_others)."""
    names = {node.name for group in groups for node in group.nodes}
    return graph.select([node.name for node in graph.nodes if node.name in names]).fed_by_others(groups[0].fed_by)


def _write(bag_path: Path, writer: BagWriter, workers: dict[Connection, Any], read_topics: set[str],
           copy_inputs: bool, progress: bool, summary: ReplaySummary) -> None:
    """Copy /tf, /tf_static (and the read topics, with copy_inputs) into the output, then write what the workers
    (their pipe: their process) send until each has reported; fills the summary. On Ctrl-C / SIGTERM the workers
    are told to stop (STOP_SIGNAL), and what they sent before stopping is written and their reports read (for at
    most STOP_WAIT_S)."""
    from tqdm import tqdm

    waiting = {receiver: 0 for receiver in workers}  # each open pipe: the log time [ns] its worker has reached
    try:
        with BagReader(bag_path, tolerant=True) as reader, writer:
            try:
                copied = {TF_STATIC_TOPIC, TF_TOPIC} & set(reader.topics) | (read_topics if copy_inputs else set())
                add_copied_topics(writer, reader, copied)
                for message in reader.messages(sorted(copied)):
                    writer.write_raw(message.topic, message.stamp_ns, message.rawdata)
                seconds = round((reader.end_ns - reader.start_ns) / 1e9, 1)
                with tqdm(total=seconds, unit="s", desc="replay (bag time)", disable=not progress) as bar:
                    while waiting:
                        _receive_some(waiting, writer, summary, None)
                        reached = min(waiting.values(), default=reader.end_ns) - reader.start_ns
                        bar.update(round(max(0, reached) / 1e9, 1) - bar.n)
            except KeyboardInterrupt:
                summary.interrupted = True
                for receiver in waiting:
                    if workers[receiver].is_alive():
                        os.kill(workers[receiver].pid, STOP_SIGNAL)
                deadline = time.monotonic() + STOP_WAIT_S
                while waiting and time.monotonic() < deadline:
                    _receive_some(waiting, writer, summary, deadline - time.monotonic(), stopping=True)
    except BagWriteError as exc:
        summary.output_error = str(exc)
    summary.messages_out = writer.count


def _receive_some(waiting: dict[Connection, int], writer: BagWriter, summary: ReplaySummary,
                  timeout: float | None, stopping: bool = False) -> None:
    """Write the messages the workers have sent (waiting for one up to `timeout` s, None: no limit); a worker's
    report goes into the summary and ends its wait. `stopping`: the workers were told to stop, and one that ends
    without a report (killed meanwhile) or stopped before its data pass only ends its wait."""
    for receiver in wait(list(waiting), timeout):
        try:
            kind, payload = _receive(receiver)
        except (RuntimeError, KeyboardInterrupt):
            if not stopping:
                raise
            del waiting[receiver]
            continue
        if kind == "message":
            topic, msgtype, qos, stamp_ns, data = payload
            writer.add_topic(topic, msgtype, qos)
            writer.write_raw(topic, stamp_ns, data)
            waiting[receiver] = max(waiting[receiver], stamp_ns)
        else:
            _add_report(summary, payload)
            del waiting[receiver]


def _receive(receiver: Connection) -> tuple[str, Any]:
    """The next ('message', ...) or ('done', summary) of a worker; raises what the worker raised."""
    try:
        kind, payload = receiver.recv()
    except EOFError:
        raise RuntimeError("a replay worker process ended without reporting (killed?)") from None
    if kind == "raised":
        raise payload
    return kind, payload


def _expect(receiver: Connection, expected: str) -> Any:
    kind, payload = _receive(receiver)
    if kind != expected:
        raise RuntimeError(f"replay worker sent {kind!r} before {expected!r}")
    return payload


def _add_report(summary: ReplaySummary, worker: ReplaySummary) -> None:
    """Fold a worker's summary into the replay's. Every worker reads the whole bag, so input counts, damage and
    replay-level drops (a message that does not decode, a refused transform) are the input's: the largest count."""
    summary.messages_in = max(summary.messages_in, worker.messages_in)
    summary.error = summary.error or worker.error
    summary.runners += worker.runners
    summary.damage = summary.damage or worker.damage
    summary.warnings += [w for w in worker.warnings if w not in summary.warnings]
    summary.cpu_s.update(worker.cpu_s)
    for reason, count in worker.drops.items():
        if count > summary.drops[reason]:
            summary.drops[reason] = count
            summary.last_drop[reason] = worker.last_drop[reason]


def own_progress_lock() -> None:
    """Give this (forked) process a progress-bar lock of its own. tqdm's default lock holds a semaphore shared with
    the process that forked it; a worker killed while one of its bars holds it (the writing process kills workers that
    outlive an error) would leave it taken, and the next bar of the writing process would wait for it forever. A
    worker's bars are its own, and its lock is a new one: one the forking process's threads held at the fork stays
    held in the copy."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def _stop(signum: int, frame: Any) -> None:
    """A worker's STOP_SIGNAL handler: the data pass ends as on Ctrl-C (runtime.bag.run_messages)."""
    raise KeyboardInterrupt(f"signal {signum} from the writing process")


@contextlib.contextmanager
def _stop_held() -> Iterator[None]:
    """Within the block STOP_SIGNAL waits; it is handled on leaving it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {STOP_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {STOP_SIGNAL})


class _PipeWriter:
    """The data pass's output in a worker: each published message, serialized (CDR), sent to the writing process.

    In the upstream worker of a pipeline it is also the data pass's MessageFeed: `feeds` are the pipes to the
    downstream workers with the topics each reads; a message of one of those topics goes there too, tagged with
    the number of the bag message during which it was published, and before each bag message every downstream
    worker learns how far this one has got ('reached', the number)."""

    def __init__(self, sender: Connection, feeds: Sequence[tuple[Connection, frozenset[str]]] = ()) -> None:
        self._sender = sender
        self._feeds = list(feeds)
        self._position = -1
        self._store = typestore()
        self._topics: dict[str, tuple[str, QosSpec]] = {}

    def before(self, position: int) -> list:
        """MessageFeed: the bag messages before `position` are done; what is published from here is tagged with it."""
        self._position = position
        with _stop_held():
            for feed, _ in self._feeds:
                feed.send(("reached", position))
        return []

    def before_flush(self) -> list:
        return self.before(sys.maxsize)  # the flush's outputs come after every bag message

    def __enter__(self) -> _PipeWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def add_topic(self, topic: str, msgtype: str, qos: QosSpec) -> None:
        self._topics.setdefault(topic, (msgtype, qos))

    def write(self, topic: str, stamp_ns: int, msg: Any, qos: QosSpec) -> None:
        msgtype, declared_qos = self._topics[topic]  # as BagWriter: the QoS the topic was added with
        data = bytes(self._store.serialize_cdr(msg, msgtype))
        with _stop_held():  # a stop between two writes of one message would leave half of it in the pipe
            self._sender.send(("message", (topic, msgtype, declared_qos, int(stamp_ns), data)))
            for feed, topics in self._feeds:
                if topic in topics:
                    feed.send(("message", (self._position, topic, msgtype, data)))

    def write_raw(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        raise AssertionError("a worker copies no input: the writing process does")


class _UpstreamFeed:
    """A downstream worker's MessageFeed: the messages the upstream worker sends through `receiver`, each handed over
    before the bag message after the one during which it was published, waiting for the upstream worker to get
    past that bag message (or to end: its end of the pipe closes)."""

    def __init__(self, receiver: Connection) -> None:
        self._receiver = receiver
        self._reached = -1  # the upstream worker has done every bag message before this one
        self._ended = False
        self._pending: list[tuple[int, str, str, bytes]] = []  # (tag, topic, msgtype, data), in the order sent
        self._store = typestore()

    def before(self, position: int) -> list[tuple[str, Any]]:
        while not self._ended and self._reached <= position:
            self._receive()
        return self._take(position)

    def before_flush(self) -> list[tuple[str, Any]]:
        while not self._ended:
            self._receive()
        return self._take(sys.maxsize)

    def _receive(self) -> None:
        try:
            kind, payload = self._receiver.recv()
        except EOFError:  # the upstream worker ended (done, stopped or failed: the writing process reads its report)
            self._ended = True
            return
        if kind == "reached":
            self._reached = payload
        else:
            self._pending.append(payload)

    def _take(self, position: int) -> list[tuple[str, Any]]:
        """The pending messages published during bag messages up to `position`, deserialized, in the order sent."""
        due = 0
        while due < len(self._pending) and self._pending[due][0] <= position:
            due += 1
        taken, self._pending = self._pending[:due], self._pending[due:]
        return [(topic, self._store.deserialize_cdr(data, msgtype)) for _, topic, msgtype, data in taken]


def _run_group(bag_path: Path, graph: Graph, config: str | Path | None, cores: list[int], sender: Connection,
               log: Callable[[str], None] | None, feeds_out: Sequence[tuple[Connection, frozenset[str]]] = (),
               feed_in: Connection | None = None, feed_topics: frozenset[str] = frozenset(),
               inherited: Sequence[Connection] = ()) -> None:
    """A worker process on `cores`: replay the group's nodes over the bag, sending ('ready', read topics), each
    published message and ('done', summary), or ('raised', exception).

    In a pipeline the upstream worker also sends the downstream workers what they read (`feeds_out`: a pipe and its
    topics each), and a downstream worker hands what comes through `feed_in` (the upstream's `feed_topics`) to its
    nodes; `inherited`: the other workers' pipe ends this process got by forking, closed first."""
    for connection in inherited:
        connection.close()
    own_progress_lock()
    cpu_started = time.process_time()
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: any core
        os.sched_setaffinity(0, cores)
    for stop in (signal.SIGINT, signal.SIGTERM):  # a terminal or a service manager signals the whole process group:
        signal.signal(stop, signal.SIG_IGN)  # the parent decides when to stop (STOP_SIGNAL)
    signal.signal(STOP_SIGNAL, _stop)
    try:
        nodes = NodeSet.build(graph, config, log)
        nodes.produced |= feed_topics  # published by the upstream worker: not looked for in the bag
        summary = ReplaySummary(str(bag_path), "")
        with BagReader(bag_path, tolerant=True) as reader:
            nodes.start(reader, summary)
            read_topics = nodes.read_topics(reader)
            sender.send(("ready", read_topics))
            writer = _PipeWriter(sender, feeds_out)
            feed: MessageFeed | None = writer if feeds_out else _UpstreamFeed(feed_in) if feed_in else None
            run_messages(reader, writer, nodes, read_topics, set(), False, summary, feed)
        signal.pthread_sigmask(signal.SIG_BLOCK, {STOP_SIGNAL})  # stopped or done: the report goes out whole
        summary.runners = [RunnerReport.of(runner) for runner in nodes.runners]
        summary.cpu_s[f"worker {'+'.join(node.name for node in graph.nodes)}"] = time.process_time() - cpu_started
        sender.send(("done", summary))
    except BaseException as exc:  # every failure goes to the parent, which raises it
        try:
            sender.send(("raised", exc))
        except Exception:  # an exception that does not pickle: its text
            sender.send(("raised", RuntimeError(f"replay worker {graph.nodes[0].name}: {type(exc).__name__}: "
                                                f"{exc}")))
    finally:
        sender.close()
