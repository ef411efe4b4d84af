"""Small layer builders shared by the learned models."""
from __future__ import annotations

from torch import nn


def mlp(*widths: int, activate_last: bool = True) -> nn.Sequential:
    """Linear layers widths[0] -> widths[1] -> ..., each followed by a ReLU (the last one only with activate_last:
    False gives raw outputs, e.g. logits)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*(layers if activate_last else layers[:-1]))
