"""Sections every leaderboard ends with, whatever its layout: failed cells and record files
that could not be used."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from leaderboard.records import BadRecord
from leaderboard.records.schema import Record


def failures(records: Sequence[Record]) -> list[str]:
    """Failed cells and their errors."""
    bad = [r for r in records if not r.ok]
    if not bad:
        return []
    return ["## Failed cells", "", *(f"- `{r.cell.id}`: {r.error}" for r in bad), ""]


def unusable_section(unusable: Sequence[BadRecord]) -> list[str]:
    """The record files left out of every table, each with why."""
    if not unusable:
        return []
    return ["## Records left out", "",
            (f"{len(unusable)} file(s) in `records/` could not be used, so their cells are "
             "missing from every table above. `bench run --force` with the run's command moves "
             "them aside (kept, renamed) and recomputes those cells."), "",
            *(f"- `{Path(b.where).name}` {b.reason}" for b in unusable), ""]
