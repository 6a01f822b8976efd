"""Shared fixtures: tiny CAD-SD folders in the official layout, written in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cadsd.layout import BY_NAME, MASK_DIR, MASK_SUFFIX

#: A small set with every (split, category) of the paper; used when no counts are given.
SMALL_COUNTS: dict[str, int] = {
    "train/good": 4,
    "test/good": 3,
    "test/scratch": 2,
    "test/paint": 2,
    "test/over_coupling": 2,
    "test/lacking": 2,
}


def _write_layout(
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
        directory = root / split / folder
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            stem = f"{cat}_{i:03d}"
            Image.fromarray(pixels).save(directory / f"{stem}.{fmt}", pil_format)
            if masks and split == "test" and cat != "good":
                mask_dir = root / MASK_DIR / folder
                mask_dir.mkdir(parents=True, exist_ok=True)
                mask = np.zeros((size, size), np.uint8)
                mask[size // 4 : size // 2, size // 4 : size // 2] = 255
                Image.fromarray(mask).save(mask_dir / f"{stem}{MASK_SUFFIX}")
    return root


@pytest.fixture
def make_layout() -> Callable[..., Path]:
    """Factory: ``make_layout(tmp_path, counts=..., size=32, fmt='jpg', masks=False)`` -> root.

    ``counts`` maps ``"split/category"`` (e.g. ``"test/lacking"``) to a number of images; the
    default is :data:`SMALL_COUNTS`. Pass the same dict as ``expect=`` to ``cadsd.validate``.
    """
    return _write_layout


@pytest.fixture
def small_counts() -> dict[str, int]:
    """A fresh copy of :data:`SMALL_COUNTS` (usable directly as ``validate(..., expect=...)``)."""
    return dict(SMALL_COUNTS)
