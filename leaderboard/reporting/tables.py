"""The leaderboard: markdown laid out like the paper's Tables 2, 3 and 4.

Pure functions of the result records: every number printed here is read from a record (or is
the mean/std of records over seeds), so `bench leaderboard RUN_DIR` rebuilds the same files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cadsd.format.layout import GROUP_NAMES
from leaderboard.records import BadRecord
from leaderboard.records.schema import Record
from leaderboard.reporting import paper
from leaderboard.reporting.cells import (
    GROUP_LABELS,
    LOADED_CORES,
    TYPE_LABELS,
    anomaly_types,
    auroc_cell,
    averaged,
    backbone_text,
    budget_text,
    by_method,
    code_text,
    device_text,
    distinct,
    group_of,
    has_pixel_metrics,
    input_text,
    is_real,
    last_finished,
    libraries_text,
    mean_of,
    no_backbone,
    paper_note,
    per_method,
    per_type,
    pixel_cell,
    pooled,
    provenance_lines,
    row_label,
    seeds_text,
    whole,
)
from leaderboard.reporting.comparisons import Draws, catches_tables, paired_table
from leaderboard.reporting.sections import failures, leakage_banner, unusable_section
from leaderboard.reporting.studies import (
    ablation_tables,
    dual_table,
    few_shot_tables,
    training_table,
)


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
    lines += leakage_banner(records)
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
        ("Backbone", per_method(records, backbone_text)),
        ("Budget", per_method(records, budget_text)),
        ("Input", per_method(records, input_text)),
        ("Device", f"{device_text(records)}, {env.cpu_count} CPUs"),
        ("Machine load", (f"other processes used up to {max(loads):.2f} cores during the cells"
                          if loads else "n/a")),
        ("Libraries", libraries_text(records)),
        ("Code", code_text(records)),
        ("Seeds", seeds_text(records)),
        ("Date", f"{last_finished(records)} (the last cell's end)"),
        ("Timing protocol", distinct(records, lambda r: r.timing.protocol if r.timing else None)),
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
        backbone = distinct(recs, lambda r: r.backbone.name).replace("n/a", no_backbone(recs, short=True))
        lines.append(f"| {row_label(method, recs)} | {backbone} | {auroc_cell(recs, whole)} |"
                     f"{extra}")
    return [*lines, ""]


def table3(groups: dict[str, list[Record]], real: bool) -> list[str]:
    """Per anomaly type, the groups' Average rows (the paper's Table 3), and pooled groups."""
    all_recs = [r for recs in groups.values() for r in recs]
    type_group = group_of(all_recs)
    types_seen = anomaly_types(all_recs)
    methods = [row_label(m, recs) for m, recs in groups.items()]
    lines = ["## Table 3: image AUROC (%) per anomaly type (normal vs that type)", "",
             "| Anomaly type | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    ordered = [g for g in GROUP_NAMES if g != "normal"]
    ordered += sorted({type_group[c] for c in types_seen} - set(ordered))
    for g in ordered:
        types = [c for c in types_seen if type_group.get(c) == g]
        for c in types:
            cells = [auroc_cell(recs, per_type(c)) + paper_note(
                (paper.published(m) or {}).get(c) if real else None)
                for m, recs in groups.items()]
            lines.append(f"| {TYPE_LABELS.get(c, c)} | " + " | ".join(cells) + " |")
        if types:
            cells = [auroc_cell(recs, averaged(g)) + paper_note(
                paper.published_average(m, g) if real else None) for m, recs in groups.items()]
            lines.append(f"| **Average ({GROUP_LABELS.get(g, g)})** | " + " | ".join(cells)
                         + " |")
    for g in ordered:
        cells = [auroc_cell(recs, pooled(g)) for recs in groups.values()]
        lines.append(f"| {GROUP_LABELS.get(g, g).capitalize()}, pooled | " + " | ".join(cells)
                     + " |")
    return [*lines, "", *missing_type_notes(types_seen)]


def missing_type_notes(types_seen: Sequence[str]) -> list[str]:
    """CAD-SD's layout: a group whose types are not all in the test set averages fewer."""
    from cadsd.format.layout import CATEGORIES, CATEGORY_NAMES, missing_types

    if not set(types_seen) <= set(CATEGORY_NAMES):  # another layout's own types
        return []
    notes = []
    for g, gone in missing_types(types_seen).items():
        label = GROUP_LABELS.get(g, g)
        missing = " or ".join(TYPE_LABELS.get(c, c) for c in gone)
        have = [TYPE_LABELS.get(c.name, c.name) for c in CATEGORIES
                if c.group == g and c.name in types_seen]
        notes.append(f"- The test set has no {missing} image: *Average ({label})* and the "
                     f"{label} pooled row are over {', '.join(have)} alone." if have else
                     f"- The test set has no {label} anomaly ({missing}): no {label} rows.")
    return [*notes, ""] if notes else []


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
        cells = [pixel_cell(rs), *(pixel_cell(rs, c) for c in types)]
        lines.append(f"| {row_label(method, rs)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def table4(groups: dict[str, list[Record]], real: bool) -> list[str]:
    """Cost (the paper's Table 4 and more): latency, throughput, fit time, memory."""
    lines = ["## Table 4: inference and training cost", "",
             "| Method | ms/image, batch 1 (mean / median / p95) | images/s, batch 32 | fit s | "
             "peak RSS MB (+ during the cell) | learned state |" + (f" paper ms/image ({paper.PAPER_GPU}) |"
                                             if real else ""),
             "|---|---|---|---|---|---|" + ("---|" if real else "")]
    flagged = False
    machines = machine_numbers([r for rs in groups.values() for r in rs])
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
        where = sorted({machines[r.environment.machine_key()] for r in rs})
        mark = (f" (machine {', '.join(map(str, where))})" if len(machines) > 1 else "")
        row = (f"| {row_label(method, rs)}{mark} | {lat[0]:.1f} / {lat[1]:.1f} / {lat[2]:.1f}{' †' if loaded else ''} | "
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
    return lines + like_with_like(groups)


#: anomalib model -> (this project's method, {our setting: anomalib's}) that must agree for
#: the two to compare like with like (the backbone and input are compared for every pair)
COUNTERPARTS = {
    "anomalib-patchcore": ("patchcore", {"coreset_ratio": "coreset_sampling_ratio",
                                         "num_neighbors": "num_neighbors"}),
    "anomalib-padim": ("padim", {}),
}


def like_with_like(groups: dict[str, list[Record]]) -> list[str]:
    """For each anomalib model run beside this project's own version of it: whether the two
    rows compare like with like (backbone, input, the settings of :data:`COUNTERPARTS`, and
    anomalib's ``layers`` left at the backbone's layers of the same strides), and if not, the
    ``--param`` that would match them."""
    lines = []
    for theirs, (ours, names) in COUNTERPARTS.items():
        if theirs not in groups or ours not in groups:
            continue
        a, b = groups[ours][0], groups[theirs][0]
        model = theirs.removeprefix("anomalib-").capitalize()
        same, differ, fix = [], [], []
        pairs = [("backbone", a.backbone.name, b.backbone.name, None)]
        if a.input and b.input:
            for key, name in (("resize", "image_size"), ("crop", "crop"),
                              ("resample", "resample")):
                pairs.append((f"input {key}", getattr(a.input, key), getattr(b.input, key), name))
        pairs += [(mine, a.method.params.get(mine), b.method.params.get(other), other)
                  for mine, other in names.items()]
        for label, x, y, param in pairs:
            if x == y:
                same.append(f"{label} {x}")
                continue
            differ.append(f"{label} {x} vs {y}")
            if param:
                fix.append(f"--param anomalib:{model}.{param}={x}")
            elif label == "backbone":
                fix.append(f"--backbone {x}")
        if b.method.params.get("layers") is not None:
            differ.append(f"anomalib's layers set to {b.method.params['layers']}")
        head = f"- {ours} vs {row_label(theirs, groups[theirs])}:"
        if differ:
            lines.append(f"{head} **not like with like**: {'; '.join(differ)} (match them with "
                         f"`{' '.join(fix) or 'the same settings'}`).")
        else:
            lines.append(f"{head} like with like ({', '.join(same)}; layers of the same "
                         "strides).")
    if not lines:
        return []
    return ["This project's methods beside anomalib's, in this run:", "", *lines, ""]


def machine_numbers(records: Sequence[Record]) -> dict[str, int]:
    """Each machine (and device) the records were timed on -> its number, in record order."""
    keys = dict.fromkeys(r.environment.machine_key() for r in records)
    return {k: i for i, k in enumerate(keys, start=1)}


def mixed_hardware(records: Sequence[Record]) -> list[str]:
    """A warning when the timings of one table come from more than one machine or device
    (Table 4 then marks each row with its machine's number)."""
    machines: dict[str, list[str]] = {}
    for r in records:
        machines.setdefault(r.environment.machine_key(), []).append(r.row_key())
    if len(machines) < 2:
        return []
    where = "; ".join(f"machine {i}: {m} ({', '.join(dict.fromkeys(ms))})"
                      for i, (m, ms) in enumerate(machines.items(), start=1))
    return [(f"⚠ These timings come from {len(machines)} machines ({where}): compare rows "
             "timed on the same one only."), ""]


def notes(records: Sequence[Record], real: bool, plots: Sequence[str]) -> list[str]:
    """How to read the numbers."""
    resamples = distinct([r for r in records if r.ok],
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
         "shows mean ± standard deviation over seeds instead, or *(deterministic)* where every "
         "seed gave the same per-image scores (the seed changes nothing in that method)."),
        ("- *learned state*: the memory bank (rows x dims) where a method has one, else its "
         "largest learned buffer; peak RSS is the process's high-water mark during the cell (model building, fit "
         "and both prediction passes), in brackets its growth over the cell's start."),
    ]
    lines += provenance_lines(records)
    lines += search_lines(records)
    lines += precision_lines(records)
    lines += seed_spread_lines(records)
    if real:
        lines.append("- The paper reports one SA-PatchCore; `sa_patchcore` (its code, per-channel "
                     "attention) and `sa_patchcore_eq4` (its eq. 4) are both shown beside it. "
                     "Paper averages are the means of its per-type numbers.")
    lines.append("")
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return lines


def seed_spread_lines(records: Sequence[Record]) -> list[str]:
    """A trained method's row at a CPU budget from one seed says it is one draw: at these
    budgets the seed (and the machine's arithmetic) moves the AUROC by several points."""
    out = []
    for method, recs in by_method([r for r in records if r.ok]).items():
        budgets = {r.method.budget for r in recs} & {"quick", "smoke"}
        trained = any(r.model and r.model.trained_parameters for r in recs)
        seeds = {r.cell.seed for r in recs}
        if budgets and trained and len(seeds) == 1:
            out.append(
                f"- **{method}** is one seed trained at the `{'/'.join(sorted(budgets))}` "
                "budget: one draw, not a result. At CPU budgets a trained method's AUROC moves "
                "by several points between seeds and machines (measured on the synthetic set: "
                "CS-Flow's seeds 0-2 at `quick` gave 0.633 to 0.732 on one machine, and one "
                "seed gave 0.639 on one machine and 0.692 on another); `--seeds 0-2` shows the "
                "spread as mean ± std.")
    return out


def precision_lines(records: Sequence[Record]) -> list[str]:
    """Where a method ran part of its network below float32 (``fit_notes``: ``flow_precision``
    and the like), what ran and the setting that chose it (``auto`` resolves per machine)."""
    found: dict[str, set[str]] = {}
    for method, recs in by_method([r for r in records if r.ok and r.model]).items():
        for r in recs:
            for key, value in r.model.fit_notes.items():
                if key.endswith("precision") and value != "fp32":
                    setting = r.method.params.get(key)
                    chose = f" (setting {setting})" if setting not in (None, value) else ""
                    found.setdefault(method, set()).add(f"{key} {value}{chose}")
    return [f"- **{m}** ran below float32: {'; '.join(sorted(t))}; see its records' fit_notes."
            for m, t in found.items()]


def search_lines(records: Sequence[Record]) -> list[str]:
    """The nearest-neighbour search each method scored with, where its record names it
    (``fit_notes``: ``search64``, ``search32``...): exact, or an index with its measured recall."""
    found: dict[str, list[str]] = {}
    for r in records:
        if not r.ok or r.model is None:
            continue
        for key, value in sorted(r.model.fit_notes.items()):
            if key.startswith("search") and isinstance(value, str) and not key.endswith("because"):
                patch = key.removeprefix("search")  # Patch SVDD: search64, search32 (K)
                text = f"K = {patch}: {value}" if patch else value
                found.setdefault(r.method.name, [])
                if text not in found[r.method.name]:
                    found[r.method.name].append(text)
    return [f"- Nearest-neighbour search of **{m}**: {'; '.join(t)}." for m, t in found.items()]


def render_cadsd(records: Sequence[Record], plots: Sequence[str] = (),
                 unusable: Sequence[BadRecord] = (), reference: str | None = None,
                 draws: Draws | None = None) -> str:
    """The leaderboard of a single-dataset run (CAD-SD or a folder of its layout): the paper's
    Tables 2-4, paired differences against ``reference`` (default: the best row), what each
    method catches, the studies, failed cells, the record files left out, notes."""
    ok = [r for r in records if r.ok] or list(records)
    real = is_real(records)
    groups = by_method(records)
    lines = header(ok)
    if groups:
        draws = draws or Draws()
        lines += table2(groups, real) + table3(groups, real) + pixel_table(groups)
        lines += paired_table(groups, reference, draws) + catches_tables(groups, draws)
        lines += few_shot_tables(records, real) + ablation_tables(groups, real)
        lines += dual_table(groups)
        lines += table4(groups, real) + training_table(groups)
    lines += failures(records) + unusable_section(unusable) + notes(records, real, plots)
    return "\n".join(lines)
