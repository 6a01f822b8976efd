"""Tiny, deterministic detectors for the harness's tests, loaded by import path as a user's
own method is (``--methods harness_methods:PixelStats``): ``dummy`` and ``dummy_trained``.

``dummy``: per-cell statistics of the training images on a coarse grid, read in one pass; the
anomaly map is the z-score norm of each cell, the image score its maximum. No backbone, so it
runs in milliseconds; a real (if weak) method, so AUROC on generated data is meaningful.

``dummy_trained``: the same model fitted by gradient descent (Adam on the Gaussian negative
log-likelihood) over epochs of seeded shuffled batches, with budgets: it proves the harness's
epoch loop, progress, budget and seed plumbing without waiting for CS-Flow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import Detector, Prediction, Train
from baselines.errors import InputError
from baselines.training import Progress, TrainingSet


def _z_map(z: torch.Tensor, size: tuple[int, ...]) -> Prediction:
    """Per-cell z-scores ``(B, 3, g, g)`` -> their norm, bilinearly upsampled; score = max."""
    coarse = z.pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, g, g)
    maps = F.interpolate(coarse, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return Prediction(scores=maps.flatten(1).amax(1), maps=maps)


class PixelStats(Detector):
    """Gaussian per grid cell and channel over the training images; score = max |z| norm."""

    name = "dummy"
    description = "per-pixel z-score against the training images (harness tests only)"
    paper = ""

    def __init__(self, *, device: str = "cpu", seed: int = 0, grid: int = 28) -> None:
        super().__init__()
        self.device = device
        self.seed = seed
        self.grid = grid
        self._check_settings()
        self.register_buffer("mean_", torch.zeros(3, grid, grid))
        self.register_buffer("std_", torch.ones(3, grid, grid))

    def _cells(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images.double(), self.grid)  # (B, 3, g, g)

    def fit(self, train: Train, progress: Progress | None = None) -> PixelStats:
        """Accumulate per-cell mean and standard deviation (float64, two moments)."""
        progress = progress or Progress()
        train = TrainingSet.of(train)
        progress.stage("statistics", train.num_batches)
        total = torch.zeros(3, self.grid, self.grid, dtype=torch.float64)
        square = torch.zeros_like(total)
        n = 0
        for batch in train:
            cells = self._cells(self.check_images(batch))
            total += cells.sum(0)
            square += (cells**2).sum(0)
            n += cells.shape[0]
            progress.advance()
        if n == 0:
            raise InputError("fit() got no images")
        mean = total / n
        var = (square / n - mean**2).clamp_min(0)
        self.mean_.copy_(mean.float())
        self.std_.copy_(var.sqrt().float() + 1e-3)
        return self

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """Map = norm of the per-channel z-scores, bilinearly upsampled; score = its maximum."""
        images = self.check_images(images)
        return _z_map((self._cells(images).float() - self.mean_) / self.std_, images.shape[-2:])


class ToyTrained(Detector):
    """Per-cell Gaussian (mean, log std) fitted by Adam over epochs; score = max |z| norm."""

    name = "dummy_trained"
    description = "per-cell Gaussian fitted by gradient descent over epochs (harness tests only)"
    paper = ""
    budgets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "paper": {}, "quick": {"epochs": 4}, "smoke": {"epochs": 2}}

    def __init__(self, *, device: str = "cpu", seed: int = 0, grid: int = 8, epochs: int = 12,
                 lr: float = 0.2, batch_size: int = 2) -> None:
        super().__init__()
        self.device = device
        self.seed = seed
        self.grid = grid
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self._check_settings()
        self.mu = nn.Parameter(torch.zeros(3, grid, grid))
        self.log_sigma = nn.Parameter(torch.zeros(3, grid, grid))

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        if params["epochs"] < 1 or params["batch_size"] < 1 or params["lr"] <= 0:
            raise InputError("dummy_trained needs epochs >= 1, batch_size >= 1 and lr > 0")

    @classmethod
    def training_flops(cls, params: Mapping[str, Any], n_images: int) -> float:
        return 30.0 * 3 * params["grid"] ** 2 * n_images * params["epochs"]  # a few per cell

    def _nll(self, cells: torch.Tensor) -> torch.Tensor:
        z = (cells - self.mu) * torch.exp(-self.log_sigma)
        return (0.5 * z.pow(2) + self.log_sigma).mean()

    def fit(self, train: Train, progress: Progress | None = None) -> ToyTrained:
        """``epochs`` passes over seeded shuffled batches; one log entry per epoch."""
        progress = progress or Progress()
        train = TrainingSet.of(train)
        per_epoch = math.ceil(len(train) / self.batch_size)
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        self.training_log = []
        progress.stage("train", self.epochs * per_epoch)
        for epoch in range(self.epochs):
            losses = []
            for batch in train.batches(self.batch_size, shuffle=True, epoch=epoch):
                loss = self._nll(F.adaptive_avg_pool2d(self.check_images(batch), self.grid))
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                progress.advance(loss=losses[-1])
            entry = {"epoch": epoch + 1, "loss": sum(losses) / len(losses)}
            self.training_log.append(entry)
            progress.log(epoch=epoch + 1, epochs=self.epochs, loss=entry["loss"])
        return self

    def training_verdict(self) -> str | None:
        log = self.training_log
        if len(log) >= 2 and log[-1]["loss"] >= log[0]["loss"]:
            return "the training loss did not decrease"
        return None

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        images = self.check_images(images)
        z = (F.adaptive_avg_pool2d(images, self.grid) - self.mu) * torch.exp(-self.log_sigma)
        return _z_map(z, images.shape[-2:])
