"""`bench run` as one importable function: resolve choices, decode data, run cells, write outputs.

Every check that can fail on user input (method names, device, backbone name, dataset path, a
test split without anomalies) runs before the run folder is created, so a mistake leaves no
files behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaderboard import choices, data, environment, registry
from leaderboard.progress import Reporter
from leaderboard.report import write_outputs
from leaderboard.runner import RunOptions, run


@dataclass
class BenchResult:
    """What a run produced: its records, output files and wall time."""

    out: Path
    records: list[dict[str, Any]]
    files: dict[str, Path]
    wall_s: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


def bench_run(
    *,
    methods: str = "all",
    dataset: str = "auto",
    backbone: str = "auto",
    weights: str = "imagenet",
    seeds: str = "0",
    device: str = "auto",
    out: str | Path | None = None,
    force: bool = False,
    save_models: bool = False,
    params: tuple[str, ...] | list[str] = (),
    echo: Callable[[str], None] = print,
    reporter: Callable[[], Reporter] = Reporter,
    decode_progress: Callable[[int], Callable[[], None]] | None = None,
    registry_: Mapping[str, registry.MethodEntry] | None = None,
    probe: Callable[[], bool] = choices.online,
    **options: Any,
) -> BenchResult:
    """Run ``methods`` x ``seeds`` on ``dataset``; see ``bench run --help`` for the options.

    ``options`` go to :class:`~leaderboard.runner.RunOptions` (e.g. ``resamples``,
    ``fit_batch_size``). ``decode_progress(total)`` returns a per-image tick for decoding.
    """
    t0 = time.perf_counter()
    names = registry.select(methods, registry_)
    seed_list = choices.parse_seeds(seeds)
    settings = choices.parse_params(params, names)
    dev = environment.resolve_device(device)
    if backbone != "auto":
        choices.resolve_backbone(backbone, weights, echo)  # validates the name early
    resolved = data.resolve(dataset, echo)
    ticks: dict[str, Callable[[], None]] = {}

    def start(total: int) -> None:
        if decode_progress is not None:
            ticks["tick"] = decode_progress(total)

    bench_data = data.load(resolved, start=start, tick=lambda: ticks.get("tick", _noop)())
    bb, wt = choices.resolve_backbone(backbone, weights, echo, probe=probe)
    out_dir = Path(out) if out is not None else choices.default_out(resolved.name, bb, wt)
    opts = RunOptions(methods=names, seeds=seed_list, backbone=bb, weights=wt, device=dev,
                      out=out_dir, force=force, save_models=save_models, params=settings,
                      registry=registry_, **options)
    ui = reporter()
    try:
        records = run(bench_data, opts, ui)
    finally:
        ui.close()
    files = write_outputs(out_dir)
    return BenchResult(out=out_dir, records=records, files=files,
                       wall_s=time.perf_counter() - t0)


def _noop() -> None:
    pass
