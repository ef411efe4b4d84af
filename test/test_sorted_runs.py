"""core.sorted_runs against straightforward loops."""
import numpy as np

from perception3d.core.sorted_runs import run_indices, run_starts


def test_run_indices_are_the_runs_aranges_one_after_another():
    rng = np.random.default_rng(5)
    for _ in range(50):
        count = rng.integers(0, 5, size=rng.integers(0, 8))  # empty runs and no runs at all included
        start = rng.integers(0, 100, size=len(count))
        expected = np.concatenate([np.arange(s, s + c) for s, c in zip(start, count)] + [np.zeros(0, dtype=int)])
        assert np.array_equal(run_indices(start, count), expected)


def test_run_starts_are_where_the_values_change():
    values = np.array([1, 1, 2, 5, 5, 5, 7])
    assert run_starts(values).tolist() == [0, 2, 3, 6]
    assert run_starts(np.zeros(0)).tolist() == []
