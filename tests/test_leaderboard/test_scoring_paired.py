"""Paired differences: DeLong's test against pROC's published worked example and a brute-force
transcription of DeLong et al. (1988); the paired bootstrap against sklearn on the same draw;
identical methods; mismatched images; the summary over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from leaderboard.scoring.paired import (
    delong_test,
    over_seeds,
    paired_differences,
)
from leaderboard.scoring.resampling import Interval

GROUP = {"good": "normal", "scratch": "local", "paint": "local", "over_coupling": "co_occurrence",
         "lacking": "co_occurrence"}
COUNTS = {"good": 30, "scratch": 8, "paint": 9, "over_coupling": 10, "lacking": 7}
TYPES = ["scratch", "paint", "over_coupling", "lacking"]


def _data(seed: int = 0):
    """Two methods on a shuffled CAD-SD-like test set, scores rounded (ties)."""
    rng = np.random.default_rng(seed)
    cats = np.array([c for c, n in COUNTS.items() for _ in range(n)], dtype=object)
    y = (cats != "good").astype(int)
    shift_a = {"good": 0, "scratch": 2.0, "paint": 1.0, "over_coupling": 0.8, "lacking": 0.5}
    shift_b = {"good": 0, "scratch": 1.5, "paint": 1.2, "over_coupling": 0.2, "lacking": -0.5}
    common = rng.normal(size=len(y))  # correlated methods, as on the same images
    a = np.round(common + rng.normal(size=len(y)) * 0.7 + [shift_a[c] for c in cats], 1)
    b = np.round(common + rng.normal(size=len(y)) * 0.7 + [shift_b[c] for c in cats], 1)
    order = rng.permutation(len(y))
    files = [f"test/{c}/{i:03d}.png" for i, c in enumerate(cats)]
    return (a[order], b[order], y[order], cats[order], [GROUP[c] for c in cats[order]],
            [files[i] for i in order])


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _components(s, pos, neg):
    """DeLong et al. (1988) eq. (2)-(4), one method: theta, V10 per positive, V01 per negative."""
    v10 = [sum(_psi(s[i], s[j]) for j in neg) / len(neg) for i in pos]
    v01 = [sum(_psi(s[i], s[j]) for i in pos) / len(pos) for j in neg]
    return sum(v10) / len(pos), v10, v01


def _cov(u, v, mu, mv):
    return sum((x - mu) * (y - mv) for x, y in zip(u, v)) / (len(u) - 1)


def _brute_delong(a, b, y):
    """The 1988 paper's S = S10/m + S01/n and z = L theta / sqrt(L S L'), L = (1, -1)."""
    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]
    (ta, a10, a01), (tb, b10, b01) = _components(a, pos, neg), _components(b, pos, neg)
    s10 = [[_cov(u, v, mu, mv) for v, mv in ((a10, ta), (b10, tb))] for u, mu in ((a10, ta), (b10, tb))]
    s01 = [[_cov(u, v, mu, mv) for v, mv in ((a01, ta), (b01, tb))] for u, mu in ((a01, ta), (b01, tb))]
    s = [[s10[r][c] / len(pos) + s01[r][c] / len(neg) for c in range(2)] for r in range(2)]
    var = s[0][0] + s[1][1] - 2 * s[0][1]
    z = (ta - tb) / math.sqrt(var)
    return ta - tb, z, math.erfc(abs(z) / math.sqrt(2))


def test_delong_reproduces_procs_published_example() -> None:
    """pROC's aSAH data and the values its tests pin for roc.test(method = "delong")
    (xrobin/pROC tests/testthat/test-roc.test.R): Z, p and the 95% CI of the difference."""
    data = json.loads((Path(__file__).parent / "data" / "asah.json").read_text())
    y = data["poor"]
    cases = [  # (A, B, Z, p, CI low, CI high)
        ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846,
         0.174214419249478),
        ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876,
         0.3600405634833566),
        ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914,
         0.0488706064228094),
    ]
    for a, b, z, p, lo, hi in cases:
        t = delong_test(data[a], data[b], y)
        assert t.z == pytest.approx(z, abs=1e-10) and t.p_value == pytest.approx(p, abs=1e-12)
        half = 1.959963984540054 * t.se  # qnorm(0.975)
        assert (t.difference - half, t.difference + half) == pytest.approx((lo, hi), abs=1e-10)
        back = delong_test(data[b], data[a], y)
        assert back.z == pytest.approx(-t.z) and back.p_value == pytest.approx(t.p_value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_the_brute_force_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(57) < 0.4).astype(int)
    a = np.round(rng.normal(size=57) + y, 1)  # ties within and across classes
    b = np.round(0.5 * a + rng.normal(size=57) + 0.5 * y, 1)
    t = delong_test(a, b, y)
    diff, z, p = _brute_delong(list(a), list(b), list(y))
    assert t.difference == pytest.approx(diff, abs=1e-12)
    assert t.z == pytest.approx(z, rel=1e-10) and t.p_value == pytest.approx(p, rel=1e-9)


def _brute_average_p(a, b, y, cats, types):
    """DeLong's components for a mean of per-type AUROCs sharing the negatives: each type's V10
    is its own sample, the negatives' component is the mean over types of their V01."""
    neg = [j for j in range(len(y)) if y[j] == 0]
    t = len(types)
    diff, var, shared_a, shared_b = 0.0, 0.0, [0.0] * len(neg), [0.0] * len(neg)
    for c in types:
        pos = [i for i in range(len(y)) if cats[i] == c]
        (ta, a10, a01), (tb, b10, b01) = _components(a, pos, neg), _components(b, pos, neg)
        diff += (ta - tb) / t
        d10 = [x - w for x, w in zip(a10, b10)]
        var += _cov(d10, d10, ta - tb, ta - tb) / (t * t * len(pos))
        shared_a = [s + x / t for s, x in zip(shared_a, a01)]
        shared_b = [s + x / t for s, x in zip(shared_b, b01)]
    d01 = [x - w for x, w in zip(shared_a, shared_b)]
    var += _cov(d01, d01, sum(d01) / len(d01), sum(d01) / len(d01)) / len(neg)
    return diff, math.erfc(abs(diff / math.sqrt(var)) / math.sqrt(2))


def test_subsets_match_sklearn_and_the_brute_force_tests() -> None:
    a, b, y, cats, groups, files = _data()
    r = paired_differences(a, b, y, cats, groups, files_a=files, files_b=files, resamples=200)
    assert list(r.category) == TYPES and list(r.group) == ["local", "co_occurrence"]

    def check(row, sel) -> None:
        auc_a, auc_b = roc_auc_score(y[sel], a[sel]), roc_auc_score(y[sel], b[sel])
        assert (row.auroc_a, row.auroc_b) == pytest.approx((auc_a, auc_b), abs=1e-12)
        assert row.difference == pytest.approx(auc_a - auc_b, abs=1e-12)
        _, _, p = _brute_delong(list(a[sel]), list(b[sel]), list(y[sel]))
        assert row.p_value == pytest.approx(p, rel=1e-9)
        assert row.n_normal == COUNTS["good"] and row.n_anomaly == int(y[sel].sum())

    check(r.all, np.ones(len(y), bool))
    for c in TYPES:
        check(r.category[c], (cats == "good") | (cats == c))
    for g, members in (("local", TYPES[:2]), ("co_occurrence", TYPES[2:])):
        check(r.group[g], (cats == "good") | np.isin(cats, members))
        diff, p = _brute_average_p(list(a), list(b), list(y), list(cats), members)
        assert r.average[g].difference == pytest.approx(diff, abs=1e-12)
        assert r.average[g].p_value == pytest.approx(p, rel=1e-9)
        assert r.average[g].difference == pytest.approx(
            np.mean([r.category[c].difference for c in members]), abs=1e-12)


def test_the_ci_resamples_the_same_images_for_both_methods() -> None:
    """Rebuild the draw by hand (normals, then each type in the layout's order, as
    metrics.image_metrics draws): each resample's difference is sklearn's weighted AUROC of A
    minus that of B under the SAME counts."""
    a, b, y, cats, groups, files = _data(1)
    resamples, seed = 60, 7
    r = paired_differences(a, b, y, cats, groups, files_a=files, files_b=files,
                           resamples=resamples, seed=seed, level=0.9)
    rng = np.random.default_rng(seed)
    w = np.zeros((resamples, len(y)))
    for c in ["good", *TYPES]:
        idx = np.flatnonzero(cats == c)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=resamples)
    for c in TYPES:
        sel = (cats == "good") | (cats == c)
        diffs = [roc_auc_score(y[sel], a[sel], sample_weight=w[k, sel])
                 - roc_auc_score(y[sel], b[sel], sample_weight=w[k, sel]) for k in range(resamples)]
        lo, hi = np.percentile(diffs, [5, 95])
        assert (r.category[c].ci.low, r.category[c].ci.high) == pytest.approx((lo, hi), abs=1e-12)
        assert r.category[c].excludes_zero == (lo > 0 or hi < 0)


def test_identical_methods_differ_by_exactly_zero() -> None:
    a, _, y, cats, groups, files = _data()
    r = paired_differences(a, a.copy(), y, cats, groups, files_a=files, files_b=list(files))
    for row in (r.all, *r.category.values(), *r.group.values(), *r.average.values()):
        assert row.difference == 0.0 and row.ci == Interval(0.0, 0.0)
        assert row.p_value == 1.0 and not row.excludes_zero
        assert isinstance(row.difference, float) and type(row.ci.low) is float
    assert delong_test(a, a, y).p_value == 1.0


def test_a_clear_winner_is_marked_and_a_constant_method_has_no_nan() -> None:
    a, _, y, cats, groups, files = _data()
    perfect = y + 0.01 * np.arange(len(y)) / len(y)  # every anomaly above every normal
    flat = np.zeros(len(y))
    r = paired_differences(perfect, flat, y, cats, groups, files_a=files, files_b=files,
                           resamples=300)
    assert r.all.difference == 0.5 and r.all.excludes_zero and r.all.p_value == 0.0
    mixed = paired_differences(perfect, a, y, cats, groups, files_a=files, files_b=files,
                               resamples=300)
    assert mixed.all.difference > 0 and mixed.all.p_value < 0.05 and mixed.all.excludes_zero


def test_a_type_of_one_image_has_a_ci_but_no_p_value() -> None:
    a, b, y, cats, groups, files = _data()
    keep = (cats != "lacking") | (np.cumsum(cats == "lacking") == 1)  # one lacking image left
    g = [x for x, k in zip(groups, keep) if k]
    f = [x for x, k in zip(files, keep) if k]
    r = paired_differences(a[keep], b[keep], y[keep], cats[keep], g, files_a=f, files_b=f,
                           resamples=100)
    assert r.category["lacking"].n_anomaly == 1 and r.category["lacking"].p_value is None
    assert r.average["co_occurrence"].p_value is None
    assert r.group["co_occurrence"].p_value is not None and r.all.p_value is not None
    assert r.category["paint"].p_value is not None


def test_rows_of_different_images_are_not_paired() -> None:
    a, b, y, cats, groups, files = _data()
    other = list(files)
    other[3] = "test/paint/999.png"
    with pytest.raises(ValueError, match=r"image 3 is .* for A but 'test/paint/999.png' for B"):
        paired_differences(a, b, y, cats, groups, files_a=files, files_b=other)
    with pytest.raises(ValueError, match="A scored 64 images, B 63"):
        paired_differences(a, b, y, cats, groups, files_a=files, files_b=files[:-1])
    with pytest.raises(ValueError, match="NaN or inf"):
        paired_differences(np.full(len(y), np.nan), b, y, cats, groups, files_a=files,
                           files_b=files)


def test_over_seeds_mean_spread_and_per_seed_cis() -> None:
    runs = []
    for seed in range(3):
        a, b, y, cats, groups, files = _data(seed)
        runs.append(paired_differences(a, b, y, cats, groups, files_a=files, files_b=files,
                                       resamples=100))
    summary = over_seeds(runs)
    diffs = [r.category["lacking"].difference for r in runs]
    assert summary.category["lacking"].mean == pytest.approx(np.mean(diffs))
    assert summary.category["lacking"].std == pytest.approx(np.std(diffs, ddof=1))
    assert summary.category["lacking"].cis == tuple(r.category["lacking"].ci for r in runs)
    assert summary.all.n == 3 and summary.all.excluding_zero == sum(r.all.excludes_zero
                                                                     for r in runs)
    one = over_seeds(runs[:1])
    assert one.average["local"].std == 0.0 and one.average["local"].n == 1
    a, b, y, cats, groups, files = _data(0)
    keep = cats != "lacking"
    fewer = paired_differences(a[keep], b[keep], y[keep], cats[keep],
                               [g for g, k in zip(groups, keep) if k],
                               files_a=[f for f, k in zip(files, keep) if k],
                               files_b=[f for f, k in zip(files, keep) if k], resamples=50)
    with pytest.raises(ValueError, match="seeds differ in their category rows"):
        over_seeds([runs[0], fewer])
