"""One cell: build -> fit -> measure -> score -> save, for one (dataset, method, seed[, K]).

:func:`compute_cell` builds the detector of the cell's :class:`~leaderboard.running.plan.MethodPlan`
with the cell's seed (after seeding torch, numpy and random), fits it on the training images
decoded as the method asks (a re-iterable :class:`~baselines.training.TrainingSet`, never the
test set), measures it with the fixed protocol of :mod:`leaderboard.running.timing`, scores it
(:mod:`leaderboard.scoring`) and returns its record with the files to write beside it, writing
nothing: :func:`write_cell` writes them, the record last. A cell that raises is recorded as
failed with its error (and the stage it failed in).
"""

from __future__ import annotations

import dataclasses
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

from baselines.base import Detector
from baselines.training import TrainingSet, seed_everything
from cadsd.files import atomic_write_bytes
from leaderboard.errors import BenchError
from leaderboard.records import MAPS_DIR, MODELS_DIR, cell_id, write_record
from leaderboard.records.schema import (
    Artifacts,
    BackboneInfo,
    Buffer,
    Cell,
    Metrics,
    ModelInfo,
    Record,
    Score,
    SPROArea,
    SPROMetrics,
    Timing,
    Training,
)
from leaderboard.running import environment
from leaderboard.running.data import BenchData, Split, View
from leaderboard.running.plan import MethodPlan, describe_plan
from leaderboard.running.progress import Reporter
from leaderboard.running.timing import Measured, TimingProtocol, measure
from leaderboard.scoring import pro
from leaderboard.scoring.auroc import image_metrics, pixel_auroc
from leaderboard.scoring.spro import Region, spro_by_group


@dataclass(frozen=True)
class CellSpec:
    """Which cell: the dataset's name, the method's plan, the seed, K training images (None:
    all of them) and the method's place in the run (its row order)."""

    dataset: str
    plan: MethodPlan
    seed: int
    shots: int | None = None
    order: int = 0

    @property
    def id(self) -> str:
        return cell_id(self.dataset, self.plan.name, self.seed, self.shots)


@dataclass(frozen=True)
class CellOptions:
    """How every cell of a run is computed: the device, the timing protocol, the bootstrap's
    resamples and whether fitted models are kept."""

    device: str = "cpu"
    protocol: TimingProtocol = field(default_factory=TimingProtocol)
    resamples: int = 1000
    save_models: bool = False


@dataclass
class CellResult:
    """A computed cell: its record and the files to write beside it (relative path -> bytes).
    Nothing is written while a cell computes, so a cell that dies leaves nothing behind; the
    record is written last (its presence means the cell is complete)."""

    record: Record
    files: dict[str, bytes] = field(default_factory=dict)


def few_shot_subset(n: int, k: int | None, seed: int) -> np.ndarray:
    """The training images of a ``k``-shot cell: a seeded choice of ``k`` of the ``n`` (sorted
    file order), kept in file order; all of them when ``k`` is None."""
    if k is None:
        return np.arange(n)
    if not 1 <= k <= n:
        raise BenchError(f"--shots {k}: the training split has {n} images")
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(data: BenchData, spec: CellSpec, view: View, subset: np.ndarray,
               device: str) -> Record:
    """The record of a cell before it runs: which cell, method, data and machine."""
    mplan = spec.plan
    return Record(
        cell=Cell(id=spec.id, dataset=data.name, method=mplan.name, seed=spec.seed,
                  order=spec.order, shots=spec.shots,
                  train_files=(None if spec.shots is None else
                               [view.train.file_names[i] for i in subset])),
        method=describe_plan(mplan),
        dataset=data.describe(mplan.input),
        environment=environment.describe(device),
        backbone=BackboneInfo(name=mplan.backbone, weights=mplan.weights),
        input=mplan.input,
    )


def fit(model: Detector, view: View, subset: np.ndarray, spec: CellSpec, device: str,
        ui: Reporter) -> float:
    """Fit on the cell's training images (never the test set); returns the wall time."""
    images = view.train.images if spec.shots is None else view.train.images[subset]
    train = TrainingSet(images, batch_size=model.fit_batch_size, seed=spec.seed, device=device)
    environment.synchronize(device)
    start = time.perf_counter()
    model.fit(train, progress=ui)
    environment.synchronize(device)
    return time.perf_counter() - start


def describe_model(record: Record, model: Detector, fit_s: float, out: Measured,
                   protocol: TimingProtocol) -> None:
    """The record's timing, backbone, learned-state and training blocks."""
    info = model.backbone_info()
    if info is not None:
        record.backbone = BackboneInfo(name=info.name, weights=info.weights,
                                       weights_sha256=info.sha256)
    record.timing = Timing(protocol=protocol.text(), fit_s=fit_s, latency_ms=out.latency_ms,
                           throughput=out.throughput, fit_batch_size=model.fit_batch_size,
                           fit_stages_s=dict(model.fit_timings),
                           warmup_images=out.warmup_images,
                           predict_stages_ms=out.predict_stages_ms)
    summary = model.state_summary()
    record.model = ModelInfo(state_summary=summary.buffers, memory_bank=summary.memory_bank,
                             trained_parameters=summary.parameters,
                             fit_notes=dict(model.fit_notes),
                             largest_buffer=_largest(summary.buffers))
    if record.method.budget is not None or model.training_log:
        record.training = Training(log=list(model.training_log),
                                   verdict=model.training_verdict())


def score(record: Record, view: View, out: Measured, resamples: int) -> None:
    """The record's metrics (image AUROC with CIs; pixel AUROC and AU-PRO where there are
    masks) and per-image scores."""
    test = view.test
    masks = test.masks.numpy() if test.masks is not None else None
    record.metrics = Metrics(
        image_auroc=image_metrics(out.scores, test.labels, test.categories, test.groups,
                                  resamples=resamples),
        pixel_auroc=(pixel_auroc(out.maps, masks, test.labels, test.categories)
                     if masks is not None else None),
        au_pro=pro.au_pro(out.maps, masks) if masks is not None and masks.any() else None,
        au_pro_fpr_limit=pro.FPR_LIMIT,
        spro=_spro(out.maps, test) if test.regions is not None else None,
    )
    record.scores = [
        Score(file_name=f, category=c, group=g, label=int(y), score=float(s))
        for f, c, g, y, s in zip(test.file_names, test.categories, test.groups, test.labels,
                                 out.scores)
    ]


def _spro(maps: np.ndarray, test: Split) -> SPROMetrics:
    """MVTec LOCO AD's sPRO per group (each with every normal image) and their mean."""
    regions = [[Region.from_fraction(mask.numpy(), fraction) for mask, fraction in image]
               for image in test.regions or []]
    found = spro_by_group(maps, regions, test.groups)
    return SPROMetrics(group={g: SPROArea(**dataclasses.asdict(a)) for g, a in found.group.items()},
                       mean_0_05=found.mean_0_05, mean_0_3=found.mean_0_3)


def save(record: Record, model: Detector, view: View, out: Measured,
         save_models: bool) -> dict[str, bytes]:
    """The files kept beside the record: the gallery's maps and, if asked, the fitted model."""
    rel, maps = _maps_file(record.cell.id, view, out)
    files = {rel: maps}
    record.artifacts = Artifacts(maps=rel)
    if save_models:
        rel = f"{MODELS_DIR}/{record.cell.id}.safetensors"
        with tempfile.TemporaryDirectory() as tmp:
            files[rel] = model.save(Path(tmp) / "model.safetensors").read_bytes()
        record.model.saved = rel  # type: ignore[union-attr]
    return files


def compute_cell(data: BenchData, spec: CellSpec, options: CellOptions,
                 ui: Reporter) -> CellResult:
    """Build, fit, measure, score and save one cell (status ``failed`` on any error), writing
    nothing."""
    view = data.view(spec.plan.input)
    subset = few_shot_subset(len(view.train), spec.shots, spec.seed)
    device = options.device
    record = new_record(data, spec, view, subset, device)
    record.environment.started_at = _now()
    stage = "build"
    files: dict[str, bytes] = {}
    gc.collect()  # the previous cell's model must not count towards this cell's peak memory
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    try:
        seed_everything(spec.seed)
        with environment.Monitor(device) as monitor:
            model = spec.plan.build(device, spec.seed)
            record.method.params = model.get_params()
            stage = "fit"
            fit_s = fit(model, view, subset, spec, device, ui)
            stage = "predict"
            out = measure(model, view, options.protocol, device, ui)
        stage = "metrics"
        record.memory = monitor.summary()
        describe_model(record, model, fit_s, out, options.protocol)
        score(record, view, out, options.resamples)
        stage = "save"
        files = save(record, model, view, out, options.save_models)
        record.status = "ok"
    except Exception as err:  # noqa: BLE001 - a failing method is recorded; the run goes on
        record.error = f"{type(err).__name__} during {stage}: {err}"
        record.traceback = traceback.format_exc()
        files = {}
    record.environment.finished_at = _now()
    return CellResult(record, files)


def write_cell(out: Path, result: CellResult) -> Record:
    """Write a computed cell's files, then its record, each atomically; returns the record."""
    for rel, data in result.files.items():
        atomic_write_bytes(Path(out) / rel, data)
    write_record(Path(out), result.record)
    return result.record


def _largest(summary: dict[str, list[int]]) -> Buffer | None:
    """Name and shape of the largest learned buffer (PaDiM's covariance factors, a bank...)."""
    if not summary:
        return None
    name = max(summary, key=lambda k: math.prod(summary[k]))
    return Buffer(name=name, shape=list(summary[name]))


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
