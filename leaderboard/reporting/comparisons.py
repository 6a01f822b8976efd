"""The answers a reader asks for beside AUROC: which method is better and by how much (paired
differences against a reference row), and what each one catches at an operating point.

Pure functions of the records' per-image scores (:mod:`leaderboard.scoring.paired`,
:mod:`leaderboard.scoring.operating`), so `bench leaderboard` adds them to any run folder.

* **Paired differences**: every row against the reference (``--reference METHOD``; default the
  row with the best mean image AUROC over all test images), seed by seed on the seeds both
  have (else against the reference's first seed, said in the cell). Rows whose records did not
  score the same images (file names, order) are not paired. One bootstrap draw per test set
  serves every comparison on it.
* **What it catches**: TPR at FPR 1% and 5% (the threshold set on the test normals), F1-max
  and AUPR, overall, per type and per group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from leaderboard.records.schema import Record
from leaderboard.reporting.cells import GROUP_LABELS, TYPE_LABELS, pct, row_label
from leaderboard.scoring.operating import (
    MAX_FPRS,
    THRESHOLD_RULE,
    OperatingPoints,
    operating_points,
)
from leaderboard.scoring.paired import P_METHOD, PairedDifferences, mismatch, paired_differences
from leaderboard.scoring.resampling import Draw, draw_for, percentile_ci

#: bootstrap resamples of the paired comparisons and operating points
RESAMPLES = 2000


def _scores(r: Record) -> tuple[np.ndarray, list[int], list[str], list[str], list[str]]:
    s = r.scores
    return (np.array([x.score for x in s], np.float64), [x.label for x in s],
            [x.category for x in s], [x.group for x in s], [x.file_name for x in s])


class Draws:
    """One bootstrap draw per test set (its file names), shared by every comparison on it,
    and each record's operating points once computed (the tables and ``results.csv`` of one
    rendering read them both)."""

    def __init__(self, resamples: int = RESAMPLES) -> None:
        self.resamples = resamples
        self._draws: dict[tuple[str, ...], Draw] = {}
        self.operating: dict[int, OperatingPoints] = {}

    def of(self, r: Record) -> Draw:
        _, y, cats, grps, files = _scores(r)
        key = tuple(files)
        if key not in self._draws:
            self._draws[key] = draw_for(y, cats, grps, self.resamples, seed=0)
        return self._draws[key]


# -- paired differences -----------------------------------------------------------------------
def reference_row(groups: dict[str, list[Record]], reference: str | None) -> str | None:
    """The reference row: ``reference`` (a row key or a method's name) if the section has it,
    else the row with the best mean image AUROC over all test images (full training sets
    before few-shot rows)."""
    if reference is not None:
        for key, recs in groups.items():
            if reference in (key, recs[0].method.name):
                return key
        return None
    full = {k: rs for k, rs in groups.items() if rs[0].cell.shots is None} or groups
    return max(full, key=lambda k: float(np.mean([r.metrics.image_auroc.all.auroc
                                                  for r in full[k]])), default=None)


@dataclass
class Paired:
    """One row against the reference: per seed paired results, or why it is not paired."""

    key: str
    results: list[PairedDifferences]
    seeds: list[tuple[int, int]]  # (row seed, reference seed)
    why_not: str | None = None


def pair_rows(groups: dict[str, list[Record]], ref: str, draws: Draws) -> list[Paired]:
    """Every row of ``groups`` (same K as the reference) against the reference row."""
    ref_recs = {r.seed: r for r in groups[ref]}
    out = []
    for key, recs in groups.items():
        if key == ref or recs[0].cell.shots != groups[ref][0].cell.shots:
            continue
        mine = {r.seed: r for r in recs}
        common = sorted(set(mine) & set(ref_recs))
        pairs = ([(s, s) for s in common] if common
                 else [(s, min(ref_recs)) for s in sorted(mine)])
        results, why = [], None
        for seed, ref_seed in pairs:
            a, b = mine[seed], ref_recs[ref_seed]
            sa, y, cats, grps, fa = _scores(a)
            sb, *_, fb = _scores(b)
            why = mismatch(fa, fb)
            if why is not None:
                break
            results.append(paired_differences(sa, sb, y, cats, grps, files_a=fa, files_b=fb,
                                              draw=draws.of(a)))
        out.append(Paired(key, [] if why else results, pairs, why))
    return out


def _diff_cell(rows: Sequence, seeds: list[tuple[int, int]]) -> str:
    """One seed: ``+3.1 [1.2, 5.0] p 0.002``; several: ``+3.1 ± 0.8 (3/3 CIs exclude 0)``;
    bold where the CI excludes 0 (every seed's, with several)."""
    if not rows or any(r is None for r in rows):
        return "n/a"
    if len(rows) == 1:
        d = rows[0]
        p = "" if d.p_value is None else f" p {_p(d.p_value)}"
        text = f"{100 * d.difference:+.1f} [{100 * d.ci.low:+.1f}, {100 * d.ci.high:+.1f}]{p}"
        mark = d.excludes_zero
    else:
        v = np.array([r.difference for r in rows])
        n = sum(r.excludes_zero for r in rows)
        text = f"{100 * v.mean():+.1f} ± {100 * v.std(ddof=1):.1f} ({n}/{len(rows)} CIs exclude 0)"
        mark = n == len(rows)
    if seeds and seeds[0][0] != seeds[0][1]:
        text += f" vs seed {seeds[0][1]}"
    return f"**{text}**" if mark else text


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def paired_table(groups: dict[str, list[Record]], reference: str | None = None,
                 draws: Draws | None = None) -> list[str]:
    """Image AUROC differences (points) of every row against the reference: all, each type,
    each group's average."""
    if len(groups) < 2:
        return []
    draws = draws or Draws()
    ref = reference_row(groups, reference)
    if ref is None:
        return ["## Paired differences", "", (f"No row is `{reference}`: "
                f"choose --reference from {', '.join(f'`{k}`' for k in groups)}."), ""]
    first = next(r for rs in groups.values() for r in rs)
    types = list(first.metrics.image_auroc.category)
    avgs = list(first.metrics.image_auroc.average)
    head = ["all", *(TYPE_LABELS.get(c, c) for c in types),
            *(f"Average ({GROUP_LABELS.get(g, g)})" for g in avgs)]
    lines = [(f"## Paired differences against `{row_label(ref, groups[ref])}` (image AUROC, "
             "points)"), "",
             ("Each row minus the reference on the same test images, with a paired bootstrap "
              f"95% CI ({draws.resamples} resamples: the same images for both methods, normals "
              f"and each type resampled separately) and the p-value of {P_METHOD}. **Bold**: "
              "the CI excludes 0. Several seeds: mean ± std over seeds, and how many seeds' "
              "CIs exclude 0."), "",
             "| Method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for p in pair_rows(groups, ref, draws):
        label = row_label(p.key, groups[p.key])
        if p.why_not:
            lines.append(f"| {label} | not paired: {p.why_not} |" + " |" * (len(head) - 1))
            continue
        picks: list[Callable[[PairedDifferences], object]] = [
            lambda r: r.all, *(lambda r, c=c: r.category.get(c) for c in types),
            *(lambda r, g=g: r.average.get(g) for g in avgs)]
        cells = [_diff_cell([pick(r) for r in p.results], p.seeds) for pick in picks]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def benchmark_paired_table(cells: dict[tuple[str, str], list[Record]], methods: list[str],
                           categories: list[str], labels: dict[str, str],
                           reference: str | None = None, draws: Draws | None = None
                           ) -> list[str]:
    """A benchmark's categories: each row's ``all`` difference against the reference per
    category (paired CI), and the mean over categories with the CI of the resampled means
    (categories are independent test sets, each with its own draw); first seed of each."""
    if len(methods) < 2:
        return []
    draws = draws or Draws()
    per_method = {m: [r for c in categories for r in cells.get((m, c), [])[:1]] for m in methods}
    means = {m: float(np.mean([r.metrics.image_auroc.all.auroc for r in rs]))
             for m, rs in per_method.items() if rs}
    ref = next((m for m in methods if reference in (m, labels[m])), None) if reference \
        else max(means, key=means.get, default=None)
    if ref is None:
        return []
    lines = [(f"## Paired differences against `{labels[ref]}` per category (image AUROC, "
             "points; first seed)"), "",
             ("Paired bootstrap 95% CI per category; the mean's CI averages the categories' "
              "resampled differences. **Bold**: the CI excludes 0."), "",
             "| Method | " + " | ".join(categories) + " | **mean** |",
             "|---|" + "---|" * (len(categories) + 1)]
    for m in methods:
        if m == ref:
            continue
        row, boots, diffs = [], [], []
        for cat in categories:
            a, b = cells.get((m, cat), [])[:1], cells.get((ref, cat), [])[:1]
            if not a or not b:
                row.append("n/a")
                continue
            sa, y, cats, grps, fa = _scores(a[0])
            sb, *_, fb = _scores(b[0])
            why = mismatch(fa, fb)
            if why is not None:
                row.append("not paired")
                continue
            res = paired_differences(sa, sb, y, cats, grps, files_a=fa, files_b=fb,
                                     draw=draws.of(a[0]))
            row.append(_diff_cell([res.all], []))
            boots.append(res.resampled_all)
            diffs.append(res.all.difference)
        if boots and len(boots) == len(categories):
            ci = percentile_ci(np.mean(np.stack(boots), axis=0), 0.95)
            text = (f"{100 * np.mean(diffs):+.1f} [{100 * ci.low:+.1f}, "
                    f"{100 * ci.high:+.1f}]")
            row.append(f"**{text}**" if ci.excludes(0.0) else text)
        else:
            row.append("n/a")
        lines.append(f"| {labels[m]} | " + " | ".join(row) + " |")
    return [*lines, ""]


# -- what it catches --------------------------------------------------------------------------
def operating(r: Record, draws: Draws) -> OperatingPoints:
    """One record's operating points (same draw as its test set's comparisons)."""
    if id(r) not in draws.operating:
        s, y, cats, grps, _ = _scores(r)
        draws.operating[id(r)] = operating_points(s, y, cats, grps, draw=draws.of(r))
    return draws.operating[id(r)]


METRICS: dict[str, Callable] = {
    f"TPR at FPR {int(100 * a)}%": (lambda row, i=i: (row.tpr_at_fpr[i].tpr, row.tpr_at_fpr[i].ci))
    for i, a in enumerate(MAX_FPRS)
} | {"F1-max": lambda row: (row.f1_max.value, row.f1_max.ci),
     "AUPR": lambda row: (row.aupr.value, row.aupr.ci)}


def estimate_cell(values: list[tuple[float, object]]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        v, ci = values[0]
        return f"{pct(v)} [{pct(ci.low)}, {pct(ci.high)}]"  # type: ignore[attr-defined]
    arr = np.array([v for v, _ in values])
    lo = float(np.mean([ci.low for _, ci in values]))  # type: ignore[attr-defined]
    hi = float(np.mean([ci.high for _, ci in values]))  # type: ignore[attr-defined]
    return f"{pct(arr.mean())} ± {pct(arr.std(ddof=1))} [{pct(lo)}, {pct(hi)}]"


def catches_tables(groups: dict[str, list[Record]], draws: Draws | None = None) -> list[str]:
    """"What it catches": per metric a table of rows x (all, each type, each group pooled)."""
    if not groups:
        return []
    draws = draws or Draws()
    points = {k: [operating(r, draws) for r in rs] for k, rs in groups.items()}
    first = next(iter(points.values()))[0]
    subsets = [("all", lambda p: p.all)]
    subsets += [(TYPE_LABELS.get(c, c), lambda p, c=c: p.category.get(c)) for c in first.category]
    subsets += [(f"{GROUP_LABELS.get(g, g)}, pooled", lambda p, g=g: p.group.get(g))
                for g in first.group]
    lines = ["## What it catches: operating points", "",
             (f"Each image is flagged when its score reaches the threshold; {THRESHOLD_RULE} "
              "(so *TPR at FPR 1%* is the share of defects caught when at most 1 in 100 good "
              "parts is rejected). F1-max: the best F1 over thresholds (it depends on the share "
              "of anomalies, so per-type values are not comparable with *all*); AUPR: average "
              f"precision. 95% CIs: bootstrap ({draws.resamples} resamples, normals and each "
              "type resampled separately); several seeds: mean ± std [mean of the CIs]."), ""]
    head = [name for name, _ in subsets]
    for metric, get in METRICS.items():
        lines += [f"### {metric} (%)", "", "| Method | " + " | ".join(head) + " |",
                  "|---|" + "---|" * len(head)]
        for key, ps in points.items():
            cells = []
            for _, pick in subsets:
                rows = [pick(p) for p in ps]
                cells.append(estimate_cell([get(r) for r in rows if r is not None]))
            lines.append(f"| {row_label(key, groups[key])} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def operating_columns(records: Sequence[Record], draws: Draws | None = None
                      ) -> list[dict[str, float]]:
    """Per record, the operating points as flat columns for ``results.csv`` / parquet:
    ``operating.<subset>.<metric>`` with ``.ci.low`` / ``.ci.high`` (fractions); empty for
    a failed cell."""
    draws = draws or Draws()
    out = []
    for r in records:
        if not r.ok or not r.scores:
            out.append({})
            continue
        p = operating(r, draws)
        row: dict[str, float] = {}
        parts = {"all": p.all, **{f"category.{c}": v for c, v in p.category.items()},
                 **{f"group.{g}": v for g, v in p.group.items()}}
        for subset, values in parts.items():
            for t in values.tpr_at_fpr:
                name = f"operating.{subset}.tpr_at_fpr_{t.max_fpr:g}"
                row |= {name: t.tpr, f"{name}.ci.low": t.ci.low, f"{name}.ci.high": t.ci.high}
            for metric, est in (("f1_max", values.f1_max), ("aupr", values.aupr)):
                name = f"operating.{subset}.{metric}"
                row |= {name: est.value, f"{name}.ci.low": est.ci.low,
                        f"{name}.ci.high": est.ci.high}
        out.append(row)
    return out
