"""Running a 2D detector on a batch of camera images: the torch backend and the interface the ONNX backend shares.

`detect(images)` takes full-resolution RGB uint8 images (any sizes), letterboxes them into one batch
(core.models.preprocess), runs the network once, and decodes (core.models.decode) one Detections2D per image with
boxes in that image's full-resolution pixels. On a CUDA device the torch backend letterboxes on the GPU
(`letterbox_on_device`) where that gives the same batch as the CPU's resize.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..classes import DETECTION_CLASSES
from ..detections import Detections2D
from .centernet import CenterNet, CenterNetInference
from .checkpoint import load_checkpoint
from .decode import DEFAULT_DECODE, DecodeParams, decode_detections
from .options import RunnerOptions
from .preprocess import area_shrink_size, area_taps, check_rgb, letterbox_batch, letterbox_scale
from .runner import TorchRunner


class Detector2D:
    """Base of the backends: subclasses set class_names, input_width, input_height and implement `heads`."""

    class_names: tuple[str, ...]
    input_width: int
    input_height: int

    def __init__(self, params: DecodeParams = DEFAULT_DECODE) -> None:
        self.params = params

    def heads(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(heatmap, size, offset) numpy heads of the contract for a (N, 3, H, W) float32 [0, 1] batch."""
        raise NotImplementedError

    def warm_up(self, image_count: int = 6, width: int = 1600, height: int = 900) -> None:
        """Run one batch of black images, so that the first real frame does not pay for allocation and tuning."""
        self.detect([np.zeros((height, width, 3), np.uint8)] * image_count)

    def letterbox(self, images: Sequence[np.ndarray], sources: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """The network's input batch and the per-image scales (core.models.preprocess.letterbox_batch)."""
        return letterbox_batch(images, self.input_width, self.input_height, sources)

    def detect(self, images: Sequence[np.ndarray], frame_ids: Sequence[str] | None = None,
               stamps_ns: Sequence[int] | None = None) -> list[Detections2D]:
        """One Detections2D per RGB uint8 (H, W, 3) image, boxes in its full-resolution pixels; one forward pass.

        frame_ids / stamps_ns (per image) are copied into the results and name the image in errors.
        """
        if len(images) == 0:
            return []
        batch, scales = self.letterbox(images, frame_ids)
        heatmap, size, offset = self.heads(batch)
        sizes = [(image.shape[1], image.shape[0]) for image in images]
        return decode_detections(heatmap, size, offset, scales, sizes, self.class_names, self.input_height,
                                 self.params, frame_ids, stamps_ns)


class TorchDetector2D(Detector2D):
    """The package's CenterNet on CPU or CUDA (core.models.runner: inference mode, eval, fp32 or fp16)."""

    def __init__(self, model: CenterNet, device: str = "auto", params: DecodeParams = DEFAULT_DECODE,
                 options: RunnerOptions | None = None) -> None:
        """options: device, precision and threads (options.device wins over device when given)."""
        super().__init__(params)
        self.runner = TorchRunner(CenterNetInference(model.eval()), options or RunnerOptions(device))
        self.device = self.runner.device
        self.class_names = tuple(model.config.class_names)
        self.input_width, self.input_height = model.config.input_width, model.config.input_height
        self._pinned: torch.Tensor | None = None  # the page-locked image buffer (_pinned_buffer)

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "auto", params: DecodeParams = DEFAULT_DECODE,
                        expected_classes: Sequence[str] | None = DETECTION_CLASSES,
                        options: RunnerOptions | None = None) -> TorchDetector2D:
        """Load a checkpoint (ModelError when it is not one, or is for other classes or another architecture)."""
        model, _ = load_checkpoint(path, expected_classes)
        return cls(model, device, params, options)

    def letterbox(self, images: Sequence[np.ndarray], sources: Sequence[str] | None
                  ) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
        """On CUDA the batch is made on the GPU where `letterbox_on_device` gives the CPU's batch: the images are
        copied up as uint8 (a quarter of the float batch's bytes) through a pinned buffer kept between frames."""
        if self.device.type == "cuda":
            images = [check_rgb(image, sources[i] if sources is not None else f"image {i}")
                      for i, image in enumerate(images)]
            on_device = letterbox_on_device(images, self.input_width, self.input_height, self.device,
                                            self._pinned_buffer(images))
            if on_device is not None:
                return on_device
        return super().letterbox(images, sources)

    def _pinned_buffer(self, images: Sequence[np.ndarray]) -> torch.Tensor | None:
        """A page-locked (N, H, W, 3) uint8 host buffer for images of one size (reused while the size stays); None
        for images of several sizes, or where page-locked memory is refused (a container's memlock limit): the
        images then go up from pageable memory."""
        shape = (len(images), *images[0].shape)
        if any(image.shape != images[0].shape for image in images):
            return None
        if self._pinned is None or tuple(self._pinned.shape) != shape:
            try:
                self._pinned = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            except RuntimeError:
                self._pinned = None
                return None
        return self._pinned

    def heads(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.runner(batch)


def letterbox_on_device(images: Sequence[np.ndarray], input_width: int, input_height: int, device: torch.device,
                        host_buffer: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray] | None:
    """`letterbox_batch` computed on `device`: the same (N, 3, input_height, input_width) float32 batch in [0, 1] (as
    a tensor there) and scales, for checked RGB uint8 images of one size that the area-averaging resize alone fits
    into the input (preprocess.area_shrink_size) by a shrink other than a whole number on both axes; None for
    others, which the CPU letterboxes.

    The resize is cv2.INTER_AREA's as separable taps (preprocess.area_taps) in float32, rounded to uint8 levels
    as cv2 rounds. host_buffer: optional (N, H, W, 3) uint8 tensor (pinned) the images are copied into first."""
    height, width = images[0].shape[:2]
    scale = letterbox_scale(width, height, input_width, input_height)
    resized_size = area_shrink_size(width, height, scale)
    if any(image.shape != images[0].shape for image in images) or resized_size is None:
        return None
    rw, rh = resized_size
    if width % rw == 0 and height % rh == 0:
        return None  # whole-number shrink on both axes: cv2 averages in integers there, rounding halves up
    if host_buffer is None:
        host_buffer = torch.from_numpy(np.stack(images))
    else:
        np.stack(images, out=host_buffer.numpy())
    pixels = host_buffer.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    for axis, (n_in, n_out) in ((3, (width, rw)), (2, (height, rh))):  # along rows first, as cv2
        index, weight = _device_taps(n_in, n_out, device)
        shape = [1, 1, 1, 1]
        shape[axis] = n_out
        resized = None
        for tap in range(len(index)):
            term = pixels.index_select(axis, index[tap]) * weight[tap].view(shape)
            resized = term if resized is None else resized.add_(term)
        pixels = resized
    batch = torch.zeros((len(images), 3, input_height, input_width), dtype=torch.float32, device=device)
    batch[:, :, :rh, :rw] = pixels.round_().clamp_(0.0, 255.0).mul_(np.float32(1.0 / 255.0))
    return batch, np.full(len(images), scale)


@functools.lru_cache(maxsize=8)
def _device_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """preprocess.area_taps on `device`, made once per image size, not every frame."""
    return tuple(torch.from_numpy(a).to(device) for a in area_taps(n_in, n_out))
