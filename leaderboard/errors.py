"""User-facing errors of the benchmark harness (an unknown method, an unusable run folder)."""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message, naming the fix."""

    exit_code: int = 1


class UsageError(BenchError):
    """A command line the run cannot start from (an unknown setting, a value of the wrong
    type, a budget no selected method has): exit code 2, as click's own usage errors."""

    exit_code: int = 2
