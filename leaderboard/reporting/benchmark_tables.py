"""The leaderboard of a benchmark run (MVTec AD, BTAD, MVTec LOCO AD, a folder import): one
dataset per category, so one table row per category and the mean over categories, the paper's
Table 5 / 6 numbers beside ours where the data is the official copy (every category present with
its published image counts), LOCO's logical and structural AUROC per category, and the
localisation metrics where there are masks. A pure function of the records, like ``tables``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from leaderboard.records.schema import Record
from leaderboard.reporting.cells import (
    auroc_cell,
    backbone_text,
    budget_text,
    by_method,
    code_text,
    device_text,
    has_pixel_metrics,
    image_entry,
    input_text,
    last_finished,
    libraries_text,
    mean_of,
    pct,
    per_method,
    pixel_value,
    pooled,
    provenance_lines,
    row_label,
    seeds_text,
    whole,
)
from leaderboard.reporting.comparisons import (
    METRICS,
    Draws,
    benchmark_paired_table,
    estimate_cell,
    operating,
)
from leaderboard.reporting.sections import failures, leakage_banner
from leaderboard.reporting.studies import training_table
from leaderboard.scoring.auroc import resampled_auroc
from leaderboard.scoring.operating import THRESHOLD_RULE
from leaderboard.scoring.resampling import percentile_ci
from leaderboard.scoring.seeds import aggregate


def _label_of(reference: str | None, labels: dict[str, str]) -> str | None:
    """The row label ``--reference`` names (a method's name or its label)."""
    if reference is None:
        return None
    return labels.get(reference, reference)


def is_benchmark(records: Sequence[Record]) -> bool:
    return any(r.dataset.benchmark for r in records)


def _cells(records: Sequence[Record]) -> dict[tuple[str, str], list[Record]]:
    """(method row, category) -> the successful records (one per seed)."""
    out: dict[tuple[str, str], list[Record]] = {}
    for method, rs in by_method(records).items():
        for r in rs:
            out.setdefault((method, r.dataset.category), []).append(r)
    return out


def _value(records: list[Record] | None, value: Callable[[Record], float | None]
           ) -> float | None:
    if not records:
        return None
    return aggregate([value(r) for r in records]).mean


def _table(title: str, methods: list[str], categories: list[str], cell: Any,
           paper_row: dict[str, float] | None = None) -> list[str]:
    """One row per category, a column per method row (``methods``: their labels), the mean
    over categories, and the paper's means (``paper_row``: label -> value) when given."""
    lines = [f"## {title}", "", "| Category | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    columns: dict[str, list[float]] = {m: [] for m in methods}
    for cat in categories:
        row = []
        for m in methods:
            v = cell(m, cat)
            if v is not None:
                columns[m].append(v)
            row.append(pct(v))
        lines.append(f"| {cat} | " + " | ".join(row) + " |")
    means = [pct(float(np.mean(columns[m])) if len(columns[m]) == len(categories) else None)
             for m in methods]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    if paper_row is not None:
        lines.append("| paper (mean) | " + " | ".join(
            f"{paper_row[m]:.1f}" if m in paper_row else "" for m in methods) + " |")
    return [*lines, ""]


def _auroc_table(title: str, methods: list[str], categories: list[str],
                 records_of: Callable[[str, str], list[Record] | None], group: str | None,
                 draws: Draws, paper_row: dict[str, float] | None = None) -> list[str]:
    """Image AUROC per category with its CI (one seed: its 95% bootstrap CI; several: mean ±
    std over seeds), and the mean over categories with the CI of the resampled means (each
    category its own test set and draw; first seed). ``group``: that group's images pooled
    against the normals, else all anomalies."""
    pick = whole if group is None else pooled(group)
    lines = [f"## {title}", "", "| Category | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    for cat in categories:
        lines.append(f"| {cat} | " + " | ".join(
            auroc_cell(rs, pick) if (rs := records_of(m, cat)) else "n/a" for m in methods)
            + " |")
    means = []
    for m in methods:
        firsts = [rs[0] for cat in categories if (rs := records_of(m, cat))]
        if len(firsts) < len(categories) or any(image_entry(r, pick) is None for r in firsts):
            means.append("n/a")
            continue
        boots = []
        for r in firsts:
            s, y, cats, grps = ([x.score for x in r.scores], [x.label for x in r.scores],
                                [x.category for x in r.scores], [x.group for x in r.scores])
            boots.append(resampled_auroc(s, y, cats, grps, draws.of(r), group))
        value = float(np.mean([image_entry(r, pick).auroc for r in firsts]))
        ci = percentile_ci(np.mean(np.stack(boots), axis=0), 0.95)
        means.append(f"{pct(value)} [{pct(ci.low)}, {pct(ci.high)}]")
    lines.append("| **mean** | " + " | ".join(means) + " |")
    if paper_row is not None:
        lines.append("| paper (mean) | " + " | ".join(
            f"{paper_row[m]:.1f}" if m in paper_row else "" for m in methods) + " |")
    return [*lines, ""]


def catches_per_category(methods: list[str], categories: list[str],
                         records_of: Callable[[str, str], list[Record] | None],
                         draws: Draws) -> list[str]:
    """What each method catches in each category (all anomalies, first seed): TPR at FPR 1%
    and 5% (threshold on the category's test normals), F1-max and AUPR, with 95% CIs."""
    lines = ["## What it catches per category: operating points (first seed)", "",
             (f"Thresholds set on each category's test normals ({THRESHOLD_RULE}); 95% "
              f"bootstrap CIs ({draws.resamples} resamples)."), ""]
    for metric, get in METRICS.items():
        lines += [f"### {metric} (%)", "", "| Category | " + " | ".join(methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for cat in categories:
            cells = []
            for m in methods:
                rs = records_of(m, cat)
                cells.append(estimate_cell([get(operating(rs[0], draws).all)]) if rs
                             else "n/a")
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def spro_tables(methods: list[str], categories: list[str],
                records_of: Callable[[str, str], list[Record] | None]) -> list[str]:
    """MVTec LOCO AD's sPRO up to FPR 0.05 and 0.3: per category the mean over the logical and
    structural groups, then each group's, mean over seeds; the mean over categories last."""
    lines: list[str] = []
    missing = False
    for limit, key in ((0.05, "0_05"), (0.3, "0_3")):
        lines += [f"## sPRO (%) up to FPR {limit} per category: mean [logical / structural]", "",
                  "| Category | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        totals: dict[str, list[tuple[float, ...]]] = {m: [] for m in methods}
        for cat in categories:
            row = []
            for m in methods:
                recs = [r for r in records_of(m, cat) or [] if r.metrics]
                found = [r.metrics.spro for r in recs if r.metrics.spro is not None]
                missing |= len(found) < len(recs)
                if not found:
                    row.append("n/a")
                    continue
                means = [float(np.mean([getattr(f, f"mean_{key}") for f in found]))]
                means += [float(np.mean([getattr(f.group[g], f"fpr_{key}") for f in found
                                         if g in f.group])) if any(g in f.group for f in found)
                          else float("nan") for g in ("logical", "structural")]
                totals[m].append(tuple(means))
                row.append(f"{pct(means[0])} [{_pct_or_na(means[1])} / {_pct_or_na(means[2])}]")
            lines.append(f"| {cat} | " + " | ".join(row) + " |")
        means = [pct(float(np.mean([t[0] for t in totals[m]])))
                 if len(totals[m]) == len(categories) else "n/a" for m in methods]
        lines += ["| **mean** | " + " | ".join(means) + " |", ""]
    if missing:
        lines += [("- sPRO n/a: records written before sPRO was computed (schema 3 or older); "
                  "`bench run --force` recomputes them."), ""]
    return lines


def _pct_or_na(x: float) -> str:
    return "n/a" if math.isnan(x) else pct(x)


def render_benchmark(records: Sequence[Record], plots: Sequence[str] = (),
                     reference: str | None = None, draws: Draws | None = None) -> str:
    """The whole ``leaderboard.md`` of a benchmark run."""
    from cadsd import zoo

    ok = [r for r in records if r.ok] or list(records)
    bench = zoo.get(ok[0].dataset.benchmark)
    categories = sorted({r.dataset.category for r in ok},
                        key=lambda c: (bench.categories.index(c) if c in bench.categories else 99, c))
    official = (bool(bench.categories) and set(categories) == set(bench.categories)
                and all(r.dataset.published_counts for r in ok))
    cells = _cells(records)
    groups = by_method(records)
    labels = {m: row_label(m, rs) for m, rs in groups.items()}
    methods = list(labels.values())
    by_label = {labels[m]: m for m in groups}
    what = (bench.title[0].upper() + bench.title[1:] if bench.title.startswith("a folder")
            else f"{bench.title}'s layout")
    banner = (f"> **{bench.title}, the official copy** (every category, published counts): the "
              f"SA-PatchCore paper's means are shown as `paper`." if official else
              f"> **{what}, not the official copy**: its categories or image counts differ "
              "from the published ones, so the paper's numbers are not shown.")
    facts = [
        ("Benchmark", f"{bench.title} ({bench.citation}) from `{ok[0].dataset.source}`"),
        ("Licence", bench.license),
        ("Categories", ", ".join(categories)),
        ("Backbone", per_method(ok, backbone_text)),
        ("Budget", per_method(ok, budget_text)),
        ("Input", per_method(ok, input_text)),
        ("Device", device_text(ok)),
        ("Libraries", libraries_text(ok)),
        ("Code", code_text(ok)),
        ("Seeds", seeds_text(ok)),
        ("Date", last_finished(ok)),
    ]
    lines = [f"# {bench.title} leaderboard", "", banner, *leakage_banner(ok), "", "| | |",
             "|---|---|",
             *(f"| {k} | {v} |" for k, v in facts), ""]

    def records_of(m: str, cat: str) -> list[Record] | None:
        return cells.get((by_label[m], cat))

    draws = draws or Draws()
    lines += _auroc_table("Image AUROC (%) per category [95% CI]"
                          + (" (the paper's Table 5 / 6)" if official else ""),
                          methods, categories, records_of, None, draws,
                          ({labels[m]: bench.paper[m] for m in groups if m in bench.paper}
                           if official and bench.paper else None))
    if "logical" in bench.groups:
        for group in ("logical", "structural"):
            lines += _auroc_table(f"Image AUROC (%), {group} anomalies vs normal [95% CI]",
                                  methods, categories, records_of, group, draws)
    lines += benchmark_paired_table({(labels[m], c): rs for (m, c), rs in cells.items()},
                                    methods, categories, {v: v for v in methods},
                                    _label_of(reference, labels), draws)
    lines += catches_per_category(methods, categories, records_of, draws)
    if has_pixel_metrics(ok):
        def pixel(m: str, cat: str) -> float | None:
            return _value(cells.get((by_label[m], cat)), pixel_value)

        def pro(m: str, cat: str) -> float | None:
            return _value(cells.get((by_label[m], cat)),
                          lambda r: r.metrics.au_pro if r.metrics else None)

        lines += _table("Pixel AUROC (%) per category (point estimates: the maps of every test "
                        "image are not kept, so no bootstrap CI)", methods, categories, pixel)
        lines += _table("AU-PRO (%) up to FPR 0.3 per category", methods, categories, pro)
    if "logical" in bench.groups:
        lines += spro_tables(methods, categories, lambda m, cat: cells.get((by_label[m], cat)))
    lines += ["## Cost (mean over categories)", "",
              "| Method | ms/image, batch 1 (mean) | fit s | peak RSS MB |", "|---|---|---|---|"]
    for m, rs in groups.items():
        lines.append(f"| {labels[m]} | {mean_of(rs, lambda r: r.timing.latency_ms.mean):.1f} | "
                     f"{mean_of(rs, lambda r: r.timing.fit_s):.1f} | "
                     f"{mean_of(rs, lambda r: r.memory.peak_rss_mb):.0f} |")
    lines.append("")
    lines += training_table(groups) + failures(records)
    lines += ["## Notes", "",
              ("- One dataset per category: each category's methods are fitted on its own "
               "training images; AUROC compares its normal test images with its anomalous ones; "
               "the mean is over categories (the MVTec AD protocol)."),
              ("- AU-PRO: per-region overlap integrated up to a false-positive rate of 0.3, "
               "normalised (MVTec AD's localisation metric).")]
    if bench.notes:
        lines.append(f"- {bench.title}: {bench.notes}.")
    lines += provenance_lines(records)
    lines.append("")
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return "\n".join(lines)
