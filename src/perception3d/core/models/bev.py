"""Bird's-eye-view (BEV) building blocks shared by the learned LiDAR models (segmentation, occupancy).

A LiDAR sweep becomes an image: `BevGrid` is a square grid in the base frame (x forward, y left, z up, [m]) whose
cells hold hand-computed statistics of the points above them (`bev_input`, numpy: per height bin the log point
count, then the mean intensity and the lowest and highest point of the cell), so the network itself has no scatter
operation (ONNX exports it exactly and runs it fast) and costs only 2D convolutions: `BevUNet`, a small U-Net with
batch norm, whose output at stride `out_stride` is read back at any point by bilinear sampling (`sample_bev`,
`grid_sample` with the normalised coordinates `BevGrid.normalised`).

Image rows are y, columns x: cell (row, col) covers x in [x_min + col * cell_m, + cell_m), y likewise with row.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ...errors import ConfigError


@dataclass(frozen=True)
class BevGrid:
    """A square BEV grid and the height bins of its input channels, in the base frame [m].

    Attributes:
        half_extent_m: the grid covers x, y in [-half_extent_m, half_extent_m).
        cell_m: cell side; 2 * half_extent_m / cell_m must be a whole multiple of 8 (the U-Net's deepest stride).
        z_min_m, z_max_m, z_bins: the height range split into equal bins (points outside it count in no bin but
            still set the cell's lowest / highest point).
    """

    half_extent_m: float = 51.2
    cell_m: float = 0.4
    z_min_m: float = -3.0
    z_max_m: float = 5.0
    z_bins: int = 8

    def __post_init__(self) -> None:
        cells = 2 * self.half_extent_m / self.cell_m
        if abs(cells - round(cells)) > 1e-6 or round(cells) % 8 or self.z_bins < 1 or self.z_max_m <= self.z_min_m:
            raise ConfigError(f"BEV grid {self}: 2 * half_extent_m / cell_m must be a multiple of 8, z_bins >= 1 "
                              "and z_max_m > z_min_m")

    @property
    def size(self) -> int:
        """Cells per side."""
        return int(round(2 * self.half_extent_m / self.cell_m))

    @property
    def channels(self) -> int:
        """Channels of `bev_input`: z_bins counts + mean intensity + lowest + highest point."""
        return self.z_bins + 3

    def to_dict(self) -> dict:
        return asdict(self)

    def cell_of(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat cell index row * size + col (N,) int64, inside (N,) bool) of base-frame points (N, >=2) [m]."""
        col = np.floor((xy[:, 0] + self.half_extent_m) / self.cell_m).astype(np.int64)
        row = np.floor((xy[:, 1] + self.half_extent_m) / self.cell_m).astype(np.int64)
        inside = (col >= 0) & (col < self.size) & (row >= 0) & (row < self.size)
        return np.where(inside, row * self.size + col, 0), inside

    def normalised(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) float32 grid_sample coordinates (x -> width, y -> height, align_corners=False) of points [m]."""
        return (np.asarray(xy[:, :2], dtype=np.float32) / np.float32(self.half_extent_m)).astype(np.float32)


def bev_input(points_base: np.ndarray, intensity: np.ndarray, grid: BevGrid) -> np.ndarray:
    """(grid.channels, size, size) float32 BEV input image of one sweep.

    Args:
        points_base: (N, 3) points in the base frame [m] (finite; the vehicle's own returns already removed).
        intensity: (N,) return intensity (any scale; nuScenes 0-255 is divided by 255 by the caller or not at all,
            as long as training and inference agree).
    Channels: log(1 + count) per height bin; mean intensity; lowest and highest point height of the cell [m]
    relative to z_min_m (0 in empty cells).
    """
    n = grid.size * grid.size
    image = np.zeros((grid.channels, n), dtype=np.float32)
    cell, inside = grid.cell_of(points_base)
    cell, z, value = cell[inside], points_base[:, 2][inside], np.asarray(intensity, dtype=np.float32)[inside]
    if len(cell) == 0:
        return image.reshape(grid.channels, grid.size, grid.size)
    zbin = np.floor((z - grid.z_min_m) / (grid.z_max_m - grid.z_min_m) * grid.z_bins).astype(np.int64)
    in_bins = (zbin >= 0) & (zbin < grid.z_bins)
    # A sweep fills a few thousand of the grid's cells: log1p (computed in float64, written as float32) and the
    # cell statistics are taken at the filled ones only (empty cells stay 0, log1p(0)).
    counts = np.bincount(zbin[in_bins] * n + cell[in_bins], minlength=grid.z_bins * n).reshape(grid.z_bins, n)
    total = np.bincount(cell, minlength=n)
    occupied = np.flatnonzero(total)
    image[:grid.z_bins, occupied] = np.log1p(counts.take(occupied, axis=1))
    image[grid.z_bins, occupied] = np.bincount(cell, weights=value, minlength=n).take(occupied) / total.take(occupied)
    height = (z - grid.z_min_m).astype(np.float32)
    low = np.full(n, np.inf, dtype=np.float32)
    high = np.full(n, -np.inf, dtype=np.float32)
    np.minimum.at(low, cell, height)
    np.maximum.at(high, cell, height)
    image[grid.z_bins + 1, occupied] = low.take(occupied)
    image[grid.z_bins + 2, occupied] = high.take(occupied)
    return image.reshape(grid.channels, grid.size, grid.size)


def _conv(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class BevUNet(nn.Module):
    """A small 2D U-Net over a BEV image.

    widths[i] is the channel count at stride 2 ** (i + stem_stride_log2); the stem brings the input to widths[0]
    at stride `stem_stride` (1 or 2), each further level halves the resolution (one strided and one plain 3x3
    conv), and the decoder upsamples (bilinear) and fuses each skip with one conv (`fuse_kernel` 3x3, or 1x1 at a
    ninth of the cost) back to stride `stem_stride`.
    Output: (B, widths[0], H / stem_stride, W / stem_stride).
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (32, 64, 96), stem_stride: int = 2,
                 fuse_kernel: int = 3) -> None:
        super().__init__()
        if stem_stride not in (1, 2) or len(widths) < 2 or fuse_kernel not in (1, 3):
            raise ConfigError(f"BevUNet: stem_stride {stem_stride} (1 or 2), at least two widths {widths}, "
                              f"fuse_kernel {fuse_kernel} (1 or 3)")
        self.stem = nn.Sequential(_conv(in_channels, widths[0], stem_stride), _conv(widths[0], widths[0]))
        self.down = nn.ModuleList(nn.Sequential(_conv(a, b, 2), _conv(b, b)) for a, b in zip(widths, widths[1:]))
        self.up = nn.ModuleList(_conv(b + a, a, kernel=fuse_kernel) for a, b in zip(widths, widths[1:]))
        self.register_buffer("input_channels", None, persistent=False)  # the stem's channels (without_dead_inputs)

    def without_dead_inputs(self) -> BevUNet:
        """A copy for inference whose stem reads only the input channels it weights, padded to a multiple of 8
        channels by repeats with zero weights (onnxruntime's blocked convolutions need it). A channel whose stem
        weights are all exactly zero adds nothing (the occupancy network's height bins that no training sweep
        reached decay to zero): the output is the same up to the order of the sums, at a cheaper stem."""
        unet = copy.deepcopy(self)
        conv = unet.stem[0][0]
        weight = conv.weight.detach()
        used = torch.nonzero(weight.abs().amax(dim=(0, 2, 3)) > 0).reshape(-1)
        if len(used) in (0, weight.shape[1]):
            return unet
        width = -(-len(used) // 8) * 8
        pruned = nn.Conv2d(width, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
        with torch.no_grad():
            pruned.weight.zero_()
            pruned.weight[:, :len(used)] = weight[:, used]
        unet.stem[0][0] = pruned.requires_grad_(conv.weight.requires_grad)
        unet.input_channels = torch.cat([used, used[:1].repeat(width - len(used))])
        return unet

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.input_channels is not None:
            image = image.index_select(1, self.input_channels)
        skips = [self.stem(image)]
        for level in self.down:
            skips.append(level(skips[-1]))
        x = skips.pop()
        for fuse in reversed(self.up):
            skip = skips.pop()
            x = functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        return x


def sample_bev(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear features at points: features (B, C, H, W), coords (B, N, 2) from BevGrid.normalised -> (B, N, C).

    Points outside the grid read zeros."""
    sampled = functional.grid_sample(features, coords.unsqueeze(1), mode="bilinear", padding_mode="zeros",
                                     align_corners=False)
    return sampled.squeeze(2).transpose(1, 2)
