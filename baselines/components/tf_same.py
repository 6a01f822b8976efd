"""TensorFlow "SAME" padding for the embedded MobileNetV2 (see baselines/weights/PROVENANCE.md).

TF pads a stride-2 3x3 convolution only at the bottom/right for even sizes, where torchvision
pads one pixel on every side; with torchvision's padding the converted weights see shifted grids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: The five stride-2 3x3 convolutions of torchvision's mobilenet_v2, by module path.
MOBILENET_V2_STRIDED = (
    "features.0.0",
    "features.2.conv.1.0",
    "features.4.conv.1.0",
    "features.7.conv.1.0",
    "features.14.conv.1.0",
)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF SAME padding (before, after) for one spatial axis of length ``size``."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TF SAME padding computed from the input size (same parameter names)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


def use_tf_same_padding(model: nn.Module, paths: tuple[str, ...] = MOBILENET_V2_STRIDED) -> None:
    """Swap the convolutions at ``paths`` for :class:`TFSameConv2d` (before loading weights)."""
    for path in paths:
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        old = parent.get_submodule(child)
        assert isinstance(old, nn.Conv2d) and old.stride == (2, 2), path
        new = TFSameConv2d(
            old.in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=0,
            dilation=old.dilation, groups=old.groups, bias=old.bias is not None,
        )
        setattr(parent, child, new)
