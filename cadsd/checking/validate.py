"""`cadsd validate`: is this folder a complete, clean CAD-SD?

Checks every image decodes fully (a truncated JPEG fails; PIL's ``LOAD_TRUNCATED_IMAGES`` is
never turned on) and is RGB or convertible to it; counts per split and category against the
paper's (Ishida et al. 2023, Sec. IV-A) with overrides; exact duplicates by sha256 within a split
and across train/test (leakage); stray files, unknown and missing folders, zero-byte files, and
synthetic masks that belong to no image, and links that leave the dataset (never read). Notes
(:mod:`cadsd.checking.notes`) say what loaders will do without failing the check: EXIF
orientation tags, tiny or extreme images, a group missing a type. It reports what it finds and
never assumes: the lacking count is 40 in the paper and 44 in a comment of the official code.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cadsd.checking.expect import expected_counts, parse_expect
from cadsd.checking.findings import Problem
from cadsd.checking.imagecheck import inspect_files, mode_findings
from cadsd.checking.notes import group_notes, orientation_notes, size_notes
from cadsd.format.layout import (
    BY_FOLDER,
    MASK_DIR,
    MASK_SUFFIX,
    ROOT_FILES,
    SPLIT_FOLDERS,
    SPLITS,
    is_hidden,
    is_image,
    resolve_root,
)
from cadsd.format.links import leaving_message, link_out

SCHEMA_VERSION = 1
__all__ = ["ImageSummary", "Problem", "ValidationReport", "expected_counts", "parse_expect",
           "validate", "write_json"]
_FOLDER_OF = {c.name: c.folder for c in BY_FOLDER.values()}


@dataclass
class ImageSummary:
    """What the images are: how many, and their sizes, modes and formats with counts."""

    total: int = 0
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> n
    modes: Counter = field(default_factory=Counter)  # PIL mode -> n
    formats: Counter = field(default_factory=Counter)  # PIL format -> n


@dataclass
class ValidationReport:
    """The result of :func:`validate`; ``ok`` when there is no problem (warnings allowed)."""

    root: Path
    counts: dict[tuple[str, str], int]
    expected: dict[tuple[str, str], int]
    images: ImageSummary
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # what loaders will do (cadsd.checking.notes)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        """A JSON-ready dict; count keys are ``"split/category"``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "root": str(self.root),
            "ok": self.ok,
            "counts": {f"{s}/{c}": n for (s, c), n in self.counts.items()},
            "expected": {f"{s}/{c}": n for (s, c), n in self.expected.items()},
            "images": {
                "total": self.images.total,
                "sizes": [
                    {"width": w, "height": h, "count": n}
                    for (w, h), n in self.images.sizes.most_common()
                ],
                "modes": dict(self.images.modes.most_common()),
                "formats": dict(self.images.formats.most_common()),
            },
            "problems": [vars(p) for p in self.problems],
            "warnings": [vars(w) for w in self.warnings],
            "notes": [vars(n) for n in self.notes],
        }

    def to_json(self) -> str:
        """The report as indented JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=2)


def write_json(report: ValidationReport, path: str | Path) -> Path:
    """Write ``report.to_json()`` to ``path`` atomically (temp file in the same folder, rename)."""
    from cadsd.files import atomic_write_text

    return atomic_write_text(Path(path).expanduser(), report.to_json() + "\n")


class _Scan:
    """Walks the folder tree once, sorting entries into images, masks and findings."""

    def __init__(self, base: Path, expected: dict[tuple[str, str], int]) -> None:
        self.base = base
        self.expected = expected
        self.images: list[tuple[Path, str, str]] = []  # (path, split, folder)
        self.masks: list[tuple[Path, str]] = []  # (path, folder)
        self.present: set[tuple[str, str]] = set()  # (split, folder) that exist
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.hidden: list[str] = []  # dot-files, reported once (a macOS zip has hundreds)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix() or "."

    def problem(self, kind: str, path: Path, message: str) -> None:
        self.problems.append(Problem(kind, self.rel(path), message))

    def _entries(self, folder: Path) -> list[Path]:
        """Visible entries, sorted; hidden ones are noted in ``self.hidden``, and links that
        leave the dataset are problems, never read."""
        out = []
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if is_hidden(entry):
                self.hidden.append(self.rel(entry))
            elif (found := link_out(entry, self.base)) is not None:
                self.problem("link_outside", entry, leaving_message(*found, self.base))
            else:
                out.append(entry)
        return out

    def run(self) -> None:
        for entry in self._entries(self.base):
            if entry.is_dir() and entry.name in SPLITS:
                self._split(entry)
            elif entry.is_dir() and entry.name == MASK_DIR:
                self._masks(entry)
            elif entry.is_dir():
                self.problem(
                    "unknown_folder",
                    entry,
                    "unknown folder; CAD-SD holds only train/, test/ and (synthetic) ground_truth/",
                )
            elif entry.name not in ROOT_FILES:
                self.warnings.append(
                    Problem("root_file", self.rel(entry), "file at the root, not part of a split")
                )
        if self.hidden:
            message = f"{len(self.hidden)} hidden entries ignored (as loaders do)"
            self.warnings.append(Problem("hidden_file", self.hidden[0], message))
        for split in SPLITS:
            if not (self.base / split).is_dir():
                wanted = ", ".join(f"{split}/{f}" for f in SPLIT_FOLDERS[split])
                self.problem("missing_folder", self.base / split, f"missing {split}/ ({wanted})")

    def _split(self, folder: Path) -> None:
        split = folder.name
        for entry in self._entries(folder):
            if entry.is_dir() and entry.name in SPLIT_FOLDERS[split]:
                self.present.add((split, entry.name))
                self._category(entry, split)
            elif entry.is_dir():
                hint = (
                    f"train holds only normal images (0_good); {entry.name} belongs in test/"
                    if entry.name in BY_FOLDER
                    else f"expected only {', '.join(SPLIT_FOLDERS[split])}"
                )
                self.problem("unknown_folder", entry, f"unknown folder in {split}/: {hint}")
            else:
                self.problem("stray_file", entry, "file outside a category folder")
        for name in SPLIT_FOLDERS[split]:
            want = self.expected[(split, BY_FOLDER[name].name)]
            if (split, name) not in self.present and want > 0:
                self.problem(
                    "missing_folder", folder / name, f"missing category folder ({want} expected)"
                )

    def _category(self, folder: Path, split: str) -> None:
        for entry in self._entries(folder):
            if entry.is_dir():
                self.problem("unknown_folder", entry, "nested folder; loaders do not read it")
            elif is_image(entry):
                self.images.append((entry, split, folder.name))
            else:
                self.problem("stray_file", entry, "not an image (.jpg/.jpeg/.png expected)")

    def _masks(self, folder: Path) -> None:
        for sub in self._entries(folder):
            if not sub.is_dir() or sub.name not in SPLIT_FOLDERS["test"]:
                self.problem(
                    "unknown_folder", sub, "ground_truth/ holds only test category folders"
                )
                continue
            for entry in self._entries(sub):
                if entry.is_file() and entry.name.endswith(MASK_SUFFIX):
                    self.masks.append((entry, sub.name))
                else:
                    self.problem("stray_file", entry, f"not a mask (<stem>{MASK_SUFFIX} expected)")


def validate(
    root: str | Path, expect: dict[str, int] | None = None, *, workers: int | None = None
) -> ValidationReport:
    """Check the dataset at ``root`` (or its one wrapping folder) and report every finding.

    ``expect`` overrides :data:`cadsd.format.layout.PAPER_COUNTS`, keyed by category (``lacking``: every
    split holding it) or ``split/category`` (``train/good``). Raises :class:`LayoutError` only
    when ``root`` is missing or holds no split; everything else lands in the report.
    """
    expected = expected_counts(expect)
    given = Path(root).expanduser()
    base = resolve_root(given)
    scan = _Scan(base, expected)
    if base != given:
        scan.warnings.append(
            Problem("wrapper", base.name, f"dataset found inside a wrapping folder: {base}")
        )
    scan.run()
    # index() order (split, category, name), so findings list train before test.
    order = {(s, f): i for i, (s, f) in enumerate((s, f) for s in SPLITS for f in SPLIT_FOLDERS[s])}
    scan.images.sort(key=lambda item: (order[item[1], item[2]], item[0].name))
    paths = [p for p, _, _ in scan.images] + [p for p, _ in scan.masks]
    infos = dict(zip(paths, inspect_files(paths, workers=workers)))

    counts = {key: 0 for key in expected}
    summary = ImageSummary()
    by_hash: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for path, split, folder in scan.images:
        counts[(split, BY_FOLDER[folder].name)] += 1
        info = infos[path]
        summary.total += 1
        if info.sha256 is None:  # nothing was read: an empty or unreadable file
            kind = "unreadable" if info.error else "empty_file"
            scan.problem(kind, path, info.error or "zero-byte file")
            continue
        by_hash[info.sha256].append((split, path))
        if info.error:
            scan.problem("decode_error", path, f"does not decode fully: {info.error}")
            continue
        summary.sizes[info.size] += 1
        summary.modes[info.mode] += 1
        summary.formats[info.format] += 1
        want = {".png": "PNG"}.get(path.suffix.lower(), "JPEG")
        if info.format != want:
            scan.warnings.append(
                Problem("suffix", scan.rel(path), f"{info.format} data under a {path.suffix} name")
            )
    rel_images = [(scan.rel(p), infos[p].mode, infos[p].format) for p, _, _ in scan.images
                  if infos[p].mode]
    for kind, path, message, is_problem in mode_findings(rel_images):
        (scan.problems if is_problem else scan.warnings).append(Problem(kind, path, message))

    _check_counts(scan, counts, expected)
    _check_duplicates(scan, by_hash)
    _check_masks(scan, infos)
    decoded = [(scan.rel(p), infos[p]) for p, _, _ in scan.images if infos[p].size]
    notes = [*orientation_notes((rel, info.orientation) for rel, info in decoded),
             *size_notes((rel, info.size) for rel, info in decoded),
             *group_notes(cat for (split, cat), n in counts.items() if split == "test" and n)]
    return ValidationReport(base, counts, expected, summary, scan.problems, scan.warnings, notes)


def _check_counts(
    scan: _Scan, counts: dict[tuple[str, str], int], expected: dict[tuple[str, str], int]
) -> None:
    for (split, cat), want in expected.items():
        found = counts[(split, cat)]
        folder = _FOLDER_OF[cat]
        if found == want or ((split, folder) not in scan.present and found == 0):
            continue  # equal, or already reported as a missing folder
        message = f"{split}/{cat}: found {found} images, expected {want}."
        if (split, cat) == ("train", "good") and found == 0:
            message = ("train/good: no images. An empty training split is never usable (every "
                       f"method fits on the normal training images): put them in train/{folder}/.")
        elif cat == "lacking":
            message += (
                " The paper (Sec. IV-A) states 40 lacking images, a comment in the official code"
                " says 44; if your copy is meant to differ, accept it with"
                f" `--expect lacking={found}`."
            )
        else:
            key = f"{split}/{cat}" if cat == "good" else cat
            message += f" If that is intended, accept it with `--expect {key}={found}`."
        scan.problem("count", scan.base / split / folder, message)


def _check_duplicates(scan: _Scan, by_hash: dict[str, list[tuple[str, Path]]]) -> None:
    for group in by_hash.values():
        if len(group) < 2:
            continue
        names = " = ".join(scan.rel(p) for _, p in group)
        if len({split for split, _ in group}) > 1:
            scan.problem(
                "leakage", group[0][1], f"identical image in train and test (leakage): {names}"
            )
        else:
            scan.problem("duplicate", group[0][1], f"identical images: {names}")


def _check_masks(scan: _Scan, infos: dict) -> None:
    images = {(folder, p.stem): p for p, split, folder in scan.images if split == "test"}
    for mask, folder in scan.masks:
        image = images.get((folder, mask.name[: -len(MASK_SUFFIX)]))
        info = infos[mask]
        if image is None:
            scan.problem("orphan_mask", mask, f"mask without an image in test/{folder}/")
        elif info.sha256 is None:
            scan.problem(
                "unreadable" if info.error else "empty_file", mask, info.error or "zero-byte mask"
            )
        elif info.error:
            scan.problem("decode_error", mask, f"mask does not decode fully: {info.error}")
        elif infos[image].size and info.size != infos[image].size:
            w, h = info.size
            iw, ih = infos[image].size
            scan.problem("mask_size", mask, f"mask is {w}x{h}, its image {iw}x{ih}")
