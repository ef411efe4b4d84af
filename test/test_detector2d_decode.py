"""Targets, decoding, NMS, letterboxing and augmentation of the 2D detector, against independent references."""

import numpy as np
import pytest
from scipy import ndimage

from perception3d.core.boxes import iou_2d
from perception3d.core.classes import DETECTION_CLASSES
from perception3d.core.models.decode import (
    DecodeParams,
    decode_detections,
    heatmap_peaks,
    nms_per_class,
    top_peaks,
)
from perception3d.core.models.preprocess import letterbox_batch
from perception3d.train.augment import AugmentConfig, Similarity, augment_sample, transform_boxes
from perception3d.train.targets import centernet_targets, gaussian_radius

STRIDE = 4


def _box_iou(a, b):
    """IoU of two boxes, written out independently of core.boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms_reference(boxes, scores, classes, threshold):
    kept = []
    for i in sorted(range(len(boxes)), key=lambda k: (-scores[k], k)):
        if all(classes[j] != classes[i] or _box_iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_nms_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.hstack([xy, xy + rng.uniform(5, 40, (n, 2))])
    scores = rng.choice(np.linspace(0.1, 1, 10), n)  # ties included
    classes = rng.integers(0, 3, n)
    kept = nms_per_class(boxes, scores, classes, 0.5)
    assert kept.tolist() == _nms_reference(boxes, scores, classes, 0.5)


def test_peaks_match_scipy_maximum_filter():
    heat = np.random.default_rng(1).random((2, 3, 17, 23)).astype(np.float32)
    reference = heat == ndimage.maximum_filter(heat, size=(1, 1, 3, 3), mode="constant", cval=-np.inf)
    assert np.array_equal(heatmap_peaks(heat), reference)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.97, 1.5])
def test_top_peaks_are_the_best_local_maxima_at_or_above_the_threshold(threshold):
    """Sparse (few cells over the threshold: neighbour test) and dense (the whole heatmap filtered) alike; values on a
    coarse grid, so that plateaus and equal scores occur; peaks on the border count."""
    rng = np.random.default_rng(int(threshold * 100))
    heat = rng.choice(np.linspace(0.0, 1.0, 41), (3, 11, 13)).astype(np.float32)
    reference = heat == ndimage.maximum_filter(heat, size=(1, 3, 3), mode="constant", cval=-np.inf)
    cells = [i for i in np.flatnonzero(reference) if heat.flat[i] >= threshold]
    ranked = sorted(cells, key=lambda i: (-heat.flat[i], i))
    for top_k in (1, 7, 1000):
        assert top_peaks(heat, threshold, top_k).tolist() == ranked[:top_k]


def test_targets_peak_at_box_centres():
    boxes = np.array([[8, 8, 40, 32], [70, 10, 90, 60], [101, 3, 126, 20]], float)  # input pixels, 128x64 input
    t = centernet_targets(boxes, np.array([0, 5, 0]), 10, 16, 32, STRIDE)
    assert t["mask"].sum() == 3 and t["heatmap"].max() == 1.0
    for box, cls in zip(boxes, [0, 5, 0]):
        cx, cy = (box[0] + box[2]) / 2 / STRIDE, (box[1] + box[3]) / 2 / STRIDE
        ix, iy = int(cx), int(cy)
        assert t["heatmap"][cls, iy, ix] == 1.0
        assert np.allclose(t["size"][:, iy, ix], [(box[2] - box[0]) / STRIDE, (box[3] - box[1]) / STRIDE])
        assert np.allclose(t["offset"][:, iy, ix], [cx - ix, cy - iy])
    # the gaussian decays away from a centre and other classes' channels stay empty
    assert 0 < t["heatmap"][0, 5, 7] < 1.0 and t["heatmap"][1:5].max() == 0.0


def test_gaussian_radius_formula_by_hand():
    # h = w = 10, overlap 0.7: case 3 gives (-28 + sqrt(784 + 8.4 * 100 * 1.2)) / 2 ... written out:
    a3, b3, c3 = 4 * 0.7, -2 * 0.7 * 20, (0.7 - 1) * 100
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    r1 = (20 + np.sqrt(400 - 4 * 100 * 0.3 / 1.7)) / 2
    r2 = (40 + np.sqrt(1600 - 16 * 0.3 * 100)) / 2
    assert gaussian_radius(10, 10) == pytest.approx(min(r1, r2, r3))
    assert gaussian_radius(10, 10) == pytest.approx(r3)  # the binding case for square boxes


def test_encode_decode_round_trip_in_full_resolution():
    """Targets used as predictions decode back to the full-resolution boxes (through the 0.5 letterbox)."""
    rng = np.random.default_rng(3)
    full = []
    for k in range(4):  # separated boxes in a 512x256 image
        w, h = rng.uniform(20, 100), rng.uniform(20, 200)
        x0, y0 = k * 128 + rng.uniform(0, 120 - w), rng.uniform(0, 250 - h)
        full.append([x0, y0, x0 + w, y0 + h])
    full = np.array(full)
    classes = np.array([0, 5, 8, 0])
    scale = 0.5  # 512x256 into a 256x128 input
    t = centernet_targets(full * scale, classes, 10, 32, 64, STRIDE)
    dets = decode_detections(t["heatmap"][None], t["size"][None] * STRIDE, t["offset"][None], np.array([scale]),
                             [(512, 256)], DETECTION_CLASSES, 128, DecodeParams(score_threshold=0.99))[0]
    assert len(dets) == 4
    iou = iou_2d(full, dets.boxes_xyxy)
    best = iou.argmax(1)
    assert iou.max(1).min() > 0.95
    assert list(dets.class_ids[best]) == [DETECTION_CLASSES[c] for c in classes]


def _drawn_extent(image, colour):
    """Pixel-edge bounding box of the pixels close to a colour."""
    ys, xs = np.nonzero(np.all(np.abs(image.astype(int) - colour) < 30, axis=2))
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def test_letterbox_maps_pixels_like_boxes():
    image = np.zeros((900, 1600, 3), np.uint8)
    image[200:500, 400:1000] = (255, 0, 0)
    batch, scales = letterbox_batch([image], 704, 416)
    assert batch.shape == (1, 3, 416, 704) and scales[0] == pytest.approx(0.44)
    net = (batch[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    assert np.allclose(_drawn_extent(net, (255, 0, 0)), np.array([400, 200, 1000, 500]) * 0.44, atol=1.0)
    assert net[397:].max() == 0  # padding below the 396 image rows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("crop", [None, (96, 64)])
def test_augmentation_moves_boxes_with_pixels(seed, crop):
    rng = np.random.default_rng(seed)
    image = np.full((256, 512, 3), 128, np.uint8)
    box = np.array([[150.0, 60.0, 330.0, 200.0]])
    image[60:200, 150:330] = (250, 20, 20)
    config = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, mirror_probability=0.5,
                           min_visible_fraction=0.0)
    out, boxes, kept = augment_sample(image, box, 128, 64, rng, config, crop)
    assert out.shape == (64, crop[0] if crop else 128, 3)
    if kept.all():
        assert np.allclose(_drawn_extent(out, (250, 20, 20)), boxes[0], atol=1.0)
    else:  # a crop may cut the box away entirely (less than 2 px left)
        assert crop is not None and np.sum(np.all(out == (250, 20, 20), axis=2)) < 2 * 64


def test_mirror_is_an_involution_on_boxes():
    boxes = np.array([[10, 5, 30, 25], [0, 0, 128, 64]], float)
    mirror = Similarity(1.0, (128.0, 0.0), True)
    once = transform_boxes(boxes, mirror)
    assert np.allclose(once[0], [98, 5, 118, 25])
    assert np.allclose(transform_boxes(once, mirror), boxes)


def test_colour_jitter_keeps_geometry_and_changes_colour():
    rng = np.random.default_rng(0)
    image = np.full((64, 128, 3), 100, np.uint8)
    image[:, :64] = (200, 50, 50)
    changed = [augment_sample(image, np.zeros((0, 4)), 128, 64, rng,
                              AugmentConfig(mirror_probability=0.0, scale_range=(1.0, 1.0), shift_fraction=0.0))[0]
               for _ in range(3)]
    assert any(np.abs(c.astype(int) - image).max() > 5 for c in changed)
    for c in changed:  # the left half still differs from the right half everywhere (no geometric change)
        assert (np.abs(c[:, :62].astype(int) - c[:, 66:].astype(int)).sum(2) > 0).all()


def test_nms_keeps_separate_classes():
    boxes = np.array([[0, 0, 10, 10]] * 2, float)
    assert sorted(nms_per_class(boxes, np.array([0.9, 0.8]), np.array([0, 1]), 0.5).tolist()) == [0, 1]
    assert nms_per_class(boxes, np.array([0.9, 0.8]), np.array([1, 1]), 0.5).tolist() == [0]


def test_peaks_of_plateau_keep_all_equal_cells():
    heat = np.zeros((1, 1, 5, 5))
    heat[0, 0, 2, 2] = heat[0, 0, 2, 3] = 0.8
    peaks = heatmap_peaks(heat)
    assert {tuple(p) for p in np.argwhere(peaks[0, 0] & (heat[0, 0] > 0))} == {(2, 2), (2, 3)}
