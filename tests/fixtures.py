"""The tests' one helper module: seeded images and tiny datasets in the official layout (the
image factory), and what the harness tests run (decoded datasets, method plans, run options,
misbehaving methods).

Everything is seeded: the same seed draws the same pixels. The harness's test methods are
outside methods, named by import path as a user's own are (:data:`DUMMY`,
:data:`DUMMY_TRAINED` and the misbehaving ones below).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from harness_methods import PixelStats
from PIL import Image

from baselines.base import Detector, Train
from baselines.training import Progress
from cadsd.format.layout import BY_NAME, MASK_DIR, MASK_SUFFIX
from leaderboard.methods import METHODS, MethodEntry, resolve
from leaderboard.perf.tables import fabricated
from leaderboard.records.schema import Cell, Record
from leaderboard.records.store import cell_id
from leaderboard.running import choices, data
from leaderboard.running.plan import MethodPlan, describe_plan, plan_methods
from leaderboard.running.runner import RunOptions
from leaderboard.testing import striped_images  # noqa: F401 - the one definition, re-exported

#: A small set with every (split, category) of the paper; used when no counts are given.
SMALL_COUNTS: dict[str, int] = {
    "train/good": 4,
    "test/good": 3,
    "test/scratch": 2,
    "test/paint": 2,
    "test/over_coupling": 2,
    "test/lacking": 2,
}


def smooth_images(n: int, seed: int, size: int, cells: int = 8, noise: float = 0.0
                  ) -> torch.Tensor:
    """``(n, 3, size, size)`` in [0, 1]: a random ``cells`` x ``cells`` pattern upsampled
    (so a backbone sees structure), mixed with a ``noise`` fraction of pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, cells, cells, generator=g)
    out = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    if noise:
        out = (1 - noise) * out + noise * torch.rand(n, 3, size, size, generator=g)
    return out.clamp(0, 1)


def noise_pixels(seed: int, size: int, mode: str = "RGB") -> np.ndarray:
    """Seeded uint8 noise, ``(size, size, 3)`` for RGB or ``(size, size)`` for L."""
    shape = {"RGB": (size, size, 3), "L": (size, size)}[mode]
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_image(path: Path, pixels: np.ndarray, fmt: str | None = None) -> Path:
    """Save ``pixels`` as ``path`` (parents made); ``fmt`` a PIL format, else from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


def square_mask(size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A uint8 mask (255 inside ``box`` = rows lo:hi, cols lo:hi; default the second quarter)."""
    lo, hi = size // 4, size // 2
    r0, c0, r1, c1 = box or (lo, lo, hi, hi)
    m = np.zeros((size, size), np.uint8)
    m[r0:r1, c0:c1] = 255
    return m


def write_layout(
    base: Path,
    counts: Mapping[str, int] | None = None,
    size: int = 32,
    fmt: str = "jpg",
    masks: bool = False,
    *,
    mode: str = "RGB",
    seed: int = 0,
    name: str = "cadsd",
) -> Path:
    """Write ``base/name`` with ``counts`` images per ``"split/category"`` and return that root.

    Each image is seeded noise (so every file is distinct and reruns are byte-identical), saved as
    ``fmt`` (the suffix as given, any case: ``jpg``, ``JPEG``, ``png``) in ``mode``. With
    ``masks``, every test anomaly gets ``ground_truth/<folder>/<stem>_mask.png``. Two calls
    with the same ``seed`` draw the same pixels: pass another seed to add distinct images.
    """
    root = base / name
    rng = np.random.default_rng(seed)
    pil_format = "PNG" if fmt.lower() == "png" else "JPEG"
    shape = {"RGB": (size, size, 3), "L": (size, size)}[mode]
    for key, n in (SMALL_COUNTS if counts is None else counts).items():
        split, cat = key.split("/")
        folder = BY_NAME[cat].folder
        for i in range(n):
            stem = f"{cat}_{i:03d}"
            write_image(root / split / folder / f"{stem}.{fmt}",
                        rng.integers(0, 256, shape, dtype=np.uint8), pil_format)
            if masks and split == "test" and cat != "good":
                write_image(root / MASK_DIR / folder / f"{stem}{MASK_SUFFIX}", square_mask(size))
        (root / split / folder).mkdir(parents=True, exist_ok=True)
    return root


# -- the harness's tests: datasets decoded for the runner, plans, options, methods ---------

#: a small set in the official layout, with masks, big enough for every metric
COUNTS = {
    "train/good": 6,
    "test/good": 4,
    "test/scratch": 2,
    "test/paint": 2,
    "test/over_coupling": 2,
    "test/lacking": 2,
}


class Exploding(PixelStats):
    """Fails during fit, as a broken method would."""

    name = "exploding"

    def fit(self, train: Train, progress: Progress | None = None) -> Exploding:
        raise RuntimeError("boom: this method always fails")


class Interrupted(PixelStats):
    """Simulates Ctrl-C in the middle of fitting."""

    name = "interrupted"

    def fit(self, train: Train, progress: Progress | None = None) -> Interrupted:
        raise KeyboardInterrupt


#: the harness's test methods, by import path (their names: dummy, dummy_trained, ...)
DUMMY = "harness_methods:PixelStats"
DUMMY_TRAINED = "harness_methods:ToyTrained"
EXPLODING = "fixtures:Exploding"
INTERRUPTED = "fixtures:Interrupted"
DYING = "fixtures:DiesOnce"


def load(root: Path, kind: str = "custom") -> data.BenchData:
    """Decode a dataset folder the way `bench run` does."""
    resolved = data.resolve(str(root), echo=lambda line: None)
    if kind != resolved.kind:
        resolved = data.Resolved(resolved.name, kind, resolved.source)
    return data.load(resolved)


def plans(methods: list[str], registry_: Mapping[str, MethodEntry] | None = None,
          params: tuple[str, ...] = (), budget: str = "smoke",
          backbone: str = "mobilenet_v2") -> list[MethodPlan]:
    """Method plans as `bench run` makes them (``--param`` items, budget, named backbone)."""
    names, reg = resolve(",".join(methods), registry_ or METHODS)
    made = plan_methods(names, reg, params, budget)
    return choices.resolve_backbones(backbone, "imagenet", made, echo=lambda line: None)


def options(out: Path, methods: list[str], registry_: Mapping[str, MethodEntry] | None = None,
            params: tuple[str, ...] = (), budget: str = "smoke", backbone: str = "mobilenet_v2",
            **kw: Any) -> RunOptions:
    """Fast run options for tests (few bootstrap resamples, tiny warm-up, smoke budget)."""
    base: dict[str, Any] = {"seeds": [0], "device": "cpu", "out": out, "resamples": 200,
                            "warmup": 1, "budget": budget}
    base.update(kw)
    return RunOptions(plans=plans(methods, registry_, params, budget, backbone), **base)


class DiesOnce(PixelStats):
    """Kills its own process during fit while ``marker`` exists (removing it first): a worker
    lost mid-cell, as a crashed node or an OOM kill would lose it."""

    name = "dying"

    def __init__(self, *, marker: str = "", **kw: Any) -> None:
        self.marker = marker
        super().__init__(**kw)

    def fit(self, train: Train, progress: Progress | None = None) -> DiesOnce:
        import os

        if self.marker and Path(self.marker).exists():
            Path(self.marker).unlink()
            os._exit(1)
        return super().fit(train, progress)


class NoPredict(Detector):
    """Defines fit but not predict: refused before the run."""

    def fit(self, train: Train, progress: Progress | None = None) -> NoPredict:
        return self


class Impostor(PixelStats):
    """An outside method that takes a built-in method's name: refused before the run."""

    name = "patchcore"


def planned_records(methods: list[str], seeds: tuple[int, ...] = (0,),
                    shots: tuple[int | None, ...] = (None,), budget: str = "quick",
                    backbone: str = "mobilenet_v2") -> list[Record]:
    """Records for tables, without a fit: the method block is what `bench run` plans for each
    of ``methods`` (name, every setting as the built model reports it, variant, origin: what
    the tables' labels read), the scores
    are :func:`leaderboard.perf.tables.fabricated`'s seeded ones on a CAD-SD-sized test set
    (method i separates the anomalies by 0.3 i standard deviations)."""
    made = plans(methods, budget=budget, backbone=backbone)
    cells = [(k, s) for k in shots for s in seeds]
    base = fabricated(len(made), len(cells), resamples=100)
    out = []
    for i, plan in enumerate(made):
        for j, (k, seed) in enumerate(cells):
            r = base[i * len(cells) + j]
            cell = Cell(id=cell_id("synthetic", plan.name, seed, k), dataset="synthetic",
                        method=plan.name, seed=seed, order=i, shots=k)
            method = dataclasses.replace(describe_plan(plan), params=plan.settings_with_backbone())
            out.append(dataclasses.replace(r, cell=cell, method=method))
    return out
