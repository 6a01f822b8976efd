"""The answers readers ask for (issue 34), rendered from records: paired differences against a
reference row, what each method catches, CIs on every image AUROC of a benchmark's tables."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from leaderboard.perf.tables import fabricated
from leaderboard.records.schema import Record, Score
from leaderboard.reporting.cells import by_method
from leaderboard.reporting.comparisons import Draws, pair_rows, paired_table, reference_row
from leaderboard.reporting.report import render_markdown
from leaderboard.reporting.results_csv import render_csv
from leaderboard.scoring.auroc import image_metrics


def _renamed(r: Record, name: str, scores: np.ndarray | None = None) -> Record:
    """``r`` as method ``name`` (and, if given, with other per-image scores)."""
    cell = dataclasses.replace(r.cell, id=r.cell.id.replace(r.method.name, name), method=name)
    out = dataclasses.replace(r, cell=cell, method=dataclasses.replace(r.method, name=name))
    if scores is not None:
        s = r.scores
        out.scores = [dataclasses.replace(x, score=float(v)) for x, v in zip(s, scores)]
        out.metrics = dataclasses.replace(r.metrics, image_auroc=image_metrics(
            scores, [x.label for x in s], [x.category for x in s], [x.group for x in s],
            resamples=100))
    return out


@pytest.fixture(scope="module")
def records() -> list[Record]:
    """method0..2 (one seed), an identical copy of method1, and a method that finds lacking."""
    base = fabricated(3, 1, resamples=100)
    twin = _renamed(base[1], "twin")
    s = np.array([x.score for x in base[0].scores])
    lacking = np.array([x.category == "lacking" for x in base[0].scores])
    finder = _renamed(base[0], "finder", s + 3.0 * lacking)  # method0, plus lacking found
    return [*base, twin, finder]


def test_identical_methods_differ_by_exactly_zero(records: list[Record]) -> None:
    groups = by_method(records)
    (twin,) = [p for p in pair_rows(groups, "method1", Draws()) if p.key == "twin"]
    d = twin.results[0]
    for row in (d.all, *d.category.values(), *d.group.values(), *d.average.values()):
        assert row.difference == 0.0 and (row.ci.low, row.ci.high) == (0.0, 0.0)
        assert row.p_value == 1.0 and not row.excludes_zero
    table = "\n".join(paired_table(groups, "method1", Draws()))
    assert "| twin | +0.0 [+0.0, +0.0] p 1.000 |" in table


def test_a_method_that_finds_lacking_beats_its_base_there_with_a_ci_excluding_0(
        records: list[Record]) -> None:
    groups = by_method(records)
    table = paired_table(groups, "method0", Draws())
    head = next(line for line in table if line.startswith("| Method"))
    row = next(line for line in table if line.startswith("| finder"))
    cells = dict(zip(head.strip("|").split(" | ")[1:], row.strip("|").split(" | ")[1:]))
    assert cells["Lacking"].startswith("**+") and cells["Scratch"].startswith("+0.0 [+0.0")
    (finder,) = [p for p in pair_rows(groups, "method0", Draws()) if p.key == "finder"]
    lacking = finder.results[0].category["lacking"]
    ours = records[-1].metrics.image_auroc.category["lacking"].auroc
    base = records[0].metrics.image_auroc.category["lacking"].auroc
    assert lacking.difference == pytest.approx(ours - base) and lacking.ci.low > 0
    assert lacking.p_value < 0.05


def test_the_reference_is_the_best_row_unless_named(records: list[Record]) -> None:
    groups = by_method(records)
    best = max(groups, key=lambda k: groups[k][0].metrics.image_auroc.all.auroc)
    assert reference_row(groups, None) == best
    assert reference_row(groups, "method1") == "method1"
    assert "No row is `nosuch`" in "\n".join(paired_table(groups, "nosuch"))
    board = render_markdown(records, reference="method2")
    assert "## Paired differences against `method2`" in board


def test_rows_that_scored_other_images_are_not_paired(records: list[Record]) -> None:
    other = _renamed(records[2], "other")
    other.scores = [Score(**{**dataclasses.asdict(x), "file_name": "x" + x.file_name})
                    for x in other.scores]
    table = "\n".join(paired_table(by_method([*records[:2], other]), "method0"))
    assert "| other | not paired: image 0 is 'xtest/good/000.jpg'" in table


def test_several_seeds_give_the_mean_difference_its_spread_and_per_seed_cis() -> None:
    records = fabricated(2, 3, resamples=100)
    (pair,) = pair_rows(by_method(records), "method0", Draws())
    assert [s for s, _ in pair.seeds] == [0, 1, 2] and len(pair.results) == 3
    diffs = [r.all.difference for r in pair.results]
    line = next(x for x in paired_table(by_method(records), "method0") if x.startswith("| method1"))
    assert f"{100 * np.mean(diffs):+.1f} ± {100 * np.std(diffs, ddof=1):.1f} (" in line


def test_what_it_catches_equals_scikit_learn(records: list[Record]) -> None:
    frame = pd.read_csv(io.StringIO(render_csv(records)))
    for i, r in enumerate(records):
        s = np.array([x.score for x in r.scores])
        y = np.array([x.label for x in r.scores])
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        assert frame.loc[i, "operating.all.tpr_at_fpr_0.01"] == pytest.approx(
            tpr[fpr <= 0.01].max(), abs=1e-9)
        assert frame.loc[i, "operating.all.tpr_at_fpr_0.05"] == pytest.approx(
            tpr[fpr <= 0.05].max(), abs=1e-9)
        p, rec, _ = precision_recall_curve(y, s)
        f1 = np.max(2 * p[:-1] * rec[:-1] / np.maximum(p[:-1] + rec[:-1], 1e-300))
        assert frame.loc[i, "operating.all.f1_max"] == pytest.approx(f1, abs=1e-9)
        assert frame.loc[i, "operating.all.aupr"] == pytest.approx(
            average_precision_score(y, s), abs=1e-9)
        lacking = np.array([x.category in ("good", "lacking") for x in r.scores])
        fpr, tpr, _ = roc_curve(y[lacking], s[lacking], drop_intermediate=False)
        assert frame.loc[i, "operating.category.lacking.tpr_at_fpr_0.01"] == pytest.approx(
            tpr[fpr <= 0.01].max(), abs=1e-9)
        assert frame.loc[i, "operating.all.aupr.ci.low"] <= frame.loc[i, "operating.all.aupr"]
    board = render_markdown(records)
    assert "## What it catches: operating points" in board and "### TPR at FPR 1% (%)" in board


def _benchmark(records: list[Record], category: str) -> list[Record]:
    out = []
    for r in records:
        d = dataclasses.replace(r.dataset, name=f"mvtec_ad-{category}", benchmark="mvtec_ad",
                                category=category, kind="mvtec_ad",
                                fingerprint=category[0] * 64)
        cell = dataclasses.replace(r.cell, dataset=d.name,
                                   id=r.cell.id.replace("synthetic", d.name))
        out.append(dataclasses.replace(r, dataset=d, cell=cell))
    return out


def test_a_benchmarks_category_tables_show_cis_and_a_mean_with_its_ci(
        records: list[Record]) -> None:
    recs = _benchmark(records[:3], "bottle") + _benchmark(records[:3], "cable")
    board = render_markdown(recs)
    table = board[board.index("## Image AUROC (%) per category"):]
    bottle = next(x for x in table.splitlines() if x.startswith("| bottle"))
    e = records[1].metrics.image_auroc.all
    assert f"{100 * e.auroc:.1f} [{100 * e.ci.low:.1f}, {100 * e.ci.high:.1f}]" in bottle
    mean = next(x for x in table.splitlines() if x.startswith("| **mean**"))
    assert mean.count("[") == 3
    assert "Paired differences against" in board and "per category" in board
    assert "a folder in" not in board  # the official name's layout here
    assert "MVTec AD's layout, not the official copy**: its categories" in board
