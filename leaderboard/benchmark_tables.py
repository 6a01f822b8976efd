"""The leaderboard of a benchmark run (MVTec AD, BTAD, MVTec LOCO AD, a folder import): one
dataset per category, so one table row per category and the mean over categories, the paper's
Table 5 / 6 numbers beside ours where the data is the official copy (every category present with
its published image counts), LOCO's logical and structural AUROC per category, and the
localisation metrics where there are masks. A pure function of the records, like ``tables``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from leaderboard.metrics import aggregate
from leaderboard.tables import (
    _backbone_text,
    _budget_text,
    _distinct,
    _pct,
    _per_method,
    by_method,
    failures,
    get,
    row_label,
    training_table,
)


def is_benchmark(records: Sequence[dict[str, Any]]) -> bool:
    return any(get(r, "dataset", "benchmark") for r in records)


def _cells(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(method row, category) -> the successful records (one per seed)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for method, rs in by_method(records).items():
        for r in rs:
            out.setdefault((method, r["dataset"]["category"]), []).append(r)
    return out


def _value(records: list[dict[str, Any]] | None, *path: str) -> float | None:
    if not records:
        return None
    return aggregate([get(r, *path) for r in records])["mean"]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else _pct(v)


def _table(title: str, methods: list[str], categories: list[str], cell: Any,
           paper_row: dict[str, float] | None = None) -> list[str]:
    lines = [f"## {title}", "", "| Category | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    columns: dict[str, list[float]] = {m: [] for m in methods}
    for cat in categories:
        row = []
        for m in methods:
            v = cell(m, cat)
            if v is not None:
                columns[m].append(v)
            row.append(_fmt(v))
        lines.append(f"| {cat} | " + " | ".join(row) + " |")
    means = [_fmt(float(np.mean(columns[m])) if len(columns[m]) == len(categories) else None)
             for m in methods]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    if paper_row is not None:
        lines.append("| paper (mean) | " + " | ".join(
            f"{paper_row[m.split(' (')[0]]:.1f}" if m.split(" (")[0] in paper_row else ""
            for m in methods) + " |")
    return [*lines, ""]


def render_benchmark(records: Sequence[dict[str, Any]], plots: Sequence[str] = ()) -> str:
    """The whole ``leaderboard.md`` of a benchmark run."""
    from cadsd import zoo

    ok = [r for r in records if r["status"] == "ok"] or list(records)
    bench = zoo.get(ok[0]["dataset"]["benchmark"])
    categories = sorted({r["dataset"]["category"] for r in ok},
                        key=lambda c: (bench.categories.index(c) if c in bench.categories else 99, c))
    official = (bool(bench.categories) and set(categories) == set(bench.categories)
                and all(get(r, "dataset", "published_counts") for r in ok))
    cells = _cells(records)
    groups = by_method(records)
    labels = {m: row_label(m, rs) for m, rs in groups.items()}
    methods = list(labels.values())
    by_label = {labels[m]: m for m in groups}
    banner = (f"> **{bench.title}, the official copy** (every category, published counts): the "
              f"SA-PatchCore paper's means are shown as `paper`." if official else
              f"> **{bench.title} layout, not the official copy** (categories or image counts "
              "differ from the published ones): the paper's numbers are not shown.")
    env = ok[0]["environment"]
    facts = [
        ("Benchmark", f"{bench.title} ({bench.citation}) from `{ok[0]['dataset']['source']}`"),
        ("Licence", bench.license),
        ("Categories", ", ".join(categories)),
        ("Backbone", _per_method(ok, _backbone_text)),
        ("Budget", _per_method(ok, _budget_text)),
        ("Input", _per_method(ok, lambda rs: _distinct(rs, "input", "description"))),
        ("Device", (f"{_distinct(ok, 'environment', 'device')} "
                    f"({_distinct(ok, 'environment', 'device_name')}), torch threads "
                    f"{_distinct(ok, 'environment', 'threads')}")),
        ("Libraries", ", ".join(f"{k} {v}" for k, v in env["versions"].items())),
        ("Code", f"git {_distinct(ok, 'environment', 'git_sha')}"),
        ("Seeds", ", ".join(str(s) for s in sorted({r["seed"] for r in ok}))),
        ("Date", max(get(r, "environment", "finished_at") or "" for r in ok)),
    ]
    lines = [f"# {bench.title} leaderboard", "", banner, "", "| | |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in facts), ""]

    def image(m: str, cat: str) -> float | None:
        return _value(cells.get((by_label[m], cat)), "metrics", "image_auroc", "all", "auroc")

    lines += _table("Image AUROC (%) per category" + (" (the paper's Table 5 / 6)" if official
                                                      else ""),
                    methods, categories, image, bench.paper if official and bench.paper else None)
    if "logical" in bench.groups:
        for group in ("logical", "structural"):
            def grouped(m: str, cat: str, group: str = group) -> float | None:
                return _value(cells.get((by_label[m], cat)), "metrics", "image_auroc", "group",
                              group, "auroc")

            lines += _table(f"Image AUROC (%), {group} anomalies vs normal", methods, categories,
                            grouped)
    if any(get(r, "metrics", "pixel_auroc") for r in ok):
        def pixel(m: str, cat: str) -> float | None:
            return _value(cells.get((by_label[m], cat)), "metrics", "pixel_auroc", "all")

        def pro(m: str, cat: str) -> float | None:
            return _value(cells.get((by_label[m], cat)), "metrics", "au_pro")

        lines += _table("Pixel AUROC (%) per category", methods, categories, pixel)
        lines += _table("AU-PRO (%) up to FPR 0.3 per category", methods, categories, pro)
    lines += ["## Cost (mean over categories)", "",
              "| Method | ms/image, batch 1 (mean) | fit s | peak RSS MB |", "|---|---|---|---|"]
    for m, rs in groups.items():
        def mean(*p: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(np.mean([get(r, *p) for r in rs]))

        lines.append(f"| {labels[m]} | {mean('timing', 'latency_ms', 'mean'):.1f} | "
                     f"{mean('timing', 'fit_s'):.1f} | {mean('memory', 'peak_rss_mb'):.0f} |")
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
    lines.append("")
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return "\n".join(lines)
