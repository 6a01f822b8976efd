"""`cadsd card`: the Hugging Face dataset card (README.md) of CAD-SD or a synthetic stand-in.

Counts are measured from the data (a folder or a DatasetDict), never copied from the paper; the
paper's counts are shown beside them for the real dataset. The collection setup is what the
authors' repository README states (IshidaKengo/SA-PatchCore). A synthetic set's card says that
it is synthetic, with its seed, and never claims to be the real CAD-SD.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cadsd.format.layout import (
    CATEGORIES,
    MASK_DIR,
    PAPER_COUNTS,
    SPLITS,
    index,
    resolve_root,
    synth_settings,
)
from cadsd.getting.manifest import MANIFEST_NAME, read_manifest

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCard

TAGS = ("anomaly-detection", "industrial-inspection", "co-occurrence")
PAPER_URL = "https://ieeexplore.ieee.org/document/10007829"
CODE_URL = "https://github.com/IshidaKengo/SA-PatchCore"
DRIVE_URL = "https://drive.google.com/drive/folders/1yeampzTiB4uoTmmqIZkeCdMIXGujl3cU"
# Author list and pages as printed in citing papers' reference lists; no DOI is given because
# none could be confirmed from a primary source here (the IEEE Xplore document is 10007829).
BIBTEX = """@article{ishida2023sapatchcore,
  author  = {Ishida, Kengo and Takena, Yuki and Nota, Yoshiki and Mochizuki, Rinpei and
             Matsumura, Itaru and Ohashi, Gosuke},
  title   = {{SA-PatchCore}: Anomaly Detection in Dataset With Co-Occurrence Relationships
             Using Self-Attention},
  journal = {IEEE Access},
  volume  = {11},
  pages   = {3232--3240},
  year    = {2023},
  url     = {https://ieeexplore.ieee.org/document/10007829}
}"""


@dataclass(frozen=True)
class Provenance:
    """What the data is: the real CAD-SD (``cadsd``), a ``synthetic`` set, or ``custom`` data."""

    kind: str = "cadsd"
    seed: int | None = None
    counts: str | None = None
    size: int | None = None
    source: str | None = None


@dataclass
class DatasetStats:
    """Measured: images per (split, category name) and how many rows carry a mask."""

    counts: dict[tuple[str, str], int]
    masks: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def measure(data: datasets.DatasetDict | str | Path) -> DatasetStats:
    """Count images per split and category in a dataset folder or a DatasetDict."""
    counts = {(s, c.name): 0 for s in SPLITS for c in CATEGORIES}
    if isinstance(data, (str, Path)):
        samples = index(data)
        for s in samples:
            counts[(s.split, s.category)] = counts.get((s.split, s.category), 0) + 1
        return DatasetStats(counts, sum(s.mask is not None for s in samples))
    masks = 0
    for split, ds in data.items():
        names = ds.features["category"].names
        table = ds.select_columns([c for c in ("category", "mask") if c in ds.column_names])
        arrow = table.with_format("arrow")[:]
        for i in arrow.column("category").to_pylist():
            counts[(split, names[i])] = counts.get((split, names[i]), 0) + 1
        if "mask" in ds.column_names:
            masks += len(arrow) - arrow.column("mask").null_count
    return DatasetStats(counts, masks)


def detect_provenance(path: str | Path) -> Provenance:
    """Synthetic with its settings while the folder holds the files ``cadsd synth`` wrote (its
    marker, :func:`cadsd.format.layout.synth_settings`); synthetic without settings when it has
    masks (the real CAD-SD has none: an edited synthetic set, say, whatever its folder's name);
    otherwise the real CAD-SD, with the manifest's source if any."""
    root = resolve_root(path)
    marker = synth_settings(root)
    if marker is not None:
        return Provenance("synthetic", marker.get("seed"), marker.get("counts"), marker.get("size"))
    if (root / MASK_DIR).is_dir() and any((root / MASK_DIR).rglob("*.png")):
        return Provenance("synthetic")
    source = read_manifest(root).get("source") if (root / MANIFEST_NAME).is_file() else None
    return Provenance("cadsd", source=source or None)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def _counts_table(stats: DatasetStats, paper: bool) -> str:
    head = "| split | folder | category | group | images |" + (" paper |" if paper else "")
    rule = "|---|---|---|---|---:|" + ("---:|" if paper else "")
    rows = [head, rule]
    for split in SPLITS:
        for cat in CATEGORIES:
            if (split, cat.name) not in PAPER_COUNTS and not stats.counts.get((split, cat.name)):
                continue
            n = stats.counts.get((split, cat.name), 0)
            row = f"| {split} | `{cat.folder}` | {cat.name} | {cat.group} | {n} |"
            rows.append(row + (f" {PAPER_COUNTS.get((split, cat.name), '-')} |" if paper else ""))
    groups: dict[tuple[str, str], int] = {}
    for (split, name), n in stats.counts.items():
        group = next(c.group for c in CATEGORIES if c.name == name)
        groups[(split, group)] = groups.get((split, group), 0) + n
    summary = ", ".join(f"{s}/{g}: {n}" for (s, g), n in sorted(groups.items()) if n)
    return "\n".join(rows) + f"\n\nBy group: {summary}. Total: {stats.total} images."


def _intro(prov: Provenance) -> str:
    if prov.kind == "synthetic":
        seed = f"seed {prov.seed}" if prov.seed is not None else "seed not recorded"
        extra = ", ".join(
            x
            for x in (
                seed,
                prov.counts and f"counts `{prov.counts}`",
                prov.size and f"{prov.size}x{prov.size} px",
            )
            if x
        )
        return (
            "**This is a SYNTHETIC dataset, not the real CAD-SD.** It was generated procedurally "
            f"by `cadsd synth` (cadsd-bench; {extra}) to stand in for the Co-occurrence Anomaly "
            "Detection Screw Dataset of Ishida et al. (2023) where the real photos are not "
            "available. It renders a threaded rod with a hex nut on one end under a fixed light, "
            "in the same folder layout and categories, with a pixel mask for every anomaly. "
            "Results on it are not comparable with the paper's numbers."
        )
    if prov.kind == "custom":
        return (
            "A dataset in the folder layout of CAD-SD (Ishida et al., 2023): normal training "
            "images and test images with local and co-occurrence anomalies. It is not the "
            "authors' CAD-SD; see the publisher for how it was collected."
        )
    return (
        "CAD-SD, the Co-occurrence Anomaly Detection Screw Dataset of Ishida et al. (IEEE Access "
        "2023), for unsupervised anomaly detection. Each photo shows a threaded screw rod with "
        "a hex nut on ONE end at a random angle. Besides local anomalies (a scratch, paint) it "
        "holds co-occurrence anomalies, where every part looks normal but their combination is "
        "wrong: nuts on both ends (over-coupling) or no nut (lacking). Training data is normal "
        f"images only. Original release: the authors' [Google Drive folder]({DRIVE_URL}), "
        f"linked from [{CODE_URL.removeprefix('https://github.com/')}]({CODE_URL})."
    )


_SETUP = (
    "As stated in the authors' repository README: camera DFK33UX183 (the README credits Argo "
    "Corporation), aperture 16, shooting distance 25 cm; lighting HPR2-75SW (CCS) with a "
    "PD2-5024(A) power supply; each image was trimmed from 5472x3648 to 700x700 pixels."
)


#: the licence of a set that ``cadsd synth`` generated (the uploader may give another)
SYNTHETIC_LICENSE = "cc0-1.0"


def render_card(
    stats: DatasetStats,
    provenance: Provenance | None = None,
    *,
    license: str | None = None,
    repo_id: str | None = None,
) -> DatasetCard:
    """The dataset card: YAML metadata (license, task_categories, tags, size) + markdown body."""
    from huggingface_hub import DatasetCard, DatasetCardData

    prov = provenance or Provenance()
    tasks = ["image-classification"] + (["image-segmentation"] if stats.masks else [])
    tags = [*TAGS, *(["synthetic"] if prov.kind == "synthetic" else [])]
    name = {"synthetic": "CAD-SD (synthetic stand-in)", "custom": "Screw anomaly dataset"}
    if license is None and prov.kind == "synthetic":
        license = SYNTHETIC_LICENSE  # generated by this tool: no one else's rights apply
    data = DatasetCardData(
        license=license or "unknown",
        task_categories=tasks,
        tags=tags,
        size_categories=[_size_category(stats.total)],
        pretty_name=name.get(prov.kind, "CAD-SD: Co-occurrence Anomaly Detection Screw Dataset"),
    )
    repo = repo_id or "ORG/NAME"
    if prov.kind == "synthetic":
        setup = (
            "Rendered, not photographed: see the intro above. The real CAD-SD's setup "
            f"(not used here): {_SETUP[0].lower()}{_SETUP[1:]}"
        )
    elif prov.kind == "custom":
        setup = "Not documented by this card; ask the publisher."
    else:
        setup = _SETUP
    if license == SYNTHETIC_LICENSE and prov.kind == "synthetic":
        lic = ("Generated by cadsd-bench (`cadsd synth`) from a seed: no photograph or third-party "
               "image is in it. Released under `cc0-1.0` (public domain dedication): use it for "
               "anything, no attribution needed.")
    elif license:
        lic = f"Released here under `{license}` by the uploader."
    elif prov.kind == "cadsd":
        lic = (
            "The upstream repository and Drive folder publish no licence file, so the licence "
            "is `unknown`: ask the authors before redistributing or using it commercially."
        )
    else:
        lic = "No licence was given when this card was made (`unknown`)."
    mask_col = (
        "\n| `mask` | Image (PNG, 0/255) or None | pixel ground truth of the anomaly "
        "(None for normal images) |"
        if stats.masks
        else ""
    )
    paper_note = (
        " The paper states lacking = 40; a comment in the official code says 44. "
        "The table reports what this copy holds."
        if prov.kind == "cadsd"
        else ""
    )
    body = f"""
# {data.pretty_name}

{_intro(prov)}

## Categories and counts

Measured from the data.{paper_note}

{_counts_table(stats, paper=prov.kind == "cadsd")}

Groups: `normal`; `local` anomalies (scratch, paint: a part of the product is damaged or
soiled); `co_occurrence` anomalies (over_coupling: nuts on both ends; lacking: no nut).

## Splits

- `train`: normal images only (unsupervised training).
- `test`: normal images and the four anomaly types.

Columns:

| column | type | meaning |
|---|---|---|
| `image` | Image (original file bytes) | the photo, as published |
| `label` | ClassLabel[normal, anomaly] | image-level ground truth |
| `category` | ClassLabel[good, scratch, paint, over_coupling, lacking] | anomaly type |
| `group` | ClassLabel[normal, local, co_occurrence] | anomaly group |
| `file_name` | string | path in the original layout, e.g. `test/3_over-coupling/000.jpg` |{mask_col}

## Collection setup

{setup}

## How to load

```python
from datasets import load_dataset

ds = load_dataset("{repo}")
test = ds["test"]
print(test.features["category"].names)  # ['good', 'scratch', 'paint', 'over_coupling', 'lacking']
```

With cadsd-bench: `cadsd download --source hf:{repo}` rebuilds the original folder layout,
and `bench run --dataset hf:{repo}` benchmarks on it. `cadsd.load("hf:{repo}")` decodes each
image in its stored pixel order, as the official loader does (so masks match); plain
`load_dataset` turns an image by its EXIF orientation tag, if it has one.

## Licence

{lic}

## Citation

```bibtex
{BIBTEX}
```
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def card_for(
    data: datasets.DatasetDict | str | Path,
    *,
    provenance: Provenance | None = None,
    license: str | None = None,
    repo_id: str | None = None,
) -> DatasetCard:
    """Measure ``data`` and render its card (provenance detected from a folder when not given)."""
    if provenance is None and isinstance(data, (str, Path)):
        provenance = detect_provenance(data)
    return render_card(measure(data), provenance, license=license, repo_id=repo_id)


def write_card(card: DatasetCard, out: str | Path) -> Path:
    """Write the card to ``out`` atomically."""
    from cadsd.files import atomic_write_text

    return atomic_write_text(Path(out), str(card))
