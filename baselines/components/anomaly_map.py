"""Anomaly map: patch scores upsampled to the input size, then a Gaussian blur (sigma 4).

The official code does ``cv2.resize`` (bilinear, half-pixel centres, edge clamping) then
``scipy.ndimage.gaussian_filter(sigma=4)``. Here both are torch: linear resampling with
``align_corners=False`` is cv2's INTER_LINEAR on float maps, and the blur is scipy's filter
(separable kernel of radius ``int(truncate * sigma + 0.5)``, mode 'reflect' = the edge sample
repeated: d c b a | a b c d | d c b a), written as matrices.
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


def blur_matrix(n: int, sigma: float = SIGMA, truncate: float = TRUNCATE,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, n)`` matrix ``G`` with ``G @ v`` = scipy's 1-D Gaussian filter of ``v`` ('reflect')."""
    kernel = gaussian_kernel1d(sigma, truncate)
    radius = kernel.numel() // 2
    src = _reflect_index(n, radius, torch.device(device)).unfold(0, kernel.numel(), 1)  # (n, taps)
    out = torch.zeros(n, n, dtype=torch.float64, device=device)
    out.scatter_add_(1, src, kernel.to(device).expand(n, -1))
    return out.to(dtype)


def linear_matrix(n_in: int, n_out: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n_out, n_in)`` matrix of 1-D linear resampling (half-pixel centres, clamped edges:
    ``interpolate(..., mode='linear', align_corners=False)`` = cv2's INTER_LINEAR)."""
    eye = torch.eye(n_in, dtype=torch.float64, device=device).unsqueeze(1)  # (n_in, 1, n_in)
    cols = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)  # (n_in, 1, n_out)
    return cols[:, 0].T.to(dtype)


def map_matrices(
    grid: tuple[int, int], size: tuple[int, int], sigma: float = SIGMA,
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, C)`` with ``R @ s @ C.T`` = blur(upsample(s)) for ``grid``-sized scores ``s``.

    Both steps are linear and separable, so two small products replace a 33-tap convolution
    over the full-size map; compute them once per (grid, size, sigma) and reuse them.
    """
    mats = []
    for n_in, n_out in zip(grid, size):
        m = linear_matrix(n_in, n_out, device, torch.float64)
        if sigma > 0:
            m = blur_matrix(n_out, sigma, device=device, dtype=torch.float64) @ m
        mats.append(m.to(dtype))
    return mats[0], mats[1]


def anomaly_map(patch_scores: torch.Tensor, size: tuple[int, int],
                sigma: float = SIGMA) -> torch.Tensor:
    """``(B, h, w)`` patch scores -> ``(B, *size)`` map: bilinear upsampling (cv2.resize), then
    a Gaussian blur (scipy, sigma 4). Detectors cache :func:`map_matrices` and use
    :func:`apply_map` instead."""
    return apply_map(patch_scores, map_matrices(tuple(patch_scores.shape[-2:]), size, sigma,
                                                patch_scores.device, patch_scores.dtype))


def apply_map(patch_scores: torch.Tensor,
              matrices: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``R @ s @ C.T`` with ``(R, C)`` from :func:`map_matrices`: the map of ``s``."""
    rows, cols = matrices
    return rows @ patch_scores @ cols.T
