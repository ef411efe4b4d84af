"""Replaying part of the graph with the shipped parameter file (sections of nodes that do not run are fine)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perception3d.errors import ConfigError
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH
from replay_fixtures import write_nuscenes_timed_bag

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "perception3d.yaml"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("subset") / "bag"
    return path, write_nuscenes_timed_bag(path, duration_s=0.3)


def test_a_sub_graph_replays_with_the_shipped_config(bag, tmp_path):
    bag_path, stamps = bag
    summary = replay(bag_path, tmp_path / "out", FULL_GRAPH.select(["segmentation"]), config=CONFIG, progress=False)
    assert not summary.error and summary.runners[0].stats.outputs >= len(stamps["lidar"]) // 2


def test_an_unknown_section_is_still_an_error(bag, tmp_path):
    bag_path, _ = bag
    doc = yaml.safe_load(CONFIG.read_text())
    doc["segmentaton"] = {"ros__parameters": {}}
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="segmentaton: unknown node section"):
        replay(bag_path, tmp_path / "out", FULL_GRAPH.select(["segmentation"]), config=config, progress=False)
