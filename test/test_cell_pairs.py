"""core.cell_pairs: pairs of boxes in neighbouring grid cells, by sorted integer keys."""
import numpy as np

from perception3d.core.cell_pairs import cell_keys, neighbour_cell_pairs


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
