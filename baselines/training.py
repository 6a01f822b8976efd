"""What ``fit`` is given: a re-iterable training set, and a progress sink it reports to.

Frozen-feature methods (PatchCore, PaDiM) read the training set once, in file order. Trained
methods (CS-Flow, PatchSVDD) run epochs: every pass yields every image again, and
``batches(shuffle=True, epoch=e)`` gives the same seeded order for the same ``(seed, e)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from baselines.errors import InputError


class Progress:
    """Where ``fit`` reports progress. This base class is silent (library use, tests); the
    harness passes one that draws bars with the loss and an ETA."""

    def stage(self, name: str, total: int) -> None:
        """A stage of ``total`` steps starts (e.g. ``extract``, ``train``)."""

    def advance(self, steps: int = 1, **metrics: float) -> None:
        """``steps`` steps are done; ``metrics`` (``loss=...``) are the latest values."""

    def log(self, **fields: float) -> None:
        """A line worth keeping: the end of an epoch or of a logging interval, e.g.
        ``log(epoch=3, epochs=15, loss=1.23)`` (printed even when no bar is drawn)."""


class TrainingSet:
    """Normal training images ``(N, 3, H, W)`` (uint8, or float in [0, 1]), served as float
    batches in [0, 1] on ``device``. Iterating yields every image once in file order, as many
    times as it is iterated; :meth:`batches` also gives seeded shuffled orders per epoch."""

    def __init__(
        self, images: torch.Tensor, batch_size: int = 8, seed: int = 0, device: str = "cpu"
    ) -> None:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"training images must be (N, 3, H, W), got {tuple(images.shape)}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    @classmethod
    def of(cls, train: TrainingSet | torch.Tensor | Iterable[torch.Tensor]) -> TrainingSet:
        """``train`` as a TrainingSet: a tensor of images is wrapped; an iterable of batches (a
        list, a generator: read once) is concatenated, keeping its batch size."""
        if isinstance(train, TrainingSet):
            return train
        if isinstance(train, torch.Tensor):
            return cls(train)
        batches = [b.unsqueeze(0) if b.ndim == 3 else b for b in train]
        if not batches:
            raise InputError("fit() got no images: pass batches of normal images")
        return cls(torch.cat(batches), batch_size=batches[0].shape[0])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches()

    def order(self, epoch: int) -> torch.Tensor:
        """The seeded permutation of epoch ``epoch``: the same for the same (seed, epoch)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self), generator=gen)

    def batches(
        self, batch_size: int | None = None, *, shuffle: bool = False, epoch: int = 0
    ) -> Iterator[torch.Tensor]:
        """One pass: every image once, ``batch_size`` at a time (the last batch may be
        smaller), in file order or in epoch ``epoch``'s seeded order."""
        size = batch_size or self.batch_size
        index = self.order(epoch) if shuffle else None
        for lo in range(0, len(self), size):
            part = self.images[lo : lo + size] if index is None else self.images[index[lo : lo + size]]
            yield self.to_float(part).to(self.device)

    @staticmethod
    def to_float(images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1]; float images are returned as they are."""
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images

    def all(self) -> torch.Tensor:
        """Every image as one float tensor in [0, 1], on ``device`` (file order)."""
        return self.to_float(self.images).to(self.device)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's and Python's global generators: what the harness does before it
    builds each cell's detector (so a method that draws from them is reproducible too)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
