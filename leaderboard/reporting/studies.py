"""The studies beside the paper's main tables: its ablations (Tables 7 and 8), few-shot
cells (one table per K), the study of this project's ``sa_patchcore_dual`` and the training of
the trained methods. Pure functions of records."""

from __future__ import annotations

from collections.abc import Sequence

from leaderboard.records.schema import Record
from leaderboard.reporting import paper
from leaderboard.reporting.cells import (
    TYPE_LABELS,
    Pick,
    anomaly_types,
    auroc_cell,
    budget_text,
    by_method,
    image_entry,
    mean_of,
    per_type,
    row_label,
    seed_cell,
    whole,
)
from leaderboard.scoring.seeds import aggregate

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


DUAL_TARGET = "sa_patchcore.dual:DualPatchCore"
#: the single-detector rows the dual study compares with, when the run has them
DUAL_REFERENCES = {"baselines.patchcore:PatchCore": "PatchCore",
                   "sa_patchcore.model:SAPatchCore": "SA-PatchCore (per-channel attention)"}


def _dual_structure(params: dict) -> tuple[int, str]:
    """Study order and label of a ``sa_patchcore_dual`` record's settings. Records written
    before ``global_score`` existed scored the global branch by its largest patch distance."""
    branches = params.get("branches", "both")
    gaussian = params.get("global_score", "max") == "gaussian"
    if branches == "local":
        return 0, "local branch alone (PatchCore's bank)"
    if branches == "global":
        if gaussian:
            return 1, ("global branch alone (image score: Mahalanobis distance of its mean "
                       "embedding; map: each patch's share of it)")
        return 2, "global branch alone (SA-PatchCore's bank and scores)"
    score = "" if gaussian else ", global branch = SA-PatchCore's bank, largest patch distance"
    if not params.get("calibrate", True):
        return 3, f"both, {params.get('fusion', 'max')} of the raw distances{score} (uncalibrated)"
    how = ("z-scored" if params.get("calibration") == "zscore" else
           f"divided by the {params.get('quantile')} quantile")
    if params.get("tail_weight"):
        how += f" weighted by tail/bulk (tail_weight={params['tail_weight']})"
    rank = (7 if not gaussian else 5 if params.get("calibration") == "zscore"
            else 6 if params.get("tail_weight") else 4)
    return rank, (
        f"both, {how} of {_folds(params.get('folds'))} held-out training folds, "
        f"{params.get('fusion', 'max')}{score} (calibrated)")


def _folds(folds: object) -> str:
    """A record's ``folds`` setting as the study's label says it."""
    return "auto-counted" if folds == "auto" else str(folds)


def _mean_auroc(records: list[Record], pick: Pick) -> float | None:
    return aggregate([None if (e := image_entry(r, pick)) is None else e.auroc
                      for r in records]).mean


def dual_table(groups: dict[str, list[Record]]) -> list[str]:
    """This project's ``sa_patchcore_dual`` (``bench run --suite dual``): local branch alone,
    global branch alone, uncalibrated and calibrated fusion (image AUROC % per anomaly type,
    95% CIs), with PatchCore and SA-PatchCore rows where the run has them, the calibrated
    fusion's gain over the better single branch, and fit and batch-1 costs."""
    duals = {m: rs for m, rs in groups.items() if rs[0].method.target == DUAL_TARGET}
    if not duals:
        return []
    records = [r for rs in groups.values() for r in rs]
    types = anomaly_types(records)
    picks = [whole, *(per_type(c) for c in types)]
    head = ("| Structure | Method | all | " + " | ".join(TYPE_LABELS.get(c, c) for c in types)
            + " | fit s | ms/image |")
    lines = ["## Study: sa_patchcore_dual, this project's method (not from a paper)", "",
             ("Image AUROC % (one seed: value [95% CI]; several: mean ± std over seeds [mean "
              "of their 95% CIs]). Local and global branches come from one backbone pass; "
              "calibration uses held-out training folds only."), "",
             head, "|---|---|---|" + "---|" * len(types) + "---|---|"]

    def row(label: str, method: str, rs: list[Record]) -> str:
        cells = [seed_cell(rs, pick) for pick in picks]
        return (f"| {label} | `{method}` | " + " | ".join(cells)
                + f" | {mean_of(rs, lambda r: r.timing.fit_s):.1f} | "
                f"{mean_of(rs, lambda r: r.timing.latency_ms.mean):.1f} |")

    references: dict[str, list[Record]] = {}
    for method, rs in groups.items():
        target = rs[0].method.target
        params = rs[0].method.params
        if target in DUAL_REFERENCES and params.get("sa_pooling", "max") == "max" and \
                params.get("sa_layers", "layer3") == "layer3":
            references.setdefault(target, rs)
            lines.append(row(DUAL_REFERENCES[target] + " (its own method)", method, rs))
    ordered = sorted(duals.items(), key=lambda kv: (_dual_structure(kv[1][0].method.params), kv[0]))
    by_structure: dict[int, list[Record]] = {}
    for method, rs in ordered:
        rank, label = _dual_structure(rs[0].method.params)
        by_structure.setdefault(rank, rs)
        lines.append(row(label, method, rs))
    if {0, 1, 4} <= set(by_structure):
        gains = []
        for pick in picks:
            fused, local, glob = (_mean_auroc(by_structure[k], pick) for k in (4, 0, 1))
            gains.append("n/a" if None in (fused, local, glob) else
                         f"{100 * (fused - max(local, glob)):+.1f}")
        lines.append("| default (quantile-calibrated) minus the better branch alone, points | | "
                     + " | ".join(gains)
                     + " | | |")
    if 4 in by_structure and len(references) == len(DUAL_REFERENCES):
        gains = []
        for pick in picks:
            fused = _mean_auroc(by_structure[4], pick)
            singles = [_mean_auroc(rs, pick) for rs in references.values()]
            gains.append("n/a" if None in (fused, *singles) else
                         f"{100 * (fused - max(singles)):+.1f}")
        lines.append("| default minus the better of PatchCore and SA-PatchCore, points | | "
                     + " | ".join(gains) + " | | |")
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
        for group in by_method(rs).values():
            cells = [seed_cell(group, whole), *(seed_cell(group, per_type(c)) for c in types)]
            lines.append(f"| {row_label(group[0].method.name, group)} | " + " | ".join(cells)
                         + " |")
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
        lines.append(f"| {row_label(method, rs)} | {budget_text(rs)} | {span} | {loss} | "
                     f"{mean_of(rs, lambda r: r.timing.fit_s):.1f} | "
                     f"{'⚠ see below' if verdicts else 'ok'} |")
        warnings += [f"- **{method}**: {v}" for v in verdicts]
    lines.append("")
    return lines + warnings + ([""] if warnings else [])
