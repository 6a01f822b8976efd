"""Everything `bench run` and `bench leaderboard RUN_DIR` write from a run's records."""

from __future__ import annotations

from pathlib import Path

from cadsd.files import atomic_write_text
from leaderboard.records import BadRecord, Record, scan_records
from leaderboard.reporting.plots import PLOT_FILES, PLOTS_DIR, write_plots
from leaderboard.reporting.results_csv import render_csv
from leaderboard.reporting.tables import render_markdown

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
