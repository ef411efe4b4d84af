"""The YAML dialect of ROS 2 parameter files: what rcl's parser (rcl_yaml_param_parser) accepts.

Every ROS 2 node reads its `--params-file` through rcl (rcl_yaml_param_parser, parse.c / parser.c), which is
stricter than YAML: it refuses anchors and aliases ("Will not support aliasing"), takes no explicit tags, and
reads arrays only as flat, non-empty sequences of one scalar type (bool, integer, double or string; an integer
among doubles is "not of the same type"). A file that breaks any of these stops `rclpy.init` of every node that is
given it, so perception3d checks its parameter files against these rules before anything starts
(`perception3d params --check`, load_parameters, the launch plan and the rclpy host).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

PARAMS_KEY = "ros__parameters"


def _event_problems(text: str) -> list[str]:
    """Anchors, aliases, tags and extra documents, from the YAML event stream (line numbers 1-based)."""
    import yaml

    problems, documents = [], 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents == 2:
                problems.append(f"line {line}: a second YAML document (rcl reads one)")
        if isinstance(event, yaml.AliasEvent):
            problems.append(f"line {line}: alias *{event.anchor} (rcl: 'Will not support aliasing'; write the value "
                            f"out)")
        elif getattr(event, "anchor", None) is not None:
            problems.append(f"line {line}: anchor &{event.anchor} (rcl refuses anchors and aliases)")
        if getattr(event, "tag", None) is not None and not isinstance(event, yaml.DocumentStartEvent):
            problems.append(f"line {line}: explicit tag {event.tag} (rcl takes plain scalars only)")
    return problems


def _scalar_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return None


def _value_problems(value: Any, name: str) -> list[str]:
    """Problems of one parameter value (or a nested namespace of them) under its dotted name."""
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in _value_problems(item, f"{name}.{key}")]
    if isinstance(value, list):
        if not value:
            return [f"{name}: empty array (rcl cannot type an empty sequence; leave the key out)"]
        kinds = {_scalar_kind(item) for item in value}
        if None in kinds:
            return [f"{name}: array of non-scalars (rcl reads flat arrays of one scalar type)"]
        if len(kinds) > 1:
            return [f"{name}: array mixes {' and '.join(sorted(kinds))} (rcl needs one type; write 1.0, not 1, "
                    f"among doubles)"]
        return []
    if value is None:
        return [f"{name}: no value"]
    return []


def _section_problems(doc: Any) -> list[str]:
    """Problems of the section structure: `<node or /**>: ros__parameters: {...}`, optionally under namespaces."""
    if not isinstance(doc, Mapping):
        return [f"the file is a {type(doc).__name__}, not a mapping of node sections"]
    problems = []
    for section, body in doc.items():
        if not isinstance(body, Mapping):
            problems.append(f"[{section}]: expected '{PARAMS_KEY}:' or a namespace of node sections")
        elif PARAMS_KEY in body:
            params = body[PARAMS_KEY] or {}
            if not isinstance(params, Mapping):
                problems.append(f"[{section}] {PARAMS_KEY}: expected a mapping of parameters")
                continue
            problems += [f"[{section}] {p}" for key, value in params.items() for p in _value_problems(value, key)]
        else:  # a namespace: its keys are node sections
            problems += [p.replace("[", f"[{section}/", 1) for p in _section_problems(body)]
    return problems


def rcl_yaml_problems(text: str) -> list[str]:
    """Every reason rcl's parameter-file parser would refuse `text` (empty when it is accepted)."""
    import yaml

    try:
        problems = _event_problems(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    return problems + _section_problems(doc)


def check_rcl_parameter_yaml(text: str, source: str) -> None:
    """Raise ConfigError naming `source` and every problem when rcl would refuse the parameter file."""
    problems = rcl_yaml_problems(text)
    if problems:
        raise ConfigError(f"{source}: ROS 2 (rcl) cannot read this parameter file:\n" +
                          "\n".join(f"  {p}" for p in problems))
