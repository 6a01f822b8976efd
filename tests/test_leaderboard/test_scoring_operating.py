"""Operating points: TPR@FPR, F1-max and AUPR equal scikit-learn's (with sample_weight for the
bootstrap's weighted versions) and a brute-force loop over thresholds, ties included; subsets
by column; CIs from the same stratified draw."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from leaderboard.scoring.operating import operating_points, weighted_metrics
from leaderboard.scoring.resampling import draw_for

FPRS = (0.01, 0.05, 0.2)
GROUP = {"good": "normal", "scratch": "local", "paint": "local", "over_coupling": "co_occurrence",
         "lacking": "co_occurrence"}
COUNTS = {"good": 40, "scratch": 8, "paint": 9, "over_coupling": 10, "lacking": 7}
TYPES = ["scratch", "paint", "over_coupling", "lacking"]


def _sklearn(s: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> dict[str, float]:
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    p, r, _ = precision_recall_curve(y, s, sample_weight=w)
    p, r = p[:-1], r[:-1]  # without the appended (precision 1, recall 0) end point
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    out = {f"tpr@{a}": float(tpr[fpr <= a].max()) for a in FPRS}
    out["f1_max"] = float(f1.max())
    out["aupr"] = float(average_precision_score(y, s, sample_weight=w))
    return out


def _brute(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """One threshold at a time: flag score >= t, for every distinct score."""
    pos, neg = float(w[y == 1].sum()), float(w[y == 0].sum())
    best = dict.fromkeys([f"tpr@{a}" for a in FPRS] + ["f1_max"], 0.0)
    points = []
    for t in sorted(set(s), reverse=True):
        tp, fp = float(w[(s >= t) & (y == 1)].sum()), float(w[(s >= t) & (y == 0)].sum())
        for a in FPRS:
            if fp / neg <= a:
                best[f"tpr@{a}"] = max(best[f"tpr@{a}"], tp / pos)
        if tp > 0:
            best["f1_max"] = max(best["f1_max"], 2 * tp / (2 * tp + fp + (pos - tp)))
        points.append((tp / pos, tp / (tp + fp) if tp + fp else 0.0))
    recall_before, ap = 0.0, 0.0
    for recall, precision in points:
        ap += (recall - recall_before) * precision
        recall_before = recall
    return {**best, "aupr": ap}


def _case(seed: int, n: int = 60, decimals: int = 1):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=n) + 1.2 * y, decimals)  # ties within and across classes
    return s, y


@pytest.mark.parametrize("seed", range(6))
def test_plain_metrics_equal_sklearn_and_brute_force(seed: int) -> None:
    s, y = _case(seed)
    got = weighted_metrics(s, y == 1, np.ones((1, len(s))), FPRS)
    want, brute = _sklearn(s, y, None), _brute(s, y, np.ones(len(s)))
    for key, value in want.items():
        assert got[key][0] == pytest.approx(value, abs=1e-9), key
        assert got[key][0] == pytest.approx(brute[key], abs=1e-9), key


@pytest.mark.parametrize("seed", range(6))
def test_weighted_metrics_equal_sklearn_with_sample_weight(seed: int) -> None:
    """Bootstrap counts, zeros included (an image not drawn), several rows at once."""
    s, y = _case(seed + 10, decimals=1 if seed % 2 else 0)
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 4, size=(5, len(s))).astype(float)
    w[:, :2] = np.maximum(w[:, :2], 1)  # each row keeps a normal and an anomaly
    got = weighted_metrics(s, y == 1, w, FPRS)
    for r in range(len(w)):
        want, brute = _sklearn(s, y, w[r]), _brute(s, y, w[r])
        for key, value in want.items():
            assert got[key][r] == pytest.approx(value, abs=1e-9), (r, key)
            assert got[key][r] == pytest.approx(brute[key], abs=1e-9), (r, key)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    cats = np.array([c for c, n in COUNTS.items() for _ in range(n)], dtype=object)
    y = (cats != "good").astype(int)
    shift = {"good": 0, "scratch": 2.5, "paint": 1.0, "over_coupling": 0.4, "lacking": -0.3}
    s = np.round(rng.normal(size=len(y)) + np.array([shift[c] for c in cats]), 1)
    order = rng.permutation(len(y))
    return s[order], y[order], cats[order], [GROUP[c] for c in cats[order]]


def test_subsets_by_column_measure_fpr_on_all_normals() -> None:
    s, y, cats, groups = _data()
    m = operating_points(s, y, cats, groups, max_fprs=FPRS, resamples=50)
    assert list(m.category) == TYPES and list(m.group) == ["local", "co_occurrence"]

    def check(row, sel) -> None:
        want = _sklearn(s[sel], y[sel], None)
        assert [t.tpr for t in row.tpr_at_fpr] == pytest.approx([want[f"tpr@{a}"] for a in FPRS],
                                                                abs=1e-9)
        assert row.f1_max.value == pytest.approx(want["f1_max"], abs=1e-9)
        assert row.aupr.value == pytest.approx(want["aupr"], abs=1e-9)
        assert row.n_normal == COUNTS["good"] and row.n_anomaly == int(y[sel].sum())

    check(m.all, np.ones(len(y), bool))
    for c in TYPES:
        check(m.category[c], (cats == "good") | (cats == c))
    check(m.group["local"], (cats == "good") | np.isin(cats, TYPES[:2]))
    assert [t.max_fpr for t in m.all.tpr_at_fpr] == list(FPRS)
    assert m.category["scratch"].tpr_at_fpr[0].tpr >= m.category["lacking"].tpr_at_fpr[0].tpr
    assert "test set's normal images" in m.threshold_rule


def test_cis_are_percentiles_of_sklearn_on_the_stratified_draw() -> None:
    s, y, cats, groups = _data(1)
    resamples, seed = 40, 3
    m = operating_points(s, y, cats, groups, max_fprs=FPRS, resamples=resamples, seed=seed,
                         level=0.9)
    rng = np.random.default_rng(seed)  # normals first, then each type in the layout's order
    w = np.zeros((resamples, len(y)))
    for c in ["good", *TYPES]:
        idx = np.flatnonzero(cats == c)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=resamples)
    sel = (cats == "good") | (cats == "paint")
    per = [_sklearn(s[sel], y[sel], w[r, sel]) for r in range(resamples)]
    row = m.category["paint"]
    for got, key in ((row.f1_max.ci, "f1_max"), (row.aupr.ci, "aupr"),
                     (row.tpr_at_fpr[1].ci, "tpr@0.05")):
        lo, hi = np.percentile([p[key] for p in per], [5, 95])
        assert (got.low, got.high) == pytest.approx((lo, hi), abs=1e-9), key
    shared = operating_points(s, y, cats, groups, max_fprs=FPRS, level=0.9,
                              draw=draw_for(y, cats, groups, resamples, seed))
    assert shared == m


def test_bad_inputs_are_refused() -> None:
    s, y, cats, groups = _data()
    with pytest.raises(ValueError, match="NaN or inf"):
        operating_points(np.where(y == 1, np.inf, s), y, cats, groups)
    with pytest.raises(ValueError, match="max_fprs"):
        operating_points(s, y, cats, groups, max_fprs=(5,))
    keep = cats != "lacking"
    other = draw_for(y[keep], cats[keep], [g for g, k in zip(groups, keep) if k], 10, 0)
    with pytest.raises(ValueError, match="draw was made for another test set"):
        operating_points(s, y, cats, groups, draw=other)
