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
from leaderboard.reporting.comparisons import Draws
from leaderboard.reporting.plots import PLOTS_DIR, write_plots
from leaderboard.reporting.report import render_markdown
from leaderboard.reporting.results_csv import results_frame
from leaderboard.reporting.sections import dataset_sections, section_fingerprint


def sources_table(sources: Sequence[Source]) -> list[str]:
    lines = ["| Source | records | data (fingerprint) | machines | code |",
             "|---|---|---|---|---|"]
    for s in sources:
        recs = s.records
        data = ", ".join(f"{r[0].dataset.name} ({section_fingerprint(key, r)})"
                         for key, r in dataset_sections(recs).items()) or "-"
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


def render_merged(sources: Sequence[Source], plots: dict[str, list[str]] | None = None,
                  reference: str | None = None) -> str:
    """The merged ``leaderboard.md``: one section per dataset (``plots``: the figures of each
    section, relative to the output folder); one source alone renders as its own folder."""
    records = labelled(sources)
    unusable: list[BadRecord] = [b for s in sources for b in s.unusable]
    draws = Draws()
    if len(sources) == 1:
        return render_markdown(records, plots or {}, unusable, reference=reference, draws=draws)
    return render_markdown(records, plots or {}, unusable, preface=sources_table(sources),
                           title=f"CAD-SD leaderboard, merged from {len(sources)} run(s)",
                           reference=reference, draws=draws)


def write_merged(sources: Sequence[Source], out: Path, plots: bool = True,
                 reference: str | None = None) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``results.csv`` (with a ``source`` column) and the plots of the
    merged sources to ``out``. One source keeps its own plots; several get each section's ROC
    and training curves drawn from the records (the gallery needs maps, which are not pushed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = labelled(sources)
    sections = dataset_sections(records)
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
        "leaderboard": atomic_write_text(out / "leaderboard.md", render_merged(sources, figures, reference)),
        "csv": atomic_write_text(out / "results.csv",
                                 frame.to_csv(index=False, lineterminator="\n") if len(frame)
                                 else ""),
    }
    return files
