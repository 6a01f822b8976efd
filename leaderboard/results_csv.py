"""``results.csv``: one row per cell, numbers at full precision (AUROC as fractions).

A pure function of the result records, like the markdown tables.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence
from typing import Any

from cadsd.layout import GROUP_NAMES
from leaderboard.tables import anomaly_types, get

CSV_COLUMNS = ["dataset", "dataset_kind", "fingerprint", "method", "budget", "shots", "seed",
               "status",
               "backbone",
               "weights", "weights_sha256", "device", "threads", "auroc_all", "auroc_all_ci_low",
               "auroc_all_ci_high"]


def csv_rows(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per cell (AUROC as fractions in [0, 1], times in ms and s)."""
    types = anomaly_types(records)
    avg = [g for g in GROUP_NAMES if g != "normal"]
    cols = list(CSV_COLUMNS)
    for c in types:
        cols += [f"auroc_{c}", f"auroc_{c}_ci_low", f"auroc_{c}_ci_high"]
    cols += [f"auroc_average_{g}" for g in avg] + [f"auroc_pooled_{g}" for g in avg]
    cols += ["pixel_auroc_all", "latency_ms_mean", "latency_ms_median", "latency_ms_p95",
             "throughput_images_per_s", "fit_s", "peak_rss_mb", "peak_gpu_mb",
             "other_cpu_cores", "memory_bank", "error"]
    rows = []
    for r in records:
        img = functools.partial(get, r, "metrics", "image_auroc")
        row: dict[str, Any] = {
            "dataset": r["dataset"]["name"], "dataset_kind": r["dataset"]["kind"],
            "fingerprint": r["dataset"]["fingerprint"], "method": r["method"]["name"],
            "budget": r["method"].get("budget"), "shots": get(r, "cell", "shots"),
            "seed": r["seed"], "status": r["status"], "backbone": get(r, "backbone", "name"),
            "weights": get(r, "backbone", "weights"),
            "weights_sha256": get(r, "backbone", "weights_sha256"),
            "device": get(r, "environment", "device"), "threads": get(r, "environment", "threads"),
            "auroc_all": img("all", "auroc"), "auroc_all_ci_low": (img("all", "ci") or [None])[0],
            "auroc_all_ci_high": (img("all", "ci") or [None, None])[1],
            "pixel_auroc_all": get(r, "metrics", "pixel_auroc", "all"),
            "latency_ms_mean": get(r, "timing", "latency_ms", "mean"),
            "latency_ms_median": get(r, "timing", "latency_ms", "median"),
            "latency_ms_p95": get(r, "timing", "latency_ms", "p95"),
            "throughput_images_per_s": get(r, "timing", "throughput", "images_per_s"),
            "fit_s": get(r, "timing", "fit_s"), "peak_rss_mb": get(r, "memory", "peak_rss_mb"),
            "peak_gpu_mb": get(r, "memory", "peak_gpu_mb"),
            "other_cpu_cores": get(r, "memory", "other_cpu_cores"),
            "memory_bank": "x".join(map(str, get(r, "model", "memory_bank") or [])),
            "error": r.get("error"),
        }
        for c in types:
            ci = img("category", c, "ci") or [None, None]
            row.update({f"auroc_{c}": img("category", c, "auroc"),
                        f"auroc_{c}_ci_low": ci[0], f"auroc_{c}_ci_high": ci[1]})
        for g in avg:
            row[f"auroc_average_{g}"] = img("average", g, "auroc")
            row[f"auroc_pooled_{g}"] = img("group", g, "auroc")
        rows.append(row)
    return cols, rows


def render_csv(records: Sequence[dict[str, Any]]) -> str:
    """``results.csv``: one row per cell; numbers at full precision."""
    cols, rows = csv_rows(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()
