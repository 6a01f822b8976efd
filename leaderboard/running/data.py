"""Which dataset a run uses, and its images decoded once into tensors.

``--dataset`` is ``auto`` (the real CAD-SD when it is in the cache, else the synthetic one),
``cadsd`` (the real one), ``synthetic`` (generated once, cached), a folder (official layout or
saved by ``cadsd build``) or ``hf:ORG/NAME``. Every source goes through :func:`cadsd.format.hf.load`, so
the fingerprint is the dataset toolkit's and rows come in its sorted order.

Images are decoded once per run for each distinct input a method declares
(:class:`baselines.preprocess.InputSpec`: PatchCore's resize 256 + crop 224, PatchSVDD's 256,
CS-Flow's own size) and kept as ``uint8`` (exact: detectors get ``uint8 / 255``); decoding is
timed apart from fitting and scoring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.preprocess import DEFAULT_INPUT, InputSpec
from cadsd.errors import LayoutError
from cadsd.format.layout import synth_settings
from leaderboard.records.schema import DatasetInfo

SYNTHETIC_SETTINGS = {"seed": 0, "counts": "paper", "size": 256}


@dataclass
class Split:
    """One split decoded: ``images`` uint8 ``(N, 3, H, W)``; masks bool ``(N, H, W)`` or None."""

    images: torch.Tensor
    file_names: list[str]
    categories: list[str]
    groups: list[str]
    labels: np.ndarray  # 0 normal, 1 anomaly
    masks: torch.Tensor | None = None
    #: MVTec LOCO AD: per image its defect regions, each a bool mask (H, W) at the input and
    #: its saturation as a fraction of its area (sPRO); None for other data
    regions: list[list[tuple[torch.Tensor, float]]] | None = None

    def __len__(self) -> int:
        return len(self.file_names)

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop`` as float in [0, 1] (what detectors take)."""
        return self.images[start:stop].float().div_(255.0)



@dataclass
class View:
    """Both splits decoded for one input spec, and what decoding them took."""

    spec: InputSpec
    train: Split
    test: Split
    decode_s: float


@dataclass
class BenchData:
    """A resolved dataset: its rows (image bytes and labels), decoded once per input spec."""

    name: str
    kind: str
    source: str
    fingerprint: str
    train_rows: list[dict[str, Any]]
    test_rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    generator: dict[str, Any] | None = None  # synthetic sets: the settings they were drawn with
    views: dict[tuple, View] = field(default_factory=dict)
    benchmark: str | None = None  # a category of MVTec AD, BTAD, LOCO, ...: the benchmark
    category: str | None = None
    count_differences: tuple[str, ...] = ()  # against the benchmark's published counts
    #: test images whose bytes equal a training image's: (test file, training file)
    leaks: tuple[tuple[str, str], ...] = ()

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"

    @property
    def has_masks(self) -> bool:
        return any(r.get("mask") is not None for r in self.test_rows)

    def view(
        self,
        spec: InputSpec = DEFAULT_INPUT,
        start: Callable[[int], None] = lambda total: None,
        tick: Callable[[], None] = lambda: None,
    ) -> View:
        """The splits decoded as ``spec`` says, decoding them on first use (``start(total)``
        then ``tick()`` per image)."""
        if spec.decode_key not in self.views:
            start(len(self.train_rows) + len(self.test_rows))
            root = f"{self.source}/{self.category}" if self.category else self.source
            train, t_train = _decode(self.train_rows, spec, tick, root)
            test, t_test = _decode(self.test_rows, spec, tick, root)
            self.views[spec.decode_key] = View(spec, train, test, t_train + t_test)
        return self.views[spec.decode_key]

    @property
    def train(self) -> Split:
        """The training split at the default input (PatchCore's)."""
        return self.view().train

    @property
    def test(self) -> Split:
        """The test split at the default input (PatchCore's)."""
        return self.view().test

    def counts(self) -> dict[str, int]:
        """Images per ``"split/category"``."""
        out: dict[str, int] = {}
        for split, rows in (("train", self.train_rows), ("test", self.test_rows)):
            for row in rows:
                key = f"{split}/{row['category']}"
                out[key] = out.get(key, 0) + 1
        return out

    def describe(self, spec: InputSpec = DEFAULT_INPUT) -> DatasetInfo:
        """The ``dataset`` block of a result record (decoding as ``spec``)."""
        n = len(self.train_rows) + len(self.test_rows)
        decode_s = self.view(spec).decode_s
        return DatasetInfo(
            name=self.name, kind=self.kind, fingerprint=self.fingerprint, source=self.source,
            synthetic=self.synthetic, real_cadsd=self.kind == "cadsd", counts=self.counts(),
            has_masks=self.has_masks, generator=self.generator, benchmark=self.benchmark,
            category=self.category,
            published_counts=None if self.benchmark is None else not self.count_differences,
            count_differences=list(self.count_differences), decode_s=round(decode_s, 4),
            leaked=[t for t, _ in self.leaks],
            decode_ms_per_image=round(1000 * decode_s / max(n, 1), 3),
        )


@dataclass(frozen=True)
class Resolved:
    """What ``--dataset`` pointed at: a name for the run folder, its kind, a loadable source;
    for a category of a benchmark (MVTec AD, ...) the benchmark and the category."""

    name: str
    kind: str
    source: str
    generator: dict[str, Any] | None = None
    benchmark: str | None = None
    category: str | None = None
    count_differences: tuple[str, ...] = ()
    leaks: tuple[tuple[str, str], ...] = ()  # found while indexing (benchmarks)
    n_train: int | None = None  # training images, where indexing counted them (benchmarks)


def leaked(train: list[tuple[str, Any]], test: list[tuple[str, Any]]
           ) -> tuple[tuple[str, str], ...]:
    """``(test file, training file)`` for every test image whose bytes equal a training
    image's (sha256, as ``cadsd validate`` finds leakage); items are ``(file name, bytes or
    path)``."""
    import hashlib

    def digest(payload: Any) -> str:
        data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
        return hashlib.sha256(data).hexdigest()

    seen = {digest(payload): name for name, payload in train}
    return tuple((name, seen[h]) for name, payload in test if (h := digest(payload)) in seen)


def leakage_message(leaks: tuple[tuple[str, str], ...], where: str) -> str:
    """What a run says about leaked test images (refused, or recorded with --allow-leakage)."""
    pairs = "; ".join(f"{t} = {tr}" for t, tr in leaks[:3]) + ("; ..." if len(leaks) > 3 else "")
    return (f"{where}: {len(leaks)} test image(s) are also training images (identical files: "
            f"{pairs}). Scores on them say nothing about unseen parts (leakage); remove them "
            "from one split (`cadsd validate` lists them), or pass --allow-leakage to run "
            "anyway: the records and the leaderboard then say so")


def resolve_all(spec: str, echo: Callable[[str], None] = print) -> list[Resolved]:
    """``--dataset`` as one or more datasets: a benchmark (``mvtec_ad``, ``btad``,
    ``mvtec_loco``, from the cache; or a folder in one of their layouts) is one dataset per
    category, ``NAME:cat1,cat2`` selecting some. Every category is indexed (layout, masks)
    here, before any cell runs. Anything else is :func:`resolve`'s single dataset."""
    from cadsd import zoo
    from cadsd.zoo.download import benchmark_dir, not_found_message

    if spec.startswith("hf:") or spec in ("auto", "synthetic", "cadsd"):
        return [resolve(spec, echo)]
    head, _, cats = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    if head in zoo.BENCHMARKS:
        bench = zoo.get(head)
        root = benchmark_dir(bench)
        if not root.is_dir():
            raise LayoutError(not_found_message(bench, root))
        return _categories(bench, bench.find_root(root), cats, echo)
    path = Path(head).expanduser()
    if path.is_dir() and not _cadsd_like(path):
        found = zoo.detect(path)
        if found is not None:
            return _categories(found[0], found[1], cats, echo)
        try:
            found = zoo.detect(path.parent)  # one category's own folder
        except LayoutError:  # the parent is not a benchmark's folder
            found = None
        if found is not None and path.name in found[0].found_categories(found[1]) and not cats:
            return _categories(found[0], found[1], path.name, echo)
    if cats:
        raise LayoutError(f"--dataset {spec}: ':CATEGORIES' applies to benchmarks "
                          f"({', '.join(zoo.BENCHMARKS)}) only")
    return [resolve(spec, echo)]


def _cadsd_like(path: Path) -> bool:
    """A saved DatasetDict or a folder in CAD-SD's own layout."""
    from cadsd.format.hf import _is_saved

    return _is_saved(path) or _real_ok(path)


def _categories(bench: Any, root: Path, cats: str, echo: Callable[[str], None]) -> list[Resolved]:
    from cadsd.zoo import count_report

    names = [c.strip() for c in cats.split(",") if c.strip()] or bench.found_categories(root)
    if not names:
        raise LayoutError(f"{root} holds no {bench.title} category")
    out = []
    for cat in names:
        samples = bench.samples(root, cat)  # layout errors surface here, before any cell
        diffs = tuple(count_report(bench, root, cat, samples))
        leaks = leaked([(s.file_name, s.path) for s in samples if s.split == "train"],
                       [(s.file_name, s.path) for s in samples if s.split == "test"])
        out.append(Resolved(f"{bench.name}-{cat}", bench.name, str(root), None, bench.name, cat,
                            diffs, leaks, sum(s.split == "train" for s in samples)))
    known = "" if all(not r.count_differences for r in out) else (
        " Image counts differ from the published ones (e.g. "
        f"{next(d for r in out for d in r.count_differences)}): not the official copy, so "
        "the paper's numbers are not shown.")
    noun = "category" if len(out) == 1 else "categories"
    echo(f"Dataset: {bench.title} at {root}: {len(out)} {noun} ({', '.join(names)}), each "
         f"its own dataset. Licence: {bench.license}.{known}"
         + (f" Note: {bench.notes}." if bench.notes else ""))
    return out


def _real_ok(root: Path) -> bool:
    """True when ``root`` holds a CAD-SD folder with train images and both test classes."""
    from cadsd.format.layout import index

    try:
        samples = index(root)
    except LayoutError:
        return False
    labels = {(s.split, s.label) for s in samples}
    return {("train", "normal"), ("test", "normal"), ("test", "anomaly")} <= labels


def _synthetic(echo: Callable[[str], None], why: str) -> Resolved:
    import cadsd.synth

    path = cadsd.synth.ensure_synthetic(**SYNTHETIC_SETTINGS)
    echo(
        f"Dataset: SYNTHETIC CAD-SD (paper counts, seed 0) at {path}. {why}"
    )
    return Resolved("synthetic", "synthetic", str(path), synth_settings(path))


def resolve(spec: str, echo: Callable[[str], None] = print) -> Resolved:
    """Turn ``--dataset`` into a :class:`Resolved`; prints one line for ``auto``/``synthetic``."""
    from cadsd.format.cache import real_dataset_dir

    real = real_dataset_dir()
    get_real = "get the real CAD-SD with `cadsd download` (or `cadsd download --source PATH`)"
    if spec == "auto":
        if _real_ok(real):
            echo(f"Dataset: the real CAD-SD at {real} (for the synthetic one: --dataset synthetic)")
            return Resolved("cadsd", "cadsd", str(real))
        return _synthetic(echo, f"The real CAD-SD is not in {real}; {get_real}, then rerun.")
    if spec == "synthetic":
        return _synthetic(echo, f"For the real one: {get_real}, then --dataset cadsd.")
    if spec == "cadsd":
        if not _real_ok(real):
            raise LayoutError(f"the real CAD-SD is not in {real}; {get_real}")
        return Resolved("cadsd", "cadsd", str(real))
    if spec.startswith("hf:"):
        repo = spec[3:].split("@")[0]
        return Resolved(repo.replace("/", "__") or "hf", "custom", spec)
    path = Path(spec).expanduser().absolute()
    if not path.exists():
        raise LayoutError(
            f"dataset not found: {path}. Pass a dataset folder (train/, test/), a folder saved by "
            "`cadsd build`, hf:ORG/NAME, `synthetic` or `cadsd`."
        )
    resolved = path.resolve()
    if real.exists() and resolved == real.resolve():
        kind = "cadsd"
    elif (drawn := synth_settings(resolved)) is not None:  # by `cadsd synth`, wherever it lives
        return Resolved(path.name, "synthetic", str(path), drawn)
    else:
        kind = "custom"
    return Resolved(path.name, kind, str(path))


def _rows(dd: Any, split: str) -> list[dict[str, Any]]:
    """Rows of one split with raw image bytes and class names (not ClassLabel ints)."""
    import datasets

    ds = dd[split]
    names = {c: ds.features[c] for c in ("label", "category", "group")}
    cols = ["image", "file_name", *names, *(["regions"] if "regions" in ds.column_names else [])]
    if "mask" in ds.column_names:
        cols.append("mask")
        ds = ds.cast_column("mask", datasets.Image(decode=False))
    ds = ds.select_columns(cols).cast_column("image", datasets.Image(decode=False))
    rows = []
    for row in ds:
        for col, feat in names.items():
            row[col] = feat.int2str(row[col]) if isinstance(row[col], int) else row[col]
        rows.append(row)
    return rows


def _payload(cell: dict[str, Any] | None) -> bytes | str | None:
    if cell is None:
        return None
    return cell["bytes"] if cell.get("bytes") is not None else cell.get("path")


def check_usable(train: list[dict[str, Any]], test: list[dict[str, Any]], source: str) -> None:
    """Refuse data no AUROC can be computed on, before any work (and before any file is written)."""
    fix = f"check it with `cadsd validate {source}`"
    if not train:
        raise LayoutError(f"{source}: the train split has no images; {fix}")
    bad = [r["file_name"] for r in train if r["label"] != "normal"]
    if bad:
        raise LayoutError(
            f"{source}: the train split holds {len(bad)} anomalous images (e.g. {bad[0]}); "
            f"detectors train on normal images only; {fix}"
        )
    for label, what in (("normal", "normal"), ("anomaly", "anomalous")):
        if not any(r["label"] == label for r in test):
            raise LayoutError(
                f"{source}: the test split has no {what} images, so AUROC is undefined "
                f"(it needs both normal and anomalous test images); {fix}"
            )


def _decode(rows: list[dict[str, Any]], spec: InputSpec, tick: Callable[[], None],
            source: str = "") -> tuple[Split, float]:
    from baselines.preprocess import image_to_uint8, mask_to_tensor

    images, masks, regions = [], [], []
    spent = 0.0
    has_masks = any(r.get("mask") is not None for r in rows)
    has_regions = any("regions" in r for r in rows)
    for row in rows:
        start = time.perf_counter()
        where = f"{source.rstrip('/')}/{row['file_name']}" if source else row["file_name"]
        x = image_to_uint8(_payload(row["image"]), spec, where)  # (3, size, size)
        spent += time.perf_counter() - start
        images.append(x)
        if has_masks:
            mask = _payload(row.get("mask"))
            masks.append(mask_to_tensor(mask, spec, f"the mask of {where}") if mask is not None
                         else torch.zeros(x.shape[-2:], dtype=torch.bool))
        if has_regions:
            regions.append([(mask_to_tensor(r["mask"], spec, f"a region mask of {where}"),
                             float(r["saturation"])) for r in row.get("regions") or []])
        tick()
    shape = (0, 3, spec.size, spec.size)
    split = Split(
        images=torch.stack(images) if images else torch.zeros(shape, dtype=torch.uint8),
        file_names=[r["file_name"] for r in rows],
        categories=[r["category"] for r in rows],
        groups=[r["group"] for r in rows],
        labels=np.array([int(r["label"] != "normal") for r in rows], dtype=np.int64),
        masks=torch.stack(masks) if has_masks else None,
        regions=regions if has_regions else None,
    )
    return split, spent


def load(resolved: Resolved) -> BenchData:
    """Load and check a resolved dataset (decoding comes later, per input: :meth:`BenchData.view`).

    Masks are kept only when every anomalous test image has one (pixel AUROC would otherwise
    count a missing mask as "no defect").
    """
    import cadsd.format.hf

    if resolved.benchmark is not None:
        from cadsd import zoo

        dd = zoo.build(zoo.get(resolved.benchmark), Path(resolved.source), resolved.category)
    else:
        dd = cadsd.format.hf.load(resolved.source)
    train, test = _rows(dd, "train"), _rows(dd, "test")
    check_usable(train, test, resolved.source)
    fingerprint = cadsd.format.hf.fingerprint(dd)
    notes = []
    unmasked = [r for r in test if r["label"] != "normal" and r.get("mask") is None]
    if unmasked and len(unmasked) < sum(r["label"] != "normal" for r in test):
        notes.append(f"{len(unmasked)} anomalous test images have no mask: no pixel AUROC")
    if unmasked:
        for row in test:
            row.pop("mask", None)
    leaks = resolved.leaks if resolved.benchmark is not None else leaked(
        [(r["file_name"], _payload(r["image"])) for r in train],
        [(r["file_name"], _payload(r["image"])) for r in test])
    return BenchData(
        name=resolved.name,
        kind=resolved.kind,
        source=resolved.source,
        fingerprint=fingerprint,
        train_rows=train,
        test_rows=test,
        notes=notes,
        generator=resolved.generator,
        benchmark=resolved.benchmark,
        category=resolved.category,
        count_differences=resolved.count_differences,
        leaks=leaks,
    )
