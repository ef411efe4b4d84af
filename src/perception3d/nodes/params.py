"""Typed node parameters, the parameter file, its JSON schema and the README tables, all from one declaration.

Every parameter is declared once as a `Param` (the framework's shared ones below, each node's own ones on its
definition). From those declarations come:
- the JSON Schema (draft-07) of `config/perception3d.yaml` (`parameter_schema`), committed as
  `config/perception3d.schema.json` and checked in CI like Autoware's `json-schema-check`;
- the default parameter file (`default_parameter_file`);
- the README parameter tables (`markdown_tables`);
- validation of a parameter file at start (`load_parameters`), which raises ConfigError naming the key.

The parameter file is a ROS 2 parameter file: `/**: ros__parameters:` holds the shared parameters that every node
declares (camera list, synchronizer, frames), and `<node>: ros__parameters:` holds one node's own parameters (it may
also override a shared one). Dotted names (`sync.tolerance_s`) are nested mappings in the YAML, as ROS 2 reads them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.sensor_timing import CAMERA_NAMES, NUSCENES_CAMERA_OFFSETS_S
from ..errors import ConfigError

SHARED_SECTION = "/**"
PARAMS_KEY = "ros__parameters"
_JSON_TYPES = {"bool": "boolean", "int": "integer", "float": "number", "string": "string"}


@dataclass(frozen=True)
class Param:
    """One node parameter.

    Attributes:
        name: dotted ROS parameter name, e.g. 'sync.tolerance_s'; units go into the name or the description.
        type: 'bool', 'int', 'float', 'string', 'string_array' or 'float_array'.
        default: the value used when the parameter file leaves it out.
        description: one line for the README and the ROS parameter descriptor.
        minimum, maximum: inclusive range of a number (of each element for arrays).
        choices: allowed values of a string (of each element for string arrays).
        pattern: regular expression a string must match (JSON Schema `pattern`), where a fixed list of choices is
            too narrow (e.g. 'cuda:N' device names).
        read_only: True when changing it needs a restart (model reload, queue sizes); ROS declares it read-only.
    """

    name: str
    type: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    read_only: bool = True

    def __post_init__(self) -> None:
        if self.type not in (*_JSON_TYPES, "string_array", "float_array"):
            raise ValueError(f"Param {self.name}: unknown type {self.type!r}")

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (draft-07) of this parameter's value."""
        scalar_type = self.type.removesuffix("_array")
        item: dict[str, Any] = {"type": _JSON_TYPES[scalar_type]}
        if self.minimum is not None:
            item["minimum"] = self.minimum
        if self.maximum is not None:
            item["maximum"] = self.maximum
        if self.choices is not None:
            item["enum"] = list(self.choices)
        if self.pattern is not None:
            item["pattern"] = self.pattern
        if self.type.endswith("_array"):
            schema = {"type": "array", "items": item, "description": self.description, "default": self.default}
            if self.type == "string_array":
                schema.update(uniqueItems=True, minItems=1)
            return schema
        return {**item, "description": self.description, "default": self.default}


# Parameters every node declares (the `/**` section of the parameter file).
SHARED_PARAMS: tuple[Param, ...] = (
    Param("camera_names", "string_array", list(CAMERA_NAMES),
          "cameras whose streams the node subscribes to (`~/input/<camera>/...`)"),
    Param("base_frame", "string", "base_link", "vehicle frame (REP-105) that outputs in the ego frame use"),
    Param("lidar_names", "string_array", ["LIDAR_TOP"],
          "LiDARs of the rig; the first triggers the LiDAR nodes (its sweeps on ~/input/pointcloud give the output "
          "stamps), detection3d and segmentation merge each other one (topic /<name>/points) into its sweep"),
    Param("lidar_merge_window_s", "float", 0.15,
          "a merged LiDAR's newest sweep stamped at or before the trigger sweep is used if at most this older; it is "
          "moved into the trigger frame through world_frame (ego motion compensated) [s]", 0.0, 2.0),
    Param("detections.class_map", "string_array", ["person:pedestrian"],
          "translation of incoming 2D class ids, 'from:to' (an external detector's labels, e.g. COCO names, to "
          "nuScenes classes; 'from:' drops a class); ids without an entry pass unchanged"),
    Param("sync.camera_offsets_s", "float_array", list(NUSCENES_CAMERA_OFFSETS_S.values()),
          "per camera (order of camera_names): expected camera stamp - LiDAR stamp [s]", -0.5, 0.5),
    Param("sync.tolerance_s", "float", 0.05,
          "largest |camera stamp - (LiDAR stamp + offset)| accepted into a set [s]", 0.0, 0.5),
    Param("sync.timeout_s", "float", 0.1,
          "how long after a LiDAR stamp (message time) a set waits for late cameras before going out partial [s]",
          0.0, 2.0),
    Param("sync.queue_size", "int", 10, "bounded queue length per camera and for pending LiDAR sweeps", 1, 100),
    Param("sync.camera_set_window_s", "float", 0.06,
          "camera-triggered nodes (detector2d): images within this of a firing cycle's first image are one batch [s]",
          0.001, 1.0),
    Param("sync.reset_jump_s", "float", 1.0,
          "a stamp this much older than the newest one seen resets the synchronizer (bag loop) [s]", 0.01, 3600.0),
    Param("limits.max_points_per_cloud", "int", 2_000_000,
          "a PointCloud2 with more points is dropped (bounded work per message; a 128-beam sweep has ~260,000)",
          1, 100_000_000),
    Param("limits.max_boxes_per_image", "int", 500,
          "2D boxes kept per Detection2DArray, highest scores first; the rest are dropped and counted", 1, 100_000),
    Param("image_transport", "string", "auto",
          "message type of `~/input/<camera>/image` (nodes that take images): compressed (sensor_msgs/CompressedImage, "
          "e.g. nuScenes JPEG), raw (sensor_msgs/Image), or auto (per camera, the type its topic is published with at "
          "start; compressed when nobody publishes it yet)", choices=("auto", "compressed", "raw")),
    Param("image_decode_threads", "int", 0,
          "threads decoding a camera set's compressed images side by side (nodes that take images; Pillow decodes "
          "without holding the GIL): 0 = one per core the process may use (its CPU affinity), at most one per camera; "
          "1 = one after another in the node's thread", 0, 64),
    Param("tf_timeout_s", "float", 0.05,
          "ROS 2 host: how long a transform lookup at a message stamp waits for /tf to catch up [s]", 0.0, 1.0),
    Param("log_throttle_s", "float", 5.0, "least time between two log lines about the same problem [s]", 0.0, 3600.0,
          read_only=False),
    Param("process_threads", "int", 1,
          "threads of the numeric libraries' pools (BLAS, OpenMP, torch intra-op) in the node's process, set at start "
          "(runtime.threads); 0 = each library's default (one per core), which spins against the other nodes on a "
          "shared machine; a process running several nodes uses the largest value", 0, 256),
)


def params_by_name(params: Iterable[Param]) -> dict[str, Param]:
    return {p.name: p for p in params}


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _object_schema(params: Sequence[Param]) -> dict[str, Any]:
    """A nested object schema (additionalProperties false) of dotted parameters; none of them required."""
    root: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    for p in params:
        *parents, leaf = p.name.split(".")
        node = root
        for part in parents:
            node = node["properties"].setdefault(
                part, {"type": "object", "properties": {}, "additionalProperties": False})
        node["properties"][leaf] = p.json_schema()
    return root


def _section_schema(params: Sequence[Param]) -> dict[str, Any]:
    return {"type": "object", "properties": {PARAMS_KEY: _object_schema(params)},
            "required": [PARAMS_KEY], "additionalProperties": False}


def parameter_schema(node_params: Mapping[str, Sequence[Param]]) -> dict[str, Any]:
    """JSON Schema (draft-07) of the parameter file for nodes {node name: its own parameters}.

    A node whose parameters are None is a known section left unchecked (load_parameters' other_nodes). A node section
    accepts the node's own parameters and overrides of the shared ones.
    """
    properties = {SHARED_SECTION: _section_schema(SHARED_PARAMS)}
    for node, params in sorted(node_params.items()):
        properties[node] = {"type": "object"} if params is None else _section_schema([*SHARED_PARAMS, *params])
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "perception3d parameters",
        "description": "config/perception3d.yaml (ROS 2 parameter file). Generated by `perception3d params "
                       "--schema` from the parameter declarations; do not edit by hand.",
        "type": "object",
        "properties": properties,
        "required": [SHARED_SECTION],
        "additionalProperties": False,
    }


def _alias_free_dumper() -> type:
    import yaml

    class AliasFreeDumper(yaml.SafeDumper):
        """SafeDumper that writes a value shared by several keys in full each time: rcl's parameter-file parser
        refuses anchors and aliases (rcl_yaml_param_parser, see nodes/rcl_yaml.py)."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    return AliasFreeDumper


def parameter_file(node_values: Mapping[str, Mapping[str, Any]], shared: Mapping[str, Any] | None = None) -> str:
    """A parameter file (YAML text) setting the given values of each node section (dotted names nest), and of the
    shared `/**` section; every other parameter keeps its default."""
    import yaml

    doc: dict[str, Any] = {SHARED_SECTION: {PARAMS_KEY: _nest(dict(shared or {}))}}
    doc.update({node: {PARAMS_KEY: _nest(dict(values))} for node, values in node_values.items()})
    return yaml.dump(doc, Dumper=_alias_free_dumper(), sort_keys=False, default_flow_style=None, width=100)


def default_parameter_file(node_params: Mapping[str, Sequence[Param]]) -> str:
    """The parameter file with every default, as YAML text. Empty-array defaults are left out: rcl's parser cannot
    type an empty sequence (nodes/rcl_yaml.py), and a key left out takes the declared default."""
    import yaml

    def written(params: Sequence[Param]) -> dict[str, Any]:
        return _nest({p.name: p.default for p in params if p.default != []})

    doc: dict[str, Any] = {SHARED_SECTION: {PARAMS_KEY: written(SHARED_PARAMS)}}
    for node, params in sorted(node_params.items()):
        doc[node] = {PARAMS_KEY: written(params)}
    header = ("# perception3d parameters (ROS 2 parameter file). `/**` holds the parameters every node declares;\n"
              "# `<node>` sections hold a node's own parameters and may override shared ones.\n"
              "# Schema: perception3d.schema.json. Regenerate with `perception3d params --write`.\n")
    return header + yaml.dump(doc, Dumper=_alias_free_dumper(), sort_keys=False, default_flow_style=None, width=100)


def _error_line(error: Any) -> str:
    """'[section] dotted.key: problem' of one jsonschema error."""
    path = [str(p) for p in error.absolute_path if p != PARAMS_KEY]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(error.schema.get("properties", {}))
        path.append(",".join(extra))
        problem = f"unknown key (known here: {known})"
    else:
        problem = error.message
    if not path[:-1] and error.validator == "additionalProperties":
        return f"{path[-1]}: unknown node section (known: {', '.join(error.schema.get('properties', {}))})"
    section, key = (path[0], ".".join(path[1:])) if path else ("", "")
    return f"[{section}] {key}: {problem}" if key else f"[{section}]: {problem}"


def validate_parameter_document(doc: Any, node_params: Mapping[str, Sequence[Param]], source: str) -> None:
    """Check a parsed parameter file against the schema.

    Raises:
        ConfigError: naming the file, and for each problem the section, the dotted key and what is wrong.
    """
    validate_against_schema(doc, parameter_schema(node_params), source)


def validate_against_schema(doc: Any, schema: Mapping[str, Any], source: str) -> None:
    """Check a parsed parameter file against a parameter-file schema (e.g. the committed
    config/perception3d.schema.json, which needs no node implementation to be imported).

    Raises:
        ConfigError: as validate_parameter_document.
    """
    import jsonschema

    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: expected a mapping of node sections ('/**', node names), got "
                          f"{type(doc).__name__}")
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(f"{source}: invalid parameters:\n" + "\n".join(f"  {_error_line(e)}" for e in errors))


def resolve_node_parameters(doc: Mapping[str, Any] | None, node: str, own: Sequence[Param],
                            source: str = "<parameters>") -> dict[str, Any]:
    """{dotted name: value} of one node: defaults, then the shared section, then the node's section.

    Also checks the cross-parameter rule the schema cannot express (one camera offset per camera).
    """
    values = {p.name: p.default for p in (*SHARED_PARAMS, *own)}
    doc = doc or {}
    for section in (SHARED_SECTION, node):
        values.update(_flatten((doc.get(section) or {}).get(PARAMS_KEY) or {}))
    cams, offsets = values["camera_names"], values["sync.camera_offsets_s"]
    if len(offsets) != len(cams):
        raise ConfigError(f"{source}: {node}: sync.camera_offsets_s has {len(offsets)} values for "
                          f"{len(cams)} camera_names; expected one offset per camera")
    return values


def validate_node_values(node: str, own: Sequence[Param], values: Mapping[str, Any],
                         source: str = "<parameters>") -> dict[str, Any]:
    """Validate one node's {dotted name: value} (e.g. as the rclpy host read them) and return them resolved.

    Raises:
        ConfigError: naming the node and the key, as for a parameter file.
    """
    doc = {SHARED_SECTION: {PARAMS_KEY: {}}, node: {PARAMS_KEY: _nest(values)}}
    validate_parameter_document(doc, {node: own}, source)
    return resolve_node_parameters(doc, node, own, source)


def load_parameters(path: str | Path | None, node_params: Mapping[str, Sequence[Param]],
                    other_nodes: Iterable[str] = ()) -> dict[str, dict]:
    """{node: {dotted name: value}} for the given nodes, from a parameter file (None = all defaults).

    other_nodes: names of nodes that exist but are not started now (e.g. replay of a sub-graph); their sections are
    accepted unchecked (the node checks them when it runs). Any other unknown section is an error.

    Raises:
        ConfigError: unreadable file, invalid YAML, YAML that rcl's parser refuses (anchors, aliases, tags, mixed or
            empty arrays: nodes.rcl_yaml), or a value the schema rejects (the message names the key).
    """
    import yaml

    from .rcl_yaml import check_rcl_parameter_yaml

    doc: Any = None
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            text = Path(path).read_text()
            doc = yaml.safe_load(text)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read parameter file: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        check_rcl_parameter_yaml(text, source)
        idle = {name: None for name in other_nodes if name not in node_params}
        validate_parameter_document(doc, {**node_params, **idle}, source)
    return {node: resolve_node_parameters(doc, node, own, source) for node, own in node_params.items()}


def _markdown_value(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def markdown_tables(schema: Mapping[str, Any]) -> str:
    """README tables (one per section of the parameter file), generated from the JSON schema."""
    out = []
    shared = {name for name, _ in _flatten_schema(schema["properties"][SHARED_SECTION]["properties"][PARAMS_KEY])}
    for section, section_schema in schema["properties"].items():
        params = _flatten_schema(section_schema["properties"][PARAMS_KEY])
        if section == SHARED_SECTION:
            title = "Shared parameters (`/**`: every node declares them; a node section may override them)"
        else:
            title = f"`{section}` parameters"
            params = [(name, s) for name, s in params if name not in shared]
        out += [f"#### {title}", "", "| parameter | type | default | range / values | description |",
                "|---|---|---|---|---|"]
        for name, s in params:
            item = s.get("items", s)
            kind = s["type"] if s["type"] != "array" else f"{item['type']}[]"
            if "enum" in item:
                allowed = ", ".join(f"`{v}`" for v in item["enum"])
            elif "pattern" in item:
                allowed = "`" + item["pattern"].replace("|", "\\|") + "`"  # a '|' would end the table cell
            elif "minimum" in item or "maximum" in item:
                allowed = f"[{item.get('minimum', '-inf')}, {item.get('maximum', 'inf')}]"
            else:
                allowed = ""
            description = s["description"].replace("|", "\\|")
            out.append(f"| `{name}` | {kind} | {_markdown_value(s['default'])} | {allowed} | {description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _flatten_schema(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for key, s in obj["properties"].items():
        if s.get("type") == "object":
            out += _flatten_schema(s, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", s))
    return out
