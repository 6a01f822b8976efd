"""Summaries over seeds: a cell per seed, one number per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds, and how many values they summarise."""

    mean: float | None
    std: float | None
    n: int


def aggregate(values: Sequence[float | None]) -> Spread:
    """Mean and sample standard deviation over seeds (None values are skipped)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return Spread(None, None, 0)
    return Spread(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))
