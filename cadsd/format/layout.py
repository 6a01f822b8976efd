"""What CAD-SD looks like on disk: splits, category folders, groups and the paper's counts.

The official loader (IshidaKengo/SA-PatchCore ``load_dataset.py``) reads ``train/0_good`` and the
five ``test/<folder>`` folders. Synthetic sets add ``ground_truth/<folder>/<stem>_mask.png``.
This module is the only place that knows these names; everything else asks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cadsd.errors import LayoutError

SPLITS: tuple[str, ...] = ("train", "test")
LABEL_NAMES: tuple[str, ...] = ("normal", "anomaly")
GROUP_NAMES: tuple[str, ...] = ("normal", "local", "co_occurrence")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})
MASK_DIR = "ground_truth"
MASK_SUFFIX = "_mask.png"
#: Provenance of a synthetic set, written into its root by ``cadsd synth`` (seed, counts, size,
#: renderer version); it travels with the folder, so a copied set still says what it is.
SYNTH_MARKER = "cadsd-synth.json"
#: Files a dataset root may hold besides the splits: the checksum manifest `cadsd download`
#: writes (``cadsd.getting.manifest.MANIFEST_NAME``) and the synthetic marker. Validation accepts them.
ROOT_FILES: frozenset[str] = frozenset({"cadsd-manifest.json", SYNTH_MARKER})
#: The Google Drive folder's title; a download may keep it as one wrapping folder.
WRAPPER_NAME = "Co-occurrence Anomaly Detection Screw Dataset"


@dataclass(frozen=True)
class Category:
    """One class of CAD-SD: its folder, its name in the HF dataset, its label and group."""

    folder: str
    name: str
    label: str  # one of LABEL_NAMES
    group: str  # one of GROUP_NAMES


CATEGORIES: tuple[Category, ...] = (
    Category("0_good", "good", "normal", "normal"),
    Category("1_scratch", "scratch", "anomaly", "local"),
    Category("2_paint", "paint", "anomaly", "local"),
    Category("3_over-coupling", "over_coupling", "anomaly", "co_occurrence"),
    Category("4_lacking", "lacking", "anomaly", "co_occurrence"),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
BY_FOLDER: dict[str, Category] = {c.folder: c for c in CATEGORIES}
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
#: Folders each split may hold (train holds normal images only).
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("0_good",),
    "test": tuple(c.folder for c in CATEGORIES),
}
#: Image counts stated by the paper (Ishida et al. 2023, Sec. IV-A). The official code's comment
#: says lacking has 44; validation reports what it finds against these.
PAPER_COUNTS: dict[tuple[str, str], int] = {
    ("train", "good"): 400,
    ("test", "good"): 210,
    ("test", "scratch"): 41,
    ("test", "paint"): 41,
    ("test", "over_coupling"): 44,
    ("test", "lacking"): 40,
}


@dataclass(frozen=True)
class Sample:
    """One image of the dataset. ``file_name`` is its POSIX path relative to the root."""

    path: Path
    split: str
    category: str
    label: str
    group: str
    mask: Path | None = None

    @property
    def file_name(self) -> str:
        return f"{self.split}/{self.path.parent.name}/{self.path.name}"


def is_hidden(path: Path) -> bool:
    """True for dot-files (``.DS_Store``, macOS ``._x.jpg`` forks) that no loader should read."""
    return path.name.startswith(".")


def is_image(path: Path) -> bool:
    """True for a visible regular file with a .jpg/.jpeg/.png suffix in any case.

    Hidden files are skipped as the official loader's ``glob("*.jpg")`` skips them.
    """
    return not is_hidden(path) and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _has_split(folder: Path) -> bool:
    return any((folder / s).is_dir() for s in SPLITS)


def resolve_root(root: str | Path) -> Path:
    """The folder that holds ``train``/``test``: ``root`` itself or its one wrapping folder.

    The wrapping folder is the Drive folder's title (:data:`WRAPPER_NAME`) or, failing that, the
    only subfolder that holds a split; two candidates are ambiguous and raise.
    """
    root = Path(root).expanduser()
    if root.is_file():
        raise LayoutError(
            f"{root} is a file, not a dataset folder. Extract it first, or import it with "
            "`cadsd download --source PATH`."
        )
    if not root.is_dir():
        raise LayoutError(
            f"dataset folder not found: {root}. Pass the folder that holds train/ and test/ "
            "(or run `cadsd download` / `cadsd synth --out DIR` first)."
        )
    if _has_split(root):
        return root
    if _has_split(root / WRAPPER_NAME):
        return root / WRAPPER_NAME
    candidates = sorted(
        p for p in root.iterdir() if p.is_dir() and not is_hidden(p) and _has_split(p)
    )
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise LayoutError(
            f"{root} holds several datasets ({names}); pass the one you mean, e.g. {candidates[0]}"
        )
    raise LayoutError(
        f"{root} has no train/ or test/ folder (nor one wrapping folder that has them). "
        "Expected train/0_good and test/{0_good,1_scratch,2_paint,3_over-coupling,4_lacking}."
    )


def mask_path(root: Path, folder: str, image: Path) -> Path:
    """Where the synthetic ground-truth mask of ``image`` lives (it may not exist)."""
    return root / MASK_DIR / folder / f"{image.stem}{MASK_SUFFIX}"


def index(root: str | Path) -> list[Sample]:
    """All images under the known folders of ``root``, sorted by split, category, file name.

    Unknown folders and non-image files are skipped here (``cadsd validate`` reports them).
    Raises :class:`LayoutError` when ``root`` is missing or holds no CAD-SD split, and
    :class:`~cadsd.errors.LinkError` for an image or mask that is a link leaving the dataset
    (:mod:`cadsd.format.links`).
    """
    from cadsd.format.links import Inside

    base = resolve_root(root)
    check_inside = Inside(base)
    samples: list[Sample] = []
    for split in SPLITS:
        for folder in SPLIT_FOLDERS[split]:
            directory = base / split / folder
            if not directory.is_dir():
                continue
            cat = BY_FOLDER[folder]
            images = (p for p in directory.iterdir() if is_image(p))
            for path in sorted(images, key=lambda p: p.name):
                check_inside(path)
                mask = mask_path(base, folder, path) if split == "test" else None
                if mask is not None and mask.is_file():
                    check_inside(mask)
                samples.append(
                    Sample(
                        path=path,
                        split=split,
                        category=cat.name,
                        label=cat.label,
                        group=cat.group,
                        mask=mask if mask is not None and mask.is_file() else None,
                    )
                )
    return samples


def missing_types(present: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each anomaly group that lacks some of its types among the categories ``present`` (of
    a test split): group -> the missing category names, in :data:`CATEGORIES` order. A
    group's score then averages fewer types than the paper's (or none)."""
    have = set(present)
    out: dict[str, tuple[str, ...]] = {}
    for group in GROUP_NAMES[1:]:
        gone = tuple(c.name for c in CATEGORIES if c.group == group and c.name not in have)
        if gone:
            out[group] = gone
    return out


def _data_files(root: Path) -> list[str]:
    """Every visible file under ``root`` but the marker (hidden files: ignored, as loaders do)."""
    from cadsd.files import walk_files

    return [rel for rel in walk_files(root)
            if rel != SYNTH_MARKER and not any(p.startswith(".") for p in rel.split("/"))]


def write_synth_marker(root: Path, settings: dict) -> Path:
    """Write :data:`SYNTH_MARKER`: ``settings`` and the sha256 of every file now in ``root``."""
    import json

    from cadsd.files import atomic_write_text, sha256_file

    doc = {**settings, "files": {rel: sha256_file(root / rel) for rel in _data_files(root)}}
    return atomic_write_text(root / SYNTH_MARKER, json.dumps(doc, sort_keys=True) + "\n")


def synth_settings(root: str | Path) -> dict | None:
    """The settings a synthetic set was drawn with (its :data:`SYNTH_MARKER`), while its files
    are the ones ``cadsd synth`` wrote (same names, same sha256); else None: an edited set is
    data of its own, not "drawn by cadsd synth"."""
    import json

    marker = Path(root) / SYNTH_MARKER
    try:
        data = json.loads(marker.read_text()) if marker.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    from cadsd.files import sha256_file

    root, files = Path(root), data["files"]
    if set(_data_files(root)) != set(files):  # a file added or removed: no hashing needed
        return None
    if any(sha256_file(root / rel) != digest for rel, digest in files.items()):
        return None
    return {k: v for k, v in data.items() if k != "files"}
