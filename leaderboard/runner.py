"""Run the benchmark's cells: fit on train, score the test set, measure, write one record each.

Timing protocol (fixed; also printed in every leaderboard):

1. decoding (resize 256, crop 224) happens once per run, before any cell, and is timed apart;
2. ``fit``: the training images in batches of ``fit_batch_size`` (8), wall time;
3. warm-up: ``warmup`` (5) batch-1 predictions on the first test images, discarded;
4. latency: every test image once at batch 1, in dataset order, wall time of ``predict`` plus
   copying scores and maps to the host (GPU work synchronised); the scores come from this pass;
5. throughput: the whole test set again at batch ``throughput_batch`` (32), images per second;
   its scores are compared with the batch-1 scores (``batch_consistency_max_abs``).

Peak RSS covers the whole cell (model build, fit, both passes); on CUDA peak GPU memory too.
Everything random takes the cell's seed (``torch.manual_seed`` and the detector's ``seed``).
"""

from __future__ import annotations

import io
import math
import random
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leaderboard import environment, metrics
from leaderboard.data import BenchData
from leaderboard.errors import BenchError
from leaderboard.progress import Reporter
from leaderboard.records import (
    MAPS_DIR,
    MODELS_DIR,
    atomic_write_bytes,
    cell_id,
    read_record,
    record_path,
    write_record,
)
from leaderboard.registry import METHODS, MethodEntry, load_class

PROTOCOL = (
    "decode once per run (timed apart); fit in batches of {fit_batch_size}; {warmup} warm-up "
    "predictions at batch 1 (discarded); latency = every test image at batch 1 (predict + copy "
    "to host; scores come from this pass); throughput = the test set at batch {throughput_batch}"
)


@dataclass
class RunOptions:
    """What ``bench run`` was asked for (after ``auto`` choices are resolved)."""

    methods: list[str]
    seeds: list[int]
    backbone: str
    weights: str
    device: str
    out: Path
    force: bool = False
    save_models: bool = False
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> settings
    fit_batch_size: int = 8
    throughput_batch: int = 32
    warmup: int = 5
    resamples: int = 1000
    gallery_per_category: int = 3
    registry: Mapping[str, MethodEntry] | None = None

    def protocol(self) -> str:
        return PROTOCOL.format(**self.__dict__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _matches(record: dict[str, Any], data: BenchData, opts: RunOptions, method: str) -> bool:
    """True when a stored record was produced by the same data, backbone and settings."""
    return (
        record["dataset"]["fingerprint"] == data.fingerprint
        and record["backbone"]["name"] == opts.backbone
        and record["backbone"]["weights"] == opts.weights
        and record["method"]["overrides"] == opts.params.get(method, {})
    )


def plan(data: BenchData, opts: RunOptions) -> list[tuple[str, int, str, bool]]:
    """Cells to run as ``(method, seed, cell id, done)``; refuses a folder of other results.

    A finished (``ok``) record of the same data, backbone and settings is kept unless ``force``;
    a failed one is retried. An ``ok`` record of something else would silently mix results, so it
    is an error naming ``--force`` and ``--out``.
    """
    cells = []
    for method in opts.methods:
        for seed in opts.seeds:
            cid = cell_id(data.name, method, seed)
            path = record_path(opts.out, cid)
            done = False
            if path.is_file() and not opts.force:
                record = read_record(path)
                if record["status"] == "ok":
                    if not _matches(record, data, opts, method):
                        raise BenchError(
                            f"{path} holds a result for other data, backbone or settings "
                            f"(dataset {record['dataset']['fingerprint'][:12]}, backbone "
                            f"{record['backbone']['name']}); pass a new --out, or --force to "
                            "replace it"
                        )
                    done = True
            cells.append((method, seed, cid, done))
    return cells


def _ticking(batches: Iterator[torch.Tensor], ui: Reporter) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield batch
        ui.advance()


def _check_prediction(scores: torch.Tensor, maps: torch.Tensor, batch: int, size: tuple) -> None:
    if tuple(scores.shape) != (batch,) or tuple(maps.shape) != (batch, *size):
        raise BenchError(
            f"predict returned scores {tuple(scores.shape)} and maps {tuple(maps.shape)}; "
            f"the Detector contract wants ({batch},) and ({batch}, {size[0]}, {size[1]})"
        )


def _gallery(data: BenchData, per_category: int) -> list[int]:
    """Indices of the first ``per_category`` test images of each category (sorted order)."""
    picks: dict[str, list[int]] = {}
    for i, cat in enumerate(data.test.categories):
        if len(picks.setdefault(cat, [])) < per_category:
            picks[cat].append(i)
    return [i for idx in picks.values() for i in idx]


def _measure(model: Any, data: BenchData, opts: RunOptions, ui: Reporter) -> dict[str, Any]:
    """Steps 3-5 of the protocol; returns scores, latencies, kept maps and stage timings."""
    test, dev = data.test, opts.device
    n, size = len(test), tuple(test.images.shape[-2:])
    keep_all = test.masks is not None
    gallery = _gallery(data, opts.gallery_per_category)
    # with masks every map is kept (pixel AUROC); otherwise only the gallery's
    maps = np.zeros((n if keep_all else len(gallery), *size), np.float32)
    slot = {i: i for i in range(n)} if keep_all else {i: k for k, i in enumerate(gallery)}
    ui.stage("warm-up", min(opts.warmup, n))
    for i in range(min(opts.warmup, n)):
        model.predict(test.batch(i, i + 1))
        ui.advance()
    ui.stage("latency (batch 1)", n)
    scores, latency = np.zeros(n), np.zeros(n)
    stages: dict[str, float] = {}
    for i in range(n):
        x = test.batch(i, i + 1)
        environment.synchronize(dev)
        start = time.perf_counter()
        pred = model.predict(x)
        s, m = pred.scores.detach().cpu(), pred.maps.detach().cpu()
        latency[i] = time.perf_counter() - start
        _check_prediction(s, m, 1, size)
        scores[i] = float(s[0])
        if i in slot:
            maps[slot[i]] = m[0].float().numpy()
        for k, v in (getattr(model, "last_timings", None) or {}).items():
            stages[k] = stages.get(k, 0.0) + float(v)
        ui.advance()
    ui.stage(f"throughput (batch {opts.throughput_batch})", math.ceil(n / opts.throughput_batch))
    batched = []
    environment.synchronize(dev)
    start = time.perf_counter()
    for lo in range(0, n, opts.throughput_batch):
        batched.append(model.predict(test.batch(lo, lo + opts.throughput_batch)).scores.cpu())
        ui.advance()
    environment.synchronize(dev)
    elapsed = time.perf_counter() - start
    batched_scores = torch.cat(batched).double().numpy()
    return {
        "scores": scores,
        "maps": maps,
        "gallery": gallery,
        "timing": {
            "warmup_images": min(opts.warmup, n),
            "latency_ms": {
                "mean": float(latency.mean() * 1000),
                "median": float(np.median(latency) * 1000),
                "p95": float(np.percentile(latency, 95) * 1000),
                "min": float(latency.min() * 1000),
                "n": n,
            },
            "predict_stages_ms": {k: 1000 * v / n for k, v in stages.items()},
            "throughput": {
                "batch": opts.throughput_batch,
                "images_per_s": n / elapsed,
                "batch_consistency_max_abs": float(np.abs(batched_scores - scores).max()),
            },
        },
    }


def _memory_bank(summary: dict[str, list[int]]) -> list[int] | None:
    for key, shape in summary.items():
        if "bank" in key.lower():
            return shape
    return None


def _save_maps(opts: RunOptions, cid: str, data: BenchData, out: dict[str, Any]) -> str:
    """Store the gallery's inputs and maps (float16) for plots; returns the relative path."""
    idx = out["gallery"]
    keep_all = data.test.masks is not None
    maps = out["maps"][idx] if keep_all else out["maps"]
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=data.test.images[idx].numpy(),
        maps=maps.astype(np.float16),
        masks=(data.test.masks[idx].numpy() if keep_all else np.zeros(0, bool)),
        file_names=np.array([data.test.file_names[i] for i in idx]),
        categories=np.array([data.test.categories[i] for i in idx]),
    )
    rel = f"{MAPS_DIR}/{cid}.npz"
    atomic_write_bytes(opts.out / rel, buf.getvalue())
    return rel


def run_cell(
    data: BenchData, method: str, seed: int, order: int, opts: RunOptions, ui: Reporter
) -> dict[str, Any]:
    """Fit, measure and score one cell; returns its record (status ``failed`` on any error)."""
    entry = (opts.registry or METHODS)[method]
    cid = cell_id(data.name, method, seed)
    overrides = dict(opts.params.get(method, {}))
    record: dict[str, Any] = {
        "cell": {"id": cid, "dataset": data.name, "method": method, "seed": seed,
                 "order": order},
        "status": "failed",
        "error": None,
        "method": {"name": method, "class": entry.target, "description": entry.description,
                   "paper": entry.paper, "params": overrides, "overrides": overrides},
        "backbone": {"name": opts.backbone, "weights": opts.weights, "weights_sha256": None},
        "dataset": data.describe(),
        "seed": seed,
        "environment": {"git_sha": environment.git_sha(), "versions":
                        environment.library_versions(), **environment.machine(opts.device),
                        "started_at": _now()},
    }
    stage = "build"
    try:
        klass = load_class(method, opts.registry)
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        with environment.Monitor(opts.device) as monitor:
            model = klass(backbone=opts.backbone, weights=opts.weights, device=opts.device,
                          seed=seed, **overrides)
            record["method"]["params"] = dict(model.config)
            stage = "fit"
            ui.stage("fit", math.ceil(len(data.train) / opts.fit_batch_size))
            environment.synchronize(opts.device)
            start = time.perf_counter()
            model.fit(_ticking(data.train.batches(opts.fit_batch_size), ui))
            environment.synchronize(opts.device)
            fit_s = time.perf_counter() - start
            fit_stages = dict(getattr(model, "last_timings", None) or {})
            stage = "predict"
            out = _measure(model, data, opts, ui)
        stage = "metrics"
        record["backbone"]["weights_sha256"] = getattr(model, "backbone_sha256", None)
        record["timing"] = {"protocol": opts.protocol(), "fit_s": fit_s,
                            "fit_stages_s": fit_stages,
                            "decode_ms_per_image": data.describe()["decode_ms_per_image"],
                            **out["timing"]}
        record["memory"] = monitor.summary()
        summary = model.state_summary()
        record["model"] = {"state_summary": summary, "memory_bank": _memory_bank(summary),
                           "saved": None}
        test = data.test
        record["metrics"] = {
            "image_auroc": metrics.image_metrics(out["scores"], test.labels, test.categories,
                                                 test.groups, resamples=opts.resamples),
            "pixel_auroc": (metrics.pixel_auroc(out["maps"], test.masks.numpy(), test.labels,
                                                test.categories)
                            if test.masks is not None else None),
        }
        record["scores"] = [
            {"file_name": f, "category": c, "group": g, "label": int(y), "score": float(s)}
            for f, c, g, y, s in zip(test.file_names, test.categories, test.groups,
                                     test.labels, out["scores"])
        ]
        stage = "save"
        record["artifacts"] = {"maps": _save_maps(opts, cid, data, out)}
        if opts.save_models:
            rel = f"{MODELS_DIR}/{cid}.safetensors"
            model.save(opts.out / rel)
            record["model"]["saved"] = rel
        record["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - a failing method is recorded; the run goes on
        record["error"] = f"{type(err).__name__} during {stage}: {err}"
        record["traceback"] = traceback.format_exc()
    record["environment"]["finished_at"] = _now()
    write_record(opts.out, record)
    return record


def run(data: BenchData, opts: RunOptions, ui: Reporter) -> list[dict[str, Any]]:
    """Run every cell of ``opts`` on ``data`` (skipping finished ones); returns all records."""
    cells = plan(data, opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    ui.run_start(len(cells))
    records = []
    order = {m: i for i, m in enumerate(opts.methods)}
    for method, seed, cid, done in cells:
        if done:
            records.append(read_record(record_path(opts.out, cid)))
            ui.cell_done(cid, "skipped (finished earlier)")
            continue
        ui.cell_start(cid)
        record = run_cell(data, method, seed, order[method], opts, ui)
        records.append(record)
        ui.cell_done(cid, record["status"] if record["status"] == "ok" else record["error"])
    return records
