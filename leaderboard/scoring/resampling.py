"""What the scoring modules share: the test set's subsets (by the ``category`` / ``group``
columns, never by position), the stratified bootstrap draw and percentile intervals.

The draw (:mod:`leaderboard.scoring.auroc`'s CIs use it too), from a
seed: ``numpy.random.default_rng(seed)``, then multinomial counts for the normal images, then
for each anomaly type in the layout's order. Every resample keeps each stratum's size, and
every metric of one resample reads the same counts (a resample is a weighting of the images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cadsd.format.layout import CATEGORY_NAMES, GROUP_NAMES

#: how every interval of this package is made
CI_METHOD = "percentile; normals and each anomaly type resampled separately"


@dataclass(frozen=True)
class Interval:
    """A confidence interval (plain floats)."""

    low: float
    high: float

    def excludes(self, value: float) -> bool:
        return not self.low <= value <= self.high


def ordered(names: Sequence[str], known: Sequence[str]) -> list[str]:
    """``names`` once each, in ``known``'s order, unknown ones last (sorted)."""
    rank = {n: i for i, n in enumerate(known)}
    return sorted(dict.fromkeys(names), key=lambda n: (rank.get(n, len(rank)), n))


def percentile_ci(values: np.ndarray, level: float) -> Interval:
    """Percentile interval of bootstrap ``values`` (R,) at ``level`` (e.g. 0.95)."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return Interval(low=float(lo), high=float(hi))


@dataclass(frozen=True)
class Design:
    """Which images form each subset: indices into the score arrays."""

    normal: np.ndarray  # (n0,) indices of the normal images
    types: dict[str, np.ndarray]  # anomaly type -> indices, in the layout's order
    groups: dict[str, list[str]]  # group -> its types, in the layout's order

    def members(self, subset: str, name: str | None = None) -> list[str]:
        """The anomaly types of ``all``, ``category[name]`` or ``group[name]``."""
        if subset == "all":
            return list(self.types)
        return [name] if subset == "category" else self.groups[name]

    def anomalies(self, members: Sequence[str]) -> np.ndarray:
        return np.concatenate([self.types[c] for c in members])


def design(labels: Sequence[int] | np.ndarray, categories: Sequence[str],
           groups: Sequence[str], n: int) -> Design:
    """The subsets of a test set of ``n`` images; ValueError when the columns disagree."""
    y = np.asarray(labels, dtype=np.int64)
    cats = np.asarray(categories, dtype=object)
    grps = np.asarray(groups, dtype=object)
    if not (len(y) == len(cats) == len(grps) == n):
        raise ValueError(f"scores ({n}), labels ({len(y)}), categories ({len(cats)}) and "
                         f"groups ({len(grps)}) must have the same length")
    normal = y == 0
    if not normal.any() or normal.all():
        raise ValueError("the test set needs both normal and anomalous images")
    types = ordered(list(cats[~normal]), CATEGORY_NAMES)
    index = {c: np.flatnonzero(~normal & (cats == c)) for c in types}
    group_of = {}
    for c in types:
        found = set(grps[index[c]])
        if len(found) != 1:
            raise ValueError(f"anomaly type {c!r} is in several groups: {sorted(found)}")
        group_of[c] = found.pop()
    by_group = {g: [c for c in types if group_of[c] == g]
                for g in ordered(list(group_of.values()), GROUP_NAMES)}
    return Design(normal=np.flatnonzero(normal), types=index, groups=by_group)


@dataclass(frozen=True, eq=False)
class Draw:
    """One stratified bootstrap: how often each image is drawn in each resample (float64
    counts, ready for matrix products)."""

    normal: np.ndarray  # (R, n0) counts, each row sums to n0
    types: dict[str, np.ndarray]  # type -> (R, n_c) counts
    resamples: int
    seed: int

    def check(self, d: Design) -> None:
        """ValueError unless this draw was made for the subsets ``d``."""
        sizes = {c: v.shape[1] for c, v in self.types.items()}
        if self.normal.shape[1] != len(d.normal) or sizes != {c: len(i) for c, i in d.types.items()}:
            raise ValueError("the bootstrap draw was made for another test set "
                             f"({self.normal.shape[1]} normal, {sizes}); make it with "
                             "draw_for() on these labels, categories and groups")

    def weights(self, d: Design, n: int) -> np.ndarray:
        """``(R, n)`` counts for every image (aligned with the score arrays)."""
        w = np.zeros((self.normal.shape[0], n))
        w[:, d.normal] = self.normal
        for c, idx in d.types.items():
            w[:, idx] = self.types[c]
        return w


def stratified_draw(d: Design, resamples: int, seed: int) -> Draw:
    """Multinomial counts for the normals, then each type (the order metrics.py uses)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)

    def counts(k: int) -> np.ndarray:
        return rng.multinomial(k, np.full(k, 1 / k), size=resamples)

    normal = counts(len(d.normal)).astype(np.float64)
    types = {c: counts(len(idx)).astype(np.float64) for c, idx in d.types.items()}
    return Draw(normal=normal, types=types, resamples=resamples, seed=seed)


def draw_for(labels: Sequence[int] | np.ndarray, categories: Sequence[str],
             groups: Sequence[str], resamples: int = 2000, seed: int = 0) -> Draw:
    """The draw for one test set, to share between the calls that score it (it depends on
    the images' labels, types and order only, not on any method's scores)."""
    return stratified_draw(design(labels, categories, groups, len(labels)), resamples, seed)
