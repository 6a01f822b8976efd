"""The tests' one image factory: image tensors for detectors, image and mask files, and tiny
CAD-SD folders in the official layout, all seeded (same seed, same pixels)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cadsd.format.layout import BY_NAME, MASK_DIR, MASK_SUFFIX
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
