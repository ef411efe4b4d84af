"""Parameter schema and file: rejections name the key; committed schema/YAML/README equal the generated ones."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from perception3d.cli import main as cli_main
from perception3d.errors import ConfigError
from perception3d.nodes.params import (
    SHARED_PARAMS,
    Param,
    default_parameter_file,
    load_parameters,
    parameter_schema,
)
from perception3d.nodes.rcl_yaml import rcl_yaml_problems
from perception3d.runtime.params_command import generated

ROOT = Path(__file__).resolve().parents[1]
NODE_PARAMS = {"demo": (Param("score_threshold", "float", 0.3, "minimum score", 0.0, 1.0),
                        Param("mode", "string", "geometric", "how it works", choices=("geometric", "learned")))}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


SYNC = "/**:\n  ros__parameters:\n    sync:\n"


@pytest.mark.parametrize(("text", "key", "problem"), [
    (SYNC + "      tolerance_s: fast\n", "[/**] sync.tolerance_s", "is not of type 'number'"),
    (SYNC + "      queue_size: 2.5\n", "[/**] sync.queue_size", "is not of type 'integer'"),
    (SYNC + "      timeout_s: 5.0\n", "[/**] sync.timeout_s", "maximum of 2.0"),
    (SYNC + "      tolerence_s: 0.1\n", "[/**] sync.tolerence_s", "unknown key"),
    ("/**:\n  ros__parameters: {}\ndemo:\n  ros__parameters:\n    score_threshold: 1.5\n",
     "[demo] score_threshold", "maximum of 1.0"),
    ("/**:\n  ros__parameters: {}\ndemo:\n  ros__parameters:\n    mode: magic\n", "[demo] mode", "is not one of"),
    ("/**:\n  ros__parameters: {}\nsegmentaton:\n  ros__parameters: {}\n", "segmentaton", "unknown node section"),
    ("/**:\n  ros__parameters:\n    camera_names: []\n", "[/**] camera_names", "empty array"),  # rcl refuses it
])
def test_bad_values_fail_naming_the_key(tmp_path, text, key, problem):
    with pytest.raises(ConfigError) as info:
        load_parameters(write(tmp_path, text), NODE_PARAMS)
    message = str(info.value)
    assert f"  {key}: " in message and problem in message, message
    assert str(tmp_path / "params.yaml") in message


def test_values_merge_defaults_shared_and_node_sections(tmp_path):
    text = ("/**:\n  ros__parameters:\n    sync: {tolerance_s: 0.02}\n"
            "demo:\n  ros__parameters:\n    score_threshold: 0.6\n    sync: {timeout_s: 0.3}\n")
    values = load_parameters(write(tmp_path, text), NODE_PARAMS)["demo"]
    assert values["sync.tolerance_s"] == 0.02 and values["sync.timeout_s"] == 0.3
    assert values["score_threshold"] == 0.6 and values["mode"] == "geometric"
    assert values["sync.queue_size"] == 10  # default


def test_offsets_must_match_cameras(tmp_path):
    text = "/**:\n  ros__parameters:\n    camera_names: [CAM_FRONT, CAM_BACK]\n"
    with pytest.raises(ConfigError, match="camera_offsets_s has 6 values for 2 camera_names"):
        load_parameters(write(tmp_path, text), NODE_PARAMS)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_parameters(tmp_path / "nope.yaml", NODE_PARAMS)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_parameters(write(tmp_path, "/**: [unclosed\n"), NODE_PARAMS)


def test_default_file_is_valid_against_the_schema():
    schema = parameter_schema(NODE_PARAMS)
    jsonschema.Draft7Validator.check_schema(schema)
    doc = yaml.safe_load(default_parameter_file(NODE_PARAMS))
    jsonschema.validate(doc, schema)
    assert doc["/**"]["ros__parameters"]["sync"]["tolerance_s"] == 0.05
    assert set(doc["/**"]["ros__parameters"]) == {p.name.split(".")[0] for p in SHARED_PARAMS}


def test_committed_schema_yaml_and_readme_tables_are_the_generated_ones():
    for path, text in generated(ROOT).items():
        assert path.read_text() == text, f"{path} is stale: run `perception3d params --write`"
    committed = json.loads((ROOT / "config/perception3d.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((ROOT / "config/perception3d.yaml").read_text()), committed)
    readme = (ROOT / "README.md").read_text()
    for p in SHARED_PARAMS:  # every parameter is documented
        assert f"| `{p.name}` |" in readme


def test_committed_file_has_no_yaml_feature_rcl_refuses():
    import yaml as pyyaml

    text = (ROOT / "config/perception3d.yaml").read_text()
    events = list(pyyaml.parse(text))
    assert not [e for e in events if isinstance(e, pyyaml.AliasEvent) or getattr(e, "anchor", None)
                or (getattr(e, "tag", None) and not isinstance(e, pyyaml.DocumentStartEvent))]
    assert rcl_yaml_problems(text) == []


@pytest.mark.parametrize(("extra", "problem"), [
    ("    ego_box_m: &box [-1.0, -1.0, -0.6, 3.4, 1.0, 2.0]\n", "anchor &box"),
    ("    world_frame: !!str map\n", "explicit tag"),
    ("    ego_box_m: [-1, -1.0, -0.6, 3.4, 1.0, 2.0]\n", "array mixes double and integer"),
])
def test_params_check_rejects_what_rcl_refuses(tmp_path, capsys, extra, problem):
    base = yaml.safe_load((ROOT / "config/perception3d.yaml").read_text())
    del base["segmentation"]["ros__parameters"]["ego_box_m"], base["segmentation"]["ros__parameters"]["world_frame"]
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(base) + "".join(extra))  # appended under the last section (segmentation)
    assert cli_main(["params", "--check", str(path)]) == 1
    assert problem in capsys.readouterr().err
    path.write_text(yaml.safe_dump(base))
    assert cli_main(["params", "--check", str(path)]) == 0
