"""Confusion-matrix IoU scoring for segmentation and occupancy, against hand-counted cases."""
import numpy as np
import pytest

from perception3d.eval.confusion import confusion_matrix, iou_per_class, mean_iou
from perception3d.eval.semantic import OccupancyScore, SegmentationScore


def test_confusion_and_iou_by_hand():
    gt = np.array([1, 1, 1, 2, 2, 0])
    pred = np.array([1, 1, 2, 2, 1, 1])
    cm = confusion_matrix(gt, pred, 3)
    assert cm.tolist() == [[0, 1, 0], [0, 2, 1], [0, 1, 1]]
    ious = iou_per_class(cm)
    # class 1: TP 2, FP 2 (gt 0 and gt 2 predicted 1), FN 1 -> 2/5; class 2: TP 1, FP 1, FN 1 -> 1/3
    assert ious[1] == pytest.approx(2 / 5) and ious[2] == pytest.approx(1 / 3)
    assert mean_iou(cm, [1, 2]) == pytest.approx((2 / 5 + 1 / 3) / 2)


def test_segmentation_ignores_points_whose_truth_is_ignore():
    score = SegmentationScore()
    score.add(np.array([0, 0, 4, 4, 11]), np.array([4, 4, 4, 0, 11]))
    per_class = score.per_class_iou()
    assert per_class["car"] == pytest.approx(1 / 2)  # TP 1, FN 1 (predicted ignore), FP from ignore points left out
    assert per_class["driveable_surface"] == 1.0
    assert np.isnan(per_class["bus"])
    assert score.miou() == pytest.approx(0.75)


def test_occupancy_scores_only_observed_voxels_and_treats_predicted_unknown_as_empty():
    gt = np.array([0, 0, 4, 4, 255, 255, 15])
    pred = np.array([0, 4, 4, 255, 4, 0, 15])
    score = OccupancyScore()
    score.add(gt, pred)
    # Observed: gt [0,0,4,4,15], pred occupied [F,T,T,F,T] -> TP 2, FP 1, FN 1 -> IoU 0.5
    assert score.iou() == pytest.approx(0.5)
    assert score.per_class_iou()["car"] == pytest.approx(1 / 3)
    assert score.per_class_iou()["manmade"] == 1.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 labels"):
        confusion_matrix(np.zeros(3), np.zeros(2), 2)


def test_occupancy_mask_leaves_out_voxels_the_sensor_did_not_observe():
    gt = np.array([4, 4, 4, 0, 15, 15])
    pred = np.array([4, 0, 0, 0, 15, 255])
    mask = np.array([True, False, False, True, True, False])  # occluded interiors are not observed
    score = OccupancyScore()
    score.add(gt, pred, mask)
    assert score.iou() == 1.0 and score.per_class_iou()["car"] == 1.0
    unmasked = OccupancyScore()
    unmasked.add(gt, pred)
    assert unmasked.iou() == pytest.approx(2 / 5)
