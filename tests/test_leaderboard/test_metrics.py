"""Metrics: AUROC per type selected by the category column (checked against sklearn on a
shuffled order), group averages, bootstrap intervals, and exact pixel AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from leaderboard.scoring.auroc import auroc, image_metrics, pixel_auroc
from leaderboard.scoring.seeds import aggregate

GROUP = {"good": "normal", "scratch": "local", "paint": "local", "over_coupling": "co_occurrence",
         "lacking": "co_occurrence"}
COUNTS = {"good": 30, "scratch": 8, "paint": 9, "over_coupling": 10, "lacking": 7}


def _data(seed: int = 0, shuffle: bool = True):
    rng = np.random.default_rng(seed)
    cats = np.array([c for c, n in COUNTS.items() for _ in range(n)], dtype=object)
    y = (cats != "good").astype(int)
    shift = {"good": 0, "scratch": 2.0, "paint": 1.0, "over_coupling": 0.3, "lacking": -0.5}
    s = np.round(rng.normal(size=len(y)) + np.array([shift[c] for c in cats]), 1)  # ties
    order = rng.permutation(len(y)) if shuffle else np.arange(len(y))
    return s[order], y[order], cats[order], [GROUP[c] for c in cats[order]]


def test_per_category_matches_sklearn_on_shuffled_order() -> None:
    s, y, cats, groups = _data()
    m = image_metrics(s, y, cats, groups, resamples=100)
    assert m.all.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    for c in ("scratch", "paint", "over_coupling", "lacking"):
        sel = (cats == "good") | (cats == c)
        assert m.category[c].auroc == pytest.approx(roc_auc_score(y[sel], s[sel]), abs=1e-12)
        assert m.category[c].n_anomaly == COUNTS[c]
    for g, members in (("local", ("scratch", "paint")), ("co_occurrence", ("over_coupling", "lacking"))):
        sel = (cats == "good") | np.isin(cats, members)
        assert m.group[g].auroc == pytest.approx(roc_auc_score(y[sel], s[sel]), abs=1e-12)
        mean = np.mean([m.category[c].auroc for c in members])
        assert m.average[g].auroc == pytest.approx(mean, abs=1e-12)
        assert m.average[g].types == list(members)
    assert list(m.category) == ["scratch", "paint", "over_coupling", "lacking"]


def test_order_does_not_matter() -> None:
    a = image_metrics(*_data(shuffle=False), resamples=300, seed=3)
    b = image_metrics(*_data(shuffle=True), resamples=300, seed=3)
    for c in a.category:
        assert a.category[c].auroc == b.category[c].auroc


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    s, y, cats, groups = _data()
    a = image_metrics(s, y, cats, groups, resamples=500, seed=0)
    b = image_metrics(s, y, cats, groups, resamples=500, seed=0)
    c = image_metrics(s, y, cats, groups, resamples=500, seed=1)
    assert a.all.ci == b.all.ci
    assert a.all.ci != c.all.ci
    for entry in (a.all, *a.category.values(), *a.group.values(), *a.average.values()):
        lo, hi = entry.ci.low, entry.ci.high
        assert 0 <= lo <= entry.auroc <= hi <= 1
        assert hi - lo > 0.01  # 30 normals: the interval cannot be degenerate


def test_bootstrap_matches_a_plain_resampling_loop() -> None:
    # the pair-weighting shortcut must equal resampling and recomputing with sklearn
    s, y, cats, groups = _data()
    m = image_metrics(s, y, cats, groups, resamples=400, seed=7)
    rng = np.random.default_rng(7)
    neg = np.flatnonzero(cats == "good")
    pos = {c: np.flatnonzero(cats == c) for c in ("scratch", "paint", "over_coupling", "lacking")}
    q = rng.multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=400)
    draws = {c: rng.multinomial(len(i), np.full(len(i), 1 / len(i)), size=400) for c, i in pos.items()}
    values = []
    for r in range(400):
        idx = np.concatenate([np.repeat(neg, q[r]), *(np.repeat(pos[c], draws[c][r]) for c in pos)])
        values.append(roc_auc_score(y[idx], s[idx]))
    ci = m.all.ci
    assert [ci.low, ci.high] == pytest.approx(list(np.percentile(values, [2.5, 97.5])), abs=1e-9)


def test_invalid_inputs_raise() -> None:
    s, y, cats, groups = _data()
    with pytest.raises(ValueError, match="NaN"):
        image_metrics(np.where(np.arange(len(s)) == 0, np.nan, s), y, cats, groups)
    with pytest.raises(ValueError, match="both"):
        image_metrics(s, np.zeros_like(y), cats, groups)


def test_pixel_auroc_exact_with_ties() -> None:
    rng = np.random.default_rng(0)
    cats = np.array(["good"] * 3 + ["scratch"] * 2 + ["lacking"] * 2)
    y = (cats != "good").astype(int)
    maps = np.round(rng.random((7, 16, 16)), 1).astype(np.float32)
    masks = np.zeros((7, 16, 16), bool)
    masks[y == 1, 4:9, 4:9] = True
    maps[masks] += 0.2
    p = pixel_auroc(maps, masks, y, cats)
    assert p.all == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-9)
    for c in ("scratch", "lacking"):
        sel = (cats == "good") | (cats == c)
        assert p.category[c] == pytest.approx(
            roc_auc_score(masks[sel].ravel(), maps[sel].ravel()), abs=1e-9)
    assert pixel_auroc(maps, np.zeros_like(masks), y, cats) is None


def test_auroc_and_aggregate() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    agg = aggregate([0.5, 0.7, None])
    assert agg.mean == pytest.approx(0.6) and agg.std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert agg.n == 2 and aggregate([None]).mean is None
