"""Everything `bench run` and `bench leaderboard RUN_DIR` write from a run's records."""

from __future__ import annotations

from pathlib import Path

from leaderboard.plots import write_plots
from leaderboard.records import atomic_write_text, load_records
from leaderboard.tables import render_csv, render_markdown

LEADERBOARD = "leaderboard.md"
RESULTS_CSV = "results.csv"


def write_outputs(run_dir: Path, plots: bool = True) -> dict[str, Path]:
    """(Re)write ``leaderboard.md``, ``results.csv`` and the plots from ``run_dir``'s records."""
    run_dir = Path(run_dir)
    records = load_records(run_dir)
    figures = write_plots(run_dir, records) if plots else []
    out = {
        "leaderboard": atomic_write_text(run_dir / LEADERBOARD, render_markdown(records, figures)),
        "csv": atomic_write_text(run_dir / RESULTS_CSV, render_csv(records)),
    }
    out.update({f: run_dir / f for f in figures})
    return out
