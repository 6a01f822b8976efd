"""Progress reporting for ``bench run``: an overall bar over cells and one for the current stage.

The runner talks to a :class:`Reporter`; the base class is silent (tests, library use) and
:class:`RichReporter` draws rich progress bars on stderr.
"""

from __future__ import annotations

from typing import Any


class Reporter:
    """Silent progress sink; subclasses draw something."""

    def run_start(self, cells: int) -> None:
        """A run of ``cells`` cells starts."""

    def cell_start(self, cell: str) -> None:
        """Cell ``cell`` starts."""

    def stage(self, name: str, total: int) -> None:
        """The current cell enters stage ``name`` of ``total`` steps."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` steps of the current stage are done."""

    def cell_done(self, cell: str, status: str) -> None:
        """Cell ``cell`` finished (``ok``, skipped, or an error message)."""

    def close(self) -> None:
        """Stop drawing."""


class RichReporter(Reporter):
    """Two rich progress bars: cells overall and the current cell's stage."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self.overall: Any = None
        self.current: Any = None
        self.cell = ""
        self.progress.start()

    def run_start(self, cells: int) -> None:
        self.overall = self.progress.add_task("[bold]cells", total=cells)

    def cell_start(self, cell: str) -> None:
        self.cell = cell
        if self.current is None:
            self.current = self.progress.add_task(cell, total=1)

    def stage(self, name: str, total: int) -> None:
        self.progress.reset(self.current, total=max(total, 1),
                            description=f"{self.cell}: {name}")
        if not self.console.is_terminal:  # a log file gets no live bars: one line per stage
            self.console.print(f"{self.cell}: {name} ({total} steps)", highlight=False)

    def advance(self, steps: int = 1) -> None:
        if self.current is not None:
            self.progress.advance(self.current, steps)

    def cell_done(self, cell: str, status: str) -> None:
        colour = "green" if status == "ok" else ("dim" if status.startswith("skipped") else "red")
        self.progress.console.print(f"[{colour}]{cell}: {status}[/]", highlight=False)
        if self.overall is not None:
            self.progress.advance(self.overall)

    def close(self) -> None:
        self.progress.stop()
