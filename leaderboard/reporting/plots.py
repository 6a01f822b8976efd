"""Figures of a run (matplotlib, Agg, PNG): ROC curves per anomaly type, anomaly-map gallery.

Both read only the run folder: ROC curves from the records' per-image scores, the gallery from
the maps each cell stored beside its record (``maps/<cell>.npz``: a few test images per
category, their inputs and float16 maps).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cadsd.files import atomic_write_bytes
from leaderboard.records.schema import Record
from leaderboard.reporting.cells import TYPE_LABELS, anomaly_types, by_method

PLOTS_DIR = "plots"
PLOT_FILES = ("roc.png", "gallery.png", "training.png")


def _figure_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def roc_figure(records: Sequence[Record]) -> Any:
    """One panel per anomaly type (plus all), one curve per method (its first seed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    groups = by_method(records)
    panels = ["all", *anomaly_types(records)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for method, recs in groups.items():
            sel = [s for s in recs[0].scores if s.label == 0 or panel in ("all", s.category)]
            y = np.array([s.label for s in sel])
            sc = np.array([s.score for s in sel])
            fpr, tpr, _ = roc_curve(y, sc)
            ax.plot(fpr, tpr, lw=1.5, label=f"{method} ({100 * roc_auc_score(y, sc):.1f})")
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
        ax.set_title("all anomalies" if panel == "all" else f"normal vs {TYPE_LABELS.get(panel, panel)}")
        ax.set_xlabel("false positive rate")
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("true positive rate")
    d = records[0].dataset
    data = {"synthetic": "SYNTHETIC CAD-SD", "cadsd": "the real CAD-SD"}.get(
        d.kind, f"{d.name} (not the real CAD-SD)")
    fig.suptitle(f"ROC curves, image level, on {data} (legend: AUROC %)", fontsize=10)
    fig.tight_layout()
    return fig


def gallery_figure(run_dir: Path, records: Sequence[Record]) -> Any | None:
    """Inputs on top, then one row of anomaly maps per method, one colour scale per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = by_method(records)
    stored = {}
    for method, recs in groups.items():
        maps = recs[0].artifacts.maps if recs[0].artifacts else None
        path = Path(run_dir) / (maps or "")
        if maps and path.is_file():
            with np.load(path) as z:
                stored[method] = {k: z[k] for k in z.files}
    if not stored:
        return None
    first = next(iter(stored.values()))
    n = len(first["file_names"])
    fig, axes = plt.subplots(1 + len(stored), n, figsize=(1.5 * n + 1.0, 1.6 * (1 + len(stored))),
                             squeeze=False)
    for j in range(n):
        ax = axes[0][j]
        ax.imshow(first["images"][j].transpose(1, 2, 0))
        if first["masks"].size:
            ax.contour(first["masks"][j], levels=[0.5], colors="lime", linewidths=0.6)
        ax.set_title(TYPE_LABELS.get(str(first["categories"][j]), str(first["categories"][j])),
                     fontsize=7)
    axes[0][0].set_ylabel("input", fontsize=8)
    for i, (method, z) in enumerate(stored.items(), start=1):
        maps = z["maps"].astype(np.float32)
        vmin, vmax = float(maps.min()), float(maps.max())  # one scale for the whole row
        for j in range(n):
            ax = axes[i][j]
            ax.imshow(z["images"][j].transpose(1, 2, 0))
            im = ax.imshow(maps[j], cmap="jet", alpha=0.5, vmin=vmin, vmax=vmax)
        axes[i][0].set_ylabel(method, fontsize=8)
        fig.colorbar(im, ax=list(axes[i]), fraction=0.01, pad=0.01)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Anomaly maps (first test images of each type; one colour scale per method row)",
                 fontsize=10)
    return fig


def training_figure(records: Sequence[Record]) -> Any | None:
    """The training curves of the trained methods (first seed each): the loss per epoch or
    logging interval; losses that start at chance (Patch SVDD's position losses) beside ln 8."""
    import math

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    first = {m: rs[0] for m, rs in by_method(records).items()}
    logs = {m: r.training for m, r in first.items() if r.training and r.training.log}
    if not logs:
        return None
    fig, axes = plt.subplots(1, len(logs), figsize=(4.2 * len(logs), 3.2), squeeze=False)
    for ax, (method, training) in zip(axes[0], logs.items()):
        unit = training.unit()
        xs = training.series(unit)
        for key in training.losses():
            ax.plot(xs, training.series(key), lw=1.5, label=key)
        if any(k.startswith("pos") for k in training.losses()):
            ax.axhline(math.log(8), ls=":", c="grey", lw=1, label="chance (ln 8)")
        budget = first[method].method.budget
        ax.set_title(f"{method} (budget {budget})", fontsize=9)
        ax.set_xlabel(unit)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training loss")
    fig.suptitle("Training curves (training images only; fixed budget)", fontsize=10)
    fig.tight_layout()
    return fig


def write_plots(run_dir: Path, records: Sequence[Record], folder: str = PLOTS_DIR) -> list[str]:
    """Write ``roc.png``, ``gallery.png`` and ``training.png`` into ``run_dir/folder`` (the
    gallery reads the maps the cells stored in ``run_dir``); returns their paths relative to
    the run."""
    import matplotlib.pyplot as plt

    if not by_method(records):
        return []
    out = []
    for name, make in (("roc.png", lambda: roc_figure(records)),
                       ("gallery.png", lambda: gallery_figure(run_dir, records)),
                       ("training.png", lambda: training_figure(records))):
        fig = make()
        if fig is None:
            continue
        atomic_write_bytes(Path(run_dir) / folder / name, _figure_bytes(fig))
        plt.close(fig)
        out.append(f"{folder}/{name}")
    return out
