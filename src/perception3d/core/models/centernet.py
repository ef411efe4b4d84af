"""CenterNet-style 2D detector in plain torch: residual backbone, FPN-like neck at stride 4, three heads.

Network input: RGB float32 in [0, 1], shape (N, 3, input_height, input_width), letterboxed from the camera image
as `core.models.preprocess` describes (x_input = scale * x_full, image at the top-left, zero padding below/right).
Input mean/std normalisation happens inside the network, so exported models take plain [0, 1] RGB.

Heads at stride 4 (output grid (input_height / 4, input_width / 4)):
- heatmap: one channel per class, logits (sigmoid gives the probability that an object centre falls in the cell);
  bias initialised to -log((1 - 0.1) / 0.1) so training starts at p = 0.1 everywhere (focal-loss init).
- size: box (width, height) in grid cells.
- offset: sub-cell position of the centre, (x, y) in grid cells (target in [0, 1)).

Context blocks (`context_dilations`): dilated residual blocks after the stride-32 stage widen the receptive field
(about 210 input px without them, less than a near car cut by the image border spans at 704x416: the network then
cannot see where the box's centre is, and scores such objects low). Their last batch norm starts at zero, so a
block starts as the identity and a model can be widened from a checkpoint without them (`--init`).

Why stride 4: at the CPU default input (704x416 from 1600x900, scale 0.44) a pedestrian 40 px wide in the full
image is 17 px wide in the input, only about 2 cells at stride 8; stride 4 keeps small and adjacent objects
(traffic cones, pedestrians in groups) in separate cells, at the cost of a 4x larger heatmap.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional

from ...errors import ConfigError
from ..classes import DETECTION_CLASSES

# Deepest backbone stride; the input size must be divisible by it.
BACKBONE_STRIDE = 32
OUTPUT_STRIDE = 4
# Initial foreground probability of the heatmap head (CenterNet / RetinaNet prior).
HEATMAP_PRIOR = 0.1
# Per-channel RGB mean and std used to normalise [0, 1] input (ImageNet statistics).
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CenterNetConfig:
    """Architecture of a CenterNet detector; stored in every checkpoint and checked at load.

    Attributes:
        class_names: heatmap channel order (default: the 10 nuScenes detection classes).
        width: channels of the stride-4 backbone stage; later stages have 2x, 4x, 8x.
        blocks_per_stage: residual blocks per backbone stage.
        neck_channels: channels of the FPN-like neck.
        head_channels: hidden channels of each head.
        input_width, input_height: network input size [px], multiples of 32 (704x416 holds 1600x900 at 0.44).
        context_dilations: one dilated residual block per entry after the stride-32 stage (empty: none).
    """

    class_names: tuple[str, ...] = DETECTION_CLASSES
    width: int = 32
    blocks_per_stage: int = 1
    neck_channels: int = 64
    head_channels: int = 64
    input_width: int = 704
    input_height: int = 416
    output_stride: int = field(default=OUTPUT_STRIDE)
    context_dilations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "context_dilations", tuple(int(d) for d in self.context_dilations))
        if self.input_width % BACKBONE_STRIDE or self.input_height % BACKBONE_STRIDE:
            raise ConfigError(f"detector input size {self.input_width}x{self.input_height} must be a multiple of "
                              f"{BACKBONE_STRIDE} in both dimensions")
        if self.output_stride != OUTPUT_STRIDE:
            raise ConfigError(f"output_stride {self.output_stride}: only {OUTPUT_STRIDE} is implemented")
        if min(self.width, self.blocks_per_stage, self.neck_channels, self.head_channels, *self.context_dilations) < 1 \
                or not self.class_names:
            raise ConfigError(f"detector config {self}: widths, block count and classes must be positive/non-empty")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["context_dilations"] = list(self.context_dilations)
        return d

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the head grids."""
        return self.input_height // self.output_stride, self.input_width // self.output_stride


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers (dilated by `dilation`) with an identity (or strided 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_out, stride, dilation)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, dilation, dilation, bias=False),
                                   nn.BatchNorm2d(c_out))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Backbone(nn.Module):
    """Stem to stride 4, four residual stages at strides 4, 8, 16, 32 (widths w, 2w, 4w, 8w), then the dilated context
    blocks at stride 32 (each the identity at initialisation)."""

    def __init__(self, width: int, blocks_per_stage: int, context_dilations: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(3, width, 2), _conv_bn_relu(width, width, 2))
        self.channels = [width * 2**i for i in range(4)]
        stages, c_in = [], width
        for i, c_out in enumerate(self.channels):
            blocks = [ResidualBlock(c_in, c_out, 1 if i == 0 else 2)]
            blocks += [ResidualBlock(c_out, c_out) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.context = nn.Sequential(*(ResidualBlock(c_in, c_in, dilation=d) for d in context_dilations))
        for block in self.context:
            nn.init.zeros_(block.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        features[-1] = self.context(features[-1])
        return features


class Neck(nn.Module):
    """FPN-like top-down path: 1x1 laterals, nearest x2 upsampling and addition down to stride 4, then a 3x3 conv."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = _conv_bn_relu(channels, channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.laterals[-1](features[-1])
        for lateral, feature in zip(reversed(self.laterals[:-1]), reversed(features[:-1])):
            x = lateral(feature) + functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.smooth(x)


def _head(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c_out, 1))


class CenterNet(nn.Module):
    """The detector; forward returns raw head outputs (heatmap logits, size and offset in grid cells)."""

    def __init__(self, config: CenterNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or CenterNetConfig()
        c = self.config
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = Backbone(c.width, c.blocks_per_stage, c.context_dilations)
        self.neck = Neck(self.backbone.channels, c.neck_channels)
        self.heatmap = _head(c.neck_channels, c.head_channels, len(c.class_names))
        self.size = _head(c.neck_channels, c.head_channels, 2)
        self.offset = _head(c.neck_channels, c.head_channels, 2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1.0 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: (N, 3, H, W) RGB in [0, 1] -> {'heatmap': (N, C, H/4, W/4) logits, 'size', 'offset': (N, 2, ...)}."""
        x = self.neck(self.backbone((images - self.rgb_mean) / self.rgb_std))
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


class CenterNetInference(nn.Module):
    """The model as the ONNX contract (core.models.onnx_backend) sees it: heatmap probabilities, size in input
    pixels, offset in grid cells. Used for the torch backend too, so both backends feed decode the same heads."""

    def __init__(self, model: CenterNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return torch.sigmoid(out["heatmap"]), out["size"] * float(self.model.config.output_stride), out["offset"]
