"""One leaderboard from several runs (`bench leaderboard SRC [SRC ...] --out DIR`).

Every row keeps its source (``patchcore · hf:lab-a/run``): records of different runs are never
averaged together. Records measured on different data (dataset fingerprints) never share a
table: each fingerprint gets its own section, titled with what the records say the data is (the
real CAD-SD that `cadsd download` fetched, a synthetic set and its seed, a benchmark category).
Within a section, Table 4 numbers each row's machine when the timings come from several.

A single source renders exactly as its own folder does, apart from the source in each row.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from cadsd.files import atomic_write_text
from leaderboard.hub.sources import Source
from leaderboard.records import BadRecord, Record
from leaderboard.reporting.plots import PLOTS_DIR, write_plots
from leaderboard.reporting.public import public_text
from leaderboard.reporting.report import render_markdown
from leaderboard.reporting.results_csv import results_frame
from leaderboard.reporting.sections import unusable_section


def data_label(records: Sequence[Record]) -> str:
    """What a fingerprint's data is, as its records describe it."""
    from cadsd.format.layout import PAPER_COUNTS

    d = records[0].dataset
    if all(r.dataset.real_cadsd for r in records):
        paper = {f"{split}/{cat}": n for (split, cat), n in PAPER_COUNTS.items()}
        counts = "the paper's image counts" if d.counts == paper else "counts that differ from the paper's"
        return f"CAD-SD, the real dataset (as `cadsd download` fetched it; {counts})"
    if d.synthetic or d.kind == "synthetic":
        gen = d.generator or {}
        seed = f", seed {gen['seed']}" if "seed" in gen else ""
        return f"SYNTHETIC CAD-SD (`cadsd synth`{seed}), not the paper's data"
    if d.benchmark:
        return f"{d.benchmark} / {d.category}" if d.category else d.benchmark
    return d.name


def by_fingerprint(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Records per dataset fingerprint: the real CAD-SD first, then in order of appearance."""
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.dataset.fingerprint, []).append(r)
    return dict(sorted(out.items(), key=lambda kv: not all(r.dataset.real_cadsd
                                                           for r in kv[1])))


def _demoted(markdown: str) -> str:
    """Every heading one level down, so a section's tables sit under its title."""
    return "\n".join(f"#{line}" if line.startswith("#") else line
                     for line in markdown.splitlines())


def sources_table(sources: Sequence[Source]) -> list[str]:
    lines = ["| Source | records | data (fingerprint) | machines | code |",
             "|---|---|---|---|---|"]
    for s in sources:
        recs = s.records
        data = ", ".join(f"{r[0].dataset.name} (`{fp[:12]}`)"
                         for fp, r in by_fingerprint(recs).items()) or "-"
        machines = ", ".join(dict.fromkeys(r.environment.machine_key() for r in recs)) or "-"
        code = ", ".join(dict.fromkeys(r.environment.git_sha[:10] for r in recs)) or "-"
        extra = f" (+{len(s.unusable)} left out)" if s.unusable else ""
        lines.append(f"| `{s.label}` | {len(recs)}{extra} | {data} | {machines} | {code} |")
    return [*lines, ""]


def labelled(sources: Sequence[Source]) -> list[Record]:
    """Every source's records, each marked with its source (its rows' key)."""
    out = []
    for s in sources:
        for r in s.records:
            r.read_from = s.label
            out.append(r)
    return out


def render_merged(sources: Sequence[Source], plots: dict[str, list[str]] | None = None) -> str:
    """The merged ``leaderboard.md``: one section per dataset fingerprint (``plots``: the
    figures of each fingerprint, relative to the output folder)."""
    records = labelled(sources)
    unusable: list[BadRecord] = [b for s in sources for b in s.unusable]
    sections = by_fingerprint(records)
    plots = plots or {}
    if len(sources) == 1 and len(sections) <= 1:
        fp = next(iter(sections), "")
        return render_markdown(records, plots.get(fp, ()), unusable)
    lines = [f"# CAD-SD leaderboard, merged from {len(sources)} run(s)", "", *sources_table(sources)]
    if len(sections) > 1:
        lines += [(f"> These runs hold results on {len(sections)} different datasets (dataset "
                   "fingerprints): each has its own section below, and numbers of different "
                   "sections are not comparable."), ""]
    labels = [data_label(recs) for recs in sections.values()]
    for i, ((fp, recs), label) in enumerate(zip(sections.items(), labels), start=1):
        twin = " (a different copy: its images differ from the other section's)" \
            if labels.count(label) > 1 else ""
        lines += [f"## Data {i}: {label}{twin}, fingerprint `{fp[:12]}`", "",
                  _demoted(render_markdown(recs, plots.get(fp, ()))), ""]
    lines += unusable_section(unusable)
    return public_text("\n".join(lines))


def write_merged(sources: Sequence[Source], out: Path, plots: bool = True) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``results.csv`` (with a ``source`` column) and the plots of the
    merged sources to ``out``. One source keeps its own plots; several get each section's ROC
    and training curves drawn from the records (the gallery needs maps, which are not pushed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = labelled(sources)
    sections = by_fingerprint(records)
    figures: dict[str, list[str]] = {}
    if plots and len(sources) == 1 and len(sections) <= 1:
        found = sources[0].plots()
        for f in found:
            (out / PLOTS_DIR).mkdir(exist_ok=True)
            if f.resolve() != (out / PLOTS_DIR / f.name).resolve():
                shutil.copyfile(f, out / PLOTS_DIR / f.name)
        figures = {fp: [f"{PLOTS_DIR}/{f.name}" for f in found] for fp in sections}
    elif plots:
        for i, (fp, recs) in enumerate(sections.items(), start=1):
            sub = f"data{i}"
            figures[fp] = [f"{sub}/{p}" for p in write_plots(out / sub, recs)]
    frame = results_frame(records)
    if len(frame):
        frame.insert(0, "source", [r.read_from for r in records])
    files = {
        "leaderboard": atomic_write_text(out / "leaderboard.md", render_merged(sources, figures)),
        "csv": atomic_write_text(out / "results.csv",
                                 frame.to_csv(index=False, lineterminator="\n") if len(frame)
                                 else ""),
    }
    return files
