"""`bench`: run the benchmark, rebuild a leaderboard, list methods, score images with a model.

Thin: each command parses, then calls one importable function. User errors (``BenchError``,
``CadsdError``, ``DetectorError``) become one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from leaderboard.errors import BenchError

if TYPE_CHECKING:
    from leaderboard.records.schema import AUROC, Average
    from leaderboard.running.bench import BenchResult

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadsd-bench")
def cli() -> None:
    """CAD-SD benchmark: SA-PatchCore against the baselines, per anomaly type."""


@cli.command("run")
@click.option("--methods", default="all", show_default=True,
              help="`all` (the paper's methods and baselines) or a comma-separated list (see "
                   "`bench list`).")
@click.option("--suite", default=None,
              help="Run a suite instead of --methods: `ablations` = SA-PatchCore's default and "
                   "the paper's Table 7 (layers into the attention) and Table 8 (pooling) "
                   "variants, for both attention variants; `dual` = this project's "
                   "sa_patchcore_dual with its local-only, global-only, uncalibrated and "
                   "z-score variants.")
@click.option("--dataset", default="auto", show_default=True,
              help="auto | cadsd | synthetic | PATH (folder or `cadsd build` output) | hf:ORG/NAME. "
                   "auto = the real CAD-SD when cached, else the synthetic one.")
@click.option("--backbone", default="auto", show_default=True,
              help="auto | wide_resnet50_2 | efficientnet_b5 | efficientnet_lite2 | mobilenet_v2 "
                   "| resnet18. auto = each method's paper backbone (wide_resnet50_2; CS-Flow: "
                   "efficientnet_b5) when its ImageNet weights are available, else its offline "
                   "fallback (mobilenet_v2; CS-Flow: efficientnet_lite2). A named backbone goes "
                   "to every method that uses one (PatchSVDD has none).")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet, or a state-dict file for the backbone.")
@click.option("--seeds", default="0", show_default=True, help="e.g. 0 or 0,1,2 or 0-4.")
@click.option("--shots", default=None,
              help="Few-shot protocol: fit each cell on K training images (a seeded subset per "
                   "seed, stored in the record), e.g. 4 or 1,2,4,8 or 1,4,all. Default: all.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda")
@click.option("--budget", default="auto", show_default=True,
              help="Training budget of the trained methods (CS-Flow, PatchSVDD): paper (the "
                   "official settings), quick (shortened to minutes on a CPU; every part of the "
                   "algorithm kept), smoke (seconds: plumbing only). auto = paper on a GPU, "
                   "quick on a CPU. Announced, and recorded in every result.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder [default: runs/<dataset>-<backbones>].")
@click.option("--force", is_flag=True,
              help="Recompute cells that already have a result; record files that cannot be "
                   "used (unreadable, edited) are moved aside, kept, and their cells recomputed.")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait when another `bench run` holds the --out folder (one run "
                   "per folder at a time).")
@click.option("--save-models", is_flag=True, help="Save each cell's fitted model (safetensors).")
@click.option("--param", "params", multiple=True, metavar="METHOD.KEY=VALUE",
              help="A method setting (repeatable), e.g. patchcore.coreset_ratio=0.1.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads [default: torch's].")
@click.option("--executor", default="local", show_default=True,
              help="local (one cell after the other) or ray (each cell a Ray task: one GPU each "
                   "on CUDA; needs pip install 'cadsd-bench[ray]').")
@click.option("--ray-address", default=None,
              help="An existing Ray cluster (e.g. ray://head:10001 or auto); default: a local "
                   "Ray instance for this run.")
def run_cmd(threads: int | None, **kwargs: object) -> int:
    """Fit and score every (method, seed) cell; write records, leaderboard.md, results.csv, plots."""
    import torch

    from leaderboard.running.bench import bench_run
    from leaderboard.running.progress import RichReporter

    if threads is not None:
        torch.set_num_threads(threads)

    def decode_progress(what: str, total: int):
        from rich.progress import Progress

        bar = Progress(console=console, transient=True)
        bar.start()
        task = bar.add_task(what, total=total)

        def tick() -> None:
            bar.advance(task)
            if bar.tasks[0].finished:
                bar.stop()

        return tick

    result = bench_run(echo=lambda line: console.print(line, highlight=False),
                       reporter=lambda: RichReporter(console), decode_progress=decode_progress,
                       **kwargs)
    _summary(result)
    return 1 if result.failed else 0


def _pct(entry: AUROC | Average | None) -> str:
    return "n/a" if entry is None else f"{100 * entry.auroc:.1f}"


def _summary(result: BenchResult) -> None:
    """The run at a glance: image AUROC overall and per anomaly group, with the groups the
    records have (CAD-SD: local / co-occurrence; MVTec LOCO AD: logical / structural; MVTec AD,
    BTAD: local), and a dataset column when the run has several."""
    ok = [r for r in result.records if r.ok]
    groups = list(dict.fromkeys(g for r in ok for g in r.metrics.image_auroc.average))
    datasets = list(dict.fromkeys(r.dataset.name for r in result.records))
    table = Table(title="image AUROC (%)", title_justify="left")
    cols = ["dataset"] * (len(datasets) > 1) + ["method", "seed", "all"]
    for col in (*cols, *(f"{g.replace('_', '-')} (avg)" for g in groups), "ms/image"):
        table.add_column(col)
    for r in result.records:
        head = [r.dataset.name] * (len(datasets) > 1) + [r.method.name, str(r.seed)]
        if not r.ok:
            table.add_row(*head, "[red]failed[/]", *([""] * (len(groups) + 1)))
            continue
        auroc = r.metrics.image_auroc
        table.add_row(*head, _pct(auroc.all), *(_pct(auroc.average.get(g)) for g in groups),
                      f"{r.timing.latency_ms.mean:.1f}")
    console.print(table)
    console.print(f"Leaderboard: [bold]{result.files['leaderboard']}[/] "
                  f"(also {result.files['csv'].name}, plots/) in {result.wall_s:.0f} s")
    if result.failed:
        console.print(f"[red]{len(result.failed)} cell(s) failed[/]; errors are in the records "
                      "and the leaderboard. Rerun to retry them.")


@cli.command("leaderboard")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--no-plots", is_flag=True, help="Only the tables.")
def leaderboard_cmd(run_dir: Path, no_plots: bool) -> int:
    """Rebuild leaderboard.md, results.csv and the plots of RUN_DIR from its records."""
    from leaderboard.records import scan_records
    from leaderboard.reporting.report import write_outputs

    if not run_dir.is_dir():
        raise BenchError(f"run folder not found: {run_dir} (written by `bench run --out DIR`)")
    records, unusable = scan_records(run_dir)
    files = write_outputs(run_dir, plots=not no_plots, scanned=(records, unusable))
    console.print(f"Leaderboard: [bold]{files['leaderboard']}[/] ({len(records)} records)")
    for bad in unusable:
        console.print(f"[red]left out:[/] {bad}", highlight=False)
    if unusable:
        console.print(f"[red]{len(unusable)} record file(s) could not be used[/]; the "
                      "leaderboard names them and renders the rest.", highlight=False)
        return 1
    return 0


@cli.command("list")
def list_cmd() -> None:
    """The methods: built-in ones (what `--methods all` runs), then installed outside ones."""
    from leaderboard.registry import list_rows

    rows, notes = list_rows()
    out = Console()
    if not out.is_terminal:  # a pipe or a file: one readable line per method, no wrapped table
        for name, status, desc, paper in rows:
            click.echo(f"{name}: {desc} [{status}]" + (f" ({paper})" if paper else ""))
        for note in notes:
            click.echo(note)
        return
    colour = {"ready": "green", "not yet": "yellow"}
    table = Table()
    for col in ("method", "status", "description", "paper / package"):
        table.add_column(col)
    for name, status, desc, paper in rows:
        tint = next((c for k, c in colour.items() if status.startswith(k)), "red")
        table.add_row(name, f"[{tint}]{status}[/]", desc, paper)
    out.print(table)
    for note in notes:
        out.print(note, highlight=False)


@cli.command("predict")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="A model saved by `bench run --save-models` (or Detector.save).")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def predict_cmd(model_path: Path, images: tuple[Path, ...], device: str, as_json: bool) -> None:
    """Score IMAGES (higher = more anomalous) with a saved model."""
    from leaderboard.running.predict import score_images

    rows = score_images(model_path, list(images), device=device)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table()
    table.add_column("image")
    table.add_column("score", justify="right")
    for row in rows:
        table.add_row(row["image"], f"{row['score']:.4f}")
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors -> one red line and exit 1."""
    from baselines.errors import DetectorError
    from cadsd.cli import run_cli
    from cadsd.errors import CadsdError

    run_cli(
        cli, argv, "bench", (BenchError, CadsdError, DetectorError),
        interrupted="interrupted: finished cells are saved; rerun the same command to resume",
    )


if __name__ == "__main__":
    main()
