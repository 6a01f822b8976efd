"""Score fusion for :class:`sa_patchcore.dual.DualPatchCore` (this project's method, not from a
paper): fold assignment of the training images, the held-out statistics each branch is
standardised with, and the fusion rule. Pure functions, so the tests pin them by brute force.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FUSIONS = ("max", "mean")


def fold_of(n: int, folds: int, seed: int) -> torch.Tensor:
    """``(n,)`` fold of each training image: a seeded permutation dealt round-robin, so fold
    sizes differ by at most one and the split does not follow file order."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[perm] = torch.arange(n) % folds
    return out


def held_out_stats(scores: torch.Tensor) -> torch.Tensor:
    """``(branches, n)`` held-out image scores -> ``(branches, 2)`` mean and standard deviation
    (unbiased) per branch. The deviation is floored at 1e-6 of the mean's size (or 1e-12), so a
    branch whose held-out scores are all equal cannot divide by zero."""
    mean = scores.mean(1)
    std = scores.std(1) if scores.shape[1] > 1 else torch.zeros_like(mean)
    floor = (1e-6 * mean.abs()).clamp_min(1e-12)
    return torch.stack([mean, torch.maximum(std, floor)], dim=1)


def fuse(values: Sequence[torch.Tensor], stats: torch.Tensor | None, rule: str = "max"
         ) -> torch.Tensor:
    """Branch ``values`` (image scores ``(B,)`` or maps ``(B, H, W)``, one per branch) ->
    ``rule`` over branches of ``(value - mean_b) / std_b`` with ``stats`` ``(branches, 2)``;
    ``stats=None`` fuses the raw values (the uncalibrated ablation)."""
    if rule not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {rule!r}")
    if stats is not None:
        values = [(v - stats[i, 0]) / stats[i, 1] for i, v in enumerate(values)]
    stacked = torch.stack(list(values))
    return stacked.amax(0) if rule == "max" else stacked.mean(0)
