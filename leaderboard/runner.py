"""Run the benchmark's cells: fit on train, score the test set, measure, write one record each.

Each (dataset, method, seed) cell builds the detector with the cell's seed (and seeds torch,
numpy and random), fits it, measures it with the fixed protocol of :mod:`leaderboard.timing`,
computes :mod:`leaderboard.metrics` and writes its record atomically. A cell that raises is
recorded as failed with its error and the run goes on.
"""

from __future__ import annotations

import gc
import io
import math
import random
import time
import traceback
from collections.abc import Mapping
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
    RECORDS_DIR,
    atomic_write_bytes,
    cell_id,
    read_record,
    record_path,
    write_record,
)
from leaderboard.registry import METHODS, MethodEntry, load_class
from leaderboard.timing import PROTOCOL, measure, ticking


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
    gallery_per_category: int = 2
    registry: Mapping[str, MethodEntry] | None = None

    def protocol(self) -> str:
        return PROTOCOL.format(**self.__dict__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _same_setup(record: dict[str, Any], data: BenchData, opts: RunOptions) -> bool:
    """Same data and backbone: the records of one run folder must agree on these."""
    return (
        record["dataset"]["fingerprint"] == data.fingerprint
        and record["backbone"]["name"] == opts.backbone
        and record["backbone"]["weights"] == opts.weights
    )


def plan(data: BenchData, opts: RunOptions) -> list[tuple[str, int, str, bool]]:
    """Cells to run as ``(method, seed, cell id, done)``; refuses a folder of other results.

    A run folder holds one dataset and one backbone, so its tables never mix them: a finished
    record of other data or another backbone is an error (naming ``--out``, and ``--force`` when
    it is one of this run's cells, which ``--force`` replaces), and so is one of this run's cells
    computed with other method settings. Otherwise a finished cell is kept unless ``force``; a
    failed one is retried.
    """
    cells = []
    for method in opts.methods:
        for seed in opts.seeds:
            cid = cell_id(data.name, method, seed)
            cells.append((method, seed, cid, False))
    mine = {cid for *_, cid, _ in cells}
    done = set()
    folder = Path(opts.out) / RECORDS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = read_record(path)
        if record["status"] != "ok":
            continue
        cid = record["cell"]["id"]
        if cid in mine and opts.force:
            continue
        if not _same_setup(record, data, opts):
            hint = " or --force to replace it" if cid in mine else ""
            raise BenchError(
                f"{opts.out} holds results of other data or another backbone ({path.name}: "
                f"dataset {record['dataset']['name']} {record['dataset']['fingerprint'][:12]}, "
                f"backbone {record['backbone']['name']}); pass a new --out{hint}"
            )
        if cid in mine:
            if record["method"]["overrides"] != opts.params.get(record["method"]["name"], {}):
                raise BenchError(
                    f"{path} was computed with other method settings "
                    f"({record['method']['overrides']}); pass --force to recompute it with "
                    "these, or a new --out"
                )
            done.add(cid)
    return [(m, s, cid, cid in done) for m, s, cid, _ in cells]


def _memory_bank(summary: dict[str, list[int]]) -> list[int] | None:
    """Shape of the buffer named like a memory bank (PatchCore), else None."""
    for key, shape in summary.items():
        if "bank" in key.lower():
            return shape
    return None


def _largest(summary: dict[str, list[int]]) -> dict[str, Any] | None:
    """Name and shape of the largest learned buffer (PaDiM's covariance factors, a bank...)."""
    if not summary:
        return None
    name = max(summary, key=lambda k: math.prod(summary[k]))
    return {"name": name, "shape": summary[name]}


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
    gc.collect()  # the previous cell's model must not count towards this cell's peak memory
    if opts.device.startswith("cuda"):
        torch.cuda.empty_cache()
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
            model.fit(ticking(data.train.batches(opts.fit_batch_size), ui, opts.device))
            environment.synchronize(opts.device)
            fit_s = time.perf_counter() - start
            fit_stages = dict(getattr(model, "last_timings", None) or {})
            stage = "predict"
            out = measure(model, data, opts, ui)
        stage = "metrics"
        record["backbone"]["weights_sha256"] = getattr(model, "backbone_sha256", None)
        record["timing"] = {"protocol": opts.protocol(), "fit_s": fit_s,
                            "fit_stages_s": fit_stages,
                            "decode_ms_per_image": data.describe()["decode_ms_per_image"],
                            **out["timing"]}
        record["memory"] = monitor.summary()
        summary = model.state_summary()
        record["model"] = {"state_summary": summary, "memory_bank": _memory_bank(summary),
                           "largest_buffer": _largest(summary), "saved": None}
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
