"""The tests' one CLI runner: `cadsd` and `bench` in-process, with their exit code and output."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def run_main(main: Callable[[list[str]], object], args: list[str],
             capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run a click ``main(args)``; return the exit code and stdout+stderr with whitespace
    collapsed. A user-facing command never prints a traceback."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
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
