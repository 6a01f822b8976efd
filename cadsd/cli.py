"""`cadsd`: get, check, build, synthesise and publish the CAD-SD dataset.

Thin: each command parses its options and calls one importable function. A
:class:`~cadsd.errors.CadsdError` becomes one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

from cadsd.errors import CadsdError

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadsd-bench")
def cli() -> None:
    """CAD-SD dataset toolkit (Ishida et al., IEEE Access 2023)."""


# Commands are defined below, one section each: validate/build, synth, download/verify/card/push.


# --- validate / build -------------------------------------------------------------------------

_PATH_HELP = "dataset folder (default: the cached real CAD-SD, `cadsd.cache.real_dataset_dir()`)"
_EXPECT_HELP = (
    "override an expected count: CATEGORY=N (every split holding it, e.g. lacking=44) or "
    "SPLIT/CATEGORY=N (e.g. train/good=400); repeatable"
)


def _dataset_path(path: str | None) -> str:
    from cadsd.cache import real_dataset_dir

    return path if path is not None else str(real_dataset_dir())


@cli.command("validate")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--expect", "expect", multiple=True, metavar="KEY=N", help=_EXPECT_HELP)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write the report here")
def validate_cmd(path: str | None, expect: tuple[str, ...], json_out: str | None) -> int:
    """Check a CAD-SD folder: decoding, modes, counts, duplicates, leakage, stray files.

    PATH defaults to the cached real CAD-SD (`cadsd.cache.real_dataset_dir()`, under $CADSD_CACHE
    when set). Exits 0 when valid, 1 with the list of problems otherwise.
    """
    from cadsd.validate import parse_expect, print_report, validate, write_json

    report = validate(_dataset_path(path), parse_expect(expect))
    print_report(report, Console())
    if json_out:
        console.print(f"report written to {write_json(report, json_out)}", highlight=False)
    return 0 if report.ok else 1


@cli.command("build")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--force", is_flag=True, help="replace an existing non-empty --out")
@click.option("--no-validate", is_flag=True, help="skip `cadsd validate` before building")
@click.option("--expect", "expect", multiple=True, metavar="KEY=N", help=_EXPECT_HELP)
def build_cmd(
    path: str | None, out: str, force: bool, no_validate: bool, expect: tuple[str, ...]
) -> int:
    """Build the Hugging Face DatasetDict (train, test) and save it with save_to_disk.

    PATH defaults to the cached real CAD-SD. The folder is validated first (refused when
    invalid, unless --no-validate); images keep their original JPEG/PNG bytes.
    """
    from cadsd.validate import parse_expect, print_report, validate

    root = _dataset_path(path)
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

    from cadsd.hf import build_to_disk

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning user errors into a message + exit 1."""
    try:
        # standalone_mode=False: click returns the command's return value (an int is the exit
        # code, so a command like `validate` can return 1) instead of exiting itself.
        rc = cli.main(args=argv, prog_name="cadsd", standalone_mode=False)
    except CadsdError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        console.print("[red]aborted[/]")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
