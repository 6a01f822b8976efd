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
                   "sa_patchcore_dual with its local-only, global-only, SA-PatchCore-score "
                   "(maxglobal), uncalibrated and z-score variants.")
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
@click.option("--allow-leakage", is_flag=True,
              help="Run even when test images are also training images (identical files); "
                   "without it such a dataset is refused. The records and the leaderboard say "
                   "which images leaked.")
@click.option("--reference", default=None, metavar="METHOD",
              help="The row the leaderboard's paired differences compare every other row with "
                   "[default: the best row overall].")
@click.option("--max-cells", type=click.IntRange(min=1), default=1000, show_default=True,
              help="The most cells (methods x seeds x shots x datasets) a run starts; the plan's "
                   "size is printed before it starts.")
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
@click.argument("sources", nargs=-1, required=True, metavar="RUN_DIR|hf:ORG/NAME...")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the merged leaderboard.md, results.csv and plots. Needed with "
                   "several sources or an hf: one; one RUN_DIR alone is rebuilt in place.")
@click.option("--no-plots", is_flag=True, help="Only the tables.")
@click.option("--token", default=None, help="Hugging Face token for private hf: runs "
              "[default: HF_TOKEN or the stored login]; never printed.")
@click.option("--reference", default=None, metavar="METHOD",
              help="The row the paired differences compare every other row with (a method's "
                   "name or row label) [default: each dataset's best row overall].")
def leaderboard_cmd(sources: tuple[str, ...], out: Path | None, no_plots: bool,
                    token: str | None, reference: str | None) -> int:
    """Rebuild RUN_DIR's leaderboard.md, results.csv and plots from its records, or render one
    leaderboard from several runs (run folders, runs published with `bench push` as
    hf:ORG/NAME[@REVISION]): rows keep their source, and runs on different data (dataset
    fingerprints) get separate sections."""
    from cadsd.format.hf import HF_PREFIX
    from leaderboard.errors import UsageError

    single_local = len(sources) == 1 and not sources[0].startswith(HF_PREFIX)
    if single_local and (out is None or out.resolve() == Path(sources[0]).resolve()):
        return _rebuild(Path(sources[0]), no_plots, reference)
    if out is None:
        raise UsageError("several runs, or a published hf: run, render into a new folder: "
                         "pass --out DIR")
    if any(not s.startswith(HF_PREFIX) and Path(s).resolve() == out.resolve() for s in sources):
        raise UsageError(f"--out {out} is one of the runs being merged; pick another folder")
    from leaderboard.hub.merge import write_merged
    from leaderboard.hub.sources import read_sources

    read = read_sources(list(sources), token)
    files = write_merged(read, out, plots=not no_plots, reference=reference)
    count = sum(len(s.records) for s in read)
    console.print(f"Leaderboard: [bold]{files['leaderboard']}[/] ({count} records from "
                  f"{len(read)} run(s))", highlight=False)
    return _report_unusable([b for s in read for b in s.unusable])


def _rebuild(run_dir: Path, no_plots: bool, reference: str | None = None) -> int:
    from leaderboard.records import scan_records
    from leaderboard.reporting.report import write_outputs

    if not run_dir.is_dir():
        raise BenchError(f"run folder not found: {run_dir} (written by `bench run --out DIR`)")
    records, unusable = scan_records(run_dir)
    files = write_outputs(run_dir, plots=not no_plots, scanned=(records, unusable),
                          reference=reference)
    console.print(f"Leaderboard: [bold]{files['leaderboard']}[/] ({len(records)} records)")
    return _report_unusable(unusable)


def _report_unusable(unusable: list) -> int:
    for bad in unusable:
        console.print(f"[red]left out:[/] {bad}", highlight=False)
    if unusable:
        console.print(f"[red]{len(unusable)} record file(s) could not be used[/]; the "
                      "leaderboard names them and renders the rest.", highlight=False)
        return 1
    return 0


@cli.command("push")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--repo-id", required=True, help="The results dataset repo, ORG/NAME.")
@click.option("--models", is_flag=True,
              help="Also push each saved model (`bench run --save-models`) as a model repo "
                   "ORG/NAME-<cell>, with a model card whose model-index holds its AUROC.")
@click.option("--dry-run", type=click.Path(path_type=Path), default=None,
              help="Write what would be uploaded to this folder (datasets/ORG/NAME/, "
                   "models/...) and upload nothing.")
@click.option("--private", is_flag=True, help="Create the repos private.")
@click.option("--token", default=None,
              help="Hugging Face token [default: HF_TOKEN or the stored login]; never printed "
                   "or written into a file.")
@click.option("--license", "license_", default=None,
              help="Licence id for the cards' metadata (e.g. cc-by-4.0) [default: none given].")
@click.option("--dataset-repo-id", default=None,
              help="The Hub id of the data the run measured, for the model cards' model-index "
                   "[default: hf:ORG/NAME runs name theirs; else the dataset's name].")
def push_cmd(run_dir: Path, repo_id: str, models: bool, dry_run: Path | None, private: bool,
             token: str | None, license_: str | None, dataset_repo_id: str | None) -> None:
    """Publish RUN_DIR on the Hugging Face Hub: its records, a parquet table, the plots and
    its leaderboard as the dataset card. Re-pushing updates in place."""
    from leaderboard.hub.push import dry_run_folder, push_run

    result = push_run(run_dir, repo_id, models=models, dry_run=dry_run, private=private,
                      token=token, license=license_, dataset_repo_id=dataset_repo_id)
    for warning in result.warnings:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    for repo in result.repos:
        where = (dry_run_folder(result.dry_run_dir, repo) if result.dry_run_dir
                 else repo.url or repo.repo_id)
        console.print(f"{repo.repo_type} {repo.repo_id}: {len(repo.files)} files, "
                      f"{repo.status} ({where})", highlight=False)


@cli.command("list")
def list_cmd() -> None:
    """The methods: built-in ones (what `--methods all` runs), then installed outside ones."""
    from leaderboard.methods.listing import list_rows

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
@click.option("--model", "model_path", required=True,
              help="A model saved by `bench run --save-models` (or Detector.save), or one "
                   "pushed with `bench push --models`: hf:ORG/NAME[@REVISION].")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True)
@click.option("--method", "trusted", multiple=True, metavar="MODULE:CLASS",
              help="A class outside the built-in methods and installed entry points that the "
                   "model file may name (repeatable). Without it such a file is refused: a "
                   "model file never makes bench import a module on its own.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def predict_cmd(model_path: str, images: tuple[Path, ...], device: str, trusted: tuple[str, ...],
                as_json: bool) -> None:
    """Score IMAGES (higher = more anomalous) with a saved model."""
    from leaderboard.hub.sources import model_file
    from leaderboard.running.predict import score_images

    rows = score_images(model_file(model_path), list(images), device=device, trusted=trusted)
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
