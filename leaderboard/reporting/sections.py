"""How a leaderboard is cut into sections, and the sections every one ends with.

Records measured on different data never share a table: :func:`dataset_sections` gives each
dataset (its fingerprint; a benchmark's categories together, one fingerprint per category) its
own section, titled by :func:`data_label`, whether the records come from one run folder or
several. Every leaderboard ends with its failed cells and the record files it left out."""

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


def data_label(records: Sequence[Record]) -> str:
    """What a section's data is, as its records describe it."""
    from cadsd.format.layout import PAPER_COUNTS

    d = records[0].dataset
    if all(r.dataset.real_cadsd for r in records):
        paper = {f"{split}/{cat}": n for (split, cat), n in PAPER_COUNTS.items()}
        counts = ("the paper's image counts" if d.counts == paper
                  else "counts that differ from the paper's")
        return f"CAD-SD, the real dataset (as `cadsd download` fetched it; {counts})"
    if d.synthetic or d.kind == "synthetic":
        gen = d.generator or {}
        seed = f", seed {gen['seed']}" if "seed" in gen else ""
        return f"SYNTHETIC CAD-SD (`cadsd synth`{seed}), not the paper's data"
    if d.benchmark:
        cats = list(dict.fromkeys(r.dataset.category for r in records if r.dataset.category))
        return f"{d.benchmark} ({', '.join(cats)})" if cats else d.benchmark
    return d.name


def dataset_sections(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Records per dataset, the real CAD-SD first, then in order of appearance. A dataset is a
    fingerprint; a benchmark's categories (one fingerprint each) form one section as long as
    every category has one fingerprint, else each fingerprint is its own section. Keys: the
    fingerprint, or ``benchmark:NAME`` with the categories' fingerprints."""
    out: dict[str, list[Record]] = {}
    bench: dict[str, list[Record]] = {}
    for r in records:
        if r.dataset.benchmark:
            bench.setdefault(r.dataset.benchmark, []).append(r)
        else:
            out.setdefault(r.dataset.fingerprint, []).append(r)
    for name, recs in bench.items():
        prints: dict[str | None, set[str]] = {}
        for r in recs:
            prints.setdefault(r.dataset.category, set()).add(r.dataset.fingerprint)
        if all(len(p) == 1 for p in prints.values()):
            key = f"benchmark:{name}:" + ",".join(sorted(p for ps in prints.values() for p in ps))
            out[key] = recs
        else:  # two copies of a category: never averaged, each copy alone
            for r in recs:
                out.setdefault(r.dataset.fingerprint, []).append(r)
    return dict(sorted(out.items(), key=lambda kv: not all(r.dataset.real_cadsd
                                                           for r in kv[1])))


def section_fingerprint(key: str, records: Sequence[Record]) -> str:
    """How a section's title names its data: the fingerprint, or for a benchmark the number of
    categories."""
    if key.startswith("benchmark:"):
        return f"{len({r.dataset.category for r in records})} categories"
    return f"fingerprint `{key[:12]}`"


def demoted(markdown: str) -> str:
    """Every heading one level down, so a section's tables sit under its title."""
    return "\n".join(f"#{line}" if line.startswith("#") else line
                     for line in markdown.splitlines())


def leakage_banner(records: Sequence[Record]) -> list[str]:
    """A warning when test images were also training images (a run with --allow-leakage)."""
    leaked = {(r.dataset.name, f) for r in records for f in r.dataset.leaked}
    if not leaked:
        return []
    names = sorted(f for _, f in leaked)
    shown = ", ".join(f"`{n}`" for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return ["", (f"> ⚠ **Leakage: {len(leaked)} test image(s) are also training images** "
                f"(identical files: {shown}); the run was told to go on (`--allow-leakage`). "
                "Scores on them do not measure unseen parts.")]
