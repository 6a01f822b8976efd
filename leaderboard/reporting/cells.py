"""How a leaderboard cell reads the records: which AUROC entry (``whole``, ``per_type``...),
one seed's ``97.6 [95.1, 99.0]`` or several seeds' ``97.6 ± 0.4``, a method's row label, and
the facts (backbone, budget, device...) the tables' headers print. Pure functions of records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cadsd.format.layout import CATEGORY_NAMES
from leaderboard.records.schema import AUROC, Average, ImageAUROC, Record
from leaderboard.scoring.seeds import aggregate

#: picks one entry of a record's image AUROC (``whole``, ``per_type("paint")``, ...)
Pick = Callable[[ImageAUROC], AUROC | Average | None]

#: other processes' CPU use (cores) above which a cell's timing is flagged as taken under load
LOADED_CORES = 0.25
TYPE_LABELS = {"good": "Normal", "scratch": "Scratch", "paint": "Paint", "over_coupling": "Over-coupling",
               "lacking": "Lacking"}
GROUP_LABELS = {"local": "local", "co_occurrence": "co-occurrence"}


def whole(m: ImageAUROC) -> AUROC:
    """All test images (Table 2)."""
    return m.all


def per_type(c: str) -> Pick:
    """Normal images vs anomaly type ``c`` (Table 3's rows)."""
    return lambda m: m.category.get(c)


def pooled(g: str) -> Pick:
    """Normal images vs all of group ``g``'s images."""
    return lambda m: m.group.get(g)


def averaged(g: str) -> Pick:
    """The mean of group ``g``'s per-type AUROCs (Table 3's Average rows)."""
    return lambda m: m.average.get(g)


def image_entry(record: Record, pick: Pick) -> AUROC | Average | None:
    """One entry of a record's image AUROC, None for a failed cell or a type it lacks."""
    return None if record.metrics is None else pick(record.metrics.image_auroc)


def by_method(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Successful records grouped by method (and K for few-shot cells), in record order."""
    out: dict[str, list[Record]] = {}
    for r in records:
        if r.ok:
            out.setdefault(r.row_key(), []).append(r)
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def auroc_cell(records: list[Record], pick: Pick) -> str:
    """One seed: ``97.6 [95.1, 99.0]`` (95% CI); several: ``97.6 ± 0.4`` (std over seeds)."""
    entries = [image_entry(r, pick) for r in records]
    if len(records) == 1:
        e = entries[0]
        if e is None:
            return "n/a"
        return f"{pct(e.auroc)} [{pct(e.ci.low)}, {pct(e.ci.high)}]"
    agg = aggregate([None if e is None else e.auroc for e in entries])
    if agg.mean is None:
        return "n/a"
    return f"{pct(agg.mean)} {spread(records, agg.std)}"


def seeds_identical(records: Sequence[Record]) -> bool:
    """Several seeds whose per-image scores are all the same (the seed changes nothing, e.g.
    no random projection is drawn): their spread is not a measured ± 0.0."""
    scored = [[(s.file_name, s.score) for s in r.scores] for r in records]
    return len(records) > 1 and all(scored) and all(s == scored[0] for s in scored[1:])


def spread(records: Sequence[Record], std: float) -> str:
    """``± 0.4`` over seeds, or ``(deterministic)`` when every seed gave the same scores."""
    return "(deterministic)" if seeds_identical(records) else f"± {pct(std)}"


def paper_note(value: float | None) -> str:
    return "" if value is None else f" · paper {value:.1f}"


def distinct(records: Sequence[Record], value: Callable[[Record], Any]) -> str:
    vals = list(dict.fromkeys(str(v) if (v := value(r)) is not None else "n/a"
                              for r in records))
    return ", ".join(vals) if vals else "n/a"


def is_real(records: Sequence[Record]) -> bool:
    return bool(records) and all(r.dataset.kind == "cadsd" for r in records)


def anomaly_types(records: Sequence[Record]) -> list[str]:
    """The anomaly types the records report, in the layout's order."""
    seen = {c for r in records if r.metrics for c in r.metrics.image_auroc.category}
    rank = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    return sorted(seen, key=lambda c: (rank.get(c, len(rank)), c))


def group_of(records: Sequence[Record]) -> dict[str, str]:
    return {s.category: s.group for r in records for s in r.scores}


#: how a row names where its method comes from (built-in methods: nothing)
ORIGIN_LABELS = {"project": "this project's method, not from a paper",
                 "import path": "outside method", "entry point": "outside method"}


def row_label(method: str, records: Sequence[Record]) -> str:
    """A method's row name: with its budget when that is not the paper's settings, so a row
    trained on a shortened budget never passes for the paper's method, and with its origin
    when it is not one of the built-in methods (an outside method, this project's own)."""
    budgets = {r.method.budget for r in records} - {None, "paper"}
    if records and records[0].method.origin == "anomalib":  # `patchcore · anomalib 2.7.0`
        versions = ", ".join(sorted({str(r.method.distribution_version) for r in records}))
        method = f"{method.removeprefix('anomalib-')} · anomalib {versions}"
    marks = [ORIGIN_LABELS[o] for o in dict.fromkeys(r.method.origin for r in records)
             if o in ORIGIN_LABELS]
    if budgets:
        marks.append(f"budget {', '.join(sorted(budgets))}")
    return f"{method} ({'; '.join(marks)})" if marks else method


def provenance_lines(records: Sequence[Record]) -> list[str]:
    """One note per outside method: its import path, package and source file's sha256."""
    out = []
    for method, recs in by_method(records).items():
        m = recs[0].method
        if not m.outside:
            continue
        package = (f"package {m.distribution} {m.distribution_version or ''}".rstrip()
                   if m.distribution else "not from an installed package")
        sha = distinct(recs, lambda r: r.method.source_sha256)
        out.append(f"- `{method}` is an outside method ({m.origin} `{m.target}`, {package}; "
                   f"source `{m.source_file}` sha256 `{sha}`).")
    return out


def per_method(records: Sequence[Record], describe: Callable[[list[Record]], str]) -> str:
    """``a, b: X; c: Y``: one value per method, methods with the same value grouped."""
    groups: dict[str, list[str]] = {}
    for method, recs in by_method(records).items() or {None: list(records)}.items():
        value = "n/a" if method is None else describe(recs)
        groups.setdefault(value, []).append(method or "all")
    return "; ".join(f"{', '.join(ms)}: {v}" if len(groups) > 1 else v for v, ms in groups.items())


def no_backbone(recs: Sequence[Record], short: bool = False) -> str:
    """What a method without a pretrained backbone has instead: a network trained from
    scratch (Patch SVDD), or nothing to train."""
    trained = any(r.model and r.model.trained_parameters for r in recs)
    return ("none (from scratch)" if short else "none (trained from scratch)") if trained else "none"


def backbone_text(recs: Sequence[Record]) -> str:
    name = distinct(recs, lambda r: r.backbone.name)
    if name in ("n/a", "None"):
        return no_backbone(recs)
    return (f"{name}, weights {distinct(recs, lambda r: r.backbone.weights)} "
            f"(sha256 `{distinct(recs, lambda r: r.backbone.weights_sha256)}`)")


def budget_text(recs: Sequence[Record]) -> str:
    budget = distinct(recs, lambda r: r.method.budget)
    if budget in ("n/a", "None"):
        return "none (no training)"
    changes = recs[0].method.budget_overrides
    what = ", ".join(f"{k} {v}" for k, v in changes.items())
    text = f"{budget}" + (f" ({what})" if what else " (the official settings)")
    extra = recs[0].method.overrides
    return text + (" + --param " + ", ".join(f"{k} {v}" for k, v in extra.items()) if extra else "")


def input_text(recs: Sequence[Record]) -> str:
    return distinct(recs, lambda r: r.input.describe() if r.input else None)


def device_text(records: Sequence[Record]) -> str:
    """``cpu (AMD EPYC), torch threads 2``: the devices the cells ran on."""
    return (f"{distinct(records, lambda r: r.environment.device)} "
            f"({distinct(records, lambda r: r.environment.device_name)}), "
            f"torch threads {distinct(records, lambda r: r.environment.threads)}")


def libraries_text(records: Sequence[Record]) -> str:
    return ", ".join(f"{k} {v}" for k, v in records[0].environment.versions.items())


def code_text(records: Sequence[Record]) -> str:
    return f"git {distinct(records, lambda r: r.environment.git_sha)}"


def seeds_text(records: Sequence[Record]) -> str:
    return ", ".join(str(s) for s in sorted({r.seed for r in records}))


def last_finished(records: Sequence[Record]) -> str:
    """When the last cell ended (ISO time)."""
    return max(r.environment.finished_at or "" for r in records)


def pixel_value(record: Record, category: str | None = None) -> float | None:
    """Pixel AUROC over all test images, or of one anomaly type; None without masks."""
    px = record.metrics.pixel_auroc if record.metrics else None
    if px is None:
        return None
    return px.all if category is None else px.category.get(category)


def pixel_cell(records: list[Record], category: str | None = None) -> str:
    agg = aggregate([pixel_value(r, category) for r in records])
    if agg.mean is None:
        return "n/a"
    return pct(agg.mean) + (f" {spread(records, agg.std)}" if agg.n > 1 else "")


def mean_of(records: Sequence[Record], value: Callable[[Record], float]) -> float:
    return float(np.mean([value(r) for r in records]))


def has_pixel_metrics(records: Sequence[Record]) -> bool:
    return any(r.metrics and r.metrics.pixel_auroc for r in records)


def seed_cell(records: list[Record], pick: Pick) -> str:
    entries = [e for r in records if (e := image_entry(r, pick)) is not None]
    if not entries:
        return "n/a"
    agg = aggregate([e.auroc for e in entries])
    lo = float(np.mean([e.ci.low for e in entries]))
    hi = float(np.mean([e.ci.high for e in entries]))
    sd = f" {spread(records, agg.std)}" if len(entries) > 1 else ""
    return f"{pct(agg.mean)}{sd} [{pct(lo)}, {pct(hi)}]"
