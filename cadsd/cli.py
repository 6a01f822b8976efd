"""`cadsd`: get, check, build, synthesise and publish the CAD-SD dataset.

Thin: each command parses its options and calls one importable function. A
:class:`~cadsd.errors.CadsdError` becomes one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from cadsd.errors import CadsdError, LayoutError, short_message

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadsd-bench")
def cli() -> None:
    """CAD-SD dataset toolkit (Ishida et al., IEEE Access 2023)."""


# Commands are defined below, one section each: validate/build, synth, download/verify/card/push.


# --- validate / build -------------------------------------------------------------------------

_PATH_HELP = "dataset folder (default: the cached real CAD-SD, `cadsd.format.cache.real_dataset_dir()`)"
_EXPECT_HELP = (
    "override an expected count: CATEGORY=N (every split holding it, e.g. lacking=44) or "
    "SPLIT/CATEGORY=N (e.g. train/good=400); repeatable"
)


def _dataset_path(path: str | None) -> str:
    from cadsd.format.cache import real_dataset_dir

    return path if path is not None else str(real_dataset_dir())


def _validate_benchmark(name: str, path: str | None) -> int:
    """Each category of a benchmark: its layout and masks, and its counts against the
    published ones; exit 1 when anything differs."""
    from cadsd import zoo
    from cadsd.zoo.download import benchmark_dir, not_found_message

    bench = zoo.get(name)
    folder = Path(path) if path else benchmark_dir(bench)
    if not folder.is_dir():
        raise LayoutError(not_found_message(bench, folder))
    root = bench.find_root(folder)
    sizes, problems = zoo.check_copy(bench, root)
    for cat, (train, test) in sizes.items():
        click.echo(f"{cat}: {train} train, {test} test images")
    for line in problems:
        console.print(f"[red]problem:[/] {line}", highlight=False)
    click.echo(f"{bench.title} at {root}: {'valid' if not problems else f'{len(problems)} problem(s)'}"
               f" (licence: {bench.license})")
    return 1 if problems else 0


def _download_benchmark(name: str, source: str | None, dest: str | None, force: bool,
                        policy: object) -> int:
    from cadsd import zoo
    from cadsd.zoo.download import download as fetch_benchmark

    bench = zoo.get(name)
    folder, differences = fetch_benchmark(bench, source, dest, force=force, policy=policy)
    click.echo(f"{bench.title} is in {folder} (licence: {bench.license})")
    for line in differences:
        console.print(f"[yellow]problem:[/] {line}", highlight=False)
    if bench.notes:
        click.echo(f"note: {bench.notes}")
    return 1 if differences else 0


@cli.command("validate")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--expect", "expect", multiple=True, metavar="KEY=N", help=_EXPECT_HELP)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write the report here")
@click.option("--dataset", default="cadsd", show_default=True,
              help="cadsd, or mvtec_ad / btad / mvtec_loco / aitex: their layout, masks and "
                   "published counts per category (PATH defaults to its download)")
def validate_cmd(path: str | None, expect: tuple[str, ...], json_out: str | None,
                 dataset: str) -> int:
    """Check a CAD-SD folder: decoding, modes, counts, duplicates, leakage, stray files.

    PATH defaults to the cached real CAD-SD (`cadsd.format.cache.real_dataset_dir()`, under $CADSD_CACHE
    when set). Exits 0 when valid, 1 with the list of problems otherwise.
    """
    from cadsd.checking.validate import parse_expect, validate, write_json
    from cadsd.checking.validate_view import print_report

    if dataset != "cadsd":
        return _validate_benchmark(dataset, path)
    report = validate(_dataset_path(path), parse_expect(expect))
    print_report(report, Console())
    if json_out:
        console.print(f"report written to {write_json(report, json_out)}", highlight=False)
    return 0 if report.ok else 1


@cli.command("build")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--force", is_flag=True,
              help="replace an --out that an earlier `cadsd build` wrote (never another folder)")
@click.option("--no-validate", is_flag=True, help="skip `cadsd validate` before building")
@click.option("--expect", "expect", multiple=True, metavar="KEY=N", help=_EXPECT_HELP)
def build_cmd(
    path: str | None, out: str, force: bool, no_validate: bool, expect: tuple[str, ...]
) -> int:
    """Build the Hugging Face DatasetDict (train, test) and save it with save_to_disk.

    PATH defaults to the cached real CAD-SD. The folder is validated first (refused when
    invalid, unless --no-validate); images keep their original JPEG/PNG bytes.
    """
    from cadsd.checking.validate import parse_expect, validate
    from cadsd.checking.validate_view import print_report
    from cadsd.files import check_output
    from cadsd.format.hf import build_output
    from cadsd.format.layout import resolve_root

    root = _dataset_path(path)
    resolve_root(root)  # a wrong PATH is named first
    check_output(build_output(out, overwrite=force, sources=(root,)))  # before any work
    if not no_validate:
        report = validate(root, parse_expect(expect))
        if not report.ok:
            print_report(report, Console())
            console.print(
                "[bold red]refusing to build[/]: fix the problems above, or pass "
                "--expect / --no-validate."
            )
            return 1
    from collections import Counter

    from rich.table import Table

    from cadsd.format.hf import build_to_disk

    dd = build_to_disk(root, out, overwrite=force)
    table = Table(title=f"Saved to {out}")
    for name in ("split", "category", "rows"):
        table.add_column(name, justify="right" if name == "rows" else "left")
    for split, ds in dd.items():
        counts = Counter(ds.select_columns(["category"]).to_dict()["category"])
        for i, cat in enumerate(ds.features["category"].names):
            if counts[i]:
                table.add_row(split, cat, str(counts[i]))
        table.add_row(split, "all", str(ds.num_rows), style="bold")
    Console().print(table)
    return 0


# --- synth ------------------------------------------------------------------------------------


@cli.command("synth")
@click.option("--out", type=click.Path(file_okay=False), help="write a synthetic CAD-SD here")
@click.option("--audit", "audit_dir", type=click.Path(file_okay=False),
              help="instead: audit this dataset for global-statistic shortcuts")
@click.option("--seed", default=0, show_default=True, help="same seed -> byte-identical files")
@click.option("--counts", default="paper", show_default=True,
              help="paper (400 / 210+41+41+44+40) or small (a tiny set for tests)")
@click.option("--size", default=256, show_default=True, help="image side in pixels")
@click.option("--workers", type=int, help="worker processes (default: all CPUs)")
@click.option("--force", is_flag=True,
              help="replace an --out that an earlier `cadsd synth` wrote (never another folder)")
def synth_cmd(
    out: str | None,
    audit_dir: str | None,
    seed: int,
    counts: str,
    size: int,
    workers: int | None,
    force: bool,
) -> int:
    """Generate a procedural CAD-SD (official layout + ground_truth masks), or audit one.

    --audit DIR prints the AUROC of trivial global statistics (saturation, dark area, product
    area, brightness) per anomaly type and exits 1 when a documented shortcut limit is exceeded.
    """
    if (out is None) == (audit_dir is None):
        raise click.UsageError("pass exactly one of --out DIR (generate) or --audit DIR")
    if audit_dir is not None:
        from cadsd.synth import audit, print_audit, violations

        rows = audit(audit_dir)
        print_audit(rows, Console())
        return 1 if violations(rows) else 0
    from cadsd.synth import generate

    path = generate(out, seed=seed, counts=counts, size=size, workers=workers, overwrite=force)
    click.echo(f"synthetic CAD-SD ({counts}, seed {seed}, {size}px) written to {path}")
    return 0


# --- download / verify / card / push ----------------------------------------------------------

_SOURCE_HELP = (
    "gdrive (the authors' Drive folder), hf:ORG/NAME, an http(s) URL of a .zip/.tar, "
    "a local .zip/.tar, or a local folder (copied)"
)


@cli.command("download")
@click.option("--dataset", default="cadsd", show_default=True,
              help="cadsd, or another benchmark: mvtec_ad, btad, mvtec_loco (official archive, "
                   "sha256-checked; their licences are CC BY-NC-SA 4.0)")
@click.option("--dest", type=click.Path(file_okay=False), help=_PATH_HELP)
@click.option("--source", default=None, help=_SOURCE_HELP + " [default: gdrive for CAD-SD, "
              "the official URL for the others]")
@click.option("--sha256", help="expected sha256 of the archive (URL or .zip/.tar sources)")
@click.option("--expect", "expect", multiple=True, metavar="KEY=N", help=_EXPECT_HELP)
@click.option("--force", is_flag=True,
              help="replace a --dest that an earlier `cadsd download` wrote (never another folder)")
@click.option("--retries", default=4, show_default=True, help="retries on rate limits / 5xx")
@click.option("--timeout", default=5.0, show_default=True, help="connect timeout, seconds")
def download_cmd(
    dataset: str,
    dest: str | None,
    source: str | None,
    sha256: str | None,
    expect: tuple[str, ...],
    force: bool,
    retries: int,
    timeout: float,
) -> int:
    """Download CAD-SD (or import a copy), write its checksum manifest, then validate it.

    Exits 1 when validation finds problems; the downloaded files are kept (see the report).
    """
    from cadsd.checking.validate import parse_expect
    from cadsd.checking.validate_view import print_report
    from cadsd.getting.download import download
    from cadsd.getting.fetch import Policy

    if dataset != "cadsd":
        return _download_benchmark(dataset, source, dest, force,
                                   Policy(retries=retries, connect_timeout=timeout))
    result = download(
        source or "gdrive",
        dest,
        sha256=sha256,
        expect=parse_expect(expect),
        force=force,
        policy=Policy(retries=retries, connect_timeout=timeout),
    )
    if result.already_present:
        click.echo(
            f"already downloaded and verified: {result.dest} ({result.files} files); "
            "pass --force to fetch again"
        )
        return 0
    click.echo(
        f"downloaded {result.files} files ({result.nbytes / 1e6:.1f} MB) from "
        f"{result.source} to {result.dest}; manifest written"
    )
    if result.report is not None:
        print_report(result.report, Console())
        if not result.report.ok:
            console.print(
                f"[yellow]the download is complete and kept at {result.dest}, but validation "
                "found the problems above.[/] Check them with `cadsd validate "
                f"{result.dest}`; a count that differs from the paper (lacking: 40 in the paper, "
                "44 in the official code) can be accepted with --expect lacking=44.",
                highlight=False,
            )
            return 1
    return 0


@cli.command("verify")
@click.argument("path", required=False, type=click.Path(file_okay=False))
def verify_cmd(path: str | None) -> int:
    """Re-check a downloaded dataset against its sha256 manifest; names every changed, missing
    or extra file and exits 1 if there is any."""
    from cadsd.getting.manifest import verify

    report = verify(_dataset_path(path))
    for line in report.lines():
        click.echo(line)
    if report.ok:
        click.echo(f"OK: {report.checked} files match the manifest in {report.root}")
        return 0
    console.print(
        f"[bold red]{len(report.changed)} changed, {len(report.missing)} missing, "
        f"{len(report.extra)} extra[/] in {report.root}; download again with "
        "`cadsd download --force`",
        highlight=False,
    )
    return 1


def _card_data(path: str, kind: str, seed: int | None):
    from dataclasses import replace
    from pathlib import Path

    from cadsd.publishing.card import Provenance, detect_provenance

    root = Path(path).expanduser()
    if (root / "dataset_dict.json").is_file():
        from cadsd.format.hf import load

        data = load(root)
        prov = Provenance("synthetic" if "mask" in data["train"].column_names else "cadsd")
    else:
        data, prov = root, detect_provenance(root)
    if kind != "auto":
        prov = replace(prov, kind=kind)
    if seed is not None:
        prov = replace(prov, seed=seed)
    return data, prov


@cli.command("card")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--license", "license_", help="licence id for the card (default: unknown)")
@click.option("--out", type=click.Path(dir_okay=False), help="write here (default: print)")
@click.option("--repo-id", help="ORG/NAME used in the loading example")
@click.option(
    "--kind",
    type=click.Choice(["auto", "cadsd", "synthetic", "custom"]),
    default="auto",
    show_default=True,
    help="what the data is (auto: detected)",
)
@click.option("--seed", type=int, help="the synthetic set's seed, when not detectable")
def card_cmd(
    path: str | None,
    license_: str | None,
    out: str | None,
    repo_id: str | None,
    kind: str,
    seed: int | None,
) -> int:
    """Render the dataset card (README.md) with counts measured from the data."""
    from cadsd.publishing.card import card_for, write_card

    data, prov = _card_data(_dataset_path(path), kind, seed)
    card = card_for(data, provenance=prov, license=license_, repo_id=repo_id)
    if out:
        click.echo(f"card written to {write_card(card, out)}")
    else:
        click.echo(str(card))
    return 0


@cli.command("push")
@click.option("--repo-id", required=True, help="ORG/NAME of the dataset repo")
@click.option("--private", is_flag=True, help="create the repo private")
@click.option("--token", help="Hugging Face token (default: $HF_TOKEN or the stored login)")
@click.option(
    "--source",
    help="synthetic, a dataset folder, a `cadsd build` folder (default: the downloaded CAD-SD), "
    "or one category of another benchmark: mvtec_ad:bottle, PATH:CATEGORY (its card states "
    "its licence; a non-commercial one is warned about)",
)
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Path(file_okay=False),
    help="write the repo folder that would be uploaded here; upload nothing",
)
@click.option("--license", "license_", help="licence id for the card (default: unknown)")
@click.option("--seed", default=0, show_default=True, help="synthetic source: seed")
@click.option(
    "--counts",
    type=click.Choice(["paper", "small"]),
    default="paper",
    show_default=True,
    help="synthetic source: counts",
)
@click.option("--size", default=256, show_default=True, help="synthetic source: image size")
def push_cmd(
    repo_id: str,
    private: bool,
    token: str | None,
    source: str | None,
    dry_run: str | None,
    license_: str | None,
    seed: int,
    counts: str,
    size: int,
) -> int:
    """Publish the dataset to the Hugging Face Hub: data (Parquet, images embedded), then card."""
    from cadsd.publishing.push import push

    result = push(
        repo_id,
        source=source,
        private=private,
        token=token,
        dry_run=dry_run,
        license=license_,
        seed=seed,
        counts=counts,
        size=size,
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if result.dry_run_dir is not None:
        click.echo(
            f"dry run: {len(result.files)} files written to {result.dry_run_dir} (nothing uploaded)"
        )
    else:
        click.echo(f"pushed {len(result.files)} files to {result.url}")
    for name in result.files:
        click.echo(f"  {name}")
    return 0


def run_cli(
    group: click.Group,
    argv: list[str] | None,
    prog_name: str,
    errors: tuple[type[Exception], ...],
    interrupted: str = "aborted",
) -> NoReturn:
    """Run a click ``group`` as a console script: its return value (an int) is the exit code;
    ``errors`` (user errors with an ``exit_code``) become one red line, never a traceback;
    Ctrl-C prints ``interrupted`` and exits 130."""
    try:
        # standalone_mode=False: click returns the command's return value (an int is the exit
        # code, so a command like `validate` can return 1) instead of exiting itself.
        rc = group.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except errors as err:
        message = escape(short_message(str(err)))  # a path may hold [brackets]
        console.print(f"[bold red]error:[/] {message}", highlight=False)
        sys.exit(getattr(err, "exit_code", 1))
    except (KeyboardInterrupt, click.exceptions.Abort):
        console.print(f"[red]{interrupted}[/]", highlight=False)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning user errors into a message + exit 1."""
    # OSError: a disk or permission problem (full disk, read-only folder) is the user's to
    # fix, so one line, never a traceback
    run_cli(cli, argv, "cadsd", (CadsdError, OSError))


if __name__ == "__main__":
    main()
