"""What every dataset beyond CAD-SD shares: a benchmark of several categories, each turned into
the same Hugging Face ``DatasetDict`` (train, test) the harness reads for CAD-SD.

A :class:`Benchmark` knows its published layout (an indexer), its categories and the image counts
published for each, its groups (local, logical, structural), its licence and where to download
it. Each category becomes its own dataset: ``image`` (the original file's bytes), ``label``
ClassLabel[normal, anomaly], ``category`` ClassLabel[good, <its defect types>], ``group``
ClassLabel[normal, <the benchmark's groups>], ``file_name`` (relative to the category folder)
and ``mask`` where the benchmark has masks (the union of an image's masks), in sorted order.
MVTec LOCO AD adds ``regions``: each mask file of an image on its own, with its defect and
saturation fraction (:mod:`cadsd.zoo.loco`), for the sPRO metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cadsd.errors import LayoutError, LinkError
from cadsd.format.images import MASK_THRESHOLD, binary_mask  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import datasets

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """One image of a category: ``file_name`` is its POSIX path relative to the category."""

    path: Path
    file_name: str
    split: str  # train | test (LOCO's validation images are not used: see the adapter)
    category: str  # the defect type, ``good`` for normal images
    label: str  # normal | anomaly
    group: str  # normal | local | logical | structural
    masks: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """A published anomaly-detection benchmark of several categories."""

    name: str
    title: str
    citation: str
    license: str
    groups: tuple[str, ...]  # the anomaly groups, after ``normal``
    categories: tuple[str, ...]
    index: Callable[[Path, str], list[Sample]]  # (category folder, category) -> samples
    #: category -> {"train/good": n, "test/<defect>": n, ...}: the published counts
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    url: str | None = None  # the official archive (None: no public download)
    sha256: str | None = None
    archive_root: tuple[str, ...] = ()  # folder names an extracted archive may wrap it in
    notes: str = ""  # caveats shown by validate, the card and the leaderboard
    paper: dict[str, float] = field(default_factory=dict)  # SA-PatchCore paper: method -> mean
    layout: str = "mvtec_ad"  # the folder structure: mvtec_ad, btad or mvtec_loco (see layout_of)
    normal_folder: str = "good"  # the folder name of normal images (BTAD: ok)
    mirrors: tuple[str, ...] = ()  # further official URLs of the same archive, tried in order
    generic: bool = False  # a folder in a benchmark's layout, not the benchmark itself

    @property
    def urls(self) -> tuple[str, ...]:
        """The official archive's URLs, the current one first."""
        return ((self.url,) if self.url else ()) + self.mirrors

    @property
    def noncommercial(self) -> bool:
        return "NC" in self.license

    def category_dir(self, root: Path, category: str) -> Path:
        if self.categories and category not in self.categories:
            raise LayoutError(f"{self.name} has no category {category!r}; its categories: "
                              f"{', '.join(self.categories)}")
        folder = root / category
        if not folder.is_dir():
            raise LayoutError(f"{root} has no {category}/ folder: the {self.title} layout is "
                              f"<root>/<category>/train, test, ... ({', '.join(self.categories)})")
        found = layout_of(folder)
        if found is not None and found != self.layout:
            raise LayoutError(f"{folder} has {LAYOUT_NAMES[found]}'s layout "
                              f"({LAYOUT_SIGNS[found]}), not {self.title}'s; pass "
                              f"--dataset {found} (its download) or the folder itself, whose "
                              "layout is detected")
        return folder

    def samples(self, root: Path, category: str) -> list[Sample]:
        """The category's images in sorted order, checked: train holds normal images only,
        the test split both kinds, every anomalous image of a masked benchmark a mask, and no
        image or mask is a link leaving ``root``."""
        from cadsd.format.links import Inside

        folder = self.category_dir(root, category)
        samples = sorted(self.index(folder, category), key=lambda s: (s.split, s.file_name))
        check_inside = Inside(root)
        for s in samples:  # a link that leaves the dataset is never read (LinkError)
            for path in (s.path, *s.masks):
                check_inside(path)
        where = f"{self.name}:{category} ({folder})"
        if not any(s.split == "train" for s in samples):
            raise LayoutError(f"{where}: no training images")
        if not {"normal", "anomaly"} <= {s.label for s in samples if s.split == "test"}:
            raise LayoutError(f"{where}: the test split needs normal and anomalous images")
        return samples

    def folder_key(self, split: str, category: str) -> str:
        """``split/<folder>`` as on disk (normal images sit in :attr:`normal_folder`)."""
        return f"{split}/{self.normal_folder if category == 'good' else category}"

    def defect_types(self, samples: list[Sample]) -> list[str]:
        return sorted({s.category for s in samples} - {"good"})

    def found_categories(self, root: Path) -> list[str]:
        """The categories present under ``root`` (a folder import: any ``<name>/train``)."""
        if self.categories:
            return [c for c in self.categories if (root / c).is_dir()]
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "train").is_dir() and (p / "test").is_dir())

    def find_root(self, path: Path) -> Path:
        """``path`` or the one wrapping folder an archive left around the categories."""
        if self.found_categories(path):
            return path
        for name in self.archive_root:
            if self.found_categories(path / name):
                return path / name
        inner = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
        if len(inner) == 1 and self.found_categories(inner[0]):
            return inner[0]
        raise LayoutError(f"{path} holds none of {self.title}'s categories "
                          f"({', '.join(self.categories) or '<name>/train, <name>/test'})")


def build(bench: Benchmark, root: Path, category: str) -> datasets.DatasetDict:
    """One category as a DatasetDict (train, test) with the benchmark's features."""
    from datasets import ClassLabel, DatasetDict, Features, Value

    from cadsd.format.hf_image import StoredImage as Image  # stored pixel order, no EXIF turn

    samples = bench.samples(root, category)
    with_mask = any(s.masks for s in samples)
    feats = Features({
        "image": Image(),
        "label": ClassLabel(names=["normal", "anomaly"]),
        "category": ClassLabel(names=["good", *bench.defect_types(samples)]),
        "group": ClassLabel(names=["normal", *bench.groups]),
        "file_name": Value("string"),
        **({"mask": Image()} if with_mask else {}),
    })
    from cadsd.format.hf import split_dataset

    mask_of = (lambda s: union_mask(s.masks) if s.masks else None) if with_mask else None
    regions_of = _regions_reader(bench, root, category)
    out = {}
    for split in ("train", "test"):
        rows = [s for s in samples if s.split == split]
        ds = split_dataset(rows, feats, mask_of)
        if regions_of is not None:
            from cadsd.zoo.loco import regions_feature

            ds = ds.add_column("regions", [regions_of(s) for s in rows],
                               feature=regions_feature())
        out[split] = ds
    return DatasetDict(out)


def _regions_reader(bench: Benchmark, root: Path, category: str) -> Callable | None:
    """MVTec LOCO AD only: ``sample -> [region, ...]`` (each mask file on its own, with its
    defect and saturation fraction, for sPRO: :mod:`cadsd.zoo.loco`); None elsewhere."""
    if bench.layout != "mvtec_loco":
        return None
    from cadsd.zoo.loco import CONFIG_NAME, read_defects_config, region

    folder = bench.category_dir(root, category)
    config = read_defects_config(folder)
    return lambda s: [region(p, config, folder / CONFIG_NAME) for p in s.masks]


def union_mask(paths: tuple[Path, ...]) -> dict:
    """One mask image (PNG bytes): the file itself, or the union of several (LOCO)."""
    if len(paths) == 1:
        return {"bytes": paths[0].read_bytes(), "path": None}
    import io

    from PIL import Image as PILImage

    merged = None
    for p in paths:
        with PILImage.open(p) as img:
            m = binary_mask(img)
        merged = m if merged is None else merged | m
    buf = io.BytesIO()
    PILImage.fromarray((merged * 255).astype("uint8")).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


#: what each layout is called, and the structure that tells it apart (per category folder)
LAYOUT_NAMES = {"mvtec_ad": "MVTec AD", "btad": "BTAD", "mvtec_loco": "MVTec LOCO AD"}
LAYOUT_SIGNS = {
    "mvtec_loco": "validation/good, test/logical_anomalies or structural_anomalies, "
                  "ground_truth/<type>/<image id>/000.png",
    "btad": "train/ok, test/ok, test/ko",
    "mvtec_ad": "train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png",
}


def _nested_masks(gt: Path) -> bool:
    """``ground_truth/<type>/<id>/<k>.png``: masks one folder deeper than MVTec AD's."""
    return gt.is_dir() and any(images_in(d) for t in gt.iterdir() if t.is_dir()
                               for d in t.iterdir() if d.is_dir())


def layout_of(folder: Path) -> str | None:
    """Which published layout a category folder has, from its structure alone (never from its
    name): MVTec LOCO AD (a ``validation/`` split, ``logical_anomalies`` /
    ``structural_anomalies`` test folders, or masks in one folder per image), BTAD (normal images
    in ``ok/``), MVTec AD (``train/good``); None when it has none of them."""
    test = folder / "test"
    if ((folder / "validation").is_dir() or (test / "logical_anomalies").is_dir()
            or (test / "structural_anomalies").is_dir() or _nested_masks(folder / "ground_truth")):
        return "mvtec_loco"
    if (folder / "train" / "ok").is_dir():
        return "btad"
    if (folder / "train" / "good").is_dir():
        return "mvtec_ad"
    return None


def images_in(folder: Path) -> list[Path]:
    """Image files of one folder, sorted (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def count_report(bench: Benchmark, root: Path, category: str,
                 samples: list[Sample]) -> list[str]:
    """Differences between the counts found and the published ones (empty when they agree)."""
    want = bench.counts.get(category)
    if not want:
        return []
    found: dict[str, int] = {}
    for s in samples:
        key = bench.folder_key(s.split, s.category)
        found[key] = found.get(key, 0) + 1
    published = {key.split("/")[0] for key in want}  # splits whose counts were published
    out = []
    for key in sorted(set(want) | {k for k in found if k.split("/")[0] in published}):
        if want.get(key, 0) != found.get(key, 0):
            out.append(f"{category}/{key}: {found.get(key, 0)} images, published "
                       f"{want.get(key, 0)}")
    return out


def check_copy(bench: Benchmark, root: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """A whole copy: ``({category: (train images, test images)}, problems)``, the problems
    being missing categories, layout errors and counts that differ from the published ones."""
    found = bench.found_categories(root)
    problems = [f"category {c} is missing" for c in bench.categories if c not in found]
    sizes = {}
    for cat in found:
        try:
            samples = bench.samples(root, cat)
        except (LayoutError, LinkError) as err:
            problems.append(str(err))
            continue
        problems += count_report(bench, root, cat, samples)
        sizes[cat] = (sum(s.split == "train" for s in samples), sum(s.split == "test" for s in samples))
    return sizes, problems
