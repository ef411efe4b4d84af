"""Runs of an array: where the runs of equal values of a sorted array start (the part of np.unique that needs no
sort), and the indices of given runs one after another (groups stored as runs of a concatenation)."""
from __future__ import annotations

import numpy as np


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Indices (R,) int64 of the first element of each run of equal values in sorted_values (N,)."""
    first = np.empty(len(sorted_values), dtype=bool)
    first[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    return np.flatnonzero(first)


def run_indices(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The indices (sum(count),) of the runs start[g], ..., start[g] + count[g] - 1 (count >= 0), run after run:
    np.concatenate of their aranges, without a Python loop."""
    count = np.asarray(count)
    first = np.cumsum(count) - count  # each run's first position in the result
    return np.repeat(np.asarray(start) - first, count) + np.arange(int(count.sum()))
