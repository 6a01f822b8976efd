"""A tiny, deterministic detector for harness tests (registered as hidden ``dummy``).

Per-pixel statistics of the training images on a coarse grid: the anomaly map is the z-score
norm of each cell, the image score its maximum. No backbone, so it runs in milliseconds; it is
a real (if weak) method, so AUROC on generated data is meaningful.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from baselines.base import Detector, Prediction


class PixelStats(Detector):
    """Gaussian per grid cell and channel over the training images; score = max |z| norm."""

    name = "dummy"
    description = "per-pixel z-score against the training images (harness tests only)"
    paper = ""

    def __init__(
        self,
        *,
        backbone: str = "none",
        weights: str = "none",
        device: str = "cpu",
        seed: int = 0,
        grid: int = 28,
        **extra: Any,
    ) -> None:
        super().__init__(
            backbone=backbone, weights=weights, device=device, seed=seed, grid=grid, **extra
        )
        self.grid = grid
        self.backbone_sha256: str | None = None
        self.last_timings: dict[str, float] = {}
        self.register_buffer("mean_", torch.zeros(3, grid, grid))
        self.register_buffer("std_", torch.ones(3, grid, grid))
        self.input_size: tuple[int, int] | None = None

    def _cells(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images.double(), self.grid)  # (B, 3, g, g)

    def fit(self, batches: Iterable[torch.Tensor]) -> PixelStats:
        """Accumulate per-cell mean and standard deviation (float64, two moments)."""
        start = time.perf_counter()
        total = torch.zeros(3, self.grid, self.grid, dtype=torch.float64)
        square = torch.zeros_like(total)
        n = 0
        for batch in batches:
            cells = self._cells(self.check_images(batch))
            total += cells.sum(0)
            square += (cells**2).sum(0)
            n += cells.shape[0]
        if n == 0:
            raise ValueError("fit() got no images")
        mean = total / n
        var = (square / n - mean**2).clamp_min(0)
        self.mean_.copy_(mean.float())
        self.std_.copy_(var.sqrt().float() + 1e-3)
        self._mark_fitted()
        self.last_timings = {"fit_s": time.perf_counter() - start}
        return self

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Map = norm of the per-channel z-scores, bilinearly upsampled; score = its maximum."""
        self.check_fitted()
        start = time.perf_counter()
        images = self.check_images(images)
        z = (self._cells(images).float() - self.mean_) / self.std_
        coarse = z.pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, g, g)
        maps = F.interpolate(coarse, size=images.shape[-2:], mode="bilinear", align_corners=False)
        maps = maps[:, 0]
        self.last_timings = {"predict_s": time.perf_counter() - start}
        return Prediction(scores=maps.flatten(1).amax(1), maps=maps)
