"""The SA-PatchCore paper's other datasets and the field's logical-anomaly benchmark.

* ``mvtec_ad``: MVTec AD (Bergmann et al., CVPR 2019 / IJCV 2021), 15 categories (the paper's
  Table 5);
* ``btad``: BTAD (Mishra et al., 2021), 3 products (Table 6);
* ``mvtec_loco``: MVTec LOCO AD (Bergmann et al., IJCV 2022), 5 categories; logical anomalies
  are what CAD-SD calls co-occurrence anomalies;
* ``aitex``: AITEX fabric defects (Silvestre-Blanes et al., 2019) as a folder import only: the
  SA-PatchCore paper (Table 6) does not say how it cut the 4096 x 256 images into patches or
  split them, and no published split was found, so numbers on a user's own cut are not the
  paper's. It is only ever chosen by name (``--dataset aitex``), never detected.

A folder is matched to a layout by its structure (:func:`cadsd.zoo.base.layout_of`), never by
its category names: a folder in one of these layouts whose categories are not the benchmark's
official ones (anomalib's generator writes ``dummy``) is a generic import of that layout
(``mvtec_layout``, ``btad_layout``, ``loco_layout``), named as such, with no published counts or
paper numbers.

Licences: MVTec AD and MVTec LOCO AD are CC BY-NC-SA 4.0, i.e. non-commercial; BTAD is
CC BY-SA 4.0 (share-alike, as its authors' README and the archive's README say): ``cadsd card``
states them and ``cadsd push`` warns.

Published counts per category are checked by ``cadsd validate``; they come from the datasets'
papers (totals cross-checked: MVTec AD 3,629 train / 467 good + 1,258 defective test images;
LOCO 1,778 train, 305 validation, 575 good + 561 logical + 432 structural test images).
"""

from __future__ import annotations

from dataclasses import replace

from cadsd.errors import LayoutError
from cadsd.zoo.base import (
    LAYOUT_NAMES,
    Benchmark,
    Sample,
    build,
    check_copy,
    count_report,
    layout_of,
)
from cadsd.zoo.layouts import index_aitex, index_btad, index_mvtec_ad, index_mvtec_loco

NC = "CC BY-NC-SA 4.0 (non-commercial)"
SA = "CC BY-SA 4.0 (share-alike)"


def _mvtec_counts() -> dict[str, dict[str, int]]:
    table = {  # category: (train good, test good, {defect: count})
        "bottle": (209, 20, {"broken_large": 20, "broken_small": 22, "contamination": 21}),
        "cable": (224, 58, {"bent_wire": 13, "cable_swap": 12, "combined": 11,
                            "cut_inner_insulation": 14, "cut_outer_insulation": 10,
                            "missing_cable": 12, "missing_wire": 10, "poke_insulation": 10}),
        "capsule": (219, 23, {"crack": 23, "faulty_imprint": 22, "poke": 21, "scratch": 23,
                              "squeeze": 20}),
        "carpet": (280, 28, {"color": 19, "cut": 17, "hole": 17, "metal_contamination": 17,
                             "thread": 19}),
        "grid": (264, 21, {"bent": 12, "broken": 12, "glue": 11, "metal_contamination": 11,
                           "thread": 11}),
        "hazelnut": (391, 40, {"crack": 18, "cut": 17, "hole": 18, "print": 17}),
        "leather": (245, 32, {"color": 19, "cut": 19, "fold": 17, "glue": 19, "poke": 18}),
        "metal_nut": (220, 22, {"bent": 25, "color": 22, "flip": 23, "scratch": 23}),
        "pill": (267, 26, {"color": 25, "combined": 17, "contamination": 21, "crack": 26,
                           "faulty_imprint": 19, "pill_type": 9, "scratch": 24}),
        "screw": (320, 41, {"manipulated_front": 24, "scratch_head": 24, "scratch_neck": 25,
                            "thread_side": 23, "thread_top": 23}),
        "tile": (230, 33, {"crack": 17, "glue_strip": 18, "gray_stroke": 16, "oil": 18,
                           "rough": 15}),
        "toothbrush": (60, 12, {"defective": 30}),
        "transistor": (213, 60, {"bent_lead": 10, "cut_lead": 10, "damaged_case": 10,
                                 "misplaced": 10}),
        "wood": (247, 19, {"color": 8, "combined": 11, "hole": 10, "liquid": 10, "scratch": 21}),
        "zipper": (240, 32, {"broken_teeth": 19, "combined": 16, "fabric_border": 17,
                             "fabric_interior": 16, "rough": 17, "split_teeth": 18,
                             "squeezed_teeth": 16}),
    }
    return {c: {"train/good": tr, "test/good": te, **{f"test/{d}": n for d, n in ds.items()}}
            for c, (tr, te, ds) in table.items()}


def _loco_counts() -> dict[str, dict[str, int]]:
    table = {  # train, test good, logical, structural (validation images are not used)
        "breakfast_box": (351, 102, 83, 90), "juice_bottle": (335, 94, 142, 94),
        "pushpins": (372, 138, 91, 81), "screw_bag": (360, 122, 137, 82),
        "splicing_connectors": (360, 119, 108, 85),
    }
    return {c: {"train/good": a, "test/good": b, "test/logical_anomalies": lo,
                "test/structural_anomalies": st} for c, (a, b, lo, st) in table.items()}


MVTEC_AD = Benchmark(
    name="mvtec_ad", title="MVTec AD",
    citation="Bergmann et al., The MVTec Anomaly Detection Dataset, IJCV 2021 (CVPR 2019)",
    license=NC, groups=("local",), categories=tuple(_mvtec_counts()), index=index_mvtec_ad,
    counts=_mvtec_counts(),
    # MVTec moved the archive (anomalib changelog, PR 3673, 2026-07: the older share answered
    # 404/403); the sha256 is the same, so the older share stays as a fallback.
    url=("https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/"
         "420938113-1629960298/mvtec_anomaly_detection.tar.xz"),
    mirrors=(("https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f283/download/"
             "420938113-1629960298/mvtec_anomaly_detection.tar.xz"),),
    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    archive_root=("mvtec_anomaly_detection",),
    paper={"patchsvdd": 91.3, "padim": 95.5, "patchcore": 98.6, "cs_flow": 98.7,
           "sa_patchcore": 97.1},
)
BTAD = Benchmark(
    name="btad", title="BTAD",
    citation="Mishra et al., VT-ADL: A Vision Transformer Network for Image Anomaly Detection "
             "and Localization (BTAD), ISIE 2021",
    license=SA, groups=("local",), categories=("01", "02", "03"), index=index_btad,
    # The authors' README (pankajmishra000/VT-ADL): product 1 400 images of 1600x1600, product
    # 2 1000 of 600x600, product 3 399 of 800x600, which are the training (normal) images (1,799
    # in all). It publishes no test split, so only the training counts are checked.
    counts={"01": {"train/ok": 400}, "02": {"train/ok": 1000}, "03": {"train/ok": 399}},
    url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
    sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
    archive_root=("BTech_Dataset_transformed", "btad"),
    notes="image sizes per the authors' README: 01 1600x1600, 02 600x600, 03 800x600; only the "
          "training counts are published (the test split is reported as found)",
    layout="btad", normal_folder="ok",
    paper={"patchcore": 92.3, "sa_patchcore": 93.7},
)
MVTEC_LOCO = Benchmark(
    name="mvtec_loco", title="MVTec LOCO AD",
    citation="Bergmann et al., Beyond Dents and Scratches: Logical Constraints in Unsupervised "
             "Anomaly Detection and Localization, IJCV 2022",
    license=NC, groups=("logical", "structural"), categories=tuple(_loco_counts()),
    index=index_mvtec_loco, counts=_loco_counts(), layout="mvtec_loco",
    url=("https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/"
         "430647091-1646842701/mvtec_loco_anomaly_detection.tar.xz"),
    sha256="9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
    archive_root=("mvtec_loco_anomaly_detection",),
    notes="validation/good images are not used (a fixed benchmark selects nothing); pixel "
          "AUROC and AU-PRO use the union of an image's masks, sPRO each mask on its own with "
          "its defect type's saturation threshold from defects_config.json, at the methods' "
          "input resolution",
)
AITEX = Benchmark(
    name="aitex", title="AITEX (folder import)",
    citation="Silvestre-Blanes et al., A Public Fabric Database for Defect Detection Methods "
             "and Results, Autex Research Journal 2019",
    license="see the AITEX database's terms (research use)", groups=("local",),
    categories=(), index=index_aitex,  # whatever <name>/train, <name>/test folders you made
    notes="a folder import only: the SA-PatchCore paper does not say how it cut AITEX's "
          "4096 x 256 images or split them, and no published split was found, so results on "
          "your cut are not comparable with its Table 6",
    paper={"patchcore": 85.8, "sa_patchcore": 89.0},
)

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (MVTEC_AD, BTAD, MVTEC_LOCO, AITEX)}


def _generic(bench: Benchmark, name: str) -> Benchmark:
    return replace(
        bench, name=name, title=f"a folder in {bench.title}'s layout", categories=(), counts={},
        url=None, mirrors=(), sha256=None, archive_root=(), paper={}, generic=True,
        license="not stated (your own folder: check the terms of where its images come from)",
        citation=f"{bench.citation} (the layout only)",
        notes=f"not {bench.title} itself: its categories are not the official ones, so no "
              "published counts or paper numbers apply",
        # masks optional in MVTec AD's layout (as for AITEX), but all or none when present
        index=index_aitex if bench.layout == "mvtec_ad" else bench.index,
    )


#: layout -> the generic import of a folder in that layout (never registered as a benchmark)
GENERIC: dict[str, Benchmark] = {
    "mvtec_ad": _generic(MVTEC_AD, "mvtec_layout"),
    "btad": _generic(BTAD, "btad_layout"),
    "mvtec_loco": _generic(MVTEC_LOCO, "loco_layout"),
}


def get(name: str) -> Benchmark:
    """A benchmark by name (or a generic layout import, by the name its records carry)."""
    found = BENCHMARKS.get(name) or next((g for g in GENERIC.values() if g.name == name), None)
    if found is None:
        raise LayoutError(f"unknown dataset {name!r}; known: cadsd, synthetic, "
                          f"{', '.join(BENCHMARKS)}")
    return found


def _category_folders(path):
    """``path``'s category folders (``<name>/train`` and ``<name>/test``), else those of its
    one wrapping folder (or a known archive wrapper): ``(root, [names])``."""
    from pathlib import Path

    def cats(root: Path) -> list[str]:
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir()
                      if p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir())

    path = Path(path)
    if cats(path):
        return path, cats(path)
    inner = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    wrappers = [path / w for b in BENCHMARKS.values() for w in b.archive_root]
    for candidate in [*(w for w in wrappers if w.is_dir()), *(inner if len(inner) == 1 else [])]:
        if cats(candidate):
            return candidate, cats(candidate)
    return path, []


def detect(path) -> tuple[Benchmark, object] | None:
    """The layout of ``path`` (or of its one wrapping folder) and its root, from the folders'
    structure: the official benchmark when every category is one of its official ones, else
    the generic import of that layout. None when no category folder has a known layout;
    a LayoutError when the categories have different layouts."""
    root, names = _category_folders(path)
    layouts = {name: layout_of(root / name) for name in names}
    kinds = {k for k in layouts.values() if k is not None}
    if not kinds:
        return None
    if len(kinds) > 1 or None in layouts.values():
        found = ", ".join(f"{n}: {LAYOUT_NAMES.get(k, 'none')}" for n, k in layouts.items())
        raise LayoutError(f"{root}: its category folders have different layouts ({found}); "
                          "give each layout its own folder")
    kind = kinds.pop()
    official = BENCHMARKS[kind]
    if all(n in official.categories for n in names):
        return official, root
    return GENERIC[kind], root


__all__ = ["AITEX", "BENCHMARKS", "BTAD", "GENERIC", "MVTEC_AD", "MVTEC_LOCO", "Benchmark",
           "Sample", "build", "check_copy", "count_report", "detect", "get", "layout_of"]
