"""Shared pytest configuration: hypothesis profile sized for a 2-core CI machine, shared fixtures."""
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

RIG_PATHS = [Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "nuscenes-rig.json"]


@pytest.fixture(scope="session")
def rig() -> dict:
    """The nuScenes sensor rig (shared/reference/nuscenes-rig.json beside the checkout)."""
    for path in RIG_PATHS:
        if path.exists():
            return json.loads(path.read_text())
    pytest.skip("nuscenes-rig.json not found beside the checkout")
