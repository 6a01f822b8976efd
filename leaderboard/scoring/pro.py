"""AU-PRO: the area under the per-region-overlap curve up to a false-positive rate of 0.3,
normalised by 0.3 (Bergmann et al., MVTec AD, IJCV 2021; its evaluation code computes it the
same way).

Every connected region of every ground-truth mask (8-connectivity) counts once, whatever its
size: at a threshold, a region's overlap is the fraction of its pixels above the threshold, and
PRO is the mean overlap over all regions; the false-positive rate is the fraction of the
normal pixels (mask 0, in every image, normal images included) above the threshold. The curve
is swept over every distinct score (one sort of all pixels), then integrated with the
trapezoidal rule up to ``fpr_limit``, the last segment interpolated at it.
"""

from __future__ import annotations

import numpy as np

FPR_LIMIT = 0.3


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, pro)``, from (0, 0) to (1, 1), one point per distinct score (descending)."""
    from scipy.ndimage import label

    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    fp_weight = np.zeros(maps.shape, np.float64)
    pro_weight = np.zeros(maps.shape, np.float64)
    regions = 0
    normal_pixels = 0
    structure = np.ones((3, 3), dtype=int)
    for i, mask in enumerate(masks):
        labelled, n = label(mask, structure)
        ok = labelled == 0
        fp_weight[i][ok] = 1.0
        normal_pixels += int(ok.sum())
        if n:
            sizes = np.bincount(labelled.ravel(), minlength=n + 1)
            pro_weight[i][~ok] = 1.0 / sizes[labelled[~ok]]
        regions += n
    if regions == 0 or normal_pixels == 0:
        raise ValueError("AU-PRO needs at least one anomalous region and one normal pixel")
    order = np.argsort(maps.ravel(), kind="stable")[::-1]
    scores = maps.ravel()[order]
    fpr = np.cumsum(fp_weight.ravel()[order]) / normal_pixels
    pro = np.cumsum(pro_weight.ravel()[order]) / regions
    last = np.append(np.diff(scores) != 0, True)  # one point per threshold: after its ties
    fpr = np.concatenate(([0.0], np.clip(fpr[last], 0, 1), [1.0]))
    pro = np.concatenate(([0.0], np.clip(pro[last], 0, 1), [1.0]))
    return fpr, pro


def area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under ``y(x)`` for ``x`` in [0, limit] (x ascending), the segment that
    crosses ``limit`` cut there by linear interpolation."""
    inside = x <= limit
    xs, ys = x[inside], y[inside]
    if xs[-1] < limit:
        j = int(np.argmax(x > limit))
        t = (limit - x[j - 1]) / (x[j] - x[j - 1])
        xs = np.append(xs, limit)
        ys = np.append(ys, y[j - 1] + t * (y[j] - y[j - 1]))
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def au_pro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """AU-PRO in [0, 1] up to ``fpr_limit``, normalised by it."""
    fpr, pro = pro_curve(maps, masks)
    return area_up_to(fpr, pro, fpr_limit) / fpr_limit
