"""Writing a dataroot in the nuScenes layout: tables in `<dataroot>/<version>/*.json`, data files, splits.json.

Byte-for-byte deterministic: tables keep insertion order, and .npz archives get fixed zip timestamps.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .schema import TABLES

OPTIONAL_TABLES = ("lidarseg",)  # written only when they have records


class DatarootWriter:
    """Collects table records and writes data files under one dataroot."""

    def __init__(self, dataroot: str | Path, version: str) -> None:
        self.root = Path(dataroot)
        self.version = version
        self.tables: dict[str, list[dict]] = {name: [] for name in (*TABLES, *OPTIONAL_TABLES)}

    def add(self, table: str, record: dict) -> dict:
        self.tables[table].append(record)
        return record

    def path(self, relative: str) -> Path:
        p = self.root / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.path(relative).write_bytes(data)

    def write_npz(self, relative: str, arrays: dict[str, np.ndarray]) -> None:
        """A compressed .npz (readable by np.load) with fixed member timestamps."""
        with zipfile.ZipFile(self.path(relative), "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, value in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())

    def finish(self, splits: dict[str, list[str]]) -> None:
        """Write every table (and lidarseg.json when it has records) and `<version>/splits.json`."""
        table_dir = self.root / self.version
        table_dir.mkdir(parents=True, exist_ok=True)
        for name, records in self.tables.items():
            if records or name in TABLES:
                (table_dir / f"{name}.json").write_text(json.dumps(records, indent=0))
        (table_dir / "splits.json").write_text(json.dumps(splits, indent=1))
