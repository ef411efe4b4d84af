"""core.cell_pairs: pairs of boxes in neighbouring grid cells, by sorted integer keys."""
import numpy as np

from perception3d.core.cell_pairs import cell_keys, nearest_first, neighbour_cell_pairs, pairs_within


def test_neighbour_cell_pairs_are_the_pairs_of_the_3x3_cells():
    """The candidate pairs against a direct double loop over Python ints, on sparse and dense cells, several
    groups and the int64 extremes that NaN or huge centres floor to."""
    rng = np.random.default_rng(2)
    extremes = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    for trial in range(40):
        n = int(rng.integers(0, 60))
        group = rng.integers(0, 3, n)
        cells = rng.integers(-3, 3, (n, 2)) * (1 + trial % 3)  # spacing 2 and 3: some neighbours unoccupied
        cells[rng.random((n, 2)) < 0.05] = rng.choice(extremes)
        key, span = cell_keys(group, cells)
        queries, refs = rng.permutation(n)[:n // 2], rng.permutation(n)[:2 * n // 3]
        q, r = neighbour_cell_pairs(key, span, queries, refs)
        expected = {(a, b) for a in queries.tolist() for b in refs.tolist() if group[a] == group[b] and
                    all(abs(int(cells[a, axis]) - int(cells[b, axis])) <= 1 for axis in (0, 1))}
        pairs = list(zip(q.tolist(), r.tolist()))
        assert len(pairs) == len(set(pairs)) and set(pairs) == expected
        runs = [a for j, a in enumerate(q.tolist()) if j == 0 or q[j - 1] != a]
        assert runs == [a for a in queries.tolist() if a in q]  # grouped, in the queries' order


def test_pairs_within_are_the_same_group_pairs_closer_than_the_radius():
    """Against the all-pairs distance matrix, with points on cell borders and exactly at the radius."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        q, r = int(rng.integers(0, 40)), int(rng.integers(0, 40))
        query_xy = np.round(rng.uniform(-4, 4, (q, 2)), 1)  # on a 0.1 m lattice: distances of exactly 1.0 occur
        ref_xy = np.round(rng.uniform(-4, 4, (r, 2)), 1)
        query_group, ref_group = rng.integers(0, 2, q), rng.integers(0, 2, r)
        query, ref, distance = pairs_within(query_xy, query_group, ref_xy, ref_group, 1.0)
        full = np.hypot(*(query_xy[:, None] - ref_xy[None]).transpose(2, 0, 1)).reshape(q, r)
        expected = {(a, b) for a in range(q) for b in range(r)
                    if query_group[a] == ref_group[b] and full[a, b] <= 1.0}
        assert set(zip(query.tolist(), ref.tolist())) == expected and len(query) == len(expected)
        np.testing.assert_allclose(distance, full[query, ref])
        assert np.all(np.diff(query) >= 0)  # the pairs of a query together, queries in their order


def test_nearest_first_takes_each_index_once_and_no_skipped_pair_is_nearer_than_what_blocked_it():
    """Random candidate pairs: the chosen pairs use each first and second index once, every skipped pair shares an
    index with a chosen pair at most as far, and a pair of two free indices is never skipped."""
    rng = np.random.default_rng(4)
    for _ in range(30):
        n = int(rng.integers(0, 40))
        first, second = rng.integers(0, 8, n), rng.integers(0, 6, n)
        distance = rng.integers(0, 5, n).astype(float)  # ties too
        chosen = nearest_first(first, second, distance)
        assert len(set(first[chosen].tolist())) == len(chosen) == len(set(second[chosen].tolist()))
        for pair in set(range(n)) - set(chosen.tolist()):
            blockers = chosen[(first[chosen] == first[pair]) | (second[chosen] == second[pair])]
            assert len(blockers) and distance[blockers].min() <= distance[pair]
