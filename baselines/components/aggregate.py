"""Patch-feature aggregation shared by PatchCore and SA-PatchCore (PatchCore paper sec. 3.1,
SA-PatchCore paper sec. III-B).

Each backbone layer is first aggregated over a 3x3 neighbourhood (stride 1, padding 1, so the grid
keeps its size); the deeper layers are then upsampled (nearest) to the first layer's grid and all
are concatenated along channels. The official code's ``embedding_concat`` (unfold into s x s
cells, concatenate, fold back) gives every layer-2 cell the layer-3 vector of the cell it falls
into, which is exactly nearest upsampling by the integer factor s followed by a channel concat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

POOL_KERNEL = 3


def local_avg(feature: torch.Tensor, kernel: int = POOL_KERNEL) -> torch.Tensor:
    """3x3 average pooling, stride 1, zero padding counted (``nn.AvgPool2d(3, 1, 1)``)."""
    return F.avg_pool2d(feature, kernel, stride=1, padding=kernel // 2, count_include_pad=True)


def local_max_with_sources(
    feature: torch.Tensor, kernel: int = POOL_KERNEL
) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 max pooling, stride 1 (``nn.MaxPool2d(3, 1, 1)``, the SA branch's pooling) and, per
    output, the flat ``h*w`` index of the input it copied."""
    return F.max_pool2d(feature, kernel, stride=1, padding=kernel // 2, return_indices=True)


def upsample_nearest(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling of ``(B, C, h, w)`` to ``size`` (identity when already that size)."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="nearest")


def concat_layers(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Upsample every map to the first one's grid and concatenate channels: ``(B, sum C, h, w)``."""
    size = tuple(features[0].shape[-2:])
    return torch.cat([upsample_nearest(f, size) for f in features], dim=1)


def to_patches(embedding: torch.Tensor) -> torch.Tensor:
    """``(B, D, h, w)`` -> ``(B*h*w, D)`` patch vectors, row-major per image (official order)."""
    b, d, h, w = embedding.shape
    return embedding.permute(0, 2, 3, 1).reshape(b * h * w, d)
