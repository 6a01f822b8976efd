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
