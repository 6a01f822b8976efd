"""An outside method for cadsd-bench: each image patch's distance to the nearest training patch
at the same place. No backbone, so it runs anywhere in seconds; an example of the contract, not
a method from a paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines.base import Detector, Prediction
from baselines.training import Progress, TrainingSet


class PatchDistance(Detector):
    """Images are shrunk to ``grid * patch`` pixels and cut into ``grid x grid`` patches; a
    patch scores its L2 distance to the nearest training patch at the same grid position, an
    image its largest patch score (higher = more anomalous)."""

    name = "patch_distance"
    description = "distance to the nearest training patch at the same position (an example)"

    def __init__(self, *, grid: int = 16, patch: int = 4) -> None:
        super().__init__()
        self.grid = grid  # settings: keyword arguments with defaults, stored under their names
        self.patch = patch
        self.register_buffer("bank_", None)  # learned in fit: (N, grid * grid, 3 * patch ** 2)

    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(images, size=self.grid * self.patch, mode="area")
        cells = F.unfold(small, kernel_size=self.patch, stride=self.patch)  # (B, D, grid**2)
        return cells.transpose(1, 2)  # (B, grid**2, D)

    def fit(self, train: TrainingSet, progress: Progress | None = None) -> PatchDistance:
        train = TrainingSet.of(train)  # also accepts a tensor of images or a list of batches
        progress = progress or Progress()
        progress.stage("patches", train.num_batches)
        parts = []
        for batch in train:  # float RGB batches (B, 3, H, W) in [0, 1], in file order
            parts.append(self._patches(batch))
            progress.advance()
        self.register_buffer("bank_", torch.cat(parts))  # a buffer: saved with the model
        return self

    def predict(self, images: torch.Tensor) -> Prediction:
        patches = self._patches(images).transpose(0, 1)  # (grid**2, B, D)
        bank = self.bank_.transpose(0, 1)  # (grid**2, N, D)
        nearest = torch.cdist(patches, bank).amin(2).T  # (B, grid**2)
        coarse = nearest.view(-1, 1, self.grid, self.grid)
        maps = F.interpolate(coarse, size=images.shape[-2:], mode="bilinear")[:, 0]
        return Prediction(scores=nearest.amax(1), maps=maps)
