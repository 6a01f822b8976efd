"""Patch SVDD's networks, pair samplers, losses and dense scoring (Yi & Yoon, "Patch SVDD:
Patch-level SVDD for Anomaly Detection and Segmentation", ACCV 2020), as the official code
(nuclearboy95/Anomaly-Detection-PatchSVDD-PyTorch, ``codes/``) has them, written here anew.

Networks (``networks.py``): :class:`EncoderDeep` embeds a 32 px patch (eight unpadded 3x3 convs,
LeakyReLU 0.1, tanh, D = 64); :class:`EncoderHier` embeds a 64 px patch from its four 32 px
quadrants (a 2x2 conv over their 2x2 grid, then a 1x1 conv, tanh). :class:`PositionClassifier`
predicts which of 8 neighbours a patch is from ``h1 - h2``; its last layer's weight is normalised
inside ``no_grad`` as in the official ``NormalizedLinear`` (so it never trains: only its bias).

Samplers (``datasets.py``), on 256 x 256 images: :func:`position_pairs` (offset 3K/4 + U[0, K/4)
per axis towards one of 8 neighbours, clipped to the image, RGB shift and pixel noise N(0, 0.02))
and :func:`svdd_pairs` (jitter up to K/32 px, (0, 0) excluded, clipped, no noise).

Dense scoring (``inspection.py``): :func:`dense_embeddings` computes the official crop-by-crop
embeddings fully convolutionally: the 32 px encoder over the whole image once (its [a, b] output
is the patch at (2a, 2b)), the K = 32 / stride 4 grid as every other row and column of it, the
K = 64 / stride 16 head as a 2x2 convolution with dilation 16 sampled every 8: the same numbers
up to float rounding, about 21x fewer FLOPs. :func:`distribute` spreads patch scores over the
pixels they cover and averages (the official ``distribute_score``).
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGE = 256  # the official samplers hard-code a 256 x 256 image
#: the 8 neighbour directions (official ``pos_to_diff``), label -> (row, column) direction
DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


class EncoderDeep(nn.Module):
    """The 32 px encoder: ``(B, 3, 32, 32) -> (B, D, 1, 1)``; fully convolutional."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        widths = (3, 32, 64, 128, 128, 64, 32, 32, dim)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, 2 if i == 0 else 1, 0) for i, (a, b) in enumerate(pairwise(widths))
        )
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.leaky_relu(conv(x), 0.1)
        return torch.tanh(self.convs[-1](x))


class EncoderHier(nn.Module):
    """The 64 px encoder built on :class:`EncoderDeep` (official ``EncoderHier(K=64)``)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.enc = EncoderDeep(dim)
        self.conv1 = nn.Conv2d(dim, 128, 2, 1, 0)
        self.conv2 = nn.Conv2d(128, dim, 1, 1, 0)
        self.dim = dim

    def head(self, grid: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        """The layers after the quadrants: 2x2 conv (``dilation`` apart), LeakyReLU, 1x1, tanh."""
        h = F.conv2d(grid, self.conv1.weight, self.conv1.bias, dilation=dilation)
        return torch.tanh(self.conv2(F.leaky_relu(h, 0.1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 64, 64) -> (B, D, 1, 1)``: the four quadrants through ``enc``, re-tiled."""
        n, half = x.shape[0], x.shape[-1] // 2
        quads = torch.cat([x[..., :half, :half], x[..., :half, half:],
                           x[..., half:, :half], x[..., half:, half:]])
        h1, h2, h3, h4 = self.enc(quads).split(n)
        grid = torch.cat([torch.cat([h1, h2], 3), torch.cat([h3, h4], 3)], 2)  # (B, D, 2, 2)
        return self.head(grid)


class NormalizedLinear(nn.Module):
    """``Linear`` whose weight is divided by its column norms inside ``no_grad`` (official):
    the weight gets no gradient and stays at its (kaiming-uniform) initial value."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features)  # the same initialisation as the official
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            w = self.weight / self.weight.norm(keepdim=True, dim=0)
        return F.linear(x, w, self.bias)


class PositionClassifier(nn.Module):
    """Which of the 8 neighbours ``h2`` is of ``h1``, from ``h1 - h2`` (official)."""

    def __init__(self, dim: int = 64, classes: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 128)
        self.fc2 = nn.Linear(128, 128)
        self.fc3 = NormalizedLinear(128, classes)
        self.dim = dim

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        h = h1.reshape(-1, self.dim) - h2.reshape(-1, self.dim)
        h = F.leaky_relu(self.fc1(h), 0.1)
        return self.fc3(F.leaky_relu(self.fc2(h), 0.1))


# -- pair samplers: (B,) image indices -> patch coordinates, vectorised over the batch ----------
def anchors(rng: np.random.Generator, n: int, k: int, size: int = IMAGE) -> np.ndarray:
    """``(n, 2)`` top-left corners, uniform over the valid positions (``generate_coords``)."""
    return rng.integers(0, size - k + 1, size=(n, 2))


def position_pairs(rng: np.random.Generator, n: int, k: int,
                   size: int = IMAGE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p1, p2, label)``: ``p2`` is ``p1`` moved towards neighbour ``label`` by
    3K/4 + U{0..K/4-1} px per axis, then clipped to the image (``generate_coords_position``)."""
    p1 = anchors(rng, n, k, size)
    label = rng.integers(0, 8, size=n)
    step = rng.integers(0, k // 4, size=(n, 2)) + 3 * k // 4
    p2 = np.clip(p1 + np.asarray(DIRECTIONS)[label] * step, 0, size - k)
    return p1, p2, label


def svdd_pairs(rng: np.random.Generator, n: int, k: int,
               size: int = IMAGE) -> tuple[np.ndarray, np.ndarray]:
    """``(p1, p2)``: ``p2`` is ``p1`` jittered by U{-K/32..K/32} px per axis, (0, 0) excluded
    (redrawn), then clipped (``generate_coords_svdd``)."""
    p1 = anchors(rng, n, k, size)
    j = k // 32
    jitter = rng.integers(-j, j + 1, size=(n, 2))
    while (still := ~jitter.any(axis=1)).any():  # the official loop redraws (0, 0)
        jitter[still] = rng.integers(-j, j + 1, size=(int(still.sum()), 2))
    return p1, np.clip(p1 + jitter, 0, size - k)


def crop(images: torch.Tensor, which: np.ndarray, corners: np.ndarray, k: int) -> torch.Tensor:
    """``(n, C, k, k)`` patches of ``images[which[i]]`` at top-left ``corners[i]`` (official
    ``crop_image_CHW``)."""
    return torch.stack([images[n, :, r : r + k, c : c + k]
                        for n, (r, c) in zip(which.tolist(), corners.tolist())])


def perturb(rng: np.random.Generator, patches: torch.Tensor, scale: float = 0.02) -> torch.Tensor:
    """Official SSL augmentation: an RGB shift N(0, scale) per patch and channel, plus pixel
    noise N(0, scale)."""
    n, c, k, _ = patches.shape
    shift = torch.from_numpy(rng.normal(scale=scale, size=(n, c, 1, 1))).float()
    noise = torch.from_numpy(rng.normal(scale=scale, size=(n, c, k, k))).float()
    return patches + shift.to(patches.device) + noise.to(patches.device)


def svdd_loss(h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """Official SVDD': the mean of the (unsquared) L2 distances between paired embeddings."""
    return (h1 - h2).norm(dim=1).mean()


# -- dense embeddings and maps --------------------------------------------------------------
def dense_embeddings(enc: EncoderHier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of every official test patch: ``(B, 13, 13, D)`` at K = 64 / stride 16 and
    ``(B, 57, 57, D)`` at K = 32 / stride 4, for standardised ``(B, 3, 256, 256)`` images."""
    e = enc.enc(images)  # (B, D, 113, 113): the 32 px patch at (2a, 2b) is e[..., a, b]
    e32 = e[:, :, ::2, ::2]  # stride 4 px = 2 steps of e
    last = e.shape[-1] - 16  # the last 64 px patch's top-left quadrant, in e's steps
    sub = e[:, :, : last + 1 : 8, : last + 1 : 8], e[:, :, : last + 1 : 8, 16::8]
    low = e[:, :, 16::8, : last + 1 : 8], e[:, :, 16::8, 16::8]
    # the 2x2 head on each patch's quadrants (16 steps of e apart), as a dilated conv would
    b, d, i, j = sub[0].shape
    grid = torch.stack([sub[0], sub[1], low[0], low[1]], dim=-1)  # (B, D, i, j, 4)
    grid = grid.permute(0, 2, 3, 1, 4).reshape(b * i * j, d, 2, 2)
    e64 = enc.head(grid).view(b, i, j, d)
    return e64, e32.permute(0, 2, 3, 1)


def _spread(scores: torch.Tensor, k: int, stride: int, size: int) -> torch.Tensor:
    """Sum of the ``(B, I, J)`` scores over the k x k squares they cover (a transposed conv with
    a ones kernel, as two 1-D passes: the kernel is separable), padded to ``size``."""
    ones = torch.ones(1, 1, k, 1, dtype=scores.dtype, device=scores.device)
    out = F.conv_transpose2d(scores[:, None], ones, stride=(stride, 1))
    out = F.conv_transpose2d(out, ones.transpose(2, 3), stride=(1, stride))
    pad = size - out.shape[-1]
    return F.pad(out, (0, pad, 0, pad))[:, 0]


def distribute(scores: torch.Tensor, k: int, stride: int, size: int = IMAGE) -> torch.Tensor:
    """``(B, I, J)`` patch scores -> ``(B, size, size)``: each pixel the mean of the patches
    covering it (official ``distribute_score``; uncovered pixels are 0)."""
    count = _spread(torch.ones_like(scores[:1]), k, stride, size)
    return _spread(scores, k, stride, size) / count.clamp_min(1)


def step_flops(batch: int, dim: int = 64) -> float:
    """Forward + backward FLOPs of one official training step of ``batch`` items (each item:
    one position pair and one SVDD pair at K = 64 and at K = 32), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        enc = EncoderHier(dim)
        cls = PositionClassifier(dim)
        x64 = torch.zeros(4 * batch, 3, 64, 64)
        x32 = torch.zeros(4 * batch, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        h64, h32 = enc(x64), enc.enc(x32)
        loss = cls(h64[:batch], h64[batch : 2 * batch]).sum() + h32.sum() + h64.sum()
        loss.backward()
    return float(counter.get_total_flops())


def official_steps(n_images: int, epochs: int, repeat: int, batch: int) -> int:
    """The official schedule: epoch 0 does no training, each other epoch is
    ``ceil(n_images * repeat / batch)`` steps (``main_train.py``)."""
    return max(epochs - 1, 0) * math.ceil(n_images * repeat / batch)
