"""Paired comparison of two methods' image AUROC on the same test images.

For each subset (``all``; each anomaly type: normals vs that type; each group, pooled; each
group average: the mean of its per-type AUROCs, as :mod:`leaderboard.scoring.auroc`):

* the difference AUROC(A) - AUROC(B);
* a paired bootstrap CI: one stratified draw (normals and each anomaly type resampled
  separately, see :mod:`.resampling`) weights BOTH methods' Mann-Whitney kernels, so each
  resample compares the two methods on the same images; the difference kernel
  ``K_A - K_B`` is re-weighted by the draw counts (exact, no re-sorting);
* a two-sided p-value from DeLong's test for two correlated AUROCs (DeLong, DeLong &
  Clarke-Pearson, Biometrics 1988), computed in the fast placement-value form of Sun & Xu
  (IEEE SPL 2014): midranks give every structural component in O(N log N). For a group
  average (a mean of per-type AUROCs sharing the normal images) the same components give the
  variance of the linear combination: sum_c Var(V10_c) / (T^2 m_c) + Var(mean_c V01_c) / n.

Identical scores give a difference of exactly 0, the CI [0, 0] and p = 1. A variance of 0 with
a non-zero difference (e.g. a perfect method against a constant one) gives p = 0. A p-value
needs at least two images in every stratum it uses (else None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from leaderboard.scoring.auroc import kernel
from leaderboard.scoring.resampling import (
    CI_METHOD,
    Draw,
    Interval,
    design,
    percentile_ci,
    stratified_draw,
)

P_METHOD = ("DeLong's test for two correlated AUROCs (DeLong et al. 1988; Sun & Xu 2014 "
            "placement values), two-sided")


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of AUROC(A) - AUROC(B) on the same images."""

    difference: float
    se: float  # standard error of the difference
    z: float
    p_value: float


@dataclass(frozen=True)
class Difference:
    """A - B on one subset: point difference, paired bootstrap CI, DeLong p-value."""

    difference: float
    auroc_a: float
    auroc_b: float
    ci: Interval
    p_value: float | None  # None: a stratum of the subset has fewer than two images
    excludes_zero: bool  # the CI does not contain 0
    n_normal: int
    n_anomaly: int


@dataclass(frozen=True)
class PairedDifferences:
    """Method A against reference B on every subset of one test set."""

    all: Difference
    category: dict[str, Difference]
    group: dict[str, Difference]
    average: dict[str, Difference]
    resamples: int
    seed: int
    level: float
    ci_method: str = "paired bootstrap (one draw for both methods); " + CI_METHOD
    p_method: str = P_METHOD
    #: the ``all`` difference in each resample (R,): a mean over several test sets (a
    #: benchmark's categories) gets its CI from these
    resampled_all: np.ndarray | None = field(default=None, compare=False, repr=False)


def mismatch(files_a: Sequence[str], files_b: Sequence[str]) -> str | None:
    """Why two methods' rows are not the same images in the same order (None: they are)."""
    a, b = list(files_a), list(files_b)
    if len(a) != len(b):
        return f"A scored {len(a)} images, B {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"image {i} is {x!r} for A but {y!r} for B"
    return None


def _midranks(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties averaged) along the last axis of ``x`` (k, n)."""
    out = np.empty_like(x, dtype=np.float64)
    for r, row in enumerate(x):
        srt = np.sort(row)
        # below + (ties + 1) / 2 = (left + right + 1) / 2
        out[r] = (np.searchsorted(srt, row, "left") + np.searchsorted(srt, row, "right") + 1) / 2
    return out


def placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components of ``k`` methods: ``V10`` (k, m), ``V01`` (k, n).

    ``V10[r, i]`` is the fraction of negatives below positive ``i`` (ties one half),
    ``V01[r, j]`` the fraction of positives above negative ``j``; from midranks (Sun & Xu).
    """
    m, n = pos.shape[1], neg.shape[1]
    both = _midranks(np.concatenate([pos, neg], axis=1))  # (k, m + n)
    v10 = (both[:, :m] - _midranks(pos)) / n
    v01 = 1.0 - (both[:, m:] - _midranks(neg)) / m
    return v10, v01


def _test(diff: float, var: float) -> tuple[float, float]:
    """(z, two-sided p) for a difference and its variance."""
    if var <= 0.0:
        return (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
    z = diff / math.sqrt(var)
    return z, math.erfc(abs(z) / math.sqrt(2.0))


def _var(x: np.ndarray) -> float:
    return float(np.var(x, ddof=1)) if x.size > 1 and np.ptp(x) > 0 else 0.0


def delong_test(scores_a: Sequence[float] | np.ndarray, scores_b: Sequence[float] | np.ndarray,
                labels: Sequence[int] | np.ndarray) -> DeLong:
    """DeLong's test of AUROC(A) - AUROC(B); labels 1 = anomalous (the positive class)."""
    y = np.asarray(labels) == 1
    s = np.stack([np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)])
    if s.shape[1] != y.size or y.all() or not y.any():
        raise ValueError("DeLong's test needs aligned scores and both classes")
    if min(int(y.sum()), int((~y).sum())) < 2:
        raise ValueError("DeLong's test needs at least two images of each class")
    v10, v01 = placements(s[:, y], s[:, ~y])
    d10, d01 = v10[0] - v10[1], v01[0] - v01[1]
    diff = float(d10.mean())
    var = _var(d10) / d10.size + _var(d01) / d01.size
    z, p = _test(diff, var)
    return DeLong(difference=diff, se=math.sqrt(var), z=z, p_value=p)


def paired_differences(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    categories: Sequence[str],
    groups: Sequence[str],
    *,
    files_a: Sequence[str],
    files_b: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    draw: Draw | None = None,
) -> PairedDifferences:
    """Method A minus reference B on the same images (``files_a`` must equal ``files_b``,
    same order: else ValueError naming the first mismatch).

    ``draw`` (from :func:`~leaderboard.scoring.resampling.draw_for`) shares one bootstrap
    draw between the comparisons on one test set; it replaces ``resamples`` and ``seed``.
    """
    why = mismatch(files_a, files_b)
    if why is not None:
        raise ValueError(f"not the same test images, so not paired: {why}")
    s = np.stack([np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)])
    if s.shape[1] != len(files_a):
        raise ValueError(f"{len(files_a)} file names but {s.shape[1]} scores")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf; the detector produced invalid scores")
    d = design(labels, categories, groups, s.shape[1])
    neg = s[:, d.normal]  # (2, n0)
    n0 = neg.shape[1]
    pos = {c: s[:, idx] for c, idx in d.types.items()}  # type -> (2, n_c)
    kern = {c: (kernel(p[0], neg[0]), kernel(p[1], neg[1])) for c, p in pos.items()}
    if draw is None:
        draw = stratified_draw(d, resamples, seed)
    draw.check(d)
    # (R,) weighted wins of K_A - K_B per type: identical methods give exact zeros
    boot = {c: ((draw.types[c] @ (ka - kb)) * draw.normal).sum(1) for c, (ka, kb) in kern.items()}

    def row(members: list[str], point: tuple[float, float], diff: float, boot_diff: np.ndarray,
            p_value: float | None) -> Difference:
        ci = percentile_ci(boot_diff, level)
        return Difference(difference=diff, auroc_a=point[0], auroc_b=point[1], ci=ci,
                          p_value=p_value, excludes_zero=ci.excludes(0.0), n_normal=n0,
                          n_anomaly=int(sum(pos[c].shape[1] for c in members)))

    def pooled(members: list[str]) -> Difference:
        n_pairs = sum(pos[c].shape[1] for c in members) * n0
        a = sum(float(kern[c][0].sum()) for c in members) / n_pairs
        b = sum(float(kern[c][1].sum()) for c in members) / n_pairs
        diff = sum(float((kern[c][0] - kern[c][1]).sum()) for c in members) / n_pairs
        p_value = None
        if n0 > 1 and n_pairs > n0:  # two or more images on each side
            v10, v01 = placements(np.concatenate([pos[c] for c in members], axis=1), neg)
            d10, d01 = v10[0] - v10[1], v01[0] - v01[1]
            p_value = _test(diff, _var(d10) / d10.size + _var(d01) / n0)[1]
        return row(members, (a, b), diff, sum(boot[c] for c in members) / n_pairs, p_value)

    def average(members: list[str]) -> Difference:
        t = len(members)
        per_type = [pooled([c]) for c in members]
        diff = sum(r.difference for r in per_type) / t
        point = (sum(r.auroc_a for r in per_type) / t, sum(r.auroc_b for r in per_type) / t)
        wins = sum(boot[c] / (pos[c].shape[1] * n0) for c in members) / t
        p_value = None
        if n0 > 1 and all(pos[c].shape[1] > 1 for c in members):
            var, shared = 0.0, np.zeros(n0)
            for c in members:
                v10, v01 = placements(pos[c], neg)
                var += _var(v10[0] - v10[1]) / (t * t * v10.shape[1])
                shared += (v01[0] - v01[1]) / t
            p_value = _test(diff, var + _var(shared) / n0)[1]
        return row(members, point, diff, wins, p_value)

    members = d.members("all")
    n_all = sum(pos[c].shape[1] for c in members) * n0
    return PairedDifferences(
        all=pooled(members),
        category={c: pooled([c]) for c in d.types},
        group={g: pooled(m) for g, m in d.groups.items()},
        average={g: average(m) for g, m in d.groups.items()},
        resamples=draw.resamples, seed=draw.seed, level=level,
        resampled_all=sum(boot[c] for c in members) / n_all,
    )


@dataclass(frozen=True)
class SeedSpread:
    """One subset's difference over seeds: mean, sample std (ddof=1; 0 for one seed), n,
    each seed's paired CI, and how many of those exclude 0."""

    mean: float
    std: float
    n: int
    cis: tuple[Interval, ...]
    excluding_zero: int


@dataclass(frozen=True)
class PairedOverSeeds:
    """Every subset of :class:`PairedDifferences`, summarised over seeds."""

    all: SeedSpread
    category: dict[str, SeedSpread]
    group: dict[str, SeedSpread]
    average: dict[str, SeedSpread]


def _spread(rows: list[Difference]) -> SeedSpread:
    v = np.array([r.difference for r in rows])
    return SeedSpread(mean=float(v.mean()), std=float(v.std(ddof=1)) if v.size > 1 else 0.0,
                      n=int(v.size), cis=tuple(r.ci for r in rows),
                      excluding_zero=sum(r.excludes_zero for r in rows))


def over_seeds(results: Sequence[PairedDifferences]) -> PairedOverSeeds:
    """Per-seed paired results (same subsets) as mean, spread and the per-seed CIs."""
    if not results:
        raise ValueError("over_seeds needs at least one seed's result")
    first = results[0]
    for r in results[1:]:
        for part in ("category", "group", "average"):
            if list(getattr(r, part)) != list(getattr(first, part)):
                raise ValueError(f"seeds differ in their {part} rows: "
                                 f"{list(getattr(first, part))} vs {list(getattr(r, part))}")
    return PairedOverSeeds(
        all=_spread([r.all for r in results]),
        **{part: {k: _spread([getattr(r, part)[k] for r in results])
                  for k in getattr(first, part)} for part in ("category", "group", "average")},
    )
