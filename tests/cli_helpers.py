"""Helpers for tests that drive the `cadsd` CLI in-process."""

from __future__ import annotations

import pytest

from cadsd.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run `cadsd ARGS`; return the exit code and stdout+stderr with whitespace collapsed."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    text = " ".join((out + err).split())
    assert "Traceback" not in text
    return exc.value.code, text


def expect_args(counts: dict[str, int]) -> list[str]:
    """``--expect KEY=N`` arguments for each expected count."""
    return [arg for key, n in counts.items() for arg in ("--expect", f"{key}={n}")]
