"""The result record: one typed definition of what a cell writes and what tables read.

A record is a tree of dataclasses; its JSON file is :func:`dataclasses.asdict` of it, and
:func:`from_json_dict` builds it back (strictly: an unknown key or a value of the wrong type is
an error). Everything that reads results (tables, ``results.csv``, plots, the CLI summary) goes
through these attributes, so this file is the only place that spells a record's field names.
Open-ended maps (a method's settings, per-type metrics, stage timings) are ``dict`` fields.

Version 4 (this one) adds MVTec LOCO AD's sPRO (``metrics.spro``) and the test images that
were also training images (``dataset.leaked``, a run with ``--allow-leakage``); version-3 files
read with neither (a LOCO record of version 3 has no sPRO, and its leaderboard says so).

Version 3 adds the method's origin and, for a method from outside this repository,
its provenance (``method.origin``, ``distribution``, ``distribution_version``, ``source_file``,
``source_sha256``); version-2 files read as built-in methods.

Version 2 differs from version 1 (``records/store.py`` migrates it): confidence
intervals are ``{"low", "high"}`` (``results.csv`` gets one column each), ``cell`` holds the
seed and the few-shot file names (the top-level ``seed`` and ``shots`` are gone), the method's
class is ``target``, ``input`` holds the input spec alone, and ``timing`` no longer repeats the
dataset's decode time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import dacite

from baselines.errors import DetectorError
from baselines.preprocess import InputSpec

SCHEMA = "cadsd-bench/result"
SCHEMA_VERSION = 4
#: between a row's method and its source in a merged leaderboard (:meth:`Record.row_key`)
SOURCE_MARK = " · "


@dataclass
class Cell:
    """Which cell: a (dataset, method, seed[, K-shot]) combination and its place in the run."""

    id: str
    dataset: str
    method: str
    seed: int
    order: int = 0
    shots: int | None = None  # K of a few-shot cell; None: every training image
    train_files: list[str] | None = None  # the K training images (file order)


@dataclass
class MethodInfo:
    """The method as planned (registry entry, budget, overrides) and as built (``params``)."""

    name: str
    target: str = ""  # "module:Class"
    description: str = ""
    paper: str = ""
    variant_of: str | None = None
    budget: str | None = None
    budget_overrides: dict[str, Any] = field(default_factory=dict)
    preset: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    #: builtin | project | import path | entry point (outside methods: their provenance too)
    origin: str = "builtin"
    distribution: str | None = None
    distribution_version: str | None = None
    source_file: str | None = None  # relative to its package's folder, never absolute
    source_sha256: str | None = None

    @property
    def outside(self) -> bool:
        return self.origin in ("import path", "entry point")

    def settings_key(self) -> tuple:
        """What must agree for a finished cell to count as this plan's result (an outside
        method's source file too: edited code is another method)."""
        return (self.budget, self.budget_overrides, self.overrides, self.preset,
                self.source_sha256)


@dataclass
class BackboneInfo:
    name: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None


@dataclass
class DatasetInfo:
    """The data a cell ran on: where from, its fingerprint and counts, how long decoding took."""

    name: str
    kind: str
    fingerprint: str
    source: str = ""
    synthetic: bool = False
    real_cadsd: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # "train/good" -> images
    has_masks: bool = False
    generator: dict[str, Any] | None = None
    benchmark: str | None = None
    category: str | None = None
    published_counts: bool | None = None
    count_differences: list[str] = field(default_factory=list)
    decode_s: float | None = None
    decode_ms_per_image: float | None = None
    #: test images whose bytes equal a training image's (run with --allow-leakage)
    leaked: list[str] = field(default_factory=list)

    def split_counts(self, split: str) -> dict[str, int]:
        """Images per category of one split (``test`` -> {"good": 210, ...})."""
        return {k.split("/", 1)[1]: v for k, v in self.counts.items()
                if k.startswith(f"{split}/")}


@dataclass
class Environment:
    """Where and when the cell ran, and with what code."""

    device: str
    git_sha: str = "unknown"
    versions: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    device_name: str | None = None
    threads: int | None = None
    cpu_count: int | None = None
    platform: str | None = None
    total_memory_mb: int | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def machine_key(self) -> str:
        """One machine and device, as a table names it."""
        return (f"{self.host or '?'} ({self.device}, {self.device_name}, "
                f"{self.threads} threads)")


@dataclass
class Latency:
    """Batch-1 prediction times over the test set (ms)."""

    mean: float
    median: float
    p95: float
    min: float
    n: int


@dataclass
class Throughput:
    batch: int
    images_per_s: float
    batch_consistency_max_abs: float  # |batched score - batch-1 score|, max over the timed images
    images: int | None = None  # test images timed (None: records before it was said, the test set)


@dataclass
class Timing:
    """The timing protocol's measurements (``protocol`` says how they were taken)."""

    protocol: str
    fit_s: float
    latency_ms: Latency
    throughput: Throughput
    fit_batch_size: int | None = None
    fit_stages_s: dict[str, float] = field(default_factory=dict)
    warmup_images: int = 0
    predict_stages_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Memory:
    """Peak memory of the cell and how busy the rest of the machine was (MiB, cores)."""

    peak_rss_mb: float
    rss_before_mb: float
    peak_rss_source: str
    load_avg_before: list[float]
    load_avg_after: list[float]
    other_cpu_cores: float
    peak_gpu_mb: float | None = None


@dataclass
class Buffer:
    name: str
    shape: list[int]


@dataclass
class ModelInfo:
    """What fit learned: buffer shapes, trained parameters, the memory bank, a saved copy."""

    state_summary: dict[str, list[int]] = field(default_factory=dict)
    memory_bank: list[int] | None = None
    trained_parameters: int = 0
    fit_notes: dict[str, Any] = field(default_factory=dict)
    largest_buffer: Buffer | None = None
    saved: str | None = None  # the safetensors file, relative to the run folder


@dataclass
class Training:
    """A trained method's loss log (one entry per epoch or interval) and its verdict."""

    log: list[dict[str, Any]] = field(default_factory=list)
    verdict: str | None = None

    def unit(self) -> str:
        """``epoch`` or ``step``: what the log counts."""
        return "epoch" if self.log and "epoch" in self.log[-1] else "step"

    def losses(self) -> list[str]:
        """The logged quantities other than the counters."""
        counters = ("epoch", "step", "epochs", "steps")
        return [k for k in (self.log[0] if self.log else {}) if k not in counters]

    def series(self, key: str) -> list[Any]:
        return [e[key] for e in self.log]


@dataclass
class Interval:
    low: float
    high: float


@dataclass
class AUROC:
    """Image AUROC of normal images against some anomalous ones, with its bootstrap CI."""

    auroc: float
    ci: Interval
    n_normal: int
    n_anomaly: int


@dataclass
class Average:
    """The mean of a group's per-type AUROCs (the paper's Table 3 Average rows)."""

    auroc: float
    ci: Interval
    types: list[str]


@dataclass
class Bootstrap:
    resamples: int
    seed: int
    level: float
    method: str


@dataclass
class ImageAUROC:
    all: AUROC
    category: dict[str, AUROC]
    group: dict[str, AUROC]
    average: dict[str, Average]
    bootstrap: Bootstrap


@dataclass
class PixelAUROC:
    all: float | None
    category: dict[str, float | None]
    n_pixels: int
    n_defect_pixels: int


@dataclass
class SPROArea:
    """sPRO of one group of MVTec LOCO AD (its images and every normal one): the area under
    the curve up to FPR 0.05 and 0.3, each divided by its limit."""

    fpr_0_05: float
    fpr_0_3: float
    n_regions: int  # defect regions scored
    n_empty: int  # regions with no pixel left at the input resolution (left out)
    n_images: int


@dataclass
class SPROMetrics:
    """MVTec LOCO AD's localisation metric per group (logical, structural) and their mean."""

    group: dict[str, SPROArea]
    mean_0_05: float
    mean_0_3: float


@dataclass
class Metrics:
    image_auroc: ImageAUROC
    pixel_auroc: PixelAUROC | None = None
    au_pro: float | None = None
    au_pro_fpr_limit: float | None = None
    spro: SPROMetrics | None = None  # MVTec LOCO AD only (records from schema 4 on)


@dataclass
class Score:
    """One test image's score."""

    file_name: str
    category: str
    group: str
    label: int
    score: float


@dataclass
class Artifacts:
    maps: str | None = None  # the gallery's maps (npz), relative to the run folder


@dataclass
class Record:
    """One cell's result. ``status`` is ``ok`` or ``failed`` (then ``error`` says why and the
    measurement blocks are None)."""

    cell: Cell
    method: MethodInfo
    dataset: DatasetInfo
    environment: Environment
    status: str = "failed"
    error: str | None = None
    backbone: BackboneInfo = field(default_factory=BackboneInfo)
    input: InputSpec | None = None
    timing: Timing | None = None
    memory: Memory | None = None
    model: ModelInfo | None = None
    training: Training | None = None
    metrics: Metrics | None = None
    scores: list[Score] = field(default_factory=list)
    artifacts: Artifacts | None = None
    traceback: str | None = None
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    #: where this record was read from when a leaderboard merges several runs (``hf:ORG/NAME``
    #: or a run folder); never stored in the file, so it is not part of the schema
    read_from: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def seed(self) -> int:
        return self.cell.seed

    def row_key(self) -> str:
        """A leaderboard row: the method, for a few-shot cell its K (``patchcore @ 4-shot``), and
        in a merged leaderboard the run it came from (``patchcore · hf:lab/run``)."""
        k = self.cell.shots
        return (self.method.name + ("" if k is None else f" @ {k}-shot")
                + (f"{SOURCE_MARK}{self.read_from}" if self.read_from else ""))

    def to_json_dict(self) -> dict[str, Any]:
        """The record as JSON-ready builtins (the file's content; ``read_from`` is not in it)."""
        out = dataclasses.asdict(self)
        del out["read_from"]
        return out

    def summary_dict(self) -> dict[str, Any]:
        """The record without its per-image scores, its training log, the few-shot file list
        and the traceback: one flat row of ``results.csv`` once normalised."""
        out = self.to_json_dict()
        del out["scores"], out["traceback"]
        out["cell"].pop("train_files")
        if out["training"] is not None:
            out["training"].pop("log")
        return out


_CONFIG = dacite.Config(strict=True)


def from_json_dict(data: dict[str, Any]) -> Record:
    """Build a :class:`Record` from the current version's JSON; raises ``ValueError`` naming
    the first field that does not fit."""
    try:
        return dacite.from_dict(Record, data, config=_CONFIG)
    except (dacite.DaciteError, DetectorError, TypeError, ValueError) as err:
        raise ValueError(str(err)) from None  # DetectorError: an InputSpec of bad values
