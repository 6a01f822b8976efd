"""Anomaly map: patch scores upsampled to the input size, then a Gaussian blur (sigma 4).

The official code does ``cv2.resize`` (bilinear, half-pixel centres, edge clamping) then
``scipy.ndimage.gaussian_filter(sigma=4)``. Here both are torch: bilinear ``interpolate`` with
``align_corners=False`` is the same resampling as cv2's INTER_LINEAR on float maps, and the blur
is scipy's filter exactly (separable kernel of radius ``int(truncate * sigma + 0.5)``, mode
'reflect' = the edge sample repeated: d c b a | a b c d | d c b a).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMA = 4.0
TRUNCATE = 4.0


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE) -> torch.Tensor:
    """scipy's normalised 1-D Gaussian kernel of radius ``int(truncate * sigma + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source indices of scipy's 'reflect' (half-sample symmetric) padding of length ``n``."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_blur(maps: torch.Tensor, sigma: float = SIGMA, truncate: float = TRUNCATE) -> torch.Tensor:
    """Blur ``(B, H, W)`` maps like ``scipy.ndimage.gaussian_filter(m, sigma, mode='reflect')``."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma, truncate).to(maps.device, maps.dtype)
    pad = kernel.numel() // 2
    b, h, w = maps.shape
    x = maps.unsqueeze(1)  # (B, 1, H, W)
    x = x.index_select(2, _reflect_index(h, pad, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))  # along H
    x = x.index_select(3, _reflect_index(w, pad, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))  # along W
    return x.view(b, h, w)


def anomaly_map(
    patch_scores: torch.Tensor, size: tuple[int, int], sigma: float = SIGMA
) -> torch.Tensor:
    """``(B, h, w)`` patch scores -> ``(B, *size)`` map: bilinear upsampling, Gaussian blur."""
    up = F.interpolate(patch_scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return gaussian_blur(up.squeeze(1), sigma)
