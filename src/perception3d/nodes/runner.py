"""NodeRunner: the host-independent part of running a node, shared by the bag runtime and the rclpy host.

A host hands every input message to `on_message(topic, msg)` and publishes the `Published` records it gets back.
The runner synchronizes (core.sync.LidarSync, message time), decodes and validates inputs into a `Frame`, calls
`process`, times it (pre/infer/post/total ms) and checks the outputs (declared port, source stamp).

One policy for every error one message can cause (a node never dies on one bad message, and a bad input costs only
what depends on it):
- InputError / TransformError become a counted drop, keyed by error type, topic and field, logged (throttled) with
  the message stamp; an unexpected exception type is a bug the runner still survives: counted as `internal`, its
  traceback logged once;
- the frame's other inputs go on: a camera whose data does not decode, whose image size differs from its
  CameraInfo, or whose transform is missing or bad is removed from the set (marked missing), not the frame;
- at the boundary a cloud has scalar x, y, z fields and at most `limits.max_points_per_cloud` points; 2D boxes are
  checked one by one (msgs.detections.checked_detections2d: scores in [0, 1], clipped to the image, known class
  ids, at most `limits.max_boxes_per_image`), dropped boxes counted per reason.
Only a node that breaks its contract (undeclared output port, wrong output stamp) raises NodeContractError.
"""
from __future__ import annotations

import bisect
import gc
import logging
import os
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.camera_sets import CameraSet, CameraSetCollector
from ..core.classes import DETECTION_CLASSES, parse_class_map
from ..core.models.options import usable_cores
from ..core.sync import LidarSync, SyncConfig, SyncedSet
from ..errors import ConfigError, ImageError, InputError, PointCloudError, TransformError
from ..msgs.camera_info import camera_info_to_model
from ..msgs.detections import checked_detections2d
from ..msgs.factory import MessageFactory, stamp_to_ns
from ..msgs.image import compressed_image_to_array, image_to_array
from ..msgs.labels import label_info_msg
from ..msgs.pointcloud import check_xyz_fields, pointcloud2_to_array
from ..msgs.qos import LATCHED, QosSpec
from .base import (
    STAGES,
    CameraInput,
    Frame,
    InputPort,
    LidarInput,
    NodeDefinition,
    StageTimer,
    TransformLookup,
    extra_lidar_port,
)

_LOG = logging.getLogger("perception3d")
# Frames whose timings are kept for the percentiles: a bound, so a node running for days does not grow.
TIMING_WINDOW = 100_000
TIMED = (*STAGES, "total", "cpu")  # NodeStats.timings_ms's series


def settle_garbage_collector() -> None:
    """Collect once, then move every object alive now into the permanent generation (gc.freeze).

    Hosts call it when start-up is done. Python's periodic full collections would otherwise re-traverse every
    start-up object (typestore, models, modules) and stall a frame by 35-55 ms every few seconds (measured on
    detection3d's output stage; see benchmarks/results/graph.md).
    """
    gc.collect()
    gc.freeze()


class NodeContractError(ValueError):
    """A node's process() broke its contract (an undeclared output port, an output not at the source stamp): a bug
    in the node, raised rather than counted, so it shows on the first frame."""


@dataclass(frozen=True)
class Published:
    """A message to publish: topic, stamp [ns] (the source stamp), message, its type and QoS."""

    topic: str
    stamp_ns: int
    msg: Any
    msgtype: str
    qos: QosSpec


class ThrottledLog:
    """Logs each distinct key at most once per period_s (wall clock); counts what it held back."""

    def __init__(self, log: Callable[[str], None], period_s: float, clock: Callable[[], float] = time.monotonic):
        self._log, self.period_s, self._clock = log, period_s, clock
        self._last: dict[str, float] = {}
        self._held: Counter = Counter()

    def __call__(self, key: str, text: str) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self._held[key] += 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        self._log(text + (f" ({held} similar messages suppressed)" if held else ""))


@dataclass
class NodeStats:
    """Per-node counters: frames triggered / processed / skipped, outputs, drops by reason, timings [ms] of the last
    TIMING_WINDOW frames: wall-clock per stage and in total, and 'cpu', the process's CPU time during the frame (with
    the node's own inference threads; below 'total' when the frame waited for a core that other work held)."""

    messages: Counter = field(default_factory=Counter)  # per input topic
    frames_in: int = 0
    frames_processed: int = 0
    frames_skipped: int = 0
    outputs: int = 0
    drops: Counter = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, deque] = field(
        default_factory=lambda: {s: deque(maxlen=TIMING_WINDOW) for s in TIMED})

    def percentiles_ms(self, stage: str = "total") -> tuple[float, float]:
        """(p50, p95) milliseconds of a stage; NaN when nothing was timed."""
        values = self.timings_ms[stage]
        if not values:
            return float("nan"), float("nan")
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def sync_config_from_params(params: Mapping[str, Any], streams: tuple[str, ...]) -> SyncConfig:
    """The synchronizer settings of a node's parameters for the camera streams it uses.

    camera_info is a latest-valid stream (a static CameraInfo published once is enough) unless it is the only one.
    """
    cameras = tuple(params["camera_names"])
    latest = ("camera_info",) if "camera_info" in streams and len(streams) > 1 else ()
    keyed = tuple(s for s in streams if s not in latest)
    return SyncConfig(
        camera_names=cameras, keyed_streams=keyed, latest_streams=latest,
        offsets_ns={c: int(round(o * 1e9)) for c, o in zip(cameras, params["sync.camera_offsets_s"])},
        tolerance_ns=int(round(params["sync.tolerance_s"] * 1e9)),
        timeout_ns=int(round(params["sync.timeout_s"] * 1e9)),
        queue_size=int(params["sync.queue_size"]),
        reset_jump_ns=int(round(params["sync.reset_jump_s"] * 1e9)))


def _pixels(msg: Any, topic: str) -> np.ndarray:
    """The pixels of a sensor_msgs/CompressedImage or Image (msgs.image; ImageError names the topic and field)."""
    return compressed_image_to_array(msg, topic) if hasattr(msg, "format") else image_to_array(msg, topic)


class NodeRunner:
    """Runs one node definition on messages from any host.

    Args:
        definition: the NodeDefinition subclass.
        params: validated {dotted name: value} (nodes.params.load_parameters).
        topics: {port: topic} for every input and output port (runtime.graph resolves them).
        tf: transform lookup at message stamps.
        factory: message factory of the host's backend.
        log: where throttled warnings go (default: the 'perception3d' logger).
        wanted: returns False while nobody listens to the outputs; frames are then skipped (counted).
        retry_transforms: keep a frame whose transform lookup failed and retry it (in order, later frames queue
            behind it) on the next message or advance(), until message time passes its stamp + sync.timeout_s; for
            hosts whose /tf arrives live and may lag the data (ROS). The bag runtime has every transform up front.
    """

    def __init__(self, definition: type[NodeDefinition], params: Mapping[str, Any], topics: Mapping[str, str],
                 tf: TransformLookup, factory: MessageFactory | None = None,
                 log: Callable[[str], None] | None = None, wanted: Callable[[], bool] | None = None,
                 retry_transforms: bool = False) -> None:
        definition.check_definition()
        self.definition = definition
        self.node = definition(params, factory)
        self.name = definition.name
        self.tf = tf
        self.wanted = wanted or (lambda: True)
        self.stats = NodeStats()
        self.prepared = False  # NodeDefinition.prepare done, or given up after a failure other than a transform
        self._log = log or _LOG.warning
        self._warn = ThrottledLog(self._log, float(params["log_throttle_s"]))
        self.max_points = int(params["limits.max_points_per_cloud"])
        self.max_boxes = int(params["limits.max_boxes_per_image"])
        cameras = list(params["camera_names"])
        extras = [n for n in params["lidar_names"][1:] if n != params["lidar_names"][0]] \
            if definition.merges_lidars and definition.trigger == "lidar" else []
        # merged LiDARs read /<name>/points unless the host maps their ports to other topics
        topics = {**{extra_lidar_port(n): f"/{n}/points" for n in extras}, **topics}
        ports = definition.input_ports(cameras, extras)
        outputs = definition.output_ports(cameras)
        label_ports = definition.label_ports(cameras)
        unmapped = [p.port for p in ports if p.port not in topics] + [p for p in (*outputs, *label_ports)
                                                                          if p not in topics]
        if unmapped:
            raise ConfigError(f"node {self.name}: no topic for port(s) {unmapped}; the graph must map every port")
        self.inputs: dict[str, InputPort] = {topics[p.port]: p for p in ports}
        if len(self.inputs) != len(ports):
            raise ConfigError(f"node {self.name}: two input ports map to one topic: "
                              f"{sorted((p.port, topics[p.port]) for p in ports)}")
        self._topic_of = {(p.camera, p.stream): topic for topic, p in self.inputs.items()}
        self.outputs = {port: (topics[port], spec) for port, spec in outputs.items()}
        self.label_topics = {topics[label]: port for label, port in label_ports.items()}  # LabelInfo topic: output
        streams = definition.camera_streams
        self.sync = (LidarSync(sync_config_from_params(params, streams))
                     if definition.trigger == "lidar" and streams else None)
        self.camera_sets = (CameraSetCollector(cameras, int(params["sync.camera_set_window_s"] * 1e9),
                                               int(params["sync.reset_jump_s"] * 1e9))
                            if definition.trigger == "camera" else None)
        self._camera_info: dict[str, Any] = {}  # camera -> latest valid CameraModel (camera trigger)
        self._extra_sweeps: dict[str, list[tuple[int, Any]]] = {name: [] for name in extras}  # stamp-sorted
        self._queue_size = int(params["sync.queue_size"])
        self._merge_window_ns = int(round(params["lidar_merge_window_s"] * 1e9))
        try:
            self._class_map = parse_class_map(params["detections.class_map"])
        except ValueError as exc:
            raise ConfigError(f"node {self.name}: detections.class_map: {exc}") from exc
        self._health_previous: dict[str, int] = {}
        self._retry_window_ns = int(params["sync.timeout_s"] * 1e9) if retry_transforms else None
        self._waiting_for_tf: deque[Frame] = deque(maxlen=int(params["sync.queue_size"]))
        self._newest_ns: int | None = None
        # camera-triggered: firing cycles whose CameraInfos have not all arrived yet, held up to sync.timeout_s
        self._sets_waiting_for_info: list[CameraSet] = []
        self._info_wait_ns = int(params["sync.timeout_s"] * 1e9)
        self.decode_threads = min(int(params["image_decode_threads"]) or len(usable_cores()), len(cameras))
        self._decoder: tuple[int, ThreadPoolExecutor] | None = None  # (the process that made it, the pool)

    # -- input ------------------------------------------------------------------------------------------------
    def on_message(self, topic: str, msg: Any) -> list[Published]:
        """Handle one input message (stamped in its header); returns what to publish now."""
        port = self.inputs[topic]
        self.stats.messages[topic] += 1
        try:
            stamp_ns = stamp_to_ns(msg.header.stamp)
        except (AttributeError, TypeError, ValueError):
            self._drop(f"{topic}: no header stamp", f"{topic}: message has no usable header stamp; dropped")
            return []
        self._newest_ns = stamp_ns if self._newest_ns is None else max(self._newest_ns, stamp_ns)
        if port.lidar is not None:  # a LiDAR merged into the trigger's sweeps: kept until a trigger sweep needs it
            sweeps = self._extra_sweeps[port.lidar]
            bisect.insort(sweeps, (stamp_ns, msg), key=lambda item: item[0])
            del sweeps[:-self._queue_size]
            return []
        try:
            if port.stream is None:
                return self._run_sets(self.sync.add_lidar(stamp_ns, msg)) if self.sync else \
                    self._run_sets([SyncedSet(stamp_ns, msg, {}, {})])
            if port.stream == "camera_info":
                msg = camera_info_to_model(msg, topic)
                if self.sync is None:
                    self._camera_info[port.camera] = msg
                    return self._release_camera_sets([])
            if self.sync is not None:
                return self._run_sets(self.sync.add_camera(port.camera, port.stream, stamp_ns, msg))
            return self._release_camera_sets(self.camera_sets.add(port.camera, stamp_ns, msg))  # camera-triggered
        except (InputError, TransformError) as exc:
            self._drop_error(exc, stamp_ns)
        except NodeContractError:
            raise
        except Exception as exc:  # a bug the policy survives: counted, traceback logged once
            self._drop_internal(exc, f"a message on {topic}", stamp_ns)
        return []

    def prepare(self, tf: TransformLookup | None = None) -> bool:
        """Let the node build what depends on static transforms before its first frame (NodeDefinition.prepare),
        through tf (default the runner's own lookup); True once it has, once it failed otherwise than for a missing
        transform (logged: its first frame builds what it needs, as without prepare), or once a frame has come; it is
        not asked again then."""
        if not self.prepared and not self.stats.frames_in:
            try:
                self.prepared = self.node.prepare(tf or self.tf)
            except TransformError:
                pass  # not yet: asked again
            except Exception as exc:  # start-up work must not stop the host
                self._log(f"{self.name}: preparing before the first frame failed ({type(exc).__name__}: {exc}); "
                          "its first frame does that work")
                self.prepared = True
        return self.prepared or bool(self.stats.frames_in)

    def advance(self, now_ns: int) -> list[Published]:
        """Move message time on without a message (ROS timer); returns sets released by the timeout and frames
        whose transforms have arrived since."""
        self._newest_ns = now_ns if self._newest_ns is None else max(self._newest_ns, now_ns)
        if self.camera_sets is not None:
            return self._release_camera_sets(self.camera_sets.expire(now_ns))
        return self._run_sets(self.sync.advance(now_ns)) if self.sync else self._run_frames([], None)

    def flush(self) -> list[Published]:
        """End of input: process every pending sweep (or camera set) with what has arrived."""
        if self.camera_sets is not None:
            return self._release_camera_sets(self.camera_sets.flush(), end_of_input=True)
        return self._run_sets(self.sync.flush()) if self.sync else []

    def label_infos(self, stamp_ns: int) -> list[Published]:
        """LabelInfo (transient local) for every labelled output, on its LabelInfo port's topic, with the node's
        score threshold."""
        out = []
        for topic, port in self.label_topics.items():
            msg = label_info_msg(self.outputs[port][1].label_classes, stamp_ns, threshold=self.node.label_threshold,
                                 factory=self.node.factory)
            out.append(Published(topic, stamp_ns, msg, "vision_msgs/msg/LabelInfo", LATCHED))
        return out

    def set_parameters(self, changes: Mapping[str, Any]) -> None:
        """Apply validated new values of writable parameters to the node (and log_throttle_s to the log)."""
        self.node.update_parameters(changes)
        if "log_throttle_s" in changes:
            self._warn.period_s = float(changes["log_throttle_s"])

    def health(self, elapsed_s: float) -> tuple[str, str, dict[str, str]]:
        """(level 'OK' | 'WARN' | 'ERROR', summary, {key: value}) for diagnostics, over the last elapsed_s.

        WARN when sets went out partial or messages were dropped in the window, ERROR when frames came in but
        none was processed; input rates [Hz] are per topic over the window.
        """
        s, previous = self.stats, self._health_previous
        sync = self.sync.stats if self.sync else None
        now = {"frames_in": s.frames_in, "processed": s.frames_processed, "drops": sum(s.drops.values()),
               "partial": sync.partial if sync else 0, **{f"rate {t}": n for t, n in s.messages.items()}}
        delta = {k: v - previous.get(k, 0) for k, v in now.items()}
        self._health_previous = now
        values = {"model": self.node.model_state(), "frames in": str(s.frames_in),
                  "frames processed": str(s.frames_processed), "frames skipped (no subscribers)": str(s.frames_skipped),
                  "outputs": str(s.outputs)}
        values.update({f"{k} [Hz]": f"{v / elapsed_s:.2f}" for k, v in delta.items() if k.startswith("rate ")})
        p50, p95 = s.percentiles_ms()
        values["processing ms p50/p95"] = f"{p50:.1f}/{p95:.1f}"
        for reason, n in s.drops.items():
            values[f"dropped: {reason}"] = str(n)
        if sync:
            values.update({"sync matched": str(sync.matched), "sync partial": str(sync.partial),
                           "sync dropped": str(sync.dropped_total), "sync resets": str(sync.resets)})
            for cam, (median, worst) in sync.delta_summary_ms().items():
                values[f"{cam} |stamp - target| ms median/max"] = f"{median:.1f}/{worst:.1f}"
            values.update({f"{cam} missing": str(n) for cam, n in sync.missing.items()})
        if delta["frames_in"] and not delta["processed"] and not s.frames_skipped:
            return "ERROR", f"{delta['frames_in']} frames in, none processed (see dropped: ...)", values
        if delta["partial"] or delta["drops"]:
            return "WARN", f"{delta['partial']} partial sets, {delta['drops']} drops in the last {elapsed_s:.1f} s", \
                values
        return "OK", f"{delta['processed']} frames processed in the last {elapsed_s:.1f} s", values

    # -- frames -----------------------------------------------------------------------------------------------
    def _run_sets(self, sets: list[SyncedSet]) -> list[Published]:
        return self._run_frames(sets, self._decode)

    def _release_camera_sets(self, sets: list[CameraSet], end_of_input: bool = False) -> list[Published]:
        """Run the firing cycles, in order, once every camera of a cycle has its CameraInfo (a CameraInfo may come
        just after its image, e.g. at the same stamp), when message time passes the cycle's stamp + sync.timeout_s,
        or at the end of input; the cameras still without one then go missing (counted). At most sync.queue_size
        cycles wait."""
        waiting = self._sets_waiting_for_info + list(sets)
        needs_info = "camera_info" in self.definition.camera_streams
        release = []
        while waiting:
            first = waiting[0]
            informed = not needs_info or all(camera in self._camera_info for camera in first.images)
            expired = self._newest_ns is not None and self._newest_ns >= first.stamp_ns + self._info_wait_ns
            if not (informed or expired or end_of_input or len(waiting) > self._queue_size):
                break
            release.append(waiting.pop(0))
        self._sets_waiting_for_info = waiting
        return self._run_frames(release, self._camera_set_frame)

    def _run_frames(self, items: list, to_frame: Callable[[Any], Frame | None]) -> list[Published]:
        """Turn each released set into a Frame (None = dropped) and run the node on it, unless nobody listens.
        An error costs only its own frame."""
        out = []
        for item in items:
            if self._skip():
                continue
            stamp_ns = item.lidar_stamp_ns if isinstance(item, SyncedSet) else item.stamp_ns
            try:
                frame = to_frame(item)
            except (InputError, TransformError) as exc:
                self._drop_error(exc, stamp_ns)
                continue
            except NodeContractError:
                raise
            except Exception as exc:  # a bug the policy survives: counted, traceback logged once
                self._drop_internal(exc, "the inputs of a frame", stamp_ns)
                continue
            if frame is None:
                continue
            if self._retry_window_ns is None:
                out += self._run(frame)
            else:
                if len(self._waiting_for_tf) == self._waiting_for_tf.maxlen:
                    self._run(self._waiting_for_tf.popleft())  # overflow: the oldest gets its last try
                self._waiting_for_tf.append(frame)
        return out + self._run_waiting()

    def _run_waiting(self) -> list[Published]:
        """Run the frames waiting for transforms, oldest first; stop at the first whose transforms are still
        missing and not yet older than the retry window (it and the frames behind it are tried again later)."""
        out = []
        while self._waiting_for_tf:
            frame = self._waiting_for_tf[0]
            late = self._newest_ns is None or self._newest_ns - frame.stamp_ns > self._retry_window_ns
            published = self._run(frame, keep_on_transform_error=not late)
            if published is None:
                break
            self._waiting_for_tf.popleft()
            out += published
        return out

    def _skip(self) -> bool:
        """Count a frame; True (and counted as skipped) while nobody listens to the outputs."""
        self.stats.frames_in += 1
        if self.wanted():
            return False
        self.stats.frames_skipped += 1
        return True

    def _decode(self, synced: SyncedSet) -> Frame:
        """The Frame of a synced set; a camera whose data is unusable is marked missing (counted); cameras without a
        usable transform are removed when the frame runs (_place_cameras).

        Raises:
            PointCloudError: the sweep itself is unusable (the frame's own input).
        """
        topic = self._topic_of[(None, None)]
        points = pointcloud2_to_array(synced.lidar, topic)
        check_xyz_fields(points.dtype, topic)
        if points.size > self.max_points:
            raise PointCloudError(topic, "width/height", f"hold {points.size} points",
                                  f"at most {self.max_points} (parameter limits.max_points_per_cloud)")
        lidar = LidarInput(synced.lidar_stamp_ns, str(synced.lidar.header.frame_id), points, synced.lidar)
        missing = dict(synced.missing)
        for name, reason in synced.missing.items():
            self._warn(f"missing {name}", f"{self.name}: {name} missing from the set at {synced.lidar_stamp_ns}: "
                                          f"{reason}")
        cameras = self._usable_cameras(
            missing, ((name, m.stamp_ns, m.delta_ns, m.messages) for name, m in synced.cameras.items()))
        return Frame(synced.lidar_stamp_ns, lidar, cameras, missing, self._merged_lidars(synced.lidar_stamp_ns))

    def _merged_lidars(self, stamp_ns: int) -> dict[str, LidarInput]:
        """The newest sweep of each merged LiDAR stamped at or before stamp_ns and within lidar_merge_window_s;
        a LiDAR without one (or with an undecodable one) is left out and counted."""
        out = {}
        for name, sweeps in self._extra_sweeps.items():
            i = bisect.bisect_right(sweeps, stamp_ns, key=lambda item: item[0])
            if i == 0 or stamp_ns - sweeps[i - 1][0] > self._merge_window_ns:
                self._drop(f"{name}: no sweep to merge", f"{self.name}: {name} has no sweep within "
                           f"lidar_merge_window_s before the trigger sweep at {stamp_ns}; merged without it")
                continue
            sweep_ns, msg = sweeps[i - 1]
            topic = next(t for t, p in self.inputs.items() if p.lidar == name)
            try:
                out[name] = LidarInput(sweep_ns, str(msg.header.frame_id), pointcloud2_to_array(msg, topic), msg)
            except InputError as exc:
                self._drop_error(exc)
        return out

    def _usable_cameras(self, missing: dict[str, str], matches: Any) -> dict[str, CameraInput]:
        """CameraInputs of (name, stamp, delta, messages) matches; unusable cameras go to `missing` (counted)."""
        matches = list(matches)
        decoding = self._decode_side_by_side(matches)
        cameras: dict[str, CameraInput] = {}
        for name, stamp_ns, delta_ns, messages in matches:
            try:
                cameras[name] = self._camera_input(name, stamp_ns, delta_ns, messages, decoding.get(name))
            except (InputError, TransformError) as exc:
                self._drop_error(exc, stamp_ns)
                missing[name] = str(exc)
            except Exception as exc:  # a bug the policy survives: this camera only
                self._drop_internal(exc, f"the inputs of {name}", stamp_ns)
                missing[name] = f"internal error: {type(exc).__name__}"
        return cameras

    def _place_cameras(self, frame: Frame, keep_on_transform_error: bool) -> bool:
        """Remove (and count) the cameras of a LiDAR frame whose transform is missing or bad, so one camera costs
        only itself; False (frame unchanged) when one is missing and the frame may still wait for it (ROS host)."""
        check = self._camera_transform_check(frame.lidar)
        if check is None:
            return True
        for name, cam in list(frame.cameras.items()):
            try:
                check(cam)
            except TransformError as exc:
                if keep_on_transform_error:
                    return False
                self._drop_error(exc, cam.stamp_ns)
                del frame.cameras[name]
                frame.missing[name] = str(exc)
        return True

    def _camera_transform_check(self, lidar: LidarInput) -> Callable[[CameraInput], None] | None:
        """A check raising TransformError for a camera that cannot be related to the sweep the way the nodes do
        (through `world_frame` at the camera stamp when the node has one, else to the LiDAR frame at the sweep
        stamp); None when the sweep itself cannot be placed (the node's own lookup then drops the frame)."""
        world = self.node.params.get("world_frame", "")
        try:
            self.tf.lookup(world or lidar.frame_id, lidar.frame_id, lidar.stamp_ns)
        except TransformError:
            return None
        if world:
            return lambda cam: self.tf.lookup(world, cam.frame_id, cam.stamp_ns)
        return lambda cam: self.tf.lookup(lidar.frame_id, cam.frame_id, lidar.stamp_ns)

    def _decode_side_by_side(self, matches: list) -> dict[str, Future]:
        """The compressed images of a camera set's (name, stamp, delta, messages) matches being decoded on the
        `image_decode_threads` pool, by camera name; none where the node takes no images, the pool has one thread
        or the set one compressed image (they are then decoded one after another in `_image`, as raw images are
        converted)."""
        images = [(name, messages["image"]) for name, _, _, messages in matches
                  if hasattr(messages.get("image"), "format")]
        if min(self.decode_threads, len(images)) < 2:
            return {}
        if self._decoder is None or self._decoder[0] != os.getpid():  # a forked process has none of the threads
            self._decoder = (os.getpid(), ThreadPoolExecutor(self.decode_threads, f"{self.name}-decode"))
        pool = self._decoder[1]
        return {name: pool.submit(_pixels, msg, self._topic_of[(name, "image")]) for name, msg in images}

    def _camera_input(self, name: str, stamp_ns: int, delta_ns: int, messages: Mapping[str, Any],
                      decoding: Future | None = None) -> CameraInput:
        """The CameraInput of one camera's messages; `decoding`: its image being decoded on the pool, if it is."""
        data = CameraInput(name, stamp_ns, delta_ns, frame_id="", msgs=dict(messages))
        data.camera = messages.get("camera_info")  # a CameraModel, validated on arrival
        if data.camera is not None:
            data.frame_id = data.camera.frame_id
        for stream, msg in messages.items():
            topic = self._topic_of[(name, stream)]
            if stream == "detections":
                size = (data.camera.width, data.camera.height) if data.camera is not None else None
                data.detections, drops = checked_detections2d(msg, topic, size, self._class_map, DETECTION_CLASSES,
                                                              self.max_boxes)
                for reason, n in drops.items():
                    self.stats.drops[f"box dropped: {topic}: {reason}"] += n
                    self.stats.last_error[f"box dropped: {topic}: {reason}"] = f"in the message at {stamp_ns}"
                data.frame_id = str(msg.header.frame_id)
            elif stream == "image":
                data.image = self._image(msg, topic, data.camera, decoding)
                data.frame_id = str(msg.header.frame_id)
        return data

    def _image(self, msg: Any, topic: str, camera: Any, decoding: Future | None = None) -> np.ndarray:
        """Decoded pixels (decoding's, which raises what decoding raised, else decoded here), checked against the
        CameraInfo size (and made RGB for nodes that take RGB)."""
        image = decoding.result() if decoding is not None else _pixels(msg, topic)
        height, width = image.shape[:2]
        if camera is not None and (width, height) != (camera.width, camera.height):
            raise ImageError(topic, "width/height", f"is {width}x{height}",
                             f"the CameraInfo size {camera.width}x{camera.height}")
        if self.definition.images_as_rgb:
            if image.ndim == 2 and image.dtype == np.uint8:
                image = np.repeat(image[:, :, None], 3, axis=2)  # grey 8-bit: the same image in three channels
            elif image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageError(topic, "encoding", f"decodes to {image.dtype} pixels of shape {image.shape}",
                                 "8-bit colour or grey pixels (this node takes RGB images)")
        return image

    def _camera_set_frame(self, camera_set: CameraSet) -> Frame | None:
        """The Frame of one firing cycle; cameras without a CameraInfo yet, or with an image that does not decode or
        does not fit its CameraInfo, are marked missing (and counted): the rest of the batch goes on."""
        missing = {name: "no image in this firing cycle" for name in camera_set.missing}
        matches = []
        for camera, (stamp_ns, image_msg) in camera_set.images.items():
            messages = {"image": image_msg}
            if "camera_info" in self.definition.camera_streams:
                model = self._camera_info.get(camera)
                if model is None:
                    self._drop(f"{camera}: no camera_info yet", f"{self.name}: waiting for camera_info of {camera}")
                    missing[camera] = "no camera_info yet"
                    continue
                messages["camera_info"] = model
            matches.append((camera, stamp_ns, stamp_ns - camera_set.stamp_ns, messages))
        cameras = self._usable_cameras(missing, matches)
        if not cameras:
            return None
        return Frame(camera_set.stamp_ns, None, cameras, missing)

    def _run(self, frame: Frame, keep_on_transform_error: bool = False) -> list[Published] | None:
        """Process one frame; None (nothing counted) when a transform is missing and keep_on_transform_error."""
        timer = StageTimer()
        start, cpu_start = time.perf_counter(), time.process_time()
        if frame.lidar is not None and not self._place_cameras(frame, keep_on_transform_error):
            return None
        try:
            outputs = self.node.process(frame, self.tf, timer)
        except TransformError as exc:
            if keep_on_transform_error:
                return None
            self._drop_error(exc, frame.stamp_ns)
            return []
        except InputError as exc:
            self._drop_error(exc, frame.stamp_ns)
            return []
        except NodeContractError:
            raise
        except Exception as exc:  # a bug the policy survives: counted, traceback logged once
            self._drop_internal(exc, "a frame", frame.stamp_ns)
            return []
        total_ms, cpu_ms = (time.perf_counter() - start) * 1e3, (time.process_time() - cpu_start) * 1e3
        self.stats.frames_processed += 1
        for stage in STAGES:
            if stage in timer.ms:
                self.stats.timings_ms[stage].append(timer.ms[stage])
        self.stats.timings_ms["total"].append(total_ms)
        self.stats.timings_ms["cpu"].append(cpu_ms)
        published = []
        for port, msg in outputs:
            if port not in self.outputs:
                raise NodeContractError(f"node {self.name}: process() returned undeclared port {port!r}; "
                                 f"declared: {sorted(self.outputs)}")
            topic, spec = self.outputs[port]
            source_stamp = self._source_stamp(port, frame)
            header = getattr(msg, "header", None)
            if header is not None and stamp_to_ns(header.stamp) != source_stamp:
                raise NodeContractError(f"node {self.name}: {port} stamped {stamp_to_ns(header.stamp)} instead of the "
                                 f"source stamp {source_stamp}")
            published.append(Published(topic, source_stamp, msg, spec.msgtype, spec.qos))
        self.stats.outputs += len(published)
        return published

    def _source_stamp(self, port: str, frame: Frame) -> int:
        """The stamp an output must carry: its camera's image stamp for per-camera outputs of a camera frame,
        else the frame's (the LiDAR sweep's) stamp."""
        if frame.lidar is None:
            for name, cam in frame.cameras.items():
                if f"/{name}/" in port:
                    return cam.stamp_ns
        return frame.stamp_ns

    # -- drops ------------------------------------------------------------------------------------------------
    def _drop(self, reason: str, text: str) -> None:
        self.stats.drops[reason] += 1
        self.stats.last_error[reason] = text
        self._warn(reason, text)

    def _drop_error(self, exc: Exception, stamp_ns: int | None = None) -> None:
        if isinstance(exc, InputError):
            reason = f"{type(exc).__name__}: {exc.source} field '{exc.field}'"
        else:
            reason = f"{type(exc).__name__}: {str(exc).split(':')[0]}"
        at = f" (message stamp {stamp_ns})" if stamp_ns is not None else ""
        self._drop(reason, f"{self.name}: dropped{at}: {exc}")

    def _drop_internal(self, exc: Exception, what: str, stamp_ns: int) -> None:
        """An exception no check foresaw: counted as internal; its traceback is logged the first time only."""
        reason = f"internal: {type(exc).__name__} while handling {what}"
        if reason not in self.stats.drops:
            self._log(f"{self.name}: internal error (a bug; the node goes on) while handling {what} at stamp "
                      f"{stamp_ns}:\n{''.join(traceback.format_exception(exc))}")
        self._drop(reason, f"{self.name}: dropped (message stamp {stamp_ns}): {type(exc).__name__}: {exc}")
