"""CS-Flow's cross-scale normalizing flow (Rudolph et al., WACV 2022), as the official code
(marco-rudolph/cs-flow, ``model.py`` and ``freia_funcs.py``) builds it, written here by hand
(FrEIA is unmaintained) with its inverse, which the official code never needed.

Three feature maps (one per input scale, finest first) pass through ``blocks`` steps of

1. a fixed random channel permutation per scale (``np.random.seed(block)``), log-det 0;
2. a parallel affine coupling: each scale's channels are split in halves ``x1 | x2``;
   ``(s, t) = s2(x2)`` (all three scales jointly, through cross-scale convolutions) gives
   ``y1 = e(s) * x1 + t``; then ``(s, t) = s1(y1)`` gives ``y2 = e(s) * x2 + t``; the soft clamp
   ``e(s) = exp(clamp * 0.636 * atan(s / clamp))`` bounds the log-scale at about +-clamp; the
   outputs are clamped to +-1e6; the log-det per scale is the sum of ``log e(s)`` over C, H, W,
   per sample.

The subnet (``CrossConvolutions``): per scale a k x k conv to ``hidden`` channels, LeakyReLU(0.1),
a k x k conv to the output; the hidden activations also feed the neighbouring scales (bilinear x2
upsampling + conv towards the finer scale, stride-2 conv towards the coarser); each scale's
output is multiplied by a learnable gamma that starts at 0, so the flow starts as the identity.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Maps = list[torch.Tensor]  # one (B, C, h_s, w_s) tensor per scale, finest first
CLAMP_SLOPE = 0.636  # the official constant (about 2 / pi): atan's range mapped to +-clamp


def log_e(s: torch.Tensor, clamp: float) -> torch.Tensor:
    """Log of the official soft-clamped scale: ``clamp * 0.636 * atan(s / clamp)``."""
    return clamp * CLAMP_SLOPE * torch.atan(s / clamp) if clamp > 0 else s


class CrossConvolutions(nn.Module):
    """The subnet of one coupling: three scales in, ``(s, t)`` for each scale out."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, kernel: int,
                 leaky_slope: float = 0.1) -> None:
        super().__init__()
        pad = kernel // 2
        conv = lambda cin, cout, stride=1: nn.Conv2d(cin, cout, kernel, stride, pad)
        self.conv_in = nn.ModuleList(conv(in_channels, hidden) for _ in range(3))
        self.conv_out = nn.ModuleList(conv(hidden, out_channels) for _ in range(3))
        self.up_10 = conv(hidden, out_channels)  # scale 1 -> scale 0 (after x2 upsampling)
        self.up_21 = conv(hidden, out_channels)  # scale 2 -> scale 1
        self.down_01 = conv(hidden, out_channels, 2)  # scale 0 -> scale 1 (stride 2)
        self.down_12 = conv(hidden, out_channels, 2)  # scale 1 -> scale 2
        self.gamma = nn.Parameter(torch.zeros(3))
        self.leaky_slope = leaky_slope

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> Maps:
        act = [F.leaky_relu(c(x), self.leaky_slope) for c, x in zip(self.conv_in, (x0, x1, x2))]
        up = lambda h: F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        out = [c(h) for c, h in zip(self.conv_out, act)]
        out[0] = out[0] + self.up_10(up(act[1]))
        out[1] = out[1] + self.down_01(act[0]) + self.up_21(up(act[2]))
        out[2] = out[2] + self.down_12(act[1])
        return [o * g for o, g in zip(out, self.gamma)]


def _as(maps: Maps, like: torch.Tensor) -> Maps:
    """A subnet's outputs in the dtype of the coupling's input (a no-op unless bf16 autocast
    ran its convolutions): the clamp, exp, affine step and log-det keep the input's precision."""
    return [m.to(like.dtype) for m in maps]


class ParallelCoupling(nn.Module):
    """One parallel affine coupling over the three scales (official ``parallel_glow_coupling_layer``)."""

    def __init__(self, channels: int, hidden: int, kernel: int, clamp: float) -> None:
        super().__init__()
        self.len1, self.len2 = channels // 2, channels - channels // 2
        self.clamp = clamp
        self.s1 = CrossConvolutions(self.len1, 2 * self.len2, hidden, kernel)  # from y1: x2's (s, t)
        self.s2 = CrossConvolutions(self.len2, 2 * self.len1, hidden, kernel)  # from x2: x1's (s, t)

    def forward(self, xs: Maps) -> tuple[Maps, torch.Tensor]:
        """``(ys, log_det)`` with ``log_det`` of shape ``(B,)``: summed over the scales."""
        x1 = [x[:, : self.len1] for x in xs]
        x2 = [x[:, self.len1 :] for x in xs]
        r2 = _as(self.s2(*x2), xs[0])
        s_a = [r[:, : self.len1] for r in r2]
        y1 = [torch.exp(log_e(s, self.clamp)) * x + r[:, self.len1 :]
              for s, x, r in zip(s_a, x1, r2)]
        r1 = _as(self.s1(*y1), xs[0])
        s_b = [r[:, : self.len2] for r in r1]
        y2 = [torch.exp(log_e(s, self.clamp)) * x + r[:, self.len2 :]
              for s, x, r in zip(s_b, x2, r1)]
        ys = [torch.cat((a, b), 1).clamp(-1e6, 1e6) for a, b in zip(y1, y2)]
        log_det = sum(log_e(a, self.clamp).sum((1, 2, 3)) + log_e(b, self.clamp).sum((1, 2, 3))
                      for a, b in zip(s_a, s_b))
        return ys, log_det

    def inverse(self, ys: Maps) -> Maps:
        """The exact inverse of :meth:`forward` (ignoring its +-1e6 output clamp)."""
        y1 = [y[:, : self.len1] for y in ys]
        y2 = [y[:, self.len1 :] for y in ys]
        r1 = _as(self.s1(*y1), ys[0])
        x2 = [(y - r[:, self.len2 :]) * torch.exp(-log_e(r[:, : self.len2], self.clamp))
              for y, r in zip(y2, r1)]
        r2 = _as(self.s2(*x2), ys[0])
        x1 = [(y - r[:, self.len1 :]) * torch.exp(-log_e(r[:, : self.len1], self.clamp))
              for y, r in zip(y1, r2)]
        return [torch.cat((a, b), 1) for a, b in zip(x1, x2)]


def official_permutations(block: int, channels: int, scales: int = 3) -> list[np.ndarray]:
    """The official ``ParallelPermute(seed=block)``: ``np.random.seed(block)``, then one
    ``np.random.permutation(channels)`` per scale, in order."""
    rng = np.random.RandomState(block)  # the legacy global generator that np.random.seed sets
    return [rng.permutation(channels) for _ in range(scales)]


class CrossScaleFlow(nn.Module):
    """``blocks`` x (fixed permutation, parallel coupling) over three scales of ``channels``."""

    def __init__(self, channels: int, blocks: int = 4, kernels: tuple[int, ...] = (3, 3, 3, 5),
                 hidden: int = 1024, clamp: float = 3.0) -> None:
        super().__init__()
        if len(kernels) != blocks:
            raise ValueError(f"{blocks} coupling blocks need {blocks} kernel sizes, got {kernels}")
        self.couplings = nn.ModuleList(ParallelCoupling(channels, hidden, k, clamp) for k in kernels)
        for k in range(blocks):
            perms = official_permutations(k, channels)
            self.register_buffer(f"perm_{k}", torch.from_numpy(np.stack(perms)), persistent=False)

    def forward(self, xs: Maps) -> tuple[Maps, torch.Tensor]:
        """``(z, log_det)``: the three output maps and the per-sample log-det ``(B,)``."""
        log_det = torch.zeros(xs[0].shape[0], device=xs[0].device)
        for k, coupling in enumerate(self.couplings):
            perm = getattr(self, f"perm_{k}")
            xs = [x[:, p] for x, p in zip(xs, perm)]
            xs, ld = coupling(xs)
            log_det = log_det + ld
        return xs, log_det

    def inverse(self, zs: Maps) -> Maps:
        for k in reversed(range(len(self.couplings))):
            zs = self.couplings[k].inverse(zs)
            inv = torch.argsort(getattr(self, f"perm_{k}"), dim=1)
            zs = [z[:, p] for z, p in zip(zs, inv)]
        return zs


def flow_loss(z: Maps, log_det: torch.Tensor) -> torch.Tensor:
    """Official loss: ``mean_b(0.5 * sum z^2 - log_det_b) / D``, D = all elements of a sample."""
    flat = torch.cat([m.reshape(m.shape[0], -1) for m in z], dim=1)
    return torch.mean(0.5 * flat.pow(2).sum(1) - log_det) / flat.shape[1]


def image_scores(z: Maps) -> torch.Tensor:
    """Official image score: the mean of ``z^2 / 2`` over every channel and position of every
    scale, concatenated (so the finest scale, with the most positions, weighs most)."""
    flat = torch.cat([m.reshape(m.shape[0], m.shape[1], -1) for m in z], dim=2)
    return (flat.pow(2) / 2).mean(dim=(1, 2))


def score_map(z: Maps, size: tuple[int, int]) -> torch.Tensor:
    """Official map: the channel mean of ``z^2`` at the finest scale, bilinearly upsampled."""
    m = z[0].pow(2).mean(1, keepdim=True)
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0]


def map_sizes(input_size: int, stride: int = 32, scales: int = 3) -> list[int]:
    """Feature-map side per scale: the input and its halves, then TF SAME's ceil at ``stride``."""
    return [math.ceil(input_size // 2**s / stride) for s in range(scales)]
