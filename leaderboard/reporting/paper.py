"""Published numbers of Ishida et al., "SA-PatchCore: Anomaly Detection in Dataset With
Co-Occurrence Relationships Using Self-Attention", IEEE Access 2023, on the real CAD-SD.

Image AUROC in % (Tables 2 and 3) and inference ms/image on an RTX 3090 at batch 1 (Table 4).
The leaderboard shows them beside measured values only when the data is the real CAD-SD.
"""

from __future__ import annotations

from leaderboard.records.schema import SOURCE_MARK

CITATION = (
    "K. Ishida et al., \"SA-PatchCore: Anomaly Detection in Dataset With Co-Occurrence "
    "Relationships Using Self-Attention\", IEEE Access, 2023"
)
PAPER_GPU = "RTX 3090"

#: method -> {"all", per anomaly type..., "ms"}
RESULTS: dict[str, dict[str, float]] = {
    "patchsvdd": {"all": 73.1, "scratch": 74.8, "paint": 74.1, "over_coupling": 72.1,
                  "lacking": 72.1, "ms": 680.0},
    "padim": {"all": 65.8, "scratch": 79.9, "paint": 89.2, "over_coupling": 68.8,
              "lacking": 24.2, "ms": 275.2},
    "patchcore": {"all": 83.5, "scratch": 99.6, "paint": 99.8, "over_coupling": 89.6,
                  "lacking": 46.5, "ms": 24.0},
    "cs_flow": {"all": 92.0, "scratch": 89.8, "paint": 93.0, "over_coupling": 90.6,
                "lacking": 94.9, "ms": 61.8},
    "sa_patchcore": {"all": 97.6, "scratch": 98.0, "paint": 99.7, "over_coupling": 99.7,
                     "lacking": 92.9, "ms": 25.0},
}
#: the paper reports one SA-PatchCore; its code is the per-channel variant, its eq. 4 the other
ALIASES = {"sa_patchcore_eq4": "sa_patchcore"}
#: anomaly types of each group (the paper's Sec. IV-A)
GROUP_TYPES = {"local": ("scratch", "paint"), "co_occurrence": ("over_coupling", "lacking")}


def published(method: str) -> dict[str, float] | None:
    """The paper's numbers for ``method`` (or its alias; a merged leaderboard's row key
    ``method · source`` counts as its method), or None when it reports none."""
    method = method.split(SOURCE_MARK)[0]
    return RESULTS.get(ALIASES.get(method, method))


def published_average(method: str, group: str) -> float | None:
    """Mean of the paper's per-type AUROCs of ``group``: derived here the same way as ours."""
    nums = published(method)
    if nums is None or group not in GROUP_TYPES:
        return None
    return sum(nums[t] for t in GROUP_TYPES[group]) / len(GROUP_TYPES[group])

#: Table 7 (which layers go into the self-attention) and Table 8 (the pooling before it):
#: image AUROC % on CAD-SD, the paper's single SA-PatchCore
TABLE7 = {"layer3": 97.6, "layer2+layer3": 96.7}
TABLE8 = {"max": 97.6, "avg": 92.6, "none": 90.9}

#: few-shot figures on the real CAD-SD published elsewhere: K -> (method, image AUROC %, source)
FEW_SHOT = {
    4: [("ObjectCore", 96.5, "WACV 2026, 4-shot; its code was not public when last checked")],
}
