"""``bench run --executor ray``: the run's cells as Ray tasks, on a laptop or a cluster.

Each cell is one task running the very same :func:`leaderboard.running.runner.compute_cell` as the local
executor; it asks for one GPU when the device is CUDA, else for the CPUs a cell uses (torch's
thread count here). The task writes nothing: it returns the record and its files (the map sample,
a saved model) to the driver, which writes them atomically into the run folder, record last. A
worker that dies mid-cell therefore leaves no partial record, and a rerun computes the cell
again; resume, ``--force``, failed-cell records and the leaderboard are the local executor's.

The dataset reaches the workers once per run (per benchmark category): the decoded images go into
Ray's object store with one ``ray.put`` and every task reads that object.

``--ray-address``: an existing cluster (``ray start --head``, KubeRay, Slurm); without it a local
Ray instance is started for the run and stopped after it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from leaderboard.errors import BenchError
from leaderboard.running.progress import Reporter

if TYPE_CHECKING:
    from leaderboard.records import Record
    from leaderboard.running.data import BenchData
    from leaderboard.running.plan import MethodPlan
    from leaderboard.running.runner import CellResult, RunOptions

INSTALL = "pip install 'cadsd-bench[ray]'"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_available() -> None:
    """Fail before the run folder is made when Ray is missing."""
    _ray()


@contextlib.contextmanager
def session(address: str | None, pythonpath: list[str] | tuple[str, ...] = ()
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


def _cell_task(data: BenchData, mplan: MethodPlan, seed: int, order: int, opts: RunOptions,
               shots: int | None, threads: int) -> CellResult:
    import torch

    from leaderboard.running.runner import compute_cell

    torch.set_num_threads(threads)
    return compute_cell(data, mplan, seed, order, opts, Reporter(), shots)


def run_cells(data: BenchData, todo: list[tuple[MethodPlan, int, int, int | None, str]],
              opts: RunOptions, ui: Reporter) -> Iterator[Record]:
    """Submit every cell of ``todo`` ((plan, seed, order, shots, cell id)); yield each record as
    the driver writes it. A lost task (its worker died) is reported and yields nothing."""
    import torch

    from leaderboard.running.runner import status_line, write_cell

    ray = _ray()
    with session(opts.ray_address):
        threads = torch.get_num_threads()
        need = ({"num_gpus": 1, "num_cpus": 1} if opts.device.startswith("cuda")
                else {"num_cpus": threads})
        task = ray.remote(max_retries=0, **need)(_cell_task)
        data_ref = ray.put(data)  # once per run: every task reads this object
        pending = {}
        for mplan, seed, order, shots, cid in todo:
            ui.cell_start(cid)
            pending[task.remote(data_ref, mplan, seed, order, opts, shots, threads)] = cid
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
