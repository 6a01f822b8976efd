"""The leaderboard: markdown laid out like the paper's Tables 2, 3 and 4.

Pure functions of the result records: every number printed here is read from a record (or is
the mean/std of records over seeds), so `bench leaderboard RUN_DIR` rebuilds the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cadsd.format.layout import CATEGORY_NAMES, GROUP_NAMES
from leaderboard.records.schema import AUROC, Average, ImageAUROC, Record
from leaderboard.reporting import paper
from leaderboard.running.metrics import aggregate

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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def auroc_cell(records: list[Record], pick: Pick) -> str:
    """One seed: ``97.6 [95.1, 99.0]`` (95% CI); several: ``97.6 ± 0.4`` (std over seeds)."""
    entries = [image_entry(r, pick) for r in records]
    if len(records) == 1:
        e = entries[0]
        if e is None:
            return "n/a"
        return f"{_pct(e.auroc)} [{_pct(e.ci.low)}, {_pct(e.ci.high)}]"
    agg = aggregate([None if e is None else e.auroc for e in entries])
    if agg.mean is None:
        return "n/a"
    return f"{_pct(agg.mean)} ± {_pct(agg.std)}"


def _paper(value: float | None) -> str:
    return "" if value is None else f" · paper {value:.1f}"


def _distinct(records: Sequence[Record], value: Callable[[Record], Any]) -> str:
    vals = list(dict.fromkeys(str(v) if (v := value(r)) is not None else "n/a"
                              for r in records))
    return ", ".join(vals) if vals else "n/a"


def _is_real(records: Sequence[Record]) -> bool:
    return bool(records) and all(r.dataset.kind == "cadsd" for r in records)


def anomaly_types(records: Sequence[Record]) -> list[str]:
    """The anomaly types the records report, in the layout's order."""
    seen = {c for r in records if r.metrics for c in r.metrics.image_auroc.category}
    rank = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    return sorted(seen, key=lambda c: (rank.get(c, len(rank)), c))


def _group_of(records: Sequence[Record]) -> dict[str, str]:
    return {s.category: s.group for r in records for s in r.scores}


def row_label(method: str, records: Sequence[Record]) -> str:
    """A method's row name: with its budget when that is not the paper's settings, so a row
    trained on a shortened budget never passes for the paper's method."""
    budgets = {r.method.budget for r in records} - {None, "paper"}
    return f"{method} (budget {', '.join(sorted(budgets))})" if budgets else method


def _per_method(records: Sequence[Record], describe: Callable[[list[Record]], str]) -> str:
    """``a, b: X; c: Y``: one value per method, methods with the same value grouped."""
    groups: dict[str, list[str]] = {}
    for method, recs in by_method(records).items() or {None: list(records)}.items():
        value = "n/a" if method is None else describe(recs)
        groups.setdefault(value, []).append(method or "all")
    return "; ".join(f"{', '.join(ms)}: {v}" if len(groups) > 1 else v for v, ms in groups.items())


def _backbone_text(recs: Sequence[Record]) -> str:
    name = _distinct(recs, lambda r: r.backbone.name)
    if name in ("n/a", "None"):
        return "none (trained from scratch)"
    return (f"{name}, weights {_distinct(recs, lambda r: r.backbone.weights)} "
            f"(sha256 `{_distinct(recs, lambda r: r.backbone.weights_sha256)}`)")


def _budget_text(recs: Sequence[Record]) -> str:
    budget = _distinct(recs, lambda r: r.method.budget)
    if budget in ("n/a", "None"):
        return "none (no training)"
    changes = recs[0].method.budget_overrides
    what = ", ".join(f"{k} {v}" for k, v in changes.items())
    text = f"{budget}" + (f" ({what})" if what else " (the official settings)")
    extra = recs[0].method.overrides
    return text + (" + --param " + ", ".join(f"{k} {v}" for k, v in extra.items()) if extra else "")


def _input_text(recs: Sequence[Record]) -> str:
    return _distinct(recs, lambda r: r.input.describe() if r.input else None)


def device_text(records: Sequence[Record]) -> str:
    """``cpu (AMD EPYC), torch threads 2``: the devices the cells ran on."""
    return (f"{_distinct(records, lambda r: r.environment.device)} "
            f"({_distinct(records, lambda r: r.environment.device_name)}), "
            f"torch threads {_distinct(records, lambda r: r.environment.threads)}")


def libraries_text(records: Sequence[Record]) -> str:
    return ", ".join(f"{k} {v}" for k, v in records[0].environment.versions.items())


def code_text(records: Sequence[Record]) -> str:
    return f"git {_distinct(records, lambda r: r.environment.git_sha)}"


def seeds_text(records: Sequence[Record]) -> str:
    return ", ".join(str(s) for s in sorted({r.seed for r in records}))


def last_finished(records: Sequence[Record]) -> str:
    """When the last cell ended (ISO time)."""
    return max(r.environment.finished_at or "" for r in records)


def header(records: Sequence[Record]) -> list[str]:
    """Title, the real-or-synthetic banner and the facts table."""
    d = records[0].dataset
    kind = d.kind
    lines = ["# CAD-SD leaderboard", ""]
    if kind == "cadsd":
        lines.append(f"> **Dataset: the real CAD-SD.** The paper's numbers ({paper.CITATION}) "
                     "are shown beside ours as `· paper`.")
    elif kind == "synthetic":
        lines.append("> **Dataset: SYNTHETIC CAD-SD** (procedural stand-in from `cadsd synth`), "
                     "NOT the paper's data. The paper's numbers are not comparable and are not "
                     "shown. Get the real CAD-SD with `cadsd download`, then "
                     "`bench run --dataset cadsd`.")
    else:
        lines.append(f"> **Dataset: {d.name}** ({d.source}), not the real CAD-SD from "
                     "`cadsd download`: the paper's numbers are not shown.")
    test = ", ".join(f"{c} {n}" for c, n in d.split_counts("test").items())
    train = sum(d.split_counts("train").values())
    env = records[0].environment
    loads = [r.memory.other_cpu_cores for r in records if r.memory]
    mask_note = ", with masks" if d.has_masks else ""
    gen = d.generator
    generator = ("; drawn by `cadsd synth` with " + ", ".join(f"{k} {v}" for k, v in gen.items())
                 if gen else "")
    facts = [
        ("Dataset", f"{d.name} ({kind}{mask_note}) from `{d.source}`{generator}"),
        ("Fingerprint", ", ".join(f"`{f}`" for f in
                                  dict.fromkeys(r.dataset.fingerprint for r in records))),
        ("Images", f"train {train}; test {test}"),
        ("Backbone", _per_method(records, _backbone_text)),
        ("Budget", _per_method(records, _budget_text)),
        ("Input", _per_method(records, _input_text)),
        ("Device", f"{device_text(records)}, {env.cpu_count} CPUs"),
        ("Machine load", (f"other processes used up to {max(loads):.2f} cores during the cells"
                          if loads else "n/a")),
        ("Libraries", libraries_text(records)),
        ("Code", code_text(records)),
        ("Seeds", seeds_text(records)),
        ("Date", f"{last_finished(records)} (the last cell's end)"),
        ("Timing protocol", _distinct(records, lambda r: r.timing.protocol if r.timing else None)),
    ]
    lines += ["", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts), ""]
    return lines


def table2(groups: dict[str, list[Record]], real: bool) -> list[str]:
    """Overall image AUROC (the paper's Table 2)."""
    lines = ["## Table 2: image AUROC (%), all test images", "",
             "| Method | backbone | AUROC [95% CI] |" + (" paper |" if real else ""),
             "|---|---|---|" + ("---|" if real else "")]
    for method, recs in groups.items():
        pub = (paper.published(method) or {}).get("all") if real else None
        extra = f" {pub:.1f} |" if real and pub is not None else (" |" if real else "")
        backbone = _distinct(recs, lambda r: r.backbone.name).replace("n/a", "none (from scratch)")
        lines.append(f"| {row_label(method, recs)} | {backbone} | {auroc_cell(recs, whole)} |"
                     f"{extra}")
    return [*lines, ""]


def table3(groups: dict[str, list[Record]], real: bool) -> list[str]:
    """Per anomaly type, the groups' Average rows (the paper's Table 3), and pooled groups."""
    all_recs = [r for recs in groups.values() for r in recs]
    group_of = _group_of(all_recs)
    methods = [row_label(m, recs) for m, recs in groups.items()]
    lines = ["## Table 3: image AUROC (%) per anomaly type (normal vs that type)", "",
             "| Anomaly type | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    ordered = [g for g in GROUP_NAMES if g != "normal"]
    ordered += sorted({group_of[c] for c in anomaly_types(all_recs)} - set(ordered))
    for g in ordered:
        types = [c for c in anomaly_types(all_recs) if group_of.get(c) == g]
        for c in types:
            cells = [auroc_cell(recs, per_type(c)) + _paper(
                (paper.published(m) or {}).get(c) if real else None)
                for m, recs in groups.items()]
            lines.append(f"| {TYPE_LABELS.get(c, c)} | " + " | ".join(cells) + " |")
        if types:
            cells = [auroc_cell(recs, averaged(g)) + _paper(
                paper.published_average(m, g) if real else None) for m, recs in groups.items()]
            lines.append(f"| **Average ({GROUP_LABELS.get(g, g)})** | " + " | ".join(cells)
                         + " |")
    for g in ordered:
        cells = [auroc_cell(recs, pooled(g)) for recs in groups.values()]
        lines.append(f"| {GROUP_LABELS.get(g, g).capitalize()}, pooled | " + " | ".join(cells)
                     + " |")
    return [*lines, ""]


def pixel_value(record: Record, category: str | None = None) -> float | None:
    """Pixel AUROC over all test images, or of one anomaly type; None without masks."""
    px = record.metrics.pixel_auroc if record.metrics else None
    if px is None:
        return None
    return px.all if category is None else px.category.get(category)


def _pixel_cell(records: list[Record], category: str | None = None) -> str:
    agg = aggregate([pixel_value(r, category) for r in records])
    if agg.mean is None:
        return "n/a"
    return _pct(agg.mean) + (f" ± {_pct(agg.std)}" if agg.n > 1 else "")


def mean_of(records: Sequence[Record], value: Callable[[Record], float]) -> float:
    return float(np.mean([value(r) for r in records]))


def has_pixel_metrics(records: Sequence[Record]) -> bool:
    return any(r.metrics and r.metrics.pixel_auroc for r in records)


def pixel_table(groups: dict[str, list[Record]]) -> list[str]:
    """Pixel AUROC (%) where the data has masks (synthetic sets)."""
    recs = [r for rs in groups.values() for r in rs]
    if not has_pixel_metrics(recs):
        return []
    types = anomaly_types(recs)
    lines = ["## Pixel AUROC (%) from the masks", "",
             "| Method | all | " + " | ".join(TYPE_LABELS.get(c, c) for c in types) + " |",
             "|---|---|" + "---|" * len(types)]
    for method, rs in groups.items():
        cells = [_pixel_cell(rs), *(_pixel_cell(rs, c) for c in types)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def table4(groups: dict[str, list[Record]], real: bool) -> list[str]:
    """Cost (the paper's Table 4 and more): latency, throughput, fit time, memory."""
    lines = ["## Table 4: inference and training cost", "",
             "| Method | ms/image, batch 1 (mean / median / p95) | images/s, batch 32 | fit s | "
             "peak RSS MB (+ during the cell) | learned state |" + (f" paper ms/image ({paper.PAPER_GPU}) |"
                                             if real else ""),
             "|---|---|---|---|---|---|" + ("---|" if real else "")]
    flagged = False
    for method, rs in groups.items():
        loaded = any(r.memory.other_cpu_cores > LOADED_CORES for r in rs)
        flagged |= loaded
        model = rs[0].model
        bank, big, params = model.memory_bank, model.largest_buffer, model.trained_parameters
        big = big if big and np.prod(big.shape) >= 1000 else None  # not input_size_ & co
        parts = ([f"bank {' x '.join(map(str, bank))}"] if bank else
                 [f"`{big.name}` {' x '.join(map(str, big.shape))}"] if big else [])
        if params:
            parts.append(f"{params / 1e6:.2f} M trained parameters")
        state = "; ".join(parts) or "-"
        lat = [mean_of(rs, lambda r: r.timing.latency_ms.mean),
               mean_of(rs, lambda r: r.timing.latency_ms.median),
               mean_of(rs, lambda r: r.timing.latency_ms.p95)]
        peak = mean_of(rs, lambda r: r.memory.peak_rss_mb)
        before = mean_of(rs, lambda r: r.memory.rss_before_mb)
        row = (f"| {row_label(method, rs)} | {lat[0]:.1f} / {lat[1]:.1f} / {lat[2]:.1f}{' †' if loaded else ''} | "
               f"{mean_of(rs, lambda r: r.timing.throughput.images_per_s):.1f} | "
               f"{mean_of(rs, lambda r: r.timing.fit_s):.1f} | {peak:.0f} (+{peak - before:.0f}) | "
               f"{state} |")
        if real:
            pub = (paper.published(method) or {}).get("ms")
            row += f" {pub:.1f} |" if pub is not None else " |"
        lines.append(row)
    lines.append("")
    if flagged:
        lines += [(f"† timed while other processes used more than {LOADED_CORES} cores: "
                   "not a clean timing; rerun on an idle machine with `--force`."), ""]
    lines += mixed_hardware([r for rs in groups.values() for r in rs])
    return lines


def mixed_hardware(records: Sequence[Record]) -> list[str]:
    """A warning when the timings of one table come from more than one machine or device."""
    machines: dict[str, list[str]] = {}
    for r in records:
        machines.setdefault(r.environment.machine_key(), []).append(r.row_key())
    if len(machines) < 2:
        return []
    where = "; ".join(f"{m}: {', '.join(dict.fromkeys(ms))}" for m, ms in machines.items())
    return [(f"⚠ These timings come from {len(machines)} machines ({where}): compare rows "
             "timed on the same one only."), ""]


ATTENTIONS = {"sa_patchcore.model:SAPatchCore": "per-channel attention (official code)",
              "sa_patchcore.model:SAPatchCoreEq4": "eq. 4 attention"}


def _sa_variants(groups: dict[str, list[Record]]) -> dict[str, dict[tuple, str]]:
    """attention -> (sa_layers, sa_pooling) -> method name, for the SA-PatchCore records."""
    out: dict[str, dict[tuple, str]] = {}
    for method, rs in groups.items():
        attention = ATTENTIONS.get(rs[0].method.target)
        params = rs[0].method.params
        if attention and "sa_layers" in params:
            out.setdefault(attention, {})[(params["sa_layers"], params["sa_pooling"])] = method
    return out


def ablation_tables(groups: dict[str, list[Record]], real: bool) -> list[str]:
    """The paper's Table 7 (layers into the attention) and Table 8 (pooling before it), from
    whichever SA-PatchCore variants the run has (``bench run --suite ablations``)."""
    variants = _sa_variants(groups)
    if not any(len(v) > 1 for v in variants.values()):
        return []
    attentions = list(variants)
    head = "| " + " | ".join(attentions) + " |" + (" paper |" if real else "")
    rule = "|---|" + "---|" * (len(attentions) + real)
    lines: list[str] = []
    for title, rows, pub in (
        ("Table 7: which layers go into the self-attention (image AUROC %, all test images)",
         [("layer3: max-pooled layer3 only (SA-PatchCore)", ("layer3", "max"), "layer3"),
          ("layer2+layer3: PatchCore's embedding, both average-pooled", ("layer2+layer3", "avg"),
           "layer2+layer3")], paper.TABLE7),
        ("Table 8: the pooling before the self-attention (image AUROC %, all test images)",
         [(f"{p} pooling" if p != "none" else "no pooling", ("layer3", p), p)
          for p in ("max", "avg", "none")], paper.TABLE8),
    ):
        lines += [f"## {title}", "", "| Structure " + head, rule]
        for label, key, paper_key in rows:
            cells = []
            for attention in attentions:
                method = variants[attention].get(key)
                cells.append(f"{auroc_cell(groups[method], whole)} (`{method}`)" if method
                             else "not run")
            extra = f" {pub[paper_key]:.1f} |" if real else ""
            lines.append(f"| {label} | " + " | ".join(cells) + f" |{extra}")
        lines.append("")
    return lines


def few_shot_tables(records: Sequence[Record], real: bool) -> list[str]:
    """One table per K of a few-shot run: image AUROC all and per type, mean ± std over the
    seeds (each seed its own subset of K training images) and the mean of their 95% CIs."""
    ok = [r for r in records if r.ok and r.cell.shots is not None]
    if not ok:
        return []
    types = anomaly_types(ok)
    lines = []
    for k in sorted({r.cell.shots for r in ok}):
        rs = [r for r in ok if r.cell.shots == k]
        seeds = sorted({r.seed for r in rs})
        lines += [(f"## Few-shot: K = {k} training images (seeds {', '.join(map(str, seeds))}: "
                   "one seeded subset each)"), "",
                  "| Method | all | " + " | ".join(TYPE_LABELS.get(c, c) for c in types) + " |",
                  "|---|---|" + "---|" * len(types)]
        for method, group in by_method(rs).items():
            cells = [_seed_cell(group, whole), *(_seed_cell(group, per_type(c)) for c in types)]
            lines.append(f"| {row_label(method.split(' @ ')[0], group)} | " + " | ".join(cells) + " |")
        if real and k in paper.FEW_SHOT:
            for name, value, source in paper.FEW_SHOT[k]:
                lines.append(f"| {name} (published) | {value:.1f} · {source} |" + " |" * len(types))
        lines.append("")
    first = min(x.seed for x in ok)
    bank = [f"{r.row_key()}: bank {' x '.join(map(str, r.model.memory_bank))}"
            for r in ok if r.model.memory_bank and r.seed == first]
    lines += ["- Few-shot cells keep every method's settings: the memory-bank methods keep the "
              "paper's 1% coreset of the K images' patches (" + "; ".join(bank[:6]) + "), the "
              "trained methods their budget's epochs (CS-Flow) or steps (Patch SVDD). "
              "Cells: mean ± std over seeds, then the mean of the seeds' bootstrap 95% CIs.", ""]
    return lines


def _seed_cell(records: list[Record], pick: Pick) -> str:
    entries = [e for r in records if (e := image_entry(r, pick)) is not None]
    if not entries:
        return "n/a"
    agg = aggregate([e.auroc for e in entries])
    lo = float(np.mean([e.ci.low for e in entries]))
    hi = float(np.mean([e.ci.high for e in entries]))
    spread = f" ± {_pct(agg.std)}" if len(entries) > 1 else ""
    return f"{_pct(agg.mean)}{spread} [{_pct(lo)}, {_pct(hi)}]"


def training_table(groups: dict[str, list[Record]]) -> list[str]:
    """Trained methods: budget, how long they trained, the loss at the start and the end, and
    a warning when training ended before the model learned anything measurable."""
    trained = {m: rs for m, rs in groups.items() if rs[0].training is not None}
    if not trained:
        return []
    lines = ["## Training (trained methods; fixed budget, the test set never seen)", "",
             "| Method | budget | logged | loss first → last | fit s | verdict |",
             "|---|---|---|---|---|---|"]
    warnings = []
    for method, rs in trained.items():
        training = rs[0].training
        log, unit = training.log, training.unit()
        span = f"{unit} {int(log[-1][unit])}" if log else "-"
        loss = (f"{log[0]['loss']:.4g} → {log[-1]['loss']:.4g}" if log and "loss" in log[0]
                else "-")
        verdicts = list(dict.fromkeys(r.training.verdict for r in rs
                                      if r.training and r.training.verdict))
        lines.append(f"| {row_label(method, rs)} | {_budget_text(rs)} | {span} | {loss} | "
                     f"{mean_of(rs, lambda r: r.timing.fit_s):.1f} | "
                     f"{'⚠ see below' if verdicts else 'ok'} |")
        warnings += [f"- **{method}**: {v}" for v in verdicts]
    lines.append("")
    return lines + warnings + ([""] if warnings else [])


def failures(records: Sequence[Record]) -> list[str]:
    """Failed cells and their errors."""
    bad = [r for r in records if not r.ok]
    if not bad:
        return []
    return ["## Failed cells", "", *(f"- `{r.cell.id}`: {r.error}" for r in bad), ""]


def notes(records: Sequence[Record], real: bool, plots: Sequence[str]) -> list[str]:
    """How to read the numbers."""
    resamples = _distinct([r for r in records if r.ok],
                          lambda r: r.metrics.image_auroc.bootstrap.resamples)
    lines = [
        "## Notes",
        "",
        ("- AUROC per type compares the normal test images with the images of that type, "
         "selected by the `category` column. *Average* rows are the mean of the group's "
         "per-type AUROCs (the paper's Table 3); *pooled* rows compare normal images with "
         "all of the group's images at once."),
        (f"- 95% CI: percentile bootstrap ({resamples} resamples, seeded) in which the normal "
         "images and each anomaly type are resampled separately. With several seeds a cell "
         "shows mean ± standard deviation over seeds instead."),
        ("- *learned state*: the memory bank (rows x dims) where a method has one, else its "
         "largest learned buffer; peak RSS is the process's high-water mark during the cell (model building, fit "
         "and both prediction passes), in brackets its growth over the cell's start."),
    ]
    if real:
        lines.append("- The paper reports one SA-PatchCore; `sa_patchcore` (its code, per-channel "
                     "attention) and `sa_patchcore_eq4` (its eq. 4) are both shown beside it. "
                     "Paper averages are the means of its per-type numbers.")
    lines.append("")
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return lines


def render_markdown(records: Sequence[Record], plots: Sequence[str] = ()) -> str:
    """The whole ``leaderboard.md``."""
    if not records:
        return "# CAD-SD leaderboard\n\nNo results yet.\n"
    from leaderboard.reporting.benchmark_tables import is_benchmark, render_benchmark

    if is_benchmark(records):
        return render_benchmark(records, plots)
    ok = [r for r in records if r.ok] or list(records)
    real = _is_real(records)
    groups = by_method(records)
    lines = header(ok)
    if groups:
        lines += table2(groups, real) + table3(groups, real) + pixel_table(groups)
        lines += few_shot_tables(records, real) + ablation_tables(groups, real)
        lines += table4(groups, real) + training_table(groups)
    lines += failures(records) + notes(records, real, plots)
    return "\n".join(lines)
