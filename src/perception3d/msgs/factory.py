"""One factory that builds ROS 2 messages for either backend, so each conversion is written once.

Backends:
- 'rosbags': rosbags dataclasses from our typestore (bag runtime, tests, CI). Every field must be given to a
  rosbags constructor; the factory fills the ones left out with ROS defaults (0, '', empty, nested defaults).
- 'rclpy': the generated rclpy message classes (ROS 2 host). Numeric arrays given as numpy are handed over as
  `array.array` built with `frombytes` (the fast path; per-element assignment is what makes Python PointCloud2
  creation slow), fixed-size arrays as numpy.

Reading needs no factory: both backends expose the same field names, and conversions read arrays through
`np.asarray` / `np.frombuffer`, which accept numpy arrays, array.array and bytes alike.
"""
from __future__ import annotations

import array
import copy
import importlib
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
from rosbags.typesys.base import Nodetype

from .typestore import typestore

# ROS primitive -> numpy dtype (little-endian, as CDR on every platform we run).
PRIMITIVE_DTYPES: dict[str, str] = {
    "bool": "bool", "byte": "uint8", "char": "uint8", "int8": "int8", "uint8": "uint8",
    "int16": "<i2", "uint16": "<u2", "int32": "<i4", "uint32": "<u4", "int64": "<i8", "uint64": "<u8",
    "float32": "<f4", "float64": "<f8",
}
# Non-zero defaults declared in ROS 2 .msg files (rosbags field definitions carry no defaults).
_FIELD_DEFAULTS: dict[tuple[str, str], Any] = {("geometry_msgs/msg/Quaternion", "w"): 1.0}
# numpy dtype kind/size -> array.array typecode, for rclpy sequences.
_ARRAY_TYPECODES: dict[str, str] = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}


_MISSING = object()


def _identity(value: Any) -> Any:
    return value


def _rclpy_message_class(msgtype: str) -> type:
    package, _, name = msgtype.split("/")
    module = importlib.import_module(f"{package}.msg")
    return getattr(module, name)


class MessageFactory:
    """Builds messages of a ROS 2 type name ('sensor_msgs/msg/PointCloud2') for one backend."""

    def __init__(self, backend: str = "rosbags",
                 message_class: Callable[[str], type] | None = None) -> None:
        if backend not in ("rosbags", "rclpy"):
            raise ValueError(f"unknown message backend {backend!r}; expected 'rosbags' or 'rclpy'")
        self.backend = backend
        self._store = typestore()
        self._message_class = message_class or _rclpy_message_class
        self._builders: dict[str, tuple[type, frozenset, tuple]] = {}

    def __call__(self, msgtype: str, **fields: Any) -> Any:
        """A message of `msgtype` with the given fields; fields left out take their ROS default."""
        if self.backend == "rclpy":
            return self._make_rclpy(msgtype, fields)
        return self._make_rosbags(msgtype, fields)

    def many(self, msgtype: str, template: Any = None, **columns: Any) -> list:
        """One message of `msgtype` per row of the columns (a numpy array or a sequence per field, all of one
        length): every field given (a flat type such as Point or ColorRGBA), or `template`, a message of the type,
        gives the others, its own objects shared as `like` shares them.

        The bulk path for point and colour lists and for the parts of a message per box: rows are built straight
        from the columns (numpy ones as Python scalars) with the constructor's positional fields, without the
        per-message work of `__call__` / `like`; values are converted as those convert them.
        """
        _, known, plan = self._builders.get(msgtype) or self._compile(msgtype)
        if not columns or not known.issuperset(columns) or (template is None and set(columns) != known):
            raise TypeError(f"many() needs columns for every field of {msgtype} or a template for the others: it "
                            f"has {[name for name, _, _ in plan]}, got {sorted(columns)}")
        given = {name: column.tolist() if isinstance(column, np.ndarray) else column
                 for name, column in columns.items()}
        if len({len(column) for column in given.values()}) > 1:
            raise ValueError(f"many({msgtype}): columns of different lengths")
        if self.backend == "rclpy":
            rows = [dict(zip(given, row)) for row in zip(*given.values())]
            if template is None:
                cls = self._message_class(msgtype)
                return [cls(**row) for row in rows]
            return [self.like(msgtype, template, **row) for row in rows]
        fields = [(given[name] if convert is _identity else map(convert, given[name])) if name in given
                  else itertools.repeat(getattr(template, name)) for name, convert, _ in plan]
        cls = self._store.types[msgtype]
        return list(itertools.starmap(cls, zip(*fields)))

    def like(self, msgtype: str, template: Any, **fields: Any) -> Any:
        """A message of `msgtype` equal to `template` but for `fields` (converted as `__call__` converts them). The
        fields not given are the template's own objects, shared: messages are not changed once built. The fast
        path for many messages that differ in a few fields (an RViz marker per box), which skips building every
        nested default field (a Marker has a dozen) again for each."""
        if self.backend == "rclpy":
            return self._set_rclpy_fields(copy.copy(template), msgtype, fields)
        _, known, plan = self._builders.get(msgtype) or self._compile(msgtype)
        if not known.issuperset(fields):
            raise TypeError(f"{msgtype} has no field(s) {sorted(set(fields) - known)}; fields are {sorted(known)}")
        changed = {name: convert(fields[name]) for name, convert, _ in plan if name in fields}
        # the constructor on the template's fields: what dataclasses.replace does, without its per-field checks
        return type(template)(**{**vars(template), **changed})

    # -- conveniences used by every conversion -------------------------------------------------------------
    def time(self, stamp_ns: int) -> Any:
        """builtin_interfaces/Time from integer nanoseconds."""
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """std_msgs/Header with a stamp in nanoseconds."""
        return self("std_msgs/msg/Header", stamp=self.time(stamp_ns), frame_id=frame_id)

    # -- rosbags ---------------------------------------------------------------------------------------------
    def _make_rosbags(self, msgtype: str, fields: dict[str, Any]) -> Any:
        builder = self._builders.get(msgtype) or self._compile(msgtype)
        cls, known, plan = builder
        if not known.issuperset(fields):
            unknown = sorted(set(fields) - known)
            raise TypeError(f"{msgtype} has no field(s) {unknown}; fields are {sorted(known)}")
        values = {}
        for name, convert, default in plan:
            value = fields.get(name, _MISSING)
            values[name] = default() if value is _MISSING else convert(value)
        return cls(**values)

    def _compile(self, msgtype: str) -> tuple[type, frozenset, tuple]:
        """Cache how each field of a type is converted and defaulted (building messages is a hot path)."""
        _, fielddefs = self._store.fielddefs[msgtype]
        plan = []
        for name, desc in fielddefs:
            override = _FIELD_DEFAULTS.get((msgtype, name), _MISSING)
            default = (lambda v=override: v) if override is not _MISSING else self._default_maker(desc)
            plan.append((name, self._converter(desc), default))
        builder = (self._store.types[msgtype], frozenset(n for n, _ in fielddefs), tuple(plan))
        self._builders[msgtype] = builder
        return builder

    @staticmethod
    def _converter(desc: tuple) -> Callable[[Any], Any]:
        nodetype, detail = desc
        if nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (elem_type, elem_detail), _ = detail
            if elem_type == Nodetype.BASE and elem_detail[0] in PRIMITIVE_DTYPES:
                dtype = np.dtype(PRIMITIVE_DTYPES[elem_detail[0]])
                return lambda value: np.ascontiguousarray(value, dtype=dtype).reshape(-1)
            return list
        return _identity

    def _default_maker(self, desc: tuple) -> Callable[[], Any]:
        nodetype, detail = desc
        if nodetype == Nodetype.BASE:
            base = detail[0]
            constant = "" if base == "string" else False if base == "bool" else 0.0 if base.startswith("float") else 0
            return lambda: constant
        if nodetype == Nodetype.NAME:
            return lambda: self._make_rosbags(detail, {})
        (elem_type, elem_detail), length = detail
        primitive = elem_type == Nodetype.BASE and elem_detail[0] in PRIMITIVE_DTYPES
        if nodetype == Nodetype.ARRAY:
            if primitive:
                dtype = PRIMITIVE_DTYPES[elem_detail[0]]
                return lambda: np.zeros(length, dtype=dtype)
            element = self._default_maker((elem_type, elem_detail))
            return lambda: [element() for _ in range(length)]
        if primitive:
            dtype = PRIMITIVE_DTYPES[elem_detail[0]]
            return lambda: np.zeros(0, dtype=dtype)
        return list

    # -- rclpy -----------------------------------------------------------------------------------------------
    def _make_rclpy(self, msgtype: str, fields: dict[str, Any]) -> Any:
        return self._set_rclpy_fields(self._message_class(msgtype)(), msgtype, fields)

    def _set_rclpy_fields(self, msg: Any, msgtype: str, fields: dict[str, Any]) -> Any:
        _, fielddefs = self._store.fielddefs[msgtype]
        kinds = dict(fielddefs)
        for name, value in fields.items():
            if name not in kinds:
                raise TypeError(f"{msgtype} has no field {name!r}")
            nodetype, detail = kinds[name]
            if nodetype == Nodetype.SEQUENCE and isinstance(value, np.ndarray):
                (elem_type, elem_detail), _ = detail
                if elem_type == Nodetype.BASE and elem_detail[0] in _ARRAY_TYPECODES:
                    dtype = np.dtype(PRIMITIVE_DTYPES[elem_detail[0]]).newbyteorder("=")
                    value = array.array(_ARRAY_TYPECODES[elem_detail[0]],
                                        np.ascontiguousarray(value, dtype=dtype).tobytes())
            elif nodetype == Nodetype.ARRAY and not isinstance(value, np.ndarray):
                (elem_type, elem_detail), _ = detail
                if elem_type == Nodetype.BASE and elem_detail[0] in PRIMITIVE_DTYPES:
                    value = np.asarray(value, dtype=PRIMITIVE_DTYPES[elem_detail[0]])
            setattr(msg, name, value)
        return msg


_DEFAULT: MessageFactory | None = None


def default_factory() -> MessageFactory:
    """The rosbags-backed factory shared by conversions that are not handed one."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MessageFactory("rosbags")
    return _DEFAULT


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time (either backend)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
