"""sPRO, the saturated per-region overlap of MVTec LOCO AD (Bergmann et al., IJCV 2022).

Every defect region (one mask file of LOCO: regions may overlap, each counts on its own) has a
saturation threshold s_i in pixels. At a threshold t (a pixel is flagged when its score >= t):

* sPRO_i(t) = min(TP_i(t) / s_i, 1), TP_i the region's flagged pixels; the curve's y is the
  mean over all regions of all images;
* the FPR is the fraction of defect-free pixels that are flagged, a pixel being defect-free when
  it lies in no region of its image (normal images: every pixel), over every image given.

The curve is swept over every distinct score with one sort of the pixels (as AU-PRO in
``pro.py``; only those above the first point past the largest FPR limit), from (0, 0) to
(1, 1), and integrated with the trapezoidal rule up to an FPR limit
(0.05 and 0.3), the segment crossing the limit cut there by linear interpolation, then divided
by the limit. A region's pixels, ranked by score, carry weights that add up to
min(k, s_i) / s_i over its k top pixels, so cumulative sums give the exact sPRO at every
threshold, ties included.

Saturation thresholds come in pixels at the maps' resolution; :meth:`Region.from_fraction`
makes them from the dataset's fraction of the region's area
(:func:`cadsd.zoo.loco.saturation_fraction`, re-exported here). A saturation above the region's
area is capped at the area (as MVTec's code caps an absolute threshold). A region with no
pixel left at the maps' resolution cannot be scored: it is left out and counted
(``n_empty``), never silently.

:func:`spro_by_group` scores logical and structural anomalies as MVTec's evaluation does: each
group's images together with all normal images (its FPR counts their defect-free pixels), and
the mean of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cadsd.zoo.loco import saturation_fraction
from leaderboard.scoring.pro import area_up_to

__all__ = ["SPRO", "Region", "SPROGroups", "au_spro", "saturation_fraction", "spro_by_group",
           "spro_curve"]

FPR_LIMITS = (0.05, 0.3)


@dataclass(frozen=True, eq=False)
class Region:
    """One defect region at the maps' resolution: a bool mask (H, W) and its saturation
    threshold in pixels (> 0)."""

    mask: np.ndarray
    saturation: float

    @classmethod
    def from_fraction(cls, mask: np.ndarray, fraction: float) -> Region:
        """From the dataset's saturation fraction of the region's area (the ``regions``
        column's ``saturation``) and the mask already resized to the maps."""
        mask = np.asarray(mask, dtype=bool)
        return cls(mask=mask, saturation=float(fraction) * int(mask.sum()))


@dataclass(frozen=True)
class SPRO:
    """Area under the sPRO curve up to FPR 0.05 and 0.3, each divided by its limit."""

    fpr_0_05: float
    fpr_0_3: float
    n_regions: int  # regions scored
    n_empty: int  # regions with no pixel at the maps' resolution (left out)
    n_images: int


@dataclass(frozen=True)
class SPROGroups:
    """sPRO per anomaly group (each with all normal images) and the mean over groups."""

    group: dict[str, SPRO]
    mean_0_05: float
    mean_0_3: float


def _ends(sorted_scores: np.ndarray) -> np.ndarray:
    """Index of the last entry of each run of equal scores (descending order)."""
    return np.flatnonzero(np.append(np.diff(sorted_scores) != 0, True))


def spro_curve(maps: np.ndarray, regions: Sequence[Sequence[Region]], max_fpr: float = 1.0
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(fpr, spro, n_empty)``: the curve from (0, 0) to (1, 1), one point per distinct score.

    ``maps`` float (N, H, W); ``regions[i]`` the regions of image i (empty for normal ones).
    With ``max_fpr`` < 1 the curve stops at the first point past ``max_fpr`` (then (1, 1)):
    exact for any area up to ``max_fpr``, and only the pixels above that point are sorted.
    """
    maps = np.asarray(maps)
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)  # float32 maps stay float32: one sort of every pixel
    if maps.ndim != 3 or len(regions) != len(maps):
        raise ValueError(f"maps {maps.shape} need (N, H, W) and one list of regions per image "
                         f"(got {len(regions)})")
    if not np.isfinite(maps).all():
        raise ValueError("anomaly maps contain NaN or inf")
    free = np.ones(maps.shape, dtype=bool)  # defect-free in every region of its image
    scores, weights, n_empty = [], [], 0
    for i, regs in enumerate(regions):
        for r in regs:
            mask = np.asarray(r.mask, dtype=bool)
            if mask.shape != maps.shape[1:]:
                raise ValueError(f"image {i}: a region's mask {mask.shape} is not the maps' "
                                 f"{maps.shape[1:]}")
            free[i] &= ~mask
            vals = np.sort(maps[i][mask])[::-1]  # the region's scores, best first
            if vals.size == 0:
                n_empty += 1
                continue
            if not r.saturation > 0:
                raise ValueError(f"image {i}: a saturation threshold must be > 0, got "
                                 f"{r.saturation}")
            s = min(float(r.saturation), vals.size)
            k = np.arange(1, vals.size + 1)
            scores.append(vals)
            weights.append((np.minimum(k, s) - np.minimum(k - 1, s)) / s)  # sums to min(k,s)/s
    if not weights:
        raise ValueError("sPRO needs at least one defect region with pixels")
    n_free = int(free.sum())
    if n_free == 0:
        raise ValueError("sPRO needs at least one defect-free pixel")
    flat, free = maps.ravel(), free.ravel()
    k = int(np.floor(max_fpr * n_free)) + 1  # false positives that first exceed max_fpr
    if k <= n_free:  # keep the scores down to the k-th largest defect-free one, ties included
        cut = np.partition(flat[free], n_free - k)[n_free - k]
        keep = flat >= cut
        flat, free = flat[keep], free[keep]
        kept = [v >= cut for v in scores]
        scores = [v[m] for v, m in zip(scores, kept)]
        weights = [w[m] for w, m in zip(weights, kept)]
    n_regions = len(weights)
    all_scores = np.concatenate([flat, *scores])
    fp = np.concatenate([free.astype(np.float64), np.zeros(all_scores.size - flat.size)])
    sp = np.concatenate([np.zeros(flat.size), *weights])
    order = np.argsort(all_scores, kind="stable")[::-1]
    ends = _ends(all_scores[order])
    fpr = np.cumsum(fp[order])[ends] / n_free
    spro = np.cumsum(sp[order])[ends] / n_regions
    fpr = np.concatenate(([0.0], np.clip(fpr, 0, 1), [1.0]))
    spro = np.concatenate(([0.0], np.clip(spro, 0, 1), [1.0]))
    return fpr, spro, n_empty


def au_spro(maps: np.ndarray, regions: Sequence[Sequence[Region]]) -> SPRO:
    """sPRO up to FPR 0.05 and 0.3, each normalised by its limit, over all images given."""
    fpr, spro, n_empty = spro_curve(maps, regions, max_fpr=max(FPR_LIMITS))
    a, b = (area_up_to(fpr, spro, lim) / lim for lim in FPR_LIMITS)
    n_regions = sum(len(r) for r in regions) - n_empty
    return SPRO(fpr_0_05=a, fpr_0_3=b, n_regions=n_regions, n_empty=n_empty,
                n_images=len(regions))


def spro_by_group(maps: np.ndarray, regions: Sequence[Sequence[Region]],
                  groups: Sequence[str], normal: str = "normal") -> SPROGroups:
    """sPRO of each anomaly group (its images + every ``normal`` image), and their mean."""
    grps = np.asarray(groups, dtype=object)
    if len(grps) != len(regions):
        raise ValueError(f"{len(grps)} groups for {len(regions)} images")
    is_normal = grps == normal
    names = list(dict.fromkeys(g for g in grps if g != normal))
    if not names:
        raise ValueError("sPRO by group needs anomalous images")
    out = {}
    for g in names:
        idx = np.flatnonzero(is_normal | (grps == g))
        out[g] = au_spro(np.asarray(maps)[idx], [regions[i] for i in idx])
    return SPROGroups(group=out,
                      mean_0_05=float(np.mean([v.fpr_0_05 for v in out.values()])),
                      mean_0_3=float(np.mean([v.fpr_0_3 for v in out.values()])))
