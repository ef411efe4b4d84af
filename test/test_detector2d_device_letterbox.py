"""The torch backend's letterbox on the network's device gives the CPU's batch (core.models.inference); run here on
the CPU, which computes the same tensor operations as a CUDA device."""

import numpy as np
import pytest
import torch

from perception3d.core.models.inference import TorchDetector2D, letterbox_on_device
from perception3d.core.models.preprocess import area_taps, letterbox_batch

CPU = torch.device("cpu")


@pytest.mark.parametrize("image_size,input_size", [((1600, 900), (704, 416)), ((1920, 1080), (704, 416)),
                                                   ((1600, 1200), (640, 640))])
def test_device_letterbox_is_the_cpu_letterbox_bit_for_bit(image_size, input_size):
    width, height = image_size
    rng = np.random.default_rng(width)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]
    images[1][100:300, 200:900] = 128  # flat areas as well as noise
    expected, expected_scales = letterbox_batch(images, *input_size)
    for buffer in (None, torch.empty((2, height, width, 3), dtype=torch.uint8)):
        batch, scales = letterbox_on_device(images, *input_size, CPU, buffer)
        assert np.array_equal(batch.numpy(), expected) and np.array_equal(scales, expected_scales)


@pytest.mark.parametrize("sizes", [[(900, 1600), (900, 1601)],  # two sizes: no one batch upload
                                   [(720, 1280)],  # 0.55 x 720 is not a whole row count: a bilinear step follows
                                   [(832, 1408)]])  # a shrink by 2 on both axes: cv2's integer averaging
def test_device_letterbox_leaves_other_images_to_the_cpu(sizes):
    images = [np.zeros((h, w, 3), np.uint8) for h, w in sizes]
    assert letterbox_on_device(images, 704, 416, CPU) is None


def test_area_taps_weights_are_each_output_pixels_share_of_the_input():
    index, weight = area_taps(7, 3)  # each output pixel covers 7/3 input pixels
    np.testing.assert_allclose(weight.sum(axis=0), 1.0, rtol=1e-6)
    dense = np.zeros((3, 7))
    np.add.at(dense, (np.broadcast_to(np.arange(3), index.shape), index), weight)
    np.testing.assert_allclose(dense * 7 / 3, [[1, 1, 1 / 3, 0, 0, 0, 0], [0, 0, 2 / 3, 1, 2 / 3, 0, 0],
                                               [0, 0, 0, 0, 1 / 3, 1, 1]], rtol=1e-6)


def test_refused_page_locked_memory_leaves_the_images_in_pageable_memory(monkeypatch):
    detector = TorchDetector2D.__new__(TorchDetector2D)  # only its buffer is asked for
    detector._pinned = None  # as __init__ leaves it

    def refuse(*args, pin_memory=False, **kwargs):
        if pin_memory:
            raise RuntimeError("cudaHostAlloc failed: out of memory (memlock limit)")
        return torch.zeros(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", refuse)
    images = [np.zeros((9, 16, 3), np.uint8)] * 2
    assert detector._pinned_buffer(images) is None
    assert detector._pinned_buffer([np.zeros((9, 16, 3), np.uint8), np.zeros((9, 17, 3), np.uint8)]) is None
