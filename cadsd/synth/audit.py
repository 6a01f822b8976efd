"""Shortcut audit: can a trivial global image statistic tell an anomaly type from normal?

A benchmark is spoiled when an anomaly changes a global statistic that a detector could read off
without looking at the product (the synthetic paint smear tinting the whole image, say). For each
statistic and anomaly category this reports the image AUROC of normal test vs that category, as
``separation = max(auc, 1 - auc)`` (a statistic works in either direction). Documented limits:
:data:`LIMITS`; ``cadsd synth --audit DIR`` exits 1 when one is exceeded. A limit is judged only
with at least :data:`MIN_IMAGES` images on each side: with the 6 normal and 3 paint images of
``--counts small``, chance alone gives separations near 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage

from cadsd.format import layout

if TYPE_CHECKING:
    from rich.console import Console

#: Highest allowed separation per (statistic, category). Local defects are small and must need
#: features, not global statistics: none of these may reveal scratch or paint. Co-occurrence
#: anomalies change the product itself (a nut more or less), so product area is reported only.
LIMITS: dict[tuple[str, str], float] = {
    ("mean_saturation", "paint"): 0.8,
    ("mean_saturation", "scratch"): 0.8,
    ("mean_brightness", "paint"): 0.8,
    ("mean_brightness", "scratch"): 0.8,
    ("dark_area", "paint"): 0.8,
    ("dark_area", "scratch"): 0.8,
}
DARK_LEVEL = 0.25  # a pixel is dark below this luminance (0..1)
#: fewest normal and anomalous images for a limit to be judged (the paper's smallest class: 40)
MIN_IMAGES = 20


@dataclass(frozen=True)
class AuditRow:
    """AUROC of one statistic for normal test images vs one anomaly category."""

    statistic: str
    category: str
    auroc: float  # > 0.5: the statistic is higher for the anomaly
    limit: float | None
    images: tuple[int, int]  # normal, anomalous

    @property
    def separation(self) -> float:
        """max(auroc, 1 - auroc): how well the statistic separates, in either direction."""
        return max(self.auroc, 1.0 - self.auroc)

    @property
    def judged(self) -> bool:
        """Whether the limit applies: one exists and both sides have MIN_IMAGES images."""
        return self.limit is not None and min(self.images) >= MIN_IMAGES

    @property
    def ok(self) -> bool:
        return not self.judged or self.separation <= self.limit


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def mean_saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation (max - min) / max over all pixels."""
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    return float(np.mean(np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)))


def dark_area(rgb: np.ndarray) -> float:
    """Fraction of pixels darker than :data:`DARK_LEVEL`."""
    return float(np.mean(_luminance(rgb) < DARK_LEVEL))


def product_area(rgb: np.ndarray) -> float:
    """Fraction of the frame covered by the product: pixels far from the local backdrop level.

    The backdrop (vignetted, shadowed) is estimated by a wide median filter at 1/4 resolution,
    which removes the thin product; pixels 30 % darker or brighter count, holes are filled.
    """
    lum = _luminance(rgb)
    k = 4
    h, w = lum.shape[0] // k, lum.shape[1] // k
    small = lum[: h * k, : w * k].reshape(h, k, w, k).mean(axis=(1, 3))
    level = ndimage.median_filter(small, size=max(5, h // 5))
    level = ndimage.zoom(level, (lum.shape[0] / h, lum.shape[1] / w), order=1)
    fg = np.abs(lum - level) > 0.3 * level
    return float(np.mean(ndimage.binary_fill_holes(fg)))


def mean_brightness(rgb: np.ndarray) -> float:
    """Mean luminance."""
    return float(np.mean(_luminance(rgb)))


STATISTICS: dict[str, Callable[[np.ndarray], float]] = {
    "mean_saturation": mean_saturation,
    "dark_area": dark_area,
    "product_area": product_area,
    "mean_brightness": mean_brightness,
}


def image_statistics(path: str | Path) -> dict[str, float]:
    """All :data:`STATISTICS` of one image file."""
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    return {name: fn(rgb) for name, fn in STATISTICS.items()}


def audit(root: str | Path) -> list[AuditRow]:
    """AUROC of every statistic, normal test images vs each anomaly category, under ``root``."""
    from sklearn.metrics import roc_auc_score

    from cadsd.errors import LayoutError

    tests = [s for s in layout.index(root) if s.split == "test"]
    stats = {s.path: image_statistics(s.path) for s in tests}
    normal = [s for s in tests if s.label == "normal"]
    rows: list[AuditRow] = []
    for cat in layout.CATEGORIES:
        if cat.label == "normal":
            continue
        anomalous = [s for s in tests if s.category == cat.name]
        if not normal or not anomalous:
            raise LayoutError(
                f"cannot audit {root}: need normal and {cat.name} test images "
                f"(found {len(normal)} and {len(anomalous)})"
            )
        labels = [0] * len(normal) + [1] * len(anomalous)
        for name in STATISTICS:
            values = [stats[s.path][name] for s in normal + anomalous]
            auc = float(roc_auc_score(labels, values))
            rows.append(AuditRow(name, cat.name, auc, LIMITS.get((name, cat.name)),
                                 (len(normal), len(anomalous))))
    return rows


def violations(rows: list[AuditRow]) -> list[AuditRow]:
    """The rows whose separation exceeds their documented limit."""
    return [r for r in rows if not r.ok]


def print_audit(rows: list[AuditRow], console: Console | None = None) -> None:
    """A rich table: statistic x category -> AUROC (separation), limits flagged."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    cats = list(dict.fromkeys(r.category for r in rows))
    table = Table(
        title="shortcut audit: AUROC of global statistics, normal test vs category",
        caption="* has a limit: max(AUROC, 1 - AUROC) must stay <= the limit (cadsd.synth.audit)",
    )
    table.add_column("statistic")
    for cat in cats:
        table.add_column(cat, justify="right")
    for stat in dict.fromkeys(r.statistic for r in rows):
        cells = []
        for cat in cats:
            row = next(r for r in rows if r.statistic == stat and r.category == cat)
            text = f"{row.auroc:.3f}" + ("*" if row.limit is not None else " ")
            cells.append(text if row.ok else f"[bold red]{text}[/]")
        table.add_row(stat, *cells)
    console.print(table)
    small = {r.category: r.images for r in rows if r.limit is not None and not r.judged}
    for cat, (n_normal, n_cat) in small.items():
        console.print(f"[yellow]not judged:[/] {cat} limits need {MIN_IMAGES} images a side "
                      f"(found {n_normal} normal, {n_cat} {cat})", highlight=False)
    bad = violations(rows)
    for r in bad:
        console.print(f"[bold red]shortcut:[/] {r.statistic} separates {r.category} from normal "
                      f"(separation {r.separation:.3f} > limit {r.limit:.2f})", highlight=False)
    if not bad and any(r.judged for r in rows):
        console.print("[green]no documented shortcut limit exceeded[/]")
