"""Rendered per-image visibility of the annotated objects (synthetic world v2; not part of the nuScenes schema).

One file per scene, `visibility2d/<version>/<scene token>_visibility2d.npz`: `sample_data_token` (M,) str (camera
sample_data), `instance_token` (T,) str and `visible` (M, T) float16, the share of each object's projected pixels
where it is the nearest surface in that image (`render.CameraRenderer.visible_fractions`). The simulated 2D
detector takes its occlusion from here when the file exists (datasets without it use the box rectangles).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError


def visibility_relpath(version: str, scene_token: str) -> str:
    """Dataroot-relative path of a scene's visibility file."""
    return f"visibility2d/{version}/{scene_token}_visibility2d.npz"


class RenderedVisibility:
    """A scene's rendered visible fractions, looked up by camera sample_data token and instance tokens."""

    def __init__(self, sample_data_tokens: np.ndarray, instance_tokens: np.ndarray, visible: np.ndarray) -> None:
        self._row = {str(t): i for i, t in enumerate(sample_data_tokens)}
        self._col = {str(t): j for j, t in enumerate(instance_tokens)}
        self._visible = visible

    @classmethod
    def load(cls, dataroot: str | Path, version: str, scene_token: str) -> RenderedVisibility | None:
        """The scene's file, or None when the dataroot has none.

        Raises:
            DatasetError: an unreadable or inconsistent file."""
        path = Path(dataroot) / visibility_relpath(version, scene_token)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                sds, inst, visible = z["sample_data_token"], z["instance_token"], z["visible"]
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable visibility file ({exc}); expected an .npz with "
                               "sample_data_token, instance_token, visible") from exc
        if visible.shape != (len(sds), len(inst)):
            raise DatasetError(f"{path}: visible is {visible.shape}, expected ({len(sds)}, {len(inst)})")
        return cls(sds, inst, visible)

    def fractions(self, sample_data_token: str, instance_tokens) -> np.ndarray | None:
        """Visible fractions (len(instance_tokens),) in one image; None when the image or an instance is not in
        the file."""
        row = self._row.get(sample_data_token)
        cols = [self._col.get(str(t)) for t in instance_tokens]
        if row is None or any(c is None for c in cols):
            return None
        return self._visible[row, cols].astype(np.float64)
