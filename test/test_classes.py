"""Class tables (core.classes): the size priors looked up per box."""
import numpy as np
import pytest

from perception3d.core.classes import SIZE_PRIOR_WLH, size_priors


def test_size_priors_are_each_box_s_class_mean_and_std_in_order():
    classes = ["pedestrian", "car", "barrier", "car"]
    priors = size_priors(np.array(classes, dtype=object))
    assert priors.shape == (4, 2, 3)
    for row, name in zip(priors, classes):
        assert row.tolist() == [list(SIZE_PRIOR_WLH[name][0]), list(SIZE_PRIOR_WLH[name][1])]
    assert size_priors([]).shape == (0, 2, 3)
    with pytest.raises(KeyError):
        size_priors(["car", "traffic_light"])
