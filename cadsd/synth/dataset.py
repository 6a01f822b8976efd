"""Write a synthetic CAD-SD in the official folder layout, in parallel and atomically.

Each image's RNG comes from ``SeedSequence((seed, split, category, index))``, so a file's bytes
depend only on those four numbers and the size: the same seed gives byte-identical datasets with
any number of workers. The set is written to a hidden staging folder next to ``out`` and renamed
into place only when complete, so an interrupted run never leaves a half dataset at ``out``.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from cadsd.errors import CadsdError
from cadsd.files import Output, marker_files, output_folder
from cadsd.format import cache, layout
from cadsd.synth import anomalies, render
from cadsd.synth.scene import Scene, sample_scene

#: Images per (split, category name). ``paper``: the counts of Ishida et al. 2023, Sec. IV-A.
COUNTS: dict[str, dict[tuple[str, str], int]] = {
    "paper": dict(layout.PAPER_COUNTS),
    "small": {
        ("train", "good"): 12,
        ("test", "good"): 6,
        ("test", "scratch"): 3,
        ("test", "paint"): 3,
        ("test", "over_coupling"): 3,
        ("test", "lacking"): 3,
    },
}
JPEG_QUALITY = 92
#: Bump whenever the rendering changes, so cached sets (:func:`ensure_synthetic`) are redrawn.
RENDER_VERSION = 1
CHUNK = 8  # images per worker task: amortises inter-process overhead


@dataclass
class Rendered:
    """One synthetic image with its ground truth and the renderer's own geometry."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    mask: np.ndarray | None  # (size, size) bool for anomalies, None for good images
    product: np.ndarray  # (size, size) bool: product silhouette
    nuts: np.ndarray  # (size, size) bool: silhouettes of the drawn nuts
    scene: Scene


def image_rng(seed: int, split: str, category: str, index: int) -> np.random.Generator:
    """The RNG of one image: independent of generation order and worker count."""
    key = (seed, layout.SPLITS.index(split), layout.CATEGORY_NAMES.index(category), index)
    return np.random.default_rng(np.random.SeedSequence(key))


def render_sample(seed: int, split: str, category: str, index: int, size: int = 256) -> Rendered:
    """Render image ``index`` of (split, category) for ``seed`` at ``size`` x ``size`` pixels."""
    rng = image_rng(seed, split, category, index)
    scene = sample_scene(rng, category)
    scene = replace(scene, defect=anomalies.sample_defect(rng, category, scene))
    surf = render.surface(scene, size)
    defect = anomalies.apply_defect(surf, scene.defect)
    image = render.compose(scene, surf, size, rng)
    product = render.scatter(surf, np.ones(surf.index.size), size) >= 0.5
    nuts = render.nut_silhouettes(scene, scene.nuts, size)
    mask = None
    if layout.BY_NAME[category].label != "normal":
        if category == "over_coupling":  # the relation is the defect: both nuts are marked
            mask = nuts
        elif category == "lacking":  # where the nuts should be, at both ends
            mask = render.nut_silhouettes(scene, scene.missing, size)
        else:
            mask = render.scatter(surf, defect.astype(np.float64), size) >= 0.5
    return Rendered(image, mask, product, nuts, scene)


def _jobs(counts: dict[tuple[str, str], int]) -> list[tuple[str, str, int]]:
    return [(split, cat, i) for (split, cat), n in counts.items() for i in range(n)]


def _file_name(index: int, total: int) -> str:
    return f"{index:0{max(3, len(str(total - 1)))}d}.jpg"


def _write_chunk(root: str, seed: int, size: int, chunk: list[tuple[str, str, int, int]]) -> int:
    """Render and write a list of (split, category, index, total) images; returns how many."""
    for split, category, index, total in chunk:
        folder = layout.BY_NAME[category].folder
        path = Path(root) / split / folder / _file_name(index, total)
        out = render_sample(seed, split, category, index, size)
        # Fixed quality, no EXIF/ICC/timestamps: the bytes depend on the pixels only.
        Image.fromarray(out.image, "RGB").save(path, "JPEG", quality=JPEG_QUALITY, optimize=False)
        if out.mask is not None:
            mask = Image.fromarray(np.where(out.mask, 255, 0).astype(np.uint8), "L")
            mask.save(layout.mask_path(Path(root), folder, path))
    return len(chunk)


def _check_counts(counts: str) -> dict[tuple[str, str], int]:
    if counts not in COUNTS:
        raise CadsdError(f"unknown counts {counts!r}; choose one of: {', '.join(COUNTS)}")
    return COUNTS[counts]


def _expected_files(counts: str) -> set[str]:
    """Every file ``cadsd synth --counts counts`` writes, besides its marker."""
    out = set()
    for (split, category), total in COUNTS[counts].items():
        folder = layout.BY_NAME[category].folder
        for index in range(total):
            name = _file_name(index, total)
            out.add(f"{split}/{folder}/{name}")
            if split == "test" and layout.BY_NAME[category].label != "normal":
                out.add(layout.mask_path(Path(), folder, Path(name)).as_posix())
    return out


def _owned(folder: Path) -> set[str] | None:
    """The files an earlier ``cadsd synth`` wrote into ``folder``: its marker's list, or for a
    marker written before the list existed, the files its counts give (names are fixed)."""
    listed = marker_files(folder, layout.SYNTH_MARKER)
    if listed is not None:
        return listed
    try:
        doc = json.loads((folder / layout.SYNTH_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get("generator") == "cadsd synth" and doc.get("counts") in COUNTS:
        return _expected_files(doc["counts"])
    return None


def output(out: str | Path, overwrite: bool = False) -> Output:
    """The folder ``cadsd synth`` writes: ``--force`` replaces only an earlier synth set."""
    return Output.of(out, layout.SYNTH_MARKER, "`cadsd synth`", force=overwrite, owned=_owned)


def generate(
    out: str | Path,
    *,
    seed: int = 0,
    counts: str = "paper",
    size: int = 256,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic CAD-SD to ``out`` and return its path.

    Layout: ``train/0_good``, ``test/<folder>`` for the five categories of
    :data:`cadsd.format.layout.CATEGORIES`, and ``ground_truth/<folder>/<stem>_mask.png`` (0/255) for
    the four anomaly folders. A non-empty ``out`` is refused unless ``overwrite``, and even then
    unless an earlier ``cadsd synth`` wrote it (:func:`output`).
    """
    plan = _check_counts(counts)
    if size < 32:
        raise CadsdError(f"--size {size} is too small; use at least 32 (the paper's input is 256)")
    target = output(out, overwrite)
    with output_folder(target) as staging:
        for split, folders in layout.SPLIT_FOLDERS.items():
            for folder in folders:
                (staging / split / folder).mkdir(parents=True)
                if split == "test" and layout.BY_FOLDER[folder].label != "normal":
                    (staging / layout.MASK_DIR / folder).mkdir(parents=True, exist_ok=True)
        jobs = [(s, c, i, plan[(s, c)]) for s, c, i in _jobs(plan)]
        chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
        _run(chunks, str(staging), seed, size, workers or os.cpu_count() or 1, progress,
             target.path)
        layout.write_synth_marker(staging, settings(seed, counts, size))
    return target.path


def _run(
    chunks: list[list[tuple[str, str, int, int]]],
    root: str,
    seed: int,
    size: int,
    workers: int,
    progress: bool,
    out: Path,
) -> None:
    """Write every chunk, in this process (``workers <= 1``) or a process pool, with a bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    total = sum(len(c) for c in chunks)
    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), disable=not progress, transient=False,
    )
    with bar:
        task = bar.add_task(f"synth -> {out.name}", total=total)
        if workers <= 1:
            for chunk in chunks:
                bar.advance(task, _write_chunk(root, seed, size, chunk))
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_write_chunk, root, seed, size, c) for c in chunks]
            try:
                for fut in as_completed(futures):
                    bar.advance(task, fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise


def is_complete(root: str | Path, counts: str = "paper") -> bool:
    """True when ``root`` holds exactly the images (and masks) ``counts`` asks for."""
    root = Path(root)
    for (split, category), n in _check_counts(counts).items():
        folder = layout.BY_NAME[category].folder
        files = sorted((root / split / folder).glob("*.jpg"))
        if len(files) != n:
            return False
        needs_masks = split == "test" and layout.BY_NAME[category].label != "normal"
        if needs_masks and not all(layout.mask_path(root, folder, f).is_file() for f in files):
            return False
    return True


def settings(seed: int, counts: str, size: int) -> dict:
    """What :data:`cadsd.format.layout.SYNTH_MARKER` records about a set drawn with these settings."""
    return {
        "generator": "cadsd synth",
        "render_version": RENDER_VERSION,
        "seed": seed,
        "counts": counts,
        "size": size,
    }


def ensure_synthetic(
    seed: int = 0, counts: str = "paper", size: int = 256, progress: bool = True
) -> Path:
    """The cached synthetic set for (seed, counts, size), generated first when missing.

    Generation is atomic: a concurrent or interrupted run never leaves a partial set in the cache.
    A set drawn by another :data:`RENDER_VERSION` is regenerated.
    """
    path = cache.synthetic_dataset_dir(seed, counts, size)
    want = settings(seed, counts, size)
    if layout.synth_settings(path) == want and is_complete(path, counts):
        return path
    try:
        generate(path, seed=seed, counts=counts, size=size, progress=progress,
                 overwrite=path.exists())
    except CadsdError:
        # Another process may have installed the same set first (same seed: same bytes).
        if not (layout.synth_settings(path) == want and is_complete(path, counts)):
            raise
    return path
