"""Rich rendering of a :class:`cadsd.checking.validate.ValidationReport` (tables, then findings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from cadsd.format.layout import BY_NAME

if TYPE_CHECKING:
    from rich.console import Console

    from cadsd.checking.validate import ValidationReport

_MAX_SIZES = 8  # distinct image sizes listed before "... N more"


def _counts_table(report: ValidationReport) -> Table:
    table = Table(title="Images per split and category")
    for name, justify in [
        ("split", "left"),
        ("category", "left"),
        ("group", "left"),
        ("found", "right"),
        ("expected", "right"),
        ("", "center"),
    ]:
        table.add_column(name, justify=justify)
    for (split, cat), want in report.expected.items():
        found = report.counts.get((split, cat), 0)
        mark = "[green]ok[/]" if found == want else "[bold red]differs[/]"
        table.add_row(split, cat, BY_NAME[cat].group, str(found), str(want), mark)
    total_found = sum(report.counts.values())
    total_want = sum(report.expected.values())
    table.add_section()
    table.add_row("all", "", "", str(total_found), str(total_want), "")
    return table


def _images_table(report: ValidationReport) -> Table:
    summary = report.images
    table = Table(title=f"Decoded images ({sum(summary.sizes.values())} of {summary.total})")
    table.add_column("property")
    table.add_column("values (count)")
    sizes = [f"{w}x{h} ({n})" for (w, h), n in summary.sizes.most_common(_MAX_SIZES)]
    if len(summary.sizes) > _MAX_SIZES:
        sizes.append(f"... {len(summary.sizes) - _MAX_SIZES} more sizes")
    table.add_row("size", ", ".join(sizes) or "-")
    table.add_row("mode", ", ".join(f"{m} ({n})" for m, n in summary.modes.most_common()) or "-")
    formats = ", ".join(f"{f} ({n})" for f, n in summary.formats.most_common())
    table.add_row("format", formats or "-")
    return table


def print_report(report: ValidationReport, console: Console) -> None:
    """Print the counts and image tables, then the warnings and the problems, one per line."""
    console.print(f"[bold]CAD-SD at[/] {escape(str(report.root))}")
    console.print(_counts_table(report))
    console.print(_images_table(report))
    for n in report.notes:
        console.print(f"[cyan]note[/] {escape(f'[{n.kind}] {n.path}: {n.message}')}")
    for w in report.warnings:
        console.print(f"[yellow]warning[/] {escape(f'[{w.kind}] {w.path}: {w.message}')}")
    for p in report.problems:
        console.print(f"[bold red]problem[/] {escape(f'[{p.kind}] {p.path}: {p.message}')}")
    if report.ok:
        console.print(f"[bold green]OK[/]: {report.images.total} images, no problems.")
    else:
        n = len(report.problems)
        console.print(f"[bold red]{n} problem{'s' if n != 1 else ''}[/]: the dataset is not valid.")
