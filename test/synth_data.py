"""One tiny synthetic dataroot (and its converted bags) shared by the data tests of a pytest process."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

VERSION = "v1.0-synth"
TINY = {"scenes": 2, "seconds": 2.5, "seed": 3, "render_scale": 0.1}


@functools.cache
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="p3d-data-test-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def tiny_dataroot() -> Path:
    """2 scenes of 2.5 s (5 keyframes each), cameras ray cast at 1/10 resolution to keep it fast."""
    from perception3d.data.synth import SynthConfig, synthesize

    return synthesize(_workdir() / "dataroot", SynthConfig(**TINY), progress=False)


@functools.cache
def tiny_nusc():
    from perception3d.data.nuscenes_io import open_nuscenes

    return open_nuscenes(tiny_dataroot(), VERSION)


@functools.cache
def tiny_bags() -> tuple[Path, ...]:
    """The tiny dataroot converted with the 'good' simulated 2D detector."""
    from perception3d.data.convert import convert
    from perception3d.data.simulated_2d import PRESETS

    return tuple(convert(tiny_dataroot(), VERSION, _workdir() / "bags", simulate_2d=PRESETS["good"],
                         progress=False))


def scratch(name: str) -> Path:
    path = _workdir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
