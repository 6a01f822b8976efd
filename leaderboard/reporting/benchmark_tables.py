"""The leaderboard of a benchmark run (MVTec AD, BTAD, MVTec LOCO AD, a folder import): one
dataset per category, so one table row per category and the mean over categories, the paper's
Table 5 / 6 numbers beside ours where the data is the official copy (every category present with
its published image counts), LOCO's logical and structural AUROC per category, and the
localisation metrics where there are masks. A pure function of the records, like ``tables``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from leaderboard.records.schema import Record
from leaderboard.reporting.cells import (
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
from leaderboard.reporting.sections import failures
from leaderboard.reporting.studies import training_table
from leaderboard.scoring.seeds import aggregate


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


def _auroc(pick: Any) -> Callable[[Record], float | None]:
    return lambda r: None if (e := image_entry(r, pick)) is None else e.auroc


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


def render_benchmark(records: Sequence[Record], plots: Sequence[str] = ()) -> str:
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
    banner = (f"> **{bench.title}, the official copy** (every category, published counts): the "
              f"SA-PatchCore paper's means are shown as `paper`." if official else
              f"> **{bench.title} layout, not the official copy** (categories or image counts "
              "differ from the published ones): the paper's numbers are not shown.")
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
    lines = [f"# {bench.title} leaderboard", "", banner, "", "| | |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in facts), ""]

    def image(m: str, cat: str) -> float | None:
        return _value(cells.get((by_label[m], cat)), _auroc(whole))

    lines += _table("Image AUROC (%) per category" + (" (the paper's Table 5 / 6)" if official
                                                      else ""),
                    methods, categories, image,
                    ({labels[m]: bench.paper[m] for m in groups if m in bench.paper}
                     if official and bench.paper else None))
    if "logical" in bench.groups:
        for group in ("logical", "structural"):
            def grouped(m: str, cat: str, group: str = group) -> float | None:
                return _value(cells.get((by_label[m], cat)), _auroc(pooled(group)))

            lines += _table(f"Image AUROC (%), {group} anomalies vs normal", methods, categories,
                            grouped)
    if has_pixel_metrics(ok):
        def pixel(m: str, cat: str) -> float | None:
            return _value(cells.get((by_label[m], cat)), pixel_value)

        def pro(m: str, cat: str) -> float | None:
            return _value(cells.get((by_label[m], cat)),
                          lambda r: r.metrics.au_pro if r.metrics else None)

        lines += _table("Pixel AUROC (%) per category", methods, categories, pixel)
        lines += _table("AU-PRO (%) up to FPR 0.3 per category", methods, categories, pro)
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
