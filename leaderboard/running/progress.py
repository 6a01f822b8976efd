"""Progress reporting for ``bench run``: an overall bar over cells and one for the current stage.

The runner and the detectors' ``fit`` talk to a :class:`Reporter` (a
:class:`baselines.training.Progress`); the base class is silent (tests, library use) and
:class:`RichReporter` draws rich progress bars on stderr, with the latest loss and an ETA while
a method trains. Without a terminal (a log file, CI) it prints one line per stage and one per
epoch (or logging interval) instead of live bars.
"""

from __future__ import annotations

from typing import Any

from baselines.training import Progress


def format_fields(fields: dict[str, float]) -> str:
    """``epoch 3/15  loss 1.234`` from ``{"epoch": 3, "epochs": 15, "loss": 1.234}``."""
    parts = []
    items = dict(fields)
    for count, total in (("epoch", "epochs"), ("step", "steps")):
        if count in items:
            done = int(items.pop(count))
            parts.append(f"{count} {done}/{int(items.pop(total))}" if total in items
                         else f"{count} {done}")
    parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in items.items()]
    return "  ".join(parts)


class Reporter(Progress):
    """Silent progress sink; subclasses draw something."""

    def run_start(self, cells: int) -> None:
        """A run of ``cells`` cells starts."""

    def cell_start(self, cell: str) -> None:
        """Cell ``cell`` starts."""

    def cell_done(self, cell: str, status: str) -> None:
        """Cell ``cell`` finished (``ok``, skipped, or an error message)."""

    def close(self) -> None:
        """Stop drawing."""


class RichReporter(Reporter):
    """Two rich progress bars: cells overall and the current cell's stage (with its loss)."""

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
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"), console=console, transient=False,
        )
        self.overall: Any = None
        self.current: Any = None
        self.cell = ""
        self.progress.start()

    def run_start(self, cells: int) -> None:
        self.overall = self.progress.add_task("[bold]cells", total=cells, metrics="")

    def cell_start(self, cell: str) -> None:
        self.cell = cell
        if self.current is None:
            self.current = self.progress.add_task(cell, total=1, metrics="")

    def stage(self, name: str, total: int) -> None:
        if self.current is None:
            self.cell_start(self.cell or "fit")
        self.progress.reset(self.current, total=max(total, 1),
                            description=f"{self.cell}: {name}", metrics="")
        if not self.console.is_terminal:  # a log file gets no live bars: one line per stage
            self.console.print(f"{self.cell}: {name} ({total} steps)", highlight=False)

    def advance(self, steps: int = 1, **metrics: float) -> None:
        if self.current is not None:
            self.progress.advance(self.current, steps)
            if metrics:
                self.progress.update(self.current, metrics=format_fields(metrics))

    def log(self, **fields: float) -> None:
        task = next((t for t in self.progress.tasks if t.id == self.current), None)
        eta = ""
        if task is not None and task.time_remaining is not None:
            eta = f"  (elapsed {task.elapsed or 0:.0f} s, ETA {task.time_remaining:.0f} s)"
        self.console.print(f"{self.cell}: {format_fields(fields)}{eta}", highlight=False)

    def cell_done(self, cell: str, status: str) -> None:
        colour = "green" if status == "ok" else ("dim" if status.startswith("skipped") else "red")
        self.progress.console.print(f"[{colour}]{cell}: {status}[/]", highlight=False)
        if self.overall is not None:
            self.progress.advance(self.overall)

    def close(self) -> None:
        self.progress.stop()
