"""TensorFlow "SAME" padding for TF-trained weights (see baselines/weights/PROVENANCE.md).

TF pads a stride-2 3x3 convolution only at the bottom/right for even sizes, where torchvision
pads one pixel on every side; with torchvision's padding the converted weights see shifted grids.
The embedded MobileNetV2 computes it per input (:class:`TFSameConv2d`); EfficientNet-B5 for
CS-Flow keeps it fixed at its native size (:class:`StaticSameConv2d`), as the official code.
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


class StaticSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a fixed (left, right, top, bottom) zero padding: TF SAME padding
    computed once for one input size, as EfficientNet-PyTorch's ``Conv2dStaticSamePadding``
    (the padding CS-Flow's official features use, sized for B5's native 456 px at any input)."""

    def __init__(self, *args: object, pads: tuple[int, int, int, int] = (0, 0, 0, 0),
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pads = tuple(pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pads))


def freeze_same_padding(model: nn.Module, native: int, dynamic: type[nn.Conv2d]) -> int:
    """Replace every ``dynamic`` (input-size dependent TF SAME) convolution of ``model`` by a
    :class:`StaticSameConv2d` padded as TF SAME would pad a ``native`` x ``native`` image.

    Returns the number of convolutions replaced. Call before loading weights (the parameters
    keep their names)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for path, module in model.named_modules():
        if isinstance(module, dynamic):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, path=path: sizes.__setitem__(path, tuple(args[0].shape[-2:]))))
    was_training = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, native, native))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    for path, (h, w) in sizes.items():
        old = model.get_submodule(path)
        top, bottom = same_pads(h, old.kernel_size[0], old.stride[0])  # dilation 1 here
        left, right = same_pads(w, old.kernel_size[1], old.stride[1])
        new = StaticSameConv2d(
            old.in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=0,
            dilation=old.dilation, groups=old.groups, bias=old.bias is not None,
            pads=(left, right, top, bottom),
        )
        parent_path, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent_path) if parent_path else model, child, new)
    return len(sizes)
