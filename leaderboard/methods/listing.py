"""``bench list``: every method a run can name, with its status, description and paper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from leaderboard.errors import BenchError
from leaderboard.methods import outside
from leaderboard.methods.entry import PROJECT, MethodEntry
from leaderboard.methods.select import builtin_or, describe, load_class

if TYPE_CHECKING:
    from baselines.base import Detector

#: (name, status, description, paper or package)
Row = tuple[str, str, str, str]


def _status(klass: type[Detector]) -> str:
    return "ready" + (f" (budgets: {', '.join(klass.budgets)})" if klass.budgets else "")


def list_rows(registry: Mapping[str, MethodEntry] | None = None) -> tuple[list[Row], list[str]]:
    """One row per method, the built-in ones first, then the installed entry points (marked as
    outside methods), and the lines that say how outside methods join a run."""
    reg = builtin_or(registry)
    rows: list[Row] = []
    budget_notes: list[str] = []
    for name, entry in reg.items():
        desc, paper, status = entry.description, entry.paper, "not yet implemented"
        if entry.implemented:
            try:
                klass = load_class(name, reg)
                desc, paper = describe(entry, klass)
                status = _status(klass)
                if klass.budgets and not entry.variant_of:
                    budget_notes.append(budget_line(name, klass))
            except BenchError as err:  # show a broken registration, go on
                status = f"import error: {err}"
            if entry.origin == PROJECT:
                paper = "this project's method (not from a paper)"
        rows.append((name, status, desc, paper))
    plugins = outside.entry_points()
    for name, plugin in plugins.items():
        package = f"outside method: package {outside.package_text(plugin)}"
        try:
            entry = outside.from_entry_point(plugin, reg)
            klass = load_class(name, {name: entry})
            rows.append((name, _status(klass), entry.description,
                         package + (f"; {klass.paper}" if klass.paper else "")))
        except BenchError as err:
            rows.append((name, f"refused: {err}", plugin.target, package))
    from leaderboard.methods import anomalib

    zoo_rows, zoo_notes = anomalib.list_rows()
    rows += zoo_rows
    notes = [
        ("`--methods all` runs the paper's methods and baselines and this project's "
         "sa_patchcore_dual (marked \"this project's method\"; its study: `--suite dual`), "
         "never outside ones (the table does not change when a package is installed)."),
        ("Outside methods: name an installed entry point (`--methods all,NAME`), or any "
         "Detector subclass by import path (`--methods patchcore,mypkg.mymod:MyDetector`); "
         f"packages register them in the entry-point group `{outside.GROUP}`. See "
         f"{outside.DOCS}."),
    ]
    if not plugins:
        notes.insert(1, f"No package has registered a method in `{outside.GROUP}`.")
    return rows, budget_notes + notes + zoo_notes


def budget_line(name: str, klass: type[Detector]) -> str:
    """What each of a method's budgets changes: ``cs_flow budgets: paper = the official
    settings; quick = input_size 768 -> 256, ...``."""
    defaults = klass.settings()
    parts = []
    for budget, changes in klass.budgets.items():
        what = ", ".join(f"{k} {defaults[k].default!r} -> {v!r}" for k, v in changes.items())
        parts.append(f"{budget} = {what or 'the official settings'}")
    return f"{name} budgets: " + "; ".join(parts) + "."
