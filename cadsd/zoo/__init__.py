"""The SA-PatchCore paper's other datasets and the field's logical-anomaly benchmark.

* ``mvtec_ad``: MVTec AD (Bergmann et al., CVPR 2019 / IJCV 2021), 15 categories (the paper's
  Table 5);
* ``btad``: BTAD (Mishra et al., 2021), 3 products (Table 6);
* ``mvtec_loco``: MVTec LOCO AD (Bergmann et al., IJCV 2022), 5 categories; logical anomalies
  are what CAD-SD calls co-occurrence anomalies;
* ``aitex``: AITEX fabric defects (Silvestre-Blanes et al., 2019) as a folder import only: the
  SA-PatchCore paper (Table 6) does not say how it cut the 4096 x 256 images into patches or
  split them, and no published split was found, so numbers on a user's own cut are not the
  paper's.

Licences: MVTec AD, MVTec LOCO AD and (per its distributors) BTAD are CC BY-NC-SA 4.0, i.e.
non-commercial: ``cadsd card`` states it and ``cadsd push`` warns.

Published counts per category are checked by ``cadsd validate``; they come from the datasets'
papers (totals cross-checked: MVTec AD 3,629 train / 467 good + 1,258 defective test images;
LOCO 1,778 train, 305 validation, 575 good + 561 logical + 432 structural test images).
"""

from __future__ import annotations

from cadsd.errors import LayoutError
from cadsd.zoo.base import Benchmark, Sample, build, check_copy, count_report
from cadsd.zoo.layouts import index_aitex, index_btad, index_mvtec_ad, index_mvtec_loco

NC = "CC BY-NC-SA 4.0 (non-commercial)"


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
    url=("https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f283/download/"
         "420938113-1629960298/mvtec_anomaly_detection.tar.xz"),
    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    archive_root=("mvtec_anomaly_detection",),
    paper={"patchsvdd": 91.3, "padim": 95.5, "patchcore": 98.6, "cs_flow": 98.7,
           "sa_patchcore": 97.1},
)
BTAD = Benchmark(
    name="btad", title="BTAD",
    citation="Mishra et al., VT-ADL: A Vision Transformer Network for Image Anomaly Detection "
             "and Localization (BTAD), ISIE 2021",
    license=NC, groups=("local",), categories=("01", "02", "03"), index=index_btad,
    counts={"01": {"train/good": 400, "test/good": 21, "test/ko": 49},
            "02": {"train/good": 399, "test/good": 30, "test/ko": 200},
            "03": {"train/good": 1000, "test/good": 400, "test/ko": 41}},
    url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
    sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
    archive_root=("BTech_Dataset_transformed", "btad"),
    notes="the per-product split of normal and defective test images is from the BTAD paper "
          "as remembered here, not checked against the archive: validate reports what it finds",
    paper={"patchcore": 92.3, "sa_patchcore": 93.7},
)
MVTEC_LOCO = Benchmark(
    name="mvtec_loco", title="MVTec LOCO AD",
    citation="Bergmann et al., Beyond Dents and Scratches: Logical Constraints in Unsupervised "
             "Anomaly Detection and Localization, IJCV 2022",
    license=NC, groups=("logical", "structural"), categories=tuple(_loco_counts()),
    index=index_mvtec_loco, counts=_loco_counts(),
    url=("https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/"
         "430647091-1646842701/mvtec_loco_anomaly_detection.tar.xz"),
    sha256="9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
    archive_root=("mvtec_loco_anomaly_detection",),
    notes="validation/good images are not used (a fixed benchmark selects nothing); sPRO is not "
          "computed (it needs each defect type's saturation threshold from defects_config.json "
          "and per-mask evaluation): pixel metrics use the union of an image's masks",
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


def get(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise LayoutError(f"unknown dataset {name!r}; known: cadsd, synthetic, "
                          f"{', '.join(BENCHMARKS)}") from None


def detect(path) -> tuple[Benchmark, object] | None:
    """The benchmark whose layout ``path`` (or its one wrapping folder) has, and its root."""
    from pathlib import Path

    path = Path(path)
    probes = [("mvtec_loco", ("validation", "good")), ("btad", ("train", "ok")),
              ("mvtec_ad", ("train", "good")), ("aitex", ("train", "good"))]
    for name, (split, normal) in probes:
        bench = BENCHMARKS[name]
        try:
            root = bench.find_root(path)
        except LayoutError:
            continue
        if any((root / c / split / normal).is_dir() for c in bench.found_categories(root)):
            return bench, root
    return None


__all__ = ["AITEX", "BENCHMARKS", "BTAD", "MVTEC_AD", "MVTEC_LOCO", "Benchmark", "Sample",
           "build", "check_copy", "count_report", "detect", "get"]
