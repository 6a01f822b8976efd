"""What a method catches at an operating point: TPR at a fixed FPR, F1-max and AUPR, overall
and per anomaly type and group, each with a bootstrap CI.

Definitions (an image is flagged when its score is >= the threshold; thresholds run over the
distinct scores of the subset):

* **TPR@FPR<=a**: the largest TPR over thresholds whose FPR on the test's normal images is
  <= a, i.e. the threshold is set on the TEST normals (as PBn does), not on held-out data; it is
  the max TPR over scikit-learn's ``roc_curve`` points with fpr <= a (``drop_intermediate=
  False``: the default drops collinear points, which can hide the best one). 0 when no
  threshold qualifies. With n normal images, FPR <= a allows floor(a n) false alarms (CAD-SD's
  210 normals: 2 at 1%, 10 at 5%).
* **F1-max**: the largest F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN) over thresholds
  (``precision_recall_curve`` without its appended (precision 1, recall 0) end point).
  It depends on the share of anomalies, so per-type rows are not comparable with ``all``.
* **AUPR**: average precision, the step-wise sum over thresholds of (R_k - R_{k-1}) P_k
  (``average_precision_score``), not the trapezoidal area.

Subsets: ``all`` (every normal vs every anomalous image); ``category[c]``: ALL normal images
vs the images of type c (so a per-type FPR is always measured on all normals); ``group[g]``:
all normals vs the group's images pooled.

CIs: the stratified bootstrap of :mod:`.resampling` (the draw ``metrics.image_metrics`` makes
from the same seed), computed with weights, vectorised over resamples: each subset's scores are
sorted once and grouped by distinct score; cumulative weighted TP / FP counts at each group's
end give every resample's curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from leaderboard.scoring.resampling import (
    CI_METHOD,
    Draw,
    Interval,
    design,
    percentile_ci,
    stratified_draw,
)

MAX_FPRS = (0.01, 0.05)
THRESHOLD_RULE = ("thresholds set on the test set's normal images (as PBn); per-type rows "
                  "measure the FPR on all normal images")


@dataclass(frozen=True)
class Estimate:
    """A point value and its bootstrap CI."""

    value: float
    ci: Interval


@dataclass(frozen=True)
class TprAtFpr:
    """TPR at the best threshold whose FPR on the normals is <= ``max_fpr``."""

    max_fpr: float
    tpr: float
    ci: Interval


@dataclass(frozen=True)
class OperatingRow:
    """One subset's operating-point metrics."""

    tpr_at_fpr: tuple[TprAtFpr, ...]
    f1_max: Estimate
    aupr: Estimate
    n_normal: int
    n_anomaly: int


@dataclass(frozen=True)
class OperatingPoints:
    """One method on one test set: all, per type, per group (pooled)."""

    all: OperatingRow
    category: dict[str, OperatingRow]
    group: dict[str, OperatingRow]
    max_fprs: tuple[float, ...]
    resamples: int
    seed: int
    level: float
    threshold_rule: str = THRESHOLD_RULE
    ci_method: str = CI_METHOD


def weighted_metrics(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray,
                     max_fprs: Sequence[float] = MAX_FPRS) -> dict[str, np.ndarray]:
    """Every metric for each row of ``weights`` (R, N): ``{"tpr@<a>": (R,), "f1_max": (R,),
    "aupr": (R,)}``. ``scores`` (N,), ``positive`` (N,) bool; a row of ones is the plain
    (unweighted) value. Each row needs a positive and a negative weight."""
    order = np.argsort(-scores, kind="stable")
    ends = np.flatnonzero(np.append(np.diff(scores[order]) != 0, True))  # last of each tie group
    w = weights[:, order]
    is_pos = positive[order]
    tp = np.cumsum(w * is_pos, axis=1)[:, ends]  # (R, G) weighted counts at each threshold
    fp = np.cumsum(w * ~is_pos, axis=1)[:, ends]
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    if (n_pos <= 0).any() or (n_neg <= 0).any():
        raise ValueError("every weighting needs a positive and a negative weight")
    tpr, fpr = tp / n_pos, fp / n_neg
    out = {f"tpr@{a}": np.where(fpr <= a, tpr, 0.0).max(axis=1) for a in max_fprs}
    out["f1_max"] = (2 * tp / (tp + fp + n_pos)).max(axis=1)
    flagged = tp + fp
    # a threshold nothing is flagged at (all weights 0 so far) adds no recall: precision 0
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    recall_step = np.diff(tpr, axis=1, prepend=0.0)
    out["aupr"] = (recall_step * precision).sum(axis=1)
    return out


def operating_points(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    categories: Sequence[str],
    groups: Sequence[str],
    *,
    max_fprs: Sequence[float] = MAX_FPRS,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    draw: Draw | None = None,
) -> OperatingPoints:
    """TPR@FPR, F1-max and AUPR with bootstrap CIs for all, each type and each group.

    ``draw`` (from :func:`~leaderboard.scoring.resampling.draw_for`) shares one bootstrap
    draw between calls on one test set; it replaces ``resamples`` and ``seed``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf; the detector produced invalid scores")
    fprs = tuple(float(a) for a in max_fprs)
    if any(not 0 <= a <= 1 for a in fprs):
        raise ValueError(f"max_fprs must lie in [0, 1], got {fprs}")
    d = design(labels, categories, groups, len(s))
    if draw is None:
        draw = stratified_draw(d, resamples, seed)
    draw.check(d)
    w_all = draw.weights(d, len(s))  # (R, N)

    def row(members: list[str]) -> OperatingRow:
        idx = np.concatenate([d.normal, d.anomalies(members)])
        pos = np.arange(idx.size) >= d.normal.size
        point = weighted_metrics(s[idx], pos, np.ones((1, idx.size)), fprs)
        boot = weighted_metrics(s[idx], pos, w_all[:, idx], fprs)

        def est(key: str) -> Estimate:
            return Estimate(value=float(point[key][0]), ci=percentile_ci(boot[key], level))

        return OperatingRow(
            tpr_at_fpr=tuple(TprAtFpr(max_fpr=a, tpr=est(f"tpr@{a}").value,
                                      ci=est(f"tpr@{a}").ci) for a in fprs),
            f1_max=est("f1_max"), aupr=est("aupr"),
            n_normal=int(d.normal.size), n_anomaly=int(idx.size - d.normal.size))

    return OperatingPoints(
        all=row(d.members("all")),
        category={c: row([c]) for c in d.types},
        group={g: row(m) for g, m in d.groups.items()},
        max_fprs=fprs, resamples=draw.resamples, seed=draw.seed, level=level,
    )
