"""Shared pytest configuration: hypothesis profile sized for a 2-core CI machine, shared fixtures."""
import json

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")



@pytest.fixture(scope="session")
def rig() -> dict:
    """The nuScenes sensor rig as the package ships it (perception3d/data/nuscenes-rig.json)."""
    from perception3d.data.rig import RIG_PATH

    return json.loads(RIG_PATH.read_text())
