"""Pairs of boxes (or points) in neighbouring cells of a grid, found by sorting integer keys: the candidates of a
distance test without the all-pairs matrix (bev_nms' touching boxes, static_fusion's matches over sweeps,
standing_memory's matches of views to remembered objects, motion_tracks' matches of detections to tracks), and the
one-to-one matches among such pairs, nearest first."""
from __future__ import annotations

import numpy as np

from .sorted_runs import run_indices


def cell_keys(group: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One integer key per (group, grid cell) and, per box, the key ranges of its 3x3 neighbourhood.

    group (N,) small non-negative integers, cells (N, 2) integer cell indices. key (N,): equal for boxes of one
    group and cell; span (N, 3, 2): for the columns x - 1, x, x + 1 of the box's cell, the least and greatest key
    of the cells y - 1 ... y + 1 of that column in its group, so that the boxes of the 9 cells are those whose key
    lies in one of the 3 inclusive ranges. Cell indices become ranks among the occupied ones (the key stays small
    for any coordinates); an occupied index is an even number 2 rank + 2 and a neighbour index that no box
    occupies an odd one that no key holds.
    """
    packed, neighbours = [], []
    for axis in range(2):
        values, rank = np.unique(cells[:, axis], return_inverse=True)
        adjacent = np.diff(values) == 1  # wrap-around safe: values are sorted and distinct
        even = 2 * rank + 2
        below = even - 1 - np.append(False, adjacent)[rank]
        above = even + 1 + np.append(adjacent, False)[rank]
        packed.append((even, 2 * len(values) + 3))
        neighbours.append((below, above))
    (x, width), (y, height) = packed
    key = (group * width + x) * height + y
    columns = np.stack([neighbours[0][0], x, neighbours[0][1]], axis=1)  # (N, 3)
    first = (group[:, None] * width + columns) * height
    span = np.stack([first + neighbours[1][0][:, None], first + neighbours[1][1][:, None]], axis=2)
    return key, span


def neighbour_cell_pairs(key: np.ndarray, span: np.ndarray, queries: np.ndarray,
                          refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (query, ref) pair of box indices in neighbouring cells of one group (cell_keys' key and span), the
    pairs of a query together and queries in their given order (a box in both sets pairs with itself)."""
    refs = refs[np.argsort(key[refs], kind="stable")]
    lo = np.searchsorted(key[refs], span[queries, :, 0], "left").ravel()
    counts = np.searchsorted(key[refs], span[queries, :, 1], "right").ravel() - lo
    return np.repeat(np.repeat(queries, 3), counts), refs[run_indices(lo, counts)]


def pairs_within(query_xy: np.ndarray, query_group: np.ndarray, ref_xy: np.ndarray, ref_group: np.ndarray,
                 radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, ref) pair of one group whose points (query_xy (Q, 2), ref_xy (R, 2)) lie within `radius` of each
    other, with its distance: indices into the query and the ref points and the distances (P,), the pairs of a query
    together and queries in their order. Candidates are the pairs in neighbouring cells `radius` wide."""
    n_ref = len(ref_xy)
    both = np.concatenate([ref_xy, query_xy])
    key, span = cell_keys(np.concatenate([ref_group, query_group]), np.floor(both / radius).astype(np.int64))
    query, ref = neighbour_cell_pairs(key, span, n_ref + np.arange(len(query_xy)), np.arange(n_ref))
    query -= n_ref
    distance = np.hypot(*(query_xy[query] - ref_xy[ref]).T)
    near = distance <= radius
    return query[near], ref[near], distance[near]


def nearest_first(first: np.ndarray, second: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """One-to-one matches among candidate pairs (first (P,), second (P,): indices into two sets; distance (P,)),
    nearest first: the indices of the chosen pairs, each pair taken unless one of its two was taken by a nearer
    pair (ties: the earlier pair)."""
    taken_first, taken_second = set(), set()
    chosen = []
    for pair in np.argsort(distance, kind="stable"):
        a, b = int(first[pair]), int(second[pair])
        if a not in taken_first and b not in taken_second:
            taken_first.add(a)
            taken_second.add(b)
            chosen.append(pair)
    return np.array(chosen, dtype=np.int64)
