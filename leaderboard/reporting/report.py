"""Everything `bench run` and `bench leaderboard RUN_DIR` write from a run's records: the
markdown leaderboard (:func:`render_markdown`: one section per dataset, each laid out as a
benchmark's categories or a single dataset's Tables 2-4), ``results.csv`` and the plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cadsd.files import atomic_write_text
from leaderboard.records import BadRecord, Record, scan_records
from leaderboard.reporting.benchmark_tables import is_benchmark, render_benchmark
from leaderboard.reporting.comparisons import Draws
from leaderboard.reporting.plots import PLOT_FILES, PLOTS_DIR, write_plots
from leaderboard.reporting.public import public_text
from leaderboard.reporting.results_csv import render_csv
from leaderboard.reporting.sections import (
    data_label,
    dataset_sections,
    demoted,
    section_fingerprint,
    unusable_section,
)
from leaderboard.reporting.tables import render_cadsd

LEADERBOARD = "leaderboard.md"
RESULTS_CSV = "results.csv"


def write_outputs(run_dir: Path, plots: bool = True,
                  scanned: tuple[list[Record], list[BadRecord]] | None = None,
                  reference: str | None = None) -> dict[str, Path]:
    """(Re)write ``leaderboard.md``, ``results.csv`` and (unless ``plots`` is False) the plots
    from ``run_dir``'s records (``scanned``: :func:`~leaderboard.records.scan_records` of it,
    when the caller has it). Files that cannot be used are left out, and the leaderboard names
    them and says which cells are missing."""
    run_dir = Path(run_dir)
    records, unusable = scanned if scanned is not None else scan_records(run_dir)
    sections = dataset_sections(records)
    figures: dict[str, list[str]] = {}
    for i, (key, recs) in enumerate(sections.items(), start=1):
        folder = PLOTS_DIR if len(sections) == 1 else f"{PLOTS_DIR}/data{i}"
        if plots:
            figures[key] = write_plots(run_dir, recs, folder)
        else:  # keep pointing at the figures an earlier call drew
            figures[key] = [f"{folder}/{f}" for f in PLOT_FILES
                            if (run_dir / folder / f).is_file()]
    draws = Draws()  # one bootstrap per test set for the tables and results.csv
    out = {
        "leaderboard": atomic_write_text(run_dir / LEADERBOARD,
                                         render_markdown(records, figures, unusable,
                                                         reference=reference, draws=draws)),
        "csv": atomic_write_text(run_dir / RESULTS_CSV, render_csv(records, draws)),
    }
    out.update({f: run_dir / f for fs in figures.values() for f in fs})
    return out


def render_markdown(records: Sequence[Record],
                    plots: Sequence[str] | Mapping[str, Sequence[str]] = (),
                    unusable: Sequence[BadRecord] = (), preface: Sequence[str] = (),
                    title: str = "CAD-SD leaderboard", reference: str | None = None,
                    draws: Draws | None = None) -> str:
    """The whole ``leaderboard.md`` (``unusable``: record files left out, named at the end).
    Records of several datasets get one section each (:func:`~.sections.dataset_sections`),
    never one table; ``plots``: the figures, or per section key the section's figures;
    ``preface``: lines under the title of a document of several sections (a merge's sources);
    ``reference``: the row the paired differences compare with (default: each section's best).
    A leaderboard is a document that travels: absolute local paths (the dataset folder, a
    weights file, an error's file) show their last component only (:mod:`.public`)."""
    sections = dataset_sections(records)
    draws = draws or Draws()
    figures = (plots if isinstance(plots, Mapping)
               else {key: list(plots) for key in sections})
    if not records:
        text = f"# {title}\n\nNo results yet.\n" + "\n".join(
            ["", *unusable_section(unusable)] if unusable else [])
    elif len(sections) == 1 and not preface:
        text = _one_dataset(records, figures.get(next(iter(sections)), ()), unusable,
                            reference, draws)
    else:
        lines = [f"# {title}", "", *preface]
        if len(sections) > 1:
            lines += [(f"> These records hold results on {len(sections)} different datasets "
                       "(dataset fingerprints): each has its own section below, and numbers "
                       "of different sections are not comparable."), ""]
        labels = [data_label(recs) for recs in sections.values()]
        for i, ((key, recs), label) in enumerate(zip(sections.items(), labels), start=1):
            twin = (" (a different copy: its images differ from the other section's)"
                    if labels.count(label) > 1 else "")
            lines += [f"## Data {i}: {label}{twin}, {section_fingerprint(key, recs)}", "",
                      demoted(_one_dataset(recs, figures.get(key, ()), (), reference, draws)),
                      ""]
        text = "\n".join(lines + unusable_section(unusable))
    return public_text(text)


def _one_dataset(records: Sequence[Record], plots: Sequence[str],
                 unusable: Sequence[BadRecord], reference: str | None, draws: Draws) -> str:
    if is_benchmark(records):
        return (render_benchmark(records, plots, reference, draws)
                + "\n".join(unusable_section(unusable)))
    return render_cadsd(records, plots, unusable, reference, draws)
