"""Shared benchmark plumbing: timing, machine description, and writing results beside the date and machine."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def resident_memory_mib() -> float:
    """This process's resident set size now [MiB] (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def machine_info() -> dict[str, str]:
    """CPU model, core count, memory, Python and numpy versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "os": platform.platform(),
    }


def time_call(fn: Callable[[], object], repeat: int = 7, min_time_s: float = 0.05) -> dict[str, float]:
    """Median / min / p95 seconds per call of fn, each sample looping until min_time_s has passed."""
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        loops, start = 0, time.perf_counter()
        while True:
            fn()
            loops += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        samples.append(elapsed / loops)
    samples.sort()
    return {"median_s": statistics.median(samples), "min_s": samples[0],
            "p95_s": samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]}


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, suite: str, title: str, table_md: str, data: dict, notes: str = "") -> Path:
    """Write `<suite>.md` (table with machine and date) and `<suite>.json` into out_dir; returns the .md path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# {title}", "", f"Measured {date} on {info['cpu']} ({info['cores']} cores, {info['memory']}), "
          f"Python {info['python']}, numpy {info['numpy']}.", "", table_md, ""]
    if notes:
        md += [notes, ""]
    md_path = out_dir / f"{suite}.md"
    md_path.write_text("\n".join(md))
    (out_dir / f"{suite}.json").write_text(json.dumps({"date": date, "machine": info, **data}, indent=2) + "\n")
    return md_path
