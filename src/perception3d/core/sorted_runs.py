"""Runs of equal values in a sorted array: where each starts (the part of np.unique that needs no sort)."""
from __future__ import annotations

import numpy as np


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Indices (R,) int64 of the first element of each run of equal values in sorted_values (N,)."""
    first = np.empty(len(sorted_values), dtype=bool)
    first[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    return np.flatnonzero(first)
