"""Everything `bench run` and `bench leaderboard RUN_DIR` write from a run's records: the
markdown leaderboard (:func:`render_markdown` picks the layout: a benchmark's categories or a
single dataset's Tables 2-4), ``results.csv`` and the plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cadsd.files import atomic_write_text
from leaderboard.records import BadRecord, Record, scan_records
from leaderboard.reporting.benchmark_tables import is_benchmark, render_benchmark
from leaderboard.reporting.plots import PLOT_FILES, PLOTS_DIR, write_plots
from leaderboard.reporting.public import public_text
from leaderboard.reporting.results_csv import render_csv
from leaderboard.reporting.sections import unusable_section
from leaderboard.reporting.tables import render_cadsd

LEADERBOARD = "leaderboard.md"
RESULTS_CSV = "results.csv"


def write_outputs(run_dir: Path, plots: bool = True,
                  scanned: tuple[list[Record], list[BadRecord]] | None = None) -> dict[str, Path]:
    """(Re)write ``leaderboard.md``, ``results.csv`` and (unless ``plots`` is False) the plots
    from ``run_dir``'s records (``scanned``: :func:`~leaderboard.records.scan_records` of it,
    when the caller has it). Files that cannot be used are left out, and the leaderboard names
    them and says which cells are missing."""
    run_dir = Path(run_dir)
    records, unusable = scanned if scanned is not None else scan_records(run_dir)
    if plots:
        figures = write_plots(run_dir, records)
    else:  # keep pointing at the figures an earlier call drew
        figures = [f"{PLOTS_DIR}/{f}" for f in PLOT_FILES if (run_dir / PLOTS_DIR / f).is_file()]
    out = {
        "leaderboard": atomic_write_text(run_dir / LEADERBOARD,
                                         render_markdown(records, figures, unusable)),
        "csv": atomic_write_text(run_dir / RESULTS_CSV, render_csv(records)),
    }
    out.update({f: run_dir / f for f in figures})
    return out


def render_markdown(records: Sequence[Record], plots: Sequence[str] = (),
                    unusable: Sequence[BadRecord] = ()) -> str:
    """The whole ``leaderboard.md`` (``unusable``: record files left out, named at the end).
    A leaderboard is a document that travels: absolute local paths (the dataset folder, a
    weights file, an error's file) show their last component only (:mod:`.public`)."""
    if not records:
        text = "# CAD-SD leaderboard\n\nNo results yet.\n" + "\n".join(
            ["", *unusable_section(unusable)] if unusable else [])
    elif is_benchmark(records):
        text = render_benchmark(records, plots) + "\n".join(unusable_section(unusable))
    else:
        text = render_cadsd(records, plots, unusable)
    return public_text(text)
