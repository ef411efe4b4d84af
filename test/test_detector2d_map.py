"""AP@0.5 (eval.map2d) against hand-computed cases."""
import numpy as np
import pytest

from perception3d.core.detections import Detections2D
from perception3d.eval.map2d import AveragePrecision2D, average_precision, match_detections

GT = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)


def _dets(boxes, scores, name="car"):
    return Detections2D(np.array(boxes, float), [name] * len(boxes), scores)


def test_two_gt_three_detections_tp_fp_tp():
    # ranks: 0.9 hits GT0, 0.8 misses, 0.7 hits GT1 -> precision 1 up to recall 0.5, then 2/3 up to recall 1.
    ap = AveragePrecision2D(["car"])
    ap.add(_dets([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]], [0.9, 0.8, 0.7]), _dets(GT, [1, 1]))
    # 101 recall points: 51 of them (0 .. 0.5) at precision 1, 50 (0.51 .. 1) at 2/3
    assert ap.per_class()["car"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_duplicate_detection_is_false_positive():
    # both detections overlap GT0 only; the second is a duplicate -> FP; GT1 never found (recall stops at 0.5)
    ap = AveragePrecision2D(["car"])
    ap.add(_dets([[0, 0, 10, 10], [0, 0, 10, 9], [100, 0, 110, 10]], [0.9, 0.8, 0.1]), _dets(GT, [1, 1]))
    assert ap.per_class()["car"] == pytest.approx(51 / 101)


def test_low_iou_and_wrong_class_do_not_count():
    ap = AveragePrecision2D(["car", "pedestrian"])
    # IoU of [0,0,10,10] with [5,0,15,10] is 50/150 = 1/3 < 0.5; the pedestrian box sits exactly on GT1
    ap.add(Detections2D(np.array([[5, 0, 15, 10], [20, 0, 30, 10]], float), ["car", "pedestrian"], [0.9, 0.8]),
           _dets(GT, [1, 1]))
    result = ap.per_class()
    assert result["car"] == 0.0
    assert np.isnan(result["pedestrian"])  # no pedestrian ground truth
    assert ap.mean() == 0.0  # the NaN class is left out


def test_ranking_across_images():
    # image A: det 0.6 TP; image B: det 0.9 FP, det 0.3 TP -> ranked FP, TP, TP: precision 0, 1/2, 2/3
    ap = AveragePrecision2D(["car"])
    ap.add(_dets([[0, 0, 10, 10]], [0.6]), _dets(GT[:1], [1]))
    ap.add(_dets([[40, 40, 50, 50], [20, 0, 30, 10]], [0.9, 0.3]), _dets(GT[1:], [1]))
    # envelope: recall <= 0.5 -> max(1/2, 2/3) = 2/3; recall (0.5, 1] -> 2/3
    assert ap.per_class()["car"] == pytest.approx(2 / 3)


def test_match_prefers_best_iou_unmatched_gt():
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], float)
    det = np.array([[2, 0, 12, 10], [0, 0, 10, 10]], float)
    # det0 matches gt1 (IoU 1), det1 then takes gt0 (IoU 1) rather than losing to the already-matched gt1
    assert match_detections(det, np.array([0.9, 0.8]), gt).tolist() == [True, True]


def test_perfect_and_empty():
    assert average_precision(np.array([0.5, 0.4]), np.array([True, True]), 2) == pytest.approx(1.0)
    assert average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    assert np.isnan(average_precision(np.zeros(0), np.zeros(0, bool), 0))


def test_backend_agreement_counts_by_hand():
    from perception3d.eval.backend_agreement import compare_detections

    a = Detections2D(np.array([[0, 0, 100, 100], [200, 0, 300, 100]], float), ["car", "car"], [0.9, 0.5])
    same = Detections2D(np.array([[200, 0, 300, 100], [0, 0, 100, 100.5]], float), ["car", "car"], [0.5, 0.9])
    shifted = Detections2D(np.array([[0, 0, 100, 100], [202, 0, 302, 100]], float), ["car", "car"], [0.9, 0.5])
    relabelled = Detections2D(a.boxes_xyxy, ["car", "truck"], [0.9, 0.5])
    ok = compare_detections([a], [same])
    assert ok.all_agree and ok.matched == 2 and ok.max_score_difference == 0.0
    # a 2 px shift of a 100 px box is IoU 98/102 < 0.99; a relabelled box never matches
    for other in (shifted, relabelled):
        result = compare_detections([a, a], [a, other])
        assert (result.matched, result.images_agreeing, result.all_agree) == (3, 1, False)
