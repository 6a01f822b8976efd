"""Run the benchmark's cells: fit on train, score the test set, measure, write one record each.

Each (dataset, method, seed) cell builds the detector of its :class:`~leaderboard.running.plan.MethodPlan`
with the cell's seed (and seeds torch, numpy and random), fits it on the training images
decoded as the method asks (a re-iterable :class:`~baselines.training.TrainingSet`, never the
test set), measures it with the fixed protocol of :mod:`leaderboard.running.timing`, computes
:mod:`leaderboard.running.metrics` and writes its record atomically. A cell that raises is recorded as
failed with its error and the run goes on.
"""

from __future__ import annotations

import gc
import io
import math
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from baselines.training import TrainingSet, seed_everything
from cadsd.files import atomic_write_bytes
from leaderboard.errors import BenchError
from leaderboard.records import (
    MAPS_DIR,
    MODELS_DIR,
    RECORDS_DIR,
    cell_id,
    read_record,
    write_record,
)
from leaderboard.records.schema import (
    Artifacts,
    BackboneInfo,
    Buffer,
    Cell,
    Metrics,
    ModelInfo,
    Record,
    Score,
    Timing,
    Training,
)
from leaderboard.running import environment, metrics, pro
from leaderboard.running.data import BenchData, View
from leaderboard.running.plan import MethodPlan, describe_plan
from leaderboard.running.progress import Reporter
from leaderboard.running.timing import PROTOCOL, WARMUP, Measured, measure


@dataclass
class RunOptions:
    """What ``bench run`` was asked for (after ``auto`` choices are resolved)."""

    plans: list[MethodPlan]
    seeds: list[int]
    device: str
    out: Path
    budget: str = "quick"
    force: bool = False
    save_models: bool = False
    shots: list[int | None] = field(default_factory=lambda: [None])  # None: all train images
    #: the datasets this run's folder holds (a benchmark's categories); empty: the one run
    datasets: list[str] = field(default_factory=list)
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    throughput_batch: int = 32
    warmup: int = WARMUP
    resamples: int = 1000
    gallery_per_category: int = 2

    @property
    def methods(self) -> list[str]:
        return [p.name for p in self.plans]

    def protocol(self) -> str:
        return PROTOCOL.format(**self.__dict__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _same_setup(record: Record, data: BenchData,
                backbones: dict[str, tuple[str | None, str | None]], datasets: list[str]) -> bool:
    """Same data, and the same backbone for the same method: the records of one run folder
    must agree on these (one dataset, or one benchmark's categories; one backbone per
    method)."""
    name = record.dataset.name
    if name == data.name:
        if record.dataset.fingerprint != data.fingerprint:
            return False
    elif name not in datasets:
        return False
    if record.method.name not in backbones:
        return True
    return (record.backbone.name, record.backbone.weights) == backbones[record.method.name]


def few_shot_subset(n: int, k: int | None, seed: int) -> np.ndarray:
    """The training images of a ``k``-shot cell: a seeded choice of ``k`` of the ``n`` (sorted
    file order), kept in file order; all of them when ``k`` is None."""
    if k is None:
        return np.arange(n)
    if not 1 <= k <= n:
        raise BenchError(f"--shots {k}: the training split has {n} images")
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def plan(data: BenchData, opts: RunOptions
         ) -> list[tuple[MethodPlan, int, int | None, str, Record | None]]:
    """Cells as ``(plan, seed, shots, cell id, its finished record or None)``; refuses a folder
    of other results.

    A run folder holds one dataset and one backbone per method, so its tables never mix them:
    a finished record of other data, or of one of this run's methods on another backbone, is an
    error (naming ``--out``, and ``--force`` when it is one of this run's cells, which
    ``--force`` replaces), and so is one of this run's cells computed with another budget or
    other method settings. Otherwise a finished cell is kept unless ``force``; a failed one is
    retried.
    """
    cells = [(p, seed, k, cell_id(data.name, p.name, seed, k))
             for p in opts.plans for k in opts.shots for seed in opts.seeds]
    mine = {cid: p for p, _, _, cid in cells}
    backbones = {p.name: (p.backbone, p.weights) for p in opts.plans}
    done: dict[str, Record] = {}
    folder = Path(opts.out) / RECORDS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = read_record(path)
        if not record.ok:
            continue
        cid = record.cell.id
        if cid in mine and opts.force:
            continue
        if not _same_setup(record, data, backbones, opts.datasets):
            hint = " or --force to replace it" if cid in mine else ""
            raise BenchError(
                f"{opts.out} holds results of other data or another backbone ({path.name}: "
                f"dataset {record.dataset.name} {record.dataset.fingerprint[:12]}, "
                f"backbone {record.backbone.name}); pass a new --out{hint}"
            )
        if cid in mine:
            planned = describe_plan(mine[cid])
            if record.method.source_sha256 != planned.source_sha256:
                raise BenchError(
                    f"{path} was computed with another version of {record.method.name}'s code "
                    f"({record.method.source_file} sha256 {str(record.method.source_sha256)[:12]}, "
                    f"now {str(planned.source_sha256)[:12]}); pass --force to recompute it with "
                    "this code, or a new --out"
                )
            if record.method.settings_key() != planned.settings_key():
                raise BenchError(
                    f"{path} was computed with another budget or other method settings "
                    f"(budget {record.method.budget}, {record.method.overrides}); pass --force "
                    "to recompute it with these, or a new --out"
                )
            done[cid] = record
    return [(p, s, k, cid, done.get(cid)) for p, s, k, cid in cells]


def _largest(summary: dict[str, list[int]]) -> Buffer | None:
    """Name and shape of the largest learned buffer (PaDiM's covariance factors, a bank...)."""
    if not summary:
        return None
    name = max(summary, key=lambda k: math.prod(summary[k]))
    return Buffer(name=name, shape=list(summary[name]))


@dataclass
class CellResult:
    """A computed cell: its record and the files to write beside it (relative path -> bytes).
    Nothing is written while a cell computes, so a cell that dies leaves nothing behind; the
    record is written last (its presence means the cell is complete)."""

    record: Record
    files: dict[str, bytes] = field(default_factory=dict)


def write_cell(out: Path, result: CellResult) -> Record:
    """Write a computed cell's files, then its record, each atomically; returns the record."""
    for rel, data in result.files.items():
        atomic_write_bytes(Path(out) / rel, data)
    write_record(Path(out), result.record)
    return result.record


def _maps_file(cid: str, view: View, out: Measured) -> tuple[str, bytes]:
    """The gallery's inputs and maps (float16) for plots: relative path and npz bytes."""
    idx = out.gallery
    test = view.test
    keep_all = test.masks is not None
    maps = out.maps[idx] if keep_all else out.maps
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=test.images[idx].numpy(),
        maps=maps.astype(np.float16),
        masks=(test.masks[idx].numpy() if keep_all else np.zeros(0, bool)),
        file_names=np.array([test.file_names[i] for i in idx]),
        categories=np.array([test.categories[i] for i in idx]),
    )
    return f"{MAPS_DIR}/{cid}.npz", buf.getvalue()


def run_cell(
    data: BenchData, mplan: MethodPlan, seed: int, order: int, opts: RunOptions, ui: Reporter,
    shots: int | None = None,
) -> Record:
    """Compute one cell and write it into ``opts.out``; returns its record."""
    return write_cell(opts.out, compute_cell(data, mplan, seed, order, opts, ui, shots))


def compute_cell(
    data: BenchData, mplan: MethodPlan, seed: int, order: int, opts: RunOptions, ui: Reporter,
    shots: int | None = None,
) -> CellResult:
    """Fit, measure and score one cell (status ``failed`` on any error), writing nothing.
    ``shots``: fit on that many training images (a seeded subset), not all of them."""
    method = mplan.name
    cid = cell_id(data.name, method, seed, shots)
    view = data.view(mplan.input)
    subset = few_shot_subset(len(view.train), shots, seed)
    record = Record(
        cell=Cell(id=cid, dataset=data.name, method=method, seed=seed, order=order, shots=shots,
                  train_files=(None if shots is None else
                               [view.train.file_names[i] for i in subset])),
        method=describe_plan(mplan),
        dataset=data.describe(mplan.input),
        environment=environment.describe(opts.device),
        backbone=BackboneInfo(name=mplan.backbone, weights=mplan.weights),
        input=mplan.input,
    )
    record.environment.started_at = _now()
    stage = "build"
    files: dict[str, bytes] = {}
    gc.collect()  # the previous cell's model must not count towards this cell's peak memory
    if opts.device.startswith("cuda"):
        torch.cuda.empty_cache()
    try:
        seed_everything(seed)
        with environment.Monitor(opts.device) as monitor:
            model = mplan.build(opts.device, seed)
            record.method.params = model.get_params()
            stage = "fit"
            images = view.train.images if shots is None else view.train.images[subset]
            train = TrainingSet(images, batch_size=model.fit_batch_size, seed=seed,
                                device=opts.device)
            environment.synchronize(opts.device)
            start = time.perf_counter()
            model.fit(train, progress=ui)
            environment.synchronize(opts.device)
            fit_s = time.perf_counter() - start
            fit_stages = dict(model.fit_timings)
            stage = "predict"
            out = measure(model, view, opts, ui)
        stage = "metrics"
        info = model.backbone_info()
        if info is not None:
            record.backbone = BackboneInfo(name=info.name, weights=info.weights,
                                           weights_sha256=info.sha256)
        record.timing = Timing(protocol=opts.protocol(), fit_s=fit_s,
                               latency_ms=out.latency_ms, throughput=out.throughput,
                               fit_batch_size=model.fit_batch_size, fit_stages_s=fit_stages,
                               warmup_images=out.warmup_images,
                               predict_stages_ms=out.predict_stages_ms)
        record.memory = monitor.summary()
        summary = model.state_summary()
        record.model = ModelInfo(state_summary=summary.buffers, memory_bank=summary.memory_bank,
                                 trained_parameters=summary.parameters,
                                 fit_notes=dict(model.fit_notes),
                                 largest_buffer=_largest(summary.buffers))
        if mplan.budget is not None or model.training_log:
            record.training = Training(log=list(model.training_log),
                                       verdict=model.training_verdict())
        test = view.test
        masks = test.masks.numpy() if test.masks is not None else None
        record.metrics = Metrics(
            image_auroc=metrics.image_metrics(out.scores, test.labels, test.categories,
                                              test.groups, resamples=opts.resamples),
            pixel_auroc=(metrics.pixel_auroc(out.maps, masks, test.labels, test.categories)
                         if masks is not None else None),
            au_pro=pro.au_pro(out.maps, masks) if masks is not None and masks.any() else None,
            au_pro_fpr_limit=pro.FPR_LIMIT,
        )
        record.scores = [
            Score(file_name=f, category=c, group=g, label=int(y), score=float(s))
            for f, c, g, y, s in zip(test.file_names, test.categories, test.groups,
                                     test.labels, out.scores)
        ]
        stage = "save"
        rel, maps = _maps_file(cid, view, out)
        files[rel] = maps
        record.artifacts = Artifacts(maps=rel)
        if opts.save_models:
            rel = f"{MODELS_DIR}/{cid}.safetensors"
            with tempfile.TemporaryDirectory() as tmp:
                files[rel] = model.save(Path(tmp) / "model.safetensors").read_bytes()
            record.model.saved = rel
        record.status = "ok"
    except Exception as err:  # noqa: BLE001 - a failing method is recorded; the run goes on
        record.error = f"{type(err).__name__} during {stage}: {err}"
        record.traceback = traceback.format_exc()
        files = {}
    record.environment.finished_at = _now()
    return CellResult(record, files)


def run(data: BenchData, opts: RunOptions, ui: Reporter) -> list[Record]:
    """Run every cell of ``opts`` on ``data`` (skipping finished ones); returns all records.
    ``opts.executor`` ``ray`` runs the cells as Ray tasks (:mod:`leaderboard.running.ray_executor`)."""
    cells = plan(data, opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    ui.run_start(len(cells))
    order = {m: i for i, m in enumerate(opts.methods)}
    todo = [(p, seed, order[p.name], shots, cid)
            for p, seed, shots, cid, finished in cells if finished is None]
    records: dict[str, Record] = {}
    for _, _, _, cid, finished in cells:
        if finished is not None:
            records[cid] = finished
            ui.cell_done(cid, "skipped (finished earlier)")
    if opts.executor == "ray":
        from leaderboard.running.ray_executor import run_cells

        for record in run_cells(data, todo, opts, ui):
            records[record.cell.id] = record
    else:
        for mplan, seed, order_, shots, cid in todo:
            ui.cell_start(cid)
            record = run_cell(data, mplan, seed, order_, opts, ui, shots)
            records[cid] = record
            ui.cell_done(cid, status_line(record))
    return [records[cid] for *_, cid, _ in cells if cid in records]


def status_line(record: Record) -> str:
    return record.status if record.ok else str(record.error)
