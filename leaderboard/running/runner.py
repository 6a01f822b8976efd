"""The loop over a run's cells and the executors that compute them.

:func:`run` plans the cells of one dataset (every method x K x seed, as :class:`CellSpec`),
skips the finished ones (:mod:`.resume`) and hands the rest to an executor: ``local`` computes
them one after the other in this process; ``ray`` makes each a Ray task (on a laptop or a
cluster) running the very same :func:`~leaderboard.running.cell.compute_cell`. Either way this
process writes every record and file into the run folder (record last), so resume, ``--force``,
failed-cell records and the leaderboard do not depend on the executor. ``on_cell`` is called
after each record is written (the leaderboard is rewritten there).

Ray: each task asks for one GPU when the device is CUDA, else for the CPUs a cell uses (torch's
thread count here); the decoded dataset goes into Ray's object store once per run (per
benchmark category). A task writes nothing: a worker that dies mid-cell leaves no partial
record, and a rerun computes the cell again. ``--ray-address`` joins an existing cluster
(``ray start --head``, KubeRay, Slurm); without it a local Ray instance is started for the run
and stopped after it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderboard.errors import BenchError
from leaderboard.records import Record
from leaderboard.running.cell import CellOptions, CellResult, CellSpec, compute_cell, write_cell
from leaderboard.running.data import BenchData
from leaderboard.running.plan import MethodPlan
from leaderboard.running.progress import Reporter
from leaderboard.running.resume import finished_cells
from leaderboard.running.timing import WARMUP, TimingProtocol

INSTALL_RAY = "pip install 'cadsd-bench[ray]'"


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
    throughput_images: int = 128  # 0: the whole test set
    warmup: int = WARMUP
    resamples: int = 1000
    gallery_per_category: int = 2

    @property
    def cell_options(self) -> CellOptions:
        """What every cell of the run is computed with."""
        protocol = TimingProtocol(warmup=self.warmup, throughput_batch=self.throughput_batch,
                                  throughput_images=self.throughput_images,
                                  gallery_per_category=self.gallery_per_category)
        return CellOptions(device=self.device, protocol=protocol, resamples=self.resamples,
                           save_models=self.save_models)

    def cells(self, dataset: str) -> list[CellSpec]:
        """Every cell of ``dataset``: method (in run order) x K x seed."""
        return [CellSpec(dataset, p, seed, k, order) for order, p in enumerate(self.plans)
                for k in self.shots for seed in self.seeds]


def run(data: BenchData, opts: RunOptions, ui: Reporter,
        on_cell: Callable[[Record], None] = lambda record: None) -> list[Record]:
    """Run every cell of ``opts`` on ``data`` (skipping finished ones); returns all records."""
    specs = opts.cells(data.name)
    done = finished_cells(data, specs, opts.out, opts.force, opts.datasets)
    opts.out.mkdir(parents=True, exist_ok=True)
    ui.run_start(len(specs))
    records = dict(done)
    for cid in done:
        ui.cell_done(cid, "skipped (finished earlier)")
    todo = [s for s in specs if s.id not in done]
    execute = run_ray if opts.executor == "ray" else run_local
    for record in execute(data, todo, opts, ui):
        records[record.cell.id] = record
        on_cell(record)
    return [records[s.id] for s in specs if s.id in records]


def status_line(record: Record) -> str:
    return record.status if record.ok else str(record.error)


def run_local(data: BenchData, todo: list[CellSpec], opts: RunOptions,
              ui: Reporter) -> Iterator[Record]:
    """The local executor: each cell in this process, one after the other."""
    for spec in todo:
        ui.cell_start(spec.id)
        record = write_cell(opts.out, compute_cell(data, spec, opts.cell_options, ui))
        ui.cell_done(spec.id, status_line(record))
        yield record


# -- Ray --------------------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError(f"--executor ray needs Ray, which is not installed: {INSTALL_RAY}"
                         ) from None
    return ray


def check_ray() -> None:
    """Fail before the run folder is made when Ray is missing."""
    _ray()


@contextlib.contextmanager
def ray_session(address: str | None, pythonpath: list[str] | tuple[str, ...] = ()
                ) -> Iterator[None]:
    """Ray for the duration of the block: joined at ``address`` (``--ray-address``) or started
    locally, and shut down at the end if this block started it. Nested sessions share one.

    ``pythonpath``: folders a local instance's workers need to import outside methods given by
    import path (on a cluster, install their package on the workers instead)."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        extra: dict[str, Any] = {}
        if pythonpath and address is None:
            path = [*pythonpath, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            extra["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                dict.fromkeys(path))}}
        ray.init(address=address, log_to_driver=False, include_dashboard=False, **extra)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _ray_task(data: BenchData, spec: CellSpec, options: CellOptions, threads: int
              ) -> CellResult:
    import torch

    torch.set_num_threads(threads)
    return compute_cell(data, spec, options, Reporter())


def run_ray(data: BenchData, todo: list[CellSpec], opts: RunOptions,
            ui: Reporter) -> Iterator[Record]:
    """The Ray executor: every cell a task; yields each record as this process writes it. A
    lost task (its worker died) is reported and yields nothing."""
    import torch

    ray = _ray()
    with ray_session(opts.ray_address):
        threads = torch.get_num_threads()
        need = ({"num_gpus": 1, "num_cpus": 1} if opts.device.startswith("cuda")
                else {"num_cpus": threads})
        task = ray.remote(max_retries=0, **need)(_ray_task)
        data_ref = ray.put(data)  # once per run: every task reads this object
        pending = {}
        for spec in todo:
            ui.cell_start(spec.id)
            pending[task.remote(data_ref, spec, opts.cell_options, threads)] = spec.id
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            cid = pending.pop(ready)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayError as err:
                ui.cell_done(cid, f"lost ({type(err).__name__}): nothing written; rerun to "
                                  "compute it")
                continue
            record = write_cell(opts.out, result)
            ui.cell_done(cid, status_line(record))
            yield record
