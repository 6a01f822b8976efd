"""A dataset card for one category of another benchmark (``cadsd push --source mvtec_ad:bottle``):
where it comes from, its licence (stated in the metadata and in the text), its columns and the
counts measured from the data."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCard

    from cadsd.zoo.base import Benchmark

#: the Hub's licence ids for the licences of these benchmarks
HUB_LICENSES = {"CC BY-NC-SA 4.0 (non-commercial)": "cc-by-nc-sa-4.0",
                "CC BY-SA 4.0 (share-alike)": "cc-by-sa-4.0"}


def license_warning(bench: Benchmark) -> str | None:
    """What ``cadsd push`` says before publishing a non-commercial or share-alike dataset."""
    if bench.noncommercial:
        return (f"{bench.title} is licensed {bench.license}: a copy on the Hub must keep that "
                "licence (the card states it) and must not be used commercially; make the repo "
                "private (--private) unless the licence allows your use")
    if "SA" in bench.license:
        return (f"{bench.title} is licensed {bench.license}: a copy on the Hub, and anything "
                "made from it, must keep that licence and credit its authors (the card states "
                "both)")
    return None


def benchmark_card(bench: Benchmark, category: str, dd: datasets.DatasetDict,
                   repo_id: str | None = None) -> DatasetCard:
    from huggingface_hub import DatasetCard, DatasetCardData

    counts: dict[tuple[str, str], int] = {}
    for split, ds in dd.items():
        names = ds.features["category"].names
        for i in ds.select_columns(["category"]).with_format("arrow")[:].column("category").to_pylist():
            counts[(split, names[i])] = counts.get((split, names[i]), 0) + 1
    rows = "\n".join(f"| {s} | {c} | {n} |" for (s, c), n in sorted(counts.items()))
    data = DatasetCardData(
        license=HUB_LICENSES.get(bench.license, "other"),
        task_categories=["image-classification", "image-segmentation"],
        tags=["anomaly-detection", bench.name],
        pretty_name=f"{bench.title}: {category}",
    )
    repo = repo_id or "ORG/NAME"
    regions = ("" if "regions" not in dd["test"].column_names else
               "\n`regions` keeps each mask file of an image on its own (`mask`, as stored), with "
               "its `defect` and `saturation` (the defect's sPRO saturation threshold from "
               "`defects_config.json`, as a fraction of the region's area); empty for normal "
               "images.")
    body = f"""
# {bench.title}: {category}

One category of {bench.title} ({bench.citation}), in the columns of cadsd-bench: `image` (the
original file's bytes), `label` (normal / anomaly), `category` (the defect type, `good` for
normal images), `group` ({', '.join(('normal', *bench.groups))}), `file_name` (relative to the
category folder) and `mask` (the union of an image's ground-truth masks, None for normal images).{regions}

**Licence: {bench.license}.** This copy keeps the original licence; read its terms before use.
{f"Note: {bench.notes}." if bench.notes else ""}

```python
from datasets import load_dataset
dd = load_dataset("{repo}")
```

| split | category | images |
|---|---|---|
{rows}
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
