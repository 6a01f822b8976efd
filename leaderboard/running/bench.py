"""`bench run` as one importable function: resolve choices, decode data, run cells, write outputs.

Every check that can fail on user input (method names, device, budget, ``--param`` keys and
values, backbone and its weights, dataset path, a test split without anomalies, undecodable
images) runs before the run folder is created, so a mistake leaves no files behind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.device import resolve_device
from leaderboard.errors import BenchError, UsageError
from leaderboard.methods import METHODS, MethodEntry, resolve
from leaderboard.methods import suite as suite_methods
from leaderboard.records import RECORDS_DIR, Record, set_aside_bad_records
from leaderboard.reporting.report import write_outputs
from leaderboard.running import choices, data, environment, lock, plan
from leaderboard.running.progress import Reporter
from leaderboard.running.runner import RunOptions, check_ray, ray_session, run

#: the most cells a run starts without ``--max-cells``: a typo in --seeds must not start a
#: million fits
MAX_CELLS = 1000


@dataclass
class BenchResult:
    """What a run produced: its records, output files and wall time."""

    out: Path
    records: list[Record]
    files: dict[str, Path]
    wall_s: float

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if not r.ok]


def bench_run(
    *,
    methods: str = "all",
    suite: str | None = None,
    dataset: str = "auto",
    backbone: str = "auto",
    weights: str = "imagenet",
    seeds: str = "0",
    shots: str | None = None,
    device: str = "auto",
    budget: str = "auto",
    out: str | Path | None = None,
    force: bool = False,
    save_models: bool = False,
    params: tuple[str, ...] | list[str] = (),
    echo: Callable[[str], None] = print,
    reporter: Callable[[], Reporter] = Reporter,
    decode_progress: Callable[[str, int], Callable[[], None]] | None = None,
    registry_: Mapping[str, MethodEntry] | None = None,
    probe: Callable[[], bool] = choices.online,
    executor: str = "local",
    ray_address: str | None = None,
    wait_s: float = 0.0,
    allow_leakage: bool = False,
    max_cells: int = MAX_CELLS,
    reference: str | None = None,
    **options: Any,
) -> BenchResult:
    """Run ``methods`` x ``seeds`` on ``dataset``; see ``bench run --help`` for the options.

    Everything a user can get wrong is checked before the run folder is made, in this order:
    method names, seeds, device, budget and ``--param`` keys and values (usage errors exit 2),
    the dataset (found, usable), the plan's size (at most ``max_cells`` cells), test images
    that are training images (refused unless ``allow_leakage``), settings that depend on the
    training set's size, each backbone and its weights (resolved once), and every image decoded
    for every input the methods ask for. ``options`` go to
    :class:`~leaderboard.running.runner.RunOptions` (e.g. ``resamples``). ``decode_progress(what,
    total)`` returns a per-image tick for decoding.
    """
    t0 = time.perf_counter()
    reg = registry_ if registry_ is not None else METHODS
    if suite is not None and methods != "all":
        raise UsageError(f"--suite {suite} chooses the methods itself: drop --methods {methods}")
    if suite is not None:
        names = suite_methods(suite, reg)
    else:  # import paths and entry points join this run's registry
        names, reg = resolve(methods, reg)
    seed_list = choices.parse_seeds(seeds)
    shot_list = choices.parse_shots(shots)
    dev = str(resolve_device(device))  # a DeviceError exits 1 naming the fix
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor {executor!r}: choose local or ray")
    if executor == "ray":
        check_ray()
    chosen_budget = plan.resolve_budget(budget, dev)
    plans = plan.plan_methods(names, reg, params, chosen_budget)
    datasets = data.resolve_all(dataset, echo)
    _check_plan_size(echo, len(plans), len(seed_list), len(shot_list), len(datasets), max_cells)
    first = data.load(datasets[0])
    n_train = len(first.train_rows)
    _check_leakage(first, datasets, allow_leakage, echo)
    smallest = min([n_train, *(d.n_train for d in datasets[1:] if d.n_train is not None),
                    *(k for k in shot_list if k is not None)])
    plan.check_data(plans, smallest)
    plans = choices.resolve_backbones(backbone, weights, plans, echo, probe=probe)
    for line in plan.budget_lines(plans, chosen_budget, dev, n_train,
                                  lambda: environment.gemm_gflops(dev)):
        echo(line)
    for line in plan.cost_lines(plans, n_train):
        echo(line)
    if any(k is not None and k > n_train for k in shot_list):
        raise UsageError(f"--shots {shots}: the training split has {n_train} images")
    _decode(first, plans, decode_progress)
    tag = choices.run_tag(plans)
    name = datasets[0].benchmark or datasets[0].name
    out_dir = Path(out) if out is not None else choices.default_out(name, tag)
    opts = RunOptions(plans=plans, seeds=seed_list, device=dev, out=out_dir, budget=chosen_budget,
                      force=force, save_models=save_models, shots=shot_list,
                      datasets=[d.name for d in datasets], executor=executor,
                      ray_address=ray_address, **options)
    if executor == "ray":  # one Ray session for every category of a benchmark
        from leaderboard.methods.outside import ray_pythonpath

        executing: contextlib.AbstractContextManager = ray_session(
            ray_address, ray_pythonpath([p.entry for p in plans]))
    else:
        executing = contextlib.nullcontext()
    if out_dir.exists() and not out_dir.is_dir():
        raise BenchError(f"--out {out_dir} is a file, not a folder; pass a folder for the run "
                         "(it is made if missing)")
    ui = reporter()
    records: list[Record] = []
    written: list[Record] = []  # the cells this run wrote (a failed write says how many)

    def cell_written(record: Record) -> None:
        written.append(record)
        files = write_outputs(out_dir, plots=False, reference=reference)  # the board so far
        if len(written) == 1:
            echo(f"Leaderboard so far (rewritten after every cell): {files['leaderboard']}")

    try:
        with lock.run_lock(out_dir, wait_s), executing:
            if force:
                for path, kept, why in set_aside_bad_records(out_dir):
                    echo(f"Record {path} could not be used ({why}); kept as {kept.name}, and "
                         "its cell is recomputed.")
            for i, resolved in enumerate(datasets):
                if i:  # the next category replaces the last: one's decoded images at a time
                    first = data.load(resolved)
                    _decode(first, plans, decode_progress)
                records += run(first, opts, ui, on_cell=cell_written)
            files = write_outputs(out_dir, reference=reference)
    except OSError as err:  # the run folder cannot be written: a full disk, no permission
        raise BenchError(_write_failure(out_dir, err, len(written))) from None
    finally:
        ui.close()
    return BenchResult(out=out_dir, records=records, files=files,
                       wall_s=time.perf_counter() - t0)


def _check_plan_size(echo: Callable[[str], None], methods: int, seeds: int, shots: int,
                     datasets: int, max_cells: int) -> None:
    """Say how many cells the run plans, and refuse more than ``max_cells``."""
    cells = methods * seeds * shots * datasets
    parts = [f"{methods} method(s)", f"{seeds} seed(s)"]
    parts += [f"{shots} training-set sizes"] if shots > 1 else []
    parts += [f"{datasets} datasets"] if datasets > 1 else []
    echo(f"Plan: {cells} cell(s) ({' x '.join(parts)}).")
    if cells > max_cells:
        raise UsageError(f"the run plans {cells} cells, more than --max-cells {max_cells}: "
                         "check --seeds / --shots / --methods, or pass --max-cells "
                         f"{cells} to run them all")


def _check_leakage(first: data.BenchData, datasets: list[data.Resolved], allow: bool,
                   echo: Callable[[str], None]) -> None:
    """Test images that are also training images: refused unless ``allow`` (then said)."""
    found = [(first.name, first.leaks)] + [(d.name, d.leaks) for d in datasets[1:]]
    for name, leaks in found:
        if not leaks:
            continue
        message = data.leakage_message(leaks, name)
        if not allow:
            raise BenchError(message)
        echo(f"Warning: {message.split('. Scores')[0]}; running anyway (--allow-leakage): every "
             "record and the leaderboard say so.")


def _write_failure(out: Path, err: OSError, written: int) -> str:
    """What a failed write means for the run: which file, why, what to fix, and that the
    cells this run finished (``written``) stay."""
    import errno

    where = Path(err.filename) if err.filename else out
    cells = (f"the {written} cell record(s) this run wrote before it are kept in "
             f"{out / RECORDS_DIR}" if written else "this run had finished no cell")
    folder = where.parent if where != out else out
    fix = {errno.ENOSPC: "free disk space",
           errno.EDQUOT: "free disk space (a quota is full)",
           errno.EACCES: f"give yourself write permission on {folder}",
           errno.EPERM: f"make {where} replaceable (it is protected: immutable or owned by "
                        "someone else) or move it away",
           errno.EROFS: "choose an --out on a writable disk",
           errno.EISDIR: f"remove the folder {where} (a file belongs there)"}.get(
        err.errno or 0, "remove the cause")
    return (f"the run could not write {where}: {err.strerror or err}. Nothing half-written was "
            f"left: {cells}. To go on, {fix} and rerun the same command (it resumes), or pass "
            "another --out")


def _decode(bench_data: data.BenchData, plans: list[plan.MethodPlan],
            decode_progress: Callable[[str, int], Callable[[], None]] | None) -> None:
    """Decode both splits now for each input the methods ask for (a bad image fails here,
    before any file is made)."""
    for spec in dict.fromkeys(p.input for p in plans):
        _decode_input(bench_data, spec, decode_progress)


def _decode_input(bench_data: data.BenchData, spec: Any,
                  decode_progress: Callable[[str, int], Callable[[], None]] | None) -> None:
    ticks: dict[str, Callable[[], None]] = {}

    def start(total: int) -> None:
        if decode_progress is not None:
            ticks["tick"] = decode_progress(f"decoding images ({spec.describe()})", total)

    bench_data.view(spec, start=start, tick=lambda: ticks.get("tick", _noop)())


def _noop() -> None:
    pass
