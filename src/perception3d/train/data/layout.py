"""The on-disk layout of a sweep cache: one directory of `.npy` arrays per scene, and `manifest.json`.

```
CACHE/manifest.json                 {format, dataroot, version, split, options, cameras, classes, attributes,
                                     scenes: {name: {key, samples, stats}}}  (sorted keys, no clock times)
CACHE/scenes/<scene name>/<field>.npy   the scene's arrays (SCENE_FIELDS), memory-mapped when read
```
A scene's `key` is a hash of the format version, the resolved dataroot, the version, the build options, the sizes
and mtimes of the table files and of every source file the scene was built from: a rebuild re-does exactly the
scenes whose key changed. Arrays are written with `np.save` (deterministic bytes), a scene into `<name>.tmp` and
then renamed, and the manifest after every scene, so an interrupted build keeps every finished scene.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...errors import DatasetError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCENES_DIR = "scenes"


def file_stamp(path: Path) -> list:
    """[path, size, mtime_ns] of a source file (what a scene key records of it)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise DatasetError(f"{path}: source file is missing: {exc}") from exc
    return [str(path), stat.st_size, stat.st_mtime_ns]


def scene_key(common: dict, sources: Iterable[Path]) -> str:
    """sha256 of the cache-wide inputs (`common`: format, dataroot, version, options, tables) and the stamps of a
    scene's source files."""
    payload = json.dumps({"common": common, "files": sorted(file_stamp(p) for p in set(sources))}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def read_manifest(cache: Path) -> dict | None:
    """The manifest of a cache directory, or None when there is none (or it is unreadable: rebuilt then)."""
    try:
        return json.loads((cache / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(cache: Path, manifest: dict) -> None:
    """Write the manifest atomically (sorted keys, so equal contents give equal bytes)."""
    tmp = cache / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, cache / MANIFEST)


def scene_dir(cache: Path, name: str) -> Path:
    return cache / SCENES_DIR / name


def write_scene(cache: Path, name: str, arrays: dict) -> None:
    """Write a scene's arrays (numpy arrays, or objects with `write_npy(path)`) into its directory, replacing an
    older version only once all are written."""
    final = scene_dir(cache, name)
    tmp = final.with_name(f"{name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for field, array in arrays.items():
        if hasattr(array, "write_npy"):  # written in pieces (images.PixelStack)
            array.write_npy(tmp / f"{field}.npy")
        else:
            np.save(tmp / f"{field}.npy", np.ascontiguousarray(array), allow_pickle=False)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def remove_scene(cache: Path, name: str) -> None:
    shutil.rmtree(scene_dir(cache, name), ignore_errors=True)


def open_scene(cache: Path, name: str) -> dict[str, np.ndarray]:
    """A scene's arrays, memory-mapped read-only.

    Raises:
        DatasetError: the scene directory is missing or holds no arrays (rebuild the cache).
    """
    folder = scene_dir(cache, name)
    files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"{folder}: scene listed in {cache / MANIFEST} has no arrays; run `perception3d dataset "
                           "build` again")
    return {f.stem: np.load(f, mmap_mode="r", allow_pickle=False) for f in files}
