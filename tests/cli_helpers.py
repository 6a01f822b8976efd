"""The tests' one CLI runner: `cadsd` and `bench` in-process, with their exit code and output."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def run_main(main: Callable[[list[str]], object], args: list[str],
             capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run a click ``main(args)``; return the exit code and stdout+stderr with whitespace
    collapsed. A user-facing command never prints a traceback."""
    import os

    import cadsd.cli
    import leaderboard.cli

    # never wrapped, whatever the length of the temp paths: messages are checked as text
    # (the CLIs' consoles, and those made during the call, which read COLUMNS)
    for console in (cadsd.cli.console, leaderboard.cli.console):
        console.width = 10_000
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "10000"
    try:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    out, err = capsys.readouterr()
    text = " ".join((out + err).split())
    assert "Traceback" not in text
    return exc.value.code, text


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`cadsd ARGS`."""
    from cadsd.cli import main

    return run_main(main, args, capsys)


def run_bench(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`bench ARGS`."""
    from leaderboard.cli import main

    return run_main(main, list(args), capsys)


def expect_args(counts: dict[str, int]) -> list[str]:
    """``--expect KEY=N`` arguments for each expected count."""
    return [arg for key, n in counts.items() for arg in ("--expect", f"{key}={n}")]
